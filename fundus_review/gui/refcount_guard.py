"""A guard against a reference-count bug of PySide6 6.12.0 that kills long sessions.

In PySide6 6.12.0 (the only version the local registry has), every ``SignalInstance.emit()``
returns ``True`` without owning a reference to it, so each emit takes one reference from the
interpreter's single ``True`` object. After as many emits as ``True`` had references (a few
thousand in a fresh process) CPython aborts the whole process with "Fatal Python error:
bool_dealloc: deallocating True or False" (or ``none_dealloc`` when another call does the same
to ``None``). A scripted review of the 60 demo images died this way after a few minutes.

The guard holds spare references to ``True``, ``False`` and ``None`` and tops them up from a
timer on the UI thread whenever one runs low, so the objects never reach zero. It costs 8 MB per
million emits, never freed (not even at exit, which would abort too); it is installed only
when a test emit shows the bug.
"""

from __future__ import annotations

import ctypes
import sys

from PySide6.QtCore import QObject, QTimer, Signal

LOW = 200_000  # top up when an object has fewer references than this ...
BATCH = 1_000_000  # ... by this many
_SPARE: list[list[object]] = []


def _keep(obj: object, count: int) -> None:
    """Hold ``count`` references to ``obj`` for good: the list holding them is itself leaked
    (one extra reference), so not even interpreter shutdown releases them - shutdown would
    otherwise take the stolen references' toll and abort at exit."""
    batch = [obj] * count
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(batch))
    _SPARE.append(batch)


class _Probe(QObject):
    ping = Signal()


def emit_steals_true(n: int = 64) -> bool:
    """True when emitting a signal loses references to ``True`` (the PySide6 6.12.0 bug)."""
    probe = _Probe()
    before = sys.getrefcount(True)
    for _ in range(n):
        probe.ping.emit()
    lost = before - sys.getrefcount(True)
    _keep(True, max(lost, 0))  # give back what the probe took
    return lost >= n // 2


def top_up() -> int:
    """Add spare references to any of True, False, None that runs low; how many were added."""
    added = 0
    for obj in (True, False, None):
        if sys.getrefcount(obj) < LOW:
            _keep(obj, BATCH)
            added += BATCH
    return added


def install(parent: QObject, interval_ms: int = 500) -> QTimer | None:
    """Start the guard (a timer owned by ``parent``) where this PySide6 needs it; else None."""
    if not emit_steals_true():
        return None
    top_up()
    timer = QTimer(parent)
    timer.setInterval(interval_ms)
    timer.timeout.connect(top_up)
    timer.start()
    return timer
