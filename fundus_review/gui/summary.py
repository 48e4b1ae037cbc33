"""Dataset summary: per-run means with 95 % CIs, score histogram, confidence-vs-score scatter.

The numbers come from the stored scores through the same statistics as the report
(`core.stats.summarize`, seeded bootstrap), so the app and the report never disagree.
Clicking a scatter point opens that image.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal, Slot
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
    QVBoxLayout,
    QWidget,
)

from fundus_review.core.stats import summarize
from fundus_review.viewdata import list_runs, score_choices, score_points

N_RESAMPLES = 1000
PALETTE = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
]


def compute_summary(db, dataset_id: int, model_id: int | None, metric: str, structure: str):
    """Blocking part (pool thread): runs, points and per-run summaries."""
    runs = list_runs(db, model_id)
    pts = score_points(db, dataset_id, [r.id for r in runs], metric, structure)
    method = "wilson" if metric == "pointing_hit" else "bootstrap"
    table = []
    for r in runs:
        values = [p.value for p in pts if p.run_id == r.id]
        if values:
            table.append((r, summarize(values, method=method, n_resamples=N_RESAMPLES, seed=0)))
    return runs, pts, table


class SummaryPanel(QWidget):
    open_image = Signal(object)  # image id

    def __init__(self, session, tasks, parent=None) -> None:
        super().__init__(parent)
        self.session, self.tasks = session, tasks
        self.metric = QComboBox()
        self.structure = QComboBox()
        self.refresh_button = QPushButton("Refresh")
        self.note = QLabel("")
        top = QHBoxLayout()
        for w in (
            QLabel("metric"),
            self.metric,
            QLabel("structure"),
            self.structure,
            self.refresh_button,
        ):
            top.addWidget(w)
        top.addWidget(self.note, 1)
        self.table = QTableWidget(0, 5)
        self.table.setHorizontalHeaderLabels(["CAM run", "n", "mean", "95% CI", "dropped"])
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.hist = pg.PlotWidget(title="score distribution")
        self.hist.addLegend(offset=(-10, 10))
        self.scatter = pg.PlotWidget(title="confidence vs score (click a point to open the image)")
        self.scatter.setLabel("bottom", "confidence")
        self.scatter.setLabel("left", "score")
        plots = QSplitter()
        plots.addWidget(self.hist)
        plots.addWidget(self.scatter)
        split = QSplitter()
        split.setOrientation(pg.QtCore.Qt.Vertical)
        split.addWidget(self.table)
        split.addWidget(plots)
        split.setSizes([150, 400])
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(split, 1)
        self.refresh_button.clicked.connect(self.refresh)
        self.metric.activated.connect(lambda _i: self.refresh(choices=False))
        self.structure.activated.connect(lambda _i: self.refresh(choices=False))
        self.points = []

    @Slot()
    def refresh(self, choices: bool = True) -> None:
        s = self.session
        if s.db is None or s.dataset_id is None:
            return
        if choices:
            metrics, structures = set(), set()
            for r in s.runs():
                m, st = score_choices(s.db, r.id)
                metrics.update(m)
                structures.update(st)
            _refill(self.metric, sorted(metrics), "pointing_hit")
            _refill(self.structure, sorted(structures), "optic_disc")
        metric, structure = self.metric.currentText(), self.structure.currentText()
        if not metric or not structure:
            self.note.setText("no stored scores for this model yet")
            self._show([], [], [])
            return
        db, ds, model = s.db, s.dataset_id, s.model_id
        self.note.setText("computing …")
        self.tasks.submit(
            lambda: compute_summary(db, ds, model, metric, structure),
            self._on_result,
            key="summary",
        )

    def _on_result(self, result) -> None:
        runs, pts, table = result
        self.note.setText(f"{len(pts)} scores, bootstrap {N_RESAMPLES}× (seed 0)")
        self._show(runs, pts, table)

    def _show(self, runs, pts, table) -> None:
        self.points = pts
        self.table.setRowCount(len(table))
        for i, (r, summ) in enumerate(table):
            ci = "—" if summ.ci_low is None else f"{summ.ci_low:.3f} – {summ.ci_high:.3f}"
            mean = "—" if summ.mean is None else f"{summ.mean:.3f}"
            for c, text in enumerate([r.title, str(summ.n), mean, ci, str(summ.n_dropped)]):
                self.table.setItem(i, c, QTableWidgetItem(text))
        self.hist.clear()
        self.scatter.clear()
        for k, r in enumerate(runs):
            color = PALETTE[k % len(PALETTE)]
            vals = np.array([p.value for p in pts if p.run_id == r.id and p.value is not None])
            if vals.size:
                y, x = np.histogram(
                    vals, bins=20, range=(float(min(0.0, vals.min())), float(max(1.0, vals.max())))
                )
                self.hist.plot(x, y, stepMode="center", pen=pg.mkPen(color, width=2), name=r.title)
            spots = [
                {
                    "pos": (p.confidence, p.value),
                    "data": p.image_id,
                    "brush": pg.mkBrush(*color, 170),
                    "symbol": "o" if p.correct is not False else "t",
                }
                for p in pts
                if p.run_id == r.id and p.value is not None and p.confidence is not None
            ]
            if spots:
                item = pg.ScatterPlotItem(spots=spots, size=9, pen=pg.mkPen(None), hoverable=True)
                item.sigClicked.connect(self._clicked)
                self.scatter.addItem(item)

    @Slot(object, object, object)
    def _clicked(self, _item, points, _ev=None) -> None:
        if len(points):
            self.open_image.emit(int(points[0].data()))


def _refill(combo: QComboBox, values: list[str], preferred: str) -> None:
    current = combo.currentText() or preferred
    combo.clear()
    combo.addItems(values)
    idx = combo.findText(current)
    combo.setCurrentIndex(idx if idx >= 0 else 0)
