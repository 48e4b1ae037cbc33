"""app.cdr: ratios per image and reviewer from stored regions, and their agreement."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import numpy as np
import pytest

from fundus_review.app.cdr import against_dataset, between_reviewers, cdr_rows
from fundus_review.app.importing import import_masks, register_dataset
from fundus_review.errors import FundusReviewError
from fundus_review.store import repo
from fundus_review.store.db import open_database
from tests.conftest import SHARED_DATA

H, W = 60, 80


def _rect(top: int, left: int, h: int, w: int) -> np.ndarray:
    m = np.zeros((H, W), dtype=bool)
    m[top : top + h, left : left + w] = True
    return m


def _seed(db_path: Path, root: Path) -> None:
    root.mkdir(exist_ok=True)
    (root / "labels.csv").write_text("image,diagnosis,cdr_expert_mean\na.jpg,glaucoma,0.5\n")
    with open_database(db_path) as db, db.session() as s:
        ds = repo.get_or_create_dataset(s, root, "toy")
        a = repo.upsert_image(s, ds, "a.jpg", W, H, hashlib.sha256(b"a").hexdigest())
        b = repo.upsert_image(s, ds, "b.jpg", W, H, hashlib.sha256(b"b").hexdigest())
        ann, bob, cat = (repo.get_or_create_reviewer(s, n) for n in ("ann", "bob", "cat"))
        # ann on a: disc 40 rows x 40 cols; cup drawn as two regions, rows 10..29 (20), cols 20..39
        repo.add_annotation(s, a, ann, "optic_disc", "mask", mask=_rect(10, 10, 40, 40))
        repo.add_annotation(s, a, ann, "optic_cup", "mask", mask=_rect(10, 20, 10, 10))
        repo.add_annotation(s, a, ann, "optic_cup", "mask", mask=_rect(20, 30, 10, 10))
        # bob on a: same disc, cup 10 rows x 10 cols -> vertical 0.25
        repo.add_annotation(s, a, bob, "optic_disc", "mask", mask=_rect(10, 10, 40, 40))
        repo.add_annotation(s, a, bob, "optic_cup", "mask", mask=_rect(20, 20, 10, 10))
        # ann on b: disc 20 x 20, cup 15 x 5 -> vertical 0.75
        repo.add_annotation(s, b, ann, "optic_disc", "mask", mask=_rect(0, 0, 20, 20))
        repo.add_annotation(s, b, ann, "optic_cup", "mask", mask=_rect(2, 2, 15, 5))
        # cat has a disc only (no row); bob's deleted cup on b does not count
        repo.add_annotation(s, b, cat, "optic_disc", "mask", mask=_rect(0, 0, 20, 20))
        repo.add_annotation(s, b, bob, "optic_disc", "mask", mask=_rect(0, 0, 20, 20))
        gone = repo.add_annotation(s, b, bob, "optic_cup", "mask", mask=_rect(2, 2, 5, 5))
        s.flush()
        repo.soft_delete_annotation(s, gone)


def test_rows_match_a_hand_computation(tmp_path: Path) -> None:
    _seed(tmp_path / "c.db", tmp_path / "toy")
    with open_database(tmp_path / "c.db") as db:
        rows = cdr_rows(db)
    got = {(r.image, r.reviewer): r for r in rows}
    assert sorted(got) == [("a.jpg", "ann"), ("a.jpg", "bob"), ("b.jpg", "ann")]
    r = got["a.jpg", "ann"]
    assert (r.vertical, r.horizontal, r.area) == pytest.approx((20 / 40, 20 / 40, 200 / 1600))
    assert r.dataset_cdr == pytest.approx(0.5)
    assert got["a.jpg", "bob"].vertical == pytest.approx(0.25)
    assert got["b.jpg", "ann"].vertical == pytest.approx(0.75)
    assert got["b.jpg", "ann"].dataset_cdr is None  # no row for b.jpg in labels.csv

    (pair,) = between_reviewers(rows)
    assert (pair.a, pair.b, pair.mad.n) == ("ann", "bob", 1)
    assert pair.mad.mean == pytest.approx(0.25)
    by_rev = {c.a: c.mad for c in against_dataset(rows)}
    assert by_rev["ann"].n == 1 and by_rev["ann"].mean == pytest.approx(0.0)
    assert by_rev["bob"].mean == pytest.approx(0.25)


def test_reviewer_filter_and_no_csv(tmp_path: Path) -> None:
    _seed(tmp_path / "c.db", tmp_path / "toy")
    (tmp_path / "toy" / "labels.csv").unlink()
    with open_database(tmp_path / "c.db") as db:
        rows = cdr_rows(db, reviewers=["bob"])
    assert [(r.image, r.reviewer, r.dataset_cdr) for r in rows] == [("a.jpg", "bob", None)]
    assert against_dataset(rows) == [] and between_reviewers(rows) == []
    with (
        open_database(tmp_path / "c.db") as db,
        pytest.raises(FundusReviewError, match="'dan'.*ann, bob, cat"),
    ):
        cdr_rows(db, reviewers=["dan"])


def _shared_data() -> Path:
    """../shared/data next to this checkout, else next to the main checkout of this worktree."""
    if SHARED_DATA.is_dir():
        return SHARED_DATA
    root = Path(__file__).resolve().parents[2]
    try:
        common = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--path-format=absolute", "--git-common-dir"],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        pytest.skip("../shared/data is not present")
    candidate = Path(common).parent.parent / "shared" / "data"
    if not candidate.is_dir():
        pytest.skip("../shared/data is not present")
    return candidate


def test_drishti_vertical_cdr_agrees_with_the_experts_mean(tmp_path: Path) -> None:
    root = _shared_data() / "drishti_gs1_train"
    if not root.is_dir():
        pytest.skip("DRISHTI-GS1 is not in ../shared/data")
    with open_database(tmp_path / "d.db") as db:
        registered = register_dataset(db, root)
        summary = import_masks(db, registered, root / "masks")
        assert summary.structures == {"optic_cup": 50, "optic_disc": 50}
        rows = cdr_rows(db)
    assert len(rows) == 50 and all(r.dataset_cdr is not None for r in rows)
    (agreement,) = against_dataset(rows)
    # Measured: MAD 0.0254 (CI 0.020-0.032) between the consensus masks' vertical CDR and the
    # dataset's cdr_expert_mean (the mean of the experts' own CDR estimates).
    assert agreement.mad.n == 50
    assert agreement.mad.mean < 0.03
    assert agreement.mad.ci_low < agreement.mad.mean < agreement.mad.ci_high


def test_export_cdr_cli_writes_one_row_per_image_and_reviewer(tmp_path: Path) -> None:
    from fundus_review.cli.main import main

    _seed(tmp_path / "c.db", tmp_path / "toy")
    out = tmp_path / "cdr.csv"
    assert main(["export", "cdr", str(out), "--db", str(tmp_path / "c.db")]) == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "dataset,image,image_id,reviewer,vertical,horizontal,area,dataset_cdr"
    assert lines[1] == "toy,a.jpg,1,ann,0.500000,0.500000,0.125000,0.500000"
    assert lines[3] == "toy,b.jpg,2,ann,0.750000,0.250000,0.187500,"
    assert len(lines) == 4
    assert (
        main(["export", "cdr", str(out), "--db", str(tmp_path / "c.db"), "--reviewer", "bob"]) == 0
    )
    assert out.read_text(encoding="utf-8").splitlines()[1:] == [
        "toy,a.jpg,1,bob,0.250000,0.250000,0.062500,0.500000"
    ]
