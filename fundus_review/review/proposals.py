"""Proposed optic disc and cup, the storing half: proposals as undoable editor commands.

``proposal_commands`` builds the edits that store ``app.proposals.compute_proposal``'s shapes as
the reviewer's regions with source "proposed:<segmenter>": drawn, editable and deletable like
any region, but not expert regions (scores, report, CDR, exports and the viewer's outlines
leave them out) until the reviewer accepts them (``Editor.accept``) or edits them.

A new proposal run replaces the reviewer's earlier *unreviewed* proposals of the disc and cup; a
structure the reviewer already has an expert region of (drawn, imported, accepted, edited) gets
no proposal, so proposing never touches human work.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from fundus_review.app.proposals import compute_proposal, get_segmenter
from fundus_review.core.geometry import shape_from_dict
from fundus_review.core.vocabulary import PROPOSED_PREFIX
from fundus_review.inference.segment_post import ProposedShape
from fundus_review.inference.segmenter import CHANNELS, Segmenter
from fundus_review.review.commands import Command, DeleteRegion
from fundus_review.review.editor import Editor
from fundus_review.store.db import Database


@dataclass
class ProposalPlan:
    commands: list[Command] = field(default_factory=list)
    proposed: list[str] = field(default_factory=list)  # structures given a proposal
    kept: list[str] = field(default_factory=list)  # structures the reviewer already has


def proposal_commands(editor: Editor, shapes: list[ProposedShape], model: str) -> ProposalPlan:
    """The (not yet performed) edits that store ``shapes`` as proposals of ``model``."""
    own = [r for r in editor.regions() if r.reviewer_id == editor.reviewer_id]
    plan = ProposalPlan()
    expert = {r.structure for r in own if not r.proposed}
    # Every earlier unreviewed proposal of the segmenter's structures goes, also where this run
    # finds nothing (an old cup must not stay inside a new disc).
    for old in own:
        if old.proposed and old.structure in CHANNELS:
            plan.commands.append(DeleteRegion(old.id, editor.reviewer_id, old.content))
    for shape in shapes:
        if shape.structure in expert:
            plan.kept.append(shape.structure)
            continue
        geometry = shape_from_dict(shape.kind, shape.geometry)
        plan.commands.append(
            editor.create_command(shape.structure, geometry, source=PROPOSED_PREFIX + model)
        )
        plan.proposed.append(shape.structure)
    return plan


@dataclass
class ProposalResult:
    image_id: int
    proposed: list[str]
    kept: list[str]
    command: Command | None
    seconds: float


def propose_regions(
    db: Database,
    image_id: int,
    reviewer: str,
    segmenter: Segmenter | None = None,
    kind: str = "polygon",
) -> ProposalResult:
    """Compute and store one image's proposals (one transaction, one undoable command)."""
    seg = segmenter or get_segmenter()
    start = time.perf_counter()
    shapes = compute_proposal(db, image_id, seg, kind)
    editor = Editor(db, image_id, reviewer)
    plan = proposal_commands(editor, shapes, seg.name)
    cmd = editor.group(plan.commands, "propose disc and cup") if plan.commands else None
    return ProposalResult(image_id, plan.proposed, plan.kept, cmd, time.perf_counter() - start)
