"""Spearman's bootstrap CI: re-ranking each resample (argsort, the old code) vs ranking once.

    PYTHONPATH=$PWD .venv/bin/python bench/spearman_speed.py [--n 20000 100000] [--resamples 200]

Both run in this one process on the same data, so their ratio is comparable even on a loaded
machine; the load average is printed beside each line. Two kinds of data: "ties" (confidence
rounded to 2 decimals, the score to 3) and "distinct" (continuous, no ties: the most distinct
values to count). The intervals must be equal: the draws and the ranks are the same.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from fundus_review.core import stats


def _rerank_ci(x: np.ndarray, y: np.ndarray, n_resamples: int, seed: int) -> tuple:
    """The code before: every resample re-ranked with average_ranks (argsort per row)."""
    rng = np.random.default_rng(seed)
    boot = np.concatenate(
        [
            stats._pearson_rows(stats.average_ranks(x[idx]), stats.average_ranks(y[idx]))
            for idx in stats._resample_indices(rng, x.size, n_resamples)
        ]
    )
    return stats._percentile_interval(boot, stats.DEFAULT_CI)


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[20_000, 100_000])
    ap.add_argument("--resamples", type=int, default=200)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    head = f"{'n':>8} {'data':>8} {'resamples':>9} {'re-rank s':>10} {'rank once s':>12}"
    print(f"{head} {'ratio':>6}  load")
    for n, kind in ((n, kind) for n in args.n for kind in ("ties", "distinct")):
        x = rng.random(n)
        y = x + rng.normal(0, 0.3, n)
        if kind == "ties":
            x, y = np.round(x, 2), np.round(y, 3)
        t0 = time.perf_counter()
        old = _rerank_ci(x, y, args.resamples, seed=0)
        t1 = time.perf_counter()
        new = stats.spearman(x, y, n_resamples=args.resamples, seed=0)
        t2 = time.perf_counter()
        assert abs(old[0] - new.ci_low) < 1e-12 and abs(old[1] - new.ci_high) < 1e-12
        print(
            f"{n:>8} {kind:>8} {args.resamples:>9} {t1 - t0:>10.2f} {t2 - t1:>12.2f} "
            f"{(t1 - t0) / (t2 - t1):>6.1f}  {_loadavg()}"
        )


if __name__ == "__main__":
    main()
