"""Read-side queries of the review application (Qt-free, so they are tested without a display).

The browser needs one row per image for 10,000 images in about a second, so rows are built from a
few bulk SELECTs (images, labels, predictions, reviews, annotations, scores) joined in Python,
never one query per image. Every function opens its own short read-only session, which makes them
safe to call from worker threads beside a running analysis (SQLite WAL: readers never block it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import func, select

from fundus_review.store.codec import decode_heatmap, decode_mask
from fundus_review.store.db import Database
from fundus_review.store.schema import (
    Annotation,
    CamRun,
    Dataset,
    Heatmap,
    Image,
    ImageReview,
    Label,
    ModelRecord,
    Prediction,
    Reviewer,
    Score,
)
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


@dataclass(frozen=True)
class RunInfo:
    id: int
    model_id: int
    method: str
    layers: list[str]
    target_policy: str  # "predicted" | "class:<name>"
    model_name: str = ""

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
class Region:
    structure: str
    reviewer: str
    mask: np.ndarray  # bool (H, W), original grid


def list_datasets(db: Database) -> list[DatasetInfo]:
    with db.session(read_only=True) as s:
        counts = dict(
            s.execute(select(Image.dataset_id, func.count()).group_by(Image.dataset_id)).all()
        )
        return [
            DatasetInfo(d.id, d.name, d.root, int(counts.get(d.id, 0)))
            for d in s.scalars(select(Dataset).order_by(Dataset.id))
        ]


def dataset_root(db: Database, dataset_id: int) -> str | None:
    with db.session(read_only=True) as s:
        return s.scalar(select(Dataset.root).where(Dataset.id == dataset_id))


def find_dataset_id(db: Database, root: str | Path) -> int | None:
    root_text = str(Path(root).expanduser().resolve())
    with db.session(read_only=True) as s:
        return s.scalar(select(Dataset.id).where(Dataset.root == root_text))


def list_models(db: Database) -> list[ModelInfo]:
    with db.session(read_only=True) as s:
        return [
            ModelInfo(m.id, m.name, m.architecture, list(m.card.get("classes", [])), m.bundle_path)
            for m in s.scalars(select(ModelRecord).order_by(ModelRecord.id))
        ]


def list_runs(
    db: Database, model_id: int | None = None, dataset_id: int | None = None
) -> list[RunInfo]:
    """CAM runs (of one model, or all); with `dataset_id`, only runs with heatmaps there."""
    with db.session(read_only=True) as s:
        q = select(CamRun, ModelRecord.name).join(ModelRecord).order_by(CamRun.id)
        if model_id is not None:
            q = q.where(CamRun.model_id == model_id)
        if dataset_id is not None:
            in_ds = (
                select(Heatmap.id)
                .join(Image, Heatmap.image_id == Image.id)
                .where(Heatmap.cam_run_id == CamRun.id, Image.dataset_id == dataset_id)
            )
            q = q.where(in_ds.exists())
        return [
            RunInfo(r.id, r.model_id, r.method, r.layers, r.target_policy, name)
            for r, name in s.execute(q)
        ]


def run_for_target(
    runs: list[RunInfo], recipe: tuple[str, tuple[str, ...]], target_class: str | None
) -> RunInfo | None:
    """The run of `recipe` whose heatmaps explain `target_class` (None: the predicted class)."""
    for r in runs:
        if r.recipe == tuple(recipe) and r.target_class == target_class:
            return r
    return None


def heatmap_target(db: Database, run_id: int, image_id: int) -> int | None:
    """The class index the stored heatmap of this run explains on this image; None if absent."""
    with db.session(read_only=True) as s:
        return s.scalar(
            select(Heatmap.target_index).where(
                Heatmap.cam_run_id == run_id, Heatmap.image_id == image_id
            )
        )


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
        images = s.execute(
            select(Image.id, Image.rel_path).where(Image.dataset_id == dataset_id)
        ).all()
        in_ds = select(Image.id).where(Image.dataset_id == dataset_id)
        # Several label sources may exist (folders, a CSV): the most recently written one wins.
        labels: dict[int, str] = {}
        for image_id, value in s.execute(
            select(Label.image_id, Label.value)
            .where(Label.image_id.in_(in_ds))
            .order_by(Label.updated_at)
        ):
            labels[image_id] = value
        preds: dict[int, tuple[str | None, float]] = {}
        if model_id is not None:
            model = s.get(ModelRecord, model_id)
            classes = list(model.card.get("classes", [])) if model else []
            for image_id, probs, idx in s.execute(
                select(Prediction.image_id, Prediction.probs, Prediction.predicted_index).where(
                    Prediction.model_id == model_id, Prediction.image_id.in_(in_ds)
                )
            ):
                name = classes[idx] if 0 <= idx < len(classes) else str(idx)
                preds[image_id] = (name, float(probs[idx]))
        statuses: dict[int, str] = {}
        who: dict[int, set[str]] = {}
        for image_id, status, name in s.execute(
            select(ImageReview.image_id, ImageReview.status, Reviewer.name)
            .join(Reviewer)
            .where(ImageReview.image_id.in_(in_ds))
        ):
            who.setdefault(image_id, set()).add(name)
            if reviewer is None or name == reviewer:
                statuses[image_id] = _merge_status(statuses.get(image_id), status)
        structures: dict[int, set[str]] = {}
        for image_id, struct, name in s.execute(
            select(Annotation.image_id, Annotation.structure, Reviewer.name)
            .join(Reviewer)
            .where(Annotation.image_id.in_(in_ds), Annotation.deleted_at.is_(None))
        ):
            structures.setdefault(image_id, set()).add(struct)
            who.setdefault(image_id, set()).add(name)
        with_heatmap: set[int] = set()
        scores: dict[int, float | None] = {}
        if run_id is not None:
            with_heatmap = set(
                s.scalars(
                    select(Heatmap.image_id).where(
                        Heatmap.cam_run_id == run_id, Heatmap.image_id.in_(in_ds)
                    )
                )
            )
            if metric and structure:
                scores = _badge_scores(s, run_id, metric, structure, reviewer)
    rows = []
    for image_id, rel_path in images:
        pred, conf = preds.get(image_id, (None, None))
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
            )
        )
    return rows


def _merge_status(old: str | None, new: str) -> str:
    # With several reviewers, the image shows the least finished status (flagged beats all).
    order = {"flagged": 3, "unreviewed": 0, "in_progress": 1, "done": 2}
    if old is None:
        return new
    if "flagged" in (old, new):
        return "flagged"
    return old if order.get(old, 0) <= order.get(new, 0) else new


def _badge_scores(s, run_id: int, metric: str, structure: str, reviewer: str | None) -> dict:
    q = (
        select(Heatmap.image_id, Score.value, Reviewer.name)
        .join(Score, Score.heatmap_id == Heatmap.id)
        .join(Reviewer, Score.reviewer_id == Reviewer.id)
        .where(Heatmap.cam_run_id == run_id, Score.metric == metric, Score.structure == structure)
    )
    out: dict[int, float | None] = {}
    for image_id, value, name in s.execute(q):
        # Prefer the chosen reviewer's regions; otherwise any reviewer's (the reference masks).
        if reviewer is None or name == reviewer or image_id not in out:
            out[image_id] = value
    return out


def image_detail(db: Database, image_id: int, model_id: int | None = None) -> ImageDetail:
    with db.session(read_only=True) as s:
        image = s.get(Image, image_id)
        if image is None:
            raise KeyError(f"image {image_id} is not in {db.display_name}")
        root = Path(image.dataset.root)
        label = s.scalar(
            select(Label.value).where(Label.image_id == image_id).order_by(Label.updated_at.desc())
        )
        detail = ImageDetail(
            image_id,
            root / image.rel_path,
            image.rel_path,
            image.width,
            image.height,
            image.sha256,
            label,
        )
        if model_id is not None:
            model = s.get(ModelRecord, model_id)
            detail.classes = list(model.card.get("classes", [])) if model else []
            pred = s.scalar(
                select(Prediction).where(
                    Prediction.image_id == image_id, Prediction.model_id == model_id
                )
            )
            if pred is not None:
                detail.probs = [float(p) for p in pred.probs]
                detail.predicted_index = int(pred.predicted_index)
                detail.transform = dict(pred.transform)
    return detail


def load_heatmap(db: Database, run_id: int, image_id: int) -> tuple[np.ndarray, dict, int] | None:
    """(heatmap at model-input resolution, InputTransform dict, target index), or None."""
    with db.session(read_only=True) as s:
        hm = s.scalar(
            select(Heatmap).where(Heatmap.cam_run_id == run_id, Heatmap.image_id == image_id)
        )
        if hm is None:
            return None
        run = s.get(CamRun, run_id)
        transform = s.scalar(
            select(Prediction.transform).where(
                Prediction.image_id == image_id, Prediction.model_id == run.model_id
            )
        )
        if transform is None:
            return None
        arr = decode_heatmap(hm.data, hm.height, hm.width, hm.dtype)
        return arr, dict(transform), int(hm.target_index)


def load_regions(db: Database, image_id: int) -> list[Region]:
    """Every live expert region with a raster, decoded onto the image grid."""
    with db.session(read_only=True) as s:
        image = s.get(Image, image_id)
        out = []
        for ann, name in s.execute(
            select(Annotation, Reviewer.name)
            .join(Reviewer)
            .where(
                Annotation.image_id == image_id,
                Annotation.deleted_at.is_(None),
                Annotation.raster.is_not(None),
            )
            .order_by(Annotation.structure, Annotation.id)
        ):
            mask = decode_mask(ann.raster, (image.height, image.width))
            out.append(Region(ann.structure, name, mask))
    return out


def image_files(db: Database, dataset_id: int) -> dict[int, tuple[str, str | None]]:
    """image id -> (absolute path, file stamp when last read, None before): what thumbnails are
    made from; a new stamp means the file changed. Plain strings: the browser compares 10,000
    of them on the UI thread after every registration (Path equality is ten times slower)."""
    with db.session(read_only=True) as s:
        root = s.get(Dataset, dataset_id).root
        return {
            i: (os.path.join(root, rel), stamp)
            for i, rel, stamp in s.execute(
                select(Image.id, Image.rel_path, Image.file_stamp).where(
                    Image.dataset_id == dataset_id
                )
            )
        }
