"""Qt-free pieces of the viewer: outlines on the pixel-centre grid, the thumbnail cache."""

from __future__ import annotations

import numpy as np
from PIL import Image

from fundus_review.gui.overlays import mask_outline, structure_color
from fundus_review.gui.thumbs import make_thumbnail, thumbnail_path


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


def test_thumbnail_is_made_once_and_keyed_by_content(tmp_path):
    src = tmp_path / "a.png"
    Image.fromarray(np.full((300, 400, 3), 120, np.uint8)).save(src)
    sha = "ab" * 32
    path = make_thumbnail(src, sha, 64, root=tmp_path / "cache")
    assert path == thumbnail_path(sha, 64, root=tmp_path / "cache")
    with Image.open(path) as im:
        assert im.size == (64, 48)
    mtime = path.stat().st_mtime_ns
    src.unlink()  # a cache hit must not need the source any more
    assert make_thumbnail(src, sha, 64, root=tmp_path / "cache").stat().st_mtime_ns == mtime
