"""scoring.score_database: stored scores equal hand-computed values; reuse, force, problems.

The fixture database holds a 10x10 image whose field of view is every column but the last, an
expert mask of rows 2-3 x cols 2-4 (6 pixels) and two heatmaps whose scores are worked out by
hand below. The FOV cache is filled with that known mask, so no detection is involved.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import select

from fundus_review.app.scoring import ScoringParams, score_database
from fundus_review.app.selection import ResultSelection
from fundus_review.core.transform import make_transform
from fundus_review.data.fov import FovCache
from fundus_review.data.images import file_sha256
from fundus_review.data.masks_io import write_mask_atomic
from fundus_review.errors import FundusReviewError
from fundus_review.store import Database, open_database, repo
from fundus_review.store.schema import Annotation, Heatmap, Score

N = 10
FOV = np.ones((N, N), bool)
FOV[:, 9] = False  # 90 pixels
MASK = np.zeros((N, N), bool)
MASK[2:4, 2:5] = True  # 6 pixels

# gradcam, on the original grid (stored through an identity transform):
# 1.0 on rows 2-3 x cols 2-3 (inside the mask), 0.5 on rows 2-3 x cols 4-5 (2 in, 2 out),
# 0.25 on column 9 (outside the field of view).
H1 = np.zeros((N, N), np.float32)
H1[2:4, 2:4] = 1.0
H1[2:4, 4:6] = 0.5
H1[:, 9] = 0.25
# hirescam: one maximum at (row 7, col 7), 0.5 on the whole mask.
H2 = np.zeros((N, N), np.float32)
H2[7, 7] = 1.0
H2[2:4, 2:5] = 0.5

# Both maps are stored 2x-upsampled (transform sx = sy = 2): 4 model px = 2 original px.
PARAMS = ScoringParams(tolerance_at_model_px=4.0)

EXPECTED_H1 = {
    # mass in F = 4 * 1 + 4 * 0.5 = 6, in the mask 4 * 1 + 2 * 0.5 = 5
    "energy_in_mask": 5 / 6,
    "pointing_hit": 1.0,  # the four maxima lie in the mask
    "pointing_distance_px": 0.0,
    "pointing_n_maxima": 4.0,
    "mask_area_fraction": 6 / 90,
    # H >= 0.5: 8 pixels, 6 of them in the mask
    "iou_fixed50": 6 / 8,
    "dice_fixed50": 12 / 14,
    # top 15 % = 14 pixels: the 8 non-zero ones (the tie group of zeros would overshoot more)
    "iou_top15": 6 / 8,
    "dice_top15": 12 / 14,
    # 6 pixels wanted: 4 at 1.0 + the tie group of four 0.5 (8 is as close to 6 as 4 is)
    "iou_area_match": 6 / 8,
    "dice_area_match": 12 / 14,
    # quantized 0 / 127 / 255: Otsu splits {0} from {127, 255}
    "iou_otsu": 6 / 8,
    "dice_otsu": 12 / 14,
    # 84 negatives in F (2 at 0.5, 82 at 0): the 4 ones beat all, the two 0.5 beat 82 and tie 2
    "pixel_auc": (4 * 84 + 2 * (82 + 1)) / (6 * 84),
    "mass_outside_fov": 2.5 / 8.5,
}
EXPECTED_H2 = {
    "energy_in_mask": 3 / 4,
    "pointing_hit": 0.0,  # nearest mask pixel (3, 4): distance sqrt(3^2 + 4^2) = 5 > 2
    "pointing_distance_px": 5.0,
    "pointing_n_maxima": 1.0,
    "mask_area_fraction": 6 / 90,
    "iou_fixed50": 6 / 7,
    "dice_fixed50": 12 / 13,
    "iou_top15": 6 / 7,
    "dice_top15": 12 / 13,
    "iou_area_match": 6 / 7,  # 1 + the tie group of 6 = 7 is closer to 6 than 1
    "dice_area_match": 12 / 13,
    "iou_otsu": 6 / 7,
    "dice_otsu": 12 / 13,
    "pixel_auc": 83 / 84,  # each mask pixel beats 83 zeros and loses to the maximum
    "mass_outside_fov": 0.0,
}


def _write_image(path: Path, value: int) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray(np.full((N, N, 3), value, np.uint8)).save(path)
    return file_sha256(path)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = open_database(tmp_path / "scores.db")
    yield database
    database.close()


@pytest.fixture
def cache(tmp_path: Path) -> FovCache:
    return FovCache(tmp_path / "cache" / "fov")  # = default_fov_cache() with the CLI test's env


@pytest.fixture
def world(db: Database, tmp_path: Path, cache: FovCache) -> dict:
    """Images a.png and b.png (same FOV, same heatmaps), masks imported as 'reference'."""
    root = tmp_path / "data"
    ids: dict[str, int] = {}
    with db.session() as s:
        ds = repo.get_or_create_dataset(s, root, name="tiny")
        model = repo.get_or_create_model(
            s, "m", "timm:resnet18", {"classes": ["normal", "dr"]}, "0" * 64, tmp_path / "m"
        )
        runs = {
            "gradcam": repo.get_or_create_cam_run(s, model, "gradcam", ["layer4"]),
            "hirescam": repo.get_or_create_cam_run(s, model, "hirescam", ["layer4"]),
        }
        ref = repo.get_or_create_reviewer(s, "reference")
        for k, stem in enumerate(("a", "b")):
            sha = _write_image(root / f"{stem}.png", 100 + k)
            write_mask_atomic(cache.path_for(sha), FOV)
            img = repo.upsert_image(s, ds, f"{stem}.png", N, N, sha)
            ids[stem] = img.id
            # A 20x20 model input: the maps are stored as 2x2 blocks, which map back exactly.
            tf = make_transform(N, N, 2 * N, 2 * N, "resize").to_dict()
            repo.save_prediction(s, img, model, [0.3, 0.7], 1, tf)
            up = np.ones((2, 2), np.float32)
            repo.save_heatmap(s, runs["gradcam"], img, 1, np.kron(H1, up))
            repo.save_heatmap(s, runs["hirescam"], img, 1, np.kron(H2, up))
            repo.replace_imported_mask(s, img, ref, "optic_disc", MASK, source=f"import:{stem}")
        run_ids = {m: r.id for m, r in runs.items()}
        ref_id, model_id = ref.id, model.id
    return {"root": root, "ids": ids, "runs": run_ids, "ref": ref_id, "model": model_id}


def stored(db: Database, image_id: int, run_id: int, reviewer: str = "reference") -> dict:
    with db.session(read_only=True) as s:
        hm = repo.get_heatmap(s, run_id, image_id)
        rev = next(r for r in repo.list_reviewers(s) if r.name == reviewer)
        return {
            sc.metric: sc.value
            for sc in repo.list_scores(s, heatmap=hm, structure="optic_disc", reviewer=rev)
        }


def assert_values(got: dict, expected: dict) -> None:
    assert set(got) == set(expected)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-9), name


def test_stored_scores_equal_hand_computed_values(db: Database, world: dict, cache) -> None:
    summary = score_database(db, params=PARAMS, fov_cache=cache)
    assert summary.problems == []
    assert (summary.images, summary.heatmaps, summary.scored, summary.reused) == (2, 4, 4, 0)
    for stem in ("a", "b"):
        assert_values(stored(db, world["ids"][stem], world["runs"]["gradcam"]), EXPECTED_H1)
        assert_values(stored(db, world["ids"][stem], world["runs"]["hirescam"]), EXPECTED_H2)
    with db.session(read_only=True) as s:
        params = {tuple(sorted(sc.params.items())) for sc in repo.list_scores(s)}
    assert params == {tuple(sorted({**PARAMS.to_dict(), "tolerance_px": 2.0}.items()))}


def test_identity_transform_scales_tolerance_by_one(db: Database, world: dict, cache) -> None:
    """With the heatmap at the original size the tolerance is the model-scale one (4 px)."""
    with db.session() as s:
        img = world["ids"]["a"]
        tf = make_transform(N, N, N, N, "resize").to_dict()
        repo.save_prediction(s, img, world["model"], [0.3, 0.7], 1, tf)
        repo.save_heatmap(s, world["runs"]["hirescam"], img, 1, H2)
        repo.save_heatmap(s, world["runs"]["gradcam"], img, 1, H1)
    score_database(db, params=ScoringParams(tolerance_at_model_px=5.0), fov_cache=cache)
    got = stored(db, world["ids"]["a"], world["runs"]["hirescam"])
    assert got["pointing_distance_px"] == 5.0 and got["pointing_hit"] == 1.0  # 5 <= 5
    score_database(db, params=ScoringParams(tolerance_at_model_px=4.9), fov_cache=cache)
    assert stored(db, world["ids"]["a"], world["runs"]["hirescam"])["pointing_hit"] == 0.0
    assert_values(stored(db, world["ids"]["a"], world["runs"]["gradcam"]), EXPECTED_H1)


def _score_rows(db: Database) -> list[tuple]:
    with db.session(read_only=True) as s:
        return [(sc.id, sc.metric, sc.value, sc.updated_at) for sc in s.scalars(select(Score))]


def _tamper(db: Database, image_id: int, run_id: int) -> None:
    """Overwrite one stored value behind scoring's back: only a recomputation restores it."""
    with db.session() as s:
        hm = repo.get_heatmap(s, run_id, image_id)
        (sc,) = repo.list_scores(s, heatmap=hm, metric="energy_in_mask")
        sc.value = 0.123


