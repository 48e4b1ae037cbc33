"""Heatmap and mask encodings: exact/within-float16 round trips, compactness, corrupt input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fundus_review.store.codec import (
    decode_heatmap,
    decode_mask,
    encode_heatmap,
    encode_mask,
    mask_shape,
)


def test_heatmap_round_trip_within_float16_precision() -> None:
    rng = np.random.default_rng(0)
    hm = rng.random((224, 200), dtype=np.float32)
    out = decode_heatmap(encode_heatmap(hm), 224, 200)
    assert out.dtype == np.float32 and out.shape == (224, 200)
    # float16 has a 10-bit mantissa: relative error <= 2**-11, absolute <= 2**-12 on [0.5, 1).
    assert np.max(np.abs(out - hm)) <= 2.0**-12
    # The decoded values are exactly the float16 values, not merely close to them.
    np.testing.assert_array_equal(out, hm.astype(np.float16).astype(np.float32))


def test_heatmap_exact_values_survive() -> None:
    hm = np.array([[0.0, 1.0, 0.5], [0.25, 0.125, 0.75]], dtype=np.float32)
    np.testing.assert_array_equal(decode_heatmap(encode_heatmap(hm), 2, 3), hm)


def test_heatmap_encoding_is_compact_for_smooth_maps() -> None:
    yy, xx = np.mgrid[0:224, 0:224]
    hm = np.exp(-((xx - 150.0) ** 2 + (yy - 80.0) ** 2) / (2 * 30.0**2)).astype(np.float32)
    data = encode_heatmap(hm)
    assert len(data) < 224 * 224 * 2 * 0.6  # well under raw float16 (100 kB)


@pytest.mark.parametrize(
    "bad",
    [
        np.array([[0.0, np.nan]], dtype=np.float32),
        np.array([[0.0, np.inf]], dtype=np.float32),
        np.zeros((3,), dtype=np.float32),
        np.zeros((2, 2), dtype=np.uint8),
        np.full((2, 2), 1e6, dtype=np.float32),
    ],
)
def test_heatmap_rejects_bad_arrays(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        encode_heatmap(bad)


def test_heatmap_decode_rejects_wrong_size_and_garbage() -> None:
    data = encode_heatmap(np.zeros((4, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="holds 40 bytes, expected 80"):
        decode_heatmap(data, 4, 10)
    with pytest.raises(ValueError, match="corrupt"):
        decode_heatmap(b"not zlib at all", 4, 5)


@settings(max_examples=60, deadline=None)
@given(arrays(np.bool_, st.tuples(st.integers(1, 40), st.integers(1, 40))))
def test_mask_round_trip_is_exact(mask: np.ndarray) -> None:
    data = encode_mask(mask)
    assert mask_shape(data) == mask.shape
    out = decode_mask(data, expected_shape=mask.shape)
    assert out.dtype == np.bool_
    np.testing.assert_array_equal(out, mask)


def test_mask_is_compact_on_a_real_size_disc() -> None:
    h, w = 2848, 4288
    yy, xx = np.ogrid[:h, :w]
    disc = (xx - 3000) ** 2 + (yy - 1400) ** 2 < 350**2
    data = encode_mask(disc)
    assert len(data) < 10_000  # 12 Mpixel mask in under 10 kB
    np.testing.assert_array_equal(decode_mask(data), disc)


def test_mask_shape_mismatch_and_corruption_are_reported() -> None:
    data = encode_mask(np.ones((3, 4), dtype=bool))
    with pytest.raises(ValueError, match="3x4, expected 4x3"):
        decode_mask(data, expected_shape=(4, 3))
    with pytest.raises(ValueError, match="header"):
        decode_mask(b"PNG?" + data[4:])
    with pytest.raises(ValueError, match="corrupt"):
        decode_mask(data[:14])
    with pytest.raises(ValueError, match="bool"):
        encode_mask(np.ones((3, 4), dtype=np.uint8))
