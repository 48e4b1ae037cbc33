"""Datasets, images, labels and reviewers. Call these through ``fundus_review.store.repo``."""

from __future__ import annotations

import operator
from pathlib import Path, PurePosixPath, PureWindowsPath

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fundus_review.errors import StoreError
from fundus_review.store.schema import Dataset, Heatmap, Image, Label, Prediction, Reviewer

Ref = object  # an ORM object with an ``id`` (attached or detached) or a plain integer id


def ref_id(obj: object) -> int:
    """The primary key of an ORM object or an int, so detached objects work across sessions."""
    if hasattr(obj, "__table__"):
        value = getattr(obj, "id", None)
        if not isinstance(value, int):
            raise ValueError(f"{obj!r} has no database id (was it added and flushed?)")
        return value
    try:
        return operator.index(obj)  # int, numpy integer
    except TypeError:
        raise ValueError(f"{obj!r} is neither a stored row nor an integer id") from None


def get_by_id(s: Session, cls: type, obj: object):  # noqa: ANN201 - returns an instance of cls
    row = s.get(cls, ref_id(obj))
    if row is None:
        raise StoreError(f"no {cls.__tablename__} row with id {ref_id(obj)} in the database")
    return row


def normalize_rel_path(rel_path: str) -> str:
    """Forward slashes always, so a dataset analysed on Windows and Linux maps to the same rows."""
    text = str(rel_path)
    if "\\" in text:
        text = PureWindowsPath(text).as_posix()
    p = PurePosixPath(text)
    if p.is_absolute() or ".." in p.parts or str(p) in ("", "."):
        raise ValueError(f"{rel_path!r} is not a path relative to the dataset root")
    return str(p)


def get_or_create_dataset(s: Session, root: str | Path, name: str | None = None) -> Dataset:
    """The dataset whose root folder is ``root`` (resolved to an absolute path)."""
    root_str = str(Path(root).expanduser().resolve())
    ds = s.scalar(select(Dataset).where(Dataset.root == root_str))
    if ds is None:
        ds = _insert_or_fetch(
            s,
            Dataset(root=root_str, name=name or Path(root_str).name or root_str),
            select(Dataset).where(Dataset.root == root_str),
        )
    elif name and ds.name != name:
        ds.name = name
    return ds


def list_datasets(s: Session) -> list[Dataset]:
    """Every dataset in the order it was first registered (id order)."""
    return list(s.scalars(select(Dataset).order_by(Dataset.id)))


def upsert_image(
    s: Session, dataset: Ref, rel_path: str, width: int, height: int, sha256: str
) -> Image:
    """Insert or refresh the image at ``rel_path`` in ``dataset`` (see `set_image_identity`)."""
    rel = normalize_rel_path(rel_path)
    width, height, sha = _checked_identity(rel, width, height, sha256)
    ds_id = ref_id(dataset)
    query = select(Image).where(Image.dataset_id == ds_id, Image.rel_path == rel)
    img = s.scalar(query)
    if img is None:
        return _insert_or_fetch(
            s,
            Image(dataset_id=ds_id, rel_path=rel, width=width, height=height, sha256=sha),
            query,
        )
    return set_image_identity(s, img, width, height, sha, img.file_stamp)


def set_image_identity(
    s: Session, image: Ref, width: int, height: int, sha256: str, file_stamp: str | None
) -> Image:
    """Record what the file of a stored image is: its size, content hash and stat stamp.

    When the content changed (a different sha256 than before), its predictions and heatmaps (and
    through them their scores and verdicts) are deleted: they describe pixels that no longer
    exist. Annotations are kept, because they are human work; a size change makes them fail
    loudly when used.
    """
    img = get_by_id(s, Image, image)
    width, height, sha = _checked_identity(img.rel_path, width, height, sha256)
    if img.sha256 is not None and img.sha256 != sha:
        s.execute(delete(Heatmap).where(Heatmap.image_id == img.id))
        s.execute(delete(Prediction).where(Prediction.image_id == img.id))
    img.width, img.height, img.sha256, img.file_stamp = width, height, sha, file_stamp
    return img