def test_second_call_reuses_everything_and_force_recomputes(
    db: Database, world: dict, cache
) -> None:
    score_database(db, params=PARAMS, fov_cache=cache)
    before = _score_rows(db)
    again = score_database(db, params=PARAMS, fov_cache=cache)
    assert (again.scored, again.reused, again.problems) == (0, 4, [])
    assert _score_rows(db) == before  # not even rewritten

    a, gradcam = world["ids"]["a"], world["runs"]["gradcam"]
    _tamper(db, a, gradcam)
    score_database(db, params=PARAMS, fov_cache=cache)
    assert stored(db, a, gradcam)["energy_in_mask"] == 0.123  # proof that nothing was recomputed

    forced = score_database(db, params=PARAMS, fov_cache=cache, force=True)
    assert (forced.scored, forced.reused) == (4, 0)
    assert stored(db, a, gradcam)["energy_in_mask"] == pytest.approx(5 / 6)
    assert [r[:3] for r in _score_rows(db)] == [r[:3] for r in before]  # same rows and values


def test_changed_parameters_replace_the_stored_scores(db: Database, world: dict, cache) -> None:
    score_database(db, params=PARAMS, fov_cache=cache)
    other = ScoringParams(tolerance_at_model_px=4.0, fixed_threshold=0.3, top_percent=2.5)
    summary = score_database(db, params=other, fov_cache=cache)
    assert summary.scored == 4
    with db.session(read_only=True) as s:
        names = {sc.metric for sc in repo.list_scores(s)}
    assert "iou_fixed30" in names and "iou_top2p5" in names
    assert "iou_fixed50" not in names and "iou_top15" not in names  # no mixing of settings
    # 0.25 (outside F) never counts; H1 >= 0.3 on F is the same 8 pixels as >= 0.5
    assert stored(db, world["ids"]["a"], world["runs"]["gradcam"])["iou_fixed30"] == 6 / 8


