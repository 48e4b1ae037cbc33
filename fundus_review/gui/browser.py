"""The dataset browser: a filter bar over a list/grid of thumbnails (see browser_model.py).

Filter by label, prediction, correct/misclassified, confidence range, review status, region,
reviewer and score range; sort by any of them; choose which score the badge shows. Arrows and
PgUp/PgDn move through the list and the viewer follows the current row.
"""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, Qt, Signal, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from fundus_review.gui.browser_model import ROW_ROLE, BrowserDelegate, BrowserModel
from fundus_review.views.browse import (
    CDR_HELP,
    CORRECTNESS,
    REVIEW_STATUSES,
    SORT_KEYS,
    BrowseFilter,
    BrowseRow,
)

ANY = "(any)"


class FilterBar(QWidget):
    """Controls that build a BrowseFilter and the sort order."""

    changed = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        g = QGridLayout(self)
        g.setContentsMargins(2, 2, 2, 2)
        g.setVerticalSpacing(2)
        self.text = QLineEdit(placeholderText="file name contains…")
        self.label = QComboBox()
        self.prediction = QComboBox()
        self.correctness = QComboBox()
        self.correctness.addItems(CORRECTNESS)
        self.status = QComboBox()
        self.status.addItems([ANY, *REVIEW_STATUSES])
        self.structure = QComboBox()
        self.reviewer = QComboBox()
        self.conf_min, self.conf_max = _spin(0.0), _spin(1.0)
        self.score_on = QCheckBox("score")
        self.score_min, self.score_max = _spin(0.0), _spin(1.0)
        self.sort = QComboBox()
        self.sort.addItems(SORT_KEYS)
        self.sort.setItemData(SORT_KEYS.index("cdr"), CDR_HELP, Qt.ToolTipRole)
        self.badge_metric = QComboBox(toolTip="the score shown on each thumbnail's badge")
        self.badge_structure = QComboBox(toolTip="the expert region the badge score is against")
        self.descending = QToolButton(text="↓", checkable=True, toolTip="descending")
        g.addWidget(self.text, 0, 0, 1, 4)
        for r, (a, wa, b, wb) in enumerate(
            [
                ("label", self.label, "pred", self.prediction),
                ("result", self.correctness, "review", self.status),
                ("region", self.structure, "reviewer", self.reviewer),
            ],
            start=1,
        ):
            g.addWidget(QLabel(a), r, 0)
            g.addWidget(wa, r, 1)
            g.addWidget(QLabel(b), r, 2)
            g.addWidget(wb, r, 3)
        conf = QHBoxLayout()
        conf.addWidget(self.conf_min)
        conf.addWidget(QLabel("–"))
        conf.addWidget(self.conf_max)
        g.addWidget(QLabel("conf."), 4, 0)
        g.addLayout(conf, 4, 1)
        score = QHBoxLayout()
        score.addWidget(self.score_min)
        score.addWidget(QLabel("–"))
        score.addWidget(self.score_max)
        g.addWidget(self.score_on, 4, 2)
        g.addLayout(score, 4, 3)
        sort = QHBoxLayout()
        sort.addWidget(self.sort, 1)
        sort.addWidget(self.descending)
        g.addWidget(QLabel("sort"), 5, 0)
        g.addLayout(sort, 5, 1, 1, 3)
        g.addWidget(QLabel("badge"), 6, 0)
        g.addWidget(self.badge_metric, 6, 1)
        g.addWidget(QLabel("vs"), 6, 2)
        g.addWidget(self.badge_structure, 6, 3)
        self.set_badge_choices(["pointing_hit"], ["optic_disc"])
        self.set_choices([], [], [], [])
        for w in (
            self.label,
            self.prediction,
            self.correctness,
            self.status,
            self.structure,
            self.reviewer,
            self.sort,
        ):
            w.currentIndexChanged.connect(self.changed)
        for w in (self.conf_min, self.conf_max, self.score_min, self.score_max):
            w.valueChanged.connect(self.changed)
        self.text.textChanged.connect(self.changed)
        self.score_on.toggled.connect(self.changed)
        self.descending.toggled.connect(self.changed)

    def set_choices(self, labels, predictions, structures, reviewers) -> None:
        for combo, values in (
            (self.label, labels),
            (self.prediction, predictions),
            (self.structure, structures),
            (self.reviewer, reviewers),
        ):
            current = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItems([ANY, *values])
            combo.setCurrentIndex(max(0, combo.findText(current)))
            combo.blockSignals(False)

    def set_badge_choices(self, metrics: list[str], structures: list[str]) -> None:
        for combo, values, preferred in (
            (self.badge_metric, metrics, "pointing_hit"),
            (self.badge_structure, structures, "optic_disc"),
        ):
            current = combo.currentText() or preferred
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(values or [preferred])
            combo.setCurrentIndex(max(0, combo.findText(current)))
            combo.blockSignals(False)

    def badge(self) -> tuple[str, str] | None:
        metric, structure = self.badge_metric.currentText(), self.badge_structure.currentText()
        return (metric, structure) if metric and structure else None

    def clear(self) -> None:
        """Back to "show everything" (sort and badge kept)."""
        self.blockSignals(True)
        self.text.clear()
        for combo in (self.label, self.prediction, self.status, self.structure, self.reviewer):
            combo.setCurrentIndex(0)
        self.correctness.setCurrentIndex(0)
        self.conf_min.setValue(0.0)
        self.conf_max.setValue(1.0)
        self.score_on.setChecked(False)
        self.blockSignals(False)
        self.changed.emit()

    def current_filter(self) -> BrowseFilter:
        def one(combo: QComboBox) -> str | None:
            t = combo.currentText()
            return None if t in ("", ANY) else t

        conf = (self.conf_min.value(), self.conf_max.value())
        lo, hi = min(conf), max(conf)
        score = (
            min(self.score_min.value(), self.score_max.value()),
            max(self.score_min.value(), self.score_max.value()),
        )
        label, pred, status = one(self.label), one(self.prediction), one(self.status)
        return BrowseFilter(
            text=self.text.text().strip(),
            labels=None if label is None else frozenset({label}),
            predictions=None if pred is None else frozenset({pred}),
            correctness=self.correctness.currentText(),
            confidence=None if (lo, hi) == (0.0, 1.0) else (lo, hi),
            score=score if self.score_on.isChecked() else None,
            statuses=None if status is None else frozenset({status}),
            structure=one(self.structure),
            reviewer=one(self.reviewer),
        )


