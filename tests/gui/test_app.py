"""The main window as a user drives it: open, filter, run in the background, switch, compare."""

from __future__ import annotations

import numpy as np
import pytest

from fundus_review.browse import BrowseFilter
from fundus_review.gui.main_window import MainWindow
from fundus_review.gui.settings import SETTINGS_SCHEMA, open_settings


@pytest.fixture
def window(qtbot, isolated, settings, gui_dataset, tiny_bundle):
    win = MainWindow(
        db=isolated / "app.db", dataset=gui_dataset, model=tiny_bundle, settings=settings
    )
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.browser.model.rowCount() == 6, timeout=30_000)
    yield win
    win.close()


def _run_all(qtbot, win, methods):
    win.side.set_checked_methods(methods)
    with qtbot.waitSignal(win.jobs.finished, timeout=120_000) as blocker:
        win.start_job("all")
    qtbot.waitUntil(lambda: not win.jobs.is_running(), timeout=10_000)
    return blocker.args[0]


def test_open_dataset_lists_images_with_labels_and_masks(window):
    st = window.browser.model.state
    assert sorted(r.label for r in st.rows) == ["glaucoma"] * 3 + ["normal"] * 3
    assert all(r.structures == frozenset({"optic_disc"}) for r in st.rows)
    assert window.browser.count.text() == "6 of 6 images"


def test_filter_bar_filters_the_list(qtbot, window):
    f = window.browser.filters
    f.label.setCurrentText("glaucoma")
    assert window.browser.model.rowCount() == 3
    assert window.browser.count.text() == "3 of 6 images"
    f.text.setText("_2")
    assert [r.rel_path for r in map(window.browser.model.state.row_at, range(1))] == [
        "glaucoma/glaucoma_2.png"
    ]
    f.text.clear()
    f.label.setCurrentText("(any)")
    assert window.browser.model.rowCount() == 6


def test_keyboard_moves_and_viewer_follows(qtbot, window):
    from PySide6.QtCore import Qt

    lst = window.browser.list
    lst.setFocus()
    first = window.browser.current_id()
    assert first is not None
    qtbot.keyClick(lst, Qt.Key_Down)
    second = window.browser.current_id()
    assert second != first
    qtbot.waitUntil(
        lambda: window.photo is not None and window.photo[0].image_id == second, timeout=20_000
    )
    assert window.viewer.photo.image.shape == (96, 128, 3)


def test_run_all_then_switch_methods_and_compare(qtbot, window):
    finished = _run_all(qtbot, window, ["gradcam", "eigencam"])
    assert (finished.computed, finished.cancelled) == (6, False)
    qtbot.waitUntil(
        lambda: all(r.prediction for r in window.browser.model.state.rows), timeout=20_000
    )
    # (GradCAM and HiResCAM coincide on a global-average-pooled CNN, so EigenCAM is the contrast.)
    # Misclassified filter agrees with the stored predictions.
    rows = window.browser.model.state.rows
    n_wrong = sum(r.correct is False for r in rows)
    window.browser.model.set_filter(BrowseFilter(correctness="misclassified"))
    assert window.browser.model.rowCount() == n_wrong
    window.browser.model.set_filter(BrowseFilter())

    combo = window.side.run_choice
    titles = [combo.itemText(i) for i in range(combo.count())]
    assert titles == ["(none)", "gradcam @ layer4", "eigencam @ layer4"]
    combo.setCurrentIndex(1)
    qtbot.waitUntil(
        lambda: (
            window.overlays is not None
            and window.overlays.run_id == combo.itemData(1)
            and window.overlays.heatmap is not None
        ),
        timeout=20_000,
    )
    grad = window.overlays.heatmap.copy()
    assert grad.shape == (96, 128)
    assert window.viewer.heat.image is not None
    assert "optic_disc" in window.overlays.pointing
    combo.setCurrentIndex(2)
    qtbot.waitUntil(lambda: window.overlays.run_id == combo.itemData(2), timeout=20_000)
    assert window.overlays.heatmap is not None
    assert not np.array_equal(window.overlays.heatmap, grad)

    # Compare mode: one tile per run, zoom/pan linked to the first tile.
    window.tabs.setCurrentWidget(window.compare)
    window.compare.set_checked([combo.itemData(1), combo.itemData(2)])
    tiles = window.compare.viewers
    assert len(tiles) == 2
    assert tiles[1].view.linkedView(0) is tiles[0].view
    qtbot.waitUntil(
        lambda: all(t.overlays is not None and t.overlays.heatmap is not None for t in tiles),
        timeout=20_000,
    )
    tiles[0].view.setXRange(10, 40, padding=0)
    x0, x1 = tiles[1].view.viewRange()[0]
    assert (round(x0), round(x1)) == (10, 40)


def test_display_controls_do_not_touch_the_photo(qtbot, window):
    qtbot.waitUntil(lambda: window.photo is not None, timeout=20_000)
    photo = window.viewer.photo.image
    window.side.opacity.setValue(80)
    window.side.colormap.setCurrentText("viridis")
    window.side.layer_boxes["regions"].setChecked(False)
    assert window.viewer.heat.opacity() == pytest.approx(0.8)
    assert window.viewer.photo.image is photo
    assert all(not c.isVisible() for c in window.viewer.region_curves.values())


def test_errors_are_shown_not_swallowed(qtbot, window, isolated):
    window.session.bundle = isolated / "missing-bundle"
    with qtbot.waitSignal(window.jobs.failed, timeout=60_000):
        window.start_job("image")
    qtbot.waitUntil(lambda: not window.jobs.is_running(), timeout=10_000)
    assert "missing-bundle" in window.last_error
    assert "missing-bundle" in window.status_text.text()


def test_settings_remember_last_database_and_reset_on_schema_change(qtbot, window, settings):
    window.close()
    assert settings.value("last_db").endswith("app.db")
    assert settings.value("last_dataset").endswith("gui_data0")
    settings.setValue("schema", SETTINGS_SCHEMA + 1)
    open_settings(settings)
    assert settings.value("last_db") is None
    assert int(settings.value("schema")) == SETTINGS_SCHEMA
