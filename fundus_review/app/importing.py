"""Bring a dataset folder, its labels and its expert masks into the database.

Shared by the CLI (`analyze`, `import-masks`) and the GUI (open dataset, attach masks): one code
path. Unreadable files are reported and skipped, never fatal.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

from fundus_review.app.identify import Progress, file_stamp, identify_images
from fundus_review.data.dataset import DatasetScan, scan_dataset
from fundus_review.data.listing import Listing, list_images
from fundus_review.data.masks_io import find_mask_files, load_mask
from fundus_review.errors import FundusReviewError
from fundus_review.store import repo, repo_import
from fundus_review.store.db import Database


@dataclass
class RegisteredDataset:
    dataset_id: int
    root: Path
    scan: DatasetScan
    image_ids: dict[str, int]  # rel_path -> image id (unreadable files excluded once read)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    unread: list[int] = field(default_factory=list)  # ids whose size and hash are still to read
    changed: bool = True  # whether the listing added images or changed labels


def register_dataset(
    db: Database,
    root: str | Path,
    labels_csv: str | Path | None = None,
    filename_column: str | None = None,
    label_column: str | None = None,
    *,
    identify: bool = True,
    only: Collection[int] | None = None,
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
    lister: Callable[[Path], Listing] = list_images,
) -> RegisteredDataset:
    """Scan `root` and record every image file and its label; then (`identify`) read each new or
    changed file's size and content hash.

    Listing costs a directory walk, a `stat` per file and a few bulk statements, so the GUI shows
    10,000 images at once and runs the reading half (`identify.identify_images`, the slow part:
    it hashes every byte) in the background with ``identify=False``. With ``identify=True`` (the
    CLI, analyses) the result lists only images that could be read; `only` restricts that
    reading (and the result) to these image ids, so analysing one image of a folder opened a
    moment ago does not wait for all the others. `lister` walks the folder
    (`data.listing.list_images_in_child` keeps that walk out of the review window's process).
    """
    scan = scan_dataset(
        root,
        labels_csv=labels_csv,
        filename_column=filename_column,
        label_column=label_column,
        lister=lister,
    )
    problems = list(scan.problems)
    stamps: dict[str, str] = {}
    for rec in scan.records:
        try:
            stamps[rec.rel_path] = file_stamp(rec.stat or os.stat(rec.path))
        except OSError as exc:
            problems.append((str(rec.path), f"cannot read file: {exc.strerror or exc}"))
    labels = {rec.rel_path: rec.label for rec in scan.records if rec.rel_path in stamps}
    dataset_id, image_ids, unread, changed = _record_listing(
        db, scan.root, stamps, labels, scan.label_source
    )
    reg = RegisteredDataset(dataset_id, Path(scan.root), scan, image_ids, problems, unread, changed)
    if identify:
        allowed = None if only is None else set(only)
        wanted = unread if allowed is None else [i for i in unread if i in allowed]
        reg.problems += identify_images(db, wanted, progress, cancel)
        # Read = stamped with the stamp just listed (a file that failed keeps its old stamp, a
        # cancelled pass leaves the rest unread).
        with db.session(read_only=True) as s:
            read_now = {
                rel
                for _id, rel, sha, stamp in repo_import.image_states(s, dataset_id)
                if sha is not None and stamps.get(rel) == stamp
            }
        reg.image_ids = {rel: i for rel, i in image_ids.items() if rel in read_now}
        reg.unread = [i for rel, i in image_ids.items() if rel not in read_now]
    return reg


def _record_listing(
    db: Database, root: Path, stamps: dict[str, str], labels: dict[str, str | None], source: str
) -> tuple[int, dict[str, int], list[int], bool]:
    """Insert the never-seen files (size and hash unknown), update labels; one transaction.

    Returns (dataset id, rel_path -> image id, ids to read: new, never read, or changed,
    whether rows were added or labels changed)."""
    with db.session() as s:
        dataset_id = repo.get_or_create_dataset(s, root).id
        stored = {
            rel: (image_id, sha, stamp)
            for image_id, rel, sha, stamp in repo_import.image_states(s, dataset_id)
        }
        fresh = [rel for rel in stamps if rel not in stored]
        if fresh:
            # One executemany, not 10,000 single inserts (seconds); the store handles a race.
            for image_id, rel, sha, stamp in repo_import.insert_listed_images(s, dataset_id, fresh):
                stored[rel] = (image_id, sha, stamp)
        image_ids = {rel: stored[rel][0] for rel in stamps}
        unread = [
            stored[rel][0]
            for rel in stamps
            if stored[rel][1] is None or stored[rel][2] != stamps[rel]
        ]
        current = repo_import.source_labels(s, dataset_id, source)
        new_labels = []
        relabelled = False
        for rel, label in labels.items():
            image_id = image_ids[rel]
            if label is None or current.get(image_id) == str(label):
                continue
            if image_id in current:
                repo.set_label(s, image_id, label, source)
                relabelled = True
            else:
                new_labels.append((image_id, str(label)))
        repo_import.insert_labels(s, new_labels, source)
    return dataset_id, image_ids, unread, bool(fresh or new_labels or relabelled)


def has_imported_masks(db: Database, dataset_id: int) -> bool:
    """Whether any mask file was ever imported into this dataset (drawn regions do not count)."""
    with db.session(read_only=True) as s:
        return repo_import.has_imported_masks(s, dataset_id)


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
    # A mask is checked against its image's size, so those images are read first (a no-op for
    # images already read and unchanged).
    matched = [registered.image_ids[r[0]] for r in map(by_stem.get, found) if r and len(r) == 1]
    summary.problems += identify_images(db, matched)
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
            image = repo.find_image(s, registered.image_ids[rel_paths[0]])
            if image is None or image.sha256 is None:
                continue  # its file could not be read: already reported above
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
