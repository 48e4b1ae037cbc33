"""Export expert regions as COCO instance-segmentation JSON (polygons and RLE).

One COCO annotation per region (several hemorrhages = several annotations), categories = the
structures. ``segmentation`` modes:

- ``auto`` (default): drawn polygons and ellipses as polygons (their vertices / a 64-gon on the
  ellipse), so other tools can re-open them as editable shapes; brush, point and imported mask
  regions as RLE, which is the exact raster;
- ``rle``: every region as uncompressed COCO RLE - bit-exact with the masks the metrics use;
- ``polygon``: every region as polygons (rasters are traced along their pixel centres).

RLE follows the COCO convention: ``{"size": [h, w], "counts": [...]}``, column-major (Fortran)
order, alternating runs starting with background. ``area`` and ``bbox`` ([x, y, w, h] in pixel
edges) always come from the exact raster. Each annotation keeps its reviewer, kind, geometry and
timestamps under ``"fundus_review"``. Coordinates are continuous pixel coordinates (a pixel's
centre is at +0.5), the same convention COCO tools use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fundus_review import __version__
from fundus_review.app.identify import identify_images
from fundus_review.atomic import atomic_write_text
from fundus_review.core.geometry import Ellipse, GeometryError, mask_box, shape_from_dict
from fundus_review.core.geometry import rasterize as default_rasterize
from fundus_review.errors import FundusReviewError
from fundus_review.exchange.region_filter import Selection, live_annotations, selected_images
from fundus_review.review.labelsets import LabelSet, load_label_set
from fundus_review.store import repo
from fundus_review.store.db import Database

SEGMENTATIONS = ("auto", "rle", "polygon")


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """Uncompressed COCO RLE of an (h, w) bool mask."""
    m = np.asarray(mask, dtype=bool)
    flat = m.ravel(order="F").astype(np.int8)
    edges = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], edges, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]  # COCO counts always start with a (possibly empty) background run
    return {"size": [int(m.shape[0]), int(m.shape[1])], "counts": [int(c) for c in counts]}


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """Decode uncompressed COCO RLE; ValueError when counts and size disagree."""
    h, w = (int(v) for v in rle["size"])
    counts = np.asarray(rle["counts"], dtype=np.int64)
    if isinstance(rle["counts"], str) or counts.ndim != 1:
        raise ValueError("only uncompressed RLE (a list of counts) is supported")
    if counts.sum() != h * w or (counts < 0).any():
        raise ValueError(f"RLE counts sum to {int(counts.sum())}, expected {h * w}")
    values = np.arange(len(counts)) % 2 == 1
    return np.repeat(values, counts).reshape((h, w), order="F")


def _raster_polygons(mask: np.ndarray) -> list[list[float]]:
    contours, _ = cv2.findContours(
        mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    polys = []
    for c in contours:
        pts = c.reshape(-1, 2).astype(np.float64) + 0.5
        if len(pts) < 3:  # a one- or two-pixel region: its pixel square(s) as the polygon
            x0, y0 = pts.min(axis=0) - 0.5
            x1, y1 = pts.max(axis=0) + 0.5
            pts = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
        polys.append([round(float(v), 3) for v in pts.ravel()])
    return polys


def _segmentation(kind: str, geometry: dict | None, mask: np.ndarray, mode: str) -> Any:
    if mode == "rle":
        return mask_to_rle(mask)
    if kind in ("polygon", "ellipse") and geometry is not None:
        try:
            shape = shape_from_dict(kind, geometry)
        except GeometryError:
            shape = None
        if shape is not None:
            pts = shape.outline(64)[:-1] if isinstance(shape, Ellipse) else np.asarray(shape.points)
            return [[round(float(v), 3) for v in pts.ravel()]]
    return _raster_polygons(mask) if mode == "polygon" else mask_to_rle(mask)


@dataclass
class CocoExportSummary:
    path: Path
    images: int = 0
    annotations: int = 0
    categories: int = 0
    problems: list[tuple[str, str]] = field(default_factory=list)


def export_coco(
    db: Database,
    path: str | Path,
    selection: Selection | None = None,
    segmentation: str = "auto",
    label_set: LabelSet | None = None,
    rasterize: repo.Rasterizer | None = default_rasterize,
) -> CocoExportSummary:
    """Write one COCO JSON file of the selected regions (images: every image of the selected
    datasets, annotated or not, so that unannotated images stay explicit negatives)."""
    if segmentation not in SEGMENTATIONS:
        raise FundusReviewError(
            f"segmentation must be one of {', '.join(SEGMENTATIONS)}, got {segmentation!r}"
        )
    sel = selection or Selection()
    out = Path(path)
    summary = CocoExportSummary(out)
    if sel.dataset is not None:
        # COCO lists every image with its size: read the files listed but not read yet.
        with db.session(read_only=True) as s:
            ids = [img.id for img in selected_images(s, sel)]
        summary.problems += identify_images(db, ids)
    with db.session(read_only=True) as s:
        anns = live_annotations(s, sel)
        images = selected_images(s, sel) if sel.dataset is not None else []
        image_rows = {img.id: img for img in images}
        for a in anns:
            image_rows.setdefault(a.image_id, a.image)
        labels = (label_set or load_label_set()).with_names({a.structure for a in anns})
        used = {a.structure for a in anns}
        cats = [sd for sd in labels.structures if sd.origin != "database" or sd.name in used]
        cat_ids = {sd.name: i for i, sd in enumerate(cats, start=1)}
        coco_anns = []
        for a in anns:
            try:
                mask = repo.annotation_mask(a, rasterize)
            except (FundusReviewError, ValueError) as exc:
                summary.problems.append((a.image.rel_path, f"region {a.id}: {exc}"))
                continue
            box = mask_box(mask)
            if box is None:
                continue
            r0, r1, c0, c1 = box
            coco_anns.append({
                "id": a.id,
                "image_id": a.image_id,
                "category_id": cat_ids[a.structure],
                "segmentation": _segmentation(a.kind, a.geometry, mask, segmentation),
                "area": int(mask.sum()),
                "bbox": [c0, r0, c1 - c0, r1 - r0],
                "iscrowd": 0,
                "fundus_review": {
                    "reviewer": a.reviewer.name,
                    "structure": a.structure,
                    "kind": a.kind,
                    "geometry": a.geometry,
                    "source": a.source,
                    "created_at": a.created_at.isoformat(),
                    "updated_at": a.updated_at.isoformat(),
                },
            })  # fmt: skip
        coco_images = [
            {
                "id": img.id,
                "file_name": img.rel_path,
                "width": img.width,
                "height": img.height,
                "fundus_review": {
                    "dataset": img.dataset.name,
                    "dataset_root": img.dataset.root,
                    "sha256": img.sha256,
                },
            }  # fmt: skip
            for img in sorted(image_rows.values(), key=lambda i: (i.dataset_id, i.rel_path))
        ]
    doc = {
        "info": {
            "description": "Expert regions exported by fundus-review",
            "version": __version__,
            "date_created": datetime.now(UTC).isoformat(timespec="seconds"),
            "segmentation": segmentation,
        },
        "licenses": [],
        "images": coco_images,
        "annotations": coco_anns,
        "categories": [
            {
                "id": cat_ids[sd.name],
                "name": sd.name,
                "supercategory": "fundus",
                "title": sd.title,
                "color": sd.hex_color,
            }  # fmt: skip
            for sd in cats
        ],
    }
    atomic_write_text(out, json.dumps(doc, ensure_ascii=False))
    summary.images, summary.annotations, summary.categories = (
        len(coco_images),
        len(coco_anns),
        len(cats),
    )
    return summary
