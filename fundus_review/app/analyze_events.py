"""The events of an analysis run (``app.analyze.run_analysis`` yields them; the CLI draws a
progress bar from them, the GUI worker forwards them as Qt signals), and the clock that counts
them."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Started:
    total: int  # images to compute
    reused: int  # images whose results were already stored
    device: str
    methods: list[str]
    layers: list[str]
    problems: list[tuple[str, str]]  # found while registering the dataset
    masks_imported: int = 0
    engine: str = "local"


@dataclass
class AnalysisProgress:
    """After each batch: images done (computed, failed, or stored by another run) of those
    planned."""

    done: int
    total: int
    failed: int
    images_per_s: float
    eta_s: float | None
    elsewhere: int = 0  # stored by other runs on the same database meanwhile


@dataclass
class ImageFailed:
    path: str
    reason: str


@dataclass
class Finished:
    computed: int
    reused: int
    failed: list[tuple[str, str]] = field(default_factory=list)
    cancelled: bool = False
    seconds: float = 0.0
    db: str = ""
    dataset_id: int = 0
    model_id: int = 0
    run_ids: dict[str, int] = field(default_factory=dict)
    elsewhere: int = 0  # planned images another run on the same database stored meanwhile


Event = Started | AnalysisProgress | ImageFailed | Finished


@dataclass
class Clock:
    """Counts and rate of the compute loop, for the AnalysisProgress events."""

    total: int
    computed: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    cancelled: bool = False
    elsewhere: int = 0
    start: float = field(default_factory=time.perf_counter)

    def event(self) -> AnalysisProgress:
        elapsed = time.perf_counter() - self.start
        done = self.computed + len(self.failed) + self.elsewhere
        rate = self.computed / elapsed if elapsed > 0 else 0.0
        eta = (self.total - done) / rate if rate > 0 else None
        return AnalysisProgress(done, self.total, len(self.failed), rate, eta, self.elsewhere)
