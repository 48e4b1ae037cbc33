"""repo: expert regions (drawn and imported), soft delete/undo, review status and verdicts."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from fundus_review.errors import StoreError
from fundus_review.store import Database, open_database, repo
from fundus_review.store.schema import Annotation, Score

H, W = 6, 8


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = open_database(tmp_path / "ann.db")
    yield database
    database.close()


@pytest.fixture
def ctx(db: Database, tmp_path: Path) -> dict:
    with db.session() as s:
        ds = repo.get_or_create_dataset(s, tmp_path / "data")
        img = repo.upsert_image(s, ds, "IDRiD_01.jpg", W, H, hashlib.sha256(b"x").hexdigest())
        ref = repo.get_or_create_reviewer(s, "reference")
        dr = repo.get_or_create_reviewer(s, "Dr. Rao")
    return {"img": img, "ref": ref, "dr": dr}


def disc(cx: int, cy: int, r: int) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


def box_rasterizer(kind: str, geometry: dict, shape: tuple[int, int]) -> np.ndarray:
    """Stand-in for core.geometry: an axis-aligned box {"x0","y0","x1","y1"} (end-exclusive)."""
    m = np.zeros(shape, bool)
    m[geometry["y0"] : geometry["y1"], geometry["x0"] : geometry["x1"]] = True
    return m


def test_reviewer_names_are_unique_and_trimmed(db: Database) -> None:
    with db.session() as s:
        a = repo.get_or_create_reviewer(s, "  Dr.   Rao ")
        b = repo.get_or_create_reviewer(s, "Dr. Rao")
        assert a.id == b.id and a.name == "Dr. Rao"
        with pytest.raises(ValueError):
            repo.get_or_create_reviewer(s, "   ")


def test_drawn_region_keeps_geometry_and_exact_mask(ctx: dict, db: Database) -> None:
    geometry = {"cx": 3.5, "cy": 2.5, "rx": 2.0, "ry": 1.5, "angle": 30.0}
    mask = disc(3, 2, 2)
    with db.session() as s:
        ann = repo.add_annotation(s, ctx["img"], ctx["dr"], "optic_disc", "ellipse", geometry, mask)
    with db.session() as s:
        (got,) = repo.list_annotations(s, ctx["img"])
        assert got.id == ann.id and got.geometry == geometry and got.source == "drawn"
        assert got.created_at.tzinfo is not None and got.deleted_at is None
        np.testing.assert_array_equal(repo.annotation_mask(got), mask)


def test_add_annotation_validates_its_input(ctx: dict, db: Database) -> None:
    with db.session() as s:
        with pytest.raises(ValueError, match="kind"):
            repo.add_annotation(s, ctx["img"], ctx["dr"], "optic_disc", "circle", {"r": 1})
        with pytest.raises(ValueError, match="geometry, a mask"):
            repo.add_annotation(s, ctx["img"], ctx["dr"], "optic_disc", "polygon")
        with pytest.raises(ValueError, match="mask is 5x5 but the image is 6x8"):
            repo.add_annotation(
                s, ctx["img"], ctx["dr"], "optic_disc", "mask", mask=np.ones((5, 5), bool)
            )


def test_geometry_only_regions_rasterise_on_request(ctx: dict, db: Database) -> None:
    with db.session() as s:
        repo.add_annotation(
            s, ctx["img"], ctx["dr"], "hemorrhage", "polygon", {"x0": 1, "y0": 2, "x1": 4, "y1": 3}
        )
    with db.session() as s:
        (ann,) = repo.list_annotations(s, ctx["img"], structure="hemorrhage")
        with pytest.raises(StoreError, match="rasterize"):
            repo.annotation_mask(ann)
        m = repo.annotation_mask(ann, box_rasterizer)
        assert m.sum() == 3 and m[2, 1:4].all()


def test_structure_mask_is_the_union_of_one_reviewers_live_regions(ctx: dict, db: Database) -> None:
    a, b = np.zeros((H, W), bool), np.zeros((H, W), bool)
    a[0, 0] = True
    b[5, 7] = True
    with db.session() as s:
        repo.add_annotation(s, ctx["img"], ctx["ref"], "hemorrhage", "mask", mask=a)
        gone = repo.add_annotation(s, ctx["img"], ctx["ref"], "hemorrhage", "brush", mask=b)
        repo.add_annotation(
            s, ctx["img"], ctx["dr"], "hemorrhage", "mask", mask=np.ones((H, W), bool)
        )
        union = repo.structure_mask(s, ctx["img"], "hemorrhage", ctx["ref"])
        assert union.sum() == 2 and union[0, 0] and union[5, 7]
        repo.soft_delete_annotation(s, gone)
        assert repo.structure_mask(s, ctx["img"], "hemorrhage", ctx["ref"]).sum() == 1
        assert repo.structure_mask(s, ctx["img"], "optic_cup", ctx["ref"]) is None
        assert repo.list_structures(s, ctx["img"]) == ["hemorrhage"]


def test_soft_delete_and_restore_make_deletes_undoable(ctx: dict, db: Database) -> None:
    with db.session() as s:
        ann = repo.add_annotation(s, ctx["img"], ctx["dr"], "optic_cup", "mask", mask=disc(4, 3, 1))
    with db.session() as s:
        repo.soft_delete_annotation(s, ann.id)
    with db.session() as s:
        assert repo.list_annotations(s, ctx["img"]) == []
        (deleted,) = repo.list_annotations(s, ctx["img"], include_deleted=True)
        assert deleted.deleted_at is not None
        repo.restore_annotation(s, ann)
    with db.session() as s:
        (back,) = repo.list_annotations(s, ctx["img"], reviewer=ctx["dr"])
        assert back.id == ann.id and back.deleted_at is None
        np.testing.assert_array_equal(repo.annotation_mask(back), disc(4, 3, 1))


def test_update_annotation_edits_in_place(ctx: dict, db: Database) -> None:
    with db.session() as s:
        ann = repo.add_annotation(
            s,
            ctx["img"],
            ctx["dr"],
            "optic_disc",
            "polygon",
            {"pts": [[0, 0], [2, 0], [2, 2]]},
            disc(1, 1, 1),
        )
        created = ann.updated_at
    with db.session() as s:
        repo.update_annotation(
            s, ann, geometry={"pts": [[0, 0], [3, 0], [3, 3]]}, mask=disc(2, 2, 1)
        )
    with db.session() as s:
        (got,) = repo.list_annotations(s, ctx["img"])
        assert got.geometry == {"pts": [[0, 0], [3, 0], [3, 3]]} and got.updated_at >= created
        np.testing.assert_array_equal(repo.annotation_mask(got), disc(2, 2, 1))


def test_reimporting_the_same_masks_is_idempotent(ctx: dict, db: Database) -> None:
    mask = disc(5, 3, 2)
    src = "import:/data/masks/optic_disc/IDRiD_01.png"
    args = (ctx["img"], ctx["ref"], "optic_disc")
    with db.session() as s:
        first, changed1 = repo.replace_imported_mask(s, *args, mask, src)
        drawn = repo.add_annotation(s, *args, "ellipse", {"cx": 1}, disc(1, 1, 1))
    with db.session() as s:
        again, changed2 = repo.replace_imported_mask(s, *args, mask, src)
        assert (changed1, changed2) == (True, False) and again.id == first.id
        # The masks folder moved: still the same import, not a second copy.
        moved, changed3 = repo.replace_imported_mask(
            s, *args, mask, "import:/new/optic_disc/IDRiD_01.png"
        )
        assert moved.id == first.id and not changed3 and moved.source.startswith("import:/new/")
        assert s.scalar(select(func.count(Annotation.id))) == 2  # the import + the drawn region
    edited = mask.copy()
    edited[0, 0] = True
    with db.session() as s:  # the file changed on disk: same row, new pixels
        upd, changed4 = repo.replace_imported_mask(s, *args, edited, src)
        assert changed4 and upd.id == first.id
    with db.session() as s:
        got = {a.id: repo.annotation_mask(a) for a in repo.list_annotations(s, ctx["img"])}
        np.testing.assert_array_equal(got[first.id], edited)
        np.testing.assert_array_equal(got[drawn.id], disc(1, 1, 1))  # drawn region untouched
        with pytest.raises(ValueError, match="import:"):
            repo.replace_imported_mask(s, *args, edited, "drawn")


def test_a_deleted_import_stays_deleted_unless_the_file_changed(ctx: dict, db: Database) -> None:
    mask = disc(5, 3, 2)
    args = (ctx["img"], ctx["ref"], "optic_disc")
    src = "import:masks/optic_disc/IDRiD_01.png"
    with db.session() as s:
        ann, _ = repo.replace_imported_mask(s, *args, mask, src)
        repo.soft_delete_annotation(s, ann)
    with db.session() as s:
        _, changed = repo.replace_imported_mask(s, *args, mask, src)  # e.g. `analyze --masks` again
        assert not changed and repo.list_annotations(s, ctx["img"]) == []
    with db.session() as s:
        back, changed = repo.replace_imported_mask(s, *args, ~mask, src)  # a corrected file
        assert changed and back.id == ann.id and back.deleted_at is None
        assert s.scalar(select(func.count(Annotation.id))) == 1


def test_changing_regions_drops_the_scores_computed_from_them(ctx: dict, db: Database) -> None:
    with db.session() as s:
        model = repo.get_or_create_model(s, "m", "timm:resnet18", {"classes": ["a"]}, "0" * 64, "m")
        run = repo.get_or_create_cam_run(s, model, "gradcam", ["layer4"])
        repo.save_prediction(s, ctx["img"], model, [1.0], 0, {})
        hm = repo.save_heatmap(s, run, ctx["img"], 0, np.zeros((2, 2), np.float32))
        ann = repo.add_annotation(
            s, ctx["img"], ctx["ref"], "optic_disc", "mask", mask=disc(4, 3, 2)
        )
        repo.save_scores(s, hm, "optic_disc", ctx["ref"], {"iou": 0.5})
        repo.save_scores(s, hm, "optic_disc", ctx["dr"], {"iou": 0.6})  # another reviewer's
        repo.save_scores(s, hm, "macula", ctx["ref"], {"iou": 0.7})  # another structure
    with db.session() as s:
        repo.update_annotation(s, ann, mask=disc(4, 3, 1))
    with db.session() as s:
        left = sorted((sc.structure, sc.reviewer_id) for sc in s.scalars(select(Score)))
        assert left == sorted([("optic_disc", ctx["dr"].id), ("macula", ctx["ref"].id)])


def test_review_status_and_verdicts(ctx: dict, db: Database) -> None:
    with db.session() as s:
        model = repo.get_or_create_model(s, "m", "timm:resnet18", {"classes": ["a"]}, "1" * 64, "m")
        run = repo.get_or_create_cam_run(s, model, "gradcam", ["layer4"])
        hm = repo.save_heatmap(s, run, ctx["img"], 0, np.zeros((2, 2), np.float32))
        assert repo.get_review_status(s, ctx["img"], ctx["dr"]) == "unreviewed"
        repo.set_review_status(s, ctx["img"], ctx["dr"], "in_progress")
        repo.set_review_status(s, ctx["img"], ctx["dr"], "flagged", comment="blurred image")
        with pytest.raises(ValueError, match="status"):
            repo.set_review_status(s, ctx["img"], ctx["dr"], "finished")
        repo.set_verdict(s, hm, ctx["dr"], "partly", "misses the cup")
        repo.set_verdict(s, hm, ctx["dr"], "no", "looks at the border")
        repo.set_verdict(s, hm, ctx["ref"], "yes")
        with pytest.raises(ValueError, match="verdict"):
            repo.set_verdict(s, hm, ctx["ref"], "maybe")
    with db.session() as s:
        assert repo.get_review_status(s, ctx["img"], ctx["dr"]) == "flagged"
        assert repo.get_review_status(s, ctx["img"], ctx["ref"]) == "unreviewed"
        got = [(v.reviewer.name, v.verdict, v.comment) for v in repo.list_verdicts(s, heatmap=hm)]
        assert sorted(got) == [("Dr. Rao", "no", "looks at the border"), ("reference", "yes", "")]
        repo.set_verdict(s, hm, ctx["ref"], None)
        assert [v.verdict for v in repo.list_verdicts(s)] == ["no"]
