"""Read-side queries of the review application (Qt-free, so they are tested without a display).

The browser needs one row per image for 10,000 images in about a second, so rows are built from a
few bulk SELECTs (images, labels, predictions, reviews, annotations, scores; `store.repo_views`)
joined here in Python, never one query per image. Every function opens its own short read-only
session, which makes them safe to call from worker threads beside a running analysis (SQLite WAL:
readers never block it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fundus_review.store import Session, repo, repo_cdr, repo_views
from fundus_review.store.db import Database
from fundus_review.views.browse import BrowseRow


@dataclass(frozen=True)
class DatasetInfo:
    id: int
    name: str
    root: str
    n_images: int


@dataclass(frozen=True)
class ModelInfo:
    id: int
    name: str
    architecture: str
    classes: list[str]
    bundle_path: str
    kind: str = "model"  # "baseline" / "randomized": derived records, not a bundle to open


@dataclass(frozen=True)
class RunChoice:
    """A CAM run as the window offers it (heatmap choice, compare mode, summary)."""

    id: int
    model_id: int
    method: str
    layers: list[str]
    target_policy: str  # "predicted" | "class:<name>"
    model_name: str = ""
    kind: str = "model"  # or "baseline" (see ModelInfo.kind)

    @property
    def target_class(self) -> str | None:
        """The class the heatmaps explain, None for "the predicted class of each image"."""
        return self.target_policy[6:] if self.target_policy.startswith("class:") else None

    @property
    def recipe(self) -> tuple[str, tuple[str, ...]]:
        """(method, layers): runs that differ only in their target class share a recipe."""
        return self.method, tuple(self.layers)

    @property
    def title(self) -> str:
        if self.kind == "baseline":  # a baseline has no layer: "centre", "mean map of run 3"
            of_run = self.layers[0][4:] if self.layers and self.layers[0].startswith("run:") else ""
            return f"mean map of run {of_run}" if of_run else self.method
        target = "" if self.target_class is None else f" [class {self.target_class}]"
        return f"{self.method} @ {', '.join(self.layers)}{target}"

    @property
    def long_title(self) -> str:
        """The title with the model's name, where runs of several models are listed together."""
        return f"{self.model_name}: {self.title}" if self.model_name else self.title


@dataclass
class ImageDetail:
    image_id: int
    path: Path
    rel_path: str
    width: int
    height: int
    sha256: str
    label: str | None
    classes: list[str] = field(default_factory=list)
    probs: list[float] | None = None
    predicted_index: int | None = None
    transform: dict | None = None

    @property
    def prediction(self) -> str | None:
        if self.predicted_index is None or not self.classes:
            return None
        return self.classes[self.predicted_index]


@dataclass
class RegionMask:
    """One expert region decoded for display (the editor's editable region is `review.Region`)."""

    structure: str
    reviewer: str
    mask: np.ndarray  # bool (H, W), original grid


def list_datasets(db: Database) -> list[DatasetInfo]:
    """Every dataset with its image count, in the order it was first registered."""
    with db.session(read_only=True) as s:
        counts = repo_views.image_counts(s)
        return [
            DatasetInfo(d.id, d.name, d.root, counts.get(d.id, 0)) for d in repo.list_datasets(s)
        ]


def dataset_root(db: Database, dataset_id: int) -> str | None:
    with db.session(read_only=True) as s:
        return repo_views.dataset_root(s, dataset_id)


def find_dataset_id(db: Database, root: str | Path) -> int | None:
    with db.session(read_only=True) as s:
        return repo_views.find_dataset_id(s, root)


def list_models(db: Database, derived: bool = False) -> list[ModelInfo]:
    """Every stored model in id order (later records of the same bundle come later). The
    baseline pseudo-model and randomised copies (the trust checks) only with ``derived``: a
    randomised copy shares its bundle's path and must never be taken for the bundle's model."""
    with db.session(read_only=True) as s:
        out = [
            ModelInfo(
                m.id,
                m.name,
                m.architecture,
                list(m.card.get("classes", [])),
                m.bundle_path,
                repo.model_kind(m.card),
            )
            for m in sorted(repo.list_models(s), key=lambda m: m.id)
        ]
    return out if derived else [m for m in out if m.kind == "model"]


