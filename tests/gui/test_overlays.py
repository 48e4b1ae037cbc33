"""Qt-free pieces of the viewer: outlines on the pixel-centre grid, the thumbnail cache."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from fundus_review.gui.thumbs import make_thumbnail, thumbnail_path
from fundus_review.views.overlays import mask_outline, structure_color


def test_outline_of_a_square_runs_through_pixel_centres():
    m = np.zeros((6, 6), bool)
    m[1:4, 2:5] = True  # rows 1..3, cols 2..4
    xy = mask_outline(m)
    assert not np.isnan(xy).any()  # one piece
    np.testing.assert_array_equal(xy[0], xy[-1])  # closed
    assert (xy[:, 0].min(), xy[:, 0].max()) == (2.5, 4.5)
    assert (xy[:, 1].min(), xy[:, 1].max()) == (1.5, 3.5)


def test_outline_pieces_are_nan_separated_and_empty_mask_gives_nothing():
    m = np.zeros((10, 10), bool)
    m[1, 1] = True
    m[6:8, 6:8] = True
    xy = mask_outline(m)
    assert np.isnan(xy[:, 0]).sum() == 1
    assert mask_outline(np.zeros((4, 4), bool)).shape == (0, 2)


def test_structure_colours_are_stable_and_distinct_for_the_usual_ones():
    assert structure_color("optic_disc") != structure_color("optic_cup")
    assert structure_color("my_lesion") == structure_color("my_lesion")


def test_thumbnail_is_made_once_and_remade_when_the_file_changes(tmp_path):
    src = tmp_path / "a.png"
    Image.fromarray(np.full((300, 400, 3), 120, np.uint8)).save(src)
    cache = tmp_path / "cache"
    path = make_thumbnail(src, 64, root=cache)
    assert path == thumbnail_path(src, 64, root=cache)
    with Image.open(path) as im:
        assert im.size == (64, 48)
    mtime = path.stat().st_mtime_ns
    assert make_thumbnail(src, 64, root=cache).stat().st_mtime_ns == mtime  # a cache hit

    Image.fromarray(np.full((200, 200, 3), 30, np.uint8)).save(src)  # the file is replaced
    os.utime(src, ns=(mtime + 10**9, mtime + 10**9))
    again = make_thumbnail(src, 64, root=cache)
    assert again != path
    with Image.open(again) as im:
        assert im.size == (64, 64)


def test_pyramid_levels_halve_with_area_averaging():
    from fundus_review.views.pyramid import Pyramid

    base = np.zeros((1030, 1540, 3), np.uint8)
    base[:, 1::2] = 200  # one-pixel stripes: a level must average them, not pick one
    pyr = Pyramid(base)
    assert pyr.n_levels == 3  # 1030 -> 515 -> 257 (-> 128 would be under 256)
    assert pyr.level(1).shape == (515, 770, 3)
    assert pyr.level(2).shape == (257, 385, 3)
    assert pyr.level(9).shape == (257, 385, 3)  # clamped to the coarsest level
    assert np.all(pyr.level(1) == 100)
    assert pyr.level(0) is pyr.base
    sx, sy = pyr.scale_of(2)
    assert (sx, sy) == (1540 / 385, 1030 / 257)


def test_window_picks_the_screen_level_and_crops_what_is_visible():
    from fundus_review.views.pyramid import Pyramid, choose_window, crop

    pyr = Pyramid(np.zeros((2848, 4288), np.float32))
    # Whole image on a ~1000 px wide screen: 4.3 image px per screen px -> level 2 (/4).
    fit = choose_window(pyr, (0, 0, 4288, 2848), 4288 / 1000, margin=0.0)
    assert fit.k == 2
    assert (fit.x0, fit.y0, fit.x1, fit.y1) == (0, 0, 1072, 712)
    assert fit.rect == (0.0, 0.0, 4288.0, 2848.0)
    # Zoomed in past 1:1 on a 400x300 region: level 0, only that region plus the margin.
    zoom = choose_window(pyr, (2000, 1000, 400, 300), 0.5, margin=0.5)
    assert zoom.k == 0
    assert (zoom.x0, zoom.y0, zoom.x1, zoom.y1) == (1800, 850, 2600, 1450)
    assert zoom.rect == (1800.0, 850.0, 800.0, 600.0)
    part = crop(pyr, zoom)
    assert part.shape == (600, 800) and part.flags.c_contiguous
    # A small pan stays inside the uploaded margin; a big one does not.
    small = choose_window(pyr, (2050, 1020, 400, 300), 0.5, margin=0.0)
    big = choose_window(pyr, (2500, 1000, 400, 300), 0.5, margin=0.0)
    assert zoom.covers(small) and not zoom.covers(big)


def _photo(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([(xx * 255 // w), (yy * 255 // h), np.full_like(xx, 90)], -1).astype(np.uint8)


def test_preview_of_a_large_photo_stands_in_for_its_pyramid(tmp_path):
    from fundus_review.gui.thumbs import load_preview, save_preview
    from fundus_review.views.pyramid import PreviewPyramid, Pyramid, choose_window, crop

    src = tmp_path / "big.png"
    rgb = _photo(1200, 2900)
    Image.fromarray(rgb).save(src)
    cache = tmp_path / "cache"
    assert load_preview(src, cache) is None  # never shown yet
    full = Pyramid(rgb).prepare()
    assert save_preview(src, full, cache) is not None

    pre = load_preview(src, cache)
    assert isinstance(pre, PreviewPyramid) and pre.shape == (1200, 2900)
    k = pre.k0
    assert max(pre.level(k).shape[:2]) <= 1280 and k >= 1
    assert pre.level(k).shape == full.level(k).shape
    assert np.abs(pre.level(k).astype(int) - full.level(k).astype(int)).mean() < 3  # JPEG q90
    # Any zoom, even 1:1, gets a window in original pixel coordinates (the coarse level, enlarged).
    for per_px in (0.5, 1.0, 4.0):
        win = choose_window(pre, (100.0, 50.0, 400.0, 300.0), per_px, margin=0.0)
        x, y, w, h = win.rect
        assert x <= 100 and y <= 50 and x + w >= 500 and y + h >= 350
        assert crop(pre, win).flags["C_CONTIGUOUS"]


def test_no_preview_for_small_photos_and_none_after_a_change_or_damage(tmp_path):
    from fundus_review.gui.thumbs import load_preview, preview_path, save_preview
    from fundus_review.views.pyramid import Pyramid

    cache = tmp_path / "cache"
    small = tmp_path / "small.png"
    Image.fromarray(_photo(300, 400)).save(small)
    assert save_preview(small, Pyramid(_photo(300, 400)), cache) is None

    src = tmp_path / "big.png"
    Image.fromarray(_photo(1200, 1800)).save(src)
    path = save_preview(src, Pyramid(_photo(1200, 1800)), cache)
    path.write_bytes(b"\xff\xd8 broken")
    assert load_preview(src, cache) is None  # a damaged cache entry is ignored
    path.unlink()
    save_preview(src, Pyramid(_photo(1200, 1800)), cache)
    st = src.stat()
    Image.fromarray(_photo(1200, 1800)[::-1]).save(src)  # replaced: new key, no stale preview
    os.utime(src, ns=(st.st_mtime_ns + 10**9, st.st_mtime_ns + 10**9))
    assert preview_path(src, cache) != path and load_preview(src, cache) is None
