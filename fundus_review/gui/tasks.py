"""Short background tasks (loading an image, registering a dataset) on a QThreadPool.

Results come back to the UI thread through queued signals of a QObject that lives there; the
callbacks therefore always run on the UI thread. A task can be superseded: `submit(..., key=...)`
drops the result of an older task with the same key (moving quickly through images must not
show a stale photo after the current one).
"""

from __future__ import annotations

import itertools
import logging
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot

log = logging.getLogger(__name__)


class _Signals(QObject):
    done = Signal(object)  # (task id, result)
    error = Signal(object)  # (task id, exception, traceback text)


class _Task(QRunnable):
    def __init__(self, task_id: int, fn: Callable[[], Any], signals: _Signals) -> None:
        super().__init__()
        self.task_id = task_id
        self.fn = fn
        self.signals = signals
        self.setAutoDelete(True)

    def run(self) -> None:
        try:
            result = self.fn()
        except BaseException as exc:  # noqa: BLE001 - every failure must reach the UI
            self._emit("error", (self.task_id, exc, traceback.format_exc()))
            return
        self._emit("done", (self.task_id, result))

    def _emit(self, name: str, payload) -> None:
        try:
            getattr(self.signals, name).emit(payload)
        except RuntimeError:
            # The window closed while this task ran (its receiver is gone): nobody to tell.
            log.debug("background task finished after its window closed")


class TaskRunner(QObject):
    """Runs callables off the UI thread and calls back on it."""

    error = Signal(object)  # exception of a task submitted without its own error callback

    def __init__(self, parent: QObject | None = None, max_threads: int = 2) -> None:
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(max_threads)
        self._signals = _Signals(self)
        self._signals.done.connect(self._on_done)
        self._signals.error.connect(self._on_error)
        self._ids = itertools.count(1)
        self._callbacks: dict[int, tuple[Callable, Callable | None, str | None]] = {}
        self._latest: dict[str, int] = {}
        self._closed = False

    def submit(
        self,
        fn: Callable[[], Any],
        on_done: Callable[[Any], None],
        on_error: Callable[[BaseException], None] | None = None,
        key: str | None = None,
        priority: int = 0,
    ) -> int:
        task_id = next(self._ids)
        if self._closed:
            return task_id  # the window is closing: nobody would receive the result
        self._callbacks[task_id] = (on_done, on_error, key)
        if key is not None:
            self._latest[key] = task_id
        self.pool.start(_Task(task_id, fn, self._signals), priority)
        return task_id

    def _stale(self, task_id: int, key: str | None) -> bool:
        return key is not None and self._latest.get(key) != task_id

    @Slot(object)
    def _on_done(self, payload: tuple[int, Any]) -> None:
        task_id, result = payload
        on_done, _, key = self._callbacks.pop(task_id, (None, None, None))
        if on_done is not None and not self._stale(task_id, key):
            on_done(result)

    @Slot(object)
    def _on_error(self, payload: tuple[int, BaseException, str]) -> None:
        task_id, exc, tb = payload
        _, on_error, key = self._callbacks.pop(task_id, (None, None, None))
        if self._stale(task_id, key):
            return
        log.debug("background task failed:\n%s", tb)
        if on_error is not None:
            on_error(exc)
        else:
            self.error.emit(exc)

    def wait(self, msecs: int = 30000) -> bool:
        return self.pool.waitForDone(msecs)

    def shutdown(self, msecs: int = 30000) -> bool:
        """Refuse new tasks, drop queued ones and wait for the running ones.

        Called when the window closes: the pool must be idle before Qt destroys it, because its
        destructor waits for running tasks while holding the GIL those tasks need (a deadlock).
        """
        self._closed = True
        self.pool.clear()
        return self.pool.waitForDone(msecs)
