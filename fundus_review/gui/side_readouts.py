"""The side panel's read-outs: prediction with every class probability, localization scores.

Widgets only; they display what the main window hands them.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGroupBox,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from fundus_review.views.overlays import Overlays
from fundus_review.views.queries import ImageDetail

SCORE_COLUMNS = ("pointing_hit", "energy_in_mask", "pixel_auc", "iou_otsu", "iou_area_match")
SCORE_HEADERS = {
    "pointing_hit": "hit",
    "energy_in_mask": "energy",
    "pixel_auc": "AUC",
    "iou_otsu": "IoU\notsu",
    "iou_area_match": "IoU\narea",
}


def _table(rows: int, cols: int) -> QTableWidget:
    t = QTableWidget(rows, cols)
    t.setEditTriggers(QAbstractItemView.NoEditTriggers)
    t.setSelectionMode(QAbstractItemView.NoSelection)
    return t


class PredictionBox(QGroupBox):
    def __init__(self, parent=None) -> None:
        super().__init__("Prediction", parent)
        v = QVBoxLayout(self)
        self.label = QLabel("—")
        self.label.setWordWrap(True)
        self.label.setTextFormat(Qt.RichText)
        self.probs = _table(0, 2)
        self.probs.setHorizontalHeaderLabels(["class", "probability"])
        self.probs.horizontalHeader().setSectionResizeMode(0, QHeaderView.Stretch)
        self.probs.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeToContents)
        self.probs.verticalHeader().hide()
        self.probs.setFixedHeight(60)
        v.addWidget(self.label)
        v.addWidget(self.probs)

    def show_prediction(self, detail: ImageDetail | None, target_index: int | None = None) -> None:
        if detail is None:
            self.label.setText("—")
            self.probs.setRowCount(0)
            return
        head = (
            f"<b>{detail.rel_path}</b><br>{detail.width}×{detail.height}, "
            f"true: <b>{detail.label or '—'}</b>"
        )
        if detail.probs is None:
            self.label.setText(head + "<br>no prediction for this model yet")
            self.probs.setRowCount(0)
            self._fit_rows()
            return
        pred = detail.prediction
        ok = ""
        if detail.label is not None:
            ok = (
                " ✔" if pred == detail.label else " <span style='color:#d33'>✘ misclassified</span>"
            )
        conf = detail.probs[detail.predicted_index]
        text = f"{head}<br>predicted: <b>{pred}</b> {conf:.1%}{ok}"
        if target_index is not None and 0 <= target_index < len(detail.classes):
            text += f"<br>heatmap explains: <b>{detail.classes[target_index]}</b>"
        self.label.setText(text)
        order = sorted(range(len(detail.probs)), key=lambda i: -detail.probs[i])
        self.probs.setRowCount(len(order))
        for r, i in enumerate(order):
            name = detail.classes[i] if i < len(detail.classes) else str(i)
            self.probs.setItem(r, 0, QTableWidgetItem(name))
            self.probs.setItem(r, 1, QTableWidgetItem(f"{detail.probs[i]:.4f}"))
        self._fit_rows()

    def _fit_rows(self) -> None:
        # As tall as its rows (up to 6): two classes should not leave an empty box.
        rows = min(self.probs.rowCount(), 6)
        height = self.probs.horizontalHeader().height() + 4
        height += sum(self.probs.rowHeight(r) for r in range(rows)) if rows else 24
        self.probs.setFixedHeight(height)


class ScoresBox(QGroupBox):
    """Structure x metric table of the shown heatmap, plus the pointing-game read-out."""

    def __init__(self, parent=None) -> None:
        super().__init__("Localization scores", parent)
        v = QVBoxLayout(self)
        self.table = _table(0, 0)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.table.setFixedHeight(60)
        self.note = QLabel("")
        self.note.setWordWrap(True)
        v.addWidget(self.table)
        v.addWidget(self.note)

    def _fit_rows(self) -> None:
        # As tall as its rows: a few structures should not leave an empty box.
        rows = self.table.rowCount()
        height = self.table.horizontalHeader().sizeHint().height() + 4
        height += sum(self.table.rowHeight(r) for r in range(rows)) if rows else 24
        self.table.setFixedHeight(min(height, 260))

    def show_scores(self, ov: Overlays | None) -> None:
        """Stored scores, or ones computed now where none are stored (said so)."""
        self.table.clear()
        if ov is None or ov.heatmap is None:
            self.table.setRowCount(0)
            self.table.setColumnCount(0)
            self._fit_rows()
            self.note.setText(
                "no heatmap shown" if ov is None or not ov.problems else "\n".join(ov.problems)
            )
            return
        table: dict[str, dict[str, float | None]] = {}
        for structure, _reviewer, metric, value in ov.scores:
            table.setdefault(structure, {})[metric] = value
        source = "stored"
        if not table and ov.live_scores:
            table, source = ov.live_scores, "computed now (not stored yet)"
        structures = sorted(table)
        metrics = [m for m in SCORE_COLUMNS if any(m in table[s] for s in structures)]
        self.table.setRowCount(len(structures))
        self.table.setColumnCount(len(metrics))
        self.table.setHorizontalHeaderLabels([SCORE_HEADERS.get(m, m) for m in metrics])
        self.table.setVerticalHeaderLabels([s.replace("_", " ") for s in structures])
        for r, s in enumerate(structures):
            every = "\n".join(
                f"{m}: {'—' if v is None else f'{v:.4f}'}" for m, v in sorted(table[s].items())
            )
            for c, m in enumerate(metrics):
                v = table[s].get(m)
                if v is None:
                    text = "—"
                elif m == "pointing_hit":
                    text = "hit" if v >= 0.5 else "miss"
                else:
                    text = f"{v:.3f}"
                item = QTableWidgetItem(text)
                item.setToolTip(every)  # every metric of this structure on hover
                self.table.setItem(r, c, item)
        self._fit_rows()
        hits = [
            f"max point ({p.point[0]:.0f}, {p.point[1]:.0f}) → {s.replace('_', ' ')}: "
            f"{'hit' if p.hit else 'miss'} ({p.distance_px:.0f} px, tol {p.tolerance_px:.0f})"
            for s, p in sorted(ov.pointing.items())
            if p is not None
        ]
        note = f"scores {source}." if structures else "no expert regions on this image."
        self.note.setText("\n".join([note, *hits, *ov.problems]))


class CdrBox(QGroupBox):
    """Vertical and area cup-to-disc ratio of the image shown, per reviewer (``core.cdr``)."""

    def __init__(self, parent=None) -> None:
        super().__init__("Cup-to-disc ratio", parent)
        v = QVBoxLayout(self)
        self.table = _table(0, 2)
        self.table.setHorizontalHeaderLabels(["vertical", "area"])
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.table.setToolTip(
            "vertical: cup height / disc height (rows spanned); area: cup pixels / disc pixels;"
            " each reviewer's disc and cup regions (their union). Updated after every edit."
        )
        self.note = QLabel("")
        self.note.setWordWrap(True)
        v.addWidget(self.table)
        v.addWidget(self.note)
        self.show_cdr(None)

    def show_cdr(self, ov: Overlays | None) -> None:
        rows = [] if ov is None else list(ov.cdr)
        self.table.setRowCount(len(rows))
        self.table.setVerticalHeaderLabels([r.reviewer for r in rows])
        for i, r in enumerate(rows):
            for c, value in enumerate((r.vertical, r.area)):
                self.table.setItem(i, c, QTableWidgetItem("—" if value is None else f"{value:.3f}"))
        height = self.table.horizontalHeader().sizeHint().height() + 4
        height += sum(self.table.rowHeight(i) for i in range(len(rows))) if rows else 0
        self.table.setFixedHeight(min(height, 200))
        self.table.setVisible(bool(rows))
        self.note.setText(
            ""
            if rows
            else "draw an optic disc and an optic cup (Annotate tab) to measure the ratio."
        )

    def values(self) -> list[tuple[str, str, str]]:
        """(reviewer, vertical, area) as shown: for tests and screenshots."""
        t = self.table
        return [
            (t.verticalHeaderItem(i).text(), t.item(i, 0).text(), t.item(i, 1).text())
            for i in range(t.rowCount())
        ]
