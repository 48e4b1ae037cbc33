"""How many actions a reviewer needs to outline disc and cup on the demo set: by hand vs with
the segmenter's proposals. Prints both counts (and the per-structure Dice of the proposals).

    .venv/bin/python bench/proposal_actions.py [--n 60] [--threshold 0.85] [--data DIR]
    .venv/bin/python bench/proposal_actions.py --held-out models/segmenter-disc-cup/cv_per_image.csv \
        --real ../shared/data

The second form counts the same actions on the real photographs the segmenter was trained on,
with the proposals' *held-out* Dice (each image scored by the cross-validation fold model that
never saw it, ``cv_per_image.csv`` of ``fundus-review train-segmenter``) against the experts'
masks; IDRiD has no cup mask, so only its disc is counted (in both flows). Rows of a dataset
that is no folder under --real (the synthetic training set) are left out, and named.

The demo set is regenerated exactly as `fundus-review demo` writes it (same seed, size and
count) unless --data names a folder with masks/optic_disc and masks/optic_cup. Its masks are
exact, so they stand in for the reviewer's intended outline; a structure counts as done when
its region reaches Dice >= --threshold against that mask.

Actions counted (one key press, one click or one drag each; moving to the next image, status
and verdict are the same in both flows and not counted):
- by hand, ellipse: structure key (selects its default tool) + one box drag; + one handle drag
  (rotate/resize to the best-fitting ellipse) when the box's ellipse is not good enough; a
  structure no ellipse fits is counted as a polygon.
- by hand, polygon: structure key + one click per vertex (the fewest vertices of a simplified
  outline that reach the threshold) + Enter to close.
- with proposals: Shift+P + A; a proposal below the threshold (or missing) costs a click to
  select it + Delete + drawing that structure by hand (the cheaper of the two protocols above).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402

from fundus_review.core.geometry import rasterize  # noqa: E402
from fundus_review.data.images import load_image  # noqa: E402
from fundus_review.data.masks_io import load_mask  # noqa: E402
from fundus_review.inference.segment_post import (  # noqa: E402
    dice,
    disc_cup_masks,
    fit_ellipse,
    shapes_from_masks,
)

STRUCTURES = ("optic_disc", "optic_cup")


def hand_ellipse(mask: np.ndarray, t: float) -> int | None:
    """Actions for an ellipse that reaches Dice >= t, None when no ellipse does."""
    ys, xs = np.nonzero(mask)
    box = {"cx": (xs.min() + xs.max() + 1) / 2, "cy": (ys.min() + ys.max() + 1) / 2,
           "rx": (xs.max() + 1 - xs.min()) / 2, "ry": (ys.max() + 1 - ys.min()) / 2, "angle": 0.0}  # fmt: skip
    if dice(rasterize("ellipse", box, mask.shape), mask) >= t:
        return 2
    best = fit_ellipse(mask)
    if best is not None and dice(rasterize("ellipse", best, mask.shape), mask) >= t:
        return 3
    return None


def hand_polygon(mask: np.ndarray, t: float) -> int:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    c = max(contours, key=cv2.contourArea)
    for eps in (8.0, 6.0, 4.0, 3.0, 2.0, 1.5, 1.0, 0.5):
        pts = cv2.approxPolyDP(c, eps, True)[:, 0, :].astype(float) + 0.5
        if len(pts) >= 3:
            got = dice(rasterize("polygon", {"points": pts.tolist()}, mask.shape), mask)
            if got >= t:
                return 1 + len(pts) + 1
    return 1 + len(c) + 1


def by_hand(mask: np.ndarray, t: float) -> tuple[int, int]:
    """(ellipse-protocol actions, polygon-protocol actions) for one structure."""
    poly = hand_polygon(mask, t)
    ell = hand_ellipse(mask, t)
    return (poly if ell is None else ell), poly


def held_out(csv_path: Path, real: Path, t: float) -> int:
    import csv

    hand_ell = hand_poly = assisted = 0
    ok = {s: 0 for s in STRUCTURES}
    counted = {s: 0 for s in STRUCTURES}
    rows = list(csv.DictReader(csv_path.open(encoding="utf-8")))
    missing = sorted({r["stratum"] for r in rows if not (real / r["stratum"]).is_dir()})
    if missing:  # e.g. the synthetic training set: not a real photograph, not under --real
        print(f"skipping datasets not under {real}: {', '.join(missing)}")
        rows = [r for r in rows if r["stratum"] not in missing]
    for row in rows:
        folder = real / row["stratum"]
        stem = Path(row["image"]).stem
        cost = 2  # Shift+P, A
        for s in STRUCTURES:
            mask_path = folder / "masks" / s / f"{stem}.png"
            if not mask_path.is_file() or not row.get(f"dice_{s[6:]}"):
                continue
            truth = load_mask(mask_path)
            ell, poly = by_hand(truth, t)
            hand_ell, hand_poly = hand_ell + ell, hand_poly + poly
            counted[s] += 1
            if float(row[f"dice_{s[6:]}"]) >= t:
                ok[s] += 1
            else:
                cost += 2 + min(ell, poly)
        assisted += cost
    n = len(rows)
    print(f"real photographs, held-out proposals: {n} images ({csv_path}), Dice threshold {t}")
    for s in STRUCTURES:
        print(f"  {s}: held-out proposal accepted as is on {ok[s]}/{counted[s]} images")
    _report(n, hand_ell, hand_poly, assisted)
    return 0


def _report(n: int, hand_ell: int, hand_poly: int, assisted: int) -> None:
    print(f"actions by hand (ellipses):   {hand_ell}  ({hand_ell / n:.1f} per image)")
    print(f"actions by hand (polygons):   {hand_poly}  ({hand_poly / n:.1f} per image)")
    print(f"actions with proposals:       {assisted}  ({assisted / n:.1f} per image)")
    print(f"ratio hand (ellipses) / proposals: {hand_ell / assisted:.2f}; "
          f"hand (polygons) / proposals: {hand_poly / assisted:.2f}")  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--held-out", type=Path, help="cv_per_image.csv of train-segmenter")
    ap.add_argument("--real", type=Path, help="folder holding the training datasets")
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--threshold", type=float, default=0.85)
    ap.add_argument("--data", type=Path)
    ap.add_argument("--segmenter", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if args.held_out is not None:
        if args.real is None:
            ap.error("--held-out needs --real (the folder of the datasets it names)")
        return held_out(args.held_out, args.real, args.threshold)

    import torch

    from fundus_review.app.proposals import get_segmenter
    from fundus_review.cli.demo import ensure_demo_data

    torch.set_num_threads(args.threads)
    if args.data is None:
        folder = Path(tempfile.mkdtemp(prefix="demo-actions-")) / "data"
        ensure_demo_data(folder, args.n)
    else:
        folder = args.data
    seg = get_segmenter(args.segmenter)
    images = sorted((folder / "images").glob("*"))[: args.n]
    t = args.threshold
    hand_ell = hand_poly = assisted = 0
    ok = {s: 0 for s in STRUCTURES}
    dices: dict[str, list[float]] = {s: [] for s in STRUCTURES}
    start = time.perf_counter()
    for path in images:
        rgb = load_image(path)
        truth = {s: load_mask(folder / "masks" / s / f"{path.stem}.png", rgb.shape[:2])
                 for s in STRUCTURES}  # fmt: skip
        shapes = {p.structure: p for p in shapes_from_masks(*disc_cup_masks(*seg.predict(rgb)))}
        cost = 2  # Shift+P, A
        for s in STRUCTURES:
            ell, poly = by_hand(truth[s], t)
            hand_ell, hand_poly = hand_ell + ell, hand_poly + poly
            got = shapes.get(s)
            d = 0.0 if got is None else dice(got.mask(rgb.shape[:2]), truth[s]) or 0.0
            dices[s].append(d)
            if d >= t:
                ok[s] += 1
            else:
                cost += (2 if got is not None else 0) + min(ell, poly)
        assisted += cost
    seconds = time.perf_counter() - start
    n = len(images)
    print(f"demo set: {n} images ({folder}), Dice threshold {t}, segmenter {seg.name}")
    for s in STRUCTURES:
        d = np.asarray(dices[s])
        print(f"  proposal {s}: Dice median {np.median(d):.3f}, mean {d.mean():.3f}; "
              f"accepted as is on {ok[s]}/{n} images")  # fmt: skip
    _report(n, hand_ell, hand_poly, assisted)
    print(f"({seconds:.0f} s for {n} proposals, {seconds / n:.2f} s per 512-px image)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
