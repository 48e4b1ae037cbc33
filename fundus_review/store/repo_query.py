"""Read-side queries for reports. Call these through ``fundus_review.store.repo``."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fundus_review.core.vocabulary import predicted_labels
from fundus_review.store.repo_images import ref_id
from fundus_review.store.schema import CamRun, Heatmap, Image, Label, ModelRecord, Prediction

_BATCH = 500


@dataclass(frozen=True, slots=True)  # slots: 300,000 rows without a __dict__ each (~1 KB)
class ResultRow:
    """One heatmap with everything a report needs about its image, prediction and recipe.

    ``label`` is the label from ``label_source`` when given, else the most recently updated
    label of the image (ties broken by source name); ``labels`` holds every source's value.
    The heatmap pixels are not loaded here: use ``repo.load_heatmap`` (or ``heatmap_id``).
    """

    heatmap_id: int
    image_id: int
    dataset_id: int
    rel_path: str
    sha256: str
    width: int
    height: int
    label: str | None
    model_id: int
    model_name: str
    classes: list[str]
    run_id: int
    method: str
    layers: list[str]
    target_policy: str
    params: dict[str, Any]
    target_index: int
    predicted_index: int
    probs: list[float]
    transform: dict[str, Any]
    labels: dict[str, str] = field(default_factory=dict)
    # "model" for a real classifier, "baseline" for the pseudo-model of baseline maps,
    # "randomized" for a classifier with re-initialised layers (the randomisation test).
    model_kind: str = "model"
    multilabel: bool = False  # card `score = "multilabel"`: probs are one sigmoid per label

    @property
    def predicted_class(self) -> str | None:
        return (
            self.classes[self.predicted_index] if self.predicted_index < len(self.classes) else None
        )

    @property
    def outcome_class(self) -> str | None:
        """The prediction an outcome compares with the true label: the most probable class, or
        for a multi-label head the true label itself when it is among the predicted labels
        (p >= 0.5): such a model predicts every label over the threshold, not one."""
        if self.multilabel and self.label in predicted_labels(self.probs, self.classes):
            return self.label
        return self.predicted_class

    @property
    def confidence(self) -> float:
        return self.probs[self.predicted_index]


def iter_results(
    s: Session,
    dataset: object | None = None,
    model: object | None = None,
    method: str | None = None,
    label_source: str | None = None,
    image_ids: Collection[int] | None = None,
) -> Iterator[ResultRow]:
    """Every stored heatmap that has its prediction, joined with image, labels and recipe.

    Ordered by dataset, image path, model, method and run, so a report built from it is
    deterministic. Streamed in batches of ``_BATCH`` rows (100,000 images x 3 runs must never sit
    in memory twice): the model cards and run recipes are read once, not once per row, and rows
    of one run share their ``classes``, ``layers`` and ``params`` objects (treat them as read-only).
    """
    q = (
        select(
            Heatmap.id,
            Heatmap.target_index,
            Image.id,
            Image.dataset_id,
            Image.rel_path,
            Image.sha256,
            Image.width,
            Image.height,
            CamRun.model_id,
            CamRun.id,
            Prediction.predicted_index,
            Prediction.probs,
            Prediction.transform,
        )
        .join(CamRun, CamRun.id == Heatmap.cam_run_id)
        .join(ModelRecord, ModelRecord.id == CamRun.model_id)
        .join(Image, Image.id == Heatmap.image_id)
        .join(
            Prediction,
            (Prediction.image_id == Heatmap.image_id) & (Prediction.model_id == CamRun.model_id),
        )
        .order_by(Image.dataset_id, Image.rel_path, ModelRecord.id, CamRun.method, CamRun.id)
    )
    if dataset is not None:
        q = q.where(Image.dataset_id == ref_id(dataset))
    if model is not None:
        q = q.where(CamRun.model_id == ref_id(model))
    if method is not None:
        q = q.where(CamRun.method == method.strip().lower())
    if image_ids is not None:
        q = q.where(Image.id.in_(sorted({int(i) for i in image_ids})))
    models = {
        m_id: (
            name,
            [str(c) for c in (card or {}).get("classes", [])],
            model_kind(card),
            (card or {}).get("score") == "multilabel",
        )
        for m_id, name, card in s.execute(
            select(ModelRecord.id, ModelRecord.name, ModelRecord.card)
        )
    }
    runs = {
        run_id: (method, json.loads(layers), policy, json.loads(params))
        for run_id, method, layers, policy, params in s.execute(
            select(
                CamRun.id,
                CamRun.method,
                CamRun.layers_json,
                CamRun.target_policy,
                CamRun.params_json,
            )
        )
    }
    last_prediction: tuple | None = None
    for batch in s.execute(q.execution_options(yield_per=_BATCH)).partitions():
        labels = _labels_for(s, sorted({r[2] for r in batch}))
        for r in batch:
            img_labels = labels.get(r[2], [])
            # The runs of one model on one image come in a row and share its prediction: keep
            # one decoded copy of its probabilities and transform, not one per run.
            if last_prediction is None or last_prediction[0] != (r[2], r[8]):
                same_image = last_prediction is not None and last_prediction[0][0] == r[2]
                path, sha = (last_prediction[3], last_prediction[4]) if same_image else r[4:6]
                last_prediction = ((r[2], r[8]), r[11], r[12], path, sha)
            _, probs, transform, rel_path, sha256 = last_prediction
            model_name, classes, kind, multilabel = models[r[8]]
            run_method, layers, policy, params = runs[r[9]]
            yield ResultRow(
                heatmap_id=r[0],
                target_index=r[1],
                image_id=r[2],
                dataset_id=r[3],
                rel_path=rel_path,
                sha256=sha256,
                width=r[6],
                height=r[7],
                model_id=r[8],
                model_name=model_name,
                classes=classes,
                run_id=r[9],
                method=run_method,
                layers=layers,
                target_policy=policy,
                params=params,
                predicted_index=r[10],
                probs=probs,
                transform=transform,
                label=_pick_label(img_labels, label_source),
                labels={src: val for src, val, _ in img_labels},
                model_kind=kind,
                multilabel=multilabel,
            )


def model_kind(card: dict[str, Any] | None) -> str:
    """What a model record is, from its card (see ``ResultRow.model_kind``)."""
    card = card or {}
    if card.get("kind") == "baseline":
        return "baseline"
    return "randomized" if "randomization" in card else "model"


def _labels_for(s: Session, image_ids: list[int]) -> dict[int, list[tuple[str, str, Any]]]:
    out: dict[int, list[tuple[str, str, Any]]] = {}
    rows = s.execute(
        select(Label.image_id, Label.source, Label.value, Label.updated_at).where(
            Label.image_id.in_(image_ids)
        )
    )
    for img_id, source, value, updated in rows:
        out.setdefault(img_id, []).append((source, value, updated))
    return out


def _pick_label(labels: list[tuple[str, str, Any]], source: str | None) -> str | None:
    if source is not None:
        return next((val for src, val, _ in labels if src == source), None)
    if not labels:
        return None
    newest = max(labels, key=lambda t: (t[2], t[0]))
    return newest[1]
