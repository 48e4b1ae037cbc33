"""Compare mode: the same image under several CAM runs (methods, layers, classes, models).

Every tile is an ImageViewer whose view is linked to the first one, so zooming into the disc on
one tile zooms all of them. Tiles share the photo array; only their heatmap layers differ. Runs
of every model with heatmaps in the dataset are offered, so two models can be compared too.
"""

from __future__ import annotations

import math

from PySide6.QtCore import Qt, Signal, Slot
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

from fundus_review.gui.viewer import ImageViewer
from fundus_review.views.overlays import build_overlays
from fundus_review.views.pyramid import Pyramid
from fundus_review.views.queries import RunChoice

MAX_TILES = 6


class CompareView(QWidget):
    tiles_changed = Signal()  # new tiles need the display settings (opacity, colormap, layers)
    tile_loaded = Signal(object)  # the ImageViewer whose overlays just arrived

    def __init__(self, session, tasks, parent=None) -> None:
        super().__init__(parent)
        self.session, self.tasks = session, tasks
        self.runs: list[RunChoice] = []
        self.viewers: list[ImageViewer] = []
        self.image = None  # (detail, rgb, fov)
        self.pyramid = None
        self.choice = QListWidget()
        self.choice.setFlow(QListWidget.LeftToRight)
        self.choice.setWrapping(True)
        self.choice.setMaximumHeight(64)
        self.choice.setSelectionMode(QAbstractItemView.NoSelection)
        self.grid = QGridLayout()
        self.grid.setSpacing(2)
        self.empty = QLabel("No CAM runs in this dataset yet: run one (Analysis menu).")
        self.empty.setAlignment(Qt.AlignCenter)
        top = QHBoxLayout()
        top.addWidget(QLabel(f"Show (up to {MAX_TILES}):"))
        top.addWidget(self.choice, 1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addLayout(top)
        lay.addWidget(self.empty)
        lay.addLayout(self.grid, 1)
        self.choice.itemChanged.connect(self._rebuild)

    def set_runs(self, runs: list[RunChoice]) -> None:
        checked = set(self.checked_ids())
        if not checked:
            checked = {r.id for r in runs[:4]}
        self.runs = list(runs)
        several_models = len({r.model_id for r in runs}) > 1
        self.choice.blockSignals(True)
        self.choice.clear()
        for r in runs:
            item = QListWidgetItem(r.long_title if several_models else r.title)
            item.setData(Qt.UserRole, r.id)
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            item.setCheckState(Qt.Checked if r.id in checked else Qt.Unchecked)
            self.choice.addItem(item)
        self.choice.blockSignals(False)
        self.empty.setVisible(not runs)
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

    def _title(self, run_id: int) -> str:
        several_models = len({r.model_id for r in self.runs}) > 1
        for r in self.runs:
            if r.id == run_id:
                return r.long_title if several_models else r.title
        return "?"

    @Slot()
    def _rebuild(self) -> None:
        ids = self.checked_ids()
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
            v.set_title(self._title(ids[k]))
        self.tiles_changed.emit()
        self._load(new_photo=False)

    def set_image(self, detail, rgb, fov, pyramid=None) -> None:
        """The image to compare; `pyramid` (of rgb) is shared by every tile."""
        self.image = (detail, rgb, fov)
        self.pyramid = pyramid if pyramid is not None else Pyramid(rgb)
        self._load(new_photo=True)

    def _load(self, new_photo: bool) -> None:
        # Hidden tiles load nothing: the main window hands the image over when the tab opens.
        if self.image is None or self.session.db is None or not self.isVisible():
            return
        detail, rgb, fov = self.image
        db = self.session.db
        fit = False
        for v in self.viewers:
            if new_photo or v.image_shape is None:
                v.set_photo(self.pyramid)
                fit = True
        if self.viewers and fit:
            # Linked views follow the first one: fit it once all tiles hold the photo.
            self.viewers[0].fit()
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
        if viewer not in self.viewers or getattr(viewer, "run_id", None) != ov.run_id:
            return
        if self.image is None or ov.image_id != self.image[0].image_id:
            return
        viewer.set_overlays(ov)
        title = self._title(ov.run_id)
        if ov.heatmap is None:
            viewer.show_message(ov.problems[0] if ov.problems else "not computed for this image")
        played = [p for p in ov.pointing.values() if p is not None]
        if played:
            title += f"   pointing game: {sum(p.hit for p in played)}/{len(played)} hit"
        viewer.set_title(title)
        self.tile_loaded.emit(viewer)
