"""The Ray engine of ``analyze`` (``--engine ray``; the optional extra ``.[scale]``).

The driver (``app.analyze.run_analysis``) claims batches as always and hands each to one of a
pool of Ray actors; every actor loads the model once (on its GPU when ``gpus_per_worker > 0``),
decodes its batch's files itself and runs the same ``compute_batch`` as the local engine. Results
stream back to the driver in completion order, which stores them through the same
``store_batch`` step (one transaction per batch, claims finished in it), so resume, cancel (the
in-flight batches are dropped and their claims handed back) and progress behave as locally, and
the stored results are the local engine's.

Every node must see the dataset and the bundle at the same paths (a shared file system) and have
fundus-review installed; a local Ray instance (no ``--address``) gets the driver's import path.
Ray is imported only here, and only when this engine runs.
"""

from __future__ import annotations

import os
import sys
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fundus_review.app.analyze_steps import (
    AnalysisRequest,
    ComputedStep,
    ImageFailed,
    LoadedModel,
    compute_batch,
    load_file,
)
from fundus_review.app.claims import ClaimedBatch
from fundus_review.errors import FundusReviewError

IN_FLIGHT_PER_WORKER = 2  # one batch computing, one queued behind it on each actor


def init_local_ray(**kwargs: Any) -> None:
    """Start a local Ray instance whose workers import what this process imports (its
    ``sys.path`` as their PYTHONPATH, inherited when Ray spawns them)."""
    ray = _ray()
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    try:
        ray.init(include_dashboard=False, log_to_driver=False, **kwargs)
    finally:
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise FundusReviewError(
            "--engine ray needs Ray: pip install -e \".[scale]\" (or pip install 'ray==2.60.0')"
        ) from None
    return ray


class BatchWorker:
    """One Ray actor: the model built once, then batch after batch."""

    def __init__(self, request: dict[str, Any], trusted: list[str]) -> None:
        from fundus_review.inference.trust import grant

        for module in trusted:  # the driver already checked (and the user allowed) this code
            grant(module)
        req = AnalysisRequest(**request)
        self.model = LoadedModel.of(req)
        self.model.build(req)
        self.engine = self.model.engine()
        # Decoding releases the GIL: a batch's files decode on the actor's CPUs in parallel.
        self.pool = ThreadPoolExecutor(max_workers=max(1, int(req.cpus_per_worker)))

    def compute(self, root: str, items: list[tuple[str, int]]) -> ComputedStep:
        step = ComputedStep(None)
        good = []
        decoded = self.pool.map(load_file, [Path(root) / rel for rel, _ in items])
        for (_rel, image_id), img in zip(items, decoded, strict=True):
            if isinstance(img, ImageFailed):
                step.failed.append((image_id, img))
            else:
                good.append((image_id, img))
        if good:
            step.result = compute_batch(self.engine, self.model, good)
            step.result.encode_heatmaps(self.pool.map)  # on the worker's CPUs, not the driver's
        return step

    def device(self) -> str:
        return str(self.model.device)


