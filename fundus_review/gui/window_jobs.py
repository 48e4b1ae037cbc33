"""The main window's analysis jobs, scoring and report export (split out of main_window.py).

Everything heavy happens off the UI thread: inference on the JobController's QThread, scoring and
the report on the TaskRunner's pool. These slots only update widgets.
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QUrl, Slot
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QFileDialog

from fundus_review.errors import FundusReviewError
from fundus_review.gui.trust_prompt import allow_bundle_code

ROW_REFRESH_S = 2.0  # while a job runs, new predictions reach the browser this often


def score_dataset(db, dataset_id: int, model_id: int | None, image_ids=None):  # noqa: ANN001
    """Scores of every stored heatmap of the dataset (and model; or of `image_ids` only)
    against every expert mask.

    The same function as `fundus-review score`/the report; already stored scores are skipped,
    so running it after every job costs only the new heatmaps. After a job (not after a region
    edit, ``image_ids``) the baseline maps of new images are stored first, so the Summary shows
    every run beside them. Runs on a pool thread.
    """
    from fundus_review.app.baselines import compute_baselines
    from fundus_review.app.scoring import default_fov_cache, score_database
    from fundus_review.app.selection import ResultSelection

    # The viewer's FOV cache, so a photo already shown is not segmented again.
    cache = default_fov_cache()
    if image_ids is None:
        compute_baselines(db, dataset_id, fov_cache=cache)
    return score_database(
        db,
        ResultSelection(dataset=dataset_id, models=model_id),
        fov_cache=cache,
        image_ids=image_ids,
    )


class JobsMixin:
    """Mixed into MainWindow (needs its session, side, browser, jobs, tasks, summary)."""

    # ------------------------------------------------------------------------------ jobs
    @Slot(str)
    def start_job(self, scope: str) -> None:
        current = self.browser.current_id()
        ids = {
            "image": [current] if current is not None else [],
            "selection": self.browser.selected_ids(),
            "all": None,
        }[scope]
        self._start(
            scope,
            self.side.checked_methods(),
            self.side.chosen_layers(),
            self.side.target.currentText(),
            ids,
        )

    def compute_missing(self) -> None:
        """Compute the heatmap the viewer asks for (recipe + class) on the current image."""
        recipe, current = self.side.chosen_recipe(), self.browser.current_id()
        if recipe is None:
            return self.start_job("image")
        cls = self.side.chosen_class() or "predicted"
        ids = [current] if current is not None else []
        self._start(f"{recipe[0]} for {cls}", [recipe[0]], list(recipe[1]), cls, ids)

    def _start(self, what: str, methods, layers, target: str, ids: list[int] | None) -> None:
        try:
            if ids == []:
                raise FundusReviewError("no image selected")
            req = self.session.analysis_request(methods, layers, target, ids)
            allow_bundle_code(self, req.bundle)  # asks before a bundle's code could run
            self.jobs.start(req)
        except FundusReviewError as exc:
            self.show_error(exc)
            return
        n = "all images" if ids is None else f"{len(ids)} image(s)"
        self.status(f"analysis started: {what}, {n}")
        self.side.rate.setText("loading the model …")

    @Slot(object)
    def _on_job_started(self, ev) -> None:
        self.device_text.setText(f"device: {ev.device}")
        self.side.progress.setRange(0, max(ev.total, 1))
        self.side.progress.setValue(0)
        self.side.rate.setText(f"{ev.total} to compute, {ev.reused} already stored")
        self.refresh_runs()

    @Slot(object)
    def _on_job_progress(self, ev) -> None:
        self.side.progress.setValue(ev.done)
        eta = "—" if ev.eta_s is None else time.strftime("%H:%M:%S", time.gmtime(ev.eta_s))
        failed = f", {ev.failed} failed" if ev.failed else ""
        self.side.rate.setText(f"{ev.images_per_s:.1f} images/s, ETA {eta}{failed}")
        if time.monotonic() - self._last_row_refresh > ROW_REFRESH_S:
            self.refresh_rows()
            if self.overlays is None or self.overlays.heatmap is None:
                self.reload_overlays()  # the current image may just have been computed

    @Slot(object)
    def _on_image_failed(self, ev) -> None:
        self.status(f"⚠ {ev.path}: {ev.reason}")

    @Slot(object)
    def _on_job_finished(self, ev) -> None:
        what = "cancelled" if ev.cancelled else "finished"
        failed = f", {len(ev.failed)} failed (first: {ev.failed[0][0]})" if ev.failed else ""
        self.status(
            f"analysis {what}: {ev.computed} computed, {ev.reused} reused{failed} "
            f"in {ev.seconds:.1f} s; scoring …"
        )
        self.side.rate.setText(what)
        self.refresh_bundles(self.side.bundle_path())
        self.refresh_runs()
        self.refresh_rows()
        # Scores of what was finished, cancelled or not: the badges and summary need them.
        self._score(ev.dataset_id, ev.model_id)

    def score_now(self) -> None:
        if self.session.dataset_id is None:
            return self.show_error(FundusReviewError("open a dataset first"))
        self.status("scoring …")
        self._score(self.session.dataset_id, None)

    def _score(self, dataset_id: int, model_id: int | None) -> None:
        db = self.session.db
        self.tasks.submit(
            lambda: score_dataset(db, dataset_id, model_id), self._on_scored, key="scoring"
        )

    def _on_scored(self, summary) -> None:
        problems = ""
        if summary.problems:
            path, reason = summary.problems[0]
            problems = f"; {len(summary.problems)} problem(s), first: {path}: {reason}"
        self.status(
            f"scores: {summary.scored} computed, {summary.reused} already stored "
            f"({summary.heatmaps} heatmaps){problems}"
        )
        self.browser.set_badge_choices(self.session.score_choices())
        self.refresh_rows()
        self.reload_overlays()
        self.summary.refresh()
        self.scoring_done.emit(summary)

    # ------------------------------------------------------------------------------ report
    def _wire_export(self) -> None:
        try:
            from fundus_review.report import write_report  # noqa: F401
        except ImportError:
            self.export_action.setEnabled(False)
            self.export_action.setToolTip("the report writer is not available in this build")

    def export_report(self, out: str | Path | None = None) -> None:
        """Write the report (off the UI thread) into `out` or a chosen folder, then open it."""
        from fundus_review.report import write_report

        if self.session.db is None:
            return self.show_error(FundusReviewError("open a database first"))
        if not out:
            out = QFileDialog.getExistingDirectory(self, "Report folder (new or empty)")
            if not out:
                return
        db, out = self.session.db, Path(out)
        self.status(f"writing the report to {out} …")
        self.tasks.submit(lambda: write_report(db, out), self._report_written, key="report")

    def _report_written(self, result) -> None:
        html = Path(result.paths["html"])
        self.status(f"report written: {html}")
        self.report_done.emit(result)
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(html)))
