"""core.geometry / core.painting: shapes rasterise at pixel centres, exactly and reproducibly."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.path import Path as MplPath

from fundus_review.core.geometry import (
    Brush,
    Ellipse,
    GeometryError,
    Point,
    Polygon,
    enclosed_area,
    flood_fill,
    mask_box,
    paint_segment,
    paint_stroke,
    rasterize,
    shape_from_dict,
    shape_mask,
)


def centres(shape: tuple[int, int]) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return np.column_stack([xx.ravel() + 0.5, yy.ravel() + 0.5])


# --------------------------------------------------------------------------------- ellipse
def test_circle_of_radius_two_covers_the_twelve_pixels_with_centres_inside() -> None:
    m = rasterize("ellipse", {"cx": 5, "cy": 5, "rx": 2, "ry": 2, "angle": 0}, (10, 10))
    # Centres at offsets +-0.5 (d^2 = 0.5) and +-0.5/+-1.5 (d^2 = 2.5) are inside, +-1.5/+-1.5
    # (d^2 = 4.5) is not: the 4x4 block of rows/cols 3..6 without its four corners.
    expected = np.zeros((10, 10), bool)
    expected[3:7, 3:7] = True
    expected[[3, 3, 6, 6], [3, 6, 3, 6]] = False
    np.testing.assert_array_equal(m, expected)


def test_rotation_by_90_degrees_swaps_the_axes() -> None:
    a = shape_mask(Ellipse(20.3, 15.1, 9.0, 4.0, 90.0), (40, 40))
    b = shape_mask(Ellipse(20.3, 15.1, 4.0, 9.0, 0.0), (40, 40))
    np.testing.assert_array_equal(a, b)
    assert a.sum() > 90


@given(
    cx=st.floats(5, 35), cy=st.floats(5, 25), rx=st.floats(1.3, 14), ry=st.floats(1.3, 14),
    angle=st.floats(-180, 180),
)  # fmt: skip
@settings(max_examples=40, deadline=None)
def test_rotated_ellipse_matches_the_general_conic_form(cx, cy, rx, ry, angle) -> None:
    shape = (30, 40)
    m = shape_mask(Ellipse(cx, cy, rx, ry, angle), shape)
    # Same ellipse written as A dx^2 + B dx dy + C dy^2 <= 1 (expanded rotation matrix).
    t = math.radians(angle)
    c, s = math.cos(t), math.sin(t)
    a = c * c / rx**2 + s * s / ry**2
    b = 2 * c * s * (1 / rx**2 - 1 / ry**2)
    cc = s * s / rx**2 + c * c / ry**2
    pts = centres(shape)
    dx, dy = pts[:, 0] - cx, pts[:, 1] - cy
    q = (a * dx * dx + b * dx * dy + cc * dy * dy).reshape(shape)
    clear = np.abs(q - 1) > 1e-9  # centres exactly on the rim may round either way
    np.testing.assert_array_equal(m[clear], (q <= 1)[clear])


def test_positive_angles_turn_the_long_axis_clockwise_on_screen() -> None:
    # y points down: +45 degrees lays the long axis along the down-right diagonal.
    m = shape_mask(Ellipse(10, 10, 8, 1.2, 45), (20, 20))
    assert m[14, 14] and m[5, 5] and not m[5, 14] and not m[14, 5]


def test_ellipse_outside_the_image_is_an_empty_mask_and_bad_axes_are_refused() -> None:
    assert not shape_mask(Ellipse(-50, -50, 5, 5), (20, 20)).any()
    with pytest.raises(GeometryError, match="semi-axes"):
        Ellipse(1, 1, 0, 3)
    with pytest.raises(GeometryError, match="lacks 'ry'"):
        shape_from_dict("ellipse", {"cx": 1, "cy": 1, "rx": 2})


# --------------------------------------------------------------------------------- polygon
def test_axis_aligned_rectangle_takes_pixels_whose_centres_are_inside() -> None:
    m = rasterize("polygon", {"points": [[1, 1], [4, 1], [4, 3], [1, 3]]}, (5, 6))
    expected = np.zeros((5, 6), bool)
    expected[1:3, 1:4] = True
    np.testing.assert_array_equal(m, expected)


def test_edges_through_pixel_centres_are_half_open_so_neighbours_tile_without_overlap() -> None:
    # Two rectangles sharing the vertical edge x = 3.5 (a column of pixel centres) and the
    # horizontal edge y = 2.5: each centre on a shared edge belongs to exactly one of them.
    left = Polygon(((0.5, 0.5), (3.5, 0.5), (3.5, 4.5), (0.5, 4.5)))
    right = Polygon(((3.5, 0.5), (6.5, 0.5), (6.5, 4.5), (3.5, 4.5)))
    a, b = shape_mask(left, (6, 8)), shape_mask(right, (6, 8))
    assert not (a & b).any()
    expected = np.zeros((6, 8), bool)
    expected[0:4, 0:6] = True  # centres 0.5..3.5 in y, 0.5..5.5 in x: left edges in, right out
    np.testing.assert_array_equal(a | b, expected)


@given(st.lists(st.tuples(st.floats(0.01, 29.99), st.floats(0.01, 19.99)), min_size=3, max_size=9))
@settings(max_examples=60, deadline=None)
def test_polygon_matches_matplotlib_even_odd_containment(pts) -> None:
    shape = (20, 30)
    m = shape_mask(Polygon(tuple(pts)), shape)
    poly = np.asarray(pts)
    closed = np.vstack([poly, poly[:1]])
    codes = [MplPath.MOVETO] + [MplPath.LINETO] * (len(poly) - 1) + [MplPath.CLOSEPOLY]
    grid = centres(shape)
    inside = MplPath(closed, codes).contains_points(grid).reshape(shape)
    # matplotlib uses the even-odd rule too; compare away from edges (its boundary rule differs).
    seg_a, seg_b = closed[:-1], closed[1:]
    d = seg_b - seg_a
    t = np.clip(((grid[:, None] - seg_a) * d).sum(-1) / np.maximum((d * d).sum(-1), 1e-12), 0, 1)
    dist = np.linalg.norm(seg_a + t[..., None] * d - grid[:, None], axis=-1).min(axis=1)
    clear = (dist > 1e-6).reshape(shape)
    np.testing.assert_array_equal(m[clear], inside[clear])


def test_polygon_orientation_and_integer_shifts() -> None:
    pts = ((2.2, 1.7), (9.4, 3.1), (6.6, 8.8), (1.1, 6.0))
    a = shape_mask(Polygon(pts), (12, 14))
    np.testing.assert_array_equal(a, shape_mask(Polygon(pts[::-1]), (12, 14)))
    shifted = shape_mask(Polygon(tuple((x + 3, y + 2) for x, y in pts)), (12, 14))
    np.testing.assert_array_equal(shifted[2:, 3:], a[:-2, :-3])


def test_polygon_validation() -> None:
    with pytest.raises(GeometryError, match="at least 3"):
        Polygon(((0, 0), (1, 1)))
    with pytest.raises(GeometryError, match="NaN"):
        shape_from_dict("polygon", {"points": [[0, 0], [1, float("nan")], [2, 2]]})


# ---------------------------------------------------------------------------------- point
def test_point_is_the_pixel_under_it_plus_its_radius() -> None:
    m = shape_mask(Point(3.2, 4.9), (8, 8))
    assert m.sum() == 1 and m[4, 3]
    disc = shape_mask(Point(4.0, 4.0, 1.0), (8, 8))
    # Centres within 1.0 of (4, 4): the four pixels around that corner (d^2 = 0.5).
    assert disc.sum() == 4 and disc[3:5, 3:5].all()


# ---------------------------------------------------------------------------------- brush
def test_a_straight_stroke_is_a_capsule() -> None:
    m = np.zeros((10, 10), bool)
    box = paint_segment(m, (2, 5), (8, 5), 1.0)
    # Rows 4 and 5 (centres 0.5 from the line) from col 1 to 8: the end caps reach the centres
    # at distance sqrt(0.5) beyond both ends, not those at sqrt(2.5).
    expected = np.zeros((10, 10), bool)
    expected[4:6, 1:9] = True
    np.testing.assert_array_equal(m, expected)
    assert box is not None and box[0] <= 4 and box[1] >= 6


def test_eraser_clears_only_its_capsule_and_painting_outside_the_image_is_harmless() -> None:
    m = np.ones((6, 6), bool)
    paint_segment(m, (0, 0.5), (6, 0.5), 0.5, value=False)
    assert not m[0].any() and m[1:].all()
    assert paint_segment(m, (-10, -10), (-8, -9), 1.0) is None


def test_brush_replay_equals_incremental_painting_and_survives_json() -> None:
    shape = (40, 50)
    stroke = [(5.2, 5.1), (20.7, 9.9), (30.3, 25.5), (12.0, 30.0)]
    live = np.zeros(shape, bool)
    for a, b in zip(stroke, stroke[1:], strict=False):
        paint_segment(live, a, b, 2.5)  # what the GUI does while the mouse moves
    paint_stroke(live, [(10, 10), (25, 12)], 1.5, value=False)
    brush = Brush(None, ({"op": "paint", "radius": 2.5, "points": stroke},
                         {"op": "erase", "radius": 1.5, "points": [(10, 10), (25, 12)]}))  # fmt: skip
    geometry = json.loads(json.dumps(brush.to_dict()))
    np.testing.assert_array_equal(rasterize("brush", geometry, shape), live)
    assert live.sum() > 100


def test_brush_on_a_base_shape_starts_from_its_mask() -> None:
    base = Ellipse(10, 10, 6, 4, 30)
    erased = Brush(base, ({"op": "erase", "radius": 2, "points": [[10, 10]]},))
    got = erased.rasterize((20, 20))
    expected = shape_mask(base, (20, 20))
    yy, xx = np.mgrid[:20, :20]
    expected &= (xx + 0.5 - 10) ** 2 + (yy + 0.5 - 10) ** 2 > 4
    np.testing.assert_array_equal(got, expected)
    back = shape_from_dict("brush", json.loads(json.dumps(erased.to_dict())))
    assert back == erased


def test_bad_brush_ops_are_refused() -> None:
    with pytest.raises(GeometryError, match="unknown op"):
        Brush(None, ({"op": "smudge"},))
    with pytest.raises(GeometryError, match="radius must be positive"):
        Brush(None, ({"op": "paint", "radius": 0, "points": [[1, 1]]},))
    with pytest.raises(GeometryError, match="no geometry for kind 'mask'"):
        rasterize("mask", {}, (4, 4))


# ----------------------------------------------------------------------------------- fill
def ring(shape: tuple[int, int], cx: float, cy: float, r: float, width: float) -> np.ndarray:
    m = np.zeros(shape, bool)
    pts = [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in np.linspace(0, 2 * np.pi, 60)]
    paint_stroke(m, pts, width)
    return m


def test_fill_takes_exactly_the_enclosed_hole() -> None:
    m = ring((60, 60), 30, 30, 15, 1.5)
    box, hole = enclosed_area(m, 30, 30)
    full = np.zeros_like(m)
    full[box[0] : box[1], box[2] : box[3]] = hole
    assert not (full & m).any()
    filled = m | full
    # Filled ring = a solid disc: no hole left, and the outside is untouched.
    assert flood_fill(~filled, 0, 0).sum() == (~filled).sum()
    assert full[30, 30] and not full[2, 2]
    brush = Brush(None, ({"op": "paint", "radius": 1.5, "points": [
        (30 + 15 * math.cos(a), 30 + 15 * math.sin(a)) for a in np.linspace(0, 2 * np.pi, 60)
    ]}, {"op": "fill", "x": 30, "y": 30}))  # fmt: skip
    np.testing.assert_array_equal(brush.rasterize((60, 60)), filled)


def test_fill_refuses_open_outlines_and_clicks_on_the_outline() -> None:
    m = ring((60, 60), 30, 30, 15, 1.5)
    m[25:36, 40:50] = False  # cut the ring open on the right
    with pytest.raises(GeometryError, match="not closed"):
        enclosed_area(m, 30, 30)
    closed = ring((60, 60), 30, 30, 15, 1.5)
    with pytest.raises(GeometryError, match="not on the outline"):
        enclosed_area(closed, 45.5, 30.5)
    with pytest.raises(GeometryError, match="not inside a closed outline"):
        enclosed_area(closed, 2, 2)


def test_flood_fill_is_four_connected() -> None:
    free = np.ones((5, 5), bool)
    free[np.arange(5), np.arange(5)] = False  # a diagonal wall: 4-connectivity cannot cross it
    comp = flood_fill(free, 0, 4)
    assert comp.sum() == 10 and comp[0, 4] and not comp[4, 0]
    assert not flood_fill(free, 2, 2).any()  # seed on the wall


def test_flood_fill_agrees_with_scipy_labelling_on_random_masks() -> None:
    from scipy import ndimage

    rng = np.random.default_rng(7)
    for _ in range(20):
        free = rng.random((30, 40)) < 0.55
        labels, _ = ndimage.label(free)  # default structure = 4-connectivity
        r, c = np.argwhere(free)[rng.integers(free.sum())]
        np.testing.assert_array_equal(flood_fill(free, r, c), labels == labels[r, c])


def test_mask_box_is_tight() -> None:
    m = np.zeros((9, 9), bool)
    assert mask_box(m) is None
    m[2, 5] = m[6, 3] = True
    assert mask_box(m) == (2, 7, 3, 6)
