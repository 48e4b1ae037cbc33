"""Editing expert regions and review state, Qt-free: every edit, undo and redo is ONE transaction.

The GUI wraps these commands in a QUndoStack; scripts and tests use ``UndoHistory``. Nothing is
ever buffered in memory: when ``Editor.perform`` returns, the edit is committed, so killing the
process loses nothing that was finished.

Deletes are soft (``deleted_at``), so undoing a delete restores the same row. Each command
remembers the exact content (kind, geometry, encoded raster, deleted or not) it expects to find
before it acts; when another app instance changed the region meanwhile, the command raises
``EditConflict`` instead of overwriting that work (two reviewers - or one reviewer in two
windows - can never silently lose each other's edits). Other reviewers' regions are read-only.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from fundus_review.app.identify import identify_images
from fundus_review.core.geometry import Shape, rasterize, shape_from_dict, shape_mask
from fundus_review.core.vocabulary import (
    ACCEPTED_PREFIX,
    EDITED_PREFIX,
    is_unreviewed_proposal,
    proposal_model,
)
from fundus_review.errors import FundusReviewError
from fundus_review.review.commands import (
    Command,
    Compound,
    Content,
    CreateRegion,
    DeleteRegion,
    EditConflict,
    EditRegion,
    ReadOnlyRegion,
    SetReviewStatus,
    SetSource,
    SetVerdict,
)
from fundus_review.store import repo, repo_review
from fundus_review.store.db import Database

__all__ = [
    "Command",
    "Compound",
    "Content",
    "CreateRegion",
    "DeleteRegion",
    "EditConflict",
    "EditRegion",
    "Editor",
    "ReadOnlyRegion",
    "Region",
    "SetReviewStatus",
    "SetSource",
    "SetVerdict",
    "UndoHistory",
    "heatmap_id_for",
    "known_reviewers",
    "load_regions",
    "regions_fingerprint",
    "stored_image_shape",
]


def _json_clean(geometry: dict[str, Any] | None) -> dict[str, Any] | None:
    # What the JSON column hands back (lists, not tuples), so stored and expected compare equal.
    return None if geometry is None else json.loads(json.dumps(geometry))


@dataclass(frozen=True)
class Region:
    """A read-only snapshot of one stored region (what the GUI draws)."""

    id: int
    image_id: int
    reviewer_id: int
    reviewer: str
    structure: str
    content: Content
    source: str
    created_at: datetime
    updated_at: datetime
    deleted: bool
    image_shape: tuple[int, int]

    @property
    def kind(self) -> str:
        return self.content.kind

    @property
    def geometry(self) -> dict[str, Any] | None:
        return self.content.geometry

    def shape(self) -> Shape | None:
        g = self.content.geometry
        return None if g is None or self.kind == "mask" else shape_from_dict(self.kind, g)

    @property
    def proposed(self) -> bool:
        """An unreviewed proposal of a segmenter: not an expert region until accepted/edited."""
        return is_unreviewed_proposal(self.source)

    def mask(self) -> np.ndarray:
        if self.content.raster is not None:
            return repo_review.raster_mask(self.content.raster, self.image_shape)
        if self.content.geometry is None:
            raise FundusReviewError(f"region {self.id} has neither a mask nor a geometry")
        return rasterize(self.kind, self.content.geometry, self.image_shape)


def load_regions(db: Database, image_id: int, include_deleted: bool = False) -> list[Region]:
    """Every reviewer's regions of one image (read-only session: never blocks a writer)."""
    with db.session(read_only=True) as s:
        img = repo_review.find_image(s, image_id)
        if img is None:
            raise FundusReviewError(f"image {image_id} is not in {db.display_name}")
        if img.sha256 is None:
            return []  # a file never read cannot carry regions yet
        shape = repo.image_shape(img)
        return [
            Region(
                a.id,
                a.image_id,
                a.reviewer_id,
                a.reviewer.name,
                a.structure,
                Content.of(a),
                a.source,
                a.created_at,
                a.updated_at,
                a.deleted_at is not None,
                shape,
            )  # fmt: skip
            for a in repo.list_annotations(
                s, image_id, include_deleted=include_deleted, include_proposed=True
            )
        ]


