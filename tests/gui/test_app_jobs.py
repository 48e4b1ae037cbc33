"""Background jobs from the window: run while browsing, scores and badges, methods, compare."""

from __future__ import annotations

import time

import numpy as np
from PySide6.QtCore import Qt, QTimer

from fundus_review.views.browse import BrowseFilter
from fundus_review.views.queries import list_runs
from tests.gui.conftest import open_window


def test_run_all_while_browsing_then_scores_methods_and_compare(
    qtbot, isolated, settings, gui_dataset, tiny_bundle
):
    win = open_window(qtbot, isolated / "jobs.db", gui_dataset, tiny_bundle, settings)
    win.session.batch_size = 2
    win.side.set_checked_methods(["gradcam", "eigencam"])
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    progress = []
    win.jobs.progress.connect(lambda ev: progress.append(ev))
    with qtbot.waitSignal(win.scoring_done, timeout=180_000) as scored:
        win.start_job("all")
        # Browsing goes on while the job runs: the viewer follows the keyboard.
        qtbot.waitSignal(win.jobs.started, timeout=60_000).wait()
        win.browser.list.setFocus()
        qtbot.keyClick(win.browser.list, Qt.Key_Down)
        moved_to = win.browser.current_id()
        qtbot.waitUntil(lambda: win.photo[0].image_id == moved_to, timeout=30_000)
    timer.stop()
    gaps = [b - a for a, b in zip(ticks, ticks[1:], strict=False)]
    assert max(gaps) < 1.0, f"UI thread blocked for {max(gaps):.2f} s"
    assert [p.done for p in progress] == [2, 4, 6]
    assert all(p.images_per_s > 0 for p in progress)
    assert progress[-1].eta_s == 0
    assert "images/s" in win.side.rate.text() or win.side.rate.text() == "finished"
    assert win.device_text.text() == "device: cpu"

    # Every image has a disc mask and two heatmaps: 6 x 2 score sets, stored; and the same for
    # the baselines stored after the job (4 fixed maps and a mean map per run on each image).
    assert scored.args[0].scored == 6 * 2 + 6 * (4 + 2) and not scored.args[0].problems
    qtbot.waitUntil(
        lambda: all(r.prediction and r.score is not None for r in win.browser.model.state.rows),
        timeout=20_000,
    )
    rows = win.browser.model.state.rows
    assert {r.score for r in rows} <= {0.0, 1.0}  # the badge is the pointing game: hit or miss
    n_wrong = sum(r.correct is False for r in rows)
    win.browser.model.set_filter(BrowseFilter(correctness="misclassified"))
    assert win.browser.model.rowCount() == n_wrong
    win.browser.model.set_filter(BrowseFilter())

    # Switch methods: each recipe shows its own heatmap on the original grid.
    combo = win.side.recipe
    assert [combo.itemText(i) for i in range(combo.count())] == [
        "(none)",
        "gradcam @ layer4",
        "eigencam @ layer4",
    ]
    runs = {r.method: r.id for r in list_runs(win.session.db, win.session.model_id)}
    combo.setCurrentIndex(1)
    qtbot.waitUntil(
        lambda: win.overlays.run_id == runs["gradcam"] and bool(win.overlays.scores), timeout=20_000
    )
    grad = win.overlays.heatmap.copy()
    assert grad.shape == (96, 128) and 0.0 <= grad.min() and grad.max() <= 1.0
    assert win.viewer.heat.image is not None
    assert "optic_disc" in win.overlays.pointing
    assert win.side.score_box.table.rowCount() == 1  # optic disc x metrics, stored scores
    assert "scores stored" in win.side.score_box.note.text()
    combo.setCurrentIndex(2)
    qtbot.waitUntil(lambda: win.overlays.run_id == runs["eigencam"], timeout=20_000)
    assert not np.array_equal(win.overlays.heatmap, grad)

    # Compare mode: one tile per run, zoom/pan linked to the first tile.
    win.tabs.setCurrentWidget(win.compare)
    win.compare.set_checked([runs["gradcam"], runs["eigencam"]])
    tiles = win.compare.viewers
    assert len(tiles) == 2
    assert tiles[1].view.linkedView(0) is tiles[0].view
    qtbot.waitUntil(
        lambda: all(t.overlays is not None and t.overlays.heatmap is not None for t in tiles),
        timeout=20_000,
    )
    np.testing.assert_array_equal(tiles[0].overlays.heatmap, grad)
    tiles[0].view.setXRange(10, 40, padding=0)
    x0, x1 = tiles[1].view.viewRange()[0]
    assert (round(x0), round(x1)) == (10, 40)
    assert tiles[0].heat.opacity() == win.viewer.heat.opacity()
    win.close()


def test_cancel_from_the_window_keeps_finished_batches(
    qtbot, isolated, settings, gui_dataset, tiny_bundle
):
    win = open_window(qtbot, isolated / "cancel.db", gui_dataset, tiny_bundle, settings)
    win.session.batch_size = 1
    win.jobs.started.connect(lambda _ev: win.side.cancel.click())
    with qtbot.waitSignal(win.jobs.finished, timeout=120_000) as blocker:
        win.start_job("all")
        assert win.side.cancel.isEnabled() and not win.side.run_all.isEnabled()
    ev = blocker.args[0]
    qtbot.waitUntil(lambda: not win.jobs.is_running(), timeout=10_000)
    assert ev.cancelled and ev.computed < 6
    assert "cancelled" in win.status_text.text()
    assert win.side.run_all.isEnabled() and not win.side.cancel.isEnabled()
    qtbot.waitUntil(
        lambda: sum(r.prediction is not None for r in win.browser.model.state.rows) == ev.computed,
        timeout=20_000,
    )
    win.close()


def test_reopening_shows_stored_results_without_recomputing(
    qtbot, isolated, settings, db_copy, gui_dataset, tiny_bundle
):
    win = open_window(qtbot, db_copy, gui_dataset, tiny_bundle, settings)
    started = []
    win.jobs.started.connect(started.append)
    rows = win.browser.model.state.rows
    assert all(r.prediction for r in rows)  # listed with their stored predictions at once
    qtbot.waitUntil(
        lambda: win.overlays is not None and win.overlays.heatmap is not None, timeout=20_000
    )
    assert win.side.chosen_recipe() == ("gradcam", ("layer4",))
    assert all(r.score is not None for r in win.browser.model.state.rows)
    # Running again reuses everything stored.
    with qtbot.waitSignal(win.jobs.finished, timeout=120_000) as blocker:
        win.start_job("all")
    assert (blocker.args[0].computed, blocker.args[0].reused) == (0, 6)
    assert started[0].total == 0
    win.close()
