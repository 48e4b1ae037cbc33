"""Deterministic synthetic fundus photographs with exact ground truth (the built-in demo set).

Nobody can download data here, and the demo must show a case whose right answer is known: the
diagnosis is *caused* by the drawn cup-to-disc ratio, every structure's mask is the shape that was
drawn, and an optional bright corner marker outside the field of view is a deliberate shortcut
(as camera overlays and timestamps are in real collections).

Coordinates follow docs/CONTRACTS.md: pixel (row i, col j) has its centre at (j + 0.5, i + 0.5),
and a pixel belongs to a mask when its centre lies inside the drawn shape.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from fundus_review.data.synthetic_draw import (
    Geo,
    make_geometry,
    paint_background,
    paint_disc,
    paint_lesions,
    render_vessels,
    shape_area,
    shape_mask,
    vessel_tree,
)
from fundus_review.errors import DatasetError

GLAUCOMA_MIN_CDR = 0.6
NORMAL_MAX_CDR = 0.4
CDR_RANGES = {"glaucoma": (0.6, 0.85), "normal": (0.15, 0.4)}
# "corner" puts a marker on every image, so a shortcut model's heatmap has a target in both classes;
# "presence" mimics an overlay that only one clinic's camera stamps.
CONFOUNDER_MODES = ("corner", "presence")
CLASS_CORNER = {"glaucoma": "top_right", "normal": "bottom_left"}
PRESENCE_CORNER = "top_right"
LABELS_COLUMNS = ("image", "diagnosis", "cdr", "hemorrhage", "marker")
STAMP_NAME = "synthetic.json"


@dataclass
class SyntheticCase:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    masks: dict[str, np.ndarray]  # structure -> (H, W) bool; only structures that are present
    meta: dict  # JSON-serialisable geometry and labels
    fov: np.ndarray | None = field(default=None, repr=False)  # (H, W) bool field of view


def label_for_cdr(cdr: float) -> str:
    """The synthetic set's diagnosis rule; the gap between the classes is never drawn."""
    if cdr >= GLAUCOMA_MIN_CDR:
        return "glaucoma"
    if cdr <= NORMAL_MAX_CDR:
        return "normal"
    raise ValueError(
        f"cdr {cdr:.3f} lies in the excluded gap ({NORMAL_MAX_CDR}, {GLAUCOMA_MIN_CDR})"
    )


def _marker(rng, label, strength, agrees, mode, g: Geo) -> dict:
    if mode not in CONFOUNDER_MODES:
        raise ValueError(f"confounder_mode must be one of {CONFOUNDER_MODES}, not {mode!r}")
    draw = rng.random()  # always drawn, so an override does not shift the stream
    agrees = bool(draw < strength) if agrees is None else bool(agrees)
    if mode == "corner":
        other = "normal" if label == "glaucoma" else "glaucoma"
        corner = CLASS_CORNER[label if agrees else other]
    elif (label == "glaucoma") == agrees:
        corner = PRESENCE_CORNER
    else:
        return {"corner": "none", "agrees": agrees, "box": None}
    size, margin = max(4, round(0.04 * g.w)), max(2, round(0.025 * g.w))
    x0 = 3 * margin if corner.endswith("left") else g.w - 3 * margin - size
    y0 = margin if corner.startswith("top") else g.h - margin - size
    nx, ny = (x0 + size if x0 < g.cx else x0), (y0 + size if y0 < g.cy else y0)  # nearest corner
    if math.hypot(nx - g.cx, ny - g.cy) < g.r + 2:
        raise ValueError(f"a {g.h}x{g.w} image has no room for a marker outside the field")
    box = [x0, y0, x0 + size, y0 + size]
    return {"corner": corner, "agrees": agrees, "box": box, "value": rng.uniform(0.9, 1)}


