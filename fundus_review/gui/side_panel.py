"""The side panel: model + CAM choice and the Run buttons, display settings, the read-outs.

Widgets only; the main window owns the logic and connects to these signals. The panel sits in a
tab ("Analysis") of the right dock, so later tools (annotation drawing) get tabs of their own.
"""

from __future__ import annotations

from dataclasses import replace
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
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from fundus_review.gui.side_readouts import CdrBox, PredictionBox, ScoresBox
from fundus_review.gui.viewer import COLORMAPS
from fundus_review.views.overlays import structure_color
from fundus_review.views.queries import RunChoice

DEFAULT_METHODS = ("gradcam", "hirescam", "gradcam++", "xgradcam", "layercam", "eigencam")
BINARIZE_CHOICES = ("otsu", "fixed", "top_k")
PREDICTED = "predicted class"
LAYER_BOXES = (  # (viewer layer, check box text, on at start)
    ("heatmap", "heatmap", True),
    ("regions", "regions", True),
    ("fov", "FOV", False),
    ("binary", "contour", True),
    ("pointing", "max", True),
)


def recipe_key(recipe: tuple[str, tuple[str, ...]]) -> str:
    return f"{recipe[0]} @ {', '.join(recipe[1])}"


class SidePanel(QScrollArea):
    run_requested = Signal(str)  # "image" | "selection" | "all"
    cancel_requested = Signal()
    bundle_changed = Signal(object)  # Path or None
    browse_bundle = Signal()
    heatmap_changed = Signal()  # the CAM recipe or the class the heatmap explains
    compute_requested = Signal()  # compute the missing heatmap for the current image
    display_changed = Signal()  # opacity / colormap / layers

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setWidgetResizable(True)
        # Everything wraps or elides to the dock's width: a sideways scroll bar hides controls.
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        body = QWidget()
        lay = QVBoxLayout(body)
        lay.setContentsMargins(4, 4, 4, 4)
        self.prediction = PredictionBox()
        self.score_box = ScoresBox()
        self.cdr_box = CdrBox()
        lay.addWidget(self._model_group())
        lay.addWidget(self._display_group())
        lay.addWidget(self.prediction)
        lay.addWidget(self.cdr_box)
        lay.addWidget(self.score_box)
        lay.addStretch(1)
        self.setWidget(body)
        self.setMinimumWidth(340)
        self.recipes: dict[str, tuple[str, tuple[str, ...]]] = {}
        self.set_running(False)
        self.show_missing(None)

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
        self.target = QComboBox(toolTip="the class the new heatmaps explain")
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
            item = QListWidgetItem(name)
            item.setToolTip(display)
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
        for combo, first in ((self.target, "predicted"), (self.heat_class, PREDICTED)):
            current = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItems([first, *classes])
            combo.setCurrentIndex(max(0, combo.findText(current)))
            combo.blockSignals(False)
        self.layer.clear()
        self.layer.addItem("")
        self.layer.addItems(layers)

    def chosen_layers(self) -> list[str] | None:
        text = self.layer.currentText().strip()
        return [p.strip() for p in text.split(",") if p.strip()] or None

    def set_running(self, running: bool) -> None:
        for b in (self.run_image, self.run_selection, self.run_all, self.compute):
            b.setEnabled(not running)
        self.cancel.setEnabled(running)
        # "%v / %m" (images done / to do) only means something while a job runs.
        self.progress.setFormat("%v / %m" if running else "idle")
        if not running:
            self.progress.setRange(0, 1)
            self.progress.setValue(0)

    # ------------------------------------------------------------------------------ display
    def _display_group(self) -> QGroupBox:
        g = QGroupBox("Display")
        f = QFormLayout(g)
        self.recipe = QComboBox(toolTip="which stored CAM (method @ layer) to show")
        self.recipe.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.recipe.setMinimumContentsLength(14)
        f.addRow("heatmap", self.recipe)
        self.heat_class = QComboBox(toolTip="the class the shown heatmap explains")
        self.heat_class.addItem(PREDICTED)
        f.addRow("explains", self.heat_class)
        self.compute = QPushButton("Compute")
        self.missing = QLabel("")
        self.missing.setWordWrap(True)
        self.missing.setStyleSheet("color: #c77700;")
        mrow = QHBoxLayout()
        mrow.addWidget(self.missing, 1)
        mrow.addWidget(self.compute)
        f.addRow(mrow)
        self.opacity = QSlider(Qt.Horizontal, minimum=0, maximum=100, value=50)
        f.addRow("opacity", self.opacity)
        self.colormap = QComboBox()
        self.colormap.addItems(list(COLORMAPS))
        self.fade = QCheckBox("fade low", checked=True, toolTip="low values transparent")
        crow = QHBoxLayout()
        crow.addWidget(self.colormap, 1)
        crow.addWidget(self.fade)
        f.addRow("colormap", crow)
        self.binarize = QComboBox(toolTip="how the heatmap is binarized for its contour")
        self.binarize.addItems(BINARIZE_CHOICES)
        f.addRow("contour", self.binarize)
        self.layer_boxes: dict[str, QCheckBox] = {}
        self.layer_grid = QGridLayout()
        self.layer_grid.setContentsMargins(0, 0, 0, 0)
        for layer, title, on in LAYER_BOXES:
            self.add_layer_box(layer, title, on)
        f.addRow("show", self.layer_grid)
        self.structure_box = QWidget()
        self.structure_layout = QGridLayout(self.structure_box)
        self.structure_layout.setContentsMargins(0, 0, 0, 0)
        self.structure_boxes: dict[str, QCheckBox] = {}
        f.addRow("regions", self.structure_box)
        self.recipe.currentIndexChanged.connect(lambda _i: self.heatmap_changed.emit())
        self.heat_class.currentIndexChanged.connect(lambda _i: self.heatmap_changed.emit())
        self.compute.clicked.connect(self.compute_requested)
        self.opacity.valueChanged.connect(self.display_changed)
        self.colormap.currentIndexChanged.connect(self.display_changed)
        self.fade.toggled.connect(self.display_changed)
        return g

    def add_layer_box(self, layer: str, title: str, on: bool = True) -> QCheckBox:
        """A visibility toggle for a viewer layer (extra layers register theirs here too)."""
        box = QCheckBox(title, checked=on)
        box.toggled.connect(self.display_changed)
        n = len(self.layer_boxes)
        self.layer_boxes[layer] = box
        self.layer_grid.addWidget(box, n // 3, n % 3)
        return box

    def set_runs(self, runs: list[RunChoice]) -> None:
        """Offer each recipe (method @ layers) once; the class is chosen separately."""
        current = self.recipe.currentText()
        had_recipes = bool(self.recipes)
        self.recipes = {}
        for r in runs:
            self.recipes.setdefault(recipe_key(r.recipe), r.recipe)
        self.recipe.blockSignals(True)
        self.recipe.clear()
        self.recipe.addItem("(none)")
        self.recipe.addItems(list(self.recipes))
        idx = self.recipe.findText(current) if current else -1
        if idx < 0 or (idx == 0 and not had_recipes):
            # The first heatmaps of this model: show them rather than keep "(none)".
            idx = 1 if self.recipes else 0
        self.recipe.setCurrentIndex(idx)
        self.recipe.blockSignals(False)

    def chosen_recipe(self) -> tuple[str, tuple[str, ...]] | None:
        return self.recipes.get(self.recipe.currentText())

    def chosen_class(self) -> str | None:
        """The class the heatmap should explain; None = each image's predicted class."""
        text = self.heat_class.currentText()
        return None if text in ("", PREDICTED) else text

    def show_missing(self, text: str | None) -> None:
        self.missing.setText(text or "")
        self.missing.setVisible(bool(text))
        self.compute.setVisible(bool(text))

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
            # A dark outline keeps light structure colours (yellow, white) readable.
            box.setStyleSheet(
                f"QCheckBox {{ color: rgb({r},{g},{b}); background: #333; padding: 1px 3px; }}"
            )
            box.toggled.connect(self.display_changed)
            self.structure_boxes[name] = box
            n = len(self.structure_boxes) - 1
            self.structure_layout.addWidget(box, n // 2, n % 2)

    # ------------------------------------------------------------------------------ read-outs
    def show_prediction(self, detail, target_index: int | None = None) -> None:
        self.prediction.show_prediction(detail, target_index)

    def show_scores(self, ov) -> None:
        self.cdr_box.show_cdr(ov)
        if ov is not None and ov.scores:
            ov = replace(ov, scores=label_reviewers(ov.scores))
        self.score_box.show_scores(ov)


def label_reviewers(
    scores: list[tuple[str, str, str, float | None]],
) -> list[tuple[str, str, str, float | None]]:
    """Score rows (structure, reviewer, metric, value) with the reviewer named in the structure
    where several reviewers drew it: "optic_disc" of "Dr. Rao" and of "reference" are different
    masks with different scores, and one row would show only one of them. The name goes on a
    second line, so the row headers do not get wider and squeeze the score columns."""
    who: dict[str, set[str]] = {}
    for structure, reviewer, _m, _v in scores:
        who.setdefault(structure, set()).add(reviewer)
    return [(f"{s}\n({r})" if len(who[s]) > 1 else s, r, m, v) for s, r, m, v in scores]
