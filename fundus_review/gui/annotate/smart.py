"""The smart tools (mixed into AnnotationController before ToolHandlers): intelligent scissors
and box-to-region (GrabCut).

- **scissors**: click anchors; between the last anchor and the mouse the path snaps to edges of
  the photo (``review.livewire``); each click fixes the path up to it. Double-click, Enter or a
  click on the first anchor closes it into ONE polygon region (simplified within 0.75 px);
  Backspace removes the last anchor, Esc abandons the path.
- **box**: drag a box around a lesion; GrabCut (``review.grabcut``) outlines what is in it as ONE
  polygon region of the current structure.

Both need the photo's pixels: the host sets ``pixel_source`` (a callable returning the current
image's RGB array, or None). The costly steps (preparing the photo and building a cost map from
each anchor, about 0.25 s for a 1024-px photo; GrabCut, 0.1-1 s) run on one worker thread, so
the window never freezes; the path preview is a straight line until the map is ready. A result
that arrives after the image changed is dropped. Every finished region goes through the
controller's ``_push``: committed at once and undoable like every other edit.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, Signal

from fundus_review.core.geometry import GeometryError, Polygon
from fundus_review.errors import FundusReviewError
from fundus_review.gui.annotate.layers import Z_PREVIEW
from fundus_review.review.grabcut import box_region
from fundus_review.review.livewire import LiveWire, simplify_path

SMART_TOOLS = ("scissors", "box")
_CLOSE_PX = 10  # a click this close (screen pixels) to the first anchor closes the path


class _Relay(QObject):
    """Brings a worker's result back to the UI thread (queued signal)."""

    done = Signal(object)  # (callback, future)


