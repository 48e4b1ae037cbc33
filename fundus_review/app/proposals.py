"""Proposed optic disc and cup, the computing half (GUI button, `fundus-review propose`).

``compute_proposal`` runs the shipped segmenter on one stored photograph and turns its maps into
editable polygons or ellipses (``inference.segment_post``); it only reads, so the GUI runs it on
a worker thread. Storing them as the reviewer's undoable "proposed:<segmenter>" regions is
``review.proposals`` (the editor's layer).
"""

from __future__ import annotations

from pathlib import Path

from fundus_review.data.images import load_image
from fundus_review.errors import FundusReviewError
from fundus_review.inference.segment_post import ProposedShape, disc_cup_masks, shapes_from_masks
from fundus_review.inference.segmenter import Segmenter, load_segmenter
from fundus_review.paths import shipped_models_dir
from fundus_review.store import repo
from fundus_review.store.db import Database

DEFAULT_SEGMENTER = shipped_models_dir() / "segmenter-disc-cup"
_LOADED: dict[Path, Segmenter] = {}


def get_segmenter(path: str | Path | None = None) -> Segmenter:
    """The segmenter at ``path`` (default: the shipped one), loaded once per process."""
    folder = Path(path or DEFAULT_SEGMENTER).resolve()
    if folder not in _LOADED:
        _LOADED[folder] = load_segmenter(folder)
    return _LOADED[folder]


def image_file(db: Database, image_id: int) -> Path:
    with db.session(read_only=True) as s:
        img = repo.find_image(s, image_id)
        if img is None:
            raise FundusReviewError(f"image {image_id} is not in {db.display_name}")
        return Path(img.dataset.root) / img.rel_path


def compute_proposal(
    db: Database, image_id: int, segmenter: Segmenter, kind: str = "polygon"
) -> list[ProposedShape]:
    """Disc and cup shapes the segmenter proposes for one stored image (nothing is written)."""
    rgb = load_image(image_file(db, image_id))
    disc_p, cup_p = segmenter.predict(rgb)
    disc, cup = disc_cup_masks(disc_p, cup_p, segmenter.card.threshold)
    return shapes_from_masks(disc, cup, kind)


def dataset_image_ids(db: Database, dataset: str | Path | None) -> list[int]:
    """Ids of a dataset's images (by root folder or name), every image when None."""
    with db.session(read_only=True) as s:
        datasets = repo.list_datasets(s)
        if dataset is not None:
            want = str(dataset)
            resolved = str(Path(want).expanduser().resolve())
            datasets = [d for d in datasets if d.root in (want, resolved) or d.name == want]
            if not datasets:
                raise FundusReviewError(f"no dataset {want!r} in {db.display_name}")
        return [img.id for d in datasets for img in repo.dataset_images(s, d.id)]
