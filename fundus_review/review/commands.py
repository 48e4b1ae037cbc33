"""The undoable commands behind ``fundus_review.review.editor`` (Qt-free).

A command changes expert regions or review state inside the caller's transaction: ``apply``
does (and redoes) it, ``revert`` undoes it. Deletes are soft, so undoing a delete restores the
same row. Each region command remembers the exact content (kind, geometry, encoded raster,
deleted or not) it expects to find before it acts; when another app instance changed the region
meanwhile it raises ``EditConflict`` instead of overwriting that work.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from fundus_review.core.vocabulary import is_unreviewed_proposal
from fundus_review.errors import FundusReviewError
from fundus_review.store import Session, repo, repo_review


class EditConflict(FundusReviewError):
    """The region changed in another window or app instance since it was loaded."""


class ReadOnlyRegion(FundusReviewError):
    """An attempt to change another reviewer's region."""


class StoredRegion(Protocol):
    """What a command reads of a stored region row (``store.repo_review.find_annotation``)."""

    id: int
    reviewer_id: int
    structure: str
    kind: str
    geometry: dict[str, Any] | None
    raster: bytes | None
    source: str
    deleted_at: Any  # a datetime when soft-deleted, else None
    reviewer: Any  # the reviewer row (its ``name``)


@dataclass(frozen=True)
class Content:
    """The editable content of a region: what a command expects to find and what it writes."""

    kind: str
    geometry: dict[str, Any] | None
    raster: bytes | None

    @classmethod
    def of(cls, ann: StoredRegion) -> Content:
        return cls(ann.kind, ann.geometry, ann.raster)

    def mask(self) -> np.ndarray:
        if self.raster is None:
            raise ValueError("content without a raster")
        return repo_review.raster_mask(self.raster)


class Command(ABC):
    """One undoable unit of work; ``apply``/``revert`` run inside the caller's transaction."""

    text: str = ""

    @abstractmethod
    def apply(self, s: Session) -> None: ...

    @abstractmethod
    def revert(self, s: Session) -> None: ...

    def region_ids(self) -> list[int]:
        return []

    def snapshot(self) -> Any:
        return copy.copy(self.__dict__)

    def restore(self, snap: Any) -> None:
        self.__dict__.clear()
        self.__dict__.update(snap)


def _own(s: Session, region_id: int, reviewer_id: int) -> StoredRegion:
    ann = repo_review.find_annotation(s, region_id)
    if ann is None:
        raise EditConflict(f"region {region_id} no longer exists in the database")
    if ann.reviewer_id != reviewer_id:
        raise ReadOnlyRegion(f"region {region_id} belongs to {ann.reviewer.name}; it is read-only")
    return ann


def _expect(ann: StoredRegion, content: Content, deleted: bool) -> None:
    if (ann.deleted_at is not None) != deleted or Content.of(ann) != content:
        state = "deleted" if ann.deleted_at is not None else "changed"
        raise EditConflict(
            f"region {ann.id} ({ann.structure}) was {state} in another window or app instance; "
            "nothing was overwritten (reload to see the current state)"
        )


class CreateRegion(Command):
    def __init__(self, image_id: int, reviewer_id: int, structure: str, content: Content,
                 mask: np.ndarray | None = None, source: str = "drawn") -> None:  # fmt: skip
        self.image_id, self.reviewer_id, self.structure = image_id, reviewer_id, structure
        self.content, self.source = content, source
        self.region_id: int | None = None
        verb = "propose" if is_unreviewed_proposal(source) else "draw"
        self.text = f"{verb} {content.kind} ({structure})"
        # The decoded raster, when the caller has it: saves decoding a full-size mask once.
        # Dropped after the first run, so a long undo history holds only compressed rasters.
        self._mask = mask

    def apply(self, s: Session) -> None:
        if self.region_id is None:
            mask = self.content.mask() if self._mask is None else self._mask
            ann = repo.add_annotation(s, self.image_id, self.reviewer_id, self.structure,
                                      self.content.kind, self.content.geometry, mask,
                                      source=self.source)  # fmt: skip
            self.region_id, self._mask = ann.id, None
            return
        ann = _own(s, self.region_id, self.reviewer_id)
        _expect(ann, self.content, deleted=True)
        repo.restore_annotation(s, ann)

    def revert(self, s: Session) -> None:
        assert self.region_id is not None, "revert of a command that never ran"
        ann = _own(s, self.region_id, self.reviewer_id)
        _expect(ann, self.content, deleted=False)
        repo.soft_delete_annotation(s, ann)

    def region_ids(self) -> list[int]:
        return [] if self.region_id is None else [self.region_id]


