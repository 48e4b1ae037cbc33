"""core.mean_maps: registration to the FOV / disc frame, streaming means, region shares."""

from __future__ import annotations

import numpy as np
import pytest

from fundus_review.core import mean_maps as mm
from fundus_review.core.metric_inputs import MetricInputError
from fundus_review.core.transform import make_transform


def _disk(h: int, w: int, cx: float, cy: float, r: float) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    return np.hypot(xs - cx, ys - cy) <= r


def _spot_on_input(tf, x: float, y: float, sigma_in: float = 3.0) -> np.ndarray:
    """A Gaussian spot on the model-input grid at original point (x, y)."""
    (xi, yi), = tf.to_input_points(np.array([[x, y]]))  # fmt: skip
    ys, xs = np.mgrid[0 : tf.in_h, 0 : tf.in_w] + 0.5
    return np.exp(-((xs - xi) ** 2 + (ys - yi) ** 2) / (2 * sigma_in**2)).astype(np.float32)


def test_fov_frame_of_a_circle_cut_at_top_and_bottom_keeps_its_radius() -> None:
    fov = _disk(300, 400, 200.0, 150.0, 180.0)  # cut by the 300-px height
    f = mm.fov_frame(fov)
    assert f.cx == pytest.approx(200.0, abs=0.5) and f.cy == pytest.approx(150.0, abs=0.5)
    assert f.scale == pytest.approx(180.0, abs=1.0)
    with pytest.raises(MetricInputError, match="empty field of view"):
        mm.fov_frame(np.zeros((4, 4), bool))


@pytest.mark.parametrize(
    ("h", "w", "cx", "cy", "r", "policy"),
    [
        (512, 512, 256, 256, 240, "resize"),
        (900, 1200, 610, 445, 420, "center_crop"),
        (300, 260, 130, 150, 120, "letterbox"),
        (2000, 2000, 1000, 1000, 990, "resize"),
    ],
)
def test_a_spot_at_the_same_fov_position_lands_on_the_same_cell(h, w, cx, cy, r, policy) -> None:
    # Spot half a radius right of and 0.4 radius above the FOV centre, in every geometry.
    tf = make_transform(h, w, 224, 224, policy)
    heat = _spot_on_input(tf, cx + 0.5 * r, cy - 0.4 * r, sigma_in=8.0)  # CAM-like blob
    frame = mm.fov_frame(_disk(h, w, cx, cy, r))
    grid = mm.default_grid("fov", 50)  # cells of 0.05 radii
    values, valid = mm.register(heat, frame, grid, tf)
    row, col = mm.peak_cell(values, valid)
    centres = grid.centres()
    assert centres[col] == pytest.approx(0.5, abs=grid.cell)
    assert centres[row] == pytest.approx(-0.4, abs=grid.cell)
    assert values.max() > 0.8  # cells are points sampled bilinearly, not averages


def test_cells_outside_the_photo_or_the_model_input_are_invalid() -> None:
    # A square photo whose FOV is inscribed: frame extent 1.25 sticks out of the image.
    tf = make_transform(400, 400, 224, 224, "resize")
    frame = mm.fov_frame(_disk(400, 400, 200, 200, 200))
    grid = mm.default_grid("fov", 100)
    values, valid = mm.register(np.ones((224, 224), np.float32), frame, grid, tf)
    inside = np.abs(grid.centres()) < 1.0
    assert np.array_equal(valid, inside[:, None] & inside[None, :])
    assert values[~valid].max() == 0.0 and values[valid].min() == pytest.approx(1.0)
    # centre crop: the model never saw the left and right strips of a wide photo
    tf = make_transform(200, 400, 224, 224, "center_crop", crop_pct=1.0)
    frame = mm.Frame("fov", 200, 100, 100)
    values, valid = mm.register(np.ones((224, 224), np.float32), frame, grid, tf)
    seen_u = np.abs(grid.centres()) < 1.0  # the middle 200 px of 400 = +-1 radius
    assert np.array_equal(valid.any(axis=0), seen_u)


def test_disc_frame_maps_disc_to_the_centre_and_mirrors_left_eyes() -> None:
    right_eye = _disk(500, 500, 380, 250, 40)
    left_eye = _disk(500, 500, 120, 250, 40)
    fr, fl = mm.disc_frame(right_eye, 250), mm.disc_frame(left_eye, 250)
    assert not fr.mirror and fl.mirror
    assert fr.scale == pytest.approx(40, rel=0.02)
    # A lesion 5 disc radii temporal (towards the macula) lands at u = -5 in both eyes.
    assert fr.to_frame(380 - 200, 250)[0] == pytest.approx(-5, rel=0.02)
    assert fl.to_frame(120 + 200, 250)[0] == pytest.approx(-5, rel=0.02)
    assert not mm.disc_frame(left_eye, 250, mirror=False).mirror
    with pytest.raises(MetricInputError, match="optic-disc"):
        mm.disc_frame(np.zeros((5, 5), bool))


