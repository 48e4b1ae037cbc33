"""What the window has open (database, dataset, model, CAM run) and the blocking loads it needs.

No Qt here: these functions run on pool threads and are called directly by tests. Each database
call opens its own short session, so they are safe beside a running analysis.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from fundus_review.app.analyze import AnalysisRequest
from fundus_review.app.identify import Progress, identify_images
from fundus_review.app.importing import RegisteredDataset
from fundus_review.errors import FundusReviewError
from fundus_review.paths import shipped_models_dir
from fundus_review.store.db import Database, open_database
from fundus_review.views.browse import BrowseRow
from fundus_review.views.browse_index import BrowseIndex
from fundus_review.views.queries import (
    DatasetInfo,
    ImageDetail,
    RunChoice,
    dataset_root,
    find_dataset_id,
    image_detail,
    image_files,
    list_datasets,
    list_models,
    list_runs,
    load_browse_rows,
)
from fundus_review.views.scores import score_choices


def _release_in_slices(items: list, size: int = 4096) -> None:
    """Empty `items` a slice at a time (the GIL can change hands between slices)."""
    while items:
        del items[-size:]


class WindowState:
    """What the window has open and the choices made in it (not a database session)."""

    def __init__(self) -> None:
        self.db: Database | None = None
        self.db_path: str | None = None
        self.dataset_id: int | None = None
        self.bundle: Path | None = None
        self.model_id: int | None = None
        self.run_id: int | None = None
        self.reviewer: str | None = None
        self.badge: tuple[str, str] | None = ("pointing_hit", "optic_disc")  # (metric, structure)
        self.batch_size = 16
        self.labels_csv: Path | None = None  # attached from the menu; used by every re-scan
        self.classes: list[str] = []  # of the chosen bundle

    # -- database / dataset -------------------------------------------------------------
    def open_db(self, path: str | Path) -> None:
        db = open_database(path)
        if self.db is not None:
            self.db.close()
        self.db, self.db_path = db, db.display_name
        self.dataset_id = self.model_id = self.run_id = None

    def _need_db(self) -> Database:
        if self.db is None:
            raise FundusReviewError("no database is open (File ▸ Open database)")
        return self.db

    def first_dataset(self) -> DatasetInfo | None:
        datasets = list_datasets(self._need_db())
        return datasets[0] if datasets else None

    def dataset_id_for(self, root: Path) -> int | None:
        return find_dataset_id(self._need_db(), root)

    @property
    def dataset_root(self) -> Path | None:
        if self.db is None or self.dataset_id is None:
            return None
        root = dataset_root(self.db, self.dataset_id)
        return None if root is None else Path(root)

    def register(self, folder: Path, labels_csv=None) -> tuple[RegisteredDataset, bool]:
        """List the folder into the database (fast: no file is read); returns (listing, whether
        the folder was new to the database). `finish_registration` does the reading. The
        result's `scan.records` comes back empty (see below); `image_ids` has every image.

        The walk and `stat` of every file run in a child process: on this (worker) thread they
        share the GIL with the UI thread (beside the row loading, UI waits of up to 0.6 s were
        measured at 100,000 images on a loaded 2-core machine)."""
        from fundus_review.app.importing import register_dataset
        from fundus_review.data.listing import list_images_in_child

        db = self._need_db()
        first_time = find_dataset_id(db, folder) is None
        reg = register_dataset(db, folder, labels_csv, identify=False, lister=list_images_in_child)
        # The window needs the ids, not the scan's records: released here, a slice at a time.
        # Freed at once (wherever the last reference drops) 100,000 records are ~700,000 objects
        # deallocated in one C call: a 100+ ms hold of the GIL, measured.
        _release_in_slices(reg.scan.records)
        return reg, first_time

    def finish_registration(
        self,
        reg: RegisteredDataset,
        first_time: bool,
        masks_dir: Path | None = None,
        progress: Progress | None = None,
        cancel: Callable[[], bool] | None = None,
    ) -> tuple[int, list, int, int]:
        """Read the new and changed files (size, content hash), then import masks; returns
        (dataset id, problems, masks imported, files read or checked).

        Masks come from `masks_dir` (attached from the menu), else from <folder>/masks until one
        import of them succeeded: re-reading thousands of mask files on every open would only
        repeat an idempotent import (the Attach menu re-imports on demand).
        """
        from fundus_review.app.importing import has_imported_masks, import_masks

        db = self._need_db()
        problems = list(reg.problems) + identify_images(db, reg.unread, progress, cancel)
        masks = masks_dir
        if masks is None and (reg.root / "masks").is_dir():
            if first_time or not has_imported_masks(db, reg.dataset_id):
                masks = reg.root / "masks"
        n_masks = 0
        if masks is not None and not (cancel is not None and cancel()):
            summary = import_masks(db, reg, masks, "reference")
            problems.extend(summary.problems)
            n_masks = summary.imported
        return reg.dataset_id, problems, n_masks, len(reg.unread)

    def rows(self, with_files: bool) -> tuple[list[BrowseRow], dict | None, BrowseIndex]:
        """(rows, image files or None, the rows' BrowseIndex): all built on the calling worker
        thread, so the UI thread only swaps them in."""
        db = self._need_db()
        metric, structure = self.badge or (None, None)
        rows = load_browse_rows(
            db, self.dataset_id, self.model_id, self.run_id, self.rows_reviewer, metric, structure
        )
        files = image_files(db, self.dataset_id) if with_files else None
        return rows, files, BrowseIndex(rows)

    def refresh_cdr(self) -> int:
        """Measure the cup-to-disc ratios the cache lacks in this dataset (regions from before
        the cache, or without a raster); returns how many (``app.cdr.refresh_cdr_cache``)."""
        from fundus_review.app.cdr import refresh_cdr_cache

        return refresh_cdr_cache(self._need_db(), self.dataset_id)

    @property
    def rows_reviewer(self) -> str | None:
        """Whose review status and regions the browser rows show."""
        return self.reviewer

    # -- model ---------------------------------------------------------------------------
    def bundle_choices(self) -> list[tuple[str, Path]]:
        """Shipped bundles, then every bundle the database has results of (deduplicated)."""
        out: dict[str, tuple[str, Path]] = {}
        shipped = shipped_models_dir()
        if shipped.is_dir():
            for card in sorted(shipped.glob("*/model.toml")):
                out[str(card.parent.resolve())] = (card.parent.name, card.parent.resolve())
        if self.db is not None:
            for m in list_models(self.db):
                key = str(Path(m.bundle_path).resolve())
                out.setdefault(key, (f"{m.name} ({Path(m.bundle_path).name})", Path(key)))
        return list(out.values())

    def set_bundle(self, path: Path | None) -> None:
        self.bundle = None if path is None else Path(path).resolve()
        self.refresh_model()

    def refresh_model(self) -> None:
        """The stored model whose results belong to the chosen bundle (newest record wins)."""
        self.model_id = None
        if self.db is None or self.bundle is None:
            return
        for m in list_models(self.db):
            if Path(m.bundle_path).resolve() == self.bundle:
                self.model_id = m.id

    def runs(self) -> list[RunChoice]:
        """CAM runs of the chosen model (what the viewer's heatmap choice offers)."""
        if self.db is None or self.model_id is None:
            return []
        return list_runs(self.db, self.model_id)

    def score_choices(self) -> tuple[list[str], list[str]]:
        """(metrics, structures) with stored scores in this dataset: the badge's choices."""
        runs = self.dataset_runs()
        if not runs:
            return [], []
        metrics, structures, _reviewers = score_choices(self._need_db(), [r.id for r in runs])
        return metrics, structures

    def dataset_runs(self, baselines: bool = False) -> list[RunChoice]:
        """Runs of every model with heatmaps in this dataset (compare mode, summary); the
        baseline maps too with ``baselines`` (the summary shows them beside the runs)."""
        if self.db is None or self.dataset_id is None:
            return []
        kinds = ("model", "baseline") if baselines else ("model",)
        return list_runs(self.db, None, self.dataset_id, kinds)

    def analysis_request(
        self, methods: list[str], layers: list[str] | None, target: str, image_ids: list[int] | None
    ) -> AnalysisRequest:
        root = self.dataset_root
        if root is None:
            raise FundusReviewError("open a dataset first (File ▸ Open dataset folder)")
        if self.bundle is None:
            raise FundusReviewError("choose a model bundle first")
        if not methods:
            raise FundusReviewError("tick at least one CAM method")
        return AnalysisRequest(
            dataset=root,
            bundle=self.bundle,
            methods=methods,
            db=self.db_path,
            layers=layers,
            target=target or "predicted",
            image_ids=image_ids,
            labels_csv=self.labels_csv,
            batch_size=self.batch_size,
            # Opening the folder imported its masks (and the Attach menu re-imports): a job on
            # one image must not re-read every mask file of the dataset.
            import_masks=False,
        )


def load_photo(
    state: WindowState, image_id: int
) -> tuple[ImageDetail, np.ndarray, np.ndarray | None]:
    """The full-resolution photo, its record and its field-of-view mask (cached on disk)."""
    from fundus_review.app.scoring import default_fov_cache
    from fundus_review.data.images import load_image

    db = state._need_db()
    # A folder opened moments ago may not have had this file read yet (or it changed since).
    unreadable = identify_images(db, [image_id])
    if unreadable:
        raise FundusReviewError(f"{unreadable[0][0]}: {unreadable[0][1]}")
    detail = image_detail(db, image_id, state.model_id)
    rgb = np.ascontiguousarray(load_image(detail.path))
    if rgb.shape[:2] != (detail.height, detail.width):
        raise FundusReviewError(
            f"{detail.path}: the file is {rgb.shape[1]}x{rgb.shape[0]} but was registered as"
            f" {detail.width}x{detail.height}; open the dataset again to re-register it"
        )
    fov = default_fov_cache().get(detail.path, detail.sha256, rgb)
    return detail, rgb, fov


def load_bundle_card(path: Path) -> tuple[list[str], list[str]]:
    """(classes, target layers) of a bundle, for the target and layer choices (no torch)."""
    from fundus_review.inference.card import read_card

    _folder, card = read_card(path)
    return list(card.classes), list(card.target_layers)


def startup_info() -> tuple[dict[str, str], str]:
    """CAM methods {name: display name} and the device analyses will use (imports torch)."""
    from fundus_review.inference.cam import CAM_METHODS
    from fundus_review.inference.device import pick_device

    return {n: m.display_name for n, m in CAM_METHODS.items()}, str(pick_device())
