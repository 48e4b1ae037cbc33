"""Queries behind the window's read models (``fundus_review.views``): bulk, read-only, plain data.

The browser needs one row per image for 10,000 images in about a second, so these are a few
bulk SELECTs per dataset (never one query per image); ``views`` joins their results in Python.
Every function takes an open session first, like the rest of the store; the views open a short
read-only one per call. They return plain values (ids, names, dicts) or ORM rows the caller
reads inside its session. ``views`` imports this module directly.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from fundus_review.store.codec import decode_mask
from fundus_review.store.repo_query import model_kind
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
    expert_region,
)


def _in_dataset(dataset_id: int) -> Select:
    return select(Image.id).where(Image.dataset_id == dataset_id)


# -- datasets, models, runs -------------------------------------------------------------------


def image_counts(s: Session) -> dict[int, int]:
    """dataset id -> number of images (datasets without images are absent)."""
    rows = s.execute(select(Image.dataset_id, func.count()).group_by(Image.dataset_id)).all()
    return {int(ds): int(n) for ds, n in rows}


def dataset_root(s: Session, dataset_id: int) -> str | None:
    return s.scalar(select(Dataset.root).where(Dataset.id == dataset_id))


def find_dataset_id(s: Session, root: str | Path) -> int | None:
    """The dataset whose root is ``root`` (resolved, as ``get_or_create_dataset`` stores it)."""
    root_text = str(Path(root).expanduser().resolve())
    return s.scalar(select(Dataset.id).where(Dataset.root == root_text))


def model_classes(s: Session, model_id: int) -> list[str]:
    """The class names of a model's card; [] for an unknown model."""
    model = s.get(ModelRecord, model_id)
    return list(model.card.get("classes", [])) if model else []


def cam_runs_with_model_names(
    s: Session, model_id: int | None = None, dataset_id: int | None = None
) -> list[tuple[CamRun, str, str]]:
    """(run, its model's name, the model's kind) in id order; of one model, and with
    ``dataset_id`` only runs with heatmaps in that dataset. Kinds: see ``repo_query.model_kind``."""
    q = select(CamRun, ModelRecord.name, ModelRecord.card).join(ModelRecord).order_by(CamRun.id)
    if model_id is not None:
        q = q.where(CamRun.model_id == model_id)
    if dataset_id is not None:
        in_ds = (
            select(Heatmap.id)
            .join(Image, Heatmap.image_id == Image.id)
            .where(Heatmap.cam_run_id == CamRun.id, Image.dataset_id == dataset_id)
        )
        q = q.where(in_ds.exists())
    return [(run, name, model_kind(card)) for run, name, card in s.execute(q)]


def heatmap_target(s: Session, run_id: int, image_id: int) -> int | None:
    """The class index the stored heatmap of this run explains on this image; None if absent."""
    return s.scalar(
        select(Heatmap.target_index).where(
            Heatmap.cam_run_id == run_id, Heatmap.image_id == image_id
        )
    )


# -- per-dataset facts of the browser rows ----------------------------------------------------


def image_paths(s: Session, dataset_id: int) -> list[tuple[int, str]]:
    """(image id, rel_path) of every image of the dataset."""
    rows = s.execute(select(Image.id, Image.rel_path).where(Image.dataset_id == dataset_id))
    return [(i, rel) for i, rel in rows]


def latest_labels(s: Session, dataset_id: int) -> dict[int, str]:
    """image id -> label; with several label sources (folders, a CSV) the most recently written
    one wins."""
    labels: dict[int, str] = {}
    for image_id, value in s.execute(
        select(Label.image_id, Label.value)
        .where(Label.image_id.in_(_in_dataset(dataset_id)))
        .order_by(Label.updated_at)
    ):
        labels[image_id] = value
    return labels


def latest_label(s: Session, image_id: int) -> str | None:
    """The image's most recently written label (any source)."""
    return s.scalar(
        select(Label.value).where(Label.image_id == image_id).order_by(Label.updated_at.desc())
    )


def predicted_indices(
    s: Session, dataset_id: int, model_ids: list[int]
) -> dict[tuple[int, int], tuple[list[float], int]]:
    """(image id, model id) -> (class probabilities, predicted index) in the dataset."""
    rows = s.execute(
        select(
            Prediction.image_id, Prediction.model_id, Prediction.probs, Prediction.predicted_index
        ).where(
            Prediction.model_id.in_(model_ids),
            Prediction.image_id.in_(_in_dataset(dataset_id)),
        )
    )
    return {(i, m): (list(probs), int(idx)) for i, m, probs, idx in rows}


def review_statuses(s: Session, dataset_id: int) -> list[tuple[int, str, str]]:
    """(image id, status, reviewer name) of every review state in the dataset."""
    rows = s.execute(
        select(ImageReview.image_id, ImageReview.status, Reviewer.name)
        .join(Reviewer)
        .where(ImageReview.image_id.in_(_in_dataset(dataset_id)))
    )
    return [(i, status, name) for i, status, name in rows]


def live_region_structures(s: Session, dataset_id: int) -> list[tuple[int, str, str]]:
    """(image id, structure, reviewer name) of every region not deleted, in the dataset
    (unreviewed proposals left out: they are not expert regions)."""
    rows = s.execute(
        select(Annotation.image_id, Annotation.structure, Reviewer.name)
        .join(Reviewer)
        .where(
            Annotation.image_id.in_(_in_dataset(dataset_id)),
            Annotation.deleted_at.is_(None),
            expert_region(),
        )
    )
    return [(i, struct, name) for i, struct, name in rows]


def images_with_heatmap(s: Session, dataset_id: int, run_id: int) -> set[int]:
    """Ids of the dataset's images with a heatmap of this run."""
    return set(
        s.scalars(
            select(Heatmap.image_id).where(
                Heatmap.cam_run_id == run_id, Heatmap.image_id.in_(_in_dataset(dataset_id))
            )
        )
    )


