"""The viewer's "dataset mean" layer: averaged on the pool, drawn onto the shown photo."""

from __future__ import annotations

import numpy as np
import pytest

from tests.gui.conftest import open_window


@pytest.fixture
def window(qtbot, isolated, settings, db_copy, gui_dataset, tiny_bundle):
    win = open_window(qtbot, db_copy, gui_dataset, tiny_bundle, settings)
    qtbot.waitUntil(
        lambda: win.overlays is not None and win.overlays.heatmap is not None, timeout=20_000
    )
    yield win
    win.close()


def test_ticking_dataset_mean_shows_the_class_mean_on_this_photo(qtbot, window):
    from fundus_review.app.mean_maps import mean_maps
    from fundus_review.app.scoring import default_fov_cache
    from fundus_review.app.selection import ResultSelection

    assert not window.mean_box.isChecked() and window.mean_item.image is None  # off at start
    window.mean_box.setChecked(True)
    qtbot.waitUntil(lambda: window.mean_shown is not None, timeout=60_000)
    detail, rgb, _ = window.photo
    grouping, group, n = window.mean_shown
    assert (grouping, group) == ("true class", detail.label)
    # n = every heatmap of the shown run on images of this class (3 per class in the dataset)
    assert n == 3
    shown = window.mean_item.image
    assert shown.shape == rgb.shape[:2] and 0.99 <= np.nanmax(shown) <= 1.0  # peak scaled to 1
    rect = window.mean_item.mapRectToParent(window.mean_item.boundingRect())
    assert (rect.width(), rect.height()) == (rgb.shape[1], rgb.shape[0])  # over the whole photo
    assert window.mean_item.isVisible()
    assert f"n={n}" in window.status_text.text()
    assert "% of the mass in the corners [" in window.status_text.text()  # with its CI
    # The same numbers the report and the export use: one code path.
    sel = ResultSelection(dataset=window.session.dataset_id, models=window.session.model_id)
    ref = mean_maps(window.session.db, sel, fov_cache=default_fov_cache())
    assert ref.get(window.session.run_id, "fov", grouping, group).n == n
    # Unticked: the layer hides; ticked again it comes back from the cache, no new pass.
    window.mean_box.setChecked(False)
    assert not window.mean_item.isVisible() and window.mean_shown is None
    window.mean_box.setChecked(True)
    assert window.mean_shown == (grouping, group, n) and window.mean_item.isVisible()
