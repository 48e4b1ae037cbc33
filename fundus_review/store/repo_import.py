"""Bulk statements of the import use case (``app.importing``, ``app.identify``).

Opening a folder of 10,000 images must take well under a second, so listing inserts the never-seen
files and their labels with one Core executemany each (10,000 ORM inserts take seconds) and reads
the stored state of a dataset in one SELECT. ``app`` imports this module directly.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import suppress

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fundus_review.store.repo_images import get_image
from fundus_review.store.schema import Annotation, Dataset, Image, Label, utcnow

# (image id, rel_path, sha256, file stamp): sha256 and stamp are None until the file is read.
ImageState = tuple[int, str, str | None, str | None]


def image_states(s: Session, dataset_id: int) -> list[ImageState]:
    """(id, rel_path, sha256, file stamp) of every image of the dataset."""
    rows = s.execute(
        select(Image.id, Image.rel_path, Image.sha256, Image.file_stamp).where(
            Image.dataset_id == dataset_id
        )
    )
    return [(i, rel, sha, stamp) for i, rel, sha, stamp in rows]


def image_files_to_check(
    s: Session, image_ids: list[int]
) -> list[tuple[int, str, str, str | None, str | None]]:
    """(id, dataset root, rel_path, sha256, file stamp) of these images (unknown ids are absent)."""
    rows = s.execute(
        select(Image.id, Dataset.root, Image.rel_path, Image.sha256, Image.file_stamp)
        .join(Dataset)
        .where(Image.id.in_(image_ids))
    )
    return [(i, root, rel, sha, stamp) for i, root, rel, sha, stamp in rows]


def insert_listed_images(s: Session, dataset_id: int, rel_paths: list[str]) -> list[ImageState]:
    """Insert never-seen images (size and hash unknown) in one executemany; returns their states.

    If another writer inserted some of them first (the batch then violates the unique key), it
    falls back to one savepoint per image that is still missing, keeping the other writer's rows.
    """
    now = utcnow()
    rows = [
        {"dataset_id": dataset_id, "rel_path": rel, "created_at": now, "updated_at": now}
        for rel in rel_paths
    ]
    try:
        with s.begin_nested():
            s.connection().execute(insert(Image.__table__), rows)  # Core: no ORM bookkeeping
    except IntegrityError:
        for rel in rel_paths:
            if get_image(s, dataset_id, rel) is None:
                with suppress(IntegrityError), s.begin_nested():
                    s.add(Image(dataset_id=dataset_id, rel_path=rel))
                    s.flush()
    wanted = set(rel_paths)
    return [st for st in image_states(s, dataset_id) if st[1] in wanted]


def source_labels(s: Session, dataset_id: int, source: str) -> dict[int, str]:
    """image id -> label value from one label source, over the dataset."""
    rows = s.execute(
        select(Label.image_id, Label.value)
        .join(Image)
        .where(Image.dataset_id == dataset_id, Label.source == source)
    )
    return {i: value for i, value in rows}


def insert_labels(s: Session, labels: Iterable[tuple[int, str]], source: str) -> None:
    """Insert labels of images that have none from ``source`` yet, in one executemany."""
    now = utcnow()
    rows = [
        {"image_id": i, "value": str(v), "source": source, "created_at": now, "updated_at": now}
        for i, v in labels
    ]
    if rows:
        s.connection().execute(insert(Label.__table__), rows)


def has_imported_masks(s: Session, dataset_id: int) -> bool:
    """Whether any mask file was ever imported into this dataset (drawn regions do not count)."""
    hit = s.scalar(
        select(Annotation.id)
        .join(Image)
        .where(
            Image.dataset_id == dataset_id,
            Annotation.source.startswith("import:", autoescape=True),
        )
        .limit(1)
    )
    return hit is not None
