"""Bring a dataset folder, its labels and its expert masks into the database.

Shared by the CLI (`analyze`, `import-masks`) and the GUI (open dataset, attach masks): one code
path. Unreadable files are reported and skipped, never fatal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fundus_review.data.dataset import DatasetScan, scan_dataset
from fundus_review.data.images import file_sha256, image_size
from fundus_review.data.masks_io import find_mask_files, load_mask
from fundus_review.errors import FundusReviewError
from fundus_review.store import repo
from fundus_review.store.db import Database
from fundus_review.store.schema import Image


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
    """Scan `root`, record every readable image (size + content hash) and its label."""
    scan = scan_dataset(
        root, labels_csv=labels_csv, filename_column=filename_column, label_column=label_column
    )
    problems = list(scan.problems)
    headers: list[tuple[str, int, int, str, str | None]] = []
    for rec in scan.records:
        try:
            width, height = image_size(rec.path)
            sha = file_sha256(rec.path)
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
        image_ids: dict[str, int] = {}
        for rel_path, width, height, sha, label in headers:
            image = repo.upsert_image(s, dataset, rel_path, width, height, sha)
            if label is not None:
                repo.set_label(s, image, label, label_source)
            image_ids[rel_path] = image.id
        dataset_id = dataset.id
    return RegisteredDataset(dataset_id, Path(scan.root), scan, image_ids, problems)


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
