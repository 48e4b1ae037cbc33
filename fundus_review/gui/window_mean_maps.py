"""The viewer's "dataset mean" layer: where the shown run looks on average, on this photograph.

Ticking "dataset mean" averages the shown run's heatmaps over the open dataset
(``app.mean_maps.mean_maps``, registered to the field-of-view frame) on the TaskRunner's pool;
the result is kept per (dataset, run) until an analysis job finishes. The layer then shows the
mean map of the image's true class (else its predicted class, else all images), drawn onto the
photo through the photo's own field-of-view circle, scaled so its peak is 1, with the
heatmap's colormap and opacity. The status bar names the group, its n and its corner share.
"""

from __future__ import annotations

import threading

import pyqtgraph as pg
from PySide6.QtCore import QRectF, Slot

from fundus_review.gui.viewer import heatmap_lut

LAYER = "mean"
LAYER_TITLE = "dataset mean"


class MeanMapMixin:
    """Mixed into MainWindow (needs viewer, side, session, tasks, photo, status, jobs)."""

    def _build_mean_layer(self) -> None:
        self.mean_item = pg.ImageItem(axisOrder="row-major")
        self.viewer.add_layer(LAYER, self.mean_item, z=12)  # above the heatmap, under outlines
        self.mean_box = self.side.add_layer_box(LAYER, LAYER_TITLE, on=False)
        self.mean_box.setToolTip(
            "the shown run's heatmaps averaged over the dataset (this image's class), "
            "registered to the field of view and drawn onto this photo"
        )
        # (dataset, run) -> (MeanMapSet, numbers per group)
        self._mean_cache: dict[tuple[int, int], object] = {}
        self._mean_pending: tuple[int, int] | None = None
        self._mean_cancel = threading.Event()
        self.mean_shown: tuple[str, str, int] | None = None  # (grouping, group, n) on screen
        self.side.display_changed.connect(self.update_mean_layer)
        self.jobs.finished.connect(self._forget_mean_maps)

    @Slot()
    def _forget_mean_maps(self, *_args) -> None:
        """New heatmaps were stored: the cached means are out of date."""
        self._mean_cache.clear()
        self.update_mean_layer()

    def _stop_mean_maps(self) -> None:
        self._mean_cancel.set()

    @Slot()
    def update_mean_layer(self) -> None:
        if not self.mean_box.isChecked() or self.photo is None:
            self._clear_mean()
            return
        ds, run = self.session.dataset_id, self.session.run_id
        if ds is None or run is None:
            self._clear_mean()
            self.status("dataset mean: choose a heatmap first")
            return
        found = self._mean_cache.get((ds, run))
        if found is not None:
            self._draw_mean(found, run)
        elif self._mean_pending != (ds, run):
            self._start_mean(ds, run)

    def _start_mean(self, ds: int, run: int) -> None:
        from fundus_review.app.mean_maps import mean_maps
        from fundus_review.app.scoring import default_fov_cache
        from fundus_review.app.selection import ResultSelection

        db, model = self.session.db, self.session.model_id
        method = next((r.method for r in self.session.runs() if r.id == run), None)
        selection = ResultSelection(dataset=ds, models=model, methods=[method] if method else None)
        cancel = self._mean_cancel
        self._mean_pending = (ds, run)
        self.status(f"dataset mean: averaging the {method or 'run'} heatmaps of this dataset …")

        def job():  # noqa: ANN202 - (MeanMapSet, numbers per group)
            maps = mean_maps(db, selection, fov_cache=default_fov_cache(), cancelled=cancel.is_set)
            # The bootstrap CIs of the status line, here on the pool, not on the UI thread.
            numbers = {_group_key(g): g.numbers(n_resamples=1000) for g in maps.groups.values()}
            return maps, numbers

        def done(result) -> None:  # noqa: ANN001 - a MeanMapSet
            self._mean_pending = None
            if cancel.is_set():
                return
            self._mean_cache[(ds, run)] = result
            self.update_mean_layer()

        def failed(exc: BaseException) -> None:
            self._mean_pending = None
            self.show_error(exc)

        self.tasks.submit(job, done, failed, key="mean-maps", priority=1)

    def _draw_mean(self, found_maps, run: int) -> None:  # noqa: ANN001 - job()'s result
        from fundus_review.app.mean_maps import layer_for_image

        maps, numbers = found_maps
        detail, rgb, fov = self.photo
        found = layer_for_image(maps, run, detail.label, detail.prediction, fov, rgb.shape[:2])
        if found is None:
            self._clear_mean()
            self.status("dataset mean: no heatmap of this run could be averaged")
            return
        small, group = found
        h, w = rgb.shape[:2]
        self.mean_item.setImage(small, autoLevels=False, levels=(0.0, 1.0))
        self.mean_item.setRect(QRectF(0, 0, w, h))
        self.mean_item.setLookupTable(
            heatmap_lut(self.side.colormap.currentText(), self.side.fade.isChecked())
        )
        self.mean_item.setOpacity(self.side.opacity.value() / 100.0)
        self.mean_shown = (group.grouping, group.group, group.n)
        corner = numbers.get(_group_key(group), {}).get("corner_share") or {}
        share = (
            ""
            if corner.get("mean") is None
            else f"; {100 * corner['mean']:.0f} % of the mass in the corners "
            f"[{100 * corner['ci_low']:.0f}, {100 * corner['ci_high']:.0f}] "
            f"(uniform {100 * corner['uniform']:.0f} %)"
        )
        what = group.group if group.grouping == "all" else f"{group.grouping} {group.group}"
        self.status(f"dataset mean of {group.model} {group.method}, {what}: n={group.n}{share}")

    def _clear_mean(self) -> None:
        self.mean_item.clear()
        self.mean_shown = None


def _group_key(group) -> tuple:  # noqa: ANN001 - a MeanMapGroup
    return (group.run_id, group.frame, group.grouping, group.group)