def test_filters_restrict_what_is_scored(db: Database, world: dict, cache) -> None:
    summary = score_database(
        db, ResultSelection(methods=["HiResCAM"]), params=PARAMS, fov_cache=cache
    )
    assert (summary.heatmaps, summary.scored) == (2, 2)
    assert stored(db, world["ids"]["a"], world["runs"]["gradcam"]) == {}
    assert (
        score_database(db, ResultSelection(structures=["hemorrhage"]), fov_cache=cache).scored == 0
    )
    with pytest.raises(FundusReviewError, match="no stored heatmaps for method"):
        score_database(db, ResultSelection(methods=["scorecam"]), fov_cache=cache)
    with pytest.raises(FundusReviewError, match="no model 'nope'"):
        score_database(db, ResultSelection(models="nope"), fov_cache=cache)


def test_image_filter_scores_only_those_images(db: Database, world: dict, cache) -> None:
    """What the GUI does after an edit: rescoring one image must not walk the whole dataset."""
    a, b = world["ids"]["a"], world["ids"]["b"]
    summary = score_database(db, params=PARAMS, fov_cache=cache, image_ids=[b])
    assert (summary.images, summary.heatmaps, summary.scored) == (1, 2, 2)
    assert stored(db, a, world["runs"]["gradcam"]) == {}
    assert stored(db, b, world["runs"]["gradcam"])["energy_in_mask"] == pytest.approx(5 / 6)


def test_missing_image_file_is_reported_and_the_run_goes_on(
    db: Database, world: dict, cache
) -> None:
    (world["root"] / "a.png").unlink()
    summary = score_database(db, params=PARAMS, fov_cache=cache)
    assert len(summary.problems) == 1
    path, reason = summary.problems[0]
    assert path.endswith("a.png") and "not found" in reason
    assert stored(db, world["ids"]["a"], world["runs"]["gradcam"]) == {}
    assert_values(stored(db, world["ids"]["b"], world["runs"]["gradcam"]), EXPECTED_H1)


