"""The main window as a user drives it: open, filter, move with the keyboard, display, errors."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from fundus_review.gui.settings import SETTINGS_SCHEMA, open_settings
from tests.gui.conftest import open_window


@pytest.fixture
def window(qtbot, isolated, settings, gui_dataset, tiny_bundle):
    win = open_window(qtbot, isolated / "app.db", gui_dataset, tiny_bundle, settings)
    yield win
    win.close()


def test_open_dataset_lists_images_with_labels_and_masks(window):
    st = window.browser.model.state
    assert sorted(r.label for r in st.rows) == ["glaucoma"] * 3 + ["normal"] * 3
    assert all(r.structures == frozenset({"optic_disc"}) for r in st.rows)
    assert window.browser.count.text() == "6 of 6 images"
    # Nothing analysed yet: no prediction, no heatmap choice, the viewer shows the photo only.
    assert all(r.prediction is None for r in st.rows)
    assert window.side.chosen_recipe() is None
    assert window.viewer.photo.image.shape == (96, 128, 3)


def test_thumbnails_arrive_off_the_ui_thread_and_are_cached(qtbot, window, isolated):
    model = window.browser.model
    qtbot.waitUntil(lambda: len(model.thumbs) == 6, timeout=30_000)
    cached = list((isolated / "cache" / "thumbnails").rglob("*.jpg"))
    assert len(cached) == 6
    assert all(not p.isNull() for p in model.thumbs.values())


def test_filter_bar_filters_the_list(qtbot, window):
    f = window.browser.filters
    f.label.setCurrentText("glaucoma")
    assert window.browser.model.rowCount() == 3
    assert window.browser.count.text() == "3 of 6 images"
    f.text.setText("_2")
    assert window.browser.model.rowCount() == 1
    assert window.browser.model.state.row_at(0).rel_path == "glaucoma/glaucoma_2.png"
    f.text.clear()
    f.label.setCurrentText("(any)")
    assert window.browser.model.rowCount() == 6
    # Nothing is predicted yet: "misclassified" keeps nothing, "unpredicted" everything.
    f.correctness.setCurrentText("misclassified")
    assert window.browser.model.rowCount() == 0
    f.correctness.setCurrentText("unpredicted")
    assert window.browser.model.rowCount() == 6
    window.browser.clear_filters()
    assert f.correctness.currentText() == "all"


def test_sort_descending_by_name(qtbot, window):
    f = window.browser.filters
    f.sort.setCurrentText("name")
    f.descending.setChecked(True)
    names = [window.browser.model.state.row_at(i).name for i in range(6)]
    assert names == sorted(names, reverse=True)


def test_keyboard_moves_and_viewer_follows(qtbot, window):
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
    qtbot.keyClick(lst, Qt.Key_PageDown)
    last = window.browser.model.state.row_at(5).image_id
    assert window.browser.current_id() == last  # one page holds all six rows: PgDn = the end
    qtbot.waitUntil(lambda: window.photo[0].image_id == last, timeout=20_000)
    qtbot.keyClick(lst, Qt.Key_PageUp)
    assert window.browser.current_id() == first


def test_display_controls_do_not_touch_the_photo(qtbot, window):
    photo = window.viewer.photo.image
    window.side.opacity.setValue(80)
    window.side.colormap.setCurrentText("viridis")
    window.side.layer_boxes["regions"].setChecked(False)
    window.side.layer_boxes["fov"].setChecked(True)
    assert window.viewer.heat.opacity() == pytest.approx(0.8)
    assert window.viewer.photo.image is photo
    qtbot.waitUntil(lambda: window.overlays is not None, timeout=20_000)
    assert window.viewer.region_curves
    assert all(not c.isVisible() for c in window.viewer.region_curves.values())
    assert window.viewer.fov_curve.isVisible()


def test_extra_layers_join_the_layer_toggles(qtbot, window):
    import pyqtgraph as pg

    item = pg.ScatterPlotItem()
    window.viewer.add_layer("drawing", item)
    box = window.side.add_layer_box("drawing", "drawing")
    box.setChecked(False)
    assert not item.isVisible()
    box.setChecked(True)
    assert item.isVisible()
    with pytest.raises(ValueError):
        window.viewer.add_layer("heatmap", pg.ScatterPlotItem())
    assert window.side_tabs.tabText(0) == "Analysis"


def test_errors_are_shown_not_swallowed(qtbot, window, isolated):
    window.session.bundle = isolated / "missing-bundle"
    with qtbot.waitSignal(window.jobs.failed, timeout=60_000):
        window.start_job("image")
    qtbot.waitUntil(lambda: not window.jobs.is_running(), timeout=10_000)
    assert "missing-bundle" in window.last_error
    assert "missing-bundle" in window.status_text.text()


def test_a_failed_folder_listing_is_shown_and_the_rows_stay(qtbot, window, isolated, monkeypatch):
    """The listing runs in a child process: when that child fails the window says so, and the
    rows already on screen (and in the database) are kept."""
    import sys

    broken = isolated / "broken-python"
    broken.write_text("#!/bin/sh\necho 'OSError: disk on fire' >&2\nexit 7\n")
    broken.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(broken))
    window.open_dataset(window.session.dataset_root)
    qtbot.waitUntil(lambda: window.last_error is not None, timeout=30_000)
    assert "listing the folder failed (helper process exit 7: OSError: disk on fire)" in (
        window.last_error
    )
    assert "listing the folder failed" in window.status_text.text()
    assert not window._registering
    assert window.browser.model.rowCount() == 6
    assert window.session.dataset_id_for(window.session.dataset_root) is not None


def test_a_known_folder_is_rescanned_after_its_rows_are_shown(
    qtbot, isolated, settings, gui_dataset, tiny_bundle, monkeypatch
):
    """A new folder is listed first (nothing to show before); a known one shows its rows from
    the database first and is re-scanned after, so the two never compete for the CPU."""
    import time

    from fundus_review.gui.window_annotate import ReviewWindowState

    calls: list[tuple[str, str, float]] = []
    for name in ("register", "rows"):
        real = getattr(ReviewWindowState, name)

        def spy(self, *args, _real=real, _name=name, **kwargs):
            calls.append((_name, "start", time.monotonic()))
            try:
                return _real(self, *args, **kwargs)
            finally:
                calls.append((_name, "end", time.monotonic()))

        monkeypatch.setattr(ReviewWindowState, name, spy)

    def first(name: str, phase: str) -> float:
        return min(t for n, p, t in calls if (n, p) == (name, phase))

    win = open_window(qtbot, isolated / "app.db", gui_dataset, tiny_bundle, settings)
    assert first("register", "end") < first("rows", "start")  # new: listed, then shown
    win.close()
    calls.clear()
    again = open_window(qtbot, isolated / "app.db", gui_dataset, tiny_bundle, settings)
    assert first("rows", "end") < first("register", "start")  # known: shown, then re-scanned
    assert again.browser.model.rowCount() == 6 and not again._registering
    again.close()


def test_settings_remember_database_dataset_and_layout(qtbot, window, settings, isolated):
    window.side.opacity.setValue(65)
    window.close()
    assert settings.value("last_db").endswith("app.db")
    assert settings.value("last_dataset").endswith("gui_data0")
    assert settings.value("window_state") is not None
    # A new window without arguments reopens the same database, dataset and display settings.
    again = open_window(qtbot, None, None, None, settings)
    assert again.session.db_path.endswith("app.db")
    assert again.side.opacity.value() == 65
    again.close()
    settings.setValue("schema", SETTINGS_SCHEMA + 1)
    open_settings(settings)
    assert settings.value("last_db") is None
    assert int(settings.value("schema")) == SETTINGS_SCHEMA


@pytest.fixture
def flat_dataset(tmp_path, gui_dataset):
    """The same images in one folder (no labels), with masks and a labels CSV kept elsewhere."""
    import shutil

    root, extra = tmp_path / "flat", tmp_path / "extra"
    root.mkdir()
    lines = ["file,diagnosis"]
    for img in sorted(gui_dataset.glob("*/*.png")):
        if img.parent.name == "optic_disc":
            continue
        shutil.copy(img, root / img.name)
        lines.append(f"{img.name},{img.parent.name}")
    shutil.copytree(gui_dataset / "masks", extra / "masks")
    (extra / "labels.csv").write_text("\n".join(lines) + "\n")
    return root, extra


def test_a_new_folder_is_listed_at_once_and_its_files_read_in_the_background(
    qtbot, isolated, settings, gui_dataset, tiny_bundle
):
    """Opening never waits for every file to be read and hashed (minutes for 10,000 photos):
    the rows come from the directory listing, an image shown before its turn is read on demand,
    and the background read then completes the database and imports the masks."""
    from sqlalchemy import func, select

    from fundus_review.gui.main_window import MainWindow
    from fundus_review.store.schema import Image

    win = MainWindow(db=isolated / "new.db", dataset=gui_dataset, model=tiny_bundle,
                     settings=settings)  # fmt: skip
    qtbot.addWidget(win)
    with qtbot.waitSignal(win.rows_loaded, timeout=30_000):
        win.show()
    db = win.session.db

    def unread() -> int:
        with db.session(read_only=True) as s:
            return s.scalar(select(func.count()).where(Image.sha256.is_(None)))

    assert win.browser.model.rowCount() == 6
    assert unread() >= 5  # listed, not read: the read starts after the rows are shown
    qtbot.waitUntil(lambda: win.photo is not None, timeout=30_000)
    assert win.photo[0].width == 128 and win.photo[0].height == 96  # read when it was shown

    qtbot.waitUntil(lambda: not win._registering, timeout=30_000)
    assert unread() == 0
    assert "dataset registered, 6 expert mask(s) imported" in win.status_text.text()
    qtbot.waitUntil(
        lambda: all(r.structures == {"optic_disc"} for r in win.browser.model.state.rows),
        timeout=20_000,
    )
    win.close()


def test_attach_labels_csv_and_masks_folder_from_the_menu(
    qtbot, isolated, settings, flat_dataset, tiny_bundle
):
    root, extra = flat_dataset
    win = open_window(qtbot, isolated / "flat.db", root, tiny_bundle, settings)
    rows = win.browser.model.state.rows
    assert all(r.label is None and not r.structures for r in rows)

    with qtbot.waitSignal(win.registered, timeout=30_000):
        win.open_dataset(root, labels_csv=extra / "labels.csv")
    qtbot.waitUntil(lambda: all(r.label for r in win.browser.model.state.rows), timeout=20_000)
    labels = {r.name: r.label for r in win.browser.model.state.rows}
    assert labels["glaucoma_0.png"] == "glaucoma" and labels["normal_2.png"] == "normal"

    with qtbot.waitSignal(win.registered, timeout=30_000):
        win.open_dataset(root, masks_dir=extra / "masks")
    qtbot.waitUntil(
        lambda: all(r.structures == {"optic_disc"} for r in win.browser.model.state.rows),
        timeout=20_000,
    )
    assert "6 expert mask(s) imported" in win.status_text.text()
    assert win.side.structure_boxes.keys() == {"optic_disc"}
    # Let the first window's pool tasks (thumbnails, bundle hashing) finish before a second window
    # opens on the same database.
    qtbot.waitUntil(lambda: win.tasks.pool.activeThreadCount() == 0, timeout=30_000)
    win.close()

    # The attached CSV stays attached: a later re-scan keeps the labels.
    again = open_window(qtbot, isolated / "flat.db", root, tiny_bundle, settings)
    assert again.session.labels_csv == extra / "labels.csv"
    # The status line may already show the rows' message, which can arrive after registration.
    qtbot.waitUntil(lambda: not again._registering, timeout=30_000)
    qtbot.waitUntil(lambda: again.tasks.pool.activeThreadCount() == 0, timeout=30_000)
    assert all(r.label for r in again.browser.model.state.rows)
    again.close()


def test_a_large_photo_seen_before_shows_its_cached_preview_until_it_is_decoded(
    qtbot, isolated, settings, tiny_bundle
):
    """Paging back to a 12-megapixel photo must not show the previous one for the whole decode;
    while the stand-in shows, nothing (overlays, drawing) may still refer to the previous image."""
    import numpy as np
    from PIL import Image

    from fundus_review.gui.main_window import MainWindow
    from fundus_review.gui.thumbs import load_preview
    from fundus_review.views.pyramid import PreviewPyramid, Pyramid

    root = isolated / "large"
    root.mkdir()
    yy, xx = np.mgrid[0:1200, 0:1800]
    for k in range(2):
        rgb = np.stack([xx % 256, yy % 256, np.full_like(xx, 60 * k)], -1).astype(np.uint8)
        Image.fromarray(rgb).save(root / f"large_{k}.png")
    win = MainWindow(db=isolated / "large.db", dataset=root, model=tiny_bundle, settings=settings)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.browser.model.rowCount() == 2, timeout=30_000)
    first = win.browser.current_id()
    qtbot.waitUntil(
        lambda: win.photo is not None and win.photo[0].image_id == first, timeout=30_000
    )
    src = win.browser.model.files[first][0]
    qtbot.waitUntil(lambda: load_preview(src) is not None, timeout=10_000)  # cached on showing

    # On the second image, the first one's preview arriving late is ignored ...
    qtbot.keyClick(win.browser.list, Qt.Key_Down)
    second = win.browser.current_id()
    qtbot.waitUntil(
        lambda: win.photo is not None and win.photo[0].image_id == second, timeout=30_000
    )
    win._on_preview(first, load_preview(src))
    assert win.photo[0].image_id == second
    # ... and back on the first, its preview stands in until the photo is decoded.
    qtbot.keyClick(win.browser.list, Qt.Key_Up)
    assert win.browser.current_id() == first
    win._on_preview(first, load_preview(src))  # before the event loop delivers the photo
    assert isinstance(win.viewer.photo_layer.pyramid, PreviewPyramid)
    assert win.viewer.image_shape == (1200, 1800)
    assert win.photo is None and win.annot.image_id is None and not win.viewer.region_curves
    qtbot.waitUntil(
        lambda: win.photo is not None and win.photo[0].image_id == first, timeout=30_000
    )
    layer = win.viewer.photo_layer.pyramid
    assert type(layer) is Pyramid and layer.shape == (1200, 1800)
    assert win.annot.image_id == first
    win.close()