# ---------------------------------------------------------------- one image
def generate_fundus(
    rng_or_seed: int | np.random.Generator,
    size: tuple[int, int] = (512, 512),
    cdr: float | None = None,
    lesions: bool | int = False,
    confounder: bool = False,
    *,
    label: str | None = None,
    confounder_strength: float = 1.0,
    confounder_mode: str = "corner",
    marker_agrees: bool | None = None,
    eye: str | None = None,
) -> SyntheticCase:
    """One synthetic fundus photograph of `size` = (H, W) with its exact masks and geometry.

    cdr (vertical cup / vertical disc diameter) decides the label; None draws it from the range of
    `label` (None: either class). lesions: True = 3-12 hemorrhages, an int = that many; both add
    0-3 clusters of hard exudates. With `confounder`, a bright square outside the field of view
    agrees with the label with probability `confounder_strength` (or as `marker_agrees` says):
    mode "corner" = a class-specific corner (CLASS_CORNER), "presence" = shown for glaucoma only.
    Anatomy, lesions and marker draw from separate random streams, so switching lesions or the
    marker on leaves the rest of the image unchanged. eye: "OD" (disc on the right) or "OS".
    """
    rng = np.random.default_rng(rng_or_seed)  # returns a Generator unchanged
    h, w = int(size[0]), int(size[1])
    if min(h, w) < 64:
        raise ValueError(f"size {size} is too small for a fundus image (at least 64x64)")
    ra, rv, rl, rm = (np.random.default_rng(s) for s in rng.integers(0, 2**63 - 1, size=4))
    if cdr is None:
        label = label or str(ra.choice(("glaucoma", "normal")))
        if label not in CDR_RANGES:
            raise ValueError(f"label must be 'glaucoma' or 'normal', not {label!r}")
        cdr = float(ra.uniform(*CDR_RANGES[label]))
    elif label is not None and label != label_for_cdr(cdr):
        raise ValueError(f"label {label!r} contradicts cdr {cdr:.3f}")
    if not 0.05 <= cdr <= 0.9:
        raise ValueError(f"cdr {cdr} is outside the drawable range [0.05, 0.9]")
    label = label_for_cdr(cdr)
    eye = eye or str(ra.choice(("OD", "OS")))
    if eye not in ("OD", "OS"):
        raise ValueError(f"eye must be 'OD' or 'OS', not {eye!r}")
    g = make_geometry(ra, h, w, cdr, label, eye)

    exposure = ra.uniform(0.62, 1.12)
    img = paint_background(ra, g)
    img *= exposure
    under = img.copy()
    paint_disc(ra, img, g, exposure)
    # Vessels darken green most, as in real photographs; veins are darker and wider than arteries.
    # Their colour comes from the fundus beneath the disc, so they stay red where they cross it.
    art, vein = render_vessels(vessel_tree(rv, g), h, w)
    kv = np.array([0.36, 0.64, 0.56]) * rv.uniform(0.85, 1.1)
    ka = np.array([0.2, 0.52, 0.44]) * rv.uniform(0.85, 1.1)
    for ch in range(3):
        img[ch] += vein * (under[ch] * (1 - kv[ch]) - img[ch])
        img[ch] += art * (under[ch] * (1 - ka[ch]) - img[ch])
    if int(lesions) < 0:
        raise ValueError(f"lesions must be a bool or a count >= 0, not {lesions}")
    n_hem = 0 if not lesions else int(rl.integers(3, 13)) if lesions is True else int(lesions)
    n_clusters = int(rl.integers(0, 4)) if n_hem else 0
    lesion_masks, counts = paint_lesions(rl, img, g, n_hem, n_clusters)

    # field of view, optionally band-cut, sometimes with the small notch some cameras leave
    xs = (np.arange(w, dtype=np.float32) + 0.5)[None, :]
    ys = (np.arange(h, dtype=np.float32) + 0.5)[:, None]
    fov_cov = np.clip(g.r + 0.5 - np.hypot(xs - g.cx, ys - g.cy), 0, 1)
    if g.band is not None:
        fov_cov *= np.clip(g.band + 0.5 - np.abs(ys - g.cy), 0, 1)
    if ra.random() < 0.3:
        ang = -ra.uniform(0.5, 0.9)  # upper right rim
        nx, ny = g.cx + g.r * math.cos(ang), g.cy + g.r * math.sin(ang)
        fov_cov *= ~((np.abs(xs - nx) < 0.025 * g.r) & (np.abs(ys - ny) < 0.05 * g.r))
    dark = ra.random((h, w), np.float32) * 0.012  # the camera's black is not exactly 0
    img = img * fov_cov + (1 - fov_cov) * dark

    masks = {"optic_disc": shape_mask(g.disc, h, w)}
    masks["optic_cup"] = shape_mask(g.cup, h, w) & masks["optic_disc"]
    masks.update(lesion_masks)
    marker = None
    if confounder:
        marker = _marker(rm, label, confounder_strength, marker_agrees, confounder_mode, g)
    if marker and marker["box"]:
        x0, y0, x1, y1 = marker["box"]
        img[:, y0:y1, x0:x1] = marker["value"]
        masks["marker"] = np.zeros((h, w), bool)
        masks["marker"][y0:y1, x0:x1] = True
    image = np.dstack((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8))

    def pt(x: float, y: float) -> list[float]:
        return [round(float(x), 3), round(float(y), 3)]

    meta = {
        "label": label,
        "cdr": round(cdr, 4),
        "eye": eye,
        "size": [h, w],
        "fov_center": pt(g.cx, g.cy),
        "fov_radius": round(g.r, 3),
        "fov_band_half_height": None if g.band is None else round(g.band, 3),
        "disc_center": pt(g.disc["cx"], g.disc["cy"]),
        "disc_axes": pt(g.disc["a"], g.disc["b"]),
        "disc_vertical_diameter": round(g.dv, 3),
        "disc_area": round(shape_area(g.disc), 2),
        "cup_center": pt(g.cup["cx"], g.cup["cy"]),
        "cup_axes": pt(g.cup["a"], g.cup["b"]),
        "cup_vertical_diameter": round(cdr * g.dv, 3),
        "cup_area": round(shape_area(g.cup), 2),
        "fovea_center": pt(*g.fovea),
        "hemorrhage": "hemorrhage" in lesion_masks,
        "n_hemorrhages": counts["hemorrhage"],
        "n_exudates": counts["hard_exudate"],
        "marker": marker["corner"] if marker else "none",
        "marker_box": marker["box"] if marker else None,
        "marker_agrees": marker["agrees"] if marker else None,
    }
    return SyntheticCase(image=image, masks=masks, meta=meta, fov=fov_cov > 0.5)


