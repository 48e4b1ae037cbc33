"""app.mean_maps: groups per run x {all, true class, predicted class, outcome}, corner numbers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fundus_review.app.mean_maps import ALL_IMAGES, mean_map_on_image, mean_maps
from fundus_review.app.selection import ResultSelection
from fundus_review.core import mean_maps as mm
from fundus_review.data.fov import FovCache
from fundus_review.store import Database, open_database
from tests.unit.mean_map_world import IMAGES, build_world


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = open_database(tmp_path / "mm.db")
    yield database
    database.close()


@pytest.fixture
def cache(tmp_path: Path) -> FovCache:
    return FovCache(tmp_path / "fov")


def test_groups_and_their_sizes(db, tmp_path, cache) -> None:
    world = build_world(db, tmp_path / "data", cache)
    result = mean_maps(db, fov_cache=cache, size=64)
    assert result.images == 5 and result.disc_images == 4 and not result.problems
    honest = world["runs"]["honest"]
    sizes = {(g.grouping, g.group): g.n for g in result.panels(honest, "fov")}
    assert sizes == {
        ("all", ALL_IMAGES): 5,
        ("true class", "a"): 2,
        ("true class", "b"): 3,
        ("predicted class", "a"): 3,
        ("predicted class", "b"): 2,
        ("outcome", "correct"): 4,
        ("outcome", "misclassified"): 1,
    }
    assert result.get(honest, "disc", "all", ALL_IMAGES).n == 4  # image 4 has no expert disc
    assert [r[0] for r in result.runs()] == sorted(world["runs"].values())
    # the selection narrows the runs
    only = mean_maps(db, ResultSelection(models="shortcut"), fov_cache=cache, size=32)
    assert [r[1] for r in only.runs()] == ["shortcut"]


def test_the_shortcut_run_is_a_corner_number_the_honest_one_is_not(db, tmp_path, cache) -> None:
    world = build_world(db, tmp_path / "data", cache)
    result = mean_maps(db, fov_cache=cache)
    short = result.get(world["runs"]["shortcut"], "fov", "all", ALL_IMAGES).numbers(n_resamples=200)
    honest = result.get(world["runs"]["honest"], "fov", "all", ALL_IMAGES).numbers(n_resamples=200)
    assert short["n"] == honest["n"] == 5
    assert short["corner_share"]["mean"] > 0.8 and short["off_fov_share"]["mean"] > 0.9
    assert honest["corner_share"]["mean"] < 0.01 and honest["off_fov_share"]["mean"] < 0.05
    assert short["peak_in_corner"] == pytest.approx(
        {"k": 5, "n": 5, "rate": 1.0, "ci_low": short["peak_in_corner"]["ci_low"], "ci_high": 1.0}
    )
    assert short["peak_in_corner"]["ci_low"] < 1.0  # Wilson: n = 5 is not certainty
    assert honest["peak_in_corner"]["k"] == 0
    assert short["corner_share"]["ci_low"] <= short["corner_share"]["mean"]
    # a uniform map's share is the reference, from the covered cells only
    assert 0.0 < short["corner_share"]["uniform"] < short["off_fov_share"]["uniform"] < 0.5
    # the corner sits top-left on the mean map, in every image size
    mean = result.get(world["runs"]["shortcut"], "fov", "all", ALL_IMAGES).acc.mean()
    row, col = np.unravel_index(np.nanargmax(mean), mean.shape)
    assert row < mean.shape[0] / 4 and col < mean.shape[1] / 4


def test_the_disc_frame_puts_every_honest_blob_on_the_centre_both_eyes(db, tmp_path, cache) -> None:
    world = build_world(db, tmp_path / "data", cache)
    result = mean_maps(db, fov_cache=cache, size=64)
    g = result.get(world["runs"]["honest"], "disc", "all", ALL_IMAGES)
    mean, grid = g.acc.mean(), g.acc.grid
    row, col = np.unravel_index(np.nanargmax(mean), mean.shape)
    c = grid.centres()
    assert abs(c[row]) <= grid.cell and abs(c[col]) <= grid.cell
    centre = np.abs(c) <= grid.cell  # the 2 x 2 cells around the frame centre (size is even)
    assert g.acc.peaks[np.ix_(centre, centre)].sum() == 4  # every image's peak is there
    assert "corner_share" not in g.numbers()  # numbers come from the fov frame


def test_mean_map_drawn_back_on_an_image_shows_the_corner(db, tmp_path, cache) -> None:
    world = build_world(db, tmp_path / "data", cache)
    result = mean_maps(db, fov_cache=cache)
    g = result.get(world["runs"]["shortcut"], "fov", "true class", "b")
    h, w, cx, cy, r, *_ = IMAGES[2]  # draw it on an image of another size than most
    back = mean_map_on_image(g, mm.Frame("fov", cx, cy, r), (h, w))
    assert back.shape == (h, w) and back.max() == pytest.approx(1.0, abs=0.05)
    y, x = np.unravel_index(int(np.argmax(back)), back.shape)
    assert x < 0.2 * w and y < 0.2 * h


def test_a_missing_image_file_is_a_problem_not_a_crash(db, tmp_path, cache) -> None:
    build_world(db, tmp_path / "data", cache)
    (tmp_path / "data" / "img0.png").unlink()
    result = mean_maps(db, fov_cache=cache, size=32)
    assert result.images == 4
    assert result.problems and result.problems[0][0] == "img0.png"
    assert "not found" in result.problems[0][1]


def test_the_app_layer_picks_the_true_class_then_the_predicted_then_all(
    db, tmp_path, cache
) -> None:
    from fundus_review.app.mean_maps import layer_for_image

    world = build_world(db, tmp_path / "data", cache)
    result = mean_maps(db, fov_cache=cache, size=64)
    run = world["runs"]["shortcut"]
    fov = np.zeros((1000, 1500), bool)
    fov[:, 250:1250] = True  # a 1000-px circle's bounding box, centred
    small, g = layer_for_image(result, run, "b", "a", fov, (1000, 1500), max_side=300)
    assert (g.grouping, g.group, g.n) == ("true class", "b", 3)
    assert small.shape == (200, 300)  # the long side capped, the aspect kept
    y, x = np.unravel_index(int(np.argmax(small)), small.shape)
    assert x < 0.35 * 300 and y < 0.25 * 200  # top-left, in the photo's corner beside the FOV
    assert (
        layer_for_image(result, run, None, "a", fov, (1000, 1500))[1].grouping == "predicted class"
    )
    assert layer_for_image(result, run, "zzz", None, None, (10, 10))[1].grouping == "all"
    assert layer_for_image(result, 999, "b", "a", fov, (1000, 1500)) is None


def test_export_mean_maps_command_writes_arrays_pngs_and_numbers(
    db, tmp_path, cache, monkeypatch, capsys
) -> None:
    import csv

    from PIL import Image as PILImage

    from fundus_review.cli.main import main

    world = build_world(db, tmp_path / "data", cache)
    monkeypatch.setenv("FUNDUS_REVIEW_CACHE", str(tmp_path / "appcache"))
    # the app's FOV cache is elsewhere: the command recomputes the masks from the photos
    out = tmp_path / "out"
    code = main(["export", "mean-maps", str(out), "--db", str(tmp_path / "mm.db"), "--size", "32",
                 "--model", "shortcut"])  # fmt: skip
    assert code == 0
    assert "Wrote 14 mean maps (5 images" in capsys.readouterr().out  # 7 fov + 7 disc panels
    rows = list(csv.DictReader((out / "mean_maps.csv").open()))
    assert len(rows) == 14 and {r["model"] for r in rows} == {"shortcut"}
    first = next(r for r in rows if r["frame"] == "fov" and r["grouping"] == "all")
    assert first["n"] == "5" and float(first["corner_share"]) > 0.8
    assert first["peaks_in_corner"] == "5" and first["run_id"] == str(world["runs"]["shortcut"])
    with np.load(out / first["file"]) as z:
        assert z["mean"].shape == (32, 32) and z["count"].max() == 5
        assert z["peak_fraction"].sum() == pytest.approx(1.0)
        assert np.isnan(z["std"][z["count"] == 0]).all()
    png = PILImage.open(out / first["file"].replace(".npz", ".png"))
    assert png.size == (64, 64)
    meta = (out / "mean_maps.json").read_text()
    assert '"extent": 1.25' in meta and '"images_with_disc": 4' in meta
    # nothing to average: a clear message, no folder
    empty = open_database(tmp_path / "empty.db")
    empty.close()
    assert main(["export", "mean-maps", str(tmp_path / "none"), "--db",
                 str(tmp_path / "empty.db")]) != 0  # fmt: skip
    assert "no heatmap of this selection" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


def test_a_heatmap_made_for_another_image_size_is_left_out_and_said(db, tmp_path, cache) -> None:
    from fundus_review.core.transform import make_transform
    from fundus_review.store import repo

    world = build_world(db, tmp_path / "data", cache)
    with db.session() as s:
        honest = next(m for m in repo.list_models(s) if m.name == "honest")
        tf = make_transform(100, 100, 112, 112, "resize")  # the file was 300 x 300
        repo.save_prediction(s, world["images"][0], honest, [0.9, 0.1], 0, tf.to_dict())
    result = mean_maps(db, fov_cache=cache, size=32)
    assert result.get(world["runs"]["honest"], "fov", "all", ALL_IMAGES).n == 4
    assert result.get(world["runs"]["shortcut"], "fov", "all", ALL_IMAGES).n == 5
    assert [p[0] for p in result.problems] == ["img0.png"]
    assert "100x100 image, the image is 300x300" in result.problems[0][1]
