"""The main window's drawing and review tools (issue 6): the Annotate tab, Edit menu and keys.

Who draws the regions: while the Annotate tab is shown ("annotating") the AnnotationController
draws every region itself (own solid, other reviewers' dashed, H hides those) and its tools take
the left mouse button; the viewer's union outline per structure is hidden, so nothing is drawn
twice. On the Analysis tab the tools are off, the controller's outlines are hidden and the
viewer's outlines (with their per-structure toggles) are back. The controller follows the shown
image either way, so review keys (Alt+Y/P/N, Alt+2/3/4) and undo work from both tabs.

Every committed edit refreshes the browser rows (region, reviewer and review-status filters);
a region edit also reloads the overlays (pointing game) and, after a short pause, re-scores:
the store dropped the edited structure's scores, and scoring runs off the UI thread exactly as
after an analysis job.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDockWidget, QMenu, QScrollArea

from fundus_review.errors import FundusReviewError
from fundus_review.gui.annotate import (
    AnnotationController,
    AnnotationPanel,
    ensure_reviewer,
    install_actions,
    saved_reviewer,
    set_actions_enabled,
)
from fundus_review.gui.window_jobs import score_dataset
from fundus_review.review.editor import heatmap_id_for
from fundus_review.views.window_state import WindowState

RESCORE_DELAY_MS = 400  # a burst of edits (drag a vertex, undo, redo) is scored once
# Shortcuts that act on what is drawn: live only while annotating (Esc: see _on_escape).
DRAWING_ONLY = ("delete", "finish", "cancel", "remove_vertex", "smaller", "larger", "others")
OPENS_ANNOTATION = ("tool_", "structure_")  # these keys also bring the Annotate tab up


class ReviewWindowState(WindowState):
    """The window's state plus the person reviewing (``annotator``).

    Browser rows show that reviewer's review status and prefer their regions for the badge.
    ``WindowState.reviewer`` stays None on purpose: it names the owner of imported mask folders,
    which are reference regions ("reference", as the analysis and the CLI import them), never
    drawings of whoever has the app open - otherwise a re-import would duplicate them.
    """

    def __init__(self) -> None:
        super().__init__()
        self.annotator: str | None = None

    @property
    def rows_reviewer(self) -> str | None:
        return self.annotator


class AnnotateMixin:
    """Mixed into MainWindow (needs its viewer, tabs, side_tabs, session, settings, tasks...)."""

    def _build_annotation(self) -> None:
        reviewer = saved_reviewer(self.settings)  # asked when first annotating, never at start
        self.session.annotator = reviewer
        self.annot = AnnotationController(
            self.viewer.view, self.session.db, reviewer=reviewer, parent=self
        )
        self.annot.pixel_source = self._annotation_pixels  # the smart tools read the photo
        self.annot_panel = AnnotationPanel(self.annot, self.settings)
        self.annot_tab = QScrollArea()
        self.annot_tab.setWidgetResizable(True)
        self.annot_tab.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.annot_tab.setWidget(self.annot_panel)
        self.side_tabs.addTab(self.annot_tab, "Annotate")
        self.annot_actions = install_actions(self.annot, self)
        acts = self.annot_actions
        # One Esc for the whole window (two actions on one key would both go dead).
        acts["cancel"].setShortcuts([])
        acts["cancel"].setText("Cancel drawing / deselect\tEsc")
        self.escape_action = QAction("Cancel", self)
        self.escape_action.setShortcut(QKeySequence(Qt.Key_Escape))
        self.escape_action.triggered.connect(self._on_escape)
        self.addAction(self.escape_action)
        for name, act in acts.items():
            if name.startswith(OPENS_ANNOTATION):
                act.triggered.connect(self.show_annotation)
        self.annotating = False
        self.annot.set_enabled(False)
        self.annot.set_outlines_visible(False)
        set_actions_enabled({n: acts[n] for n in DRAWING_ONLY}, False)
        self._rescore_timer = QTimer(self)
        self._rescore_timer.setSingleShot(True)
        self._rescore_timer.setInterval(RESCORE_DELAY_MS)
        self._rescore_timer.timeout.connect(self._rescore)
        self._rescoring = self._rescore_again = False
        self._rescore_ids: set[int] = set()  # images whose regions changed since the last scoring

    def _fill_edit_menu(self, menu: QMenu) -> None:
        acts = self.annot_actions
        menu.addAction(acts["undo"])
        menu.addAction(acts["redo"])
        menu.addSeparator()
        menu.addAction(acts["delete"])
        menu.addAction(acts["cancel"])
        menu.addSeparator()
        self._action(menu, "&Annotate this image", self.show_annotation, "Ctrl+E")
        self._action(menu, "Re&viewer…", self.annot_panel.ask_reviewer)
        menu.addAction(acts["help"])

    def _connect_annotation(self) -> None:
        self.annot.stored.connect(self._on_annotation_stored)
        self.annot.error.connect(self.show_error)
        self.annot.message.connect(self.status)
        self.annot_panel.reviewer_changed.connect(self._on_reviewer_changed)
        self.side_tabs.currentChanged.connect(self._update_annotating)
        self.viewer.forward_navigation = True
        self.viewer.navigate.connect(self.browser_key)
        self.annot.step_image.connect(self.step_image)

    # ------------------------------------------------------------------------------ mode
    def show_annotation(self) -> None:
        """Bring the drawing tools up: the viewer in the middle, the Annotate tab at the side."""
        for dock in self.findChildren(QDockWidget):
            if dock.widget() is self.side_tabs and not dock.isVisible():
                dock.show()
        self.tabs.setCurrentWidget(self.viewer)
        self.side_tabs.setCurrentWidget(self.annot_tab)

    def _update_annotating(self, *_args) -> None:
        on = (
            self.side_tabs.currentWidget() is self.annot_tab
            and self.tabs.currentWidget() is self.viewer
        )
        if on == self.annotating:
            return
        self.annotating = on
        if on and not self.annot.reviewer:
            self._ask_reviewer()
        self.annot.set_enabled(on)
        self.annot.set_outlines_visible(on)
        set_actions_enabled({n: self.annot_actions[n] for n in DRAWING_ONLY}, on)
        self._apply_display()

    def _ask_reviewer(self) -> None:
        name = ensure_reviewer(self, self.settings, self.session.db)
        if name:
            self.annot.set_reviewer(name)
            self.annot_panel.update_reviewer()
            self._on_reviewer_changed(name)

    def _on_reviewer_changed(self, name: str) -> None:
        self.session.annotator = name
        self.refresh_rows()

    def _on_escape(self) -> None:
        """Esc cancels the shape being drawn (or the selection) first, else the running job."""
        if self.annotating and self.annot.can_cancel():
            self.annot.cancel()
        else:
            self.jobs.cancel()

    def browser_key(self, key: int) -> None:
        """A navigation key pressed in the viewer moves through the browser's list."""
        from PySide6.QtCore import QEvent
        from PySide6.QtGui import QKeyEvent
        from PySide6.QtWidgets import QApplication

        lst = self.browser.list
        for kind in (QEvent.KeyPress, QEvent.KeyRelease):
            QApplication.sendEvent(lst, QKeyEvent(kind, key, Qt.NoModifier))

    def step_image(self, step: int) -> None:
        """Show the next (+1) or previous (-1) image of the browser's list (N, Shift+N)."""
        model, current = self.browser.model, self.browser.current_id()
        n = model.rowCount()
        if n == 0:
            return
        pos = model.row_of(current) if current is not None else None
        new = 0 if pos is None else pos + step
        if not 0 <= new < n:
            self.status("last image of the list" if step > 0 else "first image of the list")
            return
        self.browser.select_image(model.state.row_at(new).image_id)

    # ------------------------------------------------------------------------------ hooks
    def _annotation_database(self) -> None:
        """A database was opened: the controller edits that one (history kept per database)."""
        self.annot.set_database(self.session.db)

    def _annotation_image(self, image_id: int, shape: tuple[int, int]) -> None:
        if self.annot.heatmap_id is not None:
            self.annot.set_heatmap(None)  # a verdict must never land on the last image's map
        try:
            self.annot.set_image(image_id, shape)
        except FundusReviewError as exc:
            self.show_error(exc)

    def _annotation_pixels(self):  # noqa: ANN202 - the shown photo's RGB array, or None
        photo = getattr(self, "photo", None)
        if photo is None or photo[0].image_id != self.annot.image_id:
            return None
        return photo[1]

    def _annotation_heatmap(self, ov) -> None:  # noqa: ANN001 - overlays.Overlays
        """The verdict keys judge the heatmap now shown (None where none is shown)."""
        hm = None
        if ov.heatmap is not None and ov.run_id is not None:
            hm = heatmap_id_for(self.session.db, ov.run_id, ov.image_id)
        if hm != self.annot.heatmap_id and ov.image_id == self.annot.image_id:
            self.annot.set_heatmap(hm)

    def _close_annotation(self) -> None:
        self._rescore_timer.stop()
        self.annot.shutdown()

    # ------------------------------------------------------------------------------ after edits
    def _on_annotation_stored(self, regions: bool) -> None:
        self.refresh_rows()
        if regions:
            self.reload_overlays()
            if self.annot.image_id is not None:
                self._rescore_ids.add(self.annot.image_id)
            self._rescore_timer.start()

    def _rescore(self) -> None:
        """Score what the edit left unscored; one run at a time, again if edits came meanwhile."""
        if self.session.db is None or self.session.dataset_id is None:
            return
        if self._rescoring:
            self._rescore_again = True
            return
        if not self._rescore_ids:
            return
        self._rescoring = True
        db, dataset_id = self.session.db, self.session.dataset_id
        ids, self._rescore_ids = sorted(self._rescore_ids), set()
        self.tasks.submit(
            lambda: score_dataset(db, dataset_id, None, ids),
            self._rescored,
            self._rescore_failed,
            key="rescoring",
        )

    def _rescored(self, summary) -> None:  # noqa: ANN001 - scoring.ScoringSummary
        self._rescoring = False
        self._on_scored(summary)
        if self._rescore_again:
            self._rescore_again = False
            self._rescore()

    def _rescore_failed(self, exc: BaseException) -> None:
        self._rescoring = self._rescore_again = False  # the next edit scores its image again
        self._rescore_ids: set[int] = set()  # images whose regions changed since the last scoring
        self.show_error(exc)
