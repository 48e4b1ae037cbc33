"""What a report is asked for: where it goes, which results it covers, and how it is computed.

A ``ReportRequest`` is plain data (no database, no callbacks), so the CLI and the GUI build the
same object and ``write_report`` validates it once, before any work starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fundus_review.app.scoring import ScoringParams
from fundus_review.app.selection import ResultSelection
from fundus_review.errors import FundusReviewError

MIN_RESAMPLES = 1000


@dataclass(frozen=True)
class ReportRequest:
    """``out_dir``: the report folder (written as one unit, see ``report.folder``).
    ``selection``: the stored results covered (default everything; scoring uses the same).
    ``thresholds`` split the confidence bands; ``gallery_cap`` bounds each gallery (tables are
    never sampled); ``gallery_by`` groups the galleries within each structure; ``gallery_metric``
    orders them, worst first. ``seed`` drives every bootstrap and sample."""

    out_dir: Path
    selection: ResultSelection = field(default_factory=ResultSelection)
    seed: int = 0
    n_resamples: int = 1000
    gallery_cap: int = 24
    gallery_metric: str = "energy_in_mask"
    gallery_by: Sequence[str] = ("outcome", "class")
    thresholds: Sequence[float] = (0.5, 0.8)
    params: ScoringParams = field(default_factory=ScoringParams)

    def __post_init__(self) -> None:
        object.__setattr__(self, "out_dir", Path(self.out_dir).expanduser())
        object.__setattr__(self, "gallery_by", tuple(self.gallery_by))
        object.__setattr__(self, "thresholds", tuple(self.thresholds))

    def check(self) -> None:
        """FundusReviewError for a request that cannot give a sound report."""
        if self.n_resamples < MIN_RESAMPLES:
            raise FundusReviewError(
                f"n_resamples must be at least {MIN_RESAMPLES} for stable 95 % intervals, "
                f"got {self.n_resamples}"
            )
        if self.gallery_cap < 0:
            raise FundusReviewError(f"gallery cap must be >= 0, got {self.gallery_cap}")
        metrics = self.params.metric_names()
        if self.gallery_metric not in metrics:
            raise FundusReviewError(
                f"unknown gallery metric {self.gallery_metric!r}; choose one of {', '.join(metrics)}"
            )
        # Imported here: the gallery module pulls in the plotting stack, and the CLI builds
        # requests before it knows that a report will be written.
        from fundus_review.report.gallery import GALLERY_GROUPINGS

        by = self.gallery_by
        if any(g not in GALLERY_GROUPINGS for g in by) or len(set(by)) != len(by):
            raise FundusReviewError(
                f"gallery grouping {', '.join(by) or '(none)'} is not valid; use any of "
                f"{', '.join(GALLERY_GROUPINGS)}, each at most once"
            )

    def settings(self, generated: str) -> dict[str, Any]:
        """The settings the report's first section states (``generated``: when it was written)."""
        return {
            "seed": self.seed,
            "n_resamples": self.n_resamples,
            "gallery_cap": self.gallery_cap,
            "gallery_metric": self.gallery_metric,
            "gallery_by": ", ".join(self.gallery_by) or "structure only",
            "generated": generated,
        }