def list_runs(
    db: Database,
    model_id: int | None = None,
    dataset_id: int | None = None,
    kinds: tuple[str, ...] = ("model",),
) -> list[RunChoice]:
    """CAM runs (of one model, or all); with `dataset_id`, only runs with heatmaps there; of
    real models only unless `kinds` also names "baseline" (the summary shows them beside)."""
    with db.session(read_only=True) as s:
        return [
            RunChoice(r.id, r.model_id, r.method, r.layers, r.target_policy, name, kind)
            for r, name, kind in repo_views.cam_runs_with_model_names(s, model_id, dataset_id)
            if kind in kinds
        ]


def run_for_target(
    runs: list[RunChoice], recipe: tuple[str, tuple[str, ...]], target_class: str | None
) -> RunChoice | None:
    """The run of `recipe` whose heatmaps explain `target_class` (None: the predicted class)."""
    for r in runs:
        if r.recipe == tuple(recipe) and r.target_class == target_class:
            return r
    return None


def heatmap_target(db: Database, run_id: int, image_id: int) -> int | None:
    """The class index the stored heatmap of this run explains on this image; None if absent."""
    with db.session(read_only=True) as s:
        return repo_views.heatmap_target(s, run_id, image_id)


def load_browse_rows(
    db: Database,
    dataset_id: int,
    model_id: int | None = None,
    run_id: int | None = None,
    reviewer: str | None = None,
    metric: str | None = None,
    structure: str | None = None,
) -> list[BrowseRow]:
    """One row per image of the dataset, for the current model / CAM run / reviewer / badge."""
    with db.session(read_only=True) as s:
        images = repo_views.image_paths(s, dataset_id)
        labels = repo_views.latest_labels(s, dataset_id)
        preds: dict[int, tuple[str | None, float]] = {}
        if model_id is not None:
            classes = repo_views.model_classes(s, model_id)
            found = repo_views.predicted_indices(s, dataset_id, [model_id])
            for (image_id, _model), (probs, idx) in found.items():
                name = classes[idx] if 0 <= idx < len(classes) else str(idx)
                preds[image_id] = (name, float(probs[idx]))
        statuses: dict[int, str] = {}
        who: dict[int, set[str]] = {}
        for image_id, status, name in repo_views.review_statuses(s, dataset_id):
            who.setdefault(image_id, set()).add(name)
            if reviewer is None or name == reviewer:
                statuses[image_id] = _merge_status(statuses.get(image_id), status)
        structures: dict[int, set[str]] = {}
        for image_id, struct, name in repo_views.live_region_structures(s, dataset_id):
            structures.setdefault(image_id, set()).add(struct)
            who.setdefault(image_id, set()).add(name)
        cdr = _browse_cdr(repo_cdr.cached_ratios(s, dataset_id), reviewer)
        with_heatmap: set[int] = set()
        scores: dict[int, float | None] = {}
        if run_id is not None:
            with_heatmap = repo_views.images_with_heatmap(s, dataset_id, run_id)
            if metric and structure:
                scores = _badge_scores(s, run_id, metric, structure, reviewer)
    rows = []
    for image_id, rel_path in images:
        pred, conf = preds.get(image_id, (None, None))
        ratio, n_cdr, own = cdr.get(image_id, (None, 0, False))
        rows.append(
            BrowseRow(
                image_id=image_id,
                rel_path=rel_path,
                label=labels.get(image_id),
                prediction=pred,
                confidence=conf,
                status=statuses.get(image_id, "unreviewed"),
                structures=frozenset(structures.get(image_id, ())),
                reviewers=frozenset(who.get(image_id, ())),
                score=scores.get(image_id),
                has_heatmap=image_id in with_heatmap,
                cdr=ratio,
                cdr_reviewers=n_cdr,
                cdr_own=own,
            )
        )
    return rows


