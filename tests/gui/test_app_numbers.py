"""Heatmap target class, the summary panel and the report export, on an analyzed database."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from PySide6.QtCore import QPointF, Qt

from fundus_review.views.queries import list_runs
from tests.gui.conftest import CLASSES, open_window


@pytest.fixture
def window(qtbot, isolated, settings, db_copy, gui_dataset, tiny_bundle):
    win = open_window(qtbot, db_copy, gui_dataset, tiny_bundle, settings)
    qtbot.waitUntil(lambda: win.session.classes == CLASSES, timeout=30_000)
    qtbot.waitUntil(
        lambda: win.overlays is not None and win.overlays.heatmap is not None, timeout=20_000
    )
    yield win
    win.close()


def _shown(win, image_id: int):
    return win.overlays is not None and win.overlays.image_id == image_id


def test_switching_the_target_class_shows_or_computes_that_heatmap(qtbot, window):
    detail = window.photo[0]
    predicted = detail.predicted_index
    other = 1 - predicted
    assert window.overlays.target_index == predicted  # "predicted class" heatmap

    # The predicted class itself: the stored "predicted" heatmap is exactly that map.
    grad = window.overlays.heatmap.copy()
    window.side.heat_class.setCurrentText(CLASSES[predicted])
    qtbot.waitSignal(window.overlays_shown, timeout=20_000).wait()
    assert window.overlays.target_index == predicted and not window.overlays.missing
    assert (window.overlays.heatmap == grad).all()

    # The other class was never computed: the viewer says so and offers to compute it.
    window.side.heat_class.setCurrentText(CLASSES[other])
    qtbot.waitUntil(lambda: window.overlays.missing, timeout=20_000)
    assert window.overlays.heatmap is None
    assert window.side.compute.isVisibleTo(window.side)
    assert CLASSES[other] in window.side.missing.text()
    with qtbot.waitSignal(window.jobs.finished, timeout=120_000) as blocker:
        window.side.compute.click()
    assert blocker.args[0].computed == 1
    qtbot.waitUntil(
        lambda: _shown(window, detail.image_id) and window.overlays.heatmap is not None,
        timeout=30_000,
    )
    assert window.overlays.target_index == other
    assert not window.side.compute.isVisibleTo(window.side)
    runs = list_runs(window.session.db, window.session.model_id)
    new = [r for r in runs if r.target_class == CLASSES[other]]
    assert [(r.method, r.layers) for r in new] == [("gradcam", ["layer4"])]
    assert window.overlays.run_id == new[0].id
    assert "explains: <b>" + CLASSES[other] in window.side.prediction.label.text()
    # Back to "predicted class": the original map again.
    window.side.heat_class.setCurrentIndex(0)
    qtbot.waitUntil(lambda: window.overlays.target_index == predicted, timeout=20_000)


def _scatter_click_pos(plot, x: float, y: float):
    scene_pos = plot.getPlotItem().vb.mapViewToScene(QPointF(x, y))
    return plot.mapFromScene(scene_pos)  # viewport coordinates (QPoint)


def test_summary_matches_stored_scores_and_a_click_opens_the_image(qtbot, window):
    from fundus_review.core.stats import proportion_ci
    from fundus_review.views.scores import score_points

    window.tabs.setCurrentWidget(window.summary)
    qtbot.waitSignal(window.summary.updated, timeout=60_000).wait()
    summary = window.summary
    assert summary.metric.currentText() == "pointing_hit"
    assert summary.structure.currentText() == "optic_disc"
    assert summary.table.rowCount() == 2  # gradcam and eigencam of the tiny model
    runs = {r.title: r for r in window.session.dataset_runs()}
    for row in range(2):
        run = runs[summary.table.item(row, 1).text()]
        pts = score_points(
            window.session.db, window.session.dataset_id, [run.id], "pointing_hit", "optic_disc"
        )
        hits = sum(p.value for p in pts)
        mean, low, high = proportion_ci(int(hits), len(pts))
        assert summary.table.item(row, 2).text() == "6"
        assert summary.table.item(row, 3).text() == f"{mean:.3f}"
        assert summary.table.item(row, 4).text() == f"{low:.3f} – {high:.3f}"
    # One scatter series per run, one point per image and run.
    assert len(summary.scatter_items) == 2
    assert sorted(len(item.points()) for item in summary.scatter_items) == [6, 6]

    # Click a scatter point: the viewer opens that image. The untrained model's confidences
    # differ in the 4th digit, so zoom onto them first, as a user would.
    confs = [p.confidence for p in summary.points]
    summary.scatter.setXRange(min(confs), max(confs), padding=0.1)
    qtbot.wait(50)

    def room(p) -> float:  # distance to the nearest other point, in scaled plot units
        span = max(confs) - min(confs)
        return min(
            abs(p.confidence - q.confidence) / span + abs(p.value - q.value)
            for q in summary.points
            if q.image_id != p.image_id
        )

    current = window.browser.current_id()
    target = max((p for p in summary.points if p.image_id != current), key=room)
    pos = _scatter_click_pos(summary.scatter, target.confidence, target.value)
    qtbot.mouseClick(summary.scatter.viewport(), Qt.LeftButton, pos=pos)
    qtbot.waitUntil(lambda: window.browser.current_id() == target.image_id, timeout=10_000)
    assert window.tabs.currentWidget() is window.viewer
    qtbot.waitUntil(lambda: window.photo[0].image_id == target.image_id, timeout=20_000)


def test_summary_click_clears_a_filter_that_hides_the_image(qtbot, window):
    window.browser.filters.text.setText("no-such-name")
    assert window.browser.model.rowCount() == 0
    some_id = window.browser.model.state.rows[3].image_id
    window.summary.open_image.emit(some_id)
    assert window.browser.current_id() == some_id
    assert window.browser.model.rowCount() == 6


def test_export_report_runs_off_the_ui_thread_and_opens_the_html(
    qtbot, window, tmp_path, monkeypatch
):
    from PySide6.QtGui import QDesktopServices

    import fundus_review.report as report

    seen = {}

    def fake_write_report(db, out_dir):
        seen["thread"] = threading.current_thread()
        seen["db"] = db
        html = Path(out_dir) / "index.html"
        html.write_text("<html>report</html>")
        return SimpleNamespace(paths={"html": html})

    opened = []
    monkeypatch.setattr(report, "write_report", fake_write_report, raising=False)
    monkeypatch.setattr(QDesktopServices, "openUrl", staticmethod(lambda url: opened.append(url)))
    window._wire_export()
    with qtbot.waitSignal(window.report_done, timeout=20_000):
        window.export_report(tmp_path)
    assert seen["thread"] is not threading.main_thread()
    assert seen["db"] is window.session.db
    assert [u.toLocalFile() for u in opened] == [str(tmp_path / "index.html")]
    assert "index.html" in window.status_text.text()


def test_summary_shows_the_baselines_and_the_headline(qtbot, window):
    from fundus_review.app.baselines import compute_baselines
    from fundus_review.app.scoring import default_fov_cache, score_database

    db = window.session.db
    compute_baselines(db, window.session.dataset_id, fov_cache=default_fov_cache())
    score_database(db, fov_cache=default_fov_cache())
    window.tabs.setCurrentWidget(window.summary)
    summary = window.summary
    with qtbot.waitSignal(summary.updated, timeout=60_000):
        summary.refresh()
    models = [summary.table.item(r, 0).text() for r in range(summary.table.rowCount())]
    # The two runs of the tiny model, then 4 fixed baselines and a mean map per run.
    assert models.count("baseline") == 4 + 2 and len(models) == 2 + 6
    titles = {summary.table.item(r, 1).text() for r in range(summary.table.rowCount())}
    assert {"centre", "fov-centre", "uniform", "random"} <= titles
    assert len(summary.scatter_items) == 2  # the plots show the models only
    qtbot.waitUntil(lambda: "At a glance" in summary.headline.toPlainText(), timeout=60_000)
    text = summary.headline.toPlainText()
    # A check that was not run is said to be so, never silently left out.
    assert "best baseline" in text and "Randomisation test: not run" in text
