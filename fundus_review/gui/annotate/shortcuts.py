"""Keyboard shortcuts of the drawing tools, and the help panel that lists them (F1)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

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
    "propose": ("Shift+P", "propose the optic disc and cup (the shipped segmenter; drawn "
                "dash-dotted, not expert regions until accepted or edited)"),
    "accept_proposals": ("A", "accept the proposals on this image (editing one also accepts it)"),
    "next_image": ("N", "next image in the browser's list (also Down in the viewer)"),
    "previous_image": ("Shift+N", "previous image (also Up in the viewer)"),
    "done_next": ("Ctrl+Return", "review status done, then the next image"),
}  # fmt: skip
# F1 lists the actions in these groups (in this order); one that is in none goes under "More".
GROUPS: dict[str, tuple[str, ...]] = {
    "Drawing": ("undo", "redo", "delete", "finish", "cancel", "remove_vertex", "smaller",
                "larger", "others"),
    "Review (saved at once, undoable)": ("verdict_yes", "verdict_partly", "verdict_no",
                                         "status_in_progress", "status_done", "status_flagged"),
    "Proposals": ("propose", "accept_proposals"),
    "Images": ("next_image", "previous_image", "done_next"),
    "Help": ("help",),
}  # fmt: skip
STRUCTURE_KEYS = "1-9: choose the n-th structure of the label set"
NAVIGATION = "Mouse wheel: zoom; middle or right drag: pan/zoom while a drawing tool is active"


def key_text(key: str) -> str:
    return QKeySequence(key).toString(QKeySequence.NativeText) or key


def _row(key: str, text: str) -> str:
    return f"<tr><td><b>{key_text(key)}</b></td><td>{text}</td></tr>"


def _title(text: str) -> str:
    return f"<tr><td colspan=2><br><b><u>{text}</u></b></td></tr>"


def help_html(window_keys: list[tuple[str, str]] | None = None) -> str:
    """Every shortcut, grouped: tools, the ``GROUPS`` of ``ACTIONS`` and the host window's own
    ``window_keys`` ((key, what it does) of its menus)."""
    rows = [_title("Tools")] + [_row(k, text) for k, text in TOOLS.values()]
    rows.append(f"<tr><td colspan=2>{STRUCTURE_KEYS}</td></tr>")
    grouped = {name for names in GROUPS.values() for name in names}
    more = tuple(name for name in ACTIONS if name not in grouped)
    for title, names in (*GROUPS.items(), ("More", more)):
        present = [ACTIONS[n] for n in names if n in ACTIONS]
        if present:
            rows.append(_title(title))
            rows += [_row(k, text) for k, text in present]
    if window_keys:
        rows.append(_title("Window"))
        rows += [_row(k, text) for k, text in window_keys]
    rows.append(f"<tr><td colspan=2><br>{NAVIGATION}</td></tr>")
    return (
        "<h3>Keyboard shortcuts</h3><p>Every finished edit is saved to the database at once; "
        "there is nothing to save by hand.</p><table cellspacing=2>" + "".join(rows) + "</table>"
    )


class ShortcutHelp(QDialog):
    """Non-modal list of every shortcut."""

    def __init__(
        self, parent: QWidget | None = None, window_keys: list[tuple[str, str]] | None = None
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Drawing tools – keyboard shortcuts")
        layout = QVBoxLayout(self)
        self.text = QLabel(help_html(window_keys))
        self.text.setTextFormat(Qt.RichText)
        self.text.setWordWrap(True)
        scroll = QScrollArea()
        scroll.setWidget(self.text)
        scroll.setWidgetResizable(True)
        scroll.setMinimumSize(620, 560)
        layout.addWidget(scroll)
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        buttons.rejected.connect(self.close)
        layout.addWidget(buttons)

    def set_window_keys(self, window_keys: list[tuple[str, str]]) -> None:
        self.text.setText(help_html(window_keys))
