"""The dataset browser: a list/grid of thumbnails over `browse.BrowserState`, with a filter bar.

The model is a QAbstractListModel that maps row numbers onto the state's visible indices, so a
10,000-image dataset appears at once; thumbnails are requested only for rows being painted and
arrive from a thread pool (cached on disk), after which only that row is repainted.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QRect,
    QSize,
    Qt,
    Signal,
    Slot,
)
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPixmap
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
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from fundus_review.browse import (
    CORRECTNESS,
    REVIEW_STATUSES,
    SORT_KEYS,
    BrowseFilter,
    BrowseRow,
    BrowserState,
    format_badge,
)
from fundus_review.gui.tasks import TaskRunner
from fundus_review.gui.thumbs import THUMB_SIZE, make_thumbnail

ROW_ROLE = Qt.UserRole + 1
ANY = "(any)"


class BrowserModel(QAbstractListModel):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.state = BrowserState()
        self.files: dict[int, tuple[Path, str]] = {}
        self.thumbs: dict[int, QPixmap] = {}
        self._pending: set[int] = set()
        self._failed: set[int] = set()
        self.loader = TaskRunner(self, max_threads=2)
        self._priority = 0

    # -- data --------------------------------------------------------------------------------
    def set_rows(
        self, rows: list[BrowseRow], files: dict[int, tuple[Path, str]] | None = None
    ) -> None:
        self.beginResetModel()
        if files is not None:
            self.files = files
            self.thumbs.clear()
            self._pending.clear()
            self._failed.clear()
        self.state.set_rows(rows)
        self.endResetModel()

    def update_rows(self, rows: list[BrowseRow]) -> None:
        """New predictions/scores while keeping filter, sort and thumbnails."""
        self.beginResetModel()
        self.state.set_rows(rows)
        self.endResetModel()

    def set_filter(self, filt: BrowseFilter) -> None:
        self.beginResetModel()
        self.state.set_filter(filt)
        self.endResetModel()

    def set_sort(self, key: str, descending: bool) -> None:
        self.beginResetModel()
        self.state.set_sort(key, descending)
        self.endResetModel()

    def rowCount(self, parent=None) -> int:  # noqa: N802 - Qt API
        return 0 if parent is not None and parent.isValid() else len(self.state.visible)

    def data(self, index, role=Qt.DisplayRole):
        if not index.isValid() or index.row() >= len(self.state.visible):
            return None
        row = self.state.row_at(index.row())
        if role == ROW_ROLE:
            return row
        if role == Qt.DisplayRole:
            return row.name
        if role == Qt.ToolTipRole:
            return _tooltip(row)
        if role == Qt.DecorationRole:
            return self._thumbnail(row.image_id, index)
        return None

    def row_of(self, image_id: int | None) -> int | None:
        return self.state.position_of(image_id)

    # -- thumbnails ----------------------------------------------------------------------
    def _thumbnail(self, image_id: int, index: QModelIndex) -> QPixmap | None:
        pix = self.thumbs.get(image_id)
        if pix is not None or image_id in self._pending or image_id in self._failed:
            return pix
        src = self.files.get(image_id)
        if src is None:
            return None
        self._pending.add(image_id)
        path, sha = src
        # Rows painted last (the ones on screen now) are made first.
        self._priority += 1

        def job() -> QImage:
            img = QImage(str(make_thumbnail(path, sha)))
            if img.isNull():
                raise OSError(f"{path}: cannot make a thumbnail")
            return img

        self.loader.submit(
            job,
            lambda img, i=image_id: self._thumb_ready(i, img),
            lambda exc, i=image_id: self._thumb_failed(i),
            priority=min(self._priority, 2**30),
        )
        return None

    def _thumb_ready(self, image_id: int, img: QImage) -> None:
        self._pending.discard(image_id)
        self.thumbs[image_id] = QPixmap.fromImage(img)
        self._row_changed(image_id)

    def _thumb_failed(self, image_id: int) -> None:
        self._pending.discard(image_id)
        self._failed.add(image_id)

    def _row_changed(self, image_id: int) -> None:
        pos = self.state.position_of(image_id)
        if pos is not None:
            idx = self.index(pos)
            self.dataChanged.emit(idx, idx, [Qt.DecorationRole])


def _tooltip(row: BrowseRow) -> str:
    lines = [row.rel_path, f"true label: {row.label or '—'}"]
    if row.prediction is not None:
        lines.append(f"prediction: {row.prediction} ({row.confidence:.1%})")
    lines.append(f"review: {row.status.replace('_', ' ')}")
    if row.structures:
        lines.append("regions: " + ", ".join(sorted(row.structures)))
    if row.score is not None:
        lines.append(f"score: {row.score:.3f}")
    return "\n".join(lines)


def _badge_color(score: float) -> QColor:
    s = max(0.0, min(1.0, score))
    return QColor(int(220 * (1 - s)), int(170 * s + 40), 60)


STATUS_COLORS = {
    "unreviewed": QColor(140, 140, 140),
    "in_progress": QColor(230, 180, 40),
    "done": QColor(60, 180, 90),
    "flagged": QColor(230, 70, 70),
}


class BrowserDelegate(QStyledItemDelegate):
    """Paints a row (list mode) or a tile (grid mode) with label, prediction, status and badge."""

    def __init__(self, view: QListView) -> None:
        super().__init__(view)
        self.view = view

    def grid(self) -> bool:
        return self.view.viewMode() == QListView.IconMode

    def sizeHint(self, option, index) -> QSize:  # noqa: N802 - Qt API
        return QSize(THUMB_SIZE + 16, THUMB_SIZE + 44) if self.grid() else QSize(240, 70)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index) -> None:
        row: BrowseRow | None = index.data(ROW_ROLE)
        if row is None:
            return
        painter.save()
        r = option.rect
        if option.state & QStyle.State_Selected:
            painter.fillRect(r, option.palette.highlight())
        pix = index.data(Qt.DecorationRole)
        if self.grid():
            thumb_rect = QRect(r.x() + 8, r.y() + 4, THUMB_SIZE, THUMB_SIZE)
            text_rect = QRect(r.x() + 4, r.y() + THUMB_SIZE + 6, r.width() - 8, 36)
        else:
            thumb_rect = QRect(r.x() + 3, r.y() + 3, 64, 64)
            text_rect = QRect(r.x() + 74, r.y() + 3, r.width() - 78, 64)
        if isinstance(pix, QPixmap) and not pix.isNull():
            scaled = pix.scaled(thumb_rect.size(), Qt.KeepAspectRatio, Qt.SmoothTransformation)
            x = thumb_rect.x() + (thumb_rect.width() - scaled.width()) // 2
            y = thumb_rect.y() + (thumb_rect.height() - scaled.height()) // 2
            painter.drawPixmap(x, y, scaled)
        else:
            painter.fillRect(thumb_rect, QColor(40, 40, 40))
        # Review status: a coloured dot at the thumbnail's top-left corner.
        painter.setPen(Qt.NoPen)
        painter.setBrush(STATUS_COLORS.get(row.status, QColor("gray")))
        painter.drawEllipse(thumb_rect.x() + 3, thumb_rect.y() + 3, 10, 10)
        badge = format_badge(row.score)
        if badge:
            font = QFont(option.font)
            font.setPointSizeF(max(6.5, font.pointSizeF() * 0.85))
            font.setBold(True)
            painter.setFont(font)
            w = painter.fontMetrics().horizontalAdvance(badge) + 8
            br = QRect(thumb_rect.right() - w - 1, thumb_rect.bottom() - 16, w, 15)
            painter.setBrush(_badge_color(row.score))
            painter.drawRoundedRect(br, 4, 4)
            painter.setPen(QColor("white"))
            painter.drawText(br, Qt.AlignCenter, badge)
        painter.setFont(option.font)
        text = (
            option.palette.highlightedText()
            if option.state & QStyle.State_Selected
            else option.palette.text()
        )
        painter.setPen(text.color())
        fm = painter.fontMetrics()
        name = fm.elidedText(row.name, Qt.ElideMiddle, text_rect.width())
        lines = [name, f"true: {row.label or '—'}"]
        pred = (
            "pred: —" if row.prediction is None else f"pred: {row.prediction} {row.confidence:.0%}"
        )
        if self.grid():
            lines = [name, f"{row.label or '—'} → {pred[6:]}"]
        else:
            lines.append(pred)
            lines.append(row.status.replace("_", " "))
        lh = fm.height()
        for k, line in enumerate(lines):
            if k == len(lines) - 1 - (0 if self.grid() else 1) and row.correct is False:
                painter.setPen(QColor(230, 80, 80))
            elif row.correct is True and k == len(lines) - 1 - (0 if self.grid() else 1):
                painter.setPen(QColor(80, 190, 100))
            else:
                painter.setPen(text.color())
            painter.drawText(
                QRect(text_rect.x(), text_rect.y() + k * lh, text_rect.width(), lh),
                Qt.AlignLeft | Qt.AlignVCenter,
                fm.elidedText(line, Qt.ElideRight, text_rect.width()),
            )
        painter.restore()


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
        self.filters.changed.connect(self._apply_filter)
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

    def set_rows(self, rows: list[BrowseRow], files=None) -> None:
        self.model.set_rows(rows, files)
        st = self.model.state
        self.filters.set_choices(
            st.distinct("label"),
            st.distinct("prediction"),
            st.distinct("structures"),
            st.distinct("reviewers"),
        )

    @Slot()
    def _apply_filter(self) -> None:
        self.model.set_sort(self.filters.sort.currentText(), self.filters.descending.isChecked())
        self.model.set_filter(self.filters.current_filter())

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
