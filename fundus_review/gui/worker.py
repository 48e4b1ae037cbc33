"""The analysis job on a QThread: `run_analysis` events forwarded as Qt signals.

The worker is the only code path the GUI uses for inference, the same generator the CLI drives.
Cancel sets a threading.Event that `run_analysis` checks between batches; every finished batch is
already committed, so a cancelled or failed job keeps its results.
"""

from __future__ import annotations

import threading
import traceback

from PySide6.QtCore import QObject, QThread, Signal, Slot

from fundus_review.app.analyze import (
    AnalysisProgress,
    AnalysisRequest,
    Finished,
    ImageFailed,
    Started,
)
from fundus_review.errors import FundusReviewError


class AnalysisWorker(QObject):
    started = Signal(object)  # analysis.Started
    progress = Signal(object)  # analysis.AnalysisProgress
    image_failed = Signal(object)  # analysis.ImageFailed
    finished = Signal(object)  # analysis.Finished
    failed = Signal(object)  # str: a message for the user
    done = Signal()  # always last, after finished or failed

    def __init__(self, request: AnalysisRequest, db: object | None = None) -> None:
        super().__init__()
        self.request = request
        self.db = db
        self.cancel_event = threading.Event()

    @Slot()
    def run(self) -> None:
        from fundus_review.app.analyze import run_analysis

        try:
            for event in run_analysis(self.request, self.cancel_event, db=self.db):
                if isinstance(event, Started):
                    self.started.emit(event)
                elif isinstance(event, AnalysisProgress):
                    self.progress.emit(event)
                elif isinstance(event, ImageFailed):
                    self.image_failed.emit(event)
                elif isinstance(event, Finished):
                    self.finished.emit(event)
        except FundusReviewError as exc:
            self.failed.emit(str(exc))
        except Exception as exc:  # noqa: BLE001 - shown to the user, never swallowed
            self.failed.emit(f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc(limit=6)}")
        finally:
            self.done.emit()

    def cancel(self) -> None:
        self.cancel_event.set()


class JobController(QObject):
    """Owns at most one running AnalysisWorker and its thread; re-emits the worker's signals."""

    started = Signal(object)
    progress = Signal(object)
    image_failed = Signal(object)
    finished = Signal(object)
    failed = Signal(object)
    running_changed = Signal(bool)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._thread: QThread | None = None
        self._worker: AnalysisWorker | None = None

    def is_running(self) -> bool:
        return self._thread is not None

    def start(self, request: AnalysisRequest, db: object | None = None) -> AnalysisWorker:
        if self._thread is not None:
            raise FundusReviewError("an analysis is already running; cancel it or wait for it")
        thread = QThread(self)
        thread.setObjectName("fundus-review-analysis")
        worker = AnalysisWorker(request, db)
        worker.moveToThread(thread)
        worker.started.connect(self.started)
        worker.progress.connect(self.progress)
        worker.image_failed.connect(self.image_failed)
        worker.finished.connect(self.finished)
        worker.failed.connect(self.failed)
        worker.done.connect(self._on_done)
        thread.started.connect(worker.run)
        self._thread, self._worker = thread, worker
        thread.start()
        self.running_changed.emit(True)
        return worker

    def cancel(self) -> None:
        if self._worker is not None:
            self._worker.cancel()

    @Slot()
    def _on_done(self) -> None:
        thread, worker = self._thread, self._worker
        self._thread = self._worker = None
        if thread is not None:
            thread.quit()
            thread.wait()
            thread.deleteLater()
        if worker is not None:
            worker.deleteLater()
        self.running_changed.emit(False)

    def shutdown(self, msecs: int = 60000) -> None:
        """Cancel and wait (window closing): the batch in progress is committed, then it stops."""
        thread = self._thread
        if thread is None:
            return
        self.cancel()
        thread.quit()
        thread.wait(msecs)
