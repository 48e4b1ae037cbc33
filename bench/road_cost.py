"""ROAD cost: seconds per image of ``inference.faithfulness.road_scores`` on a real bundle.

Loads a bundle, computes Grad-CAM for N photographs (model-input resolution, e.g. 224 x 224),
then times ``road_scores`` (5 fractions x MoRF/LeRF by default: 10 sparse solves + 11 forwards per
image) in CPU time and wall time, and the imputation alone with the package's NoisyLinearImputer
against FastNoisyLinearImputer (same system, vectorised assembly).

    .venv/bin/python bench/road_cost.py --bundle models/demo-cdr --images ../shared/data/drishti_gs1_train/images
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from pytorch_grad_cam.metrics.road import NoisyLinearImputer

from fundus_review.data.images import load_image
from fundus_review.inference.bundle import load_bundle
from fundus_review.inference.cam import CamEngine
from fundus_review.inference.faithfulness import (
    DEFAULT_REMOVED,
    FastNoisyLinearImputer,
    keep_mask,
    removal_order,
    road_scores,
)
from fundus_review.inference.layers import resolve_layer
from fundus_review.inference.preprocess import prepare_batch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=Path("models/demo-cdr"))
    ap.add_argument("--images", type=Path, required=True, help="folder of photographs")
    ap.add_argument("-n", type=int, default=4, help="images to time")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--removed",
        type=lambda t: tuple(float(v) for v in t.split(",")),
        default=DEFAULT_REMOVED,
        help="removal fractions, comma-separated (default 0.1,0.3,0.5,0.7,0.9)",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t = time.perf_counter()
    bundle = load_bundle(args.bundle)
    model = bundle.build_model("cpu")
    print(f"bundle load + build: {time.perf_counter() - t:.2f} s")
    paths = sorted(p for p in args.images.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    images = [load_image(p) for p in paths[: args.n]]
    x, _ = prepare_batch(images, bundle.card)
    layers = [resolve_layer(model, name) for name in bundle.card.target_layers]
    with CamEngine(model, layers, ["gradcam"]) as engine:
        res = engine.run(x)
    cams = res.heatmaps["gradcam"]
    print("share of exactly-zero CAM pixels:", [round(float((c == 0).mean()), 2) for c in cams])
    c0, w0 = time.process_time(), time.perf_counter()
    out = road_scores(model, x, cams, res.target_index.tolist(), removed=args.removed)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    n = len(images)
    print(
        f"road_scores, {n} images x {len(args.removed)} fractions x 2 orders at "
        f"{tuple(x.shape[-2:])}: {cpu / n:.2f} s CPU / image ({wall / n:.2f} s wall)"
    )
    for r in out:
        print(
            f"  p={r.prob:.3f} morf={r.road_morf:.3f} lerf={r.road_lerf:.3f} "
            f"combined={r.road_combined:.3f}"
        )
    size = tuple(x.shape[-2:])
    for name, imp in (("package", NoisyLinearImputer()), ("fast", FastNoisyLinearImputer())):
        c0 = time.process_time()
        for f in args.removed:
            for most in (True, False):
                mask = keep_mask(removal_order(cams[0], most, 0), size, f)
                imp(x[0], torch.from_numpy(mask))
        print(
            f"{name} imputer, one image, all fractions and orders: {time.process_time() - c0:.2f} s CPU"
        )


if __name__ == "__main__":
    main()
