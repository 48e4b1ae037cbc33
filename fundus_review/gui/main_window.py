"""The main window: browser | viewer (+ compare, summary) | side panel, menus, status bar.

All slow work runs elsewhere: analysis jobs on the JobController's QThread, dataset registration,
scoring, row queries, photo decoding and overlay building on the TaskRunner's pool. The UI thread
only places results, so browsing and zooming stay responsive while a whole-dataset job runs.
Opening things lives in window_open.py, jobs and the report in window_jobs.py, the drawing and
review tools in window_annotate.py, the dataset-mean layer in window_mean_maps.py.
"""

from __future__ import annotations

import gc
import sys
import threading
from contextlib import suppress
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, Signal, Slot
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDockWidget, QLabel, QMainWindow, QMessageBox, QTabWidget

from fundus_review.errors import FundusReviewError
from fundus_review.gui.browser import BrowserPanel
from fundus_review.gui.compare import CompareView
from fundus_review.gui.settings import get_str, open_settings
from fundus_review.gui.side_panel import SidePanel
from fundus_review.gui.summary import SummaryPanel
from fundus_review.gui.tasks import TaskRunner
from fundus_review.gui.thumbs import load_preview, save_preview
from fundus_review.gui.viewer import ImageViewer
from fundus_review.gui.window_annotate import AnnotateMixin, ReviewWindowState
from fundus_review.gui.window_jobs import JobsMixin
from fundus_review.gui.window_mean_maps import MeanMapMixin
from fundus_review.gui.window_open import OpenMixin
from fundus_review.gui.worker import JobController
from fundus_review.views.overlays import Overlays, build_overlays, pick_overlays
from fundus_review.views.pyramid import Pyramid
from fundus_review.views.queries import run_for_target
from fundus_review.views.window_state import load_photo, startup_info


def _tune_interpreter() -> None:
    """Keep the UI thread's waits for the GIL short in the window's process.

    A full garbage collection walks every tracked object while holding the GIL: with 100,000
    browser rows (a million objects) that is a 300 ms freeze of the UI each time, and loading the
    rows on a worker thread used to trigger several. The young generations are still collected as
    usual (they catch nearly all cyclic garbage); only the oldest waits 100x as long. And while
    workers run Python code (listing a folder, loading rows), the UI thread gets the GIL only
    after the switch interval: 1 ms instead of 5 ms lets it paint between their steps.
    """
    young, middle, old = gc.get_threshold()
    gc.set_threshold(young, middle, max(old, 1000))
    sys.setswitchinterval(min(sys.getswitchinterval(), 0.001))


