"""Records of the randomisation test: derived models, their cards, and finding them again.

Shared by ``app.randomization`` (which stores the randomised maps), ``app.randomization_similarity``
(which compares them with the originals) and ``app.repeatability`` (which leaves them out). See
``app.randomization`` for what is stored where.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fundus_review.app.baselines import is_baseline
from fundus_review.app.selection import Ref, resolve_model_ids
from fundus_review.core.sampling import seeded_sample
from fundus_review.errors import FundusReviewError
from fundus_review.store import repo

# Equal to inference.randomize.STAGES (a test checks it); repeated here so that importing the
# app layer does not import torch.
STAGES = ("head", "last-block", "half", "all")
SCHEDULE_VERSION = 1


@dataclass(frozen=True)
class OriginalMap:
    """One original map of the sample: where its image is and what it explained."""

    image_id: int
    sha256: str
    path: Path
    target_index: int
    transform: dict


@dataclass(frozen=True)
class RunRecipe:
    """A CAM run's recipe, copied out of the session (read-only sessions expire ORM rows)."""

    id: int
    model_id: int
    method: str
    layers: list[str]
    target_policy: str
    params: dict
    layers_json: str
    params_json: str


def run_recipes(s: Any, model_id: int) -> list[RunRecipe]:
    return [
        RunRecipe(
            r.id,
            r.model_id,
            r.method,
            r.layers,
            r.target_policy,
            r.params,
            r.layers_json,
            r.params_json,
        )
        for r in repo.list_cam_runs(s, model_id)
    ]


def randomization_card(
    card: dict, stage: str, seed: int, of_model: int, modules: Sequence[str]
) -> dict:
    """The card of a derived (randomised) model: the original's plus what was randomised.

    ``modules`` (the stage's module names) enter as a count and a hash: the "last-block" and
    "half" stages depend on the CAM target layers, so runs of one model on different layers get
    different randomised networks, hence different records (of the same name).
    """
    out = dict(card)
    out["randomization"] = {
        "stage": stage,
        "seed": int(seed),
        "of_model": int(of_model),
        "schedule_version": SCHEDULE_VERSION,
        "targets": "original",
        "n_modules": len(modules),
        "modules_sha256": hashlib.sha256("\n".join(modules).encode()).hexdigest(),
    }
    return out


def is_randomized(card: dict | None) -> bool:
    return bool(card) and isinstance(card.get("randomization"), dict)


def derived_name(name: str, stage: str) -> str:
    return f"{name} [randomized: {stage}]"


def original_model(s: Any, model: Ref) -> Any:
    """The one real (not baseline, not randomised) model record matching an id or name."""
    ids = resolve_model_ids(s, model) or set()
    recs = [
        m
        for m in repo.list_models(s)
        if m.id in ids and not is_randomized(m.card) and not is_baseline(m.name, m.card)
    ]
    if not recs:
        raise FundusReviewError(f"{model!r} is a baseline or randomised model, not a real one")
    if len(recs) > 1:
        listed = ", ".join(f"id {m.id} ({m.weights_sha256[:12]})" for m in recs)
        raise FundusReviewError(f"several models are called {model!r}; pick one by id: {listed}")
    return recs[0]


def find_derived_run(
    s: Any, original_id: int, run: RunRecipe, stage: str, seed: int
) -> RunRecipe | None:
    """The stored randomised counterpart of an original run at ``stage``: a run with the same
    method, layers, target policy and parameters under a derived model of that stage and seed
    (one per set of target layers, see ``randomization_card``), or None."""
    recipe = (run.method, run.layers_json, run.target_policy, run.params_json)
    for m in repo.list_models(s):
        r = m.card.get("randomization") if is_randomized(m.card) else None
        if r is None or (r.get("of_model"), r.get("stage"), r.get("seed")) != (
            original_id,
            stage,
            int(seed),
        ):
            continue
        if r.get("schedule_version") != SCHEDULE_VERSION:
            continue
        for d in run_recipes(s, m.id):
            if (d.method, d.layers_json, d.target_policy, d.params_json) == recipe:
                return d
    return None


def sampled_originals(s: Any, model_id: int, sample: int | None, seed: int) -> dict[int, list]:
    """{original run id: [OriginalMap]} for the images of the seeded sample (one per sha256)."""
    roots = {d.id: Path(d.root) for d in repo.list_datasets(s)}
    by_run: dict[int, dict[str, OriginalMap]] = {}
    for r in repo.iter_results(s, model=model_id):
        if not r.sha256:
            continue
        by_run.setdefault(r.run_id, {}).setdefault(
            r.sha256,
            OriginalMap(
                r.image_id, r.sha256, roots[r.dataset_id] / r.rel_path, r.target_index, r.transform
            ),
        )
    out: dict[int, list] = {}
    for run_id, by_sha in by_run.items():
        out[run_id] = [by_sha[k] for k in seeded_sample(by_sha, sample, seed)]
    return out
