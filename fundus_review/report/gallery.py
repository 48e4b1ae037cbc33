"""Gallery tiles: original | heatmap | overlay with the expert contour and the heatmap's maximum.

Galleries are per structure (and reviewer) and per prediction outcome, correct predictions first
and within each the worst-localized first (``core.report_data.gallery_pick``): a correct diagnosis
made while looking elsewhere is what a clinician must see. A missing image file gives a grey
panel that says so, never a failed report.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import matplotlib
import numpy as np

from fundus_review.core.metrics import describe_metric
from fundus_review.core.score_tables import gallery_pick, group_rows
from fundus_review.core.transform import InputTransform
from fundus_review.data.fov import FovCache
from fundus_review.data.images import load_image
from fundus_review.errors import FundusReviewError
from fundus_review.report.data import OUTCOME_ORDER, ReportData
from fundus_review.report.document import Gallery, Tile, num
from fundus_review.store import repo
from fundus_review.store.db import Database

PANEL_H = 150
GAP = 4
CONTOUR_RGB = (0, 255, 0)
_IMAGE_CACHE = 8
_OUTCOME_RANK = {o: i for i, o in enumerate(OUTCOME_ORDER)}
_LUT = (matplotlib.colormaps["jet"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)


def colorize(heat: np.ndarray) -> np.ndarray:
    """[0, 1] heatmap -> RGB uint8 through the jet colour map (the CAM literature's default)."""
    idx = np.clip(np.nan_to_num(heat) * 255 + 0.5, 0, 255).astype(np.uint8)
    return _LUT[idx]


def _panel_size(h: int, w: int) -> tuple[int, int, float]:
    scale = PANEL_H / h
    return PANEL_H, max(1, round(w * scale)), scale


def _placeholder(h: int, w: int, text: str) -> np.ndarray:
    out = np.full((h, w, 3), 90, np.uint8)
    cv2.putText(out, text, (6, h // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1)
    return out


def compose_tile(
    rgb: np.ndarray | None, heat: np.ndarray, mask: np.ndarray | None, peak: tuple[int, int]
) -> np.ndarray:
    """The three panels side by side at PANEL_H pixels high; ``peak`` = (row, col) original."""
    h, w = heat.shape
    ph, pw, scale = _panel_size(h, w)
    small_heat = cv2.resize(heat.astype(np.float32), (pw, ph), interpolation=cv2.INTER_AREA)
    color = colorize(small_heat)
    if rgb is None:
        original = _placeholder(ph, pw, "image file not found")
        overlay = color.copy()
    else:
        original = cv2.resize(rgb, (pw, ph), interpolation=cv2.INTER_AREA)
        overlay = (0.55 * original + 0.45 * color).astype(np.uint8)
    if mask is not None and mask.any():
        # Contours from the full-resolution mask, scaled: tiny lesions stay visible as dots.
        contours, _ = cv2.findContours(
            mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
        )
        scaled = [np.round((c + 0.5) * scale - 0.5).astype(np.int32) for c in contours]
        cv2.drawContours(overlay, scaled, -1, CONTOUR_RGB, 1)
    y, x = round((peak[0] + 0.5) * scale - 0.5), round((peak[1] + 0.5) * scale - 0.5)
    cv2.drawMarker(overlay, (x, y), (255, 255, 255), cv2.MARKER_CROSS, 9, 1)
    gap = np.full((ph, GAP, 3), 255, np.uint8)
    return np.ascontiguousarray(np.concatenate([original, gap, color, gap, overlay], axis=1))


def _peak(heat: np.ndarray, fov: np.ndarray | None) -> tuple[int, int]:
    values = np.where(fov, heat, -np.inf) if fov is not None and fov.any() else heat
    r, c = np.unravel_index(int(np.argmax(values)), heat.shape)
    return int(r), int(c)


def _caption(row: dict[str, Any], metric: str) -> list[str]:
    hit = row.get("pointing_hit")
    energy = (
        f"energy in mask {num(row.get('energy_in_mask'))} "
        f"(chance {num(row.get('mask_area_fraction'))})"
    )
    truth = (
        "no true label"
        if row["true_class"] is None
        else f"true {row['true_class']} ({row['outcome']})"
    )
    lines = [
        row["run"],
        f"{truth} | predicted {row['predicted_class']} (confidence {num(row['confidence'], 2)})",
        energy if metric == "energy_in_mask" else f"{metric} {num(row.get(metric))} | {energy}",
        f"IoU area-matched {num(row.get('iou_area_match'))} | pixel AUC "
        f"{num(row.get('pixel_auc'))} | pointing {'-' if hit is None else 'hit' if hit else 'miss'}"
        f" ({num(row.get('pointing_distance_px'), 0)} px)",
    ]
    if row.get("verdicts"):
        lines.append(f"verdicts: {row['verdicts']}")
    return lines


class _Loader:
    """Images, heatmaps, masks and FOVs for tiles; each image file is decoded once."""

    def __init__(self, db: Database, data: ReportData, fov_cache: FovCache, rasterize: Any):
        self.db, self.fov_cache, self.rasterize = db, fov_cache, rasterize
        self.results = {r.heatmap_id: r for r in data.results}
        self.reviewer_ids = data.reviewer_ids
        with db.session(read_only=True) as s:
            self.roots = {d.id: Path(d.root) for d in repo.list_datasets(s)}
        self._images: dict[int, tuple[np.ndarray | None, np.ndarray | None]] = {}

    def image(self, image_id: int, path: Path, sha: str) -> tuple[np.ndarray | None, Any]:
        if image_id not in self._images:
            try:
                rgb = load_image(path)
                fov = self.fov_cache.get(path, sha, rgb)
            except (FundusReviewError, OSError, ValueError):
                rgb, fov = None, None
            if len(self._images) >= _IMAGE_CACHE:  # the same image recurs for each run
                del self._images[next(iter(self._images))]
            self._images[image_id] = (rgb, fov)
        return self._images[image_id]

    def tile(self, row: dict[str, Any], metric: str) -> Tile:
        res = self.results[row["heatmap_id"]]
        path = self.roots[res.dataset_id] / res.rel_path
        rgb, fov = self.image(res.image_id, path, res.sha256)
        with self.db.session(read_only=True) as s:
            found = repo.load_heatmap(s, res.run_id, res.image_id)
            try:
                mask = repo.structure_mask(
                    s,
                    res.image_id,
                    row["structure"],
                    self.reviewer_ids[row["reviewer"]],
                    self.rasterize,
                )
            except FundusReviewError:
                mask = None
        if found is None:
            raise FundusReviewError(f"{path}: heatmap of {row['run']} disappeared")
        heat = InputTransform.from_dict(found[1]).heatmap_to_original(found[0])
        if rgb is not None and rgb.shape[:2] != heat.shape:
            rgb, fov = None, None
        image = compose_tile(rgb, heat, mask, _peak(heat, fov))
        return Tile(image=image, title=res.rel_path, lines=_caption(row, metric))


# Gallery groupings a user can ask for (`--gallery-by`), within each structure x reviewer.
GALLERY_GROUPINGS = {"outcome": "outcome", "class": "true_class", "confidence": "confidence_band"}


def _band_rank(band: str | None) -> tuple[int, float]:
    """High confidence first: a confident prediction that looks elsewhere is the one to see."""
    text = band or "unknown"
    try:
        if text.startswith(">="):
            return 0, -float(text[2:])
        if text.startswith("<"):
            return 2, 0.0
        return 1, -float(text.split("-", 1)[0])
    except ValueError:
        return 3, 0.0


def _group_order(fields: Sequence[str]) -> Callable[[tuple], tuple]:
    def key(values: tuple) -> tuple:
        out: list[Any] = []
        for name, value in zip(fields, values, strict=True):
            if name == "outcome":
                out.append(_OUTCOME_RANK.get(value, 99))
            elif name == "confidence_band":
                out.append(_band_rank(value))
            else:
                out.append((value is None, str(value)))
        return tuple(out)

    return key


def _gallery_title(structure: str, who: str, group: dict[str, Any], metric: str) -> str:
    outcome = group.get("outcome")
    if outcome is None:
        what = "all predictions"
    elif outcome == "unlabeled":
        what = "images without a true label"
    else:
        what = f"{outcome} predictions"
    if "true_class" in group:
        what += f", true class {group['true_class'] or '(none)'}"
    if "confidence_band" in group:
        what += f", confidence {group['confidence_band']}"
    return f"{structure}{who}: {what}, worst localized ({metric}) first"


def build_galleries(
    db: Database,
    data: ReportData,
    *,
    cap: int,
    seed: int,
    metric: str,
    fov_cache: FovCache,
    rasterize: Any = None,
    progress: Callable[[int, int], None] | None = None,
    group_by: Sequence[str] = ("outcome", "class"),
) -> tuple[list[Gallery], list[dict[str, Any]]]:
    """Galleries per structure x reviewer x the `group_by` groupings (GALLERY_GROUPINGS), and
    their index for the JSON."""
    fields = [GALLERY_GROUPINGS[g] for g in group_by]
    higher = describe_metric(metric).higher_is_better is not False
    loader = _Loader(db, data, fov_cache, rasterize)
    plan = []
    # A gallery of baseline maps shows nothing about the model.
    real = [r for r in data.rows if r.get("run_kind") != "baseline"]
    by_key = group_rows(real, ("structure", "reviewer"))
    for (structure, reviewer), rows in by_key.items():
        groups = group_rows(rows, fields, order=_group_order(fields))
        for values, members in groups.items():
            picked, note = gallery_pick([m.get(metric) for m in members], cap, seed, higher)
            group = dict(zip(fields, values, strict=True))
            plan.append((structure, reviewer, group, [members[i] for i in picked], note))
    total = sum(len(p[3]) for p in plan)
    galleries, index, done = [], [], 0
    multi_reviewer = len({k[1] for k in by_key}) > 1
    for structure, reviewer, group, chosen, note in plan:
        tiles = []
        for row in chosen:
            try:
                tiles.append(loader.tile(row, metric))
            except FundusReviewError as exc:
                note += f"; tile of {row['image']} left out: {exc}"
            done += 1
            if progress is not None:
                progress(done, total)
        who = f", reviewer {reviewer}" if multi_reviewer else ""
        title = _gallery_title(structure, who, group, metric)
        galleries.append(Gallery(title=title, note=note, tiles=tiles))
        index.append(
            {
                "structure": structure,
                "reviewer": reviewer,
                "outcome": group.get("outcome"),
                "true_class": group.get("true_class"),
                "confidence_band": group.get("confidence_band"),
                "metric": metric,
                "note": note,
                "heatmap_ids": [r["heatmap_id"] for r in chosen],
            }
        )
    return galleries, index
