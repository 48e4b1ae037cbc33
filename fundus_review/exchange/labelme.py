"""Import labelme JSON annotations as expert regions of one reviewer.

Each labelme file is matched to a dataset image by the stem of its ``imagePath`` (else of the
JSON file itself), like mask files are. Shapes become regions:

- ``polygon`` -> polygon; ``rectangle`` -> 4-vertex polygon; ``circle`` (centre, point on the
  rim) -> ellipse with equal axes; ``point`` -> point (radius from the label set);
  ``mask`` (labelme >= 5.3: bounding box + base64 PNG) -> an imported mask region;
- ``line``, ``linestrip`` and ``points`` enclose no area and are reported, not imported.

labelme points are read as continuous image coordinates (a pixel's centre at +0.5), the
convention of the drawing tools here. Labels become structure names through ``label_map``
(e.g. {"OD": "optic_disc"}) or by normalising the label ("Optic Disc" -> "optic_disc").

Importing is idempotent: a shape's source is ``labelme:<file>#<index>``; importing the same
file again changes nothing, changed shapes are updated in place, shapes no longer in the file
are soft-deleted, and a region the user deleted stays deleted while its shape is unchanged.
One transaction per file: a broken file never leaves half of itself in the database.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image as PILImage

from fundus_review.app.identify import identify_images
from fundus_review.app.importing import RegisteredDataset
from fundus_review.core.geometry import Ellipse, GeometryError, Point, Polygon, Shape, shape_mask
from fundus_review.errors import FundusReviewError
from fundus_review.review.labelsets import (
    LabelSet,
    LabelSetError,
    load_label_set,
    normalize_structure_name,
)
from fundus_review.store import Session, repo, repo_exchange, repo_review
from fundus_review.store.db import Database


@dataclass
class LabelmeImportSummary:
    files: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    structures: dict[str, int] = field(default_factory=dict)
    unmatched: list[str] = field(default_factory=list)  # JSON files with no image
    problems: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)


class _ShapeProblem(Exception):
    pass


def find_labelme_files(sources: Iterable[str | Path]) -> list[Path]:
    out: list[Path] = []
    for src in sources:
        p = Path(src)
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*.json") if not q.name.startswith(".")))
        elif p.is_file():
            out.append(p)
        else:
            raise FundusReviewError(f"{p}: no such labelme file or folder")
    return sorted(dict.fromkeys(p.resolve() for p in out))


def _read(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FundusReviewError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("shapes"), list):
        raise FundusReviewError(f"{path}: not a labelme file (no 'shapes' list)")
    return doc


def _region(raw: Any, shape: tuple[int, int], labels: LabelSet, label_map: dict[str, str]):
    """(structure, kind, geometry | None, mask) of one labelme shape; _ShapeProblem if unusable."""
    if not isinstance(raw, dict):
        raise _ShapeProblem("a shape is not a JSON object")
    label = str(raw.get("label", "")).strip()
    try:
        structure = label_map.get(label) or normalize_structure_name(label)
    except LabelSetError as exc:
        raise _ShapeProblem(str(exc)) from None
    stype = raw.get("shape_type") or "polygon"
    try:
        pts = np.asarray(raw.get("points", []), dtype=np.float64).reshape(-1, 2)
    except (TypeError, ValueError):
        raise _ShapeProblem(f"label {label!r}: points are not [x, y] pairs") from None
    geo: Shape
    try:
        if stype == "polygon":
            geo = Polygon(tuple(map(tuple, pts)))
        elif stype == "rectangle" and len(pts) == 2:
            (x0, y0), (x1, y1) = pts
            geo = Polygon(((x0, y0), (x1, y0), (x1, y1), (x0, y1)))
        elif stype == "circle" and len(pts) == 2:
            r = float(np.hypot(*(pts[1] - pts[0])))
            geo = Ellipse(float(pts[0, 0]), float(pts[0, 1]), r, r, 0.0)
        elif stype == "point" and len(pts) == 1:
            sd = labels.get(structure)
            geo = Point(float(pts[0, 0]), float(pts[0, 1]), sd.point_radius if sd else 0.0)
        elif stype == "mask":
            return structure, "mask", None, _mask_shape(raw, pts, shape)
        else:
            raise _ShapeProblem(
                f"label {label!r}: shape type {stype!r} with {len(pts)} point(s) is not a region"
            )
    except GeometryError as exc:
        raise _ShapeProblem(f"label {label!r}: {exc}") from None
    return structure, geo.kind, json.loads(json.dumps(geo.to_dict())), shape_mask(geo, shape)


def _mask_shape(raw: dict[str, Any], pts: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    try:
        data = base64.b64decode(raw["mask"])
        with PILImage.open(io.BytesIO(data)) as im:
            part = np.asarray(im.convert("L")) > 0
    except (KeyError, ValueError, OSError) as exc:
        raise _ShapeProblem(f"mask shape: unreadable mask data ({exc})") from None
    if len(pts) < 1:
        raise _ShapeProblem("mask shape: no position")
    out = np.zeros(shape, dtype=bool)
    x0, y0 = int(np.floor(pts[0, 0])), int(np.floor(pts[0, 1]))
    h, w = part.shape
    ys, xs = slice(max(0, y0), min(shape[0], y0 + h)), slice(max(0, x0), min(shape[1], x0 + w))
    out[ys, xs] = part[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]
    return out


def _image_for(doc: dict[str, Any], path: Path, by_stem: dict[str, list[int]]) -> int | None:
    candidates = []
    if isinstance(doc.get("imagePath"), str) and doc["imagePath"]:
        candidates.append(Path(doc["imagePath"].replace("\\", "/")).stem)
    candidates.append(path.stem)
    for stem in candidates:
        ids = by_stem.get(stem)
        if ids:
            if len(ids) > 1:
                raise FundusReviewError(f"{path}: {len(ids)} images share the stem {stem!r}")
            return ids[0]
    return None


def import_labelme(
    db: Database,
    registered: RegisteredDataset,
    sources: Iterable[str | Path],
    reviewer: str = "reference",
    label_map: dict[str, str] | None = None,
    label_set: LabelSet | None = None,
) -> LabelmeImportSummary:
    """Import labelme files (or folders of them) into ``registered``'s images as ``reviewer``."""
    labels = label_set or load_label_set()
    mapping = {k: normalize_structure_name(v) for k, v in (label_map or {}).items()}
    by_stem: dict[str, list[int]] = {}
    for rel_path, image_id in registered.image_ids.items():
        by_stem.setdefault(Path(rel_path).stem, []).append(image_id)
    summary = LabelmeImportSummary()
    for path in find_labelme_files(sources):
        try:
            doc = _read(path)
            image_id = _image_for(doc, path, by_stem)
        except FundusReviewError as exc:
            summary.problems.append((str(path), str(exc)))
            continue
        if image_id is None:
            summary.unmatched.append(str(path))
            continue
        unreadable = identify_images(db, [image_id])  # the drawing is checked against its size
        if unreadable:
            summary.problems += unreadable
            continue
        with db.session() as s:
            _import_file(s, path, doc, image_id, reviewer, labels, mapping, summary)
        summary.files += 1
    return summary


