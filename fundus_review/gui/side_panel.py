"""The side panel: model + CAM choice and the Run buttons, display settings, the numbers.

Widgets only; the main window owns the logic and connects to these signals.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSlider,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from fundus_review.gui.overlays import Overlays, structure_color
from fundus_review.gui.viewer import COLORMAPS
from fundus_review.viewdata import ImageDetail, RunInfo

DEFAULT_METHODS = ("gradcam", "hirescam", "gradcam++", "xgradcam", "layercam", "eigencam")
BINARIZE_CHOICES = ("otsu", "fixed", "top_k")
SCORE_ROWS = ("pointing_hit", "energy_in_mask", "pixel_auc", "iou_otsu", "iou_area_match")
SCORE_HEADERS = {
    "pointing_hit": "hit",
    "energy_in_mask": "energy",
    "pixel_auc": "AUC",
    "iou_otsu": "IoU otsu",
    "iou_area_match": "IoU area",
}


class SidePanel(QScrollArea):
    run_requested = Signal(str)  # "image" | "selection" | "all"
    cancel_requested = Signal()
    bundle_changed = Signal(object)  # Path or None
    browse_bundle = Signal()
    run_changed = Signal(object)  # CAM run id or None
    display_changed = Signal()  # opacity / colormap / layers / binarization

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setWidgetResizable(True)
        body = QWidget()
        lay = QVBoxLayout(body)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self._model_group())
        lay.addWidget(self._display_group())
        lay.addWidget(self._prediction_group())
        lay.addWidget(self._scores_group())
        lay.addStretch(1)
        self.setWidget(body)
        self.setMinimumWidth(370)
        self.set_running(False)

    # ------------------------------------------------------------------------------ model
    def _model_group(self) -> QGroupBox:
        g = QGroupBox("Model and CAM")
        f = QFormLayout(g)
        self.bundle = QComboBox()
        self.bundle.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.bundle.setMinimumContentsLength(14)
        self.bundle_browse = QPushButton("…", toolTip="open a model bundle folder", maximumWidth=30)
        row = QHBoxLayout()
        row.addWidget(self.bundle, 1)
        row.addWidget(self.bundle_browse)
        f.addRow("bundle", row)
        self.methods = QListWidget()
        self.methods.setMaximumHeight(96)
        self.methods.setSelectionMode(QAbstractItemView.NoSelection)
        self.set_methods({m: m for m in DEFAULT_METHODS}, checked=("gradcam",))
        f.addRow("methods", self.methods)
        self.target = QComboBox()
        self.target.addItem("predicted")
        f.addRow("target class", self.target)
        self.layer = QComboBox(editable=True)
        self.layer.lineEdit().setPlaceholderText("card default")
        f.addRow("layer", self.layer)
        buttons = QHBoxLayout()
        self.run_image = QPushButton("Run: image")
        self.run_selection = QPushButton("selection")
        self.run_all = QPushButton("all")
        for b in (self.run_image, self.run_selection, self.run_all):
            buttons.addWidget(b)
        f.addRow(buttons)
        self.progress = QProgressBar()
        self.progress.setFormat("%v / %m")
        self.cancel = QPushButton("Cancel")
        prow = QHBoxLayout()
        prow.addWidget(self.progress, 1)
        prow.addWidget(self.cancel)
        f.addRow(prow)
        self.rate = QLabel("")
        f.addRow(self.rate)
        self.run_image.clicked.connect(lambda: self.run_requested.emit("image"))
        self.run_selection.clicked.connect(lambda: self.run_requested.emit("selection"))
        self.run_all.clicked.connect(lambda: self.run_requested.emit("all"))
        self.cancel.clicked.connect(self.cancel_requested)
        self.bundle.currentIndexChanged.connect(
            lambda _i: self.bundle_changed.emit(self.bundle_path())
        )
        self.bundle_browse.clicked.connect(self.browse_bundle)
        return g

    def set_methods(self, names: dict[str, str], checked=None) -> None:
        keep = set(checked) if checked is not None else set(self.checked_methods())
        self.methods.clear()
        for name, display in names.items():
            item = QListWidgetItem(f"{name}  ({display})" if display != name else name)
            item.setData(Qt.UserRole, name)
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            item.setCheckState(Qt.Checked if name in keep else Qt.Unchecked)
            self.methods.addItem(item)

    def checked_methods(self) -> list[str]:
        return [
            self.methods.item(i).data(Qt.UserRole)
            for i in range(self.methods.count())
            if self.methods.item(i).checkState() == Qt.Checked
        ]

    def set_checked_methods(self, names) -> None:
        for i in range(self.methods.count()):
            item = self.methods.item(i)
            item.setCheckState(Qt.Checked if item.data(Qt.UserRole) in names else Qt.Unchecked)

    def set_bundles(self, bundles: list[tuple[str, Path]], current: Path | None = None) -> None:
        self.bundle.blockSignals(True)
        self.bundle.clear()
        for title, path in bundles:
            self.bundle.addItem(title, str(path))
            self.bundle.setItemData(self.bundle.count() - 1, str(path), Qt.ToolTipRole)
        if current is not None:
            idx = self.bundle.findData(str(current))
            if idx < 0:
                self.bundle.addItem(Path(current).name, str(current))
                idx = self.bundle.count() - 1
            self.bundle.setCurrentIndex(idx)
        self.bundle.blockSignals(False)

    def bundle_path(self) -> Path | None:
        data = self.bundle.currentData()
        return Path(data) if data else None

    def set_card(self, classes: list[str], layers: list[str]) -> None:
        current = self.target.currentText()
        self.target.clear()
        self.target.addItems(["predicted", *classes])
        self.target.setCurrentIndex(max(0, self.target.findText(current)))
        self.layer.clear()
        self.layer.addItem("")
        self.layer.addItems(layers)

    def chosen_layers(self) -> list[str] | None:
        text = self.layer.currentText().strip()
        return [p.strip() for p in text.split(",") if p.strip()] or None

    def set_running(self, running: bool) -> None:
        for b in (self.run_image, self.run_selection, self.run_all):
            b.setEnabled(not running)
        self.cancel.setEnabled(running)
        if not running:
            self.progress.setRange(0, 1)
            self.progress.setValue(0)

    # ------------------------------------------------------------------------------ display
    def _display_group(self) -> QGroupBox:
        g = QGroupBox("Display")
        f = QFormLayout(g)
        self.run_choice = QComboBox()
        self.run_choice.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.run_choice.setMinimumContentsLength(14)
        f.addRow("heatmap", self.run_choice)
        self.opacity = QSlider(Qt.Horizontal, minimum=0, maximum=100, value=50)
        f.addRow("opacity", self.opacity)
        self.colormap = QComboBox()
        self.colormap.addItems(list(COLORMAPS))
        self.fade = QCheckBox("fade low values", checked=True)
        crow = QHBoxLayout()
        crow.addWidget(self.colormap, 1)
        crow.addWidget(self.fade)
        f.addRow("colormap", crow)
        self.binarize = QComboBox()
        self.binarize.addItems(BINARIZE_CHOICES)
        f.addRow("contour", self.binarize)
        self.layer_boxes: dict[str, QCheckBox] = {}
        boxes = QHBoxLayout()
        for layer, title, on in (
            ("heatmap", "heatmap", True),
            ("regions", "regions", True),
            ("fov", "FOV", False),
            ("binary", "contour", True),
            ("pointing", "max", True),
        ):
            box = QCheckBox(title, checked=on)
            box.toggled.connect(self.display_changed)
            self.layer_boxes[layer] = box
            boxes.addWidget(box)
        f.addRow(boxes)
        self.structure_box = QWidget()
        self.structure_layout = QGridLayout(self.structure_box)
        self.structure_layout.setContentsMargins(0, 0, 0, 0)
        self.structure_boxes: dict[str, QCheckBox] = {}
        f.addRow("regions", self.structure_box)
        self.run_choice.currentIndexChanged.connect(lambda _i: self.run_changed.emit(self.run_id()))
        self.opacity.valueChanged.connect(self.display_changed)
        self.colormap.currentIndexChanged.connect(self.display_changed)
        self.fade.toggled.connect(self.display_changed)
        self.binarize.currentIndexChanged.connect(self.display_changed)
        return g

    def set_runs(self, runs: list[RunInfo], keep: int | None = None) -> None:
        keep = self.run_id() if keep is None else keep
        self.run_choice.blockSignals(True)
        self.run_choice.clear()
        self.run_choice.addItem("(none)", None)
        for r in runs:
            self.run_choice.addItem(r.title, r.id)
        idx = self.run_choice.findData(keep) if keep is not None else -1
        if idx < 0 and runs:
            idx = 1
        self.run_choice.setCurrentIndex(max(idx, 0))
        self.run_choice.blockSignals(False)

    def run_id(self) -> int | None:
        return self.run_choice.currentData()

    def set_structures(self, structures: list[str]) -> None:
        for name in list(self.structure_boxes):
            if name not in structures:
                box = self.structure_boxes.pop(name)
                box.setParent(None)
        for name in structures:
            if name in self.structure_boxes:
                continue
            box = QCheckBox(name.replace("_", " "), checked=True)
            r, g, b = structure_color(name)
            box.setStyleSheet(f"QCheckBox {{ color: rgb({r},{g},{b}); }}")
            box.toggled.connect(self.display_changed)
            self.structure_boxes[name] = box
            n = len(self.structure_boxes) - 1
            self.structure_layout.addWidget(box, n // 2, n % 2)

    # ------------------------------------------------------------------------------ numbers
    def _prediction_group(self) -> QGroupBox:
        g = QGroupBox("Prediction")
        v = QVBoxLayout(g)
        self.pred_label = QLabel("—")
        self.pred_label.setWordWrap(True)
        self.pred_label.setTextFormat(Qt.RichText)
        self.probs = QTableWidget(0, 2)
        self.probs.setHorizontalHeaderLabels(["class", "probability"])
        self.probs.horizontalHeader().setSectionResizeMode(0, QHeaderView.Stretch)
        self.probs.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeToContents)
        self.probs.verticalHeader().hide()
        self.probs.setMaximumHeight(110)
        self.probs.setEditTriggers(QAbstractItemView.NoEditTriggers)
        v.addWidget(self.pred_label)
        v.addWidget(self.probs)
        return g

    def show_prediction(self, detail: ImageDetail | None, target_index: int | None = None) -> None:
        if detail is None:
            self.pred_label.setText("—")
            self.probs.setRowCount(0)
            return
        head = f"<b>{detail.rel_path}</b><br>{detail.width}×{detail.height}, true: <b>{detail.label or '—'}</b>"
        if detail.probs is None:
            self.pred_label.setText(head + "<br>no prediction for this model yet")
            self.probs.setRowCount(0)
            return
        pred = detail.prediction
        ok = "" if detail.label is None else (" ✔" if pred == detail.label else " ✘ misclassified")
        conf = detail.probs[detail.predicted_index]
        text = f"{head}<br>predicted: <b>{pred}</b> {conf:.1%}{ok}"
        if target_index is not None and detail.classes:
            text += f"<br>heatmap target: {detail.classes[target_index]}"
        self.pred_label.setText(text)
        order = sorted(range(len(detail.probs)), key=lambda i: -detail.probs[i])
        self.probs.setRowCount(len(order))
        for r, i in enumerate(order):
            name = detail.classes[i] if i < len(detail.classes) else str(i)
            self.probs.setItem(r, 0, QTableWidgetItem(name))
            self.probs.setItem(r, 1, QTableWidgetItem(f"{detail.probs[i]:.4f}"))

    def _scores_group(self) -> QGroupBox:
        g = QGroupBox("Localization scores")
        v = QVBoxLayout(g)
        self.scores = QTableWidget(0, 0)
        self.scores.verticalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.scores.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.scores.setMinimumHeight(190)
        self.scores.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.scores_note = QLabel("")
        self.scores_note.setWordWrap(True)
        v.addWidget(self.scores)
        v.addWidget(self.scores_note)
        return g

    def show_scores(self, ov: Overlays | None) -> None:
        """A structure x metric table: stored scores, or live ones where none are stored."""
        self.scores.clear()
        if ov is None or ov.heatmap is None:
            self.scores.setRowCount(0)
            self.scores.setColumnCount(0)
            self.scores_note.setText(
                "no heatmap shown" if ov is None or not ov.problems else "\n".join(ov.problems)
            )
            return
        table: dict[str, dict[str, float | None]] = {}
        for structure, _reviewer, metric, value in ov.scores:
            table.setdefault(structure, {})[metric] = value
        source = "stored"
        if not table and ov.live_scores:
            table, source = ov.live_scores, "computed now (not stored)"
        structures = sorted(table)
        metrics = [m for m in SCORE_ROWS if any(m in table[s] for s in structures)]
        self.scores.setRowCount(len(structures))
        self.scores.setColumnCount(len(metrics))
        self.scores.setHorizontalHeaderLabels([SCORE_HEADERS.get(m, m) for m in metrics])
        self.scores.setVerticalHeaderLabels([s.replace("_", " ") for s in structures])
        for r, s in enumerate(structures):
            every = "\n".join(
                f"{m}: {'—' if v is None else f'{v:.4f}'}" for m, v in sorted(table[s].items())
            )
            for c, m in enumerate(metrics):
                v = table[s].get(m)
                item = QTableWidgetItem("—" if v is None else f"{v:.3f}")
                item.setToolTip(every)  # every metric of this structure on hover
                self.scores.setItem(r, c, item)
        hits = [
            f"{s}: {'hit' if p.hit else 'miss'} ({p.distance_px:.0f} px, tol {p.tolerance_px:.0f})"
            for s, p in sorted(ov.pointing.items())
            if p is not None
        ]
        note = f"scores {source}." if structures else "no expert regions on this image."
        self.scores_note.setText("\n".join([note, *hits, *ov.problems]))
