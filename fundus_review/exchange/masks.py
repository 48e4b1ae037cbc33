"""Export expert regions as mask PNGs in the layout ``import_masks`` reads back.

One PNG per (image, structure, reviewer): the union of that reviewer's live regions of the
structure - exactly the mask the metrics use (``repo.structure_mask``) - as 0/255 on the
original pixel grid, named after the image's file stem. Layouts:

- ``flat``:        ``<out>/<structure>/<stem>.png`` (one reviewer only);
- ``by-reviewer``: ``<out>/<reviewer>/<structure>/<stem>.png`` (import each reviewer's folder
  with ``fundus-review import-masks DATASET <out>/<reviewer> --reviewer NAME``);
- ``auto``:        flat for one reviewer, by-reviewer for several.

A ``manifest.json`` (reviewer folder -> reviewer name, counts) is written last. Every file is
written atomically (temp file + rename).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from fundus_review.atomic import atomic_write_text
from fundus_review.core.geometry import rasterize as default_rasterize
from fundus_review.data.masks_io import find_mask_files, write_mask_atomic
from fundus_review.errors import FundusReviewError
from fundus_review.exchange.region_filter import Selection, folder_name, live_annotations
from fundus_review.store import repo
from fundus_review.store.db import Database

LAYOUTS = ("auto", "flat", "by-reviewer")


@dataclass
class MaskExportSummary:
    out_dir: Path
    layout: str
    files: int = 0
    reviewers: dict[str, str] = field(default_factory=dict)  # folder ("" when flat) -> name
    structures: dict[str, int] = field(default_factory=dict)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (image, reason)
    stale: list[Path] = field(default_factory=list)  # files in the written folders not written now


def export_masks(
    db: Database,
    out_dir: str | Path,
    selection: Selection | None = None,
    layout: str = "auto",
    rasterize: repo.Rasterizer | None = default_rasterize,
) -> MaskExportSummary:
    """Write the selected regions as mask PNGs; returns what was written and what was not.

    Images whose file stems collide (``a/x.png`` and ``b/x.jpg``) cannot share one
    ``<stem>.png`` and are reported, not overwritten. Files already in the output folders that
    this export did not write are listed in ``stale`` (a region deleted since an earlier export
    would otherwise come back on re-import), never deleted.
    """
    if layout not in LAYOUTS:
        raise FundusReviewError(f"mask layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    sel = selection or Selection()
    out = Path(out_dir)
    with db.session(read_only=True) as s:
        anns = live_annotations(s, sel)
        names = {a.reviewer_id: a.reviewer.name for a in anns}
        if layout == "flat" and len(names) > 1:
            raise FundusReviewError(
                f"{out}: regions of {len(names)} reviewers ({', '.join(sorted(names.values()))}) "
                "cannot share the flat masks/<structure>/<stem>.png layout; choose one reviewer "
                "or the by-reviewer layout"
            )
        flat = layout == "flat" or (layout == "auto" and len(names) <= 1)
        folders = _reviewer_folders(names) if not flat else {rid: "" for rid in names}
        groups: dict[tuple[int, str, int], None] = {}
        stems: dict[tuple[int, str], set[int]] = defaultdict(set)
        paths: dict[int, str] = {}
        for a in anns:
            groups[(a.image_id, a.structure, a.reviewer_id)] = None
            paths[a.image_id] = a.image.rel_path
            stems[(a.reviewer_id, Path(a.image.rel_path).stem)].add(a.image_id)
        summary = MaskExportSummary(out, "flat" if flat else "by-reviewer")
        summary.reviewers = {folders[rid]: names[rid] for rid in names}
        written: set[Path] = set()
        for image_id, structure, rid in groups:
            stem = Path(paths[image_id]).stem
            if len(stems[(rid, stem)]) > 1:
                summary.problems.append(
                    (
                        paths[image_id],
                        f"another image has the same file stem {stem!r}; not exported",
                    )
                )
                continue
            try:
                mask = repo.structure_mask(s, image_id, structure, rid, rasterize)
            except (FundusReviewError, ValueError) as exc:
                summary.problems.append((paths[image_id], f"{structure}: {exc}"))
                continue
            if mask is None:
                continue
            target = out / folders[rid] / structure / f"{stem}.png"
            write_mask_atomic(target, mask)
            written.add(target.resolve())
            summary.files += 1
            summary.structures[structure] = summary.structures.get(structure, 0) + 1
    summary.stale = _stale_files(out, folders.values(), written)
    manifest = {
        "format": "fundus-review masks",
        "version": 1,
        "layout": summary.layout,
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "reviewers": summary.reviewers,
        "structures": summary.structures,
        "files": summary.files,
    }
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False))
    return summary


def _reviewer_folders(names: dict[int, str]) -> dict[int, str]:
    out: dict[int, str] = {}
    used: set[str] = set()
    for rid, name in sorted(names.items(), key=lambda kv: kv[1]):
        base = folder_name(name)
        folder, k = base, 2
        while folder.lower() in used:  # "Dr. Rao" and "Dr/ Rao" must not merge
            folder, k = f"{base}_{k}", k + 1
        used.add(folder.lower())
        out[rid] = folder
    return out


def _stale_files(out: Path, folders: object, written: set[Path]) -> list[Path]:
    stale: list[Path] = []
    for folder in sorted(set(folders)):  # type: ignore[call-overload]
        root = out / folder
        if not root.is_dir():
            continue
        try:
            found = find_mask_files(root)
        except FundusReviewError:
            continue
        for by_structure in found.values():
            stale.extend(p for p in by_structure.values() if p.resolve() not in written)
    return sorted(stale)
