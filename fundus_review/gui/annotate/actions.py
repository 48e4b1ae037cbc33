"""The keyboard shortcuts of the drawing tools as QActions on a host widget (the main window)."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QWidget

from fundus_review.gui.annotate.controller import AnnotationController
from fundus_review.gui.annotate.shortcuts import ACTIONS, TOOLS, ShortcutHelp


def install_actions(controller: AnnotationController, host: QWidget) -> dict[str, QAction]:
    """Create every drawing shortcut on ``host`` (window-wide) and return the actions by name.

    "undo"/"redo" follow the active image's undo stack; put them in an Edit menu if you like.
    Disable the whole set with ``set_actions_enabled`` while annotating is off.
    """
    c = controller
    acts: dict[str, QAction] = {}

    def add(name: str, text: str, keys: list[str], slot: Callable[[], None]) -> None:
        act = QAction(text, host)
        act.setShortcuts([QKeySequence(k) for k in keys])
        act.triggered.connect(lambda _checked=False: slot())  # drop the "checked" argument
        host.addAction(act)
        acts[name] = act

    for tool, (key, text) in TOOLS.items():
        add(f"tool_{tool}", text.split(":")[0].capitalize(), [key], lambda t=tool: c.set_tool(t))
    undo = c.undo_group.createUndoAction(host, "Undo")
    # Standard keys differ per platform theme; the documented ones always work too.
    undo.setShortcuts(_keys([QKeySequence(QKeySequence.Undo), QKeySequence("Ctrl+Z")]))
    redo = c.undo_group.createRedoAction(host, "Redo")
    redo.setShortcuts(
        _keys(
            [QKeySequence(QKeySequence.Redo), QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")]
        )
    )
    for name, act in (("undo", undo), ("redo", redo)):
        host.addAction(act)
        acts[name] = act
    add("delete", "Delete region", [ACTIONS["delete"][0]], c.delete_selected)
    add("finish", "Finish", [ACTIONS["finish"][0], "Enter"], c.finish)
    add("cancel", "Cancel", [ACTIONS["cancel"][0]], c.cancel)
    add("remove_vertex", "Remove last vertex / delete", [ACTIONS["remove_vertex"][0]],
        lambda: c.remove_last_vertex() or c.delete_selected())  # fmt: skip
    add("smaller", "Smaller brush", [ACTIONS["smaller"][0]],
        lambda: c.set_brush_size(c.brush_diameter / 1.25))  # fmt: skip
    add("larger", "Larger brush", [ACTIONS["larger"][0]],
        lambda: c.set_brush_size(c.brush_diameter * 1.25))  # fmt: skip
    add("others", "Show other reviewers", [ACTIONS["others"][0]],
        lambda: c.set_others_visible(not c.others_visible))  # fmt: skip
    help_box: list[ShortcutHelp] = []

    def show_help() -> None:
        if not help_box:
            help_box.append(ShortcutHelp(host))
        help_box[0].set_window_keys(window_keys(host, acts))
        help_box[0].show()
        help_box[0].raise_()

    add("help", "Drawing shortcuts", [ACTIONS["help"][0]], show_help)
    for verdict in ("yes", "partly", "no"):
        add(f"verdict_{verdict}", f"Verdict: {verdict}", [ACTIONS[f"verdict_{verdict}"][0]],
            lambda v=verdict: c.set_verdict(v))  # fmt: skip
    for status in ("in_progress", "done", "flagged"):
        add(f"status_{status}", f"Status: {status.replace('_', ' ')}",
            [ACTIONS[f"status_{status}"][0]], lambda st=status: c.set_status(st))  # fmt: skip
    from fundus_review.gui.annotate.proposals import proposal_tool

    add("propose", "Propose disc and cup", [ACTIONS["propose"][0]],
        lambda: proposal_tool(c).propose())  # fmt: skip
    add("accept_proposals", "Accept proposals", [ACTIONS["accept_proposals"][0]],
        lambda: proposal_tool(c).accept())  # fmt: skip
    add("next_image", "Next image", [ACTIONS["next_image"][0]], lambda: c.step_image.emit(1))
    add("previous_image", "Previous image", [ACTIONS["previous_image"][0]],
        lambda: c.step_image.emit(-1))  # fmt: skip
    add("done_next", "Done, next image", [ACTIONS["done_next"][0], "Ctrl+Enter"],
        lambda: _done_and_next(c))  # fmt: skip
    for i in range(9):
        add(f"structure_{i + 1}", f"Structure {i + 1}", [str(i + 1)],
            lambda i=i: _pick_structure(c, i))  # fmt: skip
    return acts


def window_keys(host: QWidget, own: dict[str, QAction]) -> list[tuple[str, str]]:
    """(key, text) of the host's other actions with a shortcut (its menus), for F1."""
    mine = set(own.values())
    out: list[tuple[str, str]] = []
    for act in host.findChildren(QAction):
        keys = [k.toString() for k in act.shortcuts() if not k.isEmpty()]
        if act in mine or not keys:
            continue
        text = act.text().split("\t")[0].replace("&", "").rstrip(".…")
        out.append((" / ".join(keys), text))
    return sorted(set(out), key=lambda kt: kt[0])


def _keys(seqs: list[QKeySequence]) -> list[QKeySequence]:
    out: list[QKeySequence] = []
    for k in seqs:
        if not k.isEmpty() and k not in out:
            out.append(k)
    return out


def _done_and_next(c: AnnotationController) -> None:
    """Review status "done" for this image, then the next image (one key: Ctrl+Return)."""
    if c.image_id is None or not c._need_editor():
        return
    if c.review_state()[0] != "done":
        c.set_status("done")
    c.step_image.emit(1)


def _pick_structure(c: AnnotationController, index: int) -> None:
    names = c.labels.names()
    if index < len(names):
        c.set_structure(names[index])


def set_actions_enabled(actions: dict[str, QAction], enabled: bool) -> None:
    for act in actions.values():
        act.setEnabled(enabled)
