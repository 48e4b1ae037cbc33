"""Keyboard shortcuts of the drawing tools, and the help panel that lists them (F1)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QVBoxLayout, QWidget

TOOLS: dict[str, tuple[str, str]] = {  # tool -> (key, what it does)
    "select": ("V", "select / edit: click a region; drag handles; drag empty space pans"),
    "ellipse": ("E", "ellipse: drag a box (Shift: circle), then drag the handles to resize/rotate"),
    "polygon": ("P", "polygon: click vertices, double-click or Enter closes; then drag vertices, "
                "click an edge to insert one, Shift+click or right-click a vertex to delete it"),
    "brush": ("B", "brush: paint (adds to the selected painted region, else starts a new one)"),
    "eraser": ("X", "eraser: erase from the selected region, else from every region of the "
               "structure under the stroke"),
    "fill": ("F", "fill: click inside a closed outline to fill it"),
    "point": ("T", "point: click to mark a point (e.g. the fovea); drag it to move"),
    "scissors": ("S", "scissors: click anchors, the path snaps to edges of the photo; "
                 "double-click, Enter or a click on the first anchor closes it into a polygon; "
                 "Backspace removes the last anchor"),
    "box": ("G", "box: drag a box around a lesion; GrabCut outlines what is inside as a polygon "
            "of the current structure"),
}  # fmt: skip

ACTIONS: dict[str, tuple[str, str]] = {  # action -> (key, what it does)
    "undo": ("Ctrl+Z", "undo the last edit (saved at once)"),
    "redo": ("Ctrl+Shift+Z", "redo (also Ctrl+Y)"),
    "delete": ("Delete", "delete the selected region (undoable)"),
    "finish": ("Return", "close the polygon being drawn / finish the region (next stroke starts "
               "a new one)"),
    "cancel": ("Esc", "cancel the shape being drawn, or deselect"),
    "remove_vertex": ("Backspace", "while drawing a polygon: remove the last vertex"),
    "smaller": ("[", "smaller brush / eraser"),
    "larger": ("]", "larger brush / eraser"),
    "others": ("H", "show / hide other reviewers' regions"),
    "help": ("F1", "this help"),
    "verdict_yes": ("Alt+Y", "verdict on the shown heatmap: yes, it looks at the right region"),
    "verdict_partly": ("Alt+P", "verdict: partly"),
    "verdict_no": ("Alt+N", "verdict: no"),
    "status_in_progress": ("Alt+2", "review status: in progress"),
    "status_done": ("Alt+3", "review status: done"),
    "status_flagged": ("Alt+4", "review status: flagged"),
}  # fmt: skip
STRUCTURE_KEYS = "1-9: choose the n-th structure of the label set"
NAVIGATION = "Mouse wheel: zoom; middle or right drag: pan/zoom while a drawing tool is active"


def key_text(key: str) -> str:
    return QKeySequence(key).toString(QKeySequence.NativeText) or key


def help_html() -> str:
    rows = [f"<tr><td><b>{key_text(k)}</b></td><td>{text}</td></tr>" for k, text in TOOLS.values()]
    rows.append("<tr><td colspan=2><hr></td></tr>")
    rows += [
        f"<tr><td><b>{key_text(k)}</b></td><td>{text}</td></tr>" for k, text in ACTIONS.values()
    ]
    rows.append(f"<tr><td colspan=2>{STRUCTURE_KEYS}</td></tr>")
    rows.append(f"<tr><td colspan=2>{NAVIGATION}</td></tr>")
    return (
        "<h3>Drawing expert regions</h3><p>Every finished edit is saved to the database at once; "
        "there is nothing to save by hand.</p><table cellspacing=4>" + "".join(rows) + "</table>"
    )


class ShortcutHelp(QDialog):
    """Non-modal list of every shortcut."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Drawing tools – keyboard shortcuts")
        layout = QVBoxLayout(self)
        self.text = QLabel(help_html())
        self.text.setTextFormat(Qt.RichText)
        self.text.setWordWrap(True)
        layout.addWidget(self.text)
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        buttons.rejected.connect(self.close)
        layout.addWidget(buttons)
