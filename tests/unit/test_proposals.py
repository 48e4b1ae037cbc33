"""Proposed disc and cup: the state machine (proposed -> accepted / edited, undoable) and that
no consumer of expert regions ever counts an unreviewed proposal."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fundus_review.app.cdr import cdr_rows
from fundus_review.app.importing import register_dataset
from fundus_review.app.scoring import _pairs_on_image
from fundus_review.core.geometry import Ellipse, Polygon, rasterize
from fundus_review.core.vocabulary import provenance
from fundus_review.exchange.coco import export_coco
from fundus_review.exchange.masks import export_masks
from fundus_review.inference.segment_post import ProposedShape
from fundus_review.report.provenance import region_provenance
from fundus_review.review.editor import Editor, UndoHistory, load_regions
from fundus_review.review.proposals import proposal_commands
from fundus_review.store import open_database, repo
from fundus_review.views.queries import load_browse_rows, load_region_masks

H, W = 48, 64
MODEL = "segmenter-test"
DISC = ProposedShape("optic_disc", "ellipse", Ellipse(32.0, 24.0, 12.0, 11.0).to_dict())
CUP = ProposedShape(
    "optic_cup",
    "polygon",
    Polygon(((28.0, 20.0), (37.0, 20.0), (37.0, 29.0), (28.0, 29.0))).to_dict(),
)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FUNDUS_REVIEW_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "data"
    root.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(np.full((H, W, 3), 90, np.uint8)).save(root / name)
    db = open_database(tmp_path / "p.db")
    reg = register_dataset(db, root)
    yield {"db": db, "reg": reg, "tmp": tmp_path, "dataset_id": reg.dataset_id}
    db.close()


def _propose(env, reviewer: str = "ann", image: str = "a.png") -> tuple[Editor, UndoHistory]:
    ed = Editor(env["db"], env["reg"].image_ids[image], reviewer)
    hist = UndoHistory(ed)
    plan = proposal_commands(ed, [DISC, CUP], MODEL)
    hist.push(ed.group(plan.commands, "propose disc and cup"))
    return ed, hist


def _sources(ed: Editor) -> dict[str, str]:
    return {r.structure: r.source for r in ed.regions()}


# ------------------------------------------------------------------------- state machine
def test_proposals_are_stored_as_proposed_and_undo_removes_them_in_one_step(env) -> None:
    ed, hist = _propose(env)
    assert _sources(ed) == {"optic_disc": f"proposed:{MODEL}", "optic_cup": f"proposed:{MODEL}"}
    assert all(r.proposed for r in ed.regions())
    (disc,) = [r for r in ed.regions() if r.structure == "optic_disc"]
    np.testing.assert_array_equal(disc.mask(), rasterize("ellipse", DISC.geometry, (H, W)))
    hist.undo()
    assert ed.regions() == []


def test_accept_makes_them_expert_regions_and_undo_makes_them_proposals_again(env) -> None:
    ed, hist = _propose(env)
    with env["db"].session() as s:
        assert repo.structure_mask(s, ed.image_id, "optic_disc", ed.reviewer_id) is None
    hist.push(ed.accept())
    assert set(_sources(ed).values()) == {f"accepted-proposal:{MODEL}"}
    with env["db"].session() as s:
        m = repo.structure_mask(s, ed.image_id, "optic_disc", ed.reviewer_id)
        assert m is not None and m.sum() == rasterize("ellipse", DISC.geometry, (H, W)).sum()
    assert ed.accept() is None  # nothing left to accept
    hist.undo()
    assert set(_sources(ed).values()) == {f"proposed:{MODEL}"}
    hist.redo()
    assert set(_sources(ed).values()) == {f"accepted-proposal:{MODEL}"}


def test_editing_a_proposal_reviews_it_and_undo_restores_shape_and_state(env) -> None:
    ed, hist = _propose(env)
    (disc,) = [r for r in ed.regions() if r.structure == "optic_disc"]
    hist.push(ed.edit(disc, Ellipse(30.0, 24.0, 14.0, 12.0)))
    got = _sources(ed)
    assert got["optic_disc"] == f"edited-proposal:{MODEL}"
    assert got["optic_cup"] == f"proposed:{MODEL}"  # the other proposal is still unreviewed
    hist.undo()
    (back,) = [r for r in ed.regions() if r.structure == "optic_disc"]
    assert back.source == f"proposed:{MODEL}" and back.geometry == disc.geometry


def test_editing_into_another_kind_keeps_the_edited_provenance(env) -> None:
    ed, hist = _propose(env)
    (cup,) = [r for r in ed.regions() if r.structure == "optic_cup"]
    hist.push(ed.edit(cup, Ellipse(32.0, 24.0, 5.0, 5.0)))  # polygon -> ellipse: replaced
    (new,) = [r for r in ed.regions() if r.structure == "optic_cup"]
    assert new.kind == "ellipse" and new.source == f"edited-proposal:{MODEL}"


def test_proposing_again_replaces_unreviewed_proposals_and_never_touches_expert_work(env) -> None:
    ed, _ = _propose(env)
    (disc,) = [r for r in ed.regions() if r.structure == "optic_disc"]
    ed.accept([disc])  # the disc is now the reviewer's; the cup is still a proposal
    plan = proposal_commands(ed, [DISC, CUP], MODEL)
    assert plan.kept == ["optic_disc"] and plan.proposed == ["optic_cup"]
    ed.group(plan.commands, "propose again")
    live = ed.regions()
    assert sorted(r.structure for r in live) == ["optic_cup", "optic_disc"]  # no duplicates
    assert {r.structure: r.source.partition(":")[0] for r in live} == {
        "optic_disc": "accepted-proposal",
        "optic_cup": "proposed",
    }


def test_proposing_again_without_a_cup_removes_the_old_cup_proposal(env) -> None:
    ed, _ = _propose(env)
    plan = proposal_commands(ed, [DISC], MODEL)  # this time the segmenter finds no cup
    ed.group(plan.commands, "propose again")
    assert sorted(r.structure for r in ed.regions()) == ["optic_disc"]  # no stale cup left


def test_another_reviewer_cannot_accept_someone_elses_proposals(env) -> None:
    _propose(env, "ann")
    bob = Editor(env["db"], env["reg"].image_ids["a.png"], "bob")
    assert bob.accept() is None
    assert {r.source for r in bob.regions()} == {f"proposed:{MODEL}"}


def test_provenance_classes() -> None:
    assert provenance("drawn") == "drawn"
    assert provenance("import:/x/masks/optic_disc/a.png") == "imported"
    assert provenance("labelme:/x/a.json#0") == "imported"
    assert provenance("proposed:m") == "proposed"
    assert provenance("accepted-proposal:m") == "accepted-proposal"
    assert provenance("edited-proposal:m") == "edited-proposal"


# ------------------------------------------------------ no consumer counts an unreviewed proposal
@pytest.fixture
def proposed_only(env):
    """ann: unreviewed disc + cup proposals on a.png; bob: a hand-drawn disc + cup on b.png."""
    _propose(env, "ann", "a.png")
    bob = Editor(env["db"], env["reg"].image_ids["b.png"], "bob")
    bob.create("optic_disc", Ellipse(32.0, 24.0, 12.0, 11.0))
    bob.create("optic_cup", Ellipse(32.0, 24.0, 5.0, 4.0))
    return env


def test_scoring_pairs_leave_out_proposals(proposed_only) -> None:
    env = proposed_only
    with env["db"].session() as s:
        assert _pairs_on_image(s, env["reg"].image_ids["a.png"], None, None) == {}
        assert len(_pairs_on_image(s, env["reg"].image_ids["b.png"], None, None)) == 2
        assert repo.list_structures(s, env["reg"].image_ids["a.png"]) == []


def test_cdr_leaves_out_proposals_until_accepted(proposed_only) -> None:
    env = proposed_only
    assert [(r.image, r.reviewer) for r in cdr_rows(env["db"])] == [("b.png", "bob")]
    Editor(env["db"], env["reg"].image_ids["a.png"], "ann").accept()
    assert sorted((r.image, r.reviewer) for r in cdr_rows(env["db"])) == [
        ("a.png", "ann"),
        ("b.png", "bob"),
    ]


def test_exports_leave_out_proposals(proposed_only) -> None:
    env = proposed_only
    coco = env["tmp"] / "c.json"
    export_coco(env["db"], coco)
    doc = json.loads(coco.read_text())
    assert len(doc["annotations"]) == 2
    assert all(a.get("source", "drawn") == "drawn" for a in doc["annotations"])
    out = env["tmp"] / "masks"
    export_masks(env["db"], out)
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert written and all(p.endswith("b.png") for p in written)


def test_viewer_outlines_and_browser_leave_out_proposals(proposed_only) -> None:
    env = proposed_only
    assert load_region_masks(env["db"], env["reg"].image_ids["a.png"]) == []
    assert len(load_region_masks(env["db"], env["reg"].image_ids["b.png"])) == 2
    # the editor itself does show them (so the reviewer can accept or edit them)
    assert len(load_regions(env["db"], env["reg"].image_ids["a.png"])) == 2
    rows = {r.rel_path: r for r in load_browse_rows(env["db"], env["dataset_id"])}
    assert rows["a.png"].structures == frozenset()
    assert rows["b.png"].structures == {"optic_disc", "optic_cup"}


def test_report_counts_regions_by_provenance(proposed_only) -> None:
    env = proposed_only
    ann = Editor(env["db"], env["reg"].image_ids["a.png"], "ann")
    (cup,) = [r for r in ann.regions() if r.structure == "optic_cup"]
    ann.edit(cup, Ellipse(32.0, 24.0, 6.0, 5.0))  # cup edited; disc still unreviewed
    with env["db"].session() as s:
        rows = {(r["structure"], r["reviewer"]): r for r in region_provenance(s, None)}
    assert rows["optic_disc", "ann"]["proposed"] == 1
    assert rows["optic_disc", "ann"]["accepted-proposal"] == 0
    assert rows["optic_cup", "ann"]["edited-proposal"] == 1
    assert rows["optic_cup", "ann"]["proposed"] == 0
    assert rows["optic_disc", "bob"]["drawn"] == 1


def test_reviewer_agreement_leaves_out_proposals(proposed_only) -> None:
    from fundus_review.app.scoring import reviewer_agreement

    env = proposed_only
    a = env["reg"].image_ids["a.png"]
    bob = Editor(env["db"], a, "bob")  # bob draws on a.png, where ann only has proposals
    bob.create("optic_disc", Ellipse(32.0, 24.0, 12.0, 11.0))
    assert reviewer_agreement(env["db"], [a]) == []
    Editor(env["db"], a, "ann").accept()
    (row,) = reviewer_agreement(env["db"], [a], structures=["optic_disc"])
    assert {row.reviewer_a, row.reviewer_b} == {"ann", "bob"}
