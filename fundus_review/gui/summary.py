"""Dataset summary: per model/method means with 95 % CIs, score histogram, confidence vs score.

The numbers come from the stored scores through the same statistics as the report
(`core.stats.summarize`: Wilson interval for pointing-game hits, seeded percentile bootstrap for
the rest; `core.stats.spearman` for confidence vs score), so the app and the report agree.
Clicking a scatter point opens that image.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from fundus_review.core.stats import DEFAULT_RESAMPLES, Correlation, Summary, spearman, summarize
from fundus_review.views.queries import RunChoice, list_runs
from fundus_review.views.scores import ScorePoint, score_choices, score_points

SEED = 0
ALL_REVIEWERS = "(all reviewers)"
PALETTE = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
]
HEADERS = ["model", "CAM run", "n", "mean", "95% CI", "missing", "ρ(confidence, score)"]


@dataclass
class RunSummary:
    run: RunChoice
    summary: Summary
    confidence: Correlation


def compute_summary(
    db, dataset_id: int, metric: str, structure: str, reviewer: str | None
) -> tuple[list[RunChoice], list[ScorePoint], list[RunSummary]]:
    """Blocking part (pool thread): every run of the dataset, its points and its statistics."""
    runs = list_runs(db, None, dataset_id, kinds=("model", "baseline"))
    pts = score_points(db, dataset_id, [r.id for r in runs], metric, structure, reviewer)
    method = "wilson" if metric == "pointing_hit" else "bootstrap"
    table = []
    for r in runs:
        mine = [p for p in pts if p.run_id == r.id]
        if not mine:
            continue
        values = [p.value for p in mine]
        summ = summarize(values, method=method, n_resamples=DEFAULT_RESAMPLES, seed=SEED)
        corr = spearman(
            [p.confidence for p in mine], values, n_resamples=DEFAULT_RESAMPLES, seed=SEED
        )
        table.append(RunSummary(r, summ, corr))
    return runs, pts, table


def compute_headline(db, dataset_id: int) -> list[str]:  # noqa: ANN001 - a store Database
    """Blocking part (pool thread): the report's first-page sentences for this dataset."""
    from fundus_review.report import ResultSelection, headline_paragraphs

    return headline_paragraphs(db, ResultSelection(dataset=dataset_id))


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}"


