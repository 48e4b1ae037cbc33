"""The cached cup-to-disc ratios behind the browser's CDR column: written with every disc or cup
edit (same transaction), equal to core.cdr's hand-checked ratios, sorted with blanks last."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from fundus_review.app.cdr import refresh_cdr_cache
from fundus_review.core.cdr import cup_disc_ratio
from fundus_review.store import repo, repo_cdr
from fundus_review.store.db import open_database
from fundus_review.views.browse import BrowseFilter, ordered_indices
from fundus_review.views.queries import image_cdr, load_browse_rows

H, W = 60, 80


def _rect(top: int, left: int, h: int, w: int) -> np.ndarray:
    m = np.zeros((H, W), dtype=bool)
    m[top : top + h, left : left + w] = True
    return m


@pytest.fixture
def db(tmp_path: Path):
    with open_database(tmp_path / "c.db") as db:
        with db.session() as s:
            ds = repo.get_or_create_dataset(s, tmp_path, "toy")
            for name in ("a.jpg", "b.jpg", "c.jpg"):
                repo.upsert_image(s, ds, name, W, H, hashlib.sha256(name.encode()).hexdigest())
            for name in ("ann", "bob"):
                repo.get_or_create_reviewer(s, name)
        yield db


def _ids(db) -> tuple[int, dict[str, int], dict[str, int]]:
    with db.session(read_only=True) as s:
        ds = repo.list_datasets(s)[0]
        images = {i.rel_path: i.id for i in repo.dataset_images(s, ds)}
        reviewers = {r.name: r.id for r in repo.list_reviewers(s)}
        return ds.id, images, reviewers


def _cached(db) -> dict[tuple[int, str], tuple]:
    with db.session(read_only=True) as s:
        return {(i, n): (v, h, a) for i, n, v, h, a in repo_cdr.cached_ratios(s)}


def test_every_edit_of_a_disc_or_cup_updates_the_cached_ratio(db) -> None:
    _, img, rev = _ids(db)
    a, ann = img["a.jpg"], rev["ann"]
    disc = _rect(10, 10, 40, 20)  # 40 rows, 20 columns, 800 px
    with db.session() as s:
        repo.add_annotation(s, a, ann, "optic_disc", "mask", mask=disc)
    assert _cached(db) == {}  # a disc alone: no ratio
    cup = _rect(20, 15, 10, 10)  # 10 rows, 10 columns, 100 px
    with db.session() as s:
        cup_row = repo.add_annotation(s, a, ann, "optic_cup", "mask", mask=cup).id
    # By hand: vertical 10/40, horizontal 10/20, area 100/800.
    assert _cached(db) == {(a, "ann"): (0.25, 0.5, 0.125)}
    r = cup_disc_ratio(disc, cup)
    assert (r.vertical, r.horizontal, r.area) == (0.25, 0.5, 0.125)
    with db.session() as s:  # the cup redrawn: 30 rows x 10 columns
        repo.update_annotation(s, cup_row, mask=_rect(15, 15, 30, 10))
    assert _cached(db) == {(a, "ann"): (0.75, 0.5, 0.375)}
    with db.session() as s:  # a second cup region: the union spans rows 12..44
        repo.add_annotation(s, a, ann, "optic_cup", "mask", mask=_rect(12, 12, 2, 2))
    assert _cached(db)[(a, "ann")][0] == pytest.approx(33 / 40)
    with db.session() as s:
        for region in repo.list_annotations(s, a, structure="optic_cup"):
            repo.soft_delete_annotation(s, region)
    assert _cached(db) == {}  # no cup left: no ratio (blank in the browser)
    with db.session() as s:
        repo.restore_annotation(s, cup_row)
    assert _cached(db) == {(a, "ann"): (0.75, 0.5, 0.375)}
    # A failed transaction leaves the cache as it was (same transaction as the edit).
    with pytest.raises(RuntimeError), db.session() as s:
        repo.update_annotation(s, cup_row, mask=_rect(15, 15, 4, 10))
        raise RuntimeError("the edit is rolled back")
    assert _cached(db) == {(a, "ann"): (0.75, 0.5, 0.375)}


def test_shapes_without_raster_are_measured_by_the_app(db) -> None:
    ds_id, img, rev = _ids(db)
    b, bob = img["b.jpg"], rev["bob"]
    # Geometry only (as older databases hold them): the store cannot rasterise it.
    disc = {"type": "ellipse", "cx": 40.0, "cy": 30.0, "rx": 20.0, "ry": 20.0}
    cup = {"type": "ellipse", "cx": 40.0, "cy": 30.0, "rx": 10.0, "ry": 8.0}
    with db.session() as s:
        repo.add_annotation(s, b, bob, "optic_disc", "ellipse", geometry=disc)
        repo.add_annotation(s, b, bob, "optic_cup", "ellipse", geometry=cup)
    with db.session(read_only=True) as s:
        assert repo_cdr.stale_pairs(s, ds_id) == [(b, bob)]
    assert refresh_cdr_cache(db, ds_id) == 1
    assert refresh_cdr_cache(db, ds_id) == 0  # nothing left to measure
    from fundus_review.core import geometry

    expected = cup_disc_ratio(
        geometry.rasterize("ellipse", disc, (H, W)), geometry.rasterize("ellipse", cup, (H, W))
    )
    (got,) = image_cdr(db, b)
    assert (got.reviewer, got.vertical, got.horizontal, got.area) == (
        "bob", expected.vertical, expected.horizontal, expected.area
    )  # fmt: skip
    assert got.vertical == pytest.approx(16 / 40, abs=0.06)  # ry 8 of 20: about 0.4


def test_browser_rows_show_own_or_mean_cdr_and_sort_blanks_last(db) -> None:
    ds_id, img, rev = _ids(db)
    with db.session() as s:
        for name, who, cup_rows in (
            ("a.jpg", "ann", 10),
            ("a.jpg", "bob", 30),
            ("b.jpg", "bob", 20),
        ):
            repo.add_annotation(
                s, img[name], rev[who], "optic_disc", "mask", mask=_rect(10, 10, 40, 20)
            )
            repo.add_annotation(
                s, img[name], rev[who], "optic_cup", "mask", mask=_rect(15, 15, cup_rows, 5)
            )
    rows = load_browse_rows(db, ds_id, reviewer="ann")
    by = {r.rel_path: r for r in rows}
    assert (by["a.jpg"].cdr, by["a.jpg"].cdr_own) == (0.25, True)  # ann's own: 10/40
    assert (by["b.jpg"].cdr, by["b.jpg"].cdr_reviewers, by["b.jpg"].cdr_own) == (0.5, 1, False)
    assert by["c.jpg"].cdr is None and by["c.jpg"].cdr_text == ""
    anyone = {r.rel_path: r for r in load_browse_rows(db, ds_id)}
    assert (anyone["a.jpg"].cdr, anyone["a.jpg"].cdr_reviewers) == (0.5, 2)  # (0.25 + 0.75) / 2
    assert anyone["a.jpg"].cdr_text == "CDR 0.50 (mean of 2)"
    for desc, expected in (
        (False, ["a.jpg", "b.jpg", "c.jpg"]),
        (True, ["b.jpg", "a.jpg", "c.jpg"]),
    ):
        order = ordered_indices(rows, BrowseFilter(), "cdr", desc)
        assert [rows[i].rel_path for i in order] == expected  # c.jpg (blank) last both ways


def test_a_proposal_counts_in_the_cached_ratio_only_once_accepted(db) -> None:
    from fundus_review.core.vocabulary import ACCEPTED_PREFIX, PROPOSED_PREFIX

    _, img, rev = _ids(db)
    a, ann = img["a.jpg"], rev["ann"]
    disc, cup = _rect(10, 10, 40, 20), _rect(20, 15, 10, 10)  # vertical 10 / 40
    with db.session() as s:
        repo.add_annotation(s, a, ann, "optic_disc", "mask", mask=disc)
        c = repo.add_annotation(
            s, a, ann, "optic_cup", "mask", mask=cup, source=PROPOSED_PREFIX + "seg"
        )
        cup_id = c.id
    assert _cached(db) == {}  # the cup is an unreviewed proposal: no ratio yet
    with db.session(read_only=True) as s:
        assert repo_cdr.stale_pairs(s) == []  # nor a pair waiting to be measured
    with db.session() as s:
        repo.set_annotation_source(s, cup_id, ACCEPTED_PREFIX + "seg")
    assert _cached(db)[(a, "ann")][0] == pytest.approx(0.25)
    with db.session() as s:  # undoing the acceptance removes the ratio again
        repo.set_annotation_source(s, cup_id, PROPOSED_PREFIX + "seg")
    assert _cached(db) == {}
