"""Expert-mask layout discovery, decoding of every mask coding, size checks, atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fundus_review.data.masks_io import find_mask_files, load_mask, write_mask_atomic
from fundus_review.errors import DatasetError

IDRID_STRUCTURES = {"optic_disc", "hemorrhage", "hard_exudate", "microaneurysm", "soft_exudate"}


def _square(h: int = 6, w: int = 8) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[1:4, 2:6] = True
    return m


def test_find_mask_files_on_the_real_idrid_layout(shared_data: Path) -> None:
    found = find_mask_files(shared_data / "idrid_seg" / "masks")
    assert list(found) == [f"IDRiD_{i:02d}" for i in range(1, 13)]
    for stem, structures in found.items():
        assert set(structures) >= IDRID_STRUCTURES - {"soft_exudate"}
        assert set(structures) <= IDRID_STRUCTURES
        assert structures["optic_disc"].name == f"{stem}.png"
        assert structures["optic_disc"].parent.name == "optic_disc"
    with_soft = sorted(stem for stem, s in found.items() if "soft_exudate" in s)
    assert with_soft == ["IDRiD_03", "IDRiD_08"]  # soft exudates only where present


def test_real_masks_load_as_bool_on_the_image_grid(shared_data: Path) -> None:
    found = find_mask_files(shared_data / "idrid_seg" / "masks")
    disc = load_mask(found["IDRiD_01"]["optic_disc"], expected_shape=(680, 1024, 3))
    assert disc.dtype == bool and disc.shape == (680, 1024)
    # An optic disc covers roughly 1-4 % of a fundus photograph.
    assert 0.005 < disc.mean() < 0.05
    with pytest.raises(DatasetError, match="1024x680"):
        load_mask(found["IDRiD_01"]["optic_disc"], expected_shape=(600, 1024))


def test_find_mask_files_layout_rules(tmp_path: Path) -> None:
    masks = tmp_path / "masks"
    for structure, stems in {
        "optic_cup": ["b", "a"],
        "optic_disc": ["a"],
        ".hidden": ["a"],
    }.items():
        (masks / structure).mkdir(parents=True)
        for stem in stems:
            write_mask_atomic(masks / structure / f"{stem}.png", _square())
    (masks / "optic_disc" / "notes.txt").write_text("ignored")
    (masks / "optic_disc" / ".DS_Store").write_bytes(b"\0")
    Image.fromarray(_square().astype(np.uint8)).save(masks / "optic_disc" / "b.TIF")
    found = find_mask_files(masks)
    assert list(found) == ["a", "b"]
    assert list(found["a"]) == ["optic_cup", "optic_disc"]
    assert found["b"]["optic_disc"].name == "b.TIF"
    assert ".hidden" not in found["a"]


def test_duplicate_stem_prefers_the_lossless_file(tmp_path: Path) -> None:
    folder = tmp_path / "masks" / "optic_disc"
    folder.mkdir(parents=True)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(folder / "x.jpg")
    write_mask_atomic(folder / "x.png", _square(4, 4))
    assert find_mask_files(tmp_path / "masks")["x"]["optic_disc"].name == "x.png"


def test_find_mask_files_errors_name_the_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        find_mask_files(tmp_path / "absent")
    flat = tmp_path / "flat"
    flat.mkdir()
    write_mask_atomic(flat / "img1.png", _square())
    with pytest.raises(DatasetError, match=r"directly inside it") as info:
        find_mask_files(flat)
    assert str(flat) in str(info.value)


@pytest.mark.parametrize("scale", [255, 1, 17])
def test_gray_codings_any_nonzero(tmp_path: Path, scale: int) -> None:
    m = _square()
    path = tmp_path / f"m{scale}.png"
    Image.fromarray((m * scale).astype(np.uint8)).save(path)
    out = load_mask(path)
    assert out.dtype == bool
    np.testing.assert_array_equal(out, m)


def test_rgb_mask_any_channel(tmp_path: Path) -> None:
    m = _square()
    rgb = np.zeros((*m.shape, 3), np.uint8)
    rgb[m, 1] = 200  # structure drawn in green only
    rgb[0, 0] = (0, 0, 9)  # a single blue pixel also counts
    path = tmp_path / "rgb.png"
    Image.fromarray(rgb).save(path)
    expected = m.copy()
    expected[0, 0] = True
    np.testing.assert_array_equal(load_mask(path), expected)


def test_rgba_mask_with_transparent_white_background(tmp_path: Path) -> None:
    m = _square()
    rgba = np.zeros((*m.shape, 4), np.uint8)
    rgba[~m] = (255, 255, 255, 0)  # transparent white: background in drawing tools
    rgba[m] = (255, 0, 0, 255)
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba).save(path)
    np.testing.assert_array_equal(load_mask(path), m)


def test_bilevel_palette_and_16bit_masks(tmp_path: Path) -> None:
    m = _square()
    Image.fromarray(m).convert("1").save(tmp_path / "bits.png")
    np.testing.assert_array_equal(load_mask(tmp_path / "bits.png"), m)
    Image.fromarray(m.astype(np.uint8) * 255).convert("P").save(tmp_path / "drive.gif")
    np.testing.assert_array_equal(load_mask(tmp_path / "drive.gif"), m)
    raw = (m.astype("<u2") * 65535).tobytes()
    Image.frombytes("I;16", (m.shape[1], m.shape[0]), raw).save(tmp_path / "m16.tif")
    np.testing.assert_array_equal(load_mask(tmp_path / "m16.tif"), m)


def test_jpeg_mask_ignores_compression_noise(tmp_path: Path) -> None:
    m = np.zeros((64, 64), bool)
    m[16:48, 20:44] = True
    path = tmp_path / "lossy.jpg"
    Image.fromarray(m.astype(np.uint8) * 255).save(path, quality=70)
    assert (np.asarray(Image.open(path)) != 0).sum() > m.sum()  # the noise is real
    out = load_mask(path)
    assert (out != m).mean() < 0.01


def test_size_mismatch_names_both_sizes_and_hints_rotation(tmp_path: Path) -> None:
    path = tmp_path / "m.png"
    write_mask_atomic(path, _square(6, 8))
    assert load_mask(path, expected_shape=(6, 8)).shape == (6, 8)
    with pytest.raises(DatasetError) as info:
        load_mask(path, expected_shape=(10, 8, 3))
    msg = str(info.value)
    assert "8x6" in msg and "8x10" in msg and str(path) in msg
    with pytest.raises(DatasetError, match="rotated"):
        load_mask(path, expected_shape=(8, 6))


def test_bad_mask_files_raise_dataset_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        load_mask(tmp_path / "missing.png")
    text = tmp_path / "t.png"
    text.write_text("not a mask")
    with pytest.raises(DatasetError, match="not an image"):
        load_mask(text)
    cut = tmp_path / "cut.png"
    write_mask_atomic(tmp_path / "ok.png", np.random.default_rng(0).random((200, 200)) > 0.5)
    cut.write_bytes((tmp_path / "ok.png").read_bytes()[:300])
    with pytest.raises(DatasetError, match="truncated or corrupt"):
        load_mask(cut)


def test_write_mask_atomic_writes_uint8_0_255_png(tmp_path: Path) -> None:
    m = _square()
    path = tmp_path / "new" / "deep" / "mask.png"
    write_mask_atomic(path, m)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == "L"
        a = np.asarray(im)
    assert set(np.unique(a)) == {0, 255}
    np.testing.assert_array_equal(a == 255, m)
    # Overwriting replaces the file in one step and leaves no temp files behind.
    write_mask_atomic(path, ~m)
    np.testing.assert_array_equal(load_mask(path), ~m)
    assert os.listdir(path.parent) == ["mask.png"]
    # Non-bool input: anything non-zero is foreground.
    write_mask_atomic(path, np.array([[0, 3], [0.5, 0]]))
    np.testing.assert_array_equal(load_mask(path), [[False, True], [True, False]])


def test_write_mask_atomic_failure_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "mask.png"
    write_mask_atomic(path, _square())
    before = path.read_bytes()
    with pytest.raises(ValueError):
        write_mask_atomic(path, np.zeros((2, 2, 2)))

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        write_mask_atomic(path, ~_square())
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["mask.png"]
