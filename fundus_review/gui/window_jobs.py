"""The main window's analysis-job and report actions (split out of main_window.py).

Everything heavy happens on the JobController's thread; these slots only update widgets.
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QTimer, Slot
from PySide6.QtWidgets import QFileDialog

from fundus_review.errors import FundusReviewError

ROW_REFRESH_S = 2.0  # while a job runs, new predictions reach the browser this often


class JobsMixin:
    """Mixed into MainWindow (needs its session, side, browser, jobs, tasks, summary)."""

    # ------------------------------------------------------------------------------ jobs
    @Slot(str)
    def start_job(self, scope: str) -> None:
        try:
            ids = {
                "image": [self.browser.current_id()] if self.browser.current_id() else [],
                "selection": self.browser.selected_ids(),
                "all": None,
            }[scope]
            if ids == []:
                raise FundusReviewError("no image selected")
            req = self.session.analysis_request(
                self.side.checked_methods(),
                self.side.chosen_layers(),
                self.side.target.currentText(),
                ids,
            )
            self.jobs.start(req)
        except FundusReviewError as exc:
            self.show_error(exc)
            return
        self.status(f"analysis started on {scope}")
        self.side.rate.setText("loading the model …")

    @Slot(object)
    def _on_job_started(self, ev) -> None:
        self.device_text.setText(f"device: {ev.device}")
        self.side.progress.setRange(0, max(ev.total, 1))
        self.side.progress.setValue(0)
        self.side.rate.setText(f"{ev.total} to compute, {ev.reused} already stored")
        self.refresh_runs(self.side.run_id())

    @Slot(object)
    def _on_job_progress(self, ev) -> None:
        self.side.progress.setValue(ev.done)
        eta = "—" if ev.eta_s is None else time.strftime("%M:%S", time.gmtime(ev.eta_s))
        failed = f", {ev.failed} failed" if ev.failed else ""
        self.side.rate.setText(f"{ev.images_per_s:.1f} images/s, ETA {eta}{failed}")
        if time.monotonic() - self._last_row_refresh > ROW_REFRESH_S:
            self.refresh_rows()

    @Slot(object)
    def _on_image_failed(self, ev) -> None:
        self.status(f"⚠ {ev.path}: {ev.reason}")

    @Slot(object)
    def _on_job_finished(self, ev) -> None:
        what = "cancelled" if ev.cancelled else "finished"
        failed = f", {len(ev.failed)} failed" if ev.failed else ""
        self.status(
            f"analysis {what}: {ev.computed} computed, {ev.reused} reused{failed} "
            f"in {ev.seconds:.1f} s"
        )
        self.side.rate.setText(what)
        keep = self.side.run_id()
        self.refresh_bundles(self.side.bundle_path())
        self.refresh_runs(keep)
        QTimer.singleShot(0, self.summary.refresh)

    # ------------------------------------------------------------------------------ report
    def _wire_export(self) -> None:
        try:
            from fundus_review.report import write_report  # noqa: F401
        except ImportError:
            self.export_action.setEnabled(False)
            self.export_action.setToolTip("the report writer is not available in this build")

    def export_report(self) -> None:
        from fundus_review.report import write_report

        if self.session.db is None:
            return self.show_error(FundusReviewError("open a database first"))
        out = QFileDialog.getExistingDirectory(self, "Write the report into")
        if not out:
            return
        db = self.session.db
        self.status(f"writing the report to {out} …")
        self.tasks.submit(lambda: write_report(db, Path(out)), lambda _r: self._report_done(out))

    def _report_done(self, out: str) -> None:
        from PySide6.QtCore import QUrl
        from PySide6.QtGui import QDesktopServices

        self.status(f"report written to {out}")
        html = Path(out) / "report.html"
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(html if html.exists() else out)))
