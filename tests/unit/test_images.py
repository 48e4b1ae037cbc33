"""load_image / image_size / file_sha256 on every kind of file a clinic folder can hold."""

from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps

from fundus_review.data.images import (
    IMAGE_EXTENSIONS,
    MAX_PIXELS,
    file_sha256,
    image_size,
    is_image_file,
    load_image,
)
from fundus_review.errors import FundusReviewError, ImageLoadError


def _pattern(h: int = 6, w: int = 8) -> np.ndarray:
    """An RGB image with a distinct value at every pixel, so any flip/rotation is visible."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([yy * 20 + 10, xx * 20 + 5, (yy * w + xx) % 250], axis=2).astype(np.uint8)


def _i16(values: np.ndarray) -> Image.Image:
    """A PIL image in mode "I;16" (16-bit little-endian gray), built from raw bytes."""
    h, w = values.shape
    return Image.frombytes("I;16", (w, h), values.astype("<u2").tobytes())


def _assert_rgb_uint8(a: np.ndarray) -> None:
    assert a.ndim == 3 and a.shape[2] == 3
    assert a.dtype == np.uint8
    assert a.flags.c_contiguous and a.flags.writeable


def test_extensions_and_case_insensitive_check() -> None:
    assert {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"} == set(IMAGE_EXTENSIONS)
    assert is_image_file("a/B.JPG") and is_image_file("x.TiFf") and is_image_file("y.Bmp")
    assert not is_image_file("labels.csv") and not is_image_file("noext")


@pytest.mark.parametrize("ext", [".png", ".bmp", ".tif"])
def test_lossless_rgb_roundtrip_is_exact(tmp_path: Path, ext: str) -> None:
    a = _pattern()
    path = tmp_path / f"img{ext}"
    Image.fromarray(a).save(path)
    out = load_image(path)
    _assert_rgb_uint8(out)
    np.testing.assert_array_equal(out, a)
    assert image_size(path) == (8, 6)  # (width, height)


def test_jpeg_loads_close_to_source(tmp_path: Path) -> None:
    a = np.full((32, 48, 3), (200, 90, 40), np.uint8)
    path = tmp_path / "photo.JPEG"
    Image.fromarray(a).save(path, quality=95)
    out = load_image(path)
    _assert_rgb_uint8(out)
    assert out.shape == (32, 48, 3)
    assert np.abs(out.astype(int) - a).max() <= 3


def test_exif_orientation_6_is_rotated_clockwise(tmp_path: Path) -> None:
    a = np.zeros((40, 60, 3), np.uint8)
    a[:10, :15] = (255, 0, 0)  # red block in the stored top-left corner
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(a).save(path, exif=exif, quality=95)
    out = load_image(path)
    assert out.shape == (60, 40, 3)
    assert image_size(path) == (40, 60)
    # Rotating clockwise moves the stored top-left corner to the displayed top-right.
    assert out[:15, -10:, 0].mean() > 200 and out[:15, -10:, 1].mean() < 40
    assert out[:15, :10, 0].mean() < 40


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_matches_pil_exif_transpose(
    tmp_path: Path, orientation: int
) -> None:
    a = _pattern(5, 7)
    path = tmp_path / f"o{orientation}.png"
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(a).save(path, exif=exif)
    with Image.open(path) as im:
        expected = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    out = load_image(path)
    np.testing.assert_array_equal(out, expected)
    assert image_size(path) == expected.shape[1::-1]
    if orientation >= 5:
        assert out.shape[:2] == (7, 5)


def test_16bit_gray_png_is_scaled_by_bit_depth_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 257, 32896], [65535, 1000, 60000]], np.uint16)
    path = tmp_path / "gray16.png"
    _i16(values).save(path)
    with Image.open(path) as im:
        assert im.mode.startswith("I;16")
    out = load_image(path)
    _assert_rgb_uint8(out)
    # 65535 -> 255 and 257 -> 1 (x * 255 / 65535); clipping would have given 255 everywhere.
    expected = np.array([[0, 1, 128], [255, 4, 233]], np.uint8)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], expected)


def test_16bit_tiff_is_scaled(tmp_path: Path) -> None:
    values = np.array([[0, 65535], [32768, 4096]], np.uint16)
    path = tmp_path / "gray16.tif"
    _i16(values).save(path)
    out = load_image(path)
    np.testing.assert_array_equal(out[..., 1], [[0, 255], [128, 16]])


def test_16bit_png_with_sbit_12_uses_4095_as_white(tmp_path: Path) -> None:
    path = tmp_path / "twelve_bit.png"
    _i16(np.array([[0, 4095, 2048]], np.uint16)).save(path)
    data = path.read_bytes()
    at = data.index(b"IDAT") - 4  # insert sBIT(12) before the first IDAT chunk
    chunk = b"sBIT" + bytes([12])
    sbit = struct.pack(">I", 1) + chunk + struct.pack(">I", zlib.crc32(chunk))
    path.write_bytes(data[:at] + sbit + data[at:])
    np.testing.assert_array_equal(load_image(path)[0, :, 0], [0, 255, 128])


def test_16bit_colour_png_keeps_channel_order_and_scale(tmp_path: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    rgb16 = np.zeros((2, 3, 3), np.uint16)
    rgb16[..., 0] = 65535
    rgb16[..., 1] = 32896
    rgb16[..., 2] = 257
    path = tmp_path / "rgb16.png"
    cv2.imwrite(str(path), rgb16[..., ::-1])  # OpenCV writes BGR
    out = load_image(path)
    np.testing.assert_array_equal(out[0, 0], [255, 128, 1])


def test_float_tiff_in_unit_range_is_scaled_by_255(tmp_path: Path) -> None:
    values = np.array([[0.0, 0.5], [1.0, 0.25]], np.float32)
    path = tmp_path / "float.tif"
    Image.fromarray(values).save(path)
    np.testing.assert_array_equal(load_image(path)[..., 2], [[0, 128], [255, 64]])


def test_float_rgb_tiff_pil_cannot_open_still_loads(tmp_path: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    rgb = np.zeros((3, 4, 3), np.float32)
    rgb[..., 0] = 1.0
    rgb[..., 1] = 0.5
    path = tmp_path / "float_rgb.tiff"
    cv2.imwrite(str(path), rgb[..., ::-1])
    out = load_image(path)
    assert out.shape == (3, 4, 3)
    np.testing.assert_array_equal(out[1, 1], [255, 128, 0])
    assert image_size(path) == (4, 3)


def test_gray_png_becomes_three_equal_channels(tmp_path: Path) -> None:
    gray = np.array([[0, 50], [100, 255]], np.uint8)
    path = tmp_path / "gray.png"
    Image.fromarray(gray).save(path)
    out = load_image(path)
    _assert_rgb_uint8(out)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)


def test_rgba_is_composited_on_black(tmp_path: Path) -> None:
    rgba = np.zeros((1, 3, 4), np.uint8)
    rgba[0, 0] = (200, 100, 50, 255)  # opaque: unchanged
    rgba[0, 1] = (200, 100, 50, 0)  # fully transparent: black, like the camera border
    rgba[0, 2] = (200, 100, 50, 51)  # 20 % opaque
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba).save(path)
    out = load_image(path)
    np.testing.assert_array_equal(out[0], [[200, 100, 50], [0, 0, 0], [40, 20, 10]])


def test_la_and_palette_and_cmyk_become_rgb(tmp_path: Path) -> None:
    la = np.array([[[100, 255], [100, 0]]], np.uint8)
    Image.fromarray(la).save(tmp_path / "la.png")
    np.testing.assert_array_equal(load_image(tmp_path / "la.png")[0, :, 0], [100, 0])

    pal = Image.new("P", (2, 1))
    pal.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    pal.putpixel((1, 0), 1)
    pal.save(tmp_path / "pal.bmp")
    np.testing.assert_array_equal(load_image(tmp_path / "pal.bmp")[0], [[0, 0, 0], [10, 200, 30]])

    Image.new("CMYK", (3, 2), (0, 255, 255, 0)).save(tmp_path / "cmyk.tif")
    np.testing.assert_array_equal(load_image(tmp_path / "cmyk.tif")[0, 0], [255, 0, 0])


def _jpeg_bytes() -> bytes:
    import io

    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def test_truncated_jpeg_raises_image_load_error_with_reason(tmp_path: Path) -> None:
    path = tmp_path / "cut.jpg"
    path.write_bytes(_jpeg_bytes()[:5000])
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    assert info.value.path == str(path)
    assert "truncated JPEG" in info.value.reason
    assert str(path) in str(info.value)
    assert isinstance(info.value, FundusReviewError)


def test_truncation_is_reported_even_if_pil_was_told_to_pad(tmp_path: Path) -> None:
    path = tmp_path / "cut.jpg"
    path.write_bytes(_jpeg_bytes()[:5000])
    old = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        with pytest.raises(ImageLoadError, match="truncated"):
            load_image(path)
        assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # the caller's setting is restored
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = old


def test_jpeg_cut_inside_its_header(tmp_path: Path) -> None:
    path = tmp_path / "header.jpg"
    path.write_bytes(_jpeg_bytes()[:40])
    with pytest.raises(ImageLoadError, match="JPEG"):
        load_image(path)


def test_text_file_renamed_jpg_is_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("patient 12, left eye, re-take\n")
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    assert info.value.reason.startswith("not an image file")
    with pytest.raises(ImageLoadError, match="not an image file"):
        image_size(path)


def test_binary_garbage_is_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "garbage.png"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ImageLoadError, match="not an image file"):
        load_image(path)


def test_empty_file_and_missing_file_and_folder(tmp_path: Path) -> None:
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty file"):
        load_image(empty)
    with pytest.raises(ImageLoadError, match="not found"):
        load_image(tmp_path / "nope.jpg")
    folder = tmp_path / "dir.jpg"
    folder.mkdir()
    with pytest.raises(ImageLoadError, match="folder"):
        load_image(folder)


def test_corrupt_png_data_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "bad.png"
    Image.fromarray(_pattern(64, 64)).save(path)
    data = bytearray(path.read_bytes())
    at = data.index(b"IDAT") + 8
    data[at : at + 40] = b"\xff" * 40  # scribble over the compressed pixels
    path.write_bytes(bytes(data))
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    assert "PNG" in info.value.reason


def test_decompression_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    # A PNG whose header claims more pixels than MAX_PIXELS: a valid IHDR and a tiny IDAT.
    side = int(MAX_PIXELS**0.5) + 100
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)

    def chunk(kind: bytes, payload: bytes) -> bytes:
        body = kind + payload
        return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))

    path = tmp_path / "bomb.png"
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00"))
        + chunk(b"IEND", b"")
    )
    with pytest.raises(ImageLoadError, match="too large"):
        load_image(path)
    with pytest.raises(ImageLoadError, match="too large"):
        image_size(path)


def test_image_size_reads_only_the_header(tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    path.write_bytes(_jpeg_bytes()[:2000])  # header intact, pixels missing
    assert image_size(path) == (160, 120)  # the header suffices
    with pytest.raises(ImageLoadError):
        load_image(path)


def test_file_sha256_streams_and_matches_hashlib(tmp_path: Path) -> None:
    data = bytes(range(256)) * 9000  # 2.3 MB: three 1 MiB chunks
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    assert file_sha256(path, chunk_size=1000) == hashlib.sha256(data).hexdigest()
    with pytest.raises(ImageLoadError, match="not found|cannot read"):
        file_sha256(tmp_path / "missing.jpg")


def test_real_fundus_jpeg_loads(shared_data: Path) -> None:
    path = shared_data / "idrid_seg" / "images" / "IDRiD_01.jpg"
    out = load_image(path)
    _assert_rgb_uint8(out)
    assert out.shape == (680, 1024, 3)
    assert image_size(path) == (1024, 680)
    # A fundus photograph is red-dominant inside the field of view.
    centre = out[200:480, 300:700].reshape(-1, 3).mean(axis=0)
    assert centre[0] > centre[1] > centre[2]