# -------------------------------------------------------------------------------------- editor
class Editor:
    """One reviewer editing one image of a database; builds, performs and reverts commands."""

    def __init__(self, db: Database, image_id: int, reviewer: str) -> None:
        self.db = db
        problems = identify_images(db, [image_id])  # regions are drawn on the file as it is now
        with db.session() as s:
            img = repo_review.find_image(s, image_id)
            if img is None or img.sha256 is None:
                why = problems[0][1] if problems else "it is not in the database"
                raise FundusReviewError(f"cannot annotate image {image_id}: {why}")
            rev = repo.get_or_create_reviewer(s, reviewer)
            self.image_id, self.image_shape = img.id, repo.image_shape(img)
            self.reviewer_id, self.reviewer = rev.id, rev.name

    # -- running
    def perform(self, cmd: Command) -> Command:
        """Apply ``cmd`` in one transaction; on any error nothing is written and ``cmd`` is
        left as it was (so it can be retried)."""
        return self._in_transaction(cmd, cmd.apply)

    def revert(self, cmd: Command) -> Command:
        return self._in_transaction(cmd, cmd.revert)

    def _in_transaction(self, cmd: Command, step: Callable[[Any], None]) -> Command:
        snap = cmd.snapshot()
        try:
            with self.db.session() as s:
                step(s)
        except BaseException:
            cmd.restore(snap)
            raise
        return cmd

    # -- reading
    def regions(self, include_deleted: bool = False) -> list[Region]:
        return load_regions(self.db, self.image_id, include_deleted)

    def region(self, region_id: int) -> Region:
        for r in self.regions(include_deleted=True):
            if r.id == region_id:
                return r
        raise EditConflict(f"region {region_id} no longer exists in the database")

    # -- building (each builder performs its command and returns it)
    def content(self, shape: Shape, mask: np.ndarray | None = None) -> Content:
        return self._content(shape, mask)[0]

    def _content(self, shape: Shape, mask: np.ndarray | None) -> tuple[Content, np.ndarray]:
        m = shape_mask(shape, self.image_shape) if mask is None else np.asarray(mask, dtype=bool)
        return Content(shape.kind, _json_clean(shape.to_dict()), repo_review.mask_raster(m)), m

    def create_command(
        self, structure: str, shape: Shape, mask: np.ndarray | None = None, source: str = "drawn"
    ) -> CreateRegion:
        content, m = self._content(shape, mask)
        return CreateRegion(self.image_id, self.reviewer_id, structure, content, m, source)

    def create(self, structure: str, shape: Shape, mask: np.ndarray | None = None) -> CreateRegion:
        """Store a new region; ``mask`` (the shape's raster) saves re-rasterising a brush."""
        return self.perform(self.create_command(structure, shape, mask))  # type: ignore[return-value]

    def edit_command(
        self, region: Region, shape: Shape | None, mask: np.ndarray | None = None
    ) -> Command:
        """The command that gives ``region`` a new shape (or, for a kind "mask" region, a new
        mask). A region whose kind changes (an erased ellipse becomes a brush region) is
        replaced; an edit that leaves no pixel deletes the region."""
        self._check_own(region)
        if shape is None:
            if mask is None:
                raise ValueError("an edit needs a shape or a mask")
            m = np.asarray(mask, dtype=bool)
            new = Content(region.kind, region.geometry, repo_review.mask_raster(m))
        else:
            new, m = self._content(shape, mask)
        if not m.any():
            return DeleteRegion(region.id, self.reviewer_id, region.content)
        # Editing a proposal (unreviewed or accepted) is reviewing it: it becomes the
        # reviewer's own "edited-proposal:<model>" region, in the same undo step.
        model = proposal_model(region.source)
        source = region.source if model is None else EDITED_PREFIX + model
        if new.kind == region.kind:
            cmd = EditRegion(region.id, self.reviewer_id, region.content, new, m)
            if source == region.source:
                return cmd
            mark = SetSource(region.id, self.reviewer_id, region.source, source)
            return Compound([cmd, mark], f"edit proposed {region.kind}")
        create = CreateRegion(self.image_id, self.reviewer_id, region.structure, new, m, source)
        return Compound([DeleteRegion(region.id, self.reviewer_id, region.content), create],
                        f"edit {region.kind} as {new.kind}")  # fmt: skip

    def edit(self, region: Region, shape: Shape | None, mask: np.ndarray | None = None) -> Command:
        return self.perform(self.edit_command(region, shape, mask))

    def delete(self, regions: Region | list[Region]) -> Command:
        many = regions if isinstance(regions, list) else [regions]
        for r in many:
            self._check_own(r)
        cmds: list[Command] = [DeleteRegion(r.id, self.reviewer_id, r.content) for r in many]
        cmd = cmds[0] if len(cmds) == 1 else Compound(cmds, f"delete {len(cmds)} regions")
        return self.perform(cmd)

    def group(self, commands: list[Command], text: str) -> Command:
        """Perform several not-yet-performed commands as one edit."""
        if len(commands) == 1:
            return self.perform(commands[0])
        return self.perform(Compound(commands, text))

    def accept_command(self, regions: list[Region] | None = None) -> Command | None:
        """The command that accepts this reviewer's unreviewed proposals (all of the image's
        when ``regions`` is None): each becomes "accepted-proposal:<model>", an expert region.
        None when there is nothing to accept."""
        pool = self.regions() if regions is None else regions
        todo = [
            r for r in pool if r.proposed and not r.deleted and r.reviewer_id == self.reviewer_id
        ]
        if not todo:
            return None
        cmds: list[Command] = [
            SetSource(
                r.id, self.reviewer_id, r.source, ACCEPTED_PREFIX + str(proposal_model(r.source))
            )
            for r in todo
        ]
        return cmds[0] if len(cmds) == 1 else Compound(cmds, f"accept {len(cmds)} proposals")

    def accept(self, regions: list[Region] | None = None) -> Command | None:
        cmd = self.accept_command(regions)
        return None if cmd is None else self.perform(cmd)

    def _check_own(self, region: Region) -> None:
        if region.reviewer_id != self.reviewer_id:
            raise ReadOnlyRegion(
                f"region {region.id} belongs to {region.reviewer}; it is read-only"
            )

    # -- review state
    def review_status(self) -> tuple[str, str]:
        """(status, comment) of this reviewer's review of the image; ("unreviewed", "") when none."""
        with self.db.session(read_only=True) as s:
            return repo_review.review_state(s, self.image_id, self.reviewer_id)

    def set_status(self, status: str, comment: str | None = None) -> Command:
        before = self.review_status()
        after = (status, before[1] if comment is None else comment)
        return self.perform(SetReviewStatus(self.image_id, self.reviewer_id, before, after))

    def verdict(self, heatmap_id: int) -> tuple[str | None, str]:
        with self.db.session(read_only=True) as s:
            rows = repo.list_verdicts(s, heatmap=heatmap_id, reviewer=self.reviewer_id)
            return (rows[0].verdict, rows[0].comment) if rows else (None, "")

    def set_verdict(self, heatmap_id: int, verdict: str | None, comment: str = "") -> Command:
        before = self.verdict(heatmap_id)
        return self.perform(
            SetVerdict(heatmap_id, self.reviewer_id, before, (verdict, comment if verdict else ""))
        )