def _import_file(s: Session, path: Path, doc: dict[str, Any], image_id: int, reviewer: str,
                 labels: LabelSet, mapping: dict[str, str], summary: LabelmeImportSummary) -> None:  # fmt: skip
    img = repo_review.find_image(s, image_id)
    shape = repo.image_shape(img)
    hw = (doc.get("imageHeight"), doc.get("imageWidth"))
    if all(isinstance(v, int) for v in hw) and hw != shape:
        summary.problems.append((str(path), f"drawn on a {hw[1]}x{hw[0]} image, but "
                                 f"{img.rel_path} is {shape[1]}x{shape[0]}; not imported"))  # fmt: skip
        return
    who = repo.get_or_create_reviewer(s, reviewer)
    prefix = f"labelme:{path}#"
    existing = {
        a.source: a for a in repo_exchange.annotations_with_source_prefix(s, image_id, who, prefix)
    }
    seen: set[str] = set()
    for i, raw in enumerate(doc["shapes"]):
        try:
            structure, kind, geometry, mask = _region(raw, shape, labels, mapping)
        except _ShapeProblem as exc:
            summary.problems.append((f"{path} (shape {i + 1})", str(exc)))
            continue
        source = f"{prefix}{i}"
        seen.add(source)
        summary.structures[structure] = summary.structures.get(structure, 0) + 1
        old = existing.get(source)
        same = old is not None and (old.structure, old.kind, old.geometry) == (
            structure,
            kind,
            geometry,
        )
        if same and repo_exchange.same_raster(old, mask):
            summary.unchanged += 1  # a deleted one stays deleted: that was the user's decision
        elif old is not None and (old.structure, old.kind) == (structure, kind):
            repo.update_annotation(s, old, geometry=geometry, mask=mask)
            repo.restore_annotation(s, old)
            summary.updated += 1
        else:
            if old is not None:
                repo.soft_delete_annotation(s, old)
                old.source = f"{source}~replaced@{datetime.now(UTC).isoformat()}"
            repo.add_annotation(s, image_id, who, structure, kind, geometry, mask, source=source)
            summary.added += 1
    for source, old in existing.items():
        if source not in seen and "~" not in source and old.deleted_at is None:
            repo.soft_delete_annotation(s, old)
            summary.removed += 1
