"""Bring a dataset folder, its labels and its expert masks into the database.

Shared by the CLI (`analyze`, `import-masks`) and the GUI (open dataset, attach masks): one code
path. Unreadable files are reported and skipped, never fatal.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from fundus_review.data.dataset import DatasetScan, scan_dataset
from fundus_review.data.images import file_sha256, image_size
from fundus_review.data.masks_io import find_mask_files, load_mask
from fundus_review.errors import FundusReviewError
from fundus_review.paths import cache_dir
from fundus_review.store import repo
from fundus_review.store.db import Database
from fundus_review.store.schema import Image, Label


@dataclass
class RegisteredDataset:
    dataset_id: int
    root: Path
    scan: DatasetScan
    image_ids: dict[str, int]  # rel_path -> image id, readable images only
    problems: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


def register_dataset(
    db: Database,
    root: str | Path,
    labels_csv: str | Path | None = None,
    filename_column: str | None = None,
    label_column: str | None = None,
) -> RegisteredDataset:
    """Scan `root`, record every readable image (size + content hash) and its label.

    Called on every open and every analysis, so it must be cheap when little changed: a file whose
    size and timestamps match the last registration is not hashed again (`_FileIds`), and the
    stored rows are read in two bulk queries instead of two queries per image.
    """
    scan = scan_dataset(
        root, labels_csv=labels_csv, filename_column=filename_column, label_column=label_column
    )
    problems = list(scan.problems)
    known = _FileIds(Path(scan.root))
    headers: list[tuple[str, int, int, str, str | None]] = []
    for rec in scan.records:
        try:
            width, height, sha = known.identify(rec.path, rec.rel_path)
        except FundusReviewError as exc:
            problems.append((str(rec.path), str(getattr(exc, "reason", exc))))
            continue
        except OSError as exc:
            problems.append((str(rec.path), f"cannot read file: {exc.strerror or exc}"))
            continue
        headers.append((rec.rel_path, width, height, sha, rec.label))

    label_source = scan.label_source
    with db.session() as s:
        dataset = repo.get_or_create_dataset(s, scan.root)
        stored = {
            img.rel_path: img
            for img in s.scalars(select(Image).where(Image.dataset_id == dataset.id))
        }
        labels = {
            lab.image_id: lab
            for lab in s.scalars(
                select(Label)
                .join(Image)
                .where(Image.dataset_id == dataset.id, Label.source == label_source)
            )
        }
        fresh = [h for h in headers if h[0] not in stored]
        if len(fresh) > 1:
            new_images, new_labels = _insert_new(s, dataset.id, fresh, label_source)
            stored.update(new_images)
            labels.update(new_labels)
        image_ids: dict[str, int] = {}
        for rel_path, width, height, sha, label in headers:
            image = stored.get(rel_path)
            if image is None or (image.width, image.height, image.sha256) != (width, height, sha):
                image = repo.upsert_image(s, dataset, rel_path, width, height, sha)
            if label is not None:
                current = labels.get(image.id)
                if current is None or current.value != str(label):
                    labels[image.id] = repo.set_label(s, image, label, label_source)
            image_ids[rel_path] = image.id
        dataset_id = dataset.id
    known.save()
    return RegisteredDataset(dataset_id, Path(scan.root), scan, image_ids, problems)


def _insert_new(
    s: object, dataset_id: int, fresh: list[tuple[str, int, int, str, str | None]], source: str
) -> tuple[dict[str, Image], dict[int, Label]]:
    """Insert never-seen images with their labels in one flush (a first registration of 10,000
    images would otherwise cost 20,000 round trips). If another writer got there first the
    savepoint is rolled back and the caller's per-image upsert handles them one by one."""
    rows = {
        rel: Image(dataset_id=dataset_id, rel_path=rel, width=w, height=h, sha256=sha)
        for rel, w, h, sha, _label in fresh
    }
    try:
        with s.begin_nested():
            s.add_all(rows.values())
            s.flush()
            labels = {
                rows[rel].id: Label(image_id=rows[rel].id, value=str(label), source=source)
                for rel, _w, _h, _sha, label in fresh
                if label is not None
            }
            s.add_all(labels.values())
            s.flush()
    except IntegrityError:
        return {}, {}
    return rows, labels


class _FileIds:
    """(width, height, sha256) of files already registered, keyed by their stat identity.

    Hashing 10,000 fundus photographs reads tens of gigabytes; a file whose size, mtime, ctime and
    inode are unchanged has the same bytes (the rule git uses), so it is not read again. The cache
    lives in the user's cache folder and is disposable: without it everything is hashed.
    """

    def __init__(self, root: Path) -> None:
        key = hashlib.sha256(str(root).encode()).hexdigest()[:24]
        self.path = cache_dir() / "file_ids" / f"{key}.json"
        try:
            self.old = json.loads(self.path.read_text())["files"]
        except (OSError, ValueError, KeyError, TypeError):
            self.old = {}
        self.new: dict[str, list] = {}

    def identify(self, path: Path, rel_path: str) -> tuple[int, int, str]:
        st = os.stat(path)
        stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
        hit = self.old.get(rel_path)
        if isinstance(hit, list) and len(hit) == 7 and hit[:4] == stamp:
            width, height, sha = int(hit[4]), int(hit[5]), str(hit[6])
        else:
            width, height = image_size(path)
            sha = file_sha256(path)
        self.new[rel_path] = [*stamp, width, height, sha]
        return width, height, sha

    def save(self) -> None:
        if self.new == self.old:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp")
            with os.fdopen(fd, "w") as fh:
                json.dump({"version": 1, "files": self.new}, fh)
            os.replace(tmp, self.path)
        except OSError:
            pass  # a cache that cannot be written only costs time on the next registration


@dataclass
class MaskImportSummary:
    imported: int = 0
    images_with_masks: int = 0
    structures: dict[str, int] = field(default_factory=dict)
    unmatched: list[str] = field(default_factory=list)  # mask stems with no image
    problems: list[tuple[str, str]] = field(default_factory=list)


def import_masks(
    db: Database,
    registered: RegisteredDataset,
    masks_dir: str | Path,
    reviewer: str = "reference",
) -> MaskImportSummary:
    """Import `masks/<structure>/<stem>.png` files as annotations of `reviewer`.

    Idempotent: importing the same folder again replaces the earlier import instead of adding
    duplicates. A mask whose size differs from its image is reported, not resized.
    """
    found = find_mask_files(masks_dir)
    by_stem: dict[str, list[str]] = {}
    for rel_path in registered.image_ids:
        by_stem.setdefault(Path(rel_path).stem, []).append(rel_path)

    summary = MaskImportSummary()
    with db.session() as s:
        who = repo.get_or_create_reviewer(s, reviewer)
        for stem, structures in sorted(found.items()):
            rel_paths = by_stem.get(stem)
            if not rel_paths:
                summary.unmatched.append(stem)
                continue
            if len(rel_paths) > 1:
                summary.problems.append(
                    (stem, f"ambiguous: {len(rel_paths)} images share the stem {stem!r}")
                )
                continue
            image = s.get(Image, registered.image_ids[rel_paths[0]])
            any_imported = False
            for structure, path in sorted(structures.items()):
                try:
                    mask = load_mask(path, expected_shape=(image.height, image.width))
                except FundusReviewError as exc:
                    summary.problems.append((str(path), str(exc)))
                    continue
                repo.replace_imported_mask(s, image, who, structure, mask, source=f"import:{path}")
                summary.imported += 1
                summary.structures[structure] = summary.structures.get(structure, 0) + 1
                any_imported = True
            summary.images_with_masks += int(any_imported)
    return summary
