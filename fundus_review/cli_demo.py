"""`fundus-review demo`: the whole point of the tool on a case whose right answer is known.

Generates a synthetic fundus set in which a corner marker agrees with the label, imports its exact
masks, runs the honest demo model and the shortcut model with GradCAM and HiResCAM, and opens the
app (or, with --no-gui, prints where the database is).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fundus_review.paths import data_home, shipped_models_dir

DEMO_MODELS = ("demo-cdr", "demo-cdr-shortcut")
DEMO_METHODS = ["gradcam", "hirescam"]


def demo_paths(home: Path | None = None) -> tuple[Path, Path, Path]:
    """(dataset folder, database file, report folder) of the demo."""
    base = (home or data_home()) / "demo"
    return base / "data", base / "demo.db", base / "report"


def ensure_demo_data(folder: Path, n: int, seed: int = 2026) -> bool:
    """Write the demo set unless a complete one is there; returns True when it was written."""
    if (folder / "labels.csv").is_file():
        return False
    from fundus_review.data.synthetic import write_demo_dataset

    # The marker agrees with the label on every image: the shortcut model is right for the wrong
    # reason here, which is exactly what the heatmaps must reveal.
    write_demo_dataset(folder, n=n, seed=seed, confounder=True, confounder_strength=1.0)
    return True


def run_demo(n: int = 60, home: Path | None = None, quiet: bool = False) -> tuple[Path, Path]:
    from fundus_review.analysis import AnalysisRequest
    from fundus_review.cli_progress import run_with_progress

    data, db, _report = demo_paths(home)
    if ensure_demo_data(data, n):
        print(f"wrote {n} synthetic fundus images to {data}", file=sys.stderr)
    for name in DEMO_MODELS:
        bundle = shipped_models_dir() / name
        print(f"\n== {name}", file=sys.stderr)
        req = AnalysisRequest(
            dataset=data, bundle=bundle, methods=list(DEMO_METHODS), db=db, masks_dir=data / "masks"
        )
        finished = run_with_progress(req, quiet=quiet)
        if finished is None or finished.cancelled:
            raise KeyboardInterrupt
    return data, db


def cmd_demo(args: argparse.Namespace) -> int:
    home = Path(args.home) if args.home else None
    data, db = run_demo(n=args.n, home=home, quiet=args.quiet)
    if args.no_gui:
        print(f"\ndemo dataset: {data}\ndatabase:     {db}")
        return 0
    from fundus_review.cli_gui import launch_gui

    return launch_gui(dataset=data, db=db)


def add_demo_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="generate the synthetic demo set, run both demo models, and open the app",
    )
    p.add_argument("--no-gui", action="store_true", help="only compute; print where results are")
    p.add_argument("--n", type=int, default=60, help="number of demo images (first run only)")
    p.add_argument(
        "--home", help="folder for the demo data and database (default: user data folder)"
    )
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)
