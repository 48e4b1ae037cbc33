"""The main window: browser | viewer (+ compare, summary) | side panel, menus, status bar.

All slow work runs elsewhere: analysis jobs on the JobController's QThread, dataset registration,
row queries, photo decoding and overlay building on the TaskRunner's pool. The UI thread only
places results, so browsing and zooming stay responsive while a whole-dataset job runs.
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, Slot
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QTabWidget,
)

from fundus_review.errors import FundusReviewError
from fundus_review.gui.browser import BrowserPanel
from fundus_review.gui.compare import CompareView
from fundus_review.gui.loading import Session, load_bundle_card, load_photo, startup_info
from fundus_review.gui.overlays import Overlays, build_overlays
from fundus_review.gui.settings import get_str, open_settings
from fundus_review.gui.side_panel import SidePanel
from fundus_review.gui.summary import SummaryPanel
from fundus_review.gui.tasks import TaskRunner
from fundus_review.gui.viewer import ImageViewer
from fundus_review.gui.window_jobs import JobsMixin
from fundus_review.gui.worker import JobController


class MainWindow(JobsMixin, QMainWindow):
    def __init__(
        self,
        db: str | Path | None = None,
        dataset: str | Path | None = None,
        model: str | Path | None = None,
        settings: QSettings | None = None,
    ) -> None:
        super().__init__()
        self.setWindowTitle("fundus-review")
        self.settings = open_settings(settings)
        self.session = Session()
        self.tasks = TaskRunner(self, max_threads=2)
        self.tasks.error.connect(self.show_error)
        self.jobs = JobController(self)
        self.last_error: str | None = None
        self.photo = None  # (image_id, rgb, fov)
        self.overlays: Overlays | None = None
        self._last_row_refresh = 0.0
        self._build_ui()
        self._connect()
        self._restore_layout()
        # torch is imported here, on its own thread, so the first rows and photo are not queued
        # behind it.
        self._startup = TaskRunner(self, max_threads=1)
        self._startup.submit(startup_info, self._on_startup_info, self.show_error)
        db = db or get_str(self.settings, "last_db")
        model = model or get_str(self.settings, "last_model")
        self.refresh_bundles(Path(model) if model else None)
        if db:
            self.open_database(db, dataset or get_str(self.settings, "last_dataset"))

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
        for name, widget, area in (
            ("Images", self.browser, Qt.LeftDockWidgetArea),
            ("Analysis", self.side, Qt.RightDockWidgetArea),
        ):
            dock = QDockWidget(name, self)
            dock.setObjectName(f"dock_{name}")
            dock.setWidget(widget)
            self.addDockWidget(area, dock)
        self.status_text = QLabel("")
        self.hover_text = QLabel("")
        self.device_text = QLabel("device: …")
        self.statusBar().addWidget(self.status_text, 1)
        self.statusBar().addPermanentWidget(self.hover_text)
        self.statusBar().addPermanentWidget(self.device_text)
        m = self.menuBar().addMenu("&File")
        self._action(m, "Open &dataset folder…", self.ask_dataset, QKeySequence.Open)
        self._action(m, "Open data&base…", self.ask_database)
        self._action(m, "Attach &labels CSV…", self.ask_labels)
        self._action(m, "Import expert &masks folder…", self.ask_masks)
        m.addSeparator()
        self.export_action = self._action(m, "&Export report…", self.export_report)
        m.addSeparator()
        self._action(m, "&Quit", self.close, QKeySequence.Quit)
        a = self.menuBar().addMenu("&Analysis")
        self._action(a, "Run on current &image", lambda: self.start_job("image"), "Ctrl+R")
        self._action(a, "Run on &selection", lambda: self.start_job("selection"))
        self._action(a, "Run on &all images", lambda: self.start_job("all"))
        self._action(a, "&Cancel", self.jobs.cancel, "Esc")
        v = self.menuBar().addMenu("&View")
        self._action(v, "&Reset zoom", lambda: self.viewer.view.autoRange(padding=0.01), "Ctrl+0")
        grid = self._action(v, "Thumbnail &grid", self.browser.grid_toggle.toggle, "Ctrl+G")
        grid.setCheckable(False)
        self._action(v, "&Compare mode", lambda: self.tabs.setCurrentWidget(self.compare), "Ctrl+2")
        self._action(v, "&Summary", lambda: self.tabs.setCurrentWidget(self.summary), "Ctrl+3")
        self._action(v, "&Viewer", lambda: self.tabs.setCurrentWidget(self.viewer), "Ctrl+1")
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
        self.side.run_requested.connect(self.start_job)
        self.side.cancel_requested.connect(self.jobs.cancel)
        self.side.bundle_changed.connect(self.set_bundle)
        self.side.browse_bundle.connect(self.ask_bundle)
        self.side.run_changed.connect(self._on_run_changed)
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
            self.resizeDocks(docks, [330, 390], Qt.Horizontal)
        self.side.opacity.setValue(int(self.settings.value("opacity", 50)))
        cmap = get_str(self.settings, "colormap")
        if cmap and self.side.colormap.findText(cmap) >= 0:
            self.side.colormap.setCurrentText(cmap)

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt API
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("window_state", self.saveState())
        self.settings.setValue("opacity", self.side.opacity.value())
        self.settings.setValue("colormap", self.side.colormap.currentText())
        self.settings.sync()
        # Results are committed per batch: stopping after the current one loses nothing finished.
        self.jobs.shutdown()
        self.tasks.wait(10000)
        self.browser.model.loader.wait(10000)
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
        self.status_text.setText("⚠ " + text.splitlines()[0])
        box = QMessageBox(QMessageBox.Warning, "fundus-review", text.split("\n\n")[0], parent=self)
        if "\n\n" in text:
            box.setDetailedText(text)
        box.setModal(False)
        box.show()

    def status(self, text: str) -> None:
        self.status_text.setText(text)

    # ------------------------------------------------------------------------------ opening
    def ask_database(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self,
            "Open or create a database",
            "",
            "SQLite (*.db *.sqlite);;All files (*)",
            options=QFileDialog.DontConfirmOverwrite,
        )
        if path:
            self.open_database(path)

    def ask_dataset(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a dataset folder")
        if folder:
            self.open_dataset(folder)

    def ask_bundle(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a model bundle folder")
        if folder:
            self.refresh_bundles(Path(folder))
            self.set_bundle(Path(folder))

    def ask_labels(self) -> None:
        if self.session.dataset_root is None:
            return self.show_error(FundusReviewError("open a dataset first"))
        path, _ = QFileDialog.getOpenFileName(self, "Labels CSV", "", "CSV (*.csv)")
        if path:
            self.open_dataset(self.session.dataset_root, labels_csv=Path(path))

    def ask_masks(self) -> None:
        if self.session.dataset_root is None:
            return self.show_error(FundusReviewError("open a dataset first"))
        folder = QFileDialog.getExistingDirectory(
            self, "Masks folder (masks/<structure>/<stem>.png)"
        )
        if folder:
            self.open_dataset(self.session.dataset_root, masks_dir=Path(folder))

    def open_database(self, path: str | Path, dataset: str | Path | None = None) -> bool:
        try:
            self.session.open_db(path)
        except FundusReviewError as exc:
            self.show_error(exc)
            return False
        self.settings.setValue("last_db", str(self.session.db_path))
        self.setWindowTitle(f"fundus-review — {self.session.db_path}")
        self.refresh_bundles(self.side.bundle_path())
        self.set_bundle(self.side.bundle_path())
        if dataset:
            self.open_dataset(dataset)
        else:
            ds = self.session.first_dataset()
            if ds is not None:
                self.load_dataset(ds.id)
            else:
                self.status("empty database: open a dataset folder (File ▸ Open dataset folder)")
        return True

    def open_dataset(self, folder: str | Path, labels_csv=None, masks_dir=None) -> None:
        """Register the folder (hashing files can take a while) off the UI thread, then show it."""
        if self.session.db is None:
            from fundus_review.paths import default_db

            if not self.open_database(default_db()):
                return
        folder = Path(folder)
        existing = self.session.dataset_id_for(folder)
        if existing is not None and labels_csv is None and masks_dir is None:
            self.load_dataset(existing)  # show at once; re-scan in the background for new files
        self.status(f"scanning {folder} …")
        self.tasks.submit(
            lambda: self.session.register(folder, labels_csv, masks_dir), self._on_registered
        )

    def _on_registered(self, result) -> None:
        dataset_id, problems, n_masks = result
        note = (
            f"; {len(problems)} file(s) skipped (first: {problems[0][0]}: {problems[0][1]})"
            if problems
            else ""
        )
        masks = f", {n_masks} expert mask(s) imported" if n_masks else ""
        self.status(f"dataset registered{masks}{note}")
        self.load_dataset(dataset_id)

    def load_dataset(self, dataset_id: int) -> None:
        self.session.dataset_id = dataset_id
        root = self.session.dataset_root
        self.settings.setValue("last_dataset", str(root))
        t0 = time.perf_counter()
        self.tasks.submit(
            lambda: self.session.rows(with_files=True),
            lambda res: self._on_rows(res, t0, reset=True),
            key="rows",
        )

    def refresh_rows(self) -> None:
        if self.session.dataset_id is None:
            return
        self._last_row_refresh = time.monotonic()
        self.tasks.submit(
            lambda: self.session.rows(with_files=False),
            lambda res: self._on_rows(res, None, reset=False),
            key="rows",
        )

    def _on_rows(self, result, t0: float | None, reset: bool) -> None:
        rows, files = result
        current = self.browser.current_id()
        if reset:
            self.browser.set_rows(rows, files)
            self.status(
                f"{len(rows)} images in {self.session.dataset_root} "
                f"({time.perf_counter() - t0:.2f} s)"
            )
        else:
            self.browser.model.update_rows(rows)
        self.side.set_structures(self.browser.model.state.distinct("structures"))
        if current is None or not self.browser.select_image(current):
            if self.browser.model.rowCount() and reset:
                self.browser.list.setCurrentIndex(self.browser.model.index(0))

    # ------------------------------------------------------------------------------ model
    def refresh_bundles(self, current: Path | None = None) -> None:
        self.side.set_bundles(self.session.bundle_choices(), current)

    @Slot(object)
    def set_bundle(self, path: Path | None) -> None:
        self.session.set_bundle(path)
        if path is not None:
            self.settings.setValue("last_model", str(path))
            self.tasks.submit(lambda: load_bundle_card(path), self._on_card, key="card")
        self.refresh_runs()

    def _on_card(self, card) -> None:
        classes, layers = card
        self.side.set_card(classes, layers)

    def refresh_runs(self, keep: int | None = None) -> None:
        self.session.refresh_model()
        self.side.set_runs(self.session.runs(), keep)
        self._on_run_changed(self.side.run_id())

    @Slot(object)
    def _on_run_changed(self, run_id: int | None) -> None:
        self.session.run_id = run_id
        self.compare.set_runs(self.session.runs())
        self.refresh_rows()
        self.reload_overlays()

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
        self.tasks.submit(
            lambda: load_photo(session, image_id), self._on_photo, key="photo", priority=10
        )

    def _on_photo(self, result) -> None:
        detail, rgb, fov = result
        self.photo = (detail, rgb, fov)
        self.viewer.set_photo(rgb)
        self.side.show_prediction(detail)
        self.compare.set_image(detail, rgb, fov)
        self.reload_overlays()

    def reload_overlays(self) -> None:
        if self.photo is None or self.session.db is None:
            return
        detail, rgb, fov = self.photo
        db, run_id, method = self.session.db, self.session.run_id, self.side.binarize.currentText()
        self.tasks.submit(
            lambda: build_overlays(db, detail.image_id, run_id, rgb.shape[:2], fov, method),
            self._on_overlays,
            key="overlays",
            priority=5,
        )

    def _on_overlays(self, ov: Overlays) -> None:
        self.overlays = ov
        self.viewer.set_overlays(ov)
        self._apply_display()
        if self.photo is not None:
            self.side.show_prediction(self.photo[0], ov.target_index)
        self.side.show_scores(ov)

    @Slot()
    def _apply_display(self) -> None:
        for viewer in [self.viewer, *self.compare.viewers]:
            viewer.set_opacity(self.side.opacity.value() / 100.0)
            viewer.set_colormap(self.side.colormap.currentText(), self.side.fade.isChecked())
            for layer, box in self.side.layer_boxes.items():
                viewer.set_layer_visible(layer, box.isChecked())
            for structure, box in self.side.structure_boxes.items():
                viewer.set_structure_visible(structure, box.isChecked())

    @Slot(object)
    def _on_hover(self, info) -> None:
        x, y, value = info
        heat = "" if value is None else f"  heat {value:.3f}"
        self.hover_text.setText(f"x {x:.0f}  y {y:.0f}{heat}")

    @Slot(object)
    def _open_from_summary(self, image_id: int) -> None:
        if not self.browser.select_image(image_id):
            self.browser.filters.text.clear()
            self.browser.select_image(image_id)
        self.tabs.setCurrentWidget(self.viewer)