def run_scores(
    s: Session, run_id: int, metric: str, structure: str
) -> list[tuple[int, float | None, str]]:
    """(image id, value, reviewer name) of one metric and structure over a run's heatmaps."""
    rows = s.execute(
        select(Heatmap.image_id, Score.value, Reviewer.name)
        .join(Score, Score.heatmap_id == Heatmap.id)
        .join(Reviewer, Score.reviewer_id == Reviewer.id)
        .where(Heatmap.cam_run_id == run_id, Score.metric == metric, Score.structure == structure)
    )
    return [(i, value, name) for i, value, name in rows]


def image_files(s: Session, dataset_id: int) -> dict[int, tuple[str, str | None]]:
    """image id -> (absolute path, file stamp when last read, None before). Plain strings: the
    browser compares 10,000 of them on the UI thread (Path equality is ten times slower)."""
    root = s.get(Dataset, dataset_id).root
    return {
        i: (os.path.join(root, rel), stamp)
        for i, rel, stamp in s.execute(
            select(Image.id, Image.rel_path, Image.file_stamp).where(Image.dataset_id == dataset_id)
        )
    }


# -- one image ----------------------------------------------------------------------------------


def region_masks(s: Session, image_id: int) -> list[tuple[str, str, np.ndarray]]:
    """(structure, reviewer name, bool mask on the image grid) of every live expert region (no
    unreviewed proposal) with a raster, by structure and id; a raster of another size than the image raises ValueError."""
    image = s.get(Image, image_id)
    out = []
    for ann, name in s.execute(
        select(Annotation, Reviewer.name)
        .join(Reviewer)
        .where(
            Annotation.image_id == image_id,
            Annotation.deleted_at.is_(None),
            Annotation.raster.is_not(None),
            expert_region(),
        )
        .order_by(Annotation.structure, Annotation.id)
    ):
        out.append((ann.structure, name, decode_mask(ann.raster, (image.height, image.width))))
    return out


# -- scores ---------------------------------------------------------------------------------------


def score_choices(s: Session, run_ids: list[int]) -> tuple[list[str], list[str], list[str]]:
    """(metrics, structures, reviewers), each sorted, with stored scores for any of these runs."""
    base = select(Score).join(Heatmap).where(Heatmap.cam_run_id.in_(run_ids))
    metrics = s.scalars(base.with_only_columns(Score.metric).distinct()).all()
    structures = s.scalars(base.with_only_columns(Score.structure).distinct()).all()
    reviewers = s.scalars(
        base.join(Reviewer, Score.reviewer_id == Reviewer.id)
        .with_only_columns(Reviewer.name)
        .distinct()
    ).all()
    return sorted(metrics), sorted(structures), sorted(reviewers)


def stored_scores(
    s: Session, run_id: int, image_id: int
) -> list[tuple[str, str, str, float | None]]:
    """(structure, reviewer, metric, value) rows stored for one heatmap, in that order."""
    rows = s.execute(
        select(Score.structure, Reviewer.name, Score.metric, Score.value)
        .join(Heatmap, Score.heatmap_id == Heatmap.id)
        .join(Reviewer, Score.reviewer_id == Reviewer.id)
        .where(Heatmap.cam_run_id == run_id, Heatmap.image_id == image_id)
        .order_by(Score.structure, Reviewer.name, Score.metric)
    ).all()
    return [(a, b, c, d) for a, b, c, d in rows]


def run_models(s: Session, run_ids: list[int]) -> dict[int, int]:
    """run id -> its model's id."""
    rows = s.execute(select(CamRun.id, CamRun.model_id).where(CamRun.id.in_(run_ids)))
    return {int(r): int(m) for r, m in rows}


def dataset_run_scores(
    s: Session,
    dataset_id: int,
    run_ids: list[int],
    metric: str,
    structure: str,
    reviewer: str | None = None,
) -> list[tuple[int, int, float | None]]:
    """(image id, run id, value) of one metric and structure, by run, image and reviewer id;
    only ``reviewer``'s scores when given."""
    q = (
        select(Heatmap.image_id, Heatmap.cam_run_id, Score.value)
        .join(Score, Score.heatmap_id == Heatmap.id)
        .where(
            Heatmap.cam_run_id.in_(run_ids),
            Heatmap.image_id.in_(_in_dataset(dataset_id)),
            Score.metric == metric,
            Score.structure == structure,
        )
        .order_by(Heatmap.cam_run_id, Heatmap.image_id, Score.reviewer_id)
    )
    if reviewer is not None:
        q = q.join(Reviewer, Score.reviewer_id == Reviewer.id).where(Reviewer.name == reviewer)
    return [(i, r, value) for i, r, value in s.execute(q)]


def run_rates(s: Session, structure: str, metric: str) -> list[tuple[str, str, float, int]]:
    """(model name, method, mean of the defined values, their count) per model and method, of
    one metric and structure (e.g. the pointing-game hit rate), by model name and method."""
    rows = s.execute(
        select(ModelRecord.name, CamRun.method, func.avg(Score.value), func.count())
        .select_from(Score)
        .join(Heatmap, Score.heatmap_id == Heatmap.id)
        .join(CamRun, Heatmap.cam_run_id == CamRun.id)
        .join(ModelRecord, CamRun.model_id == ModelRecord.id)
        .where(Score.structure == structure, Score.metric == metric)
        .where(Score.value.is_not(None))
        .group_by(ModelRecord.name, CamRun.method)
        .order_by(ModelRecord.name, CamRun.method)
    ).all()
    return [(name, method, float(rate), int(n)) for name, method, rate, n in rows]
