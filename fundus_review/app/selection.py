"""Which stored heatmaps a scoring run or a report covers: datasets, models and methods by name.

Shared by ``fundus_review.app.scoring`` and ``fundus_review.report`` so that both resolve the user's
filters (ids, names, dataset folders, weight hashes) the same way and fail with the same message.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fundus_review.errors import FundusReviewError
from fundus_review.store import repo
from fundus_review.store.repo import ResultRow

# Ref = an id (int), a name, or for datasets also the root folder.
Ref = int | str


def _names(values: Sequence[str] | None) -> tuple[str, ...] | None:
    # A bare string is one name, not a sequence of letters.
    if values is None:
        return None
    return (values,) if isinstance(values, str) else tuple(values)


@dataclass(frozen=True)
class ResultSelection:
    """The user's filters on stored results; None (or empty) = everything.

    One object travels from the CLI/GUI through scoring into the report's data collection, so
    both see exactly the same heatmaps and masks. ``dataset``/``models`` are ids, names, dataset
    folders or weight hashes (one or several); ``methods`` the CAM methods; ``structures`` and
    ``reviewers`` restrict the expert masks used.
    """

    dataset: Ref | Sequence[Ref] | None = None
    models: Ref | Sequence[Ref] | None = None
    methods: Sequence[str] | None = None
    structures: Sequence[str] | None = None
    reviewers: Sequence[str] | None = None
    baselines: bool = True
    randomized: bool = False  # also the randomised copies' maps (scoring them for the test)

    def __post_init__(self) -> None:
        for name in ("methods", "structures", "reviewers"):
            object.__setattr__(self, name, _names(getattr(self, name)))

    def structure_set(self) -> set[str] | None:
        return set(self.structures) if self.structures else None

    def reviewer_set(self) -> set[str] | None:
        """Reviewer names as stored (inner whitespace collapsed)."""
        return {" ".join(r.split()) for r in self.reviewers} if self.reviewers else None

    def results(self, s: Any, image_ids: Collection[int] | None = None) -> list[ResultRow]:
        """The stored heatmaps of this selection (``image_ids``: only those images)."""
        return select_results(
            s,
            self.dataset,
            self.models,
            self.methods,
            image_ids,
            baselines=self.baselines,
            randomized=self.randomized,
        )

    def to_dict(self) -> dict[str, Any]:
        """As the report's JSON states it."""
        return {
            "dataset": self.dataset,
            "models": self.models,
            "methods": list(self.methods) if self.methods else None,
            "structures": list(self.structures) if self.structures else None,
            "reviewers": list(self.reviewers) if self.reviewers else None,
            "baselines": self.baselines,
        }


def _as_list(value: Ref | Sequence[Ref] | None) -> list[Ref] | None:
    if value is None:
        return None
    if isinstance(value, int | str):
        return [value]
    return list(value)


def resolve_dataset_ids(s: Any, dataset: Ref | Sequence[Ref] | None) -> set[int] | None:
    """Dataset ids for ids, names or root folders; FundusReviewError naming what is unknown."""
    wanted = _as_list(dataset)
    if wanted is None:
        return None
    known = repo.list_datasets(s)
    out: set[int] = set()
    for w in wanted:
        hits = [
            d.id
            for d in known
            if str(w) in (str(d.id), d.name, d.root) or _same_path(str(w), d.root)
        ]
        if not hits:
            names = ", ".join(f"{d.name} ({d.root})" for d in known) or "none"
            raise FundusReviewError(f"no dataset {w!r} in the database; known: {names}")
        out.update(hits)
    return out


def _same_path(a: str, b: str) -> bool:
    try:
        return Path(a).expanduser().resolve() == Path(b)
    except OSError:
        return False


def resolve_model_ids(s: Any, models: Ref | Sequence[Ref] | None) -> set[int] | None:
    wanted = _as_list(models)
    if wanted is None:
        return None
    known = repo.list_models(s)
    out: set[int] = set()
    for w in wanted:
        hits = [m.id for m in known if str(w) in (str(m.id), m.name, m.weights_sha256)]
        if not hits:
            names = ", ".join(sorted({m.name for m in known})) or "none"
            raise FundusReviewError(f"no model {w!r} in the database; known: {names}")
        out.update(hits)
    return out


def select_results(
    s: Any,
    dataset: Ref | Sequence[Ref] | None = None,
    models: Ref | Sequence[Ref] | None = None,
    methods: Sequence[str] | None = None,
    image_ids: Collection[int] | None = None,
    *,
    baselines: bool = True,
    randomized: bool = False,
) -> list[ResultRow]:
    """The stored heatmaps matching the filters, in ``repo.iter_results`` order.

    The filters choose real models' runs. With ``baselines`` the baseline maps of the same
    images come along (of the newest baseline definition; a mean map only with the run it
    averages), so that every table shows them beside the runs. Maps of randomised models (the
    randomisation test) are part of a selection only with ``randomized`` (to score them).
    """
    kinds = {"model", "randomized"} if randomized else {"model"}
    ds_ids = resolve_dataset_ids(s, dataset)
    model_ids = resolve_model_ids(s, models)
    wanted_methods = {m.strip().lower() for m in methods} if methods else None
    every = list(repo.iter_results(s, image_ids=image_ids))
    rows = [
        r
        for r in every
        if r.model_kind in kinds
        and (ds_ids is None or r.dataset_id in ds_ids)
        and (model_ids is None or r.model_id in model_ids)
        and (wanted_methods is None or r.method in wanted_methods)
    ]
    if wanted_methods and not rows:
        raise FundusReviewError(
            f"no stored heatmaps for method(s) {', '.join(sorted(wanted_methods))} "
            "with these filters; run `fundus-review analyze` first"
        )
    if not baselines or not rows:
        return rows
    base = [r for r in every if r.model_kind == "baseline"]
    newest = max((r.model_id for r in base), default=None)
    images, runs = {r.image_id for r in rows}, {r.run_id for r in rows}
    keep = {
        r.heatmap_id
        for r in base
        if r.model_id == newest
        and r.image_id in images
        and ("of_run" not in r.params or r.params["of_run"] in runs)
    }
    keep.update(r.heatmap_id for r in rows)
    return [r for r in every if r.heatmap_id in keep]