class SmartTools:
    """Needs the controller's state (tool, structure, editor, view, preview, _push...)."""

    pixel_source: Callable[[], np.ndarray | None] | None = None
    _smart_pool: ThreadPoolExecutor | None = None

    def _smart_init(self) -> None:
        self._relay = _Relay(self)
        self._relay.done.connect(lambda item: item[0](item[1]))
        self._wire: LiveWire | None = None
        self._wire_key: tuple | None = None
        self._wire_job: Future | None = None  # building the map of the last anchor
        self._anchors: list[tuple[float, float]] = []
        self._segments: list[np.ndarray] = []  # fixed path from anchor i to anchor i + 1
        self._hover_at: tuple[float, float] | None = None
        self._box_from: tuple[float, float] | None = None
        self._box_job: Future | None = None
        self._dots: pg.ScatterPlotItem | None = None
        self._wire_rgb: np.ndarray | None = None

    # ---------------------------------------------------------------------- dispatching
    def wants_drag(self) -> bool:
        return self.tool == "box" or super().wants_drag()

    def on_hover(self, x: float, y: float) -> None:
        if self.tool == "scissors":
            self._hover_at = (x, y)
            if self._anchors:
                self._show_path(self._live_segment(x, y))
            return
        super().on_hover(x, y)

    def on_click(self, x: float, y: float, double: bool, modifiers) -> None:  # noqa: ANN001
        if self.tool == "scissors":
            self._scissors_click(x, y, double)
        elif self.tool == "box":
            pass  # a box is dragged; a click is nothing
        else:
            super().on_click(x, y, double, modifiers)

    def on_drag(self, phase: str, x: float, y: float, modifiers) -> None:  # noqa: ANN001
        if self.tool == "box":
            self._box_drag(phase, x, y)
        else:
            super().on_drag(phase, x, y, modifiers)

    def finish(self) -> None:
        if self.tool == "scissors" and self._anchors:
            self._close_path()
            return
        super().finish()

    def remove_last_vertex(self) -> bool:
        if self.tool != "scissors" or not self._anchors:
            return super().remove_last_vertex()
        self._anchors.pop()
        if self._segments:
            self._segments.pop()
        if self._anchors:
            self._build_map(*self._anchors[-1])
            self._show_path(None)
        else:
            self._clear_path()
        return True

    def _abort_drawing(self) -> bool:
        had = bool(self._anchors) or self._box_from is not None
        self._clear_path()
        self._box_from = None
        return super()._abort_drawing() or had

    def _smart_drawing(self) -> bool:
        return bool(self._anchors) or self._box_from is not None

    def smart_busy(self) -> bool:
        """True while a worker computes (a cost map, a GrabCut); tests and the bench wait."""
        return any(j is not None and not j.done() for j in (self._wire_job, self._box_job))

    def _smart_teardown(self) -> None:
        self._clear_path()
        self._wire, self._wire_key = None, None
        if self._dots is not None:
            self.view.removeItem(self._dots)
            self._dots = None

    def _smart_shutdown(self) -> None:
        self._smart_teardown()
        if self._smart_pool is not None:
            self._smart_pool.shutdown(wait=True, cancel_futures=True)
            self._smart_pool = None

    # --------------------------------------------------------------------------- workers
    def _submit(self, fn: Callable[[], object], then: Callable[[Future], None]) -> Future:
        if self._smart_pool is None:
            self._smart_pool = ThreadPoolExecutor(1, thread_name_prefix="smart-tools")
        job = self._smart_pool.submit(fn)
        relay = self._relay

        def back(f: Future) -> None:
            try:
                relay.done.emit((then, f))
            except RuntimeError:  # the window closed meanwhile
                pass

        job.add_done_callback(back)
        return job

    def _pixels(self) -> np.ndarray | None:
        rgb = self.pixel_source() if self.pixel_source is not None else None
        if rgb is None or self.image_shape is None or rgb.shape[:2] != tuple(self.image_shape):
            self.error.emit(f"{self.tool}: the photo is not loaded yet; try again in a moment")
            return None
        return rgb

    # -------------------------------------------------------------------------- scissors
    def _scissors_click(self, x: float, y: float, double: bool) -> None:
        if double:
            self.finish()
            return
        if not self._anchors:
            if not self._need_editor() or not self._start_wire():
                return
        else:
            fx, fy = self._anchors[0]
            near = np.hypot(fx - x, fy - y) <= _CLOSE_PX * self._pixel_size()
            if near and len(self._anchors) >= 2:
                self._close_path()
                return
            self._segments.append(self._fixed_segment(x, y))
        self._anchors.append((x, y))
        self._build_map(x, y)
        self._show_path(None)

    def _start_wire(self) -> bool:
        rgb = self._pixels()
        if rgb is None:
            return False
        key = (self.image_id, id(rgb), rgb.shape)
        if self._wire_key != key:
            self._wire, self._wire_key = None, key
            self._wire_rgb = rgb
        return True

    def _build_map(self, x: float, y: float) -> None:
        key = self._wire_key

        def work() -> LiveWire:
            wire = self._wire
            if wire is None or self._wire_key != key:
                wire = LiveWire(self._wire_rgb)
            wire.set_anchor(x, y)
            return wire

        self._wire_job = self._submit(work, lambda f: self._map_built(f, key))

    def _map_built(self, job: Future, key: tuple | None) -> None:
        if job is not self._wire_job or key != self._wire_key:
            return  # an older anchor's map, or another image's
        exc = job.exception()
        if exc is not None:
            self._clear_path()
            self.error.emit(str(exc) if isinstance(exc, FundusReviewError) else f"scissors: {exc}")
            return
        self._wire = job.result()
        if self._anchors and self._hover_at is not None:
            self._show_path(self._live_segment(*self._hover_at))

    def _map_ready(self, wait: bool) -> bool:
        """True when the last anchor's map is built (``wait``: block until it is)."""
        job = self._wire_job
        if job is None or (not wait and not job.done()):
            return False
        try:
            self._wire = job.result()
        except Exception:  # noqa: BLE001 - reported by _map_built
            return False
        return True

    def _live_segment(self, x: float, y: float) -> np.ndarray:
        if self._map_ready(wait=False):
            return self._wire.path_to(x, y)
        return np.array([self._anchors[-1], (x, y)])

    def _fixed_segment(self, x: float, y: float) -> np.ndarray:
        """The path from the last anchor to (x, y); waits for its map (a fraction of a second)
        when the click came before it was ready."""
        if self._map_ready(wait=True):
            return self._wire.path_to(x, y)
        return np.array([self._anchors[-1], (x, y)])

    def _close_path(self) -> None:
        fx, fy = self._anchors[0]
        closing = self._fixed_segment(fx, fy) if len(self._anchors) >= 2 else None
        segments = [*self._segments, *([closing] if closing is not None else [])]
        self._clear_path()
        if not segments:
            self.message.emit("scissors: click at least 2 anchors around the lesion")
            return
        if not self._need_editor():
            return
        pts = np.vstack(segments)
        keep = np.ones(len(pts), bool)
        keep[1:] = np.any(np.diff(pts, axis=0) != 0, axis=1)  # drop repeated joints
        pts = simplify_path(pts[keep])
        try:
            poly = Polygon(tuple((round(float(x), 3), round(float(y), 3)) for x, y in pts))
        except GeometryError as exc:
            self.error.emit(f"scissors: {exc}")
            return
        if len(poly.points) < 3:
            self.error.emit("scissors: the path encloses nothing; click at least 2 anchors")
            return
        self._push(self.editor.create_command(self.structure, poly))

    def _clear_path(self) -> None:
        self._anchors, self._segments, self._hover_at = [], [], None
        self.preview.setData([], [])
        if self._dots is not None:
            self._dots.setData([], [])

    def _show_path(self, live: np.ndarray | None) -> None:
        parts = [*self._segments, *([live] if live is not None else [])]
        pts = np.vstack(parts) if parts else np.array(self._anchors[-1:])
        self.preview.setData(pts[:, 0], pts[:, 1])
        if self._dots is None:
            self._dots = pg.ScatterPlotItem(size=7, pen=pg.mkPen("k"), brush=pg.mkBrush("w"))
            self._dots.setZValue(Z_PREVIEW + 1)
            self.view.addItem(self._dots, ignoreBounds=True)
        a = np.array(self._anchors)
        self._dots.setData(a[:, 0], a[:, 1])

    # ------------------------------------------------------------------------------- box
    def _box_drag(self, phase: str, x: float, y: float) -> None:
        if phase == "start":
            self._box_from = (x, y)
            return
        if self._box_from is None:
            return
        x0, y0 = self._box_from
        if phase == "move":
            self.preview.setData([x0, x, x, x0, x0], [y0, y0, y, y, y0])
            return
        self._box_from = None
        self.preview.setData([], [])
        if min(abs(x - x0), abs(y - y0)) < 2 * self._pixel_size() or not self._need_editor():
            return  # a click, not a drag
        rgb = self._pixels()
        if rgb is None:
            return
        if self.smart_busy() and self._box_job is not None and not self._box_job.done():
            self.message.emit("box: the previous box is still being outlined")
            return
        target = (self.image_id, self.editor.reviewer_id, self.structure)
        self.message.emit("box: outlining…")
        self._box_job = self._submit(
            lambda: box_region(rgb, (x0, y0, x, y)), lambda f: self._box_done(f, target)
        )

    def _box_done(self, job: Future, target: tuple) -> None:
        if self.editor is None or target != (self.image_id, self.editor.reviewer_id, target[2]):
            return  # the image or the reviewer changed meanwhile: nothing lands elsewhere
        exc = job.exception()
        if exc is not None:
            self.error.emit(str(exc) if isinstance(exc, FundusReviewError) else f"box: {exc}")
            return
        self._push(self.editor.create_command(target[2], job.result().polygon))
        self.message.emit(f"box: {target[2]} outlined (Ctrl+Z undoes it)")
