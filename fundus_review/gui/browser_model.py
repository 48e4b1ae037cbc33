"""The browser's list model and item painter over `browse.BrowserState`.

The model is a QAbstractListModel that maps row numbers onto the state's visible indices, so a
100,000-image dataset appears at once (the rows' column index is built on the loading thread); thumbnails are requested only for rows being painted and
arrive from a thread pool (cached on disk), after which only that row is repainted.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QRect,
    QSize,
    Qt,
)
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPixmap
from PySide6.QtWidgets import QListView, QStyle, QStyledItemDelegate, QStyleOptionViewItem

from fundus_review.gui.tasks import TaskRunner
from fundus_review.gui.thumbs import THUMB_SIZE, make_thumbnail
from fundus_review.views.browse import (
    BrowseFilter,
    BrowseRow,
    BrowserState,
    format_badge,
)
from fundus_review.views.browse_index import BrowseIndex

ROW_ROLE = Qt.UserRole + 1


class BrowserModel(QAbstractListModel):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.state = BrowserState()
        self.files: dict[int, tuple[str, str | None]] = {}
        self.thumbs: dict[int, QPixmap] = {}
        self._pending: set[int] = set()
        self._failed: set[int] = set()
        self.loader = TaskRunner(self, max_threads=2)
        self._priority = 0
        self.badge_metric: str | None = None  # pointing_hit badges read "hit"/"miss"

    # -- data --------------------------------------------------------------------------------
    def set_rows(
        self,
        rows: list[BrowseRow],
        files: dict[int, tuple[str, str | None]] | None = None,
        keep_view: bool = False,
        index: BrowseIndex | None = None,
    ) -> None:
        """New rows (filter and sort kept). Thumbnails of unchanged files are kept.

        With `keep_view`, rows whose visible order did not change are repainted in place
        instead of resetting the list, so a job refreshing rows every few seconds never
        scrolls the list under the reviewer. `index` is the rows' BrowseIndex, built on the
        worker thread that loaded them (building it here would freeze 100,000 rows' UI).
        """
        if index is None or index.n != len(rows):
            index = BrowseIndex(rows)
        if files is not None and self.files and files != self.files:  # (== : one C loop)
            # (path, file stamp); a stamp appearing where there was none is the background
            # read of a newly listed file, not a change of the file.
            changed = {
                i
                for i, (path, stamp) in files.items()
                if (old := self.files.get(i)) is not None
                and (old[0] != path or (old[1] is not None and old[1] != stamp))
            }
            for image_id in changed | (self.files.keys() - files.keys()):
                self.thumbs.pop(image_id, None)
                self._failed.discard(image_id)
        if files is not None:
            self.files = files
        if keep_view:
            st = self.state
            order = index.order(st.filter, st.sort_key, st.descending)
            old = st.index.order(st.filter, st.sort_key, st.descending)
            if len(order) == len(old) and np.array_equal(index.ids[order], st.index.ids[old]):
                st.set_rows(rows, index)
                if len(order):
                    self.dataChanged.emit(self.index(0), self.index(len(order) - 1))
                return
        self.beginResetModel()
        self.state.set_rows(rows, index)
        self.endResetModel()

    def set_view(self, filt: BrowseFilter, key: str, descending: bool) -> None:
        """Filter and sort in one reset of the list."""
        self.beginResetModel()
        self.state.set_view(filt, key, descending)
        self.endResetModel()

    def set_filter(self, filt: BrowseFilter) -> None:
        self.set_view(filt, self.state.sort_key, self.state.descending)

    def set_sort(self, key: str, descending: bool) -> None:
        self.set_view(self.state.filter, key, descending)

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
        path = src[0]
        # Rows painted last (the ones on screen now) are made first.
        self._priority += 1

        def job() -> QImage:
            img = QImage(str(make_thumbnail(path)))
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
    if row.cdr_text:
        who = "your disc and cup" if row.cdr_own else f"{row.cdr_reviewers} reviewer(s)"
        lines.append(f"vertical {row.cdr_text} — {who}")
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
        model = index.model()
        metric = getattr(model, "badge_metric", None)
        badge = format_badge(
            row.score,
            (lambda v: "hit" if v >= 0.5 else "miss") if metric == "pointing_hit" else None,
        )
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
            status = row.status.replace("_", " ")
            lines.append(f"{status} · {row.cdr_text}" if row.cdr_text else status)
        lh = fm.height()
        selected = bool(option.state & QStyle.State_Selected)
        # Right/wrong colours, lighter on the selection colour so they stay readable there.
        wrong = QColor(255, 190, 190) if selected else QColor(210, 50, 50)
        right = QColor(190, 255, 200) if selected else QColor(40, 150, 70)
        pred_line = len(lines) - 1 - (0 if self.grid() else 1)
        for k, line in enumerate(lines):
            if k == pred_line and row.correct is not None:
                painter.setPen(right if row.correct else wrong)
            else:
                painter.setPen(text.color())
            painter.drawText(
                QRect(text_rect.x(), text_rect.y() + k * lh, text_rect.width(), lh),
                Qt.AlignLeft | Qt.AlignVCenter,
                fm.elidedText(line, Qt.ElideRight, text_rect.width()),
            )
        painter.restore()