class RayEngine:
    """A pool of ``BatchWorker`` actors for one analysis run."""

    def __init__(self, req: AnalysisRequest, model: LoadedModel) -> None:
        # Bad options are refused before a cluster is started or joined.
        if req.workers is not None and req.workers < 1:
            raise FundusReviewError(f"--workers must be at least 1, not {req.workers}")
        cpus = int(req.cpus_per_worker)
        if cpus < 1:
            raise FundusReviewError(f"--cpus-per-worker must be at least 1, not {cpus}")
        gpus = float(req.gpus_per_worker or 0.0)
        ray = self.ray = _ray()
        self.actors: list[Any] = []
        self.started_ray = not ray.is_initialized()
        if self.started_ray and req.ray_address:
            ray.init(address=req.ray_address, log_to_driver=False)
        elif self.started_ray:
            init_local_ray()
        try:  # whatever fails from here on (Ctrl-C included) leaves no actor or Ray behind
            self._start(req, model, cpus, gpus)
        except BaseException:
            self.close()
            raise

    def _start(self, req: AnalysisRequest, model: LoadedModel, cpus: int, gpus: float) -> None:
        ray = self.ray
        have_gpus = float(ray.cluster_resources().get("GPU", 0))
        if gpus > 0 and have_gpus < gpus:
            # Ray would wait for ever for an actor it can never place.
            raise FundusReviewError(
                f"--gpus-per-worker {gpus:g}, but the Ray cluster has {have_gpus:g} GPU(s)"
            )
        n = req.workers
        if n is None:
            n = max(1, int(have_gpus // gpus)) if gpus > 0 else 2
        spec = asdict(req)
        spec.update(engine="local", device="cuda" if gpus > 0 else req.device, image_ids=None)
        trusted = _trusted_modules(model)
        actor = ray.remote(num_cpus=cpus, num_gpus=gpus)(BatchWorker)
        self.actors = [actor.remote(spec, trusted) for _ in range(n)]
        try:
            self.devices = ray.get([a.device.remote() for a in self.actors])
        except ray.exceptions.RayError as exc:
            raise FundusReviewError(f"the Ray workers could not start: {_summary(exc)}") from exc
        self.n, self.gpus = n, gpus

    def describe(self) -> str:
        devices = ", ".join(sorted(set(self.devices)))
        return f"ray: {self.n} worker{'s' if self.n != 1 else ''} on {devices}"

    def compute(self, root: Path, claimed: Iterator[ClaimedBatch]) -> Iterator[ComputedStep]:
        """Claimed batches out to the actors (at most IN_FLIGHT_PER_WORKER each), computed
        batches back in the order they finish."""
        ray = self.ray
        free = deque(a for a in self.actors for _ in range(IN_FLIGHT_PER_WORKER))
        in_flight: dict[Any, tuple[Any, int]] = {}  # ref -> (actor, elsewhere count)
        exhausted = False
        try:
            while True:
                # Pull claims while an actor slot is free; a "waiting" batch (others hold the
                # remaining images) is only pulled past once nothing is in flight, since the next
                # pull sleeps.
                while free and not exhausted:
                    batch = next(claimed, None)
                    if batch is None:
                        exhausted = True
                        break
                    if batch.items:
                        actor = free.popleft()
                        ref = actor.compute.remote(str(root), batch.items)
                        in_flight[ref] = (actor, batch.elsewhere)
                    else:
                        yield ComputedStep(None, elsewhere=batch.elsewhere)
                    if batch.waiting and in_flight:
                        break
                if not in_flight:
                    if exhausted:
                        return
                    continue
                ready, _ = ray.wait(list(in_flight), num_returns=1)
                actor, elsewhere = in_flight.pop(ready[0])
                free.append(actor)
                try:
                    step = ray.get(ready[0])
                except ray.exceptions.RayError as exc:
                    raise FundusReviewError(
                        f"a Ray worker failed ({_summary(exc)}); every batch stored before "
                        "stays: run the same command again to continue"
                    ) from exc
                step.elsewhere += elsewhere
                yield step
        finally:  # cancel, Ctrl-C or the end: in-flight batches die with their actors
            self.close()

    def close(self) -> None:
        """Kill the actors and stop the Ray instance this run started (safe to call twice)."""
        for a in self.actors:
            self.ray.kill(a)
        self.actors = []
        if self.started_ray:
            self.ray.shutdown()
            self.started_ray = False


def _summary(exc: BaseException) -> str:
    lines = [ln for ln in str(exc).splitlines() if ln.strip()]
    return lines[-1].strip() if lines else type(exc).__name__


def _trusted_modules(model: LoadedModel) -> list[str]:
    """The code module of the bundle's architecture, when the driver built it (so it was trusted
    here): the actors may import it too."""
    from fundus_review.inference.trust import code_module

    module = code_module(model.bundle.card.architecture)
    return [] if module is None else [module]