def image_shape(img: Image) -> tuple[int, int]:
    """(height, width) of a stored image; StoreError while its file has not been read yet
    (callers first run `fundus_review.app.identify.identify_images` on it)."""
    if img.width is None or img.height is None:
        raise StoreError(
            f"{img.rel_path}: the size of this image is not known yet (its file has not been "
            "read); open it in the viewer or register its folder again"
        )
    return img.height, img.width


def forget_unread_images(s: Session, image_ids: list[int]) -> None:
    """Remove listed images whose file could never be read (they carry no results)."""
    if image_ids:
        s.execute(delete(Image).where(Image.id.in_(image_ids), Image.sha256.is_(None)))


def _checked_identity(rel: str, width: int, height: int, sha256: str) -> tuple[int, int, str]:
    if width <= 0 or height <= 0:
        raise ValueError(f"{rel}: image size must be positive, got {width}x{height}")
    sha = sha256.lower()
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise ValueError(f"{rel}: {sha256!r} is not a SHA-256 hex digest")
    return int(width), int(height), sha


def dataset_images(s: Session, dataset: Ref) -> list[Image]:
    return list(
        s.scalars(select(Image).where(Image.dataset_id == ref_id(dataset)).order_by(Image.rel_path))
    )


def find_image(s: Session, image_id: int) -> Image | None:
    """The image with this id, None when there is none (an image may vanish between calls)."""
    return s.get(Image, image_id)


def get_image(s: Session, dataset: Ref, rel_path: str) -> Image | None:
    rel = normalize_rel_path(rel_path)
    return s.scalar(select(Image).where(Image.dataset_id == ref_id(dataset), Image.rel_path == rel))


def images_with_sha256(s: Session, sha256: str) -> list[Image]:
    """Every stored copy of these exact file contents, in any dataset."""
    return list(s.scalars(select(Image).where(Image.sha256 == sha256.lower()).order_by(Image.id)))


def set_label(s: Session, image: Ref, value: str | None, source: str) -> Label | None:
    """Set (or with ``value=None`` remove) the label of ``image`` from ``source``.

    ``source`` says where the label came from: "folders", "csv:labels.csv", "manual", ...; an
    image may carry labels from several sources side by side.
    """
    img_id = ref_id(image)
    query = select(Label).where(Label.image_id == img_id, Label.source == source)
    label = s.scalar(query)
    if value is None:
        if label is not None:
            s.delete(label)
        return None
    if label is None:
        return _insert_or_fetch(s, Label(image_id=img_id, value=str(value), source=source), query)
    label.value = str(value)
    return label


def image_labels(s: Session, image: Ref) -> dict[str, str]:
    """{source: value} of one image."""
    rows = s.execute(select(Label.source, Label.value).where(Label.image_id == ref_id(image)))
    return {src: val for src, val in rows}


def get_or_create_reviewer(s: Session, name: str) -> Reviewer:
    clean = " ".join(str(name).split())
    if not clean:
        raise ValueError("a reviewer needs a non-empty name")
    query = select(Reviewer).where(Reviewer.name == clean)
    rev = s.scalar(query)
    return rev if rev is not None else _insert_or_fetch(s, Reviewer(name=clean), query)


def list_reviewers(s: Session) -> list[Reviewer]:
    return list(s.scalars(select(Reviewer).order_by(Reviewer.name)))


def _insert_or_fetch(s: Session, row, query):  # noqa: ANN001, ANN202 - generic over ORM classes
    """Insert ``row``; if another process inserted the same natural key first, return theirs.

    SQLite serialises writers (BEGIN IMMEDIATE) so the race cannot happen there; on a shared
    PostgreSQL server it can, and the savepoint keeps the surrounding transaction usable.
    """
    try:
        with s.begin_nested():
            s.add(row)
            s.flush()
        return row
    except IntegrityError:
        existing = s.scalar(query)
        if existing is None:
            raise
        return existing
