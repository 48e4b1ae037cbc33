"""`fundus-review trust`: the checks that say whether the agreement scores mean anything.

baselines      the baseline maps of every image, scored like a CAM run (cheap);
randomization  the model-parameter randomisation test on a seeded sample (costly: CAMs of
               re-initialised copies of the model), then their agreement scores;
faithfulness   ROAD on the same sample (costly: a sparse solve per image and fraction).

Everything is stored as it is computed: Ctrl-C keeps what is finished and the same command
continues; the next `fundus-review report` shows the results without recomputing them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fundus_review.cli.args import add_db_option, add_trust_code, csv_list, db_of, trust_bundle_code
from fundus_review.core.sampling import DEFAULT_SAMPLE

CHECKS = ("baselines", "randomization", "faithfulness")


def _bar(quiet: bool, what: str) -> tuple[Callable[[int, int], None], Callable[[], None]]:
    from tqdm import tqdm

    state: dict = {"bar": None}

    def progress(done: int, total: int) -> None:
        if state["bar"] is None:
            state["bar"] = tqdm(total=total, desc=what, unit="img", disable=quiet, file=sys.stderr)
        state["bar"].update(done - state["bar"].n)

    def close() -> None:
        if state["bar"] is not None:
            state["bar"].close()

    return progress, close


def _model_id(db, bundle: Path) -> int:  # noqa: ANN001 - a store Database
    """The stored model record of the bundle (found by weights and card, as analyze stores it);
    FundusReviewError when it has no stored heatmaps."""
    from fundus_review.errors import FundusReviewError
    from fundus_review.inference.bundle import load_bundle
    from fundus_review.store import repo

    b = load_bundle(bundle)
    with db.session() as s:
        rec = repo.get_or_create_model(
            s, b.card.name, b.card.architecture, b.card.to_dict(), b.weights_sha256, b.path
        )
        has_runs = bool(repo.list_cam_runs(s, rec))
        model_id = rec.id
    if not has_runs:
        raise FundusReviewError(
            f"{bundle}: this model has no stored heatmaps in the database; "
            "run `fundus-review analyze --model ...` first"
        )
    return model_id


@dataclass(frozen=True)
class TrustOptions:
    checks: tuple[str, ...] = CHECKS
    methods: tuple[str, ...] | None = None
    sample: int = DEFAULT_SAMPLE
    seed: int = 0
    device: str | None = None
    force: bool = False
    quiet: bool = False


def run_checks(db, bundles: list[Path], opts: TrustOptions) -> None:  # noqa: ANN001 - a Database
    """The chosen checks for each bundle, then scoring of what they added; prints verdicts.
    Shared by `fundus-review trust` and the demo."""
    from fundus_review.app.baselines import compute_baselines
    from fundus_review.app.scoring import default_fov_cache, score_database
    from fundus_review.app.selection import ResultSelection
    from fundus_review.errors import FundusReviewError

    unknown = [c for c in opts.checks if c not in CHECKS]
    if unknown:
        raise FundusReviewError(f"unknown check(s) {unknown}; choose from {', '.join(CHECKS)}")
    cache = default_fov_cache()
    # Absolute: the model record keeps the bundle's path, and the app finds the bundle by it.
    bundles = [Path(b).expanduser().resolve() for b in bundles]
    if "baselines" in opts.checks:
        progress, close = _bar(opts.quiet, "baselines")
        try:
            done = compute_baselines(db, fov_cache=cache, progress=progress)
        finally:
            close()
        _problems(done.problems)
        print(f"baselines: {done.computed} maps computed, {done.reused} reused", file=sys.stderr)
    for bundle in bundles:
        model_id = _model_id(db, bundle)
        if "randomization" in opts.checks:
            _randomization(db, opts, model_id, bundle.name)
        if "faithfulness" in opts.checks:
            _faithfulness(db, opts, bundle, model_id)
    # Score whatever the checks added (baselines, randomised maps) with the scoring code.
    score_database(db, ResultSelection(randomized=True), fov_cache=cache)


def cmd_trust(args: argparse.Namespace) -> int:
    from fundus_review.store.db import open_database

    checks = tuple(csv_list(args.checks) or CHECKS)
    if args.model is not None:
        trust_bundle_code(args, args.model)
    elif set(checks) & {"randomization", "faithfulness"}:
        print(
            "error: --model is needed for the randomization and faithfulness checks",
            file=sys.stderr,
        )
        return 2
    opts = TrustOptions(
        checks=checks,
        methods=tuple(csv_list(args.method)) or None,
        sample=args.sample,
        seed=args.seed,
        device=args.device,
        force=args.force,
        quiet=args.quiet,
    )
    db = open_database(db_of(args))
    try:
        run_checks(db, [args.model] if args.model is not None else [], opts)
    except KeyboardInterrupt:
        print(
            "\nstopped by Ctrl-C: what was finished is stored; run the same command to continue",
            file=sys.stderr,
        )
        return 130
    finally:
        db.close()
    print(f"stored in {db_of(args)}; `fundus-review report` shows them")
    return 0


def _with_bar(opts: TrustOptions, what: str, check: Callable, db, model) -> None:  # noqa: ANN001
    """Run one costly check (run_randomization / run_faithfulness: same keywords) with a
    progress bar and print its per-image problems; the results are in the database."""
    progress, close = _bar(opts.quiet, what)
    try:
        summary = check(
            db,
            model,
            opts.methods,
            sample=opts.sample,
            seed=opts.seed,
            device=opts.device or "auto",
            progress=progress,
            force=opts.force,
        )
    finally:
        close()
    _problems(summary.problems)


def _problems(problems: list) -> None:
    for where, why in problems:
        print(f"  skipped {where}: {why}", file=sys.stderr)


def _randomization(db, opts: TrustOptions, model_id: int, name: str) -> None:  # noqa: ANN001
    from fundus_review.app.randomization import run_randomization
    from fundus_review.app.randomization_similarity import (
        randomization_similarity,
        randomization_verdicts,
    )

    _with_bar(opts, "randomisation", run_randomization, db, model_id)
    rows = randomization_similarity(db, model_id, opts.methods, sample=opts.sample, seed=opts.seed)
    for v in randomization_verdicts(rows):
        print(f"{name}: randomisation: {v.text}")


def _faithfulness(db, opts: TrustOptions, bundle: Path, model_id: int) -> None:  # noqa: ANN001
    from fundus_review.app.faithfulness import faithfulness_table, run_faithfulness
    from fundus_review.report.trust_sections import faithfulness_verdict

    _with_bar(opts, "faithfulness", run_faithfulness, db, bundle)
    for row in faithfulness_table(db, models=[model_id], methods=opts.methods, seed=opts.seed):
        print(f"{row.model_name}: faithfulness {faithfulness_verdict(row)}: {row.sentence()}")


def add_trust_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "trust",
        help="baselines, randomisation test and faithfulness (ROAD) of an analysed model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", type=Path, help="model bundle folder (analysed before)")
    p.add_argument(
        "--method", help="CAM method(s) of the stored runs, comma-separated (default all)"
    )
    p.add_argument(
        "--checks",
        default=",".join(CHECKS),
        help=f"comma-separated subset of {', '.join(CHECKS)} (default all)",
    )
    p.add_argument(
        "--sample",
        type=int,
        default=DEFAULT_SAMPLE,
        help=f"images in the seeded sample of the costly checks (default {DEFAULT_SAMPLE})",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the sample, noise and re-initialisation"
    )
    p.add_argument("--device", default=None, help="cuda, mps or cpu (default: best available)")
    p.add_argument("--force", action="store_true", help="recompute what is stored")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_db_option(p)
    add_trust_code(p)
    p.set_defaults(func=cmd_trust)
