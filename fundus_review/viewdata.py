"""Read-side queries of the review application (Qt-free, so they are tested without a display).

The browser needs one row per image for 10,000 images in about a second, so rows are built from a
few bulk SELECTs (images, labels, predictions, reviews, annotations, scores) joined in Python,
never one query per image. Every function opens its own short read-only session, which makes them
safe to call from worker threads beside a running analysis (SQLite WAL: readers never block it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import func, select

from fundus_review.browse import BrowseRow
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
    target_policy: str

    @property
    def title(self) -> str:
        target = "" if self.target_policy == "predicted" else f" [{self.target_policy}]"
        return f"{self.method} @ {', '.join(self.layers)}{target}"


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


def list_runs(db: Database, model_id: int | None = None) -> list[RunInfo]:
    with db.session(read_only=True) as s:
        q = select(CamRun).order_by(CamRun.id)
        if model_id is not None:
            q = q.where(CamRun.model_id == model_id)
        return [
            RunInfo(r.id, r.model_id, r.method, r.layers, r.target_policy) for r in s.scalars(q)
        ]


def score_choices(db: Database, run_id: int) -> tuple[list[str], list[str]]:
    """(metrics, structures) that have stored scores for this CAM run."""
    with db.session(read_only=True) as s:
        base = select(Score).join(Heatmap).where(Heatmap.cam_run_id == run_id)
        metrics = s.scalars(base.with_only_columns(Score.metric).distinct()).all()
        structures = s.scalars(base.with_only_columns(Score.structure).distinct()).all()
    return sorted(metrics), sorted(structures)


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


def stored_scores(
    db: Database, run_id: int, image_id: int
) -> list[tuple[str, str, str, float | None]]:
    """(structure, reviewer, metric, value) rows stored for one heatmap."""
    with db.session(read_only=True) as s:
        rows = s.execute(
            select(Score.structure, Reviewer.name, Score.metric, Score.value)
            .join(Heatmap, Score.heatmap_id == Heatmap.id)
            .join(Reviewer, Score.reviewer_id == Reviewer.id)
            .where(Heatmap.cam_run_id == run_id, Heatmap.image_id == image_id)
            .order_by(Score.structure, Reviewer.name, Score.metric)
        ).all()
    return [(a, b, c, d) for a, b, c, d in rows]


@dataclass(frozen=True)
class ScorePoint:
    image_id: int
    run_id: int
    confidence: float | None
    correct: bool | None
    value: float | None


def score_points(
    db: Database, dataset_id: int, run_ids: list[int], metric: str, structure: str
) -> list[ScorePoint]:
    """Per image and run: confidence of the run's model and the chosen score (summary plots)."""
    if not run_ids:
        return []
    with db.session(read_only=True) as s:
        runs = {r.id: r for r in s.scalars(select(CamRun).where(CamRun.id.in_(run_ids)))}
        model_ids = {r.model_id for r in runs.values()}
        classes = {
            m.id: list(m.card.get("classes", []))
            for m in s.scalars(select(ModelRecord).where(ModelRecord.id.in_(model_ids)))
        }
        in_ds = select(Image.id).where(Image.dataset_id == dataset_id)
        conf: dict[tuple[int, int], tuple[float, str]] = {}
        for image_id, model_id, probs, idx in s.execute(
            select(
                Prediction.image_id,
                Prediction.model_id,
                Prediction.probs,
                Prediction.predicted_index,
            ).where(Prediction.model_id.in_(model_ids), Prediction.image_id.in_(in_ds))
        ):
            names = classes.get(model_id, [])
            conf[(image_id, model_id)] = (float(probs[idx]), names[idx] if idx < len(names) else "")
        labels = dict(
            s.execute(select(Label.image_id, Label.value).where(Label.image_id.in_(in_ds))).all()
        )
        pts = []
        for image_id, run_id, value in s.execute(
            select(Heatmap.image_id, Heatmap.cam_run_id, Score.value)
            .join(Score, Score.heatmap_id == Heatmap.id)
            .where(
                Heatmap.cam_run_id.in_(run_ids),
                Heatmap.image_id.in_(in_ds),
                Score.metric == metric,
                Score.structure == structure,
            )
        ):
            c, pred = conf.get((image_id, runs[run_id].model_id), (None, None))
            label = labels.get(image_id)
            correct = None if label is None or pred is None else label == pred
            pts.append(ScorePoint(image_id, run_id, c, correct, value))
    return pts


def image_files(db: Database, dataset_id: int) -> dict[int, tuple[Path, str]]:
    """image id -> (absolute path, content sha256): what thumbnails are made and cached from."""
    with db.session(read_only=True) as s:
        root = Path(s.get(Dataset, dataset_id).root)
        return {
            i: (root / rel, sha)
            for i, rel, sha in s.execute(
                select(Image.id, Image.rel_path, Image.sha256).where(Image.dataset_id == dataset_id)
            )
        }