def regions_fingerprint(db: Database, image_id: int) -> tuple[Any, ...]:
    """A cheap summary of an image's regions that changes with any create, edit, delete or
    restore (by any process), so a window can notice another instance's edits."""
    with db.session(read_only=True) as s:
        return repo_review.annotations_fingerprint(s, image_id)


def stored_image_shape(db: Database, image_id: int) -> tuple[int, int]:
    """(height, width) of a stored image, the grid its regions are drawn on."""
    with db.session(read_only=True) as s:
        img = repo_review.find_image(s, image_id)
        if img is None:
            raise FundusReviewError(f"image {image_id} is not in {db.display_name}")
        return repo.image_shape(img)


def heatmap_id_for(db: Database, run_id: int | None, image_id: int | None) -> int | None:
    """The stored heatmap of a CAM run on an image (what a verdict is about), or None."""
    if run_id is None or image_id is None:
        return None
    with db.session(read_only=True) as s:
        row = repo.get_heatmap(s, run_id, image_id)
        return None if row is None else row.id


def known_reviewers(db: Database) -> list[str]:
    """Names of every reviewer in the database, sorted (offered when asking who is drawing)."""
    with db.session(read_only=True) as s:
        return [r.name for r in repo.list_reviewers(s)]


class UndoHistory:
    """A plain-Python undo stack over an Editor (the GUI uses a QUndoStack instead).

    A command that fails to undo/redo because of a conflict is dropped from the history (its
    region was changed elsewhere, so replaying it would overwrite someone's work).
    """

    def __init__(self, editor: Editor) -> None:
        self.editor = editor
        self._done: list[Command] = []
        self._undone: list[Command] = []

    def push(self, cmd: Command) -> Command:
        """Record an already performed command."""
        self._done.append(cmd)
        self._undone.clear()
        return cmd

    def can_undo(self) -> bool:
        return bool(self._done)

    def can_redo(self) -> bool:
        return bool(self._undone)

    def undo(self) -> Command:
        cmd = self._done.pop()
        self.editor.revert(cmd)  # on EditConflict the command is gone from the history
        self._undone.append(cmd)
        return cmd

    def redo(self) -> Command:
        cmd = self._undone.pop()
        self.editor.perform(cmd)
        self._done.append(cmd)
        return cmd
