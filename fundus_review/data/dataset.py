"""Opening a folder of fundus photographs: which images, and which label each one carries.

Labels come from, in this order: a CSV the user names; a `labels.csv` at the dataset root; the
ImageFolder layout (`root/<class>/<image>`); or nothing. Public datasets disagree on everything
(APTOS `id_code` without extension, EyePACS `image,level`, DRISHTI `image,diagnosis`, IDRiD
`Image name,Retinopathy grade`), so columns are detected and filenames are matched leniently -
but every guess that could go wrong (ambiguous stems, rows without images, images without rows,
conflicting labels) is reported in `problems` rather than silently decided.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from fundus_review.data.images import IMAGE_EXTENSIONS
from fundus_review.data.listing import FileStat, Listing, list_images
from fundus_review.errors import DatasetError

__all__ = ["DatasetScan", "ImageRecord", "scan_dataset"]

LABELS_CSV_NAME = "labels.csv"

# Header names seen in public fundus datasets, most specific first, compared after _norm().
_FILENAME_COLUMNS = (
    "image", "filename", "file_name", "image_name", "imagename", "image_id", "id_code",
    "image_path", "file_path", "filepath", "path", "file", "img", "img_name", "fname", "name", "id",
)  # fmt: skip
_LABEL_COLUMNS = (
    "label", "diagnosis", "level", "class", "class_name", "classname", "grade", "dr_grade",
    "retinopathy_grade", "category", "target", "labels", "dx", "y",
)  # fmt: skip


@dataclass
class ImageRecord:
    path: Path
    rel_path: str  # POSIX path relative to the dataset root
    label: str | None
    stat: FileStat | None = field(default=None, repr=False, compare=False)  # when listed


@dataclass
class DatasetScan:
    root: Path
    records: list[ImageRecord]
    classes: list[str]
    label_source: str  # "folders" | "csv" | "none"
    problems: list[tuple[str, str]]  # (path, reason): skipped files and labelling issues
    labels_csv: Path | None = None  # the CSV the labels came from, when label_source == "csv"
    label_columns: tuple[str, str] | None = field(default=None)  # (filename, label) as in CSV

    def summary(self) -> str:
        labelled = sum(r.label is not None for r in self.records)
        parts = [f"{len(self.records)} images in {self.root}"]
        if self.label_source != "none":
            parts.append(
                f"{labelled} labelled from {self.label_source} ({len(self.classes)} classes)"
            )
        if self.problems:
            parts.append(f"{len(self.problems)} problems")
        return "; ".join(parts)


def scan_dataset(
    root: str | os.PathLike[str],
    labels_csv: str | os.PathLike[str] | None = None,
    filename_column: str | None = None,
    label_column: str | None = None,
    lister: Callable[[Path], Listing] = list_images,
) -> DatasetScan:
    """Find every image under `root` (recursively, sorted) and attach labels.

    Hidden files and folders and a `masks/` folder at the root (expert masks, not photographs)
    are skipped. Raises `DatasetError` when the root is missing or holds no image, or when the
    labels CSV cannot be used (unreadable, no such column); everything else - empty files,
    unsupported formats, unmatched CSV rows, unlabeled images - lands in `problems`.

    `lister` walks the folder: `listing.list_images` here, or `listing.list_images_in_child`
    (the same function in a child process, for the review window); everything after the walk is
    shared, so both give the same scan.
    """
    root_path = Path(root).expanduser()
    if not root_path.is_dir():
        what = "is a file, not a folder" if root_path.exists() else "folder not found"
        raise DatasetError(f"{root_path}: {what}")
    listing = lister(root_path)
    records, problems = _records(root_path, listing), list(listing.problems)
    if not records:
        extra = f" ({len(problems)} file(s) skipped, e.g. {problems[0][1]})" if problems else ""
        raise DatasetError(
            f"{root_path}: no images found (looked recursively for "
            f"{', '.join(sorted(IMAGE_EXTENSIONS))}; hidden folders and masks/ are skipped){extra}"
        )
    scan = DatasetScan(root_path, records, [], "none", problems)
    csv_path = _resolve_csv(root_path, labels_csv)
    if csv_path is not None:
        _label_from_csv(scan, csv_path, filename_column, label_column)
    elif _is_image_folder_layout(records):
        for rec in records:
            rec.label = rec.rel_path.split("/", 1)[0]
        scan.label_source = "folders"
    scan.classes = _sorted_labels({r.label for r in records if r.label is not None})
    return scan


# --- finding images --------------------------------------------------------------------------


def _records(root: Path, listing: Listing) -> list[ImageRecord]:
    # A Python loop (one short step per image): the GIL changes hands between its steps, which
    # keeps the review window painting while a listing from its child process is turned into
    # records on a worker thread.
    return [
        ImageRecord(root / rel, rel, None, st)
        for rel, st in zip(listing.rel_paths, listing.stats, strict=True)
    ]


def _is_image_folder_layout(records: list[ImageRecord]) -> bool:
    # A single sub-folder (e.g. images/) is a container, not a class: two or more are needed.
    if any("/" not in r.rel_path for r in records):
        return False
    return len({r.rel_path.split("/", 1)[0] for r in records}) >= 2


def _sorted_labels(labels: set[str]) -> list[str]:
    try:
        return sorted(labels, key=lambda s: (float(s), s))
    except ValueError:
        return sorted(labels)


# --- labels from a CSV -----------------------------------------------------------------------


def _resolve_csv(root: Path, labels_csv: str | os.PathLike[str] | None) -> Path | None:
    if labels_csv is None:
        default = root / LABELS_CSV_NAME
        return default if default.is_file() else None
    path = Path(labels_csv).expanduser()
    if not path.is_absolute() and not path.exists() and (root / path).is_file():
        path = root / path  # "--labels labels.csv" usually means the one next to the images
    if not path.is_file():
        raise DatasetError(f"{path}: labels CSV not found")
    return path


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read labels CSV ({exc.strerror or exc})") from exc
    if b"\x00" in raw[:4096]:
        raise DatasetError(f"{path}: not a CSV file (it is binary)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # Excel on Windows; every byte decodes
    sample = text[:8192]
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    rows = [row for row in csv.reader(io.StringIO(text), dialect) if any(c.strip() for c in row)]
    if not rows:
        raise DatasetError(f"{path}: labels CSV is empty")
    header = [c.strip() for c in rows[0]]
    if len(header) < 2:
        raise DatasetError(
            f"{path}: not a labels CSV - need a header with a filename column and a label "
            f"column; found columns: {header}"
        )
    return header, rows[1:]


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")


def _pick_column(header: list[str], wanted: str | None, candidates: tuple[str, ...]) -> int | None:
    normed = [_norm(h) for h in header]
    if wanted is not None:
        if wanted in header:
            return header.index(wanted)
        return normed.index(_norm(wanted)) if _norm(wanted) in normed else None
    for cand in candidates:
        if cand in normed:
            return normed.index(cand)
    return None


def _label_from_csv(
    scan: DatasetScan, csv_path: Path, filename_column: str | None, label_column: str | None
) -> None:
    header, rows = _read_csv(csv_path)
    if not rows:
        raise DatasetError(f"{csv_path}: labels CSV has a header but no rows")
    matcher = _Matcher(scan.root, scan.records)
    fcol = _pick_column(header, filename_column, _FILENAME_COLUMNS)
    if fcol is None and filename_column is None:
        fcol = _column_that_names_images(header, rows, matcher)
    if fcol is None:
        wanted = f"filename column '{filename_column}'" if filename_column else "a filename column"
        raise DatasetError(
            f"{csv_path}: no {wanted}; found columns: {header}"
            + ("" if filename_column else " - name it with --filename-column")
        )
    lcol = _pick_column(header, label_column, _LABEL_COLUMNS)
    if lcol is None and label_column is None and len(header) == 2:
        lcol = 1 - fcol
    if lcol is None or lcol == fcol:
        wanted = f"label column '{label_column}'" if label_column else "a label column"
        raise DatasetError(
            f"{csv_path}: no {wanted}; found columns: {header}"
            + ("" if label_column else " - name it with --label-column")
        )

    assigned: dict[int, str] = {}
    conflicted: set[int] = set()
    listed: set[int] = set()
    problems = scan.problems
    where = csv_path.name
    for line_no, row in enumerate(rows, start=2):
        entry = row[fcol].strip() if fcol < len(row) else ""
        label = row[lcol].strip() if lcol < len(row) else ""
        if not entry:
            problems.append((str(csv_path), f"row {line_no}: empty filename"))
            continue
        idx, why = matcher.match(entry)
        if idx is None:
            problems.append((str(csv_path), f"row {line_no}: '{entry}' {why}"))
            continue
        rec = scan.records[idx]
        listed.add(idx)
        if not label:
            problems.append((str(rec.path), f"empty label in {where} row {line_no}"))
            continue
        previous = assigned.get(idx)
        if previous is not None and previous != label:
            conflicted.add(idx)
            problems.append(
                (str(rec.path), f"conflicting labels in {where}: '{previous}' and '{label}'")
            )
        assigned.setdefault(idx, label)

    labels = _canonical_integers({i: v for i, v in assigned.items() if i not in conflicted})
    for idx, rec in enumerate(scan.records):
        rec.label = labels.get(idx)
        if idx not in listed:
            problems.append((str(rec.path), f"no row in {where}; left unlabeled"))
    scan.label_source = "csv"
    scan.labels_csv = csv_path
    scan.label_columns = (header[fcol], header[lcol])


def _column_that_names_images(
    header: list[str], rows: list[list[str]], matcher: _Matcher
) -> int | None:
    """Fallback for unusual headers: the column whose values match the most images."""
    best, best_hits = None, 0
    for col in range(len(header)):
        values = [r[col].strip() for r in rows[:500] if col < len(r) and r[col].strip()]
        hits = sum(matcher.match(v)[0] is not None for v in values)
        if hits > best_hits:
            best, best_hits = col, hits
    return best


def _canonical_integers(labels: dict[int, str]) -> dict[int, str]:
    # Spreadsheets and pandas write grade 2 as "2.0"; one class must not appear under two names.
    if labels and all(re.fullmatch(r"-?\d+(\.0*)?", v) for v in labels.values()):
        return {i: str(int(float(v))) for i, v in labels.items()}
    return labels


class _Matcher:
    """Finds the image a CSV entry means: relative path, then path suffix, file name, stem."""

    def __init__(self, root: Path, records: list[ImageRecord]) -> None:
        self.root = root
        self.records = records
        self.by_rel = {r.rel_path: i for i, r in enumerate(records)}
        self.by_name: dict[str, list[int]] = defaultdict(list)
        self.by_stem: dict[str, list[int]] = defaultdict(list)
        self.by_name_ci: dict[str, list[int]] = defaultdict(list)
        self.by_stem_ci: dict[str, list[int]] = defaultdict(list)
        for i, r in enumerate(records):
            name = PurePosixPath(r.rel_path).name
            stem = _strip_image_ext(name)
            self.by_name[name].append(i)
            self.by_stem[stem].append(i)
            self.by_name_ci[name.casefold()].append(i)
            self.by_stem_ci[stem.casefold()].append(i)

    def match(self, entry: str) -> tuple[int | None, str]:
        rel = self._relative(entry)
        if rel in self.by_rel:
            return self.by_rel[rel], ""
        name = PurePosixPath(rel).name
        if "/" in rel:
            # Sub-folders written in the CSV must agree with the image's place on disk, from
            # whichever side is longer (the CSV may include or omit the root folder's name).
            suffix_hits = [
                i
                for i in self.by_name.get(name, [])
                if self.records[i].rel_path.endswith("/" + rel)
                or rel.endswith("/" + self.records[i].rel_path)
            ]
            if len(suffix_hits) == 1:
                return suffix_hits[0], ""
            if len(suffix_hits) > 1:
                return None, self._ambiguous(suffix_hits)
        stem = _strip_image_ext(name)
        for table, key in (
            (self.by_name, name),
            (self.by_stem, stem),
            (self.by_name_ci, name.casefold()),
            (self.by_stem_ci, stem.casefold()),
        ):
            hits = table.get(key, [])
            if len(hits) == 1:
                return hits[0], ""
            if len(hits) > 1:
                return None, self._ambiguous(hits)
        return None, "matches no image"

    def _relative(self, entry: str) -> str:
        rel = entry.replace("\\", "/")
        while rel.startswith("./"):
            rel = rel[2:]
        if os.path.isabs(rel) or re.match(r"^[A-Za-z]:/", rel):
            try:
                return Path(rel).resolve().relative_to(self.root.resolve()).as_posix()
            except (ValueError, OSError):
                return rel.lstrip("/")
        return rel

    def _ambiguous(self, hits: list[int]) -> str:
        shown = ", ".join(self.records[i].rel_path for i in hits[:3])
        more = f" and {len(hits) - 3} more" if len(hits) > 3 else ""
        return (
            f"is ambiguous: it matches {len(hits)} images ({shown}{more}); "
            f"write the path relative to the dataset root in the CSV"
        )


def _strip_image_ext(name: str) -> str:
    # Only a real image extension is removed: APTOS/EyePACS ids like "IM.0001" keep their dots.
    stem, ext = os.path.splitext(name)
    return stem if ext.lower() in IMAGE_EXTENSIONS else name
