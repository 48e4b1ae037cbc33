"""The synthetic fundus generator: determinism, the label rule, exact masks, the confounder marker,
and the on-disk layout that must import like the real expert masks in ../shared/data."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fundus_review.data.synthetic import (
    CLASS_CORNER,
    LABELS_COLUMNS,
    demo_dataset_info,
    generate_fundus,
    label_for_cdr,
    write_demo_dataset,
)
from fundus_review.errors import DatasetError

LESIONS = ("hemorrhage", "hard_exudate")


def _rows_with_mask(mask: np.ndarray) -> int:
    rows = np.flatnonzero(mask.any(axis=1))
    return int(rows[-1] - rows[0] + 1)


def _pixel_centres(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]]
    return xs + 0.5, ys + 0.5


def _all_files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


# ---------------------------------------------------------------- determinism and labels
def test_same_seed_gives_the_same_case_and_another_seed_does_not() -> None:
    a = generate_fundus(7, size=(160, 200), lesions=True, confounder=True)
    b = generate_fundus(np.random.default_rng(7), size=(160, 200), lesions=True, confounder=True)
    c = generate_fundus(8, size=(160, 200), lesions=True, confounder=True)
    assert a.image.shape == (160, 200, 3) and a.image.dtype == np.uint8
    assert np.array_equal(a.image, b.image)
    assert a.masks.keys() == b.masks.keys()
    assert all(np.array_equal(a.masks[k], b.masks[k]) for k in a.masks)
    assert a.meta == b.meta
    assert not np.array_equal(a.image, c.image)


def test_writing_the_same_set_twice_gives_identical_bytes(tmp_path: Path) -> None:
    kwargs = dict(
        n=6, seed=3, size=(128, 128), confounder=True, confounder_strength=0.5, lesions=0.5
    )
    write_demo_dataset(tmp_path / "a", **kwargs)
    write_demo_dataset(tmp_path / "b", **kwargs)
    files_a, files_b = _all_files(tmp_path / "a"), _all_files(tmp_path / "b")
    assert len(files_a) >= 6 * 3 + 3  # image + disc + cup per case, and the three set files
    assert files_a == files_b
    write_demo_dataset(tmp_path / "c", **{**kwargs, "seed": 4})
    assert _all_files(tmp_path / "c")["images/synth_00000.jpg"] != files_a["images/synth_00000.jpg"]


def test_label_rule_and_its_gap() -> None:
    assert label_for_cdr(0.6) == "glaucoma" and label_for_cdr(0.85) == "glaucoma"
    assert label_for_cdr(0.4) == "normal" and label_for_cdr(0.15) == "normal"
    with pytest.raises(ValueError, match="gap"):
        label_for_cdr(0.5)
    with pytest.raises(ValueError):
        generate_fundus(0, size=(96, 96), cdr=0.5)
    with pytest.raises(ValueError, match="contradicts"):
        generate_fundus(0, size=(96, 96), cdr=0.7, label="normal")
    assert generate_fundus(0, size=(96, 96), cdr=0.7).meta["label"] == "glaucoma"
    for seed in range(6):
        g = generate_fundus(seed, size=(96, 96), label="glaucoma").meta
        n = generate_fundus(seed, size=(96, 96), label="normal").meta
        assert g["label"] == "glaucoma" and 0.6 <= g["cdr"] <= 0.85
        assert n["label"] == "normal" and 0.15 <= n["cdr"] <= 0.4


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="too small"):
        generate_fundus(0, size=(32, 32))
    with pytest.raises(ValueError, match="eye"):
        generate_fundus(0, size=(96, 96), eye="left")
    with pytest.raises(ValueError, match="confounder_mode"):
        generate_fundus(0, size=(96, 96), confounder=True, confounder_mode="sideways")


# ---------------------------------------------------------------- masks and pixels
@pytest.mark.parametrize("seed", range(6))
def test_disc_and_cup_masks_match_the_meta(seed: int) -> None:
    label = "glaucoma" if seed % 2 else "normal"
    case = generate_fundus(seed, label=label)
    m, disc, cup = case.meta, case.masks["optic_disc"], case.masks["optic_cup"]
    a, b = m["disc_axes"]
    # the outline is an ellipse with a few % of harmonic wobble: area within a few % of pi*a*b
    assert disc.sum() == pytest.approx(math.pi * a * b, rel=0.04)
    assert disc.sum() == pytest.approx(m["disc_area"], rel=0.02)
    assert cup.sum() == pytest.approx(m["cup_area"], rel=0.05)
    assert cup.any() and not (cup & ~disc).any()
    assert _rows_with_mask(disc) == pytest.approx(m["disc_vertical_diameter"], abs=1.01)
    assert _rows_with_mask(cup) / _rows_with_mask(disc) == pytest.approx(m["cdr"], abs=0.03)
    ys, xs = np.nonzero(disc)
    assert xs.mean() + 0.5 == pytest.approx(m["disc_center"][0], abs=1.5)
    assert ys.mean() + 0.5 == pytest.approx(m["disc_center"][1], abs=1.5)
    # the disc sits on the nasal side: a right eye (OD) shows it right of the fovea
    assert (m["disc_center"][0] > m["fovea_center"][0]) == (m["eye"] == "OD")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_pixels_agree_with_the_masks(seed: int) -> None:
    case = generate_fundus(seed, lesions=8, label="glaucoma")
    green = case.image[..., 1].astype(float)
    disc, cup = case.masks["optic_disc"], case.masks["optic_cup"]
    xs, ys = _pixel_centres(disc.shape)
    cx, cy = case.meta["disc_center"]
    dist = np.hypot(xs - cx, ys - cy)
    ring = (dist > 0.8 * case.meta["disc_vertical_diameter"]) & (
        dist < 1.2 * case.meta["disc_vertical_diameter"]
    )
    # pale cup > orange rim > surrounding fundus, in the channel where they differ most
    assert green[cup].mean() > green[disc & ~cup].mean() + 10
    assert green[disc & ~cup].mean() > green[ring].mean() + 20
    fov_mean = green[case.fov].mean()
    assert green[case.masks["hemorrhage"]].mean() < 0.75 * fov_mean
    if "hard_exudate" in case.masks:
        assert green[case.masks["hard_exudate"]].mean() > 1.3 * fov_mean


@pytest.mark.parametrize("seed", range(5))
def test_lesions_lie_inside_the_field_of_view_and_off_the_disc(seed: int) -> None:
    case = generate_fundus(seed, size=(256, 256), lesions=True)
    xs, ys = _pixel_centres((256, 256))
    circle = (
        np.hypot(xs - case.meta["fov_center"][0], ys - case.meta["fov_center"][1])
        < case.meta["fov_radius"]
    )
    assert case.meta["hemorrhage"] and 3 <= case.meta["n_hemorrhages"] <= 12
    for kind in LESIONS:
        if kind in case.masks:
            assert not (case.masks[kind] & ~case.fov).any()
            assert not (case.masks[kind] & ~circle).any()
            assert not (case.masks[kind] & case.masks["optic_disc"]).any()


def test_lesion_switch_keeps_the_anatomy_and_an_int_sets_the_count() -> None:
    plain = generate_fundus(5, size=(256, 256), lesions=False)
    sick = generate_fundus(5, size=(256, 256), lesions=5)
    assert not set(LESIONS) & plain.masks.keys()
    assert plain.meta["n_hemorrhages"] == 0 and plain.meta["hemorrhage"] is False
    assert sick.meta["n_hemorrhages"] == 5 and sick.masks["hemorrhage"].any()
    assert np.array_equal(plain.masks["optic_disc"], sick.masks["optic_disc"])
    assert np.array_equal(plain.masks["optic_cup"], sick.masks["optic_cup"])
    far = ~np.any([_dilate(sick.masks[k], 3) for k in LESIONS if k in sick.masks], axis=0)
    assert np.array_equal(plain.image[far], sick.image[far])


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    out = mask.copy()
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            out |= np.roll(np.roll(mask, dy, 0), dx, 1)
    return out


@pytest.mark.parametrize("size", [(512, 512), (480, 640), (96, 96)])
def test_image_looks_like_a_fundus_photo_statistically(size: tuple[int, int]) -> None:
    for seed in range(3):
        case = generate_fundus(seed, size=size, confounder=True)
        img = case.image.astype(float)
        xs, ys = _pixel_centres(size)
        d = np.hypot(xs - case.meta["fov_center"][0], ys - case.meta["fov_center"][1])
        border = (d > case.meta["fov_radius"] + 2) & ~case.masks.get("marker", np.zeros(size, bool))
        assert border.mean() > 0.1 and img[border].mean() < 6 and img[border].max() < 40
        r, g, b = (img[case.fov][:, ch].mean() for ch in range(3))
        assert r > g > b and r > 60  # orange-red, not grey
        assert case.fov.mean() > 0.5


# ---------------------------------------------------------------- confounder marker
@pytest.mark.parametrize("size", [(256, 256), (480, 640), (64, 64)])
def test_marker_is_bright_and_clearly_outside_the_field_of_view(size: tuple[int, int]) -> None:
    for label in ("glaucoma", "normal"):
        case = generate_fundus(2, size=size, label=label, confounder=True)
        m, marker = case.meta, case.masks["marker"]
        assert m["marker"] == CLASS_CORNER[label] and m["marker_agrees"] is True
        x0, y0, x1, y1 = m["marker_box"]
        assert marker.sum() == (x1 - x0) * (y1 - y0) == max(4, round(0.04 * size[1])) ** 2
        assert marker[y0:y1, x0:x1].all()
        xs, ys = _pixel_centres(size)
        d = np.hypot(xs - m["fov_center"][0], ys - m["fov_center"][1])
        assert d[marker].min() > m["fov_radius"] + 2
        assert not (marker & case.fov).any()
        assert case.image[marker].min() >= 225
        top, left = y0 < size[0] / 2, x0 < size[1] / 2
        assert (top, left) == ((True, False) if label == "glaucoma" else (False, True))


def test_marker_correlation_follows_strength_and_mode() -> None:
    size = (64, 64)
    for seed in range(6):
        g_agree = generate_fundus(
            seed, size=size, label="glaucoma", confounder=True, confounder_strength=1.0
        )
        g_against = generate_fundus(
            seed, size=size, label="glaucoma", confounder=True, confounder_strength=0.0
        )
        assert g_agree.meta["marker"] == "top_right" and g_against.meta["marker"] == "bottom_left"
        assert g_against.meta["marker_agrees"] is False
        kw = dict(size=size, confounder=True, confounder_mode="presence")
        assert generate_fundus(seed, label="glaucoma", **kw).meta["marker"] == "top_right"
        absent = generate_fundus(seed, label="normal", **kw)
        assert absent.meta["marker"] == "none" and "marker" not in absent.masks
        flipped = generate_fundus(seed, label="normal", confounder_strength=0.0, **kw)
        assert flipped.meta["marker"] == "top_right" and flipped.masks["marker"].any()
    draws = {
        generate_fundus(s, size=size, confounder=True, confounder_strength=0.5).meta[
            "marker_agrees"
        ]
        for s in range(30)
    }
    assert draws == {True, False}


def test_marker_is_the_only_difference_the_confounder_makes() -> None:
    clean = generate_fundus(4, size=(128, 128), label="normal", confounder=False)
    marked = generate_fundus(4, size=(128, 128), label="normal", confounder=True)
    assert clean.meta["marker"] == "none" and "marker" not in clean.masks
    differs = np.any(clean.image != marked.image, axis=-1)
    assert differs.any() and not (differs & ~marked.masks["marker"]).any()


# ---------------------------------------------------------------- the written data set
def test_written_layout_matches_real_expert_masks(tmp_path: Path) -> None:
    out = write_demo_dataset(
        tmp_path / "demo", n=8, seed=1, size=(128, 128), confounder=True, lesions=0.5
    )
    with (out / "labels.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert tuple(reader.fieldnames) == LABELS_COLUMNS
    assert sorted(r["diagnosis"] for r in rows) == ["glaucoma"] * 4 + ["normal"] * 4
    assert sum(r["hemorrhage"] == "present" for r in rows) == 4
    metas = {m["image"]: m for m in json.loads((out / "meta.json").read_text())}
    for row in rows:
        stem = Path(row["image"]).stem
        with Image.open(out / "images" / row["image"]) as im:
            assert im.format == "JPEG" and im.size == (128, 128) and im.mode == "RGB"
        assert label_for_cdr(float(row["cdr"])) == row["diagnosis"]
        assert row["marker"] == CLASS_CORNER[row["diagnosis"]]
        expected = {"optic_disc", "optic_cup", "marker"} | (
            {"hemorrhage"} if row["hemorrhage"] == "present" else set()
        )
        present = {p.parent.name for p in out.glob(f"masks/*/{stem}.png")}
        assert expected <= present <= expected | {"hard_exudate"}
        for structure in present:
            with Image.open(out / "masks" / structure / f"{stem}.png") as im:
                assert im.mode == "L" and im.size == (128, 128)
                values = np.asarray(im)
            assert set(np.unique(values)) == {0, 255}
        with Image.open(out / "masks" / "optic_disc" / f"{stem}.png") as im:
            assert (np.asarray(im) > 0).sum() == pytest.approx(
                metas[row["image"]]["disc_area"], rel=0.05
            )
    assert demo_dataset_info(out)["n"] == 8


def test_structure_names_are_those_of_the_real_data(shared_data: Path, tmp_path: Path) -> None:
    real = {p.name for p in shared_data.glob("*/masks/*") if p.is_dir()}
    out = write_demo_dataset(tmp_path / "demo", n=4, size=(96, 96), lesions=1.0)
    ours = {p.name for p in (out / "masks").iterdir()}
    assert {"optic_disc", "optic_cup", "hemorrhage"} <= ours <= real


def test_dataset_fractions_are_exact_per_class(tmp_path: Path) -> None:
    out = write_demo_dataset(
        tmp_path / "d", n=20, size=(64, 64), confounder=True, confounder_strength=0.7, lesions=0.3
    )
    with (out / "labels.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    for cls in ("glaucoma", "normal"):
        mine = [r for r in rows if r["diagnosis"] == cls]
        assert len(mine) == 10
        assert sum(r["marker"] == CLASS_CORNER[cls] for r in mine) == 7
        assert sum(r["hemorrhage"] == "present" for r in mine) == 3


def test_refuses_a_foreign_folder_and_touches_nothing(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(DatasetError, match="not empty"):
        write_demo_dataset(tmp_path, n=2, size=(64, 64))
    assert [p.name for p in tmp_path.iterdir()] == ["precious.txt"]


def test_rewrite_replaces_an_older_set_without_stale_masks(tmp_path: Path) -> None:
    write_demo_dataset(tmp_path, n=6, size=(64, 64), lesions=1.0, confounder=True)
    assert list(tmp_path.glob("masks/hemorrhage/*.png"))
    write_demo_dataset(tmp_path, n=4, size=(64, 64), lesions=0.0)
    assert not list(tmp_path.glob("masks/hemorrhage/*.png")) and not list(
        tmp_path.glob("masks/marker/*")
    )
    assert len(list(tmp_path.glob("images/*.jpg"))) == 4
    assert demo_dataset_info(tmp_path)["n"] == 4


def test_interrupted_run_leaves_no_labels_and_can_be_rerun(tmp_path: Path) -> None:
    seen = []

    def stop_after_three(done: int, total: int) -> None:
        seen.append((done, total))
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_demo_dataset(tmp_path, n=6, size=(64, 64), progress=stop_after_three)
    assert seen == [(1, 6), (2, 6), (3, 6)]
    assert not (tmp_path / "labels.csv").exists() and not list(tmp_path.rglob("*.tmp"))
    assert demo_dataset_info(tmp_path) is None
    write_demo_dataset(tmp_path, n=6, size=(64, 64))
    with (tmp_path / "labels.csv").open(newline="") as f:
        assert len(list(csv.DictReader(f))) == 6
    assert demo_dataset_info(tmp_path)["n"] == 6