class MainWindow(OpenMixin, JobsMixin, AnnotateMixin, MeanMapMixin, QMainWindow):
    registered = Signal(object)  # dataset id, after a (re-)registration finished
    reading_progress = Signal(object)  # (done, total) of the background read of new files
    rows_loaded = Signal(int)  # number of rows now in the browser
    overlays_shown = Signal(object)  # the Overlays now in the viewer
    scoring_done = Signal(object)  # scoring.ScoringSummary
    report_done = Signal(object)  # report.ReportResult

    def __init__(
        self,
        db: str | Path | None = None,
        dataset: str | Path | None = None,
        model: str | Path | None = None,
        settings: QSettings | None = None,
    ) -> None:
        super().__init__()
        _tune_interpreter()
        self.setWindowTitle("fundus-review")
        self.settings = open_settings(settings)
        self.session = ReviewWindowState()
        self.tasks = TaskRunner(self, max_threads=2)
        self.tasks.error.connect(self.show_error)
        self.jobs = JobController(self)
        self.last_error: str | None = None
        self.photo = None  # (ImageDetail, rgb, fov)
        self.photo_pyramid = None  # the photo's display levels (pyramid.Pyramid)
        self.overlays: Overlays | None = None
        self._last_row_refresh = 0.0
        self._rows_reset_since: float | None = None  # a dataset was opened, rows not shown yet
        self._build_ui()
        self._connect()
        self._restore_layout()
        # torch (CAM methods, device) is imported on its own thread once the first rows are
        # shown: importing it holds the GIL for long stretches, which would slow the opening.
        self._startup = TaskRunner(self, max_threads=1)
        self._startup_started = False
        self._registering = False
        self._closing = threading.Event()  # tells background passes to stop at their next chunk
        self._read_when_shown = None  # starts the background read of a listed folder's files
        self._register_when_shown = None  # starts the re-scan of a known folder once it shows
        self.rows_loaded.connect(self._start_startup_info)
        self.registered.connect(self._start_startup_info)
        self.reading_progress.connect(self._show_reading)
        db = db or get_str(self.settings, "last_db")
        model = model or get_str(self.settings, "last_model")
        self.refresh_bundles(Path(model) if model else None)
        if db:
            self.open_database(db, dataset or get_str(self.settings, "last_dataset"))
        elif dataset:
            self.open_dataset(dataset)
        if self.session.dataset_id is None and not dataset:
            self._start_startup_info()  # nothing to open: no reason to wait

    # ------------------------------------------------------------------------------ layout
    def _build_ui(self) -> None:
        self.viewer = ImageViewer()
        self.compare = CompareView(self.session, self.tasks)
        self.summary = SummaryPanel(self.session, self.tasks)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.viewer, "Viewer")
        self.tabs.addTab(self.compare, "Compare")
        self.tabs.addTab(self.summary, "Summary")
        self.setCentralWidget(self.tabs)
        self.browser = BrowserPanel()
        self.side = SidePanel()
        # Other tools (annotation drawing) add their own tabs next to "Analysis".
        self.side_tabs = QTabWidget()
        self.side_tabs.addTab(self.side, "Analysis")
        for name, widget, area in (
            ("Images", self.browser, Qt.LeftDockWidgetArea),
            ("Tools", self.side_tabs, Qt.RightDockWidgetArea),
        ):
            dock = QDockWidget(name, self)
            dock.setObjectName(f"dock_{name}")
            dock.setWidget(widget)
            self.addDockWidget(area, dock)
        self._build_annotation()
        self._build_mean_layer()
        self.status_text = QLabel("")
        self.hover_text = QLabel("")
        self.device_text = QLabel("device: …")
        self.statusBar().addWidget(self.status_text, 1)
        self.statusBar().addPermanentWidget(self.hover_text)
        self.statusBar().addPermanentWidget(self.device_text)
        self._build_menus()

    def _build_menus(self) -> None:
        m = self.menuBar().addMenu("&File")
        self._action(m, "Open &dataset folder…", self.ask_dataset, QKeySequence.Open)
        self._action(m, "Open data&base…", self.ask_database)
        self._action(m, "Open model &bundle…", self.ask_bundle)
        m.addSeparator()
        self._action(m, "Attach &labels CSV…", self.ask_labels)
        self._action(m, "Attach expert &masks folder…", self.ask_masks)
        m.addSeparator()
        self.export_action = self._action(m, "&Export report…", self.export_report)
        m.addSeparator()
        self._action(m, "&Quit", self.close, QKeySequence.Quit)
        self._fill_edit_menu(self.menuBar().addMenu("&Edit"))
        a = self.menuBar().addMenu("&Analysis")
        self._action(a, "Run on current &image", lambda: self.start_job("image"), "Ctrl+R")
        self._action(a, "Run on &selection", lambda: self.start_job("selection"))
        self._action(a, "Run on &all images", lambda: self.start_job("all"))
        self._action(a, "Compute the &missing heatmap", self.compute_missing, "Ctrl+K")
        self._action(a, "&Cancel\tEsc", self.jobs.cancel)  # the key: _on_escape
        a.addSeparator()
        self._action(a, "Compute &scores now", self.score_now)
        v = self.menuBar().addMenu("&View")
        self._action(v, "&Viewer", lambda: self.tabs.setCurrentWidget(self.viewer), "Ctrl+1")
        self._action(v, "&Compare mode", lambda: self.tabs.setCurrentWidget(self.compare), "Ctrl+2")
        self._action(v, "&Summary", lambda: self.tabs.setCurrentWidget(self.summary), "Ctrl+3")
        self._action(v, "&Reset zoom", self._reset_zoom, "Ctrl+0")
        self._action(v, "Thumbnail &grid", self.browser.grid_toggle.toggle, "Ctrl+G")
        self._wire_export()

    def _action(self, menu, text, slot, shortcut=None) -> QAction:
        act = QAction(text, self)
        if shortcut is not None:
            act.setShortcut(QKeySequence(shortcut))
        act.triggered.connect(slot)
        menu.addAction(act)
        return act

    def _connect(self) -> None:
        self.browser.current_changed.connect(self.show_image)
        self.browser.badge_changed.connect(self._on_badge_changed)
        self.side.run_requested.connect(self.start_job)
        self.side.cancel_requested.connect(self.jobs.cancel)
        self.side.bundle_changed.connect(self.set_bundle)
        self.side.browse_bundle.connect(self.ask_bundle)
        self.side.heatmap_changed.connect(self._on_heatmap_changed)
        self.side.compute_requested.connect(self.compute_missing)
        self.side.display_changed.connect(self._apply_display)
        self.side.binarize.currentIndexChanged.connect(lambda _i: self.reload_overlays())
        self.jobs.started.connect(self._on_job_started)
        self.jobs.progress.connect(self._on_job_progress)
        self.jobs.image_failed.connect(self._on_image_failed)
        self.jobs.finished.connect(self._on_job_finished)
        self.jobs.failed.connect(self.show_error)
        self.jobs.running_changed.connect(self.side.set_running)
        self.viewer.hovered.connect(self._on_hover)
        self.summary.open_image.connect(self._open_from_summary)
        self.tabs.currentChanged.connect(self._on_tab)
        self.compare.tiles_changed.connect(self._apply_display)
        self._connect_annotation()

    def _restore_layout(self) -> None:
        geo, state = self.settings.value("geometry"), self.settings.value("window_state")
        if geo is not None:
            self.restoreGeometry(geo)
        else:
            self.resize(1580, 960)
        if state is not None:
            self.restoreState(state)
        else:
            docks = self.findChildren(QDockWidget)
            self.resizeDocks(docks, [330, 400], Qt.Horizontal)
        self.side.opacity.setValue(int(self.settings.value("opacity", 50)))
        cmap = get_str(self.settings, "colormap")
        if cmap and self.side.colormap.findText(cmap) >= 0:
            self.side.colormap.setCurrentText(cmap)
        self.browser.grid_toggle.setChecked(get_str(self.settings, "grid") == "1")

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt API
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("window_state", self.saveState())
        self.settings.setValue("opacity", self.side.opacity.value())
        self.settings.setValue("colormap", self.side.colormap.currentText())
        self.settings.setValue("grid", "1" if self.browser.grid_toggle.isChecked() else "0")
        self.settings.sync()
        self._close_annotation()
        self._closing.set()
        self._stop_mean_maps()
        # Results are committed per batch: stopping after the current one loses nothing finished.
        self.jobs.shutdown()
        self.tasks.shutdown(10000)
        self.browser.model.loader.shutdown(10000)
        # A thread still importing torch when Python exits dies mid-import (Qt reports it).
        self._startup.shutdown(30000)
        super().closeEvent(event)

    # ------------------------------------------------------------------------------ errors
    @Slot(object)
    def show_error(self, error: object) -> None:
        """Every failure ends here: status bar always, a dialog for anything not routine."""
        text = (
            str(error)
            if not isinstance(error, BaseException) or isinstance(error, FundusReviewError)
            else f"{type(error).__name__}: {error}"
        )
        self.last_error = text
        self._registering = False  # an opening that failed must not hold the device read-out
        self._start_startup_info()
        self.status_text.setText("⚠ " + text.splitlines()[0])
        box = QMessageBox(QMessageBox.Warning, "fundus-review", text.split("\n\n")[0], parent=self)
        if "\n\n" in text:
            box.setDetailedText(text)
        box.setModal(False)
        box.show()

    def status(self, text: str) -> None:
        self.status_text.setText(text)

    @Slot()
    def _start_startup_info(self, *_args, force: bool = False) -> None:
        # After the rows are shown and the background re-scan is done: then the UI is idle.
        if not self._startup_started and (force or not self._registering):
            self._startup_started = True
            self._startup.submit(startup_info, self._on_startup_info, self.show_error)

    def _on_startup_info(self, info) -> None:
        methods, device = info
        self.side.set_methods(methods)
        self.device_text.setText(f"device: {device}")

    # ------------------------------------------------------------------------------ viewer
    @Slot(object)
    def show_image(self, image_id: int | None) -> None:
        if image_id is None or self.session.db is None:
            return
        session = self.session

        def job():
            detail, rgb, fov = load_photo(session, image_id)
            pyramid = Pyramid(rgb).prepare()
            with suppress(OSError):  # no preview next time, nothing worse
                save_preview(detail.path, pyramid)
            return detail, rgb, fov, pyramid

        self.tasks.submit(job, self._on_photo, key="photo", priority=10)
        src = self.browser.model.files.get(image_id)
        if src is not None:
            self.tasks.submit(
                lambda: load_preview(src[0]),
                lambda pyr: self._on_preview(image_id, pyr),
                key="preview",
                priority=11,
            )

    def _on_preview(self, image_id: int, pyramid) -> None:  # noqa: ANN001 - PreviewPyramid
        """A cached mid-size copy of a large photo, shown while the photo itself decodes."""
        if pyramid is None or self.browser.current_id() != image_id:
            return
        if self.photo is not None and self.photo[0].image_id == image_id:
            return  # the photo itself came first
        # Until the photo arrives nothing may refer to the previous one: no overlays (set_photo
        # clears them) and no drawing, which would land on the previous image.
        self.photo = self.photo_pyramid = None
        self._annotation_image(None, None)
        self.viewer.set_photo(pyramid)

    def _on_photo(self, result) -> None:
        detail, rgb, fov, pyramid = result
        self.photo, self.photo_pyramid = (detail, rgb, fov), pyramid
        self.viewer.set_photo(pyramid)
        self._annotation_image(detail.image_id, rgb.shape[:2])
        self.side.show_prediction(detail)
        if self.tabs.currentWidget() is self.compare:
            self.compare.set_image(detail, rgb, fov, pyramid)
        self.reload_overlays()

    def heatmap_candidates(self) -> list[tuple[int, int | None]] | None:
        """Runs that can show the chosen heatmap (see overlays.pick_overlays); None: no heatmap."""
        recipe = self.side.chosen_recipe()
        if recipe is None:
            return None
        runs, cls = self.session.runs(), self.side.chosen_class()
        out: list[tuple[int, int | None]] = []
        exact = run_for_target(runs, recipe, cls)
        if exact is not None:
            out.append((exact.id, None))
        if cls is not None and cls in self.session.classes:
            predicted = run_for_target(runs, recipe, None)
            if predicted is not None:
                out.append((predicted.id, self.session.classes.index(cls)))
        return out

    @Slot()
    def _on_heatmap_changed(self) -> None:
        """Another recipe or class: the badges follow its run, the viewer its heatmap."""
        candidates = self.heatmap_candidates() or []
        run_id = candidates[0][0] if candidates else None
        if run_id != self.session.run_id:
            self.session.run_id = run_id
            self.refresh_rows()
        self.reload_overlays()

    def reload_overlays(self) -> None:
        if self.photo is None or self.session.db is None:
            return
        detail, rgb, fov = self.photo
        db, method = self.session.db, self.side.binarize.currentText()
        candidates = self.heatmap_candidates()
        image_id, shape = detail.image_id, rgb.shape[:2]

        def job() -> Overlays:
            if candidates is None:
                return build_overlays(db, image_id, None, shape, fov, method)
            return pick_overlays(db, image_id, candidates, shape, fov, method)

        self.tasks.submit(job, self._on_overlays, key="overlays", priority=5)

    def _on_overlays(self, ov: Overlays) -> None:
        if self.photo is None or ov.image_id != self.photo[0].image_id:
            return
        self.overlays = ov
        self.viewer.set_overlays(ov)
        self._annotation_heatmap(ov)
        self._apply_display()
        self.side.show_prediction(self.photo[0], ov.target_index)
        self.side.show_scores(ov)
        if ov.missing:
            recipe = self.side.chosen_recipe()
            cls = self.side.chosen_class() or "its predicted class"
            what = f"{recipe[0]} for {cls}" if recipe else "this heatmap"
            self.side.show_missing(f"no stored {what} on this image")
            self.viewer.show_message(f"no {what} heatmap stored: Compute (Ctrl+K)")
        else:
            self.side.show_missing(None)
        self.update_mean_layer()
        self.overlays_shown.emit(ov)

    @Slot()
    def _apply_display(self) -> None:
        for viewer in [self.viewer, *self.compare.viewers]:
            viewer.set_opacity(self.side.opacity.value() / 100.0)
            viewer.set_colormap(self.side.colormap.currentText(), self.side.fade.isChecked())
            for layer, box in self.side.layer_boxes.items():
                if layer in viewer.visible:
                    viewer.set_layer_visible(layer, box.isChecked())
            for structure, box in self.side.structure_boxes.items():
                viewer.set_structure_visible(structure, box.isChecked())
        if self.annotating:  # the drawing tools draw every region themselves
            self.viewer.set_layer_visible("regions", False)

    def _reset_zoom(self) -> None:
        target = self.compare.viewers[0] if self.tabs.currentWidget() is self.compare else None
        (target or self.viewer).fit()

    @Slot(int)
    def _on_tab(self, _index: int) -> None:
        self._update_annotating()
        # Compare tiles load only while visible: browsing with the viewer costs nothing extra.
        if self.tabs.currentWidget() is self.compare and self.photo is not None:
            self.compare.set_image(*self.photo, self.photo_pyramid)
        elif self.tabs.currentWidget() is self.summary:
            self.summary.refresh()

    @Slot(object)
    def _on_hover(self, info) -> None:
        x, y, value = info
        heat = "" if value is None else f"  heat {value:.3f}"
        self.hover_text.setText(f"x {x:.0f}  y {y:.0f}{heat}")

    @Slot(object)
    def _open_from_summary(self, image_id: int) -> None:
        if not self.browser.select_image(image_id):
            self.browser.clear_filters()
            self.browser.select_image(image_id)
        self.tabs.setCurrentWidget(self.viewer)

    @Slot()
    def _on_badge_changed(self) -> None:
        self.session.badge = self.browser.badge()
        self.refresh_rows()
