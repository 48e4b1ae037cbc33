"""`fundus-review demo`: the whole point of the tool on a case whose right answer is known.

Generates a synthetic fundus set in which a corner marker agrees with the label, imports its exact
masks, runs the honest demo model and the shortcut model with GradCAM and HiResCAM, scores the
heatmaps against the masks, and opens the app; with --no-gui it writes the agreement report and
prints where the data, the database and the report are.

Everything lives in <user data folder>/demo (or --home): running the demo again reuses the stored
results (only missing work is computed), so the second start is quick.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

from fundus_review.paths import data_home, shipped_models_dir

DEMO_MODELS = ("demo-cdr", "demo-cdr-shortcut")
DEMO_METHODS = ["gradcam", "hirescam"]
DEMO_SEED = 2026
DEMO_SIZE = 512
# Images of the randomisation test and ROAD in the demo: enough for a verdict, minutes on a CPU.
DEMO_TRUST_SAMPLE = 8


@dataclass
class DemoResult:
    data: Path
    db: Path
    report_dir: Path
    generated: bool  # the synthetic set was written by this run
    report_files: dict[str, Path] = field(default_factory=dict)  # empty when no report written


def demo_paths(home: Path | None = None) -> tuple[Path, Path, Path]:
    """(dataset folder, database file, report folder) of the demo."""
    base = (home or data_home()) / "demo"
    return base / "data", base / "demo.db", base / "report"


def ensure_demo_data(folder: Path, n: int, seed: int = DEMO_SEED) -> bool:
    """Write the demo set unless a complete one is there; returns True when it was written."""
    from fundus_review.data.synthetic import demo_dataset_info, write_demo_dataset

    if demo_dataset_info(folder) is not None or (folder / "labels.csv").is_file():
        return False
    # The marker agrees with the label on every image: the shortcut model is right for the wrong
    # reason here, which is exactly what the heatmaps must reveal.
    write_demo_dataset(
        folder,
        n=n,
        seed=seed,
        size=(DEMO_SIZE, DEMO_SIZE),
        confounder=True,
        confounder_strength=1.0,
    )
    return True


def demo_bundles() -> list[Path]:
    """The shipped demo bundles; a clear error when the checkout lacks them."""
    from fundus_review.errors import BundleError

    bundles = [shipped_models_dir() / name for name in DEMO_MODELS]
    missing = [str(b) for b in bundles if not (b / "model.toml").is_file()]
    if missing:
        raise BundleError(
            f"demo model bundle(s) not found: {', '.join(missing)} (they ship in the repository's "
            "models/ folder; docs/TRAINING.md shows how to re-train them)"
        )
    return bundles


def run_demo(
    n: int = 60,
    home: Path | None = None,
    quiet: bool = False,
    report: bool = True,
    trust_sample: int = DEMO_TRUST_SAMPLE,
) -> DemoResult:
    """Generate (if absent), analyze with both demo models, score, run the trust checks on
    ``trust_sample`` images (0: only the baselines); optionally write the report."""
    from fundus_review.app.analyze import AnalysisRequest
    from fundus_review.cli.progress import run_with_progress
    from fundus_review.errors import DatasetError

    if n < 2:
        raise DatasetError(f"demo: --n must be at least 2 (one image per class), got {n}")
    bundles = demo_bundles()
    data, db, report_dir = demo_paths(home)
    generated = ensure_demo_data(data, n)
    if generated:
        print(f"wrote {n} synthetic fundus images with exact masks to {data}", file=sys.stderr)
    for bundle in bundles:
        print(f"\n== {bundle.name}", file=sys.stderr)
        req = AnalysisRequest(
            dataset=data, bundle=bundle, methods=list(DEMO_METHODS), db=db, masks_dir=data / "masks"
        )
        finished = run_with_progress(req, quiet=quiet)
        if finished is None or finished.cancelled:
            raise KeyboardInterrupt
    result = DemoResult(data=data, db=db, report_dir=report_dir, generated=generated)
    _score(db)
    _trust(db, bundles, trust_sample, quiet)
    if report:
        result.report_files = _write_report(db, report_dir, quiet)
    return result


def _score(db: Path) -> None:
    """Score the heatmaps against the imported masks (only what is not scored yet)."""
    from fundus_review.app.scoring import score_database
    from fundus_review.store.db import open_database

    database = open_database(db)
    try:
        summary = score_database(database)
    finally:
        database.close()
    for path, reason in summary.problems:
        print(f"  not scored: {path}: {reason}", file=sys.stderr)


def _trust(db: Path, bundles: list[Path], sample: int, quiet: bool) -> None:
    """The same checks as `fundus-review trust` (stored, so a second demo run reuses them)."""
    from fundus_review.cli.trust import CHECKS, TrustOptions, run_checks
    from fundus_review.store.db import open_database

    print("\n== trust checks (baselines, randomisation test, faithfulness)", file=sys.stderr)
    checks = CHECKS if sample > 0 else ("baselines",)
    database = open_database(db)
    try:
        run_checks(database, bundles, TrustOptions(checks=checks, sample=sample, quiet=quiet))
    finally:
        database.close()


def pointing_summary(db: Path, structure: str = "optic_disc") -> list[tuple[str, str, float, int]]:
    """(model, method, share of heatmaps whose maximum hits ``structure``, n) per stored run."""
    from fundus_review.app.baselines import BASELINE_MODEL
    from fundus_review.core.baselines import MEAN_MAP
    from fundus_review.store import repo_views
    from fundus_review.store.db import open_database

    database = open_database(db)
    try:
        with database.session(read_only=True) as s:
            rates = repo_views.run_rates(s, structure, "pointing_hit")
    finally:
        database.close()
    # The constant map "hits" everything, and mean maps of several runs would be lumped together.
    return [r for r in rates if not (r[0] == BASELINE_MODEL and r[1] in ("uniform", MEAN_MAP))]


def _write_report(db: Path, out: Path, quiet: bool) -> dict[str, Path]:
    """The agreement report; a failure here is reported, never loses the stored results."""
    from fundus_review.report import write_report

    print("\n== agreement report", file=sys.stderr)
    say = (lambda _m: None) if quiet else (lambda m: print(f"  {m} ...", file=sys.stderr))
    try:
        result = write_report(db, out, progress=say)
    except Exception as exc:  # noqa: BLE001 - the analyses are stored; say why the report is not
        print(
            f"error: the report could not be written ({type(exc).__name__}: {exc}); the results "
            f"are stored in {db} (`fundus-review report --db {db} --out {out}` retries)",
            file=sys.stderr,
        )
        return {}
    for path, reason in result.problems:
        print(f"  problem: {path}: {reason}", file=sys.stderr)
    return dict(result.paths)


def cmd_demo(args: argparse.Namespace) -> int:
    home = Path(args.home).expanduser() if args.home else None
    result = run_demo(
        n=args.n, home=home, quiet=args.quiet, report=args.no_gui, trust_sample=args.trust_sample
    )
    if not args.no_gui:
        from fundus_review.cli.gui import launch_gui

        return launch_gui(dataset=result.data, db=result.db)
    print("\nHeatmap maximum inside the optic disc (pointing game, default tolerance):")
    for name, method, rate, n in pointing_summary(result.db):
        print(f"  {name:<20} {method:<10} {rate:6.1%}  of {n} images")
    print(
        "The honest model (demo-cdr) looks at the optic disc; the shortcut model "
        "(demo-cdr-shortcut) at the bright corner marker outside the field of view."
    )
    print(f"\ndemo dataset: {result.data}\ndatabase:     {result.db}")
    for key in ("html", "pdf", "csv", "json"):
        if key in result.report_files:
            print(f"report {key + ':':<6} {result.report_files[key]}")
    return 0 if result.report_files else 1


def add_demo_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="generate the synthetic demo set, run both demo models, and open the app",
        description="Generate a synthetic fundus set with exact masks (where a corner marker "
        "agrees with the label), run an honest and a shortcut model with GradCAM and HiResCAM, "
        "score the heatmaps against the masks, and open the app (--no-gui: write the report).",
    )
    p.add_argument(
        "--no-gui", action="store_true", help="write the report and print where everything is"
    )
    p.add_argument("--n", type=int, default=60, help="number of demo images (first run only)")
    p.add_argument(
        "--home", help="folder for the demo data and database (default: the user data folder)"
    )
    p.add_argument(
        "--trust-sample",
        type=int,
        default=DEMO_TRUST_SAMPLE,
        help="images for the randomisation test and ROAD (default %(default)s; 0: skip them)",
    )
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)