# ---------------------------------------------------------------- dataset on disk
def _write_atomic(path: Path, data: bytes) -> None:
    """Readers never see a half-written file: write a sibling, then rename over the target."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        raise DatasetError(f"{path}: cannot write: {exc}") from exc


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _read_stamp(out: Path) -> dict | None:
    try:
        stamp = json.loads((out / STAMP_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) and stamp.get("generator") == __name__ else None


def demo_dataset_info(out_dir: str | os.PathLike) -> dict | None:
    """The parameters of a complete synthetic set in out_dir (labels.csv written), else None."""
    out = Path(out_dir)
    return _read_stamp(out) if (out / "labels.csv").is_file() else None


def _prepare_folder(out: Path) -> None:
    """Refuse a foreign non-empty folder (never lose a user's files); clear an older synthetic set
    of ours so that no stale mask survives a rewrite with other parameters."""
    if out.exists() and not out.is_dir():
        raise DatasetError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if _read_stamp(out) is None:
            raise DatasetError(f"{out}: folder is not empty and holds no synthetic set")
        for f in [
            out / "labels.csv",
            out / "meta.json",
            *out.glob("images/synth_*"),
            *out.glob("masks/*/synth_*"),
        ]:
            f.unlink(missing_ok=True)
        for d in out.glob("masks/*"):
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
    try:
        (out / "images").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"{out}: cannot create the folder: {exc}") from exc


def _plan(n: int, seed: int, lesion_frac: float, strength: float) -> tuple:
    """Balanced labels; exact per-class fractions of lesions and of agreeing markers, so that no
    label correlates with another by accident. One independent seed per image."""
    children = np.random.SeedSequence(seed).spawn(n + 1)
    plan = np.random.default_rng(children[0])
    labels = plan.permutation(np.array(["glaucoma"] * ((n + 1) // 2) + ["normal"] * (n // 2)))
    with_lesions, agreeing = np.zeros(n, bool), np.zeros(n, bool)
    for cls in CDR_RANGES:
        idx = np.flatnonzero(labels == cls)
        with_lesions[plan.permutation(idx)[: round(lesion_frac * len(idx))]] = True
        agreeing[plan.permutation(idx)[: round(strength * len(idx))]] = True
    return children[1:], labels, with_lesions, agreeing


def write_demo_dataset(
    out_dir: str | os.PathLike,
    n: int = 400,
    seed: int = 0,
    size: tuple[int, int] = (512, 512),
    confounder: bool = False,
    confounder_strength: float = 1.0,
    lesions: bool | float = 0.5,
    progress: Callable[[int, int], None] | None = None,
    *,
    confounder_mode: str = "corner",
    image_format: str = "jpg",
) -> Path:
    """Write a balanced synthetic set in the layout of ../shared/data: images/<stem>.jpg (JPEG q92
    like real data, or png), masks/<structure>/<stem>.png (0/255), meta.json (geometry per image)
    and, last, labels.csv with LABELS_COLUMNS. The same arguments give the same bytes.

    lesions: fraction of each class with hemorrhages (True = 0.5), so the hemorrhage label is
    balanced and independent of the diagnosis. confounder_strength: exact fraction of each class
    whose marker agrees with its label. progress(done, total) is called after each image.
    """
    out = Path(out_dir)
    frac = 0.5 if lesions is True else float(lesions)
    if n < 2 or not 0 <= frac <= 1 or not 0 <= confounder_strength <= 1:
        raise ValueError(
            f"need n >= 2 and fractions in [0, 1], not n={n}, lesions={lesions}, strength={confounder_strength}"
        )
    if image_format not in ("jpg", "png") or confounder_mode not in CONFOUNDER_MODES:
        raise ValueError(
            f"image_format must be jpg|png and confounder_mode one of {CONFOUNDER_MODES}"
        )
    _prepare_folder(out)
    params = dict(generator=__name__, format_version=1, n=n, seed=seed, size=list(size), confounder=confounder,
                  confounder_strength=confounder_strength, confounder_mode=confounder_mode, lesions=frac,
                  image_format=image_format)  # fmt: skip
    _write_atomic(out / STAMP_NAME, json.dumps(params, indent=1).encode())

    seeds, labels, with_lesions, agreeing = _plan(n, seed, frac, confounder_strength)
    digits = max(5, len(str(n - 1)))
    rows, metas = [], []
    for i in range(n):
        case = generate_fundus(np.random.default_rng(seeds[i]), size, label=str(labels[i]),
                               lesions=bool(with_lesions[i]), confounder=confounder,
                               confounder_strength=confounder_strength,
                               confounder_mode=confounder_mode, marker_agrees=bool(agreeing[i]))  # fmt: skip
        stem = f"synth_{i:0{digits}d}"
        name = f"{stem}.{image_format}"
        if image_format == "jpg":
            buf = io.BytesIO()
            Image.fromarray(case.image).save(buf, format="JPEG", quality=92, subsampling="4:2:0")
            _write_atomic(out / "images" / name, buf.getvalue())
        else:
            _write_atomic(out / "images" / name, _png(case.image))
        for structure, mask in case.masks.items():
            (out / "masks" / structure).mkdir(parents=True, exist_ok=True)
            _write_atomic(
                out / "masks" / structure / f"{stem}.png", _png(mask.astype(np.uint8) * 255)
            )
        m = case.meta
        hem = "present" if m["hemorrhage"] else "absent"
        rows.append([name, m["label"], f"{m['cdr']:.4f}", hem, m["marker"]])
        metas.append({"image": name, **m})
        if progress is not None:
            progress(i + 1, n)
    _write_atomic(out / "meta.json", json.dumps(metas, indent=1).encode())
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows([LABELS_COLUMNS, *rows])
    _write_atomic(out / "labels.csv", text.getvalue().encode())
    return out
