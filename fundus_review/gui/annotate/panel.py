"""AnnotationPanel: the side panel of the drawing tools (reviewer, structures, tools, regions,
undo/redo, review status and verdict, help)."""

from __future__ import annotations

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QColorDialog,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from fundus_review.core.vocabulary import provenance
from fundus_review.errors import FundusReviewError
from fundus_review.gui.annotate.controller import TOOL_NAMES, AnnotationController
from fundus_review.gui.annotate.proposals import PROVENANCE_NOTE, ProposalBox
from fundus_review.gui.annotate.review_box import ReviewBox
from fundus_review.gui.annotate.reviewer import ask_reviewer
from fundus_review.gui.annotate.shortcuts import TOOLS, ShortcutHelp
from fundus_review.review.labelsets import TOOLS as DEFAULT_TOOLS
from fundus_review.review.labelsets import add_user_structure, generated_color, load_label_set


def swatch(color: tuple[int, int, int]) -> QIcon:
    pm = QPixmap(14, 14)
    pm.fill(QColor(*color))
    painter = QPainter(pm)  # a dark rim: white (macula) and yellow swatches vanish otherwise
    painter.setPen(QColor(70, 70, 70))
    painter.drawRect(0, 0, 13, 13)
    painter.end()
    return QIcon(pm)


class AddStructureDialog(QDialog):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Add a structure")
        form = QFormLayout(self)
        self.name = QLineEdit()
        self.name.setPlaceholderText("e.g. drusen (becomes the masks/<name>/ folder)")
        self.title = QLineEdit()
        self.tool = QComboBox()
        self.tool.addItems(list(DEFAULT_TOOLS))
        self.color_button = QPushButton("Colour…")
        self.color: tuple[int, int, int] | None = None
        self.color_button.clicked.connect(self._pick_color)
        form.addRow("Name", self.name)
        form.addRow("Title", self.title)
        form.addRow("Default tool", self.tool)
        form.addRow("Colour", self.color_button)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def _pick_color(self) -> None:
        start = QColor(*(self.color or generated_color(self.name.text() or "x")))
        chosen = QColorDialog.getColor(start, self, "Structure colour")
        if chosen.isValid():
            self.color = (chosen.red(), chosen.green(), chosen.blue())
            self.color_button.setIcon(swatch(self.color))


