"""Several reviewers annotating one image at once, from separate processes with their own
connections to one PostgreSQL server (as separate app instances would): nothing is lost, and
each sees the others' regions, read-only."""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
from pathlib import Path

import pytest

from fundus_review.core.geometry import Ellipse
from fundus_review.review.editor import Editor, ReadOnlyRegion, UndoHistory, load_regions
from fundus_review.store import open_database, repo

H, W = 40, 60
REGIONS = 12  # per reviewer
REVIEWERS = ("Dr. Rao", "Dr. Kim", "Dr. Osei")


def _shape(reviewer_index: int, k: int, edited: bool) -> Ellipse:
    """The region a reviewer draws k-th (and where it ends up after its edit)."""
    return Ellipse(5 + 4 * k, 5 + 10 * reviewer_index, 3 + (2 if edited else 0), 2)


def _key(reviewer: str, geometry: dict | None) -> tuple[str, str]:
    return reviewer, json.dumps(geometry, sort_keys=True)


def _annotate(url: str, image_id: int, index: int, barrier: mp.Barrier, out: mp.Queue) -> None:
    """One app instance: draw REGIONS regions, edit the odd ones, delete and undo the first,
    all interleaved with the other instances; then report what it sees of everyone's work."""
    with open_database(url) as db:
        ed = Editor(db, image_id, REVIEWERS[index])
        hist = UndoHistory(ed)
        barrier.wait()  # everyone starts writing at the same moment
        ids = []
        for k in range(REGIONS):
            ids.append(hist.push(ed.create("hemorrhage", _shape(index, k, False))).region_ids()[0])
            if k % 2:
                hist.push(ed.edit(ed.region(ids[k]), _shape(index, k, True)))
        hist.push(ed.delete(ed.region(ids[0])))
        hist.undo()
        ed.set_status("done")
        barrier.wait()  # everyone has finished writing
        seen = [_key(r.reviewer, r.geometry) for r in load_regions(db, image_id)]
        others = [r for r in ed.regions() if r.reviewer != REVIEWERS[index]]
        refused = 0
        for r in others[:3]:
            try:
                ed.edit(r, Ellipse(1, 1, 1, 1))
            except ReadOnlyRegion:
                refused += 1
        out.put((index, seen, refused))


@pytest.mark.slow
def test_reviewers_in_separate_processes_lose_nothing(pg_url: str, tmp_path: Path) -> None:
    with open_database(pg_url) as db, db.session() as s:
        ds = repo.get_or_create_dataset(s, tmp_path / "data")
        image_id = repo.upsert_image(s, ds, "a.png", W, H, hashlib.sha256(b"a").hexdigest()).id
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(len(REVIEWERS)), ctx.Queue()
    procs = [
        ctx.Process(target=_annotate, args=(pg_url, image_id, i, barrier, out))
        for i in range(len(REVIEWERS))
    ]
    for p in procs:
        p.start()
    reports = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0

    expected = sorted(
        _key(name, _shape(i, k, edited=bool(k % 2)).to_dict())
        for i, name in enumerate(REVIEWERS)
        for k in range(REGIONS)
    )
    with open_database(pg_url) as db:
        stored = sorted(_key(r.reviewer, r.geometry) for r in load_regions(db, image_id))
        assert stored == expected  # every region, with its edit, once; the undone delete is live
        for name in REVIEWERS:
            assert Editor(db, image_id, name).review_status()[0] == "done"
    for _index, seen, refused in reports:
        assert sorted(seen) == expected  # each instance sees everyone's regions
        assert refused == 3  # and cannot change the others'
