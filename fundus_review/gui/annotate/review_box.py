"""Review status of the image and the verdict on the shown heatmap (each change saved at once)."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QRadioButton,
    QWidget,
)

from fundus_review.core.vocabulary import REVIEW_STATUSES, VERDICTS
from fundus_review.gui.annotate.controller import AnnotationController

STATUS_TEXT = {"unreviewed": "unreviewed", "in_progress": "in progress", "done": "done",
               "flagged": "flagged"}  # fmt: skip
VERDICT_TEXT = {"yes": "Yes", "partly": "Partly", "no": "No"}


class ReviewBox(QGroupBox):
    def __init__(self, controller: AnnotationController, parent: QWidget | None = None) -> None:
        super().__init__("Review", parent)
        self.c = controller
        form = QFormLayout(self)
        self.status = QComboBox()
        for key in REVIEW_STATUSES:
            self.status.addItem(STATUS_TEXT[key], key)
        self.status.setToolTip("Where your review of this image stands (Alt+2/3/4)")
        self.status_comment = QLineEdit()
        self.status_comment.setPlaceholderText("note on this image (e.g. why it is flagged)")
        form.addRow("Status", self.status)
        form.addRow("", self.status_comment)
        self.question = QLabel("Does the heatmap focus on the clinically relevant region?")
        self.question.setWordWrap(True)
        form.addRow(self.question)
        row = QHBoxLayout()
        self.verdicts = QButtonGroup(self)
        self.verdicts.setExclusive(True)
        for i, key in enumerate(VERDICTS):
            button = QRadioButton(VERDICT_TEXT[key])
            button.setToolTip(f"Alt+{VERDICT_TEXT[key][0]}")
            self.verdicts.addButton(button, i)
            row.addWidget(button)
        self.clear = QRadioButton("none")
        self.verdicts.addButton(self.clear, len(VERDICTS))
        row.addWidget(self.clear)
        form.addRow("Verdict", row)
        self.verdict_comment = QLineEdit()
        self.verdict_comment.setPlaceholderText("comment on the heatmap")
        form.addRow("", self.verdict_comment)
        self.status.activated.connect(self._status_chosen)
        self.status_comment.editingFinished.connect(self._status_chosen)
        self.verdicts.idClicked.connect(self._verdict_chosen)
        self.verdict_comment.editingFinished.connect(self._verdict_comment_done)
        controller.review_changed.connect(self.update_from_controller)
        self.update_from_controller()

    def _status_chosen(self, *_: object) -> None:
        status, comment, _, _ = self.c.review_state()
        new = self.status.currentData()
        text = self.status_comment.text().strip()
        if (new, text) != (status, comment):
            self.c.set_status(new, text)

    def _verdict_chosen(self, index: int) -> None:
        verdict = VERDICTS[index] if index < len(VERDICTS) else None
        _, _, current, comment = self.c.review_state()
        if verdict != current:
            self.c.set_verdict(verdict, self.verdict_comment.text().strip() if verdict else "")

    def _verdict_comment_done(self) -> None:
        _, _, verdict, comment = self.c.review_state()
        text = self.verdict_comment.text().strip()
        if verdict is not None and text != comment:
            self.c.set_verdict(verdict, text)

    def update_from_controller(self) -> None:
        status, comment, verdict, vcomment = self.c.review_state()
        has_reviewer = self.c.editor is not None
        self.status.setEnabled(has_reviewer)
        self.status_comment.setEnabled(has_reviewer)
        self.status.setCurrentIndex(max(0, self.status.findData(status)))
        if not self.status_comment.hasFocus():
            self.status_comment.setText(comment)
        can_judge = has_reviewer and self.c.heatmap_id is not None
        for b in self.verdicts.buttons():
            b.setEnabled(can_judge)
        self.verdict_comment.setEnabled(can_judge)
        self.question.setText(
            "Does the heatmap focus on the clinically relevant region?"
            if can_judge else "Show a heatmap to record a verdict on it."
        )  # fmt: skip
        index = VERDICTS.index(verdict) if verdict in VERDICTS else len(VERDICTS)
        self.verdicts.button(index).setChecked(True)
        if not self.verdict_comment.hasFocus():
            self.verdict_comment.setText(vcomment)