class AnnotationPanel(QWidget):
    reviewer_changed = Signal(str)

    def __init__(self, controller: AnnotationController, settings: QSettings | None = None,
                 parent: QWidget | None = None) -> None:  # fmt: skip
        super().__init__(parent)
        self.c, self.settings = controller, settings
        self._help: ShortcutHelp | None = None
        layout = QVBoxLayout(self)
        layout.addWidget(self._reviewer_row())
        layout.addWidget(self._structures_box())
        layout.addWidget(self._tools_box())
        layout.addWidget(self._regions_box())
        layout.addWidget(ProposalBox(controller))
        self.review = ReviewBox(controller)
        layout.addWidget(self.review)
        help_button = QPushButton("Keyboard shortcuts (F1)")
        help_button.clicked.connect(self.show_help)
        layout.addWidget(help_button)
        layout.addStretch(1)
        c = controller
        c.tool_changed.connect(self._on_tool)
        c.structure_changed.connect(self._on_structure)
        c.brush_size_changed.connect(self._on_brush_size)
        c.changed.connect(self._fill_regions)
        c.others_visible_changed.connect(self._on_others)
        c.selection_changed.connect(self._on_selection)
        c.undo_group.canUndoChanged.connect(self.undo_button.setEnabled)
        c.undo_group.canRedoChanged.connect(self.redo_button.setEnabled)
        self.fill_structures()
        self._on_tool(c.tool)
        self._on_brush_size(c.brush_diameter)
        self._fill_regions()
        self.update_reviewer()

    # ---------------------------------------------------------------------------- reviewer
    def _reviewer_row(self) -> QWidget:
        box = QWidget()
        row = QHBoxLayout(box)
        row.setContentsMargins(0, 0, 0, 0)
        self.reviewer_label = QLabel()
        self.change_reviewer = QPushButton("Change…")
        self.change_reviewer.clicked.connect(self.ask_reviewer)
        row.addWidget(self.reviewer_label, 1)
        row.addWidget(self.change_reviewer)
        return box

    def update_reviewer(self) -> None:
        name = self.c.reviewer
        self.reviewer_label.setText(
            f"Reviewer: <b>{name}</b>" if name else "Reviewer: <i>not set</i>"
        )

    def ask_reviewer(self) -> None:
        settings = self.settings if self.settings is not None else QSettings()
        name = ask_reviewer(self, settings, self.c.db, self.c.reviewer)
        if name and name != self.c.reviewer:
            self.c.set_reviewer(name)
            self.update_reviewer()
            self.reviewer_changed.emit(name)

    # -------------------------------------------------------------------------- structures
    def _structures_box(self) -> QGroupBox:
        box = QGroupBox("Structure")
        v = QVBoxLayout(box)
        self.structures = QListWidget()
        self.structures.setMaximumHeight(170)
        self.structures.currentItemChanged.connect(self._structure_clicked)
        v.addWidget(self.structures)
        add = QPushButton("Add structure…")
        add.clicked.connect(self.add_structure)
        v.addWidget(add)
        return box

    def fill_structures(self) -> None:
        names = {r.structure for r in self.c.regions}
        labels = self.c.labels.with_names(names)
        self._listed = labels.names()
        self.structures.blockSignals(True)
        self.structures.clear()
        for i, sd in enumerate(labels.structures):
            key = f"  ({i + 1})" if i < 9 else ""
            item = QListWidgetItem(swatch(sd.color), f"{sd.title}{key}")
            item.setData(Qt.UserRole, sd.name)
            item.setToolTip(f"{sd.name} – default tool: {sd.tool}")
            self.structures.addItem(item)
        self.structures.blockSignals(False)
        self._on_structure(self.c.structure)

    def _structure_clicked(self, item: QListWidgetItem | None, _prev=None) -> None:  # noqa: ANN001
        if item is not None and item.data(Qt.UserRole) != self.c.structure:
            self.c.set_structure(item.data(Qt.UserRole))

    def _on_structure(self, name: str) -> None:
        for i in range(self.structures.count()):
            if self.structures.item(i).data(Qt.UserRole) == name:
                self.structures.blockSignals(True)
                self.structures.setCurrentRow(i)
                self.structures.blockSignals(False)

    def add_structure(self) -> None:
        dlg = AddStructureDialog(self)
        if dlg.exec() != QDialog.Accepted:
            return
        try:
            sd = add_user_structure(dlg.name.text(), dlg.title.text() or None, dlg.color,
                                    dlg.tool.currentText(), label_set=self.c.labels)  # fmt: skip
            self.c.set_label_set(load_label_set())
        except FundusReviewError as exc:
            self.c.error.emit(str(exc))
            return
        self.fill_structures()
        self.c.set_structure(sd.name)

    # ------------------------------------------------------------------------------- tools
    def _tools_box(self) -> QGroupBox:
        box = QGroupBox("Tool")
        grid = QGridLayout(box)
        self.tool_buttons = QButtonGroup(self)
        self.tool_buttons.setExclusive(True)
        for i, tool in enumerate(TOOL_NAMES):
            key, text = TOOLS[tool]
            b = QToolButton()
            b.setText(f"{tool.capitalize()} ({key})")
            b.setToolTip(text)
            b.setCheckable(True)
            b.setToolButtonStyle(Qt.ToolButtonTextOnly)
            self.tool_buttons.addButton(b, i)
            grid.addWidget(b, i // 2, i % 2)
        self.tool_buttons.idClicked.connect(lambda i: self.c.set_tool(TOOL_NAMES[i]))
        row = len(TOOL_NAMES) // 2 + 1
        self.brush_size = QDoubleSpinBox()
        self.brush_size.setRange(1, 1000)
        self.brush_size.setDecimals(0)
        self.brush_size.setSuffix(" px")
        self.brush_size.setToolTip("brush / eraser diameter in image pixels ([ and ])")
        self.brush_size.valueChanged.connect(self.c.set_brush_size)
        grid.addWidget(QLabel("Brush size"), row, 0)
        grid.addWidget(self.brush_size, row, 1)
        self.others = QCheckBox("Show other reviewers (H)")
        self.others.setChecked(self.c.others_visible)
        self.others.toggled.connect(self.c.set_others_visible)
        grid.addWidget(self.others, row + 1, 0, 1, 2)
        self.undo_button = QPushButton("Undo")
        self.redo_button = QPushButton("Redo")
        self.undo_button.clicked.connect(self.c.undo_group.undo)
        self.redo_button.clicked.connect(self.c.undo_group.redo)
        self.undo_button.setEnabled(self.c.undo_group.canUndo())
        self.redo_button.setEnabled(self.c.undo_group.canRedo())
        grid.addWidget(self.undo_button, row + 2, 0)
        grid.addWidget(self.redo_button, row + 2, 1)
        return box

    def _on_tool(self, tool: str) -> None:
        self.tool_buttons.button(TOOL_NAMES.index(tool)).setChecked(True)

    def _on_brush_size(self, value: float) -> None:
        self.brush_size.blockSignals(True)
        self.brush_size.setValue(value)
        self.brush_size.blockSignals(False)

    # ----------------------------------------------------------------------------- regions
    def _regions_box(self) -> QGroupBox:
        box = QGroupBox("Regions on this image")
        v = QVBoxLayout(box)
        self.region_list = QListWidget()
        self.region_list.setMaximumHeight(150)
        self.region_list.currentItemChanged.connect(self._region_clicked)
        v.addWidget(self.region_list)
        delete = QPushButton("Delete selected (Del)")
        delete.clicked.connect(self.c.delete_selected)
        v.addWidget(delete)
        return box

    def _on_others(self, visible: bool) -> None:
        self.others.blockSignals(True)
        self.others.setChecked(visible)
        self.others.blockSignals(False)

    def _fill_regions(self) -> None:
        if set(self.c.labels.with_names({r.structure for r in self.c.regions}).names()) != set(
            self._listed
        ):  # a structure only this image's regions use (imported, or another lab's)
            self.fill_structures()
        self.region_list.blockSignals(True)
        self.region_list.clear()
        for r in self.c.regions:
            own = self.c.own(r)
            text = f"{r.structure} · {r.kind}" + ("" if own else f" · {r.reviewer} (read-only)")
            text += PROVENANCE_NOTE.get(provenance(r.source), "")
            item = QListWidgetItem(swatch(self.c.structure_def(r.structure).color), text)
            item.setData(Qt.UserRole, r.id)
            if not own:
                item.setForeground(QColor(140, 140, 140))
            self.region_list.addItem(item)
            if r.id == self.c.selected_id:
                self.region_list.setCurrentItem(item)
        self.region_list.blockSignals(False)
        self.review.update_from_controller()

    def _region_clicked(self, item: QListWidgetItem | None, _prev=None) -> None:  # noqa: ANN001
        if item is not None:
            self.c.select(item.data(Qt.UserRole))

    def _on_selection(self, region) -> None:  # noqa: ANN001 - Region | None
        rid = None if region is None else region.id
        self.region_list.blockSignals(True)
        for i in range(self.region_list.count()):
            if self.region_list.item(i).data(Qt.UserRole) == rid:
                self.region_list.setCurrentRow(i)
                break
        else:
            self.region_list.clearSelection()
            self.region_list.setCurrentRow(-1)
        self.region_list.blockSignals(False)

    def show_help(self) -> None:
        if self._help is None:
            self._help = ShortcutHelp(self)
        self._help.show()
        self._help.raise_()
