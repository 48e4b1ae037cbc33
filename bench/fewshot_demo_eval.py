"""Held-out numbers of the few-shot demo bundle (models/demo-fewshot), as README quotes them.

    python bench/fewshot_demo_eval.py models/demo-fewshot TEST_SET [--db /tmp/fs-eval.db]

TEST_SET: `fundus-review demo-data TEST_SET --n 200 --seed 12` (never used in training, which
used seed 11). Prints the accuracy on the hemorrhage label with its Wilson 95 % CI, then runs
`analyze` (Grad-CAM, HiResCAM) and `report --structure hemorrhage` and prints where the report is:
its hemorrhage section gives the pointing game and energy in the lesion masks with their CIs.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import torch

from fundus_review.cli.main import main
from fundus_review.core.stats import proportion_ci
from fundus_review.data.images import load_image
from fundus_review.inference.bundle import load_bundle
from fundus_review.inference.preprocess import prepare_batch


def accuracy(bundle_dir: Path, data: Path) -> tuple[int, int, dict[str, tuple[int, int]]]:
    bundle = load_bundle(bundle_dir)
    model = bundle.build_model("cpu")
    with open(data / "labels.csv", newline="") as fh:
        rows = [(r["image"], r["hemorrhage"]) for r in csv.DictReader(fh)]
    right, per_class = 0, {c: [0, 0] for c in bundle.card.classes}
    for i in range(0, len(rows), 16):
        chunk = rows[i : i + 16]
        x, _ = prepare_batch([load_image(data / "images" / f) for f, _ in chunk], bundle.card)
        with torch.no_grad():
            pred = model(x).argmax(1).tolist()
        for (_f, label), p in zip(chunk, pred, strict=True):
            ok = bundle.card.classes[p] == label
            right += ok
            per_class[label][0] += ok
            per_class[label][1] += 1
    return right, len(rows), {c: (a, b) for c, (a, b) in per_class.items()}


def run() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("bundle", type=Path)
    ap.add_argument("data", type=Path)
    ap.add_argument("--db", type=Path, default=Path("/tmp/fewshot-eval.db"))
    ap.add_argument("--report", type=Path, default=Path("/tmp/fewshot-eval-report"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    right, n, per_class = accuracy(args.bundle, args.data)
    p, lo, hi = proportion_ci(right, n)
    print(f"accuracy {p:.3f} [{lo:.3f}, {hi:.3f}] (Wilson 95 %), {right}/{n}; per class: "
          + ", ".join(f"{c} {a}/{b}" for c, (a, b) in per_class.items())
          + f"; {time.perf_counter() - t0:.0f} s")  # fmt: skip
    t0 = time.perf_counter()
    main(["analyze", str(args.data), "--model", str(args.bundle), "--method", "gradcam,hirescam",
          "--label-column", "hemorrhage", "--db", str(args.db), "--quiet"])  # fmt: skip
    print(f"analyze: {time.perf_counter() - t0:.0f} s for {n} images")
    main(["report", "--db", str(args.db), "--out", str(args.report), "--structure", "hemorrhage",
          "--quiet"])  # fmt: skip
    print(f"report: {args.report}/report.html")


if __name__ == "__main__":
    run()
