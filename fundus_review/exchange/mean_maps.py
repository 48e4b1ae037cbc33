"""`fundus-review export mean-maps OUT/`: the registered dataset-mean heatmaps as files.

One ``<run>-<frame>-<grouping>-<group>.npz`` per panel (arrays ``mean``, ``std`` (NaN where no
image covers a cell), ``count`` (images covering each cell) and ``peak_fraction`` (share of maps
peaking in each cell), all ``size`` x ``size``, row 0 at the top, frame u to the right), a
colour-mapped ``.png`` of its mean beside it (grey: no image), ``mean_maps.csv`` with every
panel's n and shares, and ``mean_maps.json`` with the frames' definitions. The maps are those of
the report's section (``app.mean_maps``).
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fundus_review.app.mean_maps import MeanMapGroup, mean_maps
from fundus_review.app.selection import ResultSelection
from fundus_review.atomic import atomic_write_bytes, atomic_write_text
from fundus_review.data.fov import FovCache
from fundus_review.errors import FundusReviewError
from fundus_review.store.db import Database

__all__ = ["MeanMapExport", "export_mean_maps"]

CSV_FIELDS = [
    "file", "run_id", "model", "method", "frame", "grouping", "group", "n",
    "off_fov_share", "off_fov_ci_low", "off_fov_ci_high", "off_fov_uniform",
    "corner_share", "corner_ci_low", "corner_ci_high", "corner_uniform",
    "peaks_in_corner", "peaks",
]  # fmt: skip
PNG_SCALE = 2  # each cell 2 x 2 px


@dataclass
class MeanMapExport:
    out_dir: Path
    panels: int = 0
    images: int = 0
    problems: list[tuple[str, str]] = field(default_factory=list)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", text).strip("_") or "x"


def _name(g: MeanMapGroup) -> str:
    return "-".join(
        [f"run{g.run_id}", _slug(g.model), _slug(g.method), g.frame, _slug(g.grouping),
         _slug(g.group)]
    )  # fmt: skip


def _png(mean: np.ndarray) -> bytes:
    from matplotlib import colormaps
    from PIL import Image

    rgba = colormaps["jet"].with_extremes(bad="#9a9a9a")(np.ma.masked_invalid(mean), bytes=True)
    big = np.repeat(np.repeat(rgba[..., :3], PNG_SCALE, axis=0), PNG_SCALE, axis=1)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(big)).save(buf, format="PNG")
    return buf.getvalue()


def _npz(g: MeanMapGroup) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(
        buf, mean=g.acc.mean(), std=g.acc.std(), count=g.acc.count.astype(np.int32),
        peak_fraction=g.acc.peak_fraction(),
    )  # fmt: skip
    return buf.getvalue()


def _csv_row(file: str, row: dict) -> dict:
    def part(name: str, key: str) -> object:
        v = (row.get(name) or {}).get(key)
        return "" if v is None else (f"{v:.6f}" if isinstance(v, float) else v)

    peaks = row.get("peak_in_corner") or {}
    return {
        "file": file, **{k: row[k] for k in ("run_id", "model", "method", "frame", "grouping",
                                              "group", "n")},
        "off_fov_share": part("off_fov_share", "mean"),
        "off_fov_ci_low": part("off_fov_share", "ci_low"),
        "off_fov_ci_high": part("off_fov_share", "ci_high"),
        "off_fov_uniform": part("off_fov_share", "uniform"),
        "corner_share": part("corner_share", "mean"),
        "corner_ci_low": part("corner_share", "ci_low"),
        "corner_ci_high": part("corner_share", "ci_high"),
        "corner_uniform": part("corner_share", "uniform"),
        "peaks_in_corner": peaks.get("k", ""), "peaks": peaks.get("n", ""),
    }  # fmt: skip


def export_mean_maps(
    db: Database,
    out_dir: str | Path,
    selection: ResultSelection | None = None,
    *,
    fov_cache: FovCache,
    size: int = 128,
    mirror: bool = True,
    seed: int = 0,
) -> MeanMapExport:
    """Write every panel of the selection's mean maps into ``out_dir`` (created)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FundusReviewError(f"{out}: exists and is not a folder")
    maps = mean_maps(db, selection, fov_cache=fov_cache, size=size, mirror=mirror)
    result = MeanMapExport(out, images=maps.images, problems=list(maps.problems))
    if not maps.groups:
        raise FundusReviewError(
            "no heatmap of this selection could be averaged (run `fundus-review analyze` first"
            + (f"; {maps.problems[0][0]}: {maps.problems[0][1]}" if maps.problems else "")
            + ")"
        )
    out.mkdir(parents=True, exist_ok=True)
    numbers = {(r["run_id"], r["frame"], r["grouping"], r["group"]): r for r in maps.table(seed)}
    rows = []
    used: set[str] = set()
    for key, g in sorted(maps.groups.items()):
        name = base = _name(g)
        for k in range(2, len(maps.groups) + 2):  # "DR+" and "DR-" slug alike: never overwrite
            if name.lower() not in used:
                break
            name = f"{base}-{k}"
        used.add(name.lower())
        atomic_write_bytes(out / f"{name}.npz", _npz(g))
        atomic_write_bytes(out / f"{name}.png", _png(g.acc.mean()))
        rows.append(_csv_row(f"{name}.npz", numbers[key]))
        result.panels += 1
    buf = io.StringIO()
    writer = csv.DictWriter(buf, CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "mean_maps.csv", buf.getvalue())
    meta = {**maps.settings(), "seed": seed, "problems": [list(p) for p in maps.problems]}
    atomic_write_text(out / "mean_maps.json", json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return result
