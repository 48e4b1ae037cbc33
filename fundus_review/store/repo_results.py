"""Models, CAM runs, predictions and heatmaps. Call these through ``fundus_review.store.repo``."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from fundus_review.errors import StoreError
from fundus_review.store.codec import HEATMAP_DTYPE, decode_heatmap, encode_heatmap
from fundus_review.store.repo_images import _insert_or_fetch, get_by_id, ref_id
from fundus_review.store.schema import (
    CamRun,
    FaithfulnessValue,
    Heatmap,
    Image,
    ModelRecord,
    Prediction,
    Score,
    canonical_json,
)

_CHUNK = 500  # stays below SQLite's bound-parameter limit in IN (...) lists


def _chunks(ids: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for i in range(0, len(ids), _CHUNK):
        yield ids[i : i + _CHUNK]


def _json_default(value: Any) -> Any:
    # Cards and transforms arrive with Paths, tuples and numpy scalars; store plain JSON.
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _json_ready(value: Any, what: str) -> Any:
    """A plain-JSON copy of ``value`` (what a JSON column will hand back later)."""
    try:
        text = json.dumps(value, sort_keys=True, default=_json_default, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} is not JSON-serialisable: {exc}") from None
    return json.loads(text)


def get_or_create_model(
    s: Session,
    name: str,
    architecture: str,
    card: dict[str, Any],
    weights_sha256: str,
    path: str | Path,
) -> ModelRecord:
    """The model with these weights and this card; the bundle path is refreshed if it moved."""
    card_clean = _json_ready(card, f"model card of {name}")
    card_sha = hashlib.sha256(canonical_json(card_clean).encode("utf-8")).hexdigest()
    wsha = weights_sha256.lower()
    query = select(ModelRecord).where(
        ModelRecord.weights_sha256 == wsha, ModelRecord.card_sha256 == card_sha
    )
    rec = s.scalar(query)
    bundle_path = str(path)
    if rec is None:
        row = ModelRecord(
            name=name,
            architecture=architecture,
            card=card_clean,
            weights_sha256=wsha,
            card_sha256=card_sha,
            bundle_path=bundle_path,
        )
        return _insert_or_fetch(s, row, query)
    if rec.bundle_path != bundle_path:
        rec.bundle_path = bundle_path
    if rec.name != name:
        rec.name = name
    return rec


def list_models(s: Session) -> list[ModelRecord]:
    return list(s.scalars(select(ModelRecord).order_by(ModelRecord.name, ModelRecord.id)))


def get_or_create_cam_run(
    s: Session,
    model: object,
    method: str,
    layers: Sequence[str],
    target_policy: str = "predicted",
    params: dict[str, Any] | None = None,
) -> CamRun:
    """The run recipe (model + method + layers + target + parameters); equal recipes share a row.

    ``layers`` keep their order (a multi-layer CAM averages them, but the user's order is what
    they typed); ``target_policy`` is "predicted" or "class:<class name>".
    """
    method_n = method.strip().lower()
    if not method_n:
        raise ValueError("a CAM run needs a method name")
    layer_list = [str(x) for x in layers]
    if not layer_list or any(not x.strip() for x in layer_list):
        raise ValueError(f"a CAM run needs at least one non-empty layer path, got {layers!r}")
    if target_policy != "predicted" and not (
        target_policy.startswith("class:") and target_policy[6:].strip()
    ):
        raise ValueError(
            f"target policy must be 'predicted' or 'class:<name>', got {target_policy!r}"
        )
    layers_json = canonical_json(layer_list)
    params_json = canonical_json(_json_ready(params or {}, "CAM parameters"))
    model_id = ref_id(model)
    query = select(CamRun).where(
        CamRun.model_id == model_id,
        CamRun.method == method_n,
        CamRun.layers_json == layers_json,
        CamRun.target_policy == target_policy,
        CamRun.params_json == params_json,
    )
    run = s.scalar(query)
    if run is not None:
        return run
    row = CamRun(
        model_id=model_id,
        method=method_n,
        layers_json=layers_json,
        target_policy=target_policy,
        params_json=params_json,
    )
    return _insert_or_fetch(s, row, query)


def list_cam_runs(s: Session, model: object | None = None) -> list[CamRun]:
    q = select(CamRun).order_by(CamRun.model_id, CamRun.method, CamRun.id)
    if model is not None:
        q = q.where(CamRun.model_id == ref_id(model))
    return list(s.scalars(q))


def save_prediction(
    s: Session,
    image: object,
    model: object,
    probs: Sequence[float] | np.ndarray,
    predicted_index: int,
    transform: dict[str, Any],
) -> Prediction:
    """Insert or replace the prediction of ``model`` for ``image`` (all class probabilities)."""
    p = np.asarray(probs).ravel()
    if p.size == 0 or not np.issubdtype(p.dtype, np.number) or not np.all(np.isfinite(p)):
        raise ValueError("probabilities must be a non-empty array of finite numbers")
    idx = int(predicted_index)
    if not 0 <= idx < p.size:
        raise ValueError(f"predicted index {idx} is outside the {p.size} classes")
    # float32 softmax outputs are stored by their shortest repr (0.8, not 0.800000011920929),
    # which round-trips exactly to the same float32 and keeps exported tables readable.
    values = [float(str(x)) for x in p] if p.dtype == np.float32 else [float(x) for x in p]
    tf = _json_ready(transform, "input transform")
    img_id, model_id = ref_id(image), ref_id(model)
    query = select(Prediction).where(Prediction.image_id == img_id, Prediction.model_id == model_id)
    pred = s.scalar(query)
    if pred is None:
        row = Prediction(
            image_id=img_id, model_id=model_id, probs=values, predicted_index=idx, transform=tf
        )
        return _insert_or_fetch(s, row, query)
    pred.probs, pred.predicted_index, pred.transform = values, idx, tf
    return pred


def get_prediction(s: Session, image: object, model: object) -> Prediction | None:
    return s.scalar(
        select(Prediction).where(
            Prediction.image_id == ref_id(image), Prediction.model_id == ref_id(model)
        )
    )


@dataclass(frozen=True)
class EncodedHeatmap:
    """A heatmap already in its stored form: Ray workers encode, so the writer only stores and
    a fifth of the bytes travels (``app.analyze_ray``)."""

    data: bytes
    height: int
    width: int


def encode_for_store(heatmap: np.ndarray) -> EncodedHeatmap:
    """The stored form of a heatmap (float16 + zlib); ValueError as ``save_heatmap`` raises."""
    h, w = np.asarray(heatmap).shape
    return EncodedHeatmap(encode_heatmap(heatmap), int(h), int(w))


def save_heatmap(
    s: Session,
    run: object,
    image: object,
    target_index: int,
    heatmap: np.ndarray | EncodedHeatmap,
) -> Heatmap:
    """Insert or replace the heatmap of ``run`` for ``image`` (model-input resolution; an array
    or its ``encode_for_store`` form, stored byte for byte alike).

    Replacing a heatmap with different pixels deletes its scores and faithfulness values, which
    were computed from the old one; verdicts stay (a recomputation with the same recipe
    reproduces the same map).
    """
    if isinstance(heatmap, EncodedHeatmap):
        data, h, w = heatmap.data, heatmap.height, heatmap.width
    else:
        data = encode_heatmap(heatmap)
        h, w = np.asarray(heatmap).shape
    run_id, img_id = ref_id(run), ref_id(image)
    query = select(Heatmap).where(Heatmap.cam_run_id == run_id, Heatmap.image_id == img_id)
    row = s.scalar(query)
    if row is None:
        new = Heatmap(
            cam_run_id=run_id,
            image_id=img_id,
            target_index=int(target_index),
            height=h,
            width=w,
            dtype=HEATMAP_DTYPE,
            data=data,
        )
        return _insert_or_fetch(s, new, query)
    if row.data != data or row.target_index != int(target_index):
        s.execute(delete(Score).where(Score.heatmap_id == row.id))
        s.execute(delete(FaithfulnessValue).where(FaithfulnessValue.heatmap_id == row.id))
    row.target_index, row.height, row.width = int(target_index), h, w
    row.dtype, row.data = HEATMAP_DTYPE, data
    return row


def heatmap_array(row: Heatmap) -> np.ndarray:
    """Decode a stored heatmap row to float32 (height, width)."""
    try:
        return decode_heatmap(row.data, row.height, row.width, row.dtype)
    except ValueError as exc:
        raise StoreError(f"heatmap {row.id} is unreadable: {exc}") from None


def load_heatmap(
    s: Session, run: object, image: object
) -> tuple[np.ndarray, dict[str, Any], int] | None:
    """(heatmap float32 at model-input resolution, InputTransform dict, target index) or None.

    None when the run has no heatmap for the image, or when its prediction (which holds the
    transform) is missing.
    """
    run_row = get_by_id(s, CamRun, run)
    found = s.execute(
        select(Heatmap, Prediction.transform)
        .join(
            Prediction,
            (Prediction.image_id == Heatmap.image_id) & (Prediction.model_id == run_row.model_id),
        )
        .where(Heatmap.cam_run_id == run_row.id, Heatmap.image_id == ref_id(image))
    ).first()
    if found is None:
        return None
    row, transform = found
    return heatmap_array(row), dict(transform), row.target_index


def get_heatmap(s: Session, run: object, image: object) -> Heatmap | None:
    return s.scalar(
        select(Heatmap).where(Heatmap.cam_run_id == ref_id(run), Heatmap.image_id == ref_id(image))
    )


def find_done_images(s: Session, images: Iterable[object], run: object) -> set[int]:
    """Ids of ``images`` (Image rows or ids) that already have a prediction and a heatmap for
    ``run`` (a CamRun or its id).

    Results are keyed by image CONTENT: an image whose exact file (same sha256) was already
    analysed with this run under another dataset or path gets that prediction and heatmap copied
    to its own row and counts as done. (A run row is already unique per model weights + card,
    method, layers, target and parameters.)
    """
    run_row = get_by_id(s, CamRun, run)
    ids = sorted({ref_id(i) for i in images})
    done: set[int] = set()
    for chunk in _chunks(ids):
        done.update(
            s.scalars(
                select(Heatmap.image_id)
                .join(
                    Prediction,
                    (Prediction.image_id == Heatmap.image_id)
                    & (Prediction.model_id == run_row.model_id),
                )
                .where(Heatmap.cam_run_id == run_row.id, Heatmap.image_id.in_(chunk))
            )
        )
    missing = [i for i in ids if i not in done]
    if not missing:
        return done
    sha_of: dict[int, str] = {}
    for chunk in _chunks(missing):
        sha_of.update(s.execute(select(Image.id, Image.sha256).where(Image.id.in_(chunk))).all())
    shas = sorted(set(sha_of.values()))
    source: dict[str, tuple[Heatmap, Prediction]] = {}
    for chunk in _chunks(shas):
        rows = s.execute(
            select(Image.sha256, Heatmap, Prediction)
            .join(Heatmap, Heatmap.image_id == Image.id)
            .join(
                Prediction,
                (Prediction.image_id == Image.id) & (Prediction.model_id == run_row.model_id),
            )
            .where(Heatmap.cam_run_id == run_row.id, Image.sha256.in_(chunk))
            .order_by(Heatmap.id)
        )
        for sha, hm, pred in rows:
            source.setdefault(sha, (hm, pred))
    for img_id in missing:
        src = source.get(sha_of.get(img_id, ""))
        if src is None:
            continue
        hm, pred = src
        save_prediction(
            s, img_id, run_row.model_id, pred.probs, pred.predicted_index, pred.transform
        )
        copy = get_heatmap(s, run_row.id, img_id)
        if copy is None:
            s.add(
                Heatmap(
                    cam_run_id=run_row.id,
                    image_id=img_id,
                    target_index=hm.target_index,
                    height=hm.height,
                    width=hm.width,
                    dtype=hm.dtype,
                    data=hm.data,
                )
            )
        done.add(img_id)
    s.flush()
    return done
