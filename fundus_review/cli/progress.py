"""Terminal progress for `analyze`: a tqdm bar fed by the analysis events."""

from __future__ import annotations

import sys

from tqdm import tqdm

from fundus_review.app.analyze import (
    AnalysisProgress,
    AnalysisRequest,
    Finished,
    ImageFailed,
    Started,
    run_analysis,
)


def run_with_progress(req: AnalysisRequest, quiet: bool = False) -> Finished | None:
    """Run an analysis in the foreground. Ctrl-C stops after the current batch is discarded;
    every batch finished before it is already committed to the database."""
    events = run_analysis(req)
    bar: tqdm | None = None
    finished: Finished | None = None
    done = 0
    try:
        for ev in events:
            if isinstance(ev, Started):
                for path, reason in ev.problems:
                    print(f"skipped {path}: {reason}", file=sys.stderr)
                print(
                    f"{ev.total} images to analyze ({ev.reused} already stored) on {ev.device}; "
                    f"methods {', '.join(ev.methods)}; layers {', '.join(ev.layers)}"
                    + (f"; imported {ev.masks_imported} expert masks" if ev.masks_imported else ""),
                    file=sys.stderr,
                )
                bar = tqdm(
                    total=ev.total, unit="img", disable=quiet, file=sys.stderr, dynamic_ncols=True
                )
            elif isinstance(ev, ImageFailed):
                (bar.write if bar else print)(f"skipped {ev.path}: {ev.reason}")
            elif isinstance(ev, AnalysisProgress) and bar is not None:
                bar.update(ev.done - done)
                done = ev.done
            elif isinstance(ev, Finished):
                finished = ev
    except KeyboardInterrupt:
        events.close()  # releases hooks and the database before we report
        if bar is not None:
            bar.close()
        print(
            f"\nstopped by Ctrl-C: {done} images finished and stored in {req.db}; "
            "run the same command again to continue",
            file=sys.stderr,
        )
        return None
    finally:
        if bar is not None:
            bar.close()
    if finished is not None:
        print(
            f"done: {finished.computed} analyzed, {finished.reused} reused, "
            + (f"{finished.elsewhere} stored by another run, " if finished.elsewhere else "")
            + f"{len(finished.failed)} unreadable, in {finished.seconds:.1f} s -> {finished.db}"
        )
    return finished
