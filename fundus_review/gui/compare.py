"""Compare mode: the same image under several CAM runs (methods, layers, classes, models).

Every tile is an ImageViewer whose view is linked to the first one, so zooming into the disc on
one tile zooms all of them. Tiles share the photo array; only their heatmap layers differ.
"""

from __future__ import annotations

import math

from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QVBoxLayout,
    QWidget,
)

from fundus_review.gui.overlays import build_overlays
from fundus_review.gui.viewer import ImageViewer
from fundus_review.viewdata import RunInfo

MAX_TILES = 6


class CompareView(QWidget):
    def __init__(self, session, tasks, parent=None) -> None:
        super().__init__(parent)
        self.session, self.tasks = session, tasks
        self.runs: list[RunInfo] = []
        self.viewers: list[ImageViewer] = []
        self.image = None  # (detail, rgb, fov)
        self.choice = QListWidget()
        self.choice.setFlow(QListWidget.LeftToRight)
        self.choice.setWrapping(True)
        self.choice.setMaximumHeight(58)
        self.choice.setSelectionMode(QAbstractItemView.NoSelection)
        self.grid = QGridLayout()
        self.grid.setSpacing(2)
        top = QHBoxLayout()
        top.addWidget(QLabel(f"Show (up to {MAX_TILES}):"))
        top.addWidget(self.choice, 1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addLayout(top)
        lay.addLayout(self.grid, 1)
        self.choice.itemChanged.connect(self._rebuild)

    def set_runs(self, runs: list[RunInfo]) -> None:
        checked = set(self.checked_ids())
        if not checked:
            checked = {r.id for r in runs[:4]}
        self.runs = list(runs)
        self.choice.blockSignals(True)
        self.choice.clear()
        for r in runs:
            item = QListWidgetItem(r.title)
            item.setData(Qt.UserRole, r.id)
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            item.setCheckState(Qt.Checked if r.id in checked else Qt.Unchecked)
            self.choice.addItem(item)
        self.choice.blockSignals(False)
        self._rebuild()

    def checked_ids(self) -> list[int]:
        return [
            self.choice.item(i).data(Qt.UserRole)
            for i in range(self.choice.count())
            if self.choice.item(i).checkState() == Qt.Checked
        ][:MAX_TILES]

    def set_checked(self, run_ids: list[int]) -> None:
        self.choice.blockSignals(True)
        for i in range(self.choice.count()):
            item = self.choice.item(i)
            item.setCheckState(Qt.Checked if item.data(Qt.UserRole) in run_ids else Qt.Unchecked)
        self.choice.blockSignals(False)
        self._rebuild()

    @Slot()
    def _rebuild(self) -> None:
        ids = self.checked_ids()
        titles = {r.id: r.title for r in self.runs}
        while len(self.viewers) > len(ids):
            v = self.viewers.pop()
            self.grid.removeWidget(v)
            v.setParent(None)
            v.deleteLater()
        while len(self.viewers) < len(ids):
            v = ImageViewer(title=" ")
            if self.viewers:
                v.view.setXLink(self.viewers[0].view)
                v.view.setYLink(self.viewers[0].view)
            self.viewers.append(v)
        cols = max(1, math.ceil(math.sqrt(len(ids))))
        for k, v in enumerate(self.viewers):
            self.grid.addWidget(v, k // cols, k % cols)
            v.run_id = ids[k]
            v.set_title(titles.get(ids[k], "?"))
        self._load()

    def set_image(self, detail, rgb, fov) -> None:
        self.image = (detail, rgb, fov)
        self._load(new_photo=True)

    def _load(self, new_photo: bool = True) -> None:
        if self.image is None or self.session.db is None:
            return
        detail, rgb, fov = self.image
        db = self.session.db
        for v in self.viewers:
            if new_photo or v.image_shape is None:
                v.set_photo(rgb)
        if self.viewers:
            # Linked views follow the first one: fit it once all tiles hold the photo.
            self.viewers[0].view.autoRange(padding=0.01)
        for k, v in enumerate(self.viewers):
            run_id = v.run_id
            self.tasks.submit(
                lambda run_id=run_id: build_overlays(
                    db, detail.image_id, run_id, rgb.shape[:2], fov
                ),
                lambda ov, v=v: self._place(v, ov),
                key=f"compare{k}",
            )

    def _place(self, viewer: ImageViewer, ov) -> None:
        if viewer in self.viewers and getattr(viewer, "run_id", None) == ov.run_id:
            viewer.set_overlays(ov)
            played = [p for p in ov.pointing.values() if p is not None]
            title = next((r.title for r in self.runs if r.id == ov.run_id), "")
            hits = f"   pointing game: {sum(p.hit for p in played)}/{len(played)} structures hit"
            viewer.set_title(title + hits if played else title)