def test_changed_image_file_is_reported(db: Database, world: dict, tmp_path: Path) -> None:
    """Without a cached FOV the file is read, and a file with other content is refused."""
    _write_image(world["root"] / "a.png", 7)
    fresh_cache = FovCache(tmp_path / "other_cache")
    summary = score_database(db, params=PARAMS, fov_cache=fresh_cache)
    reasons = dict(summary.problems)
    assert list(reasons) == [str(world["root"] / "a.png")]
    assert "content hash differs" in reasons[str(world["root"] / "a.png")]
    # b.png has no border: its detected FOV is the whole image, so column 9 counts now
    got = stored(db, world["ids"]["b"], world["runs"]["gradcam"])
    assert got["mass_outside_fov"] == 0.0 and got["mask_area_fraction"] == 6 / 100


def test_unreadable_mask_is_reported_and_other_masks_still_scored(
    db: Database, world: dict, cache
) -> None:
    with db.session() as s:
        ann = s.scalar(select(Annotation).where(Annotation.image_id == world["ids"]["a"]))
        ann.raster = b"not a mask"
        other = repo.get_or_create_reviewer(s, "second")
        repo.replace_imported_mask(s, world["ids"]["a"], other, "optic_disc", MASK, "import:x")
    summary = score_database(db, params=PARAMS, fov_cache=cache)
    assert len(summary.problems) == 1
    path, reason = summary.problems[0]
    assert path.endswith("a.png") and "optic_disc mask of reviewer 'reference'" in reason
    assert stored(db, world["ids"]["a"], world["runs"]["gradcam"]) == {}
    assert_values(stored(db, world["ids"]["a"], world["runs"]["gradcam"], "second"), EXPECTED_H1)
    assert_values(stored(db, world["ids"]["b"], world["runs"]["gradcam"]), EXPECTED_H1)


def test_unreadable_heatmap_is_reported_and_the_other_method_scored(
    db: Database, world: dict, cache
) -> None:
    with db.session() as s:
        hm = s.scalar(
            select(Heatmap).where(
                Heatmap.image_id == world["ids"]["a"],
                Heatmap.cam_run_id == world["runs"]["hirescam"],
            )
        )
        hm.data = b"garbage"
    summary = score_database(db, params=PARAMS, fov_cache=cache)
    assert [
        (p.endswith("a.png"), "hirescam heatmap not scored" in r) for p, r in summary.problems
    ] == [(True, True)]
    assert_values(stored(db, world["ids"]["a"], world["runs"]["gradcam"]), EXPECTED_H1)
    assert stored(db, world["ids"]["a"], world["runs"]["hirescam"]) == {}


def test_drawn_and_imported_regions_give_identical_scores(db: Database, world: dict, cache) -> None:
    """The mask as two drawn polygons (their union is MASK), geometry only, no stored raster:
    core.geometry rasterises them (pixel centres inside), and the scores equal the import's."""
    left = {"points": [[2, 2], [4, 2], [4, 4], [2, 4]]}  # pixel centres of cols 2-3, rows 2-3
    right = {"points": [[4, 2], [5, 2], [5, 4], [4, 4]]}  # col 4
    with db.session() as s:
        drawer = repo.get_or_create_reviewer(s, "drawer")
        for geo in (left, right):
            repo.add_annotation(s, world["ids"]["a"], drawer, "optic_disc", "polygon", geo)
    summary = score_database(db, params=PARAMS, fov_cache=cache)
    assert summary.problems == []
    for method in ("gradcam", "hirescam"):
        run = world["runs"][method]
        drawn = stored(db, world["ids"]["a"], run, "drawer")
        assert drawn == stored(db, world["ids"]["a"], run, "reference")
        assert drawn == pytest.approx(EXPECTED_H1 if method == "gradcam" else EXPECTED_H2)
    agree = [(r.reviewer_a, r.reviewer_b, r.iou) for r in summary.agreements]
    assert agree == [("drawer", "reference", 1.0)]


def test_malformed_drawn_shape_is_reported(db: Database, world: dict, cache) -> None:
    with db.session() as s:
        drawer = repo.get_or_create_reviewer(s, "drawer")
        line = {"points": [[2, 2], [4, 2]]}  # two vertices: not a polygon
        repo.add_annotation(s, world["ids"]["b"], drawer, "optic_cup", "polygon", line)
    summary = score_database(db, params=PARAMS, fov_cache=cache)
    ((path, reason),) = summary.problems
    assert path.endswith("b.png") and "optic_cup mask of reviewer 'drawer' not scored" in reason
    assert summary.scored == 4  # the reference masks of both images