class SummaryPanel(QWidget):
    open_image = Signal(object)  # image id
    updated = Signal()  # table and plots show the latest numbers

    def __init__(self, session, tasks, parent=None) -> None:
        super().__init__(parent)
        self.session, self.tasks = session, tasks
        self.metric = QComboBox()
        self.structure = QComboBox()
        self.reviewer = QComboBox()
        for combo in (self.metric, self.structure, self.reviewer):
            combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(12)
        self.refresh_button = QPushButton("Refresh")
        self.note = QLabel("")
        self.note.setWordWrap(True)
        # The report's first page in plain sentences: what the numbers below mean.
        self.headline = QTextBrowser()
        self.headline.setOpenLinks(False)
        self.headline.setPlaceholderText("At a glance: computed after the scores …")
        top = QHBoxLayout()
        for w in (
            QLabel("metric"),
            self.metric,
            QLabel("structure"),
            self.structure,
            QLabel("reviewer"),
            self.reviewer,
            self.refresh_button,
        ):
            top.addWidget(w)
        top.addStretch(1)
        self.table = QTableWidget(0, len(HEADERS))
        self.table.setHorizontalHeaderLabels(HEADERS)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.hist = pg.PlotWidget(title="score distribution")
        self.hist.setLabel("bottom", "score")
        self.hist.setLabel("left", "images")
        # Light text on a dark translucent box: readable on the black plot and over a bar.
        self.hist.addLegend(
            offset=(-10, 10),
            labelTextColor=(235, 235, 235),
            brush=pg.mkBrush(20, 20, 20, 200),
            pen=pg.mkPen(110, 110, 110),
        )
        self.scatter = pg.PlotWidget(title="confidence vs score (click: open)")
        self.scatter.setLabel("bottom", "confidence of the prediction")
        self.scatter.setLabel("left", "score")
        self.scatter.setXRange(0.0, 1.0)
        self.scatter.setYRange(0.0, 1.0)
        plots = QSplitter()
        plots.addWidget(self.hist)
        plots.addWidget(self.scatter)
        plots.setSizes([500, 500])
        split = QSplitter(Qt.Vertical)
        split.addWidget(self.headline)
        split.addWidget(self.table)
        split.addWidget(plots)
        split.setSizes([150, 170, 330])
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.note)
        lay.addWidget(split, 1)
        self.refresh_button.clicked.connect(self.refresh)
        for combo in (self.metric, self.structure, self.reviewer):
            combo.activated.connect(lambda _i: self.refresh(choices=False))
        self.points: list[ScorePoint] = []
        self.scatter_items: list[pg.ScatterPlotItem] = []

    @Slot()
    def refresh(self, choices: bool = True) -> None:
        s = self.session
        if s.db is None or s.dataset_id is None:
            return
        if choices:
            runs = s.dataset_runs(baselines=True)
            metrics, structures, reviewers = (
                score_choices(s.db, [r.id for r in runs]) if runs else ([], [], [])
            )
            _refill(self.metric, metrics, "pointing_hit")
            _refill(self.structure, structures, "optic_disc")
            _refill(self.reviewer, [ALL_REVIEWERS, *reviewers], "reference")
        metric, structure = self.metric.currentText(), self.structure.currentText()
        reviewer = self.reviewer.currentText()
        reviewer = None if reviewer in ("", ALL_REVIEWERS) else reviewer
        if not metric or not structure:
            self.note.setText("no stored scores yet: run an analysis on images with expert regions")
            self._show([], [], [])
            return
        db, ds = s.db, s.dataset_id
        self.note.setText("computing …")
        self.tasks.submit(
            lambda: compute_summary(db, ds, metric, structure, reviewer),
            self._on_result,
            key="summary",
        )
        if choices:  # the headline does not depend on the metric/structure shown below
            self.tasks.submit(lambda: compute_headline(db, ds), self._on_headline, key="headline")

    def _on_headline(self, paragraphs: list[str]) -> None:
        if not paragraphs:
            self.headline.setPlainText("")
            return
        body = "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
        self.headline.setHtml(f"<b>At a glance</b>{body}")

    def _on_result(self, result) -> None:
        runs, pts, table = result
        how = "Wilson interval" if self.metric.currentText() == "pointing_hit" else "bootstrap"
        self.note.setText(
            f"{len(pts)} scores; 95% CI: {how}, {DEFAULT_RESAMPLES} resamples, seed {SEED}"
        )
        self._show(runs, pts, table)

    def _show(self, runs: list[RunChoice], pts: list[ScorePoint], table: list[RunSummary]) -> None:
        self.points = pts
        self.table.setRowCount(len(table))
        for i, row in enumerate(table):
            summ, corr = row.summary, row.confidence
            ci = "—" if summ.ci_low is None else f"{summ.ci_low:.3f} – {summ.ci_high:.3f}"
            rho = "—"
            if corr.rho is not None and row.run.kind == "model":
                rho = f"{corr.rho:+.2f}"
                if corr.ci_low is not None:
                    rho += f" ({corr.ci_low:+.2f} – {corr.ci_high:+.2f})"
            cells = [
                row.run.model_name,
                row.run.title,
                str(summ.n),
                _fmt(summ.mean),
                ci,
                str(summ.n_dropped),
                rho,
            ]
            for c, text in enumerate(cells):
                self.table.setItem(i, c, QTableWidgetItem(text))
        self.hist.clear()
        self.scatter.clear()
        self.scatter_items = []
        values = [p.value for p in pts if p.value is not None]
        # Scores live in [0, 1] (hit, energy, AUC, IoU/Dice): fixed axes read the same every time.
        low = min([0.0, *values])
        high = max([1.0, *values])
        self.scatter.setXRange(0.0, 1.0, padding=0.03)
        self.scatter.setYRange(low, high, padding=0.05)
        models = [r for r in runs if r.kind == "model"]
        several_models = len({r.model_id for r in models}) > 1
        tallest = 0
        # Baselines are in the table; the plots show the models (a baseline has no confidence).
        for k, r in enumerate(models):
            color = PALETTE[k % len(PALETTE)]
            name = r.long_title if several_models else r.title
            vals = np.array([p.value for p in pts if p.run_id == r.id and p.value is not None])
            if vals.size:
                tallest = max(tallest, self._histogram(vals, k, len(models), color, name))
            spots = [
                {
                    "pos": (p.confidence, p.value),
                    "data": p.image_id,
                    "brush": pg.mkBrush(*color, 230),
                    # Misclassified images are triangles: where a wrong answer looked.
                    "symbol": "t" if p.correct is False else "o",
                }
                for p in pts
                if p.run_id == r.id and p.value is not None and p.confidence is not None
            ]
            if spots:
                # Each run drawn smaller than the one before: where runs share a point (a 0/1
                # score, one model's confidence) the markers nest instead of hiding each other.
                size = max(4, 13 - 3 * k)
                item = pg.ScatterPlotItem(
                    spots=spots, size=size, pen=pg.mkPen(None), hoverable=True
                )
                item.sigClicked.connect(self._clicked)
                self.scatter.addItem(item)
                self.scatter_items.append(item)
        if tallest:
            # Headroom above the tallest bar for the legend (one line per run).
            self.hist.setYRange(0, tallest * (1.15 + 0.09 * len(models)), padding=0)
        self.updated.emit()

    def _histogram(self, vals: np.ndarray, k: int, n_runs: int, color, name: str) -> int:
        """Draw one run's distribution; returns its tallest count."""
        if self.metric.currentText() == "pointing_hit":
            # Hits are 0/1: side-by-side bars per run, not 20 bins of which two are used.
            width = 0.8 / max(n_runs, 1)
            x = np.array([0.0, 1.0]) - 0.4 + width * (k + 0.5)
            counts = [int(np.sum(vals < 0.5)), int(np.sum(vals >= 0.5))]
            bars = pg.BarGraphItem(x=x, height=counts, width=width * 0.9, brush=pg.mkBrush(*color))
            self.hist.addItem(bars)
            self.hist.plot([], [], pen=pg.mkPen(color, width=6), name=name)  # legend entry
            self.hist.getAxis("bottom").setTicks([[(0, "miss"), (1, "hit")]])
            return max(counts)
        self.hist.getAxis("bottom").setTicks(None)
        lo, hi = float(min(0.0, vals.min())), float(max(1.0, vals.max()))
        y, x = np.histogram(vals, bins=20, range=(lo, hi))
        self.hist.plot(x, y, stepMode="center", pen=pg.mkPen(color, width=2), name=name)
        return int(y.max())

    @Slot(object, object, object)
    def _clicked(self, item, points, ev=None) -> None:
        if not len(points):
            return
        best = points[0]
        if ev is not None and len(points) > 1:
            # Overlapping symbols: open the one whose centre is nearest to the click.
            click = ev.scenePos()

            def dist(pt) -> float:
                d = item.mapToScene(pt.pos()) - click
                return d.x() ** 2 + d.y() ** 2

            best = min(points, key=dist)
        self.open_image.emit(int(best.data()))


def _refill(combo: QComboBox, values: list[str], preferred: str) -> None:
    current = combo.currentText() or preferred
    combo.blockSignals(True)
    combo.clear()
    combo.addItems(values)
    idx = combo.findText(current)
    if idx < 0:
        idx = combo.findText(preferred)
    combo.setCurrentIndex(max(idx, 0))
    combo.blockSignals(False)
