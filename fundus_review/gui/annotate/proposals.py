"""Proposed optic disc and cup in the Annotate tab: a button / key that runs the segmenter on a
worker thread, and "Accept proposals" (A).

The segmenter only reads (``app.proposals.compute_proposal``); the result is stored on the UI
thread through the controller's undo stack (``review.proposals.proposal_commands``), so
proposing, accepting and editing a proposal are each one undoable edit like any other. Proposed
regions are drawn dash-dotted with a "proposed" label (``layers.OutlineLayer``) and are no
expert regions until accepted or edited.
"""

from __future__ import annotations

import traceback

from PySide6.QtCore import QObject, QThread, Signal, Slot
from PySide6.QtWidgets import QGroupBox, QLabel, QPushButton, QVBoxLayout, QWidget

from fundus_review.errors import FundusReviewError
from fundus_review.gui.annotate.controller import AnnotationController
from fundus_review.gui.annotate.shortcuts import ACTIONS, key_text
from fundus_review.review.commands import Compound

_ATTR = "_proposal_tool"
#: what the region list adds after a region of this provenance
PROVENANCE_NOTE = {
    "proposed": " · proposed (unreviewed)",
    "accepted-proposal": " · accepted proposal",
    "edited-proposal": " · edited proposal",
}


class _ProposeWorker(QObject):
    done = Signal(object, object)  # (image_id, list[ProposedShape] | str error)

    def __init__(self, db, image_id: int, segmenter_path, kind: str) -> None:  # noqa: ANN001
        super().__init__()
        self.db, self.image_id, self.path, self.kind = db, image_id, segmenter_path, kind

    @Slot()
    def run(self) -> None:
        from fundus_review.app.proposals import compute_proposal, get_segmenter

        try:
            shapes = compute_proposal(self.db, self.image_id, get_segmenter(self.path), self.kind)
            self.done.emit(self.image_id, (get_segmenter(self.path).name, shapes))
        except FundusReviewError as exc:
            self.done.emit(self.image_id, str(exc))
        except Exception as exc:  # noqa: BLE001 - shown to the user, never swallowed
            self.done.emit(self.image_id, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(4)}")


class ProposalTool(QObject):
    """Propose / accept for one AnnotationController (``proposal_tool(controller)``)."""

    busy_changed = Signal(bool)
    finished = Signal(bool)  # True: proposals stored

    def __init__(
        self, controller: AnnotationController, segmenter_path=None, kind: str = "polygon"
    ) -> None:  # noqa: ANN001
        super().__init__(controller)
        self.c, self.segmenter_path, self.kind = controller, segmenter_path, kind
        self._thread: QThread | None = None
        self._worker: _ProposeWorker | None = None

    @property
    def busy(self) -> bool:
        return self._thread is not None

    def propose(self) -> bool:
        """Start proposing for the shown image; False when it cannot start now."""
        c = self.c
        if self.busy:
            c.message.emit("the segmenter is still working on the last image")
            return False
        if c.image_id is None:
            c.error.emit("no image is shown")
            return False
        if c.editor is None:
            c.error.emit("choose who you are (reviewer) before asking for proposals")
            return False
        thread = QThread(self)
        thread.setObjectName("fundus-review-propose")
        worker = _ProposeWorker(c.db, c.image_id, self.segmenter_path, self.kind)
        worker.moveToThread(thread)
        thread.started.connect(worker.run)
        worker.done.connect(self._on_done)
        self._thread, self._worker = thread, worker
        thread.start()
        c.message.emit("proposing optic disc and cup…")
        self.busy_changed.emit(True)
        return True

    @Slot(object, object)
    def _on_done(self, image_id: int, result) -> None:  # noqa: ANN001
        from fundus_review.review.proposals import proposal_commands

        thread, worker = self._thread, self._worker
        self._thread = self._worker = None
        if thread is not None:
            thread.quit()
            thread.wait()
            thread.deleteLater()
        if worker is not None:
            worker.deleteLater()
        self.busy_changed.emit(False)
        c, stored = self.c, False
        if isinstance(result, str):
            c.error.emit(f"could not propose regions: {result}")
        elif image_id != c.image_id or c.editor is None:
            c.message.emit("another image is shown now: the proposal was dropped")
        else:
            model, shapes = result
            plan = proposal_commands(c.editor, shapes, model)
            if plan.commands:
                cmd = plan.commands[0] if len(plan.commands) == 1 else Compound(
                    plan.commands, "propose disc and cup")  # fmt: skip
                stored = c._push(cmd) is not None
                if stored:  # nothing selected: every proposal shows its dash-dotted outline
                    c.select(None)
            kept = f"; kept your own {', '.join(plan.kept)}" if plan.kept else ""
            if not shapes:
                c.message.emit("the segmenter found no optic disc on this image")
            else:
                accept = key_text(ACTIONS["accept_proposals"][0])
                c.message.emit(
                    f"proposed {', '.join(plan.proposed) or 'nothing'}{kept} — not expert "
                    f"regions until accepted ({accept}) or edited"
                )
        self.finished.emit(stored)

    def accept(self) -> bool:
        """Accept the reviewer's unreviewed proposals on the shown image (one undoable edit)."""
        c = self.c
        if c.editor is None:
            c.error.emit("choose who you are (reviewer) before accepting proposals")
            return False
        cmd = c.editor.accept_command([r for r in c.regions if r.proposed])
        if cmd is None:
            c.message.emit("no unreviewed proposal on this image")
            return False
        if c._push(cmd) is None:
            return False
        c.select(None)
        return True

    def wait(self, msecs: int = 60000) -> None:
        if self._thread is not None:
            self._thread.wait(msecs)


def proposal_tool(controller: AnnotationController) -> ProposalTool:
    """The controller's ProposalTool (created on first use, shared by panel and keys)."""
    tool = getattr(controller, _ATTR, None)
    if tool is None:
        tool = ProposalTool(controller)
        setattr(controller, _ATTR, tool)
    return tool


class ProposalBox(QGroupBox):
    """Side-panel group: propose / accept buttons and how many proposals await review."""

    def __init__(self, controller: AnnotationController, parent: QWidget | None = None) -> None:
        super().__init__("Proposed disc and cup", parent)
        self.c, self.tool = controller, proposal_tool(controller)
        v = QVBoxLayout(self)
        propose_key = key_text(ACTIONS["propose"][0])
        accept_key = key_text(ACTIONS["accept_proposals"][0])
        self.propose_button = QPushButton(f"Propose disc and cup ({propose_key})")
        self.propose_button.clicked.connect(self.tool.propose)
        self.accept_button = QPushButton(f"Accept proposals ({accept_key})")
        self.accept_button.clicked.connect(self.tool.accept)
        self.state = QLabel()
        self.state.setWordWrap(True)
        for w in (self.propose_button, self.accept_button, self.state):
            v.addWidget(w)
        self.tool.busy_changed.connect(self._on_busy)
        controller.changed.connect(self.update_state)
        self.update_state()

    def _on_busy(self, busy: bool) -> None:
        self.propose_button.setEnabled(not busy)
        self.propose_button.setText(
            "Proposing…" if busy else f"Propose disc and cup ({key_text(ACTIONS['propose'][0])})"
        )

    def update_state(self) -> None:
        waiting = [r for r in self.c.regions if r.proposed and self.c.own(r)]
        self.accept_button.setEnabled(bool(waiting))
        self.state.setText(
            f"<b>{len(waiting)} proposal(s) await your review</b> (not expert regions yet)"
            if waiting
            else "Proposals are drawn dash-dotted; accept or edit them to make them yours."
        )
