"""What an analysis run reads and writes besides the generic result functions: the images it
still has to compute, and one image's prediction with all of its heatmaps.

Like ``store.repo``, every function takes an open Session first; the caller's ``with
db.session()`` block is the transaction (``app.analyze`` commits one per batch).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from fundus_review.store.repo_images import ref_id
from fundus_review.store.repo_results import EncodedHeatmap, save_heatmap, save_prediction
from fundus_review.store.schema import Image

_CHUNK = 500  # stays below SQLite's bound-parameter limit in IN (...) lists


def image_paths(s: Session, image_ids: Iterable[int]) -> list[tuple[str, int]]:
    """(rel_path, id) of the images, sorted by path (the order an analysis computes them in)."""
    ids = sorted(set(image_ids))
    out: list[tuple[str, int]] = []
    for i in range(0, len(ids), _CHUNK):
        query = select(Image.rel_path, Image.id).where(Image.id.in_(ids[i : i + _CHUNK]))
        out += [(rel, image_id) for rel, image_id in s.execute(query)]
    return sorted(out)


def save_analysed_image(
    s: Session,
    image: object,
    model: object,
    probs: Sequence[float] | np.ndarray,
    transform: dict,
    target_index: int,
    heatmaps: Mapping[int, np.ndarray | EncodedHeatmap],
) -> None:
    """The model's prediction for the image (predicted class = the most probable) and, per CAM
    run id in ``heatmaps``, its heatmap for the target class."""
    image_id, model_id = ref_id(image), ref_id(model)
    save_prediction(s, image_id, model_id, probs, int(np.argmax(probs)), transform)
    for run_id, heatmap in heatmaps.items():
        save_heatmap(s, run_id, image_id, int(target_index), heatmap)
