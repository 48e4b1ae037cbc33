"""The installed Qt binding does not corrupt reference counts when a signal is emitted.

PySide6 6.12.0 drops one reference to ``True`` on every ``Signal.emit()`` (any signature), so after
enough emits (a few minutes of a working session) Python aborts in ``bool_dealloc``. pyproject.toml
excludes it; this test fails on a binding with that bug instead of a crash in the middle of a review.
"""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal


class _Emitter(QObject):
    flag = Signal(bool)
    payload = Signal(object)
    bare = Signal()


def test_signal_emit_keeps_reference_counts(qapp) -> None:  # noqa: ANN001
    emitter = _Emitter()
    got: list[object] = []
    emitter.flag.connect(got.append)
    emitter.payload.connect(got.append)
    emitter.bare.connect(lambda: got.append("bare"))
    marker = object()
    # Warm up once: the first emit may create cached wrappers.
    emitter.flag.emit(True)
    emitter.payload.emit(marker)
    emitter.bare.emit()
    got.clear()
    before = (sys.getrefcount(True), sys.getrefcount(None), sys.getrefcount(marker))
    for _ in range(50):
        emitter.flag.emit(True)
        emitter.payload.emit(marker)
        emitter.bare.emit()
    got_true = got.count(True)
    got_marker = sum(1 for g in got if g is marker)
    got.clear()
    after = (sys.getrefcount(True), sys.getrefcount(None), sys.getrefcount(marker))
    assert (got_true, got_marker) == (50, 50)
    assert after == before, f"reference counts (True, None, payload) changed {before} -> {after}"