def _browse_cdr(
    cached: list[tuple[int, str, float | None, float | None, float | None]], reviewer: str | None
) -> dict[int, tuple[float, int, bool]]:
    """image id -> (vertical CDR, reviewers it comes from, whether it is `reviewer`'s own): the
    reviewer's own where measured, else the mean over every reviewer with a value
    (``browse.CDR_HELP``)."""
    by_image: dict[int, dict[str, float]] = {}
    for image_id, name, vertical, _h, _a in cached:
        if vertical is not None:
            by_image.setdefault(image_id, {})[name] = vertical
    out: dict[int, tuple[float, int, bool]] = {}
    for image_id, values in by_image.items():
        if reviewer is not None and reviewer in values:
            out[image_id] = (values[reviewer], 1, True)
        else:
            out[image_id] = (sum(values.values()) / len(values), len(values), False)
    return out


@dataclass(frozen=True)
class ImageCdr:
    """One reviewer's cup-to-disc ratios on the image shown (``core.cdr``)."""

    reviewer: str
    vertical: float | None
    horizontal: float | None
    area: float | None


def image_cdr(db: Database, image_id: int) -> list[ImageCdr]:
    """The cached ratios of every reviewer with a disc and a cup on this image, by name."""
    with db.session(read_only=True) as s:
        return [
            ImageCdr(name, v, h, a)
            for _i, name, v, h, a in repo_cdr.cached_ratios(s, None, image_id)
        ]


def _merge_status(old: str | None, new: str) -> str:
    # With several reviewers, the image shows the least finished status (flagged beats all).
    order = {"flagged": 3, "unreviewed": 0, "in_progress": 1, "done": 2}
    if old is None:
        return new
    if "flagged" in (old, new):
        return "flagged"
    return old if order.get(old, 0) <= order.get(new, 0) else new


def _badge_scores(
    s: Session, run_id: int, metric: str, structure: str, reviewer: str | None
) -> dict[int, float | None]:
    out: dict[int, float | None] = {}
    for image_id, value, name in repo_views.run_scores(s, run_id, metric, structure):
        # Prefer the chosen reviewer's regions; otherwise any reviewer's (the reference masks).
        if reviewer is None or name == reviewer or image_id not in out:
            out[image_id] = value
    return out


def image_detail(db: Database, image_id: int, model_id: int | None = None) -> ImageDetail:
    with db.session(read_only=True) as s:
        image = repo.find_image(s, image_id)
        if image is None:
            raise KeyError(f"image {image_id} is not in {db.display_name}")
        root = Path(image.dataset.root)
        detail = ImageDetail(
            image_id,
            root / image.rel_path,
            image.rel_path,
            image.width,
            image.height,
            image.sha256,
            repo_views.latest_label(s, image_id),
        )
        if model_id is not None:
            detail.classes = repo_views.model_classes(s, model_id)
            pred = repo.get_prediction(s, image_id, model_id)
            if pred is not None:
                detail.probs = [float(p) for p in pred.probs]
                detail.predicted_index = int(pred.predicted_index)
                detail.transform = dict(pred.transform)
    return detail


def load_heatmap(db: Database, run_id: int, image_id: int) -> tuple[np.ndarray, dict, int] | None:
    """(heatmap at model-input resolution, InputTransform dict, target index), or None when the
    run has no heatmap of the image or its prediction (which holds the transform) is missing."""
    with db.session(read_only=True) as s:
        return repo.load_heatmap(s, run_id, image_id)


def load_region_masks(db: Database, image_id: int) -> list[RegionMask]:
    """Every live expert region with a raster, decoded onto the image grid."""
    with db.session(read_only=True) as s:
        return [
            RegionMask(structure, name, mask)
            for structure, name, mask in repo_views.region_masks(s, image_id)
        ]


def image_files(db: Database, dataset_id: int) -> dict[int, tuple[str, str | None]]:
    """image id -> (absolute path, file stamp when last read, None before): what thumbnails are
    made from; a new stamp means the file changed. Plain strings: the browser compares 10,000
    of them on the UI thread after every registration (Path equality is ten times slower)."""
    with db.session(read_only=True) as s:
        return repo_views.image_files(s, dataset_id)