def test_editing_a_region_invalidates_and_rescoring_follows(
    db: Database, world: dict, cache
) -> None:
    score_database(db, params=PARAMS, fov_cache=cache)
    smaller = np.zeros((N, N), bool)
    smaller[2:4, 2:4] = True  # exactly gradcam's maxima block
    with db.session() as s:
        ref = world["ref"]
        repo.replace_imported_mask(s, world["ids"]["a"], ref, "optic_disc", smaller, "import:new")
    summary = score_database(db, params=PARAMS, fov_cache=cache)
    assert (summary.scored, summary.reused) == (2, 2)
    got = stored(db, world["ids"]["a"], world["runs"]["gradcam"])
    assert got["energy_in_mask"] == pytest.approx(4 / 6)
    assert got["iou_area_match"] == 1.0  # top 4 pixels = the mask


def test_mask_outside_the_field_of_view_scores_none_not_zero(
    db: Database, world: dict, cache
) -> None:
    border = np.zeros((N, N), bool)
    border[:, 9] = True
    with db.session() as s:
        rev = repo.get_or_create_reviewer(s, "border")
        repo.replace_imported_mask(s, world["ids"]["a"], rev, "hemorrhage", border, "import:b")
    score_database(db, params=PARAMS, fov_cache=cache)
    with db.session(read_only=True) as s:
        hm = repo.get_heatmap(s, world["runs"]["gradcam"], world["ids"]["a"])
        got = {
            sc.metric: sc.value for sc in repo.list_scores(s, heatmap=hm, structure="hemorrhage")
        }
    assert got["energy_in_mask"] is None and got["pointing_hit"] is None
    assert got["mass_outside_fov"] == pytest.approx(2.5 / 8.5)  # defined without the mask


def test_reviewer_vs_reviewer_agreement(db: Database, world: dict, cache) -> None:
    wider = np.zeros((N, N), bool)
    wider[2:5, 2:5] = True  # 9 pixels, containing MASK's 6
    far = np.zeros((N, N), bool)
    far[7, 7] = True
    with db.session() as s:
        b = repo.get_or_create_reviewer(s, "b")
        c = repo.get_or_create_reviewer(s, "c")
        repo.replace_imported_mask(s, world["ids"]["a"], b, "optic_disc", wider, "import:w")
        repo.replace_imported_mask(s, world["ids"]["a"], c, "optic_disc", far, "import:f")
    summary = score_database(db, params=PARAMS, fov_cache=cache)
    got = {(r.reviewer_a, r.reviewer_b): (r.iou, r.dice) for r in summary.agreements}
    assert got == {
        ("b", "c"): (0.0, 0.0),
        ("b", "reference"): (6 / 9, 12 / 15),
        ("c", "reference"): (0.0, 0.0),
    }
    assert {r.rel_path for r in summary.agreements} == {"a.png"}
    only_two = score_database(
        db, ResultSelection(reviewers=["b", "reference"]), fov_cache=cache
    ).agreements
    assert [(r.reviewer_a, r.reviewer_b, r.structure) for r in only_two] == [
        ("b", "reference", "optic_disc")
    ]
    assert math.isclose(only_two[0].to_dict()["dice"], 0.8)


def test_score_command(db: Database, world: dict, tmp_path: Path, monkeypatch, capsys) -> None:
    import argparse

    from fundus_review.cli.report import add_score_parser

    monkeypatch.setenv("FUNDUS_REVIEW_CACHE", str(tmp_path / "cache"))
    parser = argparse.ArgumentParser()
    add_score_parser(parser.add_subparsers())
    args = parser.parse_args(["score", "--db", str(tmp_path / "scores.db"), "--quiet"])
    assert args.func(args) == 0
    assert "4 heatmap x mask pairs scored, 0 already stored" in capsys.readouterr().out
    _tamper(db, world["ids"]["a"], world["runs"]["gradcam"])
    args = parser.parse_args(
        ["score", "--db", str(tmp_path / "scores.db"), "--force", "--method", "gradcam", "--quiet"]
    )
    assert args.func(args) == 0
    assert "2 heatmap x mask pairs scored, 0 already stored" in capsys.readouterr().out
    assert stored(db, world["ids"]["a"], world["runs"]["gradcam"])["energy_in_mask"] == 5 / 6