class EditRegion(Command):
    def __init__(self, region_id: int, reviewer_id: int, before: Content, after: Content,
                 mask: np.ndarray | None = None) -> None:  # fmt: skip
        if before.kind != after.kind:
            raise ValueError("an edit keeps the region's kind; replace the region instead")
        self.region_id, self.reviewer_id = region_id, reviewer_id
        self.before, self.after = before, after
        self.text = f"edit {after.kind}"
        self._mask = mask  # decoded ``after`` raster for the first run (see CreateRegion)

    def _write(self, s: Session, old: Content, new: Content, mask: np.ndarray | None) -> None:
        ann = _own(s, self.region_id, self.reviewer_id)
        _expect(ann, old, deleted=False)
        repo.update_annotation(s, ann, geometry=new.geometry,
                               mask=new.mask() if mask is None else mask)  # fmt: skip

    def apply(self, s: Session) -> None:
        self._write(s, self.before, self.after, self._mask)
        self._mask = None

    def revert(self, s: Session) -> None:
        self._write(s, self.after, self.before, None)

    def region_ids(self) -> list[int]:
        return [self.region_id]


class DeleteRegion(Command):
    def __init__(self, region_id: int, reviewer_id: int, content: Content) -> None:
        self.region_id, self.reviewer_id, self.content = region_id, reviewer_id, content
        self.text = f"delete {content.kind}"

    def apply(self, s: Session) -> None:
        ann = _own(s, self.region_id, self.reviewer_id)
        _expect(ann, self.content, deleted=False)
        repo.soft_delete_annotation(s, ann)

    def revert(self, s: Session) -> None:
        ann = _own(s, self.region_id, self.reviewer_id)
        _expect(ann, self.content, deleted=True)
        repo.restore_annotation(s, ann)

    def region_ids(self) -> list[int]:
        return [self.region_id]


class SetSource(Command):
    """Change a region's provenance: a proposal accepted ("accepted-proposal:<model>") or
    edited ("edited-proposal:<model>"); undo gives it back its earlier source."""

    def __init__(self, region_id: int, reviewer_id: int, before: str, after: str) -> None:
        self.region_id, self.reviewer_id, self.before, self.after = (
            region_id,
            reviewer_id,
            before,
            after,
        )
        self.text = f"mark region {after.partition(':')[0]}"

    def _write(self, s: Session, old: str, new: str) -> None:
        ann = _own(s, self.region_id, self.reviewer_id)
        if ann.source != old:
            raise EditConflict(
                f"region {ann.id} ({ann.structure}) is now {ann.source!r}, not {old!r} (changed "
                "in another window or app instance); nothing was overwritten"
            )
        repo.set_annotation_source(s, ann, new)

    def apply(self, s: Session) -> None:
        self._write(s, self.before, self.after)

    def revert(self, s: Session) -> None:
        self._write(s, self.after, self.before)

    def region_ids(self) -> list[int]:
        return [self.region_id]


class Compound(Command):
    """Several commands as one edit (one transaction, one undo step)."""

    def __init__(self, commands: list[Command], text: str) -> None:
        self.commands, self.text = list(commands), text

    def apply(self, s: Session) -> None:
        for c in self.commands:
            c.apply(s)

    def revert(self, s: Session) -> None:
        for c in reversed(self.commands):
            c.revert(s)

    def region_ids(self) -> list[int]:
        return [i for c in self.commands for i in c.region_ids()]

    def snapshot(self) -> Any:
        return [c.snapshot() for c in self.commands]

    def restore(self, snap: Any) -> None:
        for c, part in zip(self.commands, snap, strict=True):
            c.restore(part)


class SetReviewStatus(Command):
    def __init__(self, image_id: int, reviewer_id: int, before: tuple[str, str],
                 after: tuple[str, str]) -> None:  # fmt: skip
        self.image_id, self.reviewer_id, self.before, self.after = (
            image_id,
            reviewer_id,
            before,
            after,
        )
        self.text = f"review status: {after[0]}"

    def apply(self, s: Session) -> None:
        repo.set_review_status(s, self.image_id, self.reviewer_id, *self.after)

    def revert(self, s: Session) -> None:
        repo.set_review_status(s, self.image_id, self.reviewer_id, *self.before)


class SetVerdict(Command):
    def __init__(self, heatmap_id: int, reviewer_id: int, before: tuple[str | None, str],
                 after: tuple[str | None, str]) -> None:  # fmt: skip
        self.heatmap_id, self.reviewer_id, self.before, self.after = (
            heatmap_id,
            reviewer_id,
            before,
            after,
        )
        self.text = f"verdict: {after[0] or 'none'}"

    def apply(self, s: Session) -> None:
        repo.set_verdict(s, self.heatmap_id, self.reviewer_id, *self.after)

    def revert(self, s: Session) -> None:
        repo.set_verdict(s, self.heatmap_id, self.reviewer_id, *self.before)
