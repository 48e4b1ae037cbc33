"""The guard against PySide6 6.12.0's emit() losing references to True (long sessions abort)."""

from __future__ import annotations

import sys

import pytest
from PySide6.QtCore import QObject, Signal

from fundus_review.gui import refcount_guard

pytestmark = pytest.mark.gui


class Box(QObject):
    changed = Signal(object)


def test_the_probe_tells_whether_emit_loses_references(qapp) -> None:  # noqa: ANN001
    box = Box()
    before = sys.getrefcount(True)
    for _ in range(100):
        box.changed.emit(1)
    lost = before - sys.getrefcount(True)
    refcount_guard._keep(True, max(lost, 0))  # keep this test from doing harm
    assert refcount_guard.emit_steals_true() == (lost >= 50)


def test_top_up_adds_references_to_what_runs_low(monkeypatch, qapp) -> None:  # noqa: ANN001
    monkeypatch.setattr(refcount_guard, "BATCH", 1000)
    monkeypatch.setattr(refcount_guard, "LOW", 1)
    assert refcount_guard.top_up() == 0  # nothing is low
    monkeypatch.setattr(refcount_guard, "LOW", sys.getrefcount(None) + 10)
    before = sys.getrefcount(None)
    assert refcount_guard.top_up() >= 1000
    assert sys.getrefcount(None) >= before + 900  # other code holds or drops a few meanwhile


def test_with_the_guard_many_emits_keep_true_alive(qapp) -> None:  # noqa: ANN001
    timer = refcount_guard.install(qapp, interval_ms=10)
    if timer is None:
        pytest.skip("this PySide6 does not lose references on emit")
    box = Box()
    for _ in range(20):
        for _ in range(5000):
            box.changed.emit(None)
        qapp.processEvents()
    assert sys.getrefcount(True) > refcount_guard.LOW // 2
    timer.stop()
