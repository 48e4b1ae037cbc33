"""The analysis worker on its QThread: events as signals, cancel, errors, a live UI thread."""

from __future__ import annotations

import time

from PySide6.QtCore import QTimer

from fundus_review.app.analyze import AnalysisRequest
from fundus_review.gui.worker import JobController
from fundus_review.store.db import open_database
from fundus_review.views.queries import list_runs, load_browse_rows


def _request(gui_dataset, tiny_bundle, db, **kw) -> AnalysisRequest:
    return AnalysisRequest(
        dataset=gui_dataset, bundle=tiny_bundle, methods=["gradcam"], db=db, **kw
    )


def test_job_runs_to_finished_and_stores_results(qtbot, isolated, gui_dataset, tiny_bundle):
    db_path = isolated / "a.db"
    jobs = JobController()
    seen = []
    jobs.started.connect(lambda ev: seen.append(("started", ev.total)))
    jobs.progress.connect(lambda ev: seen.append(("progress", ev.done)))
    with qtbot.waitSignal(jobs.finished, timeout=120_000) as blocker:
        jobs.start(_request(gui_dataset, tiny_bundle, db_path, batch_size=4))
    finished = blocker.args[0]
    assert (finished.computed, finished.cancelled, finished.failed) == (6, False, [])
    assert seen[0] == ("started", 6)
    assert [p for kind, p in seen if kind == "progress"] == [4, 6]
    qtbot.waitUntil(lambda: not jobs.is_running(), timeout=10_000)
    db = open_database(db_path)
    rows = load_browse_rows(db, finished.dataset_id, finished.model_id)
    assert len(rows) == 6 and all(r.prediction in ("glaucoma", "normal") for r in rows)
    assert [r.method for r in list_runs(db, finished.model_id)] == ["gradcam"]
    db.close()


def test_cancel_stops_between_batches_and_keeps_finished_work(
    qtbot, isolated, gui_dataset, tiny_bundle
):
    db_path = isolated / "c.db"
    jobs = JobController()
    # Cancel as soon as the job has started: the first batch may still finish, the rest must not.
    jobs.started.connect(lambda _ev: jobs.cancel())
    with qtbot.waitSignal(jobs.finished, timeout=120_000) as blocker:
        jobs.start(_request(gui_dataset, tiny_bundle, db_path, batch_size=1))
    finished = blocker.args[0]
    qtbot.waitUntil(lambda: not jobs.is_running(), timeout=10_000)
    assert finished.cancelled
    assert finished.computed < 6
    db = open_database(db_path)
    stored = [
        r for r in load_browse_rows(db, finished.dataset_id, finished.model_id) if r.prediction
    ]
    assert len(stored) == finished.computed
    db.close()


def test_errors_arrive_as_a_message_not_a_crash(qtbot, isolated, gui_dataset):
    jobs = JobController()
    with qtbot.waitSignal(jobs.failed, timeout=60_000) as blocker:
        jobs.start(_request(gui_dataset, isolated / "no-such-bundle", isolated / "e.db"))
    assert "no-such-bundle" in blocker.args[0]
    qtbot.waitUntil(lambda: not jobs.is_running(), timeout=10_000)


def test_ui_thread_keeps_running_during_a_job(qtbot, isolated, gui_dataset, tiny_bundle):
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    jobs = JobController()
    with qtbot.waitSignal(jobs.finished, timeout=120_000):
        jobs.start(_request(gui_dataset, tiny_bundle, isolated / "r.db", batch_size=2))
    timer.stop()
    qtbot.waitUntil(lambda: not jobs.is_running(), timeout=10_000)
    gaps = [b - a for a, b in zip(ticks, ticks[1:], strict=False)]
    assert len(ticks) > 10
    # The model runs on the worker thread; the UI thread's timer is never starved for long.
    assert max(gaps) < 1.0, f"UI thread blocked for {max(gaps):.2f} s"
