"""Seconds per proposal on a 1024-px photograph on the CPU: the segmenter's two passes, the
post-processing and the polygons (what "Propose disc and cup" computes).

    .venv/bin/python bench/segmenter_speed.py [--threads 2] [--repeats 10] [IMAGE ...]

Without IMAGE it uses the first DRISHTI-GS1 and IDRiD photographs of ../shared/data (or
$FUNDUS_REVIEW_SHARED_DATA; 1024 px on the long side) and, when they are absent, a synthetic 1024 x 1024 demo photograph. One untimed
warm-up per image; prints the median and the range of --repeats timed runs per image.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fundus_review.paths import REPO_ROOT  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", nargs="*", type=Path)
    ap.add_argument("--threads", type=int, default=2, help="torch threads (the app uses 1)")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--segmenter", type=Path)
    args = ap.parse_args()

    import torch

    from fundus_review.app.proposals import get_segmenter
    from fundus_review.data.images import load_image
    from fundus_review.inference.segment_post import disc_cup_masks, shapes_from_masks

    torch.set_num_threads(args.threads)
    images = list(args.images)
    shared = Path(os.environ.get("FUNDUS_REVIEW_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
    if not images:
        for sub in ("drishti_gs1_train", "idrid_seg"):
            found = sorted((shared / sub / "images").glob("*.jpg"))
            images += found[:1]
    if not images:
        from fundus_review.data.synthetic import write_demo_dataset

        out = write_demo_dataset(Path(tempfile.mkdtemp()) / "d", n=2, size=(1024, 1024))
        images = sorted((out / "images").glob("*"))
    t0 = time.perf_counter()
    seg = get_segmenter(args.segmenter)
    seg.threads = args.threads  # the app uses 1 (Segmenter.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"segmenter {seg.name} loaded in {time.perf_counter() - t0:.2f} s; "
          f"{torch.get_num_threads()} torch threads; {os.cpu_count()} CPUs, "
          f"load average {load:.1f} (timings on a shared machine grow with it)")  # fmt: skip
    for path in images:
        rgb = load_image(path)

        def once() -> float:
            start = time.perf_counter()
            shapes_from_masks(*disc_cup_masks(*seg.predict(rgb)))  # noqa: B023
            return time.perf_counter() - start

        once()
        runs = [once() for _ in range(args.repeats)]
        print(f"{path.name} ({rgb.shape[1]}x{rgb.shape[0]}): median {statistics.median(runs):.3f} s "
              f"(min {min(runs):.3f}, max {max(runs):.3f}, n = {len(runs)})")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
