"""AnnotationController: the drawing tools on a pyqtgraph ViewBox that shows a photograph.

Plug it into any ViewBox whose coordinates are original image pixels (row-major ImageItem at
(0, 0), pixel (i, j) covering [j, j+1) x [i, i+1), as in the review viewer). It adds its own
items (input surface, outlines, paint overlay, the live ROI) and never touches the view's others.

Every finished edit is committed at once through ``annotating`` and pushed on a QUndoStack (one
per image and reviewer, in ``undo_group``); undo and redo are transactions too. Every
``poll_ms`` the controller checks (one tiny query) whether another app instance changed this
image's regions and, if so and nothing is being drawn, shows the new state.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication, QUndoGroup, QUndoStack

from fundus_review.core.geometry import GeometryError
from fundus_review.errors import FundusReviewError
from fundus_review.gui.annotate.commands import DbUndoCommand
from fundus_review.gui.annotate.editors import make_editor
from fundus_review.gui.annotate.layers import Z_PREVIEW, MaskOverlay, OutlineLayer
from fundus_review.gui.annotate.smart import SMART_TOOLS, SmartTools
from fundus_review.gui.annotate.strokes import Stroke
from fundus_review.gui.annotate.surface import BrushCursor, DrawSurface
from fundus_review.gui.annotate.tools import ToolHandlers
from fundus_review.review.editor import (
    Command,
    Editor,
    Region,
    load_regions,
    regions_fingerprint,
    stored_image_shape,
)
from fundus_review.review.labelsets import LabelSet, StructureDef, load_label_set
from fundus_review.store.db import Database

TOOL_NAMES = ("select", "ellipse", "polygon", "brush", "eraser", "fill", "point", *SMART_TOOLS)


class AnnotationController(SmartTools, ToolHandlers, QObject):
    changed = Signal()  # the current image's regions changed (edit, undo, redo, reload)
    message = Signal(str)  # status-bar information
    error = Signal(str)  # something the user must read (conflict, refused edit)
    tool_changed = Signal(str)
    structure_changed = Signal(str)
    selection_changed = Signal(object)  # Region | None
    review_changed = Signal()  # review status or verdict changed
    # Committed here (edit/undo/redo; True: regions, False: review) or another instance's region
    # edits seen by the poll (True). Unlike ``changed``, never fired just for showing an image.
    stored = Signal(bool)
    brush_size_changed = Signal(float)
    others_visible_changed = Signal(bool)
    step_image = Signal(int)  # the reviewer asks for the next (+1) / previous (-1) image

    def __init__(self, view_box: pg.ViewBox, db: Database, image_id: int | None = None,
                 image_shape: tuple[int, int] | None = None, reviewer: str | None = None,
                 label_set: LabelSet | None = None, parent: QObject | None = None,
                 poll_ms: int = 3000) -> None:  # fmt: skip
        super().__init__(parent)
        self.view, self.db = view_box, db
        self.labels = label_set or load_label_set()
        self.undo_group = QUndoGroup(self)
        self._stacks: dict[tuple[int, int], QUndoStack] = {}
        self.tool, self.structure = "select", self.labels.names()[0]
        self.brush_diameter = 20.0
        self.others_visible = True
        self.heatmap_id: int | None = None
        self.reviewer = reviewer
        self.image_id: int | None = None
        self.image_shape: tuple[int, int] | None = None
        self.editor: Editor | None = None
        self.regions: list[Region] = []
        self.selected_id: int | None = None
        self.live = None  # the ROI of the selected vector region
        self._live_id: int | None = None
        self._stroke: Stroke | None = None
        self._poly: list[tuple[float, float]] = []
        self._drag_from: tuple[float, float] | None = None
        self._crops: dict[int, tuple[bytes | None, tuple | None, np.ndarray | None]] = {}
        self._masks: dict[int, tuple[bytes | None, np.ndarray]] = {}
        self.outlines = OutlineLayer(view_box)
        self.preview = pg.PlotCurveItem(pen=pg.mkPen("w", width=1.5, style=Qt.DashLine))
        self.preview.setZValue(Z_PREVIEW)
        self.cursor = BrushCursor()
        self.surface: DrawSurface | None = None
        self.overlay: MaskOverlay | None = None
        self.enabled = True
        self._seen: tuple | None = None  # regions_fingerprint at the last load
        self._poll = QTimer(self)
        self._poll.setInterval(max(int(poll_ms), 0))
        self._poll.timeout.connect(self.poll_database)
        self._smart_init()
        if image_id is not None:
            self.set_image(image_id, image_shape)

    # ------------------------------------------------------------------------- configuration
    def set_image(self, image_id: int | None, image_shape: tuple[int, int] | None = None) -> None:
        """Show the regions of another image (None: none); drops unfinished drawing."""
        self._abort_drawing()
        self._drop_live()
        self.image_id, self.selected_id, self._crops, self._masks = image_id, None, {}, {}
        if image_id is None:
            self._teardown()
            self._poll.stop()
            self.regions = []
            self.changed.emit()
            return
        if image_shape is None:
            image_shape = stored_image_shape(self.db, image_id)
        self.image_shape = (int(image_shape[0]), int(image_shape[1]))
        self._setup_items()
        self._make_editor()
        self.reload()
        if self._poll.interval() > 0:
            self._poll.start()

    def set_database(self, db: Database) -> None:
        """Switch to another database (its undo history is separate); shows no image."""
        self.set_image(None)
        self._drop_history()
        self.db, self.editor, self.heatmap_id = db, None, None
        self.review_changed.emit()

    def shutdown(self) -> None:
        """Stop polling and drop the view items and the undo history (the window closes)."""
        self.set_image(None)
        self._drop_history()
        self._smart_shutdown()
        self.editor = None

    def _drop_history(self) -> None:
        for stack in self._stacks.values():
            self.undo_group.removeStack(stack)
            # Commands deleted now, while what they refer to lives: a stack deleted later with
            # its Python commands in it segfaulted in ~QUndoCommand after their wrappers went.
            stack.clear()
            stack.deleteLater()
        self._stacks.clear()

    def set_reviewer(self, name: str | None) -> None:
        """Draw as another reviewer (the previous one's regions become read-only)."""
        self._abort_drawing()
        self.reviewer = name
        self.selected_id = None
        self._make_editor()
        self.reload()
        self.review_changed.emit()

    def set_heatmap(self, heatmap_id: int | None) -> None:
        """The heatmap a verdict refers to (the one shown), or None."""
        self.heatmap_id = heatmap_id
        self.review_changed.emit()

    def set_tool(self, tool: str) -> None:
        if tool not in TOOL_NAMES:
            raise ValueError(f"unknown tool {tool!r}; tools are {TOOL_NAMES}")
        if tool != self.tool:
            self._abort_drawing()  # the selection stays: select a region, then erase from it
            self.tool = tool
            self._update_cursor_visibility()
            self.refresh()
            self.tool_changed.emit(tool)

    def set_structure(self, name: str, switch_tool: bool = True) -> None:
        """Draw this structure next; its default tool is selected too."""
        sd = self.structure_def(name)
        self.structure = sd.name
        if switch_tool:
            self.set_tool(sd.tool)
        self.structure_changed.emit(sd.name)
        if self.overlay is not None:
            self.overlay.set_color(sd.color)

    def set_label_set(self, labels: LabelSet) -> None:
        self.labels = labels
        self.refresh()

    def structure_def(self, name: str) -> StructureDef:
        sd = self.labels.with_names([name]).get(name)
        assert sd is not None
        return sd

    def set_brush_size(self, diameter: float) -> None:
        self.brush_diameter = float(min(max(diameter, 1.0), 1000.0))
        self.brush_size_changed.emit(self.brush_diameter)

    def set_others_visible(self, visible: bool) -> None:
        self.others_visible = bool(visible)
        self.refresh()
        self.others_visible_changed.emit(self.others_visible)

    def set_outlines_visible(self, visible: bool) -> None:
        """Show or hide the finished regions' outlines (a host that draws the regions its own
        way while the tools are off hides these)."""
        self.outlines.set_visible(visible)

    def can_cancel(self) -> bool:
        """True when ``cancel`` would do something (a shape being drawn, or a selection)."""
        return self._drawing() or self.selected_id is not None

    def set_enabled(self, enabled: bool) -> None:
        """Off: the tools ignore the mouse (the view pans/zooms as usual); outlines stay."""
        self.enabled = bool(enabled)
        if self.surface is not None:
            self.surface.active = self.enabled
        if not enabled:
            self._abort_drawing()
        self._update_cursor_visibility()
        self.refresh()  # no live ROI while disabled

    @property
    def undo_stack(self) -> QUndoStack | None:
        return self.undo_group.activeStack()

    @property
    def selected(self) -> Region | None:
        return next((r for r in self.regions if r.id == self.selected_id), None)

    def own(self, region: Region) -> bool:
        return self.editor is not None and region.reviewer_id == self.editor.reviewer_id

    # --------------------------------------------------------------------------- view items
    def _setup_items(self) -> None:
        assert self.image_shape is not None
        if self.surface is None:
            self.surface = DrawSurface(self, self.image_shape)
            self.view.addItem(self.surface, ignoreBounds=True)
            self.view.addItem(self.preview, ignoreBounds=True)
            self.view.addItem(self.cursor, ignoreBounds=True)
        else:
            self.surface.set_shape(self.image_shape)
        self.surface.active = self.enabled
        if self.overlay is not None:
            self.overlay.close()
        self.overlay = MaskOverlay(self.view, self.image_shape)
        self.overlay.set_color(self.structure_def(self.structure).color)
        self._update_cursor_visibility()

    def _teardown(self) -> None:
        self._smart_teardown()
        self.outlines.clear()
        if self.overlay is not None:
            self.overlay.close()
            self.overlay = None
        if self.surface is not None:
            for item in (self.surface, self.preview, self.cursor):
                self.view.removeItem(item)
            self.surface = None

    def detach(self) -> None:
        """Remove everything this controller added to the view."""
        self.set_image(None)

    def _make_editor(self) -> None:
        self.editor = None
        if self.image_id is None or not self.reviewer:
            return
        self.editor = Editor(self.db, self.image_id, self.reviewer)
        key = (self.image_id, self.editor.reviewer_id)
        if key not in self._stacks:
            self._stacks[key] = QUndoStack(self)
            self.undo_group.addStack(self._stacks[key])
        self.undo_group.setActiveStack(self._stacks[key])

    # ------------------------------------------------------------------------------ display
    def reload(self) -> None:
        """Re-read the image's regions from the database (e.g. after another instance's edits)."""
        if self.image_id is None:
            return
        self._seen = regions_fingerprint(self.db, self.image_id)
        self.regions = load_regions(self.db, self.image_id)
        if self.selected is None:
            self.selected_id = None
        self.refresh()
        self.changed.emit()

    def poll_database(self) -> bool:
        """Reload when another app instance changed this image's regions; True if it did.

        Skipped while something is being drawn or a mouse button is down (a ROI drag)."""
        if (
            self.image_id is None
            or self._drawing()
            or QGuiApplication.mouseButtons() != Qt.NoButton
        ):
            return False
        try:
            if regions_fingerprint(self.db, self.image_id) == self._seen:
                return False
            self.reload()
        except FundusReviewError as exc:  # e.g. the database is briefly unreachable
            self.message.emit(str(exc))
            return False
        self.message.emit("regions changed in another window and were reloaded")
        self.stored.emit(True)
        return True

    def _drawing(self) -> bool:
        busy = bool(self._poly) or self._drag_from is not None or self._stroke is not None
        return busy or self._smart_drawing()

    def refresh(self) -> None:
        sel = self.selected
        # Painting tools never show a live ROI: a stroke inside the selected ellipse must paint,
        # not drag the ellipse away.
        painting = self.tool in ("brush", "eraser", "fill")
        editable = sel is not None and self.own(sel) and self.enabled and not painting
        shape = sel.shape() if editable and sel.kind in ("ellipse", "polygon", "point") else None
        # The live ROI that has just been edited already shows the stored shape: keep it (the
        # ROI may still be inside its own event handler, and rebuilding it would flicker).
        keep = self.live is not None and shape is not None and self._live_id == sel.id
        if not (keep and self._current_of_live() == shape):
            self._drop_live()
            if shape is not None:
                self.live = make_editor(shape, self.structure_def(sel.structure).color,
                                        self._live_done)  # fmt: skip
                self._live_id = sel.id
                self.view.addItem(self.live, ignoreBounds=True)
        shown = []
        for r in self.regions:
            own = self.own(r)
            if (not own and not self.others_visible) or (self.live is not None and r.id == sel.id):
                continue
            shown.append((r, self.structure_def(r.structure).color, own, r.id == self.selected_id))
        self.outlines.show(shown)
        self.selection_changed.emit(sel)

    def _drop_live(self) -> None:
        if self.live is not None:
            self.view.removeItem(self.live)
            self.live, self._live_id = None, None

    def _current_of_live(self):  # noqa: ANN202 - the live editor's shape, or None
        try:
            return self.live.current() if self.live is not None else None
        except GeometryError:
            return None

    def _update_cursor_visibility(self) -> None:
        self.cursor.setVisible(self.tool in ("brush", "eraser") and self.enabled)

    # --------------------------------------------------------------------------- committing
    def _push(self, cmd: Command | None, performed: bool = False) -> Command | None:
        """Perform (unless already done) and record one edit; errors are reported, not raised."""
        if cmd is None or self.editor is None:
            return None
        try:
            if not performed:
                self.editor.perform(cmd)
        except (FundusReviewError, ValueError) as exc:
            self.error.emit(str(exc))
            self.reload()
            return None
        self.undo_stack.push(DbUndoCommand(self.editor, cmd, self._after, self.error.emit))
        self._after(cmd, follow=True)
        return cmd

    def _after(self, cmd: Command, follow: bool = False) -> None:
        """Show the database state after ``cmd`` ran; ``follow``: select the region it made or
        changed (a new shape stays selected for adjusting; an undo keeps the selection)."""
        if self.image_id is None:
            return
        self._seen = regions_fingerprint(self.db, self.image_id)
        self.regions = load_regions(self.db, self.image_id)
        live = {r.id for r in self.regions}
        if (follow and cmd.region_ids()) or self.selected_id not in live:
            mine = [i for i in cmd.region_ids() if i in live]
            self.selected_id = mine[-1] if mine else None
        self.refresh()
        self.changed.emit()
        if not cmd.region_ids():
            self.review_changed.emit()
        self.stored.emit(bool(cmd.region_ids()))

    def _need_editor(self) -> bool:
        if self.editor is None:
            self.error.emit("choose who you are (reviewer) before drawing")
            return False
        return True

    def _live_done(self, shape) -> None:  # noqa: ANN001 - a core.geometry shape
        sel = self.selected
        if sel is None or self.editor is None or sel.shape() == shape:
            return
        self._push(self.editor.edit_command(sel, shape))

    # --------------------------------------------------------------------------- review
    def set_status(self, status: str, comment: str | None = None) -> None:
        if self._need_editor():
            self._push_performed(lambda: self.editor.set_status(status, comment))

    def set_verdict(self, verdict: str | None, comment: str = "") -> None:
        if self.heatmap_id is None:
            self.error.emit("no heatmap is shown: choose a CAM result to judge")
            return
        if self._need_editor():
            self._push_performed(lambda: self.editor.set_verdict(self.heatmap_id, verdict, comment))

    def _push_performed(self, action) -> None:  # noqa: ANN001 - () -> Command
        try:
            cmd = action()
        except (FundusReviewError, ValueError) as exc:
            self.error.emit(str(exc))
            return
        self._push(cmd, performed=True)

    def review_state(self) -> tuple[str, str, str | None, str]:
        """(status, status comment, verdict, verdict comment) of the current reviewer."""
        if self.editor is None:
            return "unreviewed", "", None, ""
        status, comment = self.editor.review_status()
        verdict, vcomment = (
            (None, "") if self.heatmap_id is None else self.editor.verdict(self.heatmap_id)
        )
        return status, comment, verdict, vcomment