def _spin(value: float) -> QDoubleSpinBox:
    s = QDoubleSpinBox(decimals=2, singleStep=0.05, minimum=0.0, maximum=1.0)
    s.setValue(value)
    return s


class BrowserPanel(QWidget):
    """Filter bar + list. Emits the image to show; arrows/PgUp/PgDn move, the viewer follows."""

    current_changed = Signal(object)  # image id or None
    badge_changed = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.model = BrowserModel(self)
        self.filters = FilterBar()
        self.count = QLabel("no dataset")
        self.grid_toggle = QToolButton(text="Grid", checkable=True, toolTip="thumbnail grid / list")
        self.list = QListView()
        self.list.setModel(self.model)
        self.list.setItemDelegate(BrowserDelegate(self.list))
        self.list.setUniformItemSizes(True)
        self.list.setSelectionMode(QAbstractItemView.ExtendedSelection)
        self.list.setResizeMode(QListView.Adjust)
        self.list.setLayoutMode(QListView.Batched)
        self.list.setBatchSize(200)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addWidget(self.filters)
        top = QHBoxLayout()
        top.addWidget(self.count, 1)
        top.addWidget(self.grid_toggle)
        lay.addLayout(top)
        lay.addWidget(self.list, 1)
        badge = self.filters.badge()
        self.model.badge_metric = badge[0] if badge else None
        self.filters.changed.connect(self._apply_filter)
        self.filters.badge_metric.currentIndexChanged.connect(self._on_badge)
        self.filters.badge_structure.currentIndexChanged.connect(self._on_badge)
        self.grid_toggle.toggled.connect(self.set_grid)
        self.list.selectionModel().currentChanged.connect(self._on_current)
        self.model.modelReset.connect(self._after_reset)
        self._current_id: int | None = None

    def set_grid(self, on: bool) -> None:
        self.list.setViewMode(QListView.IconMode if on else QListView.ListMode)
        self.list.setFlow(QListView.LeftToRight if on else QListView.TopToBottom)
        self.list.setWrapping(on)
        self.list.setMovement(QListView.Static)
        self.list.setSpacing(2)
        self.list.doItemsLayout()

    def set_rows(
        self, rows: list[BrowseRow], files=None, keep_view: bool = False, index=None
    ) -> None:
        self.model.set_rows(rows, files, keep_view, index)
        st = self.model.state
        self.filters.set_choices(
            st.distinct("label"),
            st.distinct("prediction"),
            st.distinct("structures"),
            st.distinct("reviewers"),
        )

    def badge(self) -> tuple[str, str] | None:
        return self.filters.badge()

    def set_badge_choices(self, choices: tuple[list[str], list[str]]) -> None:
        self.filters.set_badge_choices(*choices)
        self._on_badge()

    def clear_filters(self) -> None:
        self.filters.clear()

    @Slot()
    def _on_badge(self) -> None:
        badge = self.filters.badge()
        self.model.badge_metric = badge[0] if badge else None
        self.badge_changed.emit()

    @Slot()
    def _apply_filter(self) -> None:
        f = self.filters
        self.model.set_view(f.current_filter(), f.sort.currentText(), f.descending.isChecked())

    @Slot()
    def _after_reset(self) -> None:
        st = self.model.state
        self.count.setText(f"{len(st.visible)} of {len(st.rows)} images")
        pos = st.position_of(self._current_id)
        if pos is not None:
            self.list.selectionModel().blockSignals(True)
            self.list.setCurrentIndex(self.model.index(pos))
            self.list.selectionModel().blockSignals(False)
            self.list.scrollTo(self.model.index(pos))

    @Slot(QModelIndex, QModelIndex)
    def _on_current(self, current: QModelIndex, _previous: QModelIndex) -> None:
        image_id = current.data(ROW_ROLE).image_id if current.isValid() else None
        if image_id != self._current_id:
            self._current_id = image_id
            self.model.state.current_id = image_id
            self.current_changed.emit(image_id)

    def current_id(self) -> int | None:
        return self._current_id

    def select_image(self, image_id: int) -> bool:
        pos = self.model.row_of(image_id)
        if pos is None:
            return False
        self.list.setCurrentIndex(self.model.index(pos))
        self.list.scrollTo(self.model.index(pos))
        return True

    def selected_ids(self) -> list[int]:
        rows = sorted(i.row() for i in self.list.selectionModel().selectedIndexes())
        ids = [self.model.state.row_at(r).image_id for r in rows]
        if not ids and self._current_id is not None:
            ids = [self._current_id]
        return ids
