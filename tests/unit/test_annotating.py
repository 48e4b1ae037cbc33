"""annotating: every edit/undo/redo is one committed transaction; conflicts never lose work."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from fundus_review.core.geometry import Brush, Ellipse, Point, Polygon, paint_stroke, rasterize
from fundus_review.review.editor import (
    Compound,
    CreateRegion,
    DeleteRegion,
    EditConflict,
    Editor,
    ReadOnlyRegion,
    UndoHistory,
    heatmap_id_for,
    load_regions,
)
from fundus_review.store import Database, open_database, repo
from fundus_review.store.schema import Annotation, Score

H, W = 40, 60


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "edit.db"
    with open_database(path) as db, db.session() as s:
        ds = repo.get_or_create_dataset(s, tmp_path / "data")
        repo.upsert_image(s, ds, "a/IDRiD_01.png", W, H, hashlib.sha256(b"a").hexdigest())
    return path


@pytest.fixture
def db(db_path: Path) -> Iterator[Database]:
    database = open_database(db_path)
    yield database
    database.close()


def image_id(db: Database) -> int:
    with db.session(read_only=True) as s:
        return repo.list_datasets(s)[0].images[0].id


def live(db: Database) -> list:
    return load_regions(db, image_id(db))


def test_create_stores_geometry_and_its_exact_raster_then_undo_redo_keep_the_row(db) -> None:
    ed = Editor(db, image_id(db), "Dr. Rao")
    hist = UndoHistory(ed)
    ell = Ellipse(30.2, 20.1, 9.0, 5.0, 25.0)
    cmd = hist.push(ed.create("optic_disc", ell))
    (r,) = live(db)
    assert r.id == cmd.region_ids()[0] and r.kind == "ellipse" and r.reviewer == "Dr. Rao"
    assert r.geometry == ell.to_dict()
    np.testing.assert_array_equal(r.mask(), rasterize("ellipse", r.geometry, (H, W)))
    hist.undo()
    assert live(db) == [] and load_regions(db, image_id(db), include_deleted=True)[0].deleted
    hist.redo()
    (again,) = live(db)
    assert again.id == r.id and again.content == r.content


def test_edit_undo_restores_geometry_and_mask_exactly(db) -> None:
    ed = Editor(db, image_id(db), "Dr. Rao")
    hist = UndoHistory(ed)
    hist.push(ed.create("hemorrhage", Polygon(((5, 5), (20, 6), (12, 18)))))
    (before,) = live(db)
    moved = Polygon(((5, 5), (25, 6), (12, 30), (3, 20)))
    hist.push(ed.edit(before, moved))
    (after,) = live(db)
    assert after.id == before.id and after.geometry == moved.to_dict()
    assert after.mask().sum() > before.mask().sum()
    hist.undo()
    assert live(db)[0].content == before.content
    hist.redo()
    assert live(db)[0].content == after.content


def test_delete_is_undoable_and_edits_clear_stale_scores(db) -> None:
    ed = Editor(db, image_id(db), "Dr. Rao")
    hist = UndoHistory(ed)
    hist.push(ed.create("optic_cup", Ellipse(30, 20, 4, 4)))
    (r,) = live(db)
    with db.session() as s:
        model = repo.get_or_create_model(s, "m", "timm:resnet18", {"classes": ["a"]}, "0" * 64, "x")
        run = repo.get_or_create_cam_run(s, model, "gradcam", ["layer4"])
        hm = repo.save_heatmap(s, run, r.image_id, 0, np.zeros((8, 8), np.float32))
        repo.save_scores(s, hm, "optic_cup", r.reviewer_id, {"iou": 0.5})
    hist.push(ed.delete(r))
    assert live(db) == []
    with db.session() as s:  # the score of the deleted mask is gone with it
        assert s.scalar(select(func.count()).select_from(Score)) == 0
    hist.undo()
    assert [x.id for x in live(db)] == [r.id]


def test_erasing_part_of_an_ellipse_replaces_it_by_a_brush_region_in_one_step(db) -> None:
    ed = Editor(db, image_id(db), "Dr. Rao")
    hist = UndoHistory(ed)
    hist.push(ed.create("optic_disc", Ellipse(30, 20, 10, 8)))
    (ell,) = live(db)
    erased = Brush(ell.shape(), ({"op": "erase", "radius": 3, "points": [[30, 20], [40, 20]]},))
    cmd = hist.push(ed.edit(ell, erased))
    assert isinstance(cmd, Compound)
    (brush,) = live(db)
    assert brush.kind == "brush" and brush.id != ell.id
    expected = ell.mask()
    paint_stroke(expected, [[30, 20], [40, 20]], 3, value=False)
    np.testing.assert_array_equal(brush.mask(), expected)
    hist.undo()
    assert [(x.id, x.kind) for x in live(db)] == [(ell.id, "ellipse")]


def test_an_edit_that_leaves_no_pixel_deletes_the_region(db) -> None:
    ed = Editor(db, image_id(db), "Dr. Rao")
    ed.create("microaneurysm", Point(10.5, 10.5, 1.0))
    (pt,) = live(db)
    cmd = ed.edit(pt, None, mask=np.zeros((H, W), bool))
    assert isinstance(cmd, DeleteRegion) and live(db) == []


def test_imported_mask_regions_are_edited_as_rasters(db) -> None:
    ed = Editor(db, image_id(db), "reference")
    m = np.zeros((H, W), bool)
    m[10:20, 10:30] = True
    with db.session() as s:
        repo.replace_imported_mask(s, image_id(db), ed.reviewer_id, "hard_exudate", m, "import:x")
    (r,) = live(db)
    erased = m.copy()
    erased[10:20, 10:15] = False
    hist = UndoHistory(ed)
    hist.push(ed.edit(r, None, mask=erased))
    (after,) = live(db)
    assert after.kind == "mask" and after.geometry is None
    np.testing.assert_array_equal(after.mask(), erased)
    hist.undo()
    np.testing.assert_array_equal(live(db)[0].mask(), m)


def test_other_reviewers_regions_are_read_only(db) -> None:
    rao = Editor(db, image_id(db), "Dr. Rao")
    rao.create("optic_disc", Ellipse(30, 20, 5, 5))
    (r,) = live(db)
    kim = Editor(db, image_id(db), "Dr. Kim")
    with pytest.raises(ReadOnlyRegion, match="Dr. Rao"):
        kim.edit(r, Ellipse(30, 20, 6, 6))
    with pytest.raises(ReadOnlyRegion):
        kim.delete(r)
    assert live(db)[0].content == r.content


def test_a_stale_undo_in_another_instance_raises_a_conflict_and_overwrites_nothing(
    db_path: Path,
) -> None:
    with open_database(db_path) as db_a, open_database(db_path) as db_b:
        a = Editor(db_a, image_id(db_a), "Dr. Rao")
        b = Editor(db_b, image_id(db_b), "Dr. Rao")  # the same reviewer in a second window
        hist_a = UndoHistory(a)
        hist_a.push(a.create("optic_disc", Ellipse(30, 20, 5, 5)))
        (seen_by_b,) = b.regions()
        b.edit(seen_by_b, Ellipse(31, 21, 7, 6))
        with pytest.raises(EditConflict, match="another window"):
            hist_a.undo()
        (now,) = load_regions(db_b, seen_by_b.image_id)
        assert now.geometry == Ellipse(31, 21, 7, 6).to_dict()
        assert not hist_a.can_undo()  # the conflicting step is gone, not retried later


def test_a_failed_command_writes_nothing_and_stays_retryable(db) -> None:
    ed = Editor(db, image_id(db), "Dr. Rao")
    cmd = ed.create_command("  ", Ellipse(30, 20, 5, 5))  # no structure name: refused by the store
    with pytest.raises(ValueError, match="structure"):
        ed.perform(cmd)
    assert isinstance(cmd, CreateRegion) and cmd.region_id is None
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Annotation)) == 0


def test_review_status_and_verdicts_are_undoable_commands(db) -> None:
    ed = Editor(db, image_id(db), "Dr. Rao")
    hist = UndoHistory(ed)
    assert ed.review_status() == ("unreviewed", "")
    hist.push(ed.set_status("in_progress"))
    hist.push(ed.set_status("flagged", "blurred photo"))
    assert ed.review_status() == ("flagged", "blurred photo")
    hist.undo()
    assert ed.review_status() == ("in_progress", "")
    with db.session() as s:
        model = repo.get_or_create_model(s, "m", "timm:resnet18", {"classes": ["a"]}, "1" * 64, "x")
        run = repo.get_or_create_cam_run(s, model, "gradcam", ["layer4"])
        hm = repo.save_heatmap(s, run, image_id(db), 0, np.zeros((8, 8), np.float32))
        run_id, hm_id = run.id, hm.id
    assert heatmap_id_for(db, run_id, image_id(db)) == hm_id
    assert heatmap_id_for(db, None, image_id(db)) is None
    hist.push(ed.set_verdict(hm_id, "partly", "misses the cup"))
    assert ed.verdict(hm_id) == ("partly", "misses the cup")
    hist.push(ed.set_verdict(hm_id, "yes"))
    hist.undo()
    assert ed.verdict(hm_id) == ("partly", "misses the cup")
    hist.undo()
    assert ed.verdict(hm_id) == (None, "")


def test_everything_is_found_again_after_a_restart(db_path: Path) -> None:
    with open_database(db_path) as db:
        ed = Editor(db, image_id(db), "Dr. Rao")
        ed.create("optic_disc", Ellipse(30, 20, 9, 6, 10))
        ed.create("hemorrhage", Polygon(((2, 2), (9, 3), (5, 9))))
        ed.set_status("done")
        expected = [(r.structure, r.content) for r in ed.regions()]
    with open_database(db_path) as db:  # a new process would see the same
        ed = Editor(db, image_id(db), "Dr. Rao")
        assert [(r.structure, r.content) for r in ed.regions()] == expected
        assert ed.review_status()[0] == "done"