def test_group_mean_std_and_peaks_of_hand_made_maps() -> None:
    grid = mm.FrameGrid("fov", 4, 1.0)
    acc = mm.MeanMap(grid)
    valid = np.ones((4, 4), bool)
    a = np.zeros((4, 4), np.float32)
    a[0, 0] = 1.0
    b = np.zeros((4, 4), np.float32)
    b[0, 0], b[3, 3] = 0.5, 1.0
    half = valid.copy()
    half[:, 2:] = False  # the third map covers only the left half
    c = np.full((4, 4), 0.25, np.float32)
    for values, v in ((a, valid), (b, valid), (c, half)):
        acc.add(values, v)
    mean, std = acc.mean(), acc.std()
    assert acc.n == 3 and acc.count[0, 0] == 3 and acc.count[0, 3] == 2
    assert mean[0, 0] == pytest.approx((1 + 0.5 + 0.25) / 3)
    assert mean[3, 3] == pytest.approx(0.5)  # (0 + 1) / 2: the third map does not cover it
    assert mean[1, 1] == pytest.approx(0.25 / 3)
    assert std[3, 3] == pytest.approx(0.5)
    frac = acc.peak_fraction()  # peaks: a at (0,0), b at (3,3), c's first cell (0,0)
    assert frac[0, 0] == pytest.approx(2 / 3) and frac[3, 3] == pytest.approx(1 / 3)
    assert frac.sum() == pytest.approx(1.0)
    assert acc.coverage_share(np.eye(4, dtype=bool)) == pytest.approx((3 + 3 + 2 + 2) / 40)
    other = mm.MeanMap(grid)
    other.add(a, valid)
    acc.merge(other)
    assert acc.n == 4 and acc.mean()[0, 0] == pytest.approx(2.75 / 4)
    empty = mm.MeanMap(grid)
    assert np.isnan(empty.mean()).all() and empty.coverage_share(valid) is None


def test_corner_artifact_gives_a_high_corner_share_an_honest_map_a_low_one() -> None:
    tf = make_transform(512, 512, 224, 224, "resize")
    frame = mm.fov_frame(_disk(512, 512, 256, 256, 230))
    grid = mm.default_grid("fov")
    artifact = _spot_on_input(tf, 40, 40, 6)  # top-left corner, outside the FOV
    honest = _spot_on_input(tf, 360, 250, 6)  # a disc-like spot inside
    va, ok = mm.register(artifact, frame, grid, tf)
    vh, _ = mm.register(honest, frame, grid, tf)
    assert mm.region_share(va, ok, grid.corners()) > 0.9
    assert mm.region_share(vh, ok, grid.corners()) < 0.01
    assert mm.region_share(va, ok, grid.off_fov()) > 0.9
    assert mm.region_share(vh, ok, grid.off_fov()) < 0.01
    assert mm.region_share(np.zeros_like(va), ok, grid.corners()) is None
    # The corners lie outside the unit disc: a corner cell is never inside the FOV.
    assert not (grid.corners() & ~grid.off_fov()).any()


def test_frame_map_drawn_back_onto_an_image_puts_the_spot_where_it_came_from() -> None:
    h, w = 600, 800
    frame = mm.fov_frame(_disk(h, w, 420, 300, 280))
    grid = mm.default_grid("fov", 64)
    tf = make_transform(h, w, 224, 224, "resize")
    heat = _spot_on_input(tf, 420 - 0.6 * 280, 300 + 0.3 * 280, 4)
    acc = mm.MeanMap(grid)
    acc.add(*mm.register(heat, frame, grid, tf))
    back = mm.frame_to_image(acc.mean(), grid, frame, (h, w))
    assert back.shape == (h, w) and back.dtype == np.float32
    y, x = np.unravel_index(int(np.argmax(back)), back.shape)
    assert abs(x + 0.5 - (420 - 0.6 * 280)) < 2 * grid.cell * 280
    assert abs(y + 0.5 - (300 + 0.3 * 280)) < 2 * grid.cell * 280
    with pytest.raises(MetricInputError, match="frame map"):
        mm.frame_to_image(np.zeros((3, 3)), grid, frame, (h, w))


def test_register_refuses_nan_and_a_wrong_grid() -> None:
    grid = mm.default_grid("fov", 8)
    tf = make_transform(100, 100, 10, 10, "resize")
    frame = mm.Frame("fov", 50, 50, 50)
    bad = np.zeros((10, 10))
    bad[2, 2] = np.nan
    with pytest.raises(MetricInputError, match="NaN"):
        mm.register(bad, frame, grid, tf)
    with pytest.raises(MetricInputError, match="does not match"):
        mm.register(np.zeros((12, 10)), frame, grid, tf)
    with pytest.raises(MetricInputError, match="unknown frame"):
        mm.FrameGrid("macula")
