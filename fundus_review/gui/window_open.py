"""The main window's opening actions: database, dataset, labels, masks, model bundle, CAM runs.

Split out of main_window.py. Registration (listing, then reading and hashing the files, mask
import) and row queries run on the TaskRunner's pool; these slots only place results.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from PySide6.QtCore import QTimer, Slot
from PySide6.QtWidgets import QFileDialog

from fundus_review.errors import FundusReviewError
from fundus_review.gui.settings import get_str
from fundus_review.gui.trust_prompt import allow_bundle_code
from fundus_review.views.window_state import load_bundle_card


def _dataset_key(root: Path) -> str:
    return "datasets/" + hashlib.sha1(str(root).encode()).hexdigest()[:16]


class OpenMixin:
    """Mixed into MainWindow (needs its session, settings, tasks, browser, side, compare)."""

    # ------------------------------------------------------------------------------ dialogs
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
            try:
                allow_bundle_code(self, Path(folder))  # a bundle that needs code says so now
            except FundusReviewError as exc:
                self.show_error(exc)
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

    # ------------------------------------------------------------------------------ opening
    def open_database(self, path: str | Path, dataset: str | Path | None = None) -> bool:
        try:
            self.session.open_db(path)
        except FundusReviewError as exc:
            self.show_error(exc)
            return False
        self._annotation_database()
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

    def open_dataset(
        self, folder: str | Path, labels_csv: Path | None = None, masks_dir: Path | None = None
    ) -> None:
        """Show a known dataset at once; (re-)register it off the UI thread, then refresh."""
        if self.session.db is None:
            from fundus_review.paths import default_db

            if not self.open_database(default_db()):
                return
        folder = Path(folder).expanduser().resolve()
        key = _dataset_key(folder)
        if labels_csv is not None:
            self.settings.setValue(f"{key}/labels_csv", str(labels_csv))
        else:
            # A CSV attached from the menu stays attached: re-scans must not fall back to folders.
            remembered = get_str(self.settings, f"{key}/labels_csv")
            labels_csv = Path(remembered) if remembered and Path(remembered).is_file() else None
        self.session.labels_csv = labels_csv
        existing = self.session.dataset_id_for(folder)
        if existing is not None and existing != self.session.dataset_id:
            self.load_dataset(existing)
        self.status(f"scanning {folder} …")
        self._registering = True

        def register() -> None:
            self.tasks.submit(
                lambda: self.session.register(folder, labels_csv),
                lambda result: self._on_listed(result, masks_dir),
                key="register",
            )

        if self._rows_reset_since is None:
            register()  # a new folder (nothing to show before it is listed) or the one shown
            return
        # A known folder's rows are loading from the database: re-scan once they are shown.
        # Started beside the row loading, on two cores, the re-scan's start made the UI wait
        # 90-120 ms at 100,000 images; deferred, the list's longest gap was 35-80 ms (measured).
        self._register_when_shown = register
        QTimer.singleShot(10_000, self, self._start_registering)  # should the rows never come

    def _start_registering(self) -> None:
        start, self._register_when_shown = self._register_when_shown, None
        if start is not None:
            start()

    def _on_listed(self, result, masks_dir: Path | None) -> None:
        """The folder's files are rows now: show them, then read the new/changed ones (size,
        content hash; minutes for a large new folder) in the background."""
        reg, first_time = result
        cancel = self._closing.is_set
        # Started once the rows are on screen: on two cores the read would otherwise compete
        # with loading the rows and the first screen of thumbnails.
        self._read_when_shown = lambda: self.tasks.submit(
            lambda: self.session.finish_registration(
                reg, first_time, masks_dir, self._report_reading, cancel
            ),
            self._on_registered,
            key="identify",
        )
        if reg.dataset_id != self.session.dataset_id:
            self.load_dataset(reg.dataset_id)
        elif reg.changed:  # the rows on screen came from the database: only news matter
            self.refresh_rows(with_files=True)
        else:
            self._start_reading_soon()

    def _report_reading(self, done: int, total: int) -> None:
        # Runs on the pool thread: only a queued signal may cross to the UI.
        try:
            self.reading_progress.emit((done, total))
        except RuntimeError:
            pass  # the window is gone; the pass stops at its next chunk

    @Slot(object)
    def _show_reading(self, progress: tuple[int, int]) -> None:
        done, total = progress
        if done < total:
            self.status(f"reading new files: {done:,}/{total:,} …")

    def _on_registered(self, result) -> None:
        dataset_id, problems, n_masks, n_read = result
        self._registering = False
        note = (
            f"; {len(problems)} file(s) skipped (first: {problems[0][0]}: {problems[0][1]})"
            if problems
            else ""
        )
        masks = f", {n_masks} expert mask(s) imported" if n_masks else ""
        self.status(f"dataset registered{masks}{note}")
        if dataset_id == self.session.dataset_id:
            if n_read or n_masks:  # unreadable files gone, changed files; thumbnails made stay
                self.refresh_rows(with_files=True)
            if n_masks:
                self.reload_overlays()  # the photo on screen may have expert regions now
        else:
            self.load_dataset(dataset_id)
        self.registered.emit(dataset_id)

    def load_dataset(self, dataset_id: int) -> None:
        self.session.dataset_id = dataset_id
        root = self.session.dataset_root
        self.settings.setValue("last_dataset", str(root))
        self._rows_reset_since = time.perf_counter()
        self.refresh_runs()
        self.refresh_rows(with_files=True)

    def refresh_rows(self, with_files: bool = False) -> None:
        """Reload the rows off the UI thread. A newer request supersedes an older one, so a
        pending first load (reset, files) is carried over instead of being lost."""
        if self.session.dataset_id is None:
            return
        self._last_row_refresh = time.monotonic()
        t0 = self._rows_reset_since
        with_files = with_files or t0 is not None
        self.tasks.submit(
            lambda: self.session.rows(with_files=with_files),
            lambda res: self._on_rows(res, t0, reset=t0 is not None),
            key="rows",
        )

    def _on_rows(self, result, t0: float | None, reset: bool) -> None:
        self._rows_reset_since = None
        rows, files, index = result
        current = self.browser.current_id()
        self.browser.set_rows(rows, files, keep_view=not reset, index=index)
        if reset:
            self.status(
                f"{len(rows)} images in {self.session.dataset_root} "
                f"({time.perf_counter() - t0:.2f} s)"
            )
        self.side.set_structures(self.browser.model.state.distinct("structures"))
        if current is None or not self.browser.select_image(current):
            if self.browser.model.rowCount() and reset:
                self.browser.list.setCurrentIndex(self.browser.model.index(0))
        self.rows_loaded.emit(len(rows))
        # As for the read: the first paint, photo and thumbnails go before the re-scan.
        QTimer.singleShot(300, self, self._start_registering)
        self._start_reading_soon()
        if reset:  # ratios of regions drawn before the CDR cache existed: once, in the background
            self.tasks.submit(
                self.session.refresh_cdr,
                lambda n: self.refresh_rows() if n else None,
                key="cdr-cache",
            )

    def _start_reading_soon(self) -> None:
        if self._read_when_shown is None:
            return
        start, self._read_when_shown = self._read_when_shown, None
        QTimer.singleShot(300, self, start)  # (self: not after the window is gone)
        # torch's import waits for the read to finish, but not for minutes on a large new
        # folder: the CAM methods and the device are wanted long before that.
        QTimer.singleShot(5000, self, lambda: self._start_startup_info(force=True))

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
        self.session.classes = list(classes)
        self.side.set_card(classes, layers)

    def refresh_runs(self) -> None:
        """Runs of the chosen model (heatmap choice) and of every model (compare, summary)."""
        self.session.refresh_model()
        self.side.set_runs(self.session.runs())
        self.compare.set_runs(self.session.dataset_runs())
        self._on_heatmap_changed()
