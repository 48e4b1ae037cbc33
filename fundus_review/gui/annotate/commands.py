"""QUndoStack commands around ``annotating`` commands: each redo/undo is one transaction.

A command is pushed only after its first ``perform`` succeeded (so a failed edit never enters
the history). When an undo or redo meets a conflict - the region was changed in another app
instance - nothing is written, the user is told, and the command is made obsolete so the stack
drops it instead of offering a step that would overwrite someone's work.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtGui import QUndoCommand

from fundus_review.errors import FundusReviewError
from fundus_review.review.editor import Command, Editor


class DbUndoCommand(QUndoCommand):
    def __init__(
        self,
        editor: Editor,
        cmd: Command,
        after: Callable[[Command], None],
        on_error: Callable[[str], None],
    ) -> None:
        super().__init__(cmd.text)
        self.editor, self.cmd = editor, cmd
        self._after, self._on_error = after, on_error
        self._performed = True  # pushed after a successful first perform

    def redo(self) -> None:
        if self._performed:
            self._performed = False
            return
        self._run(self.editor.perform)

    def undo(self) -> None:
        self._run(self.editor.revert)

    def _run(self, action: Callable[[Command], Command]) -> None:
        try:
            action(self.cmd)
        except FundusReviewError as exc:
            self.setObsolete(True)
            self._on_error(str(exc))
        self._after(self.cmd)
