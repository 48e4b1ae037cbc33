"""Sharing one analysis between concurrent runs on one database: the claim step of ``analyze``.

Every run of ``run_analysis`` (CLI, GUI, either engine) claims its images batch by batch in the
database (``store.repo_claims``) before computing them, marks them finished in the same
transaction that stores their results, and drops what it still holds when it ends or is
cancelled. So two ``fundus-review analyze`` runs of the same command on one database (two
machines on one PostgreSQL server, two terminals on one SQLite file) split the images between
them, and neither computes an image the other computed:

- an image claimed by another live run is skipped and revisited at the end; a run finishes
  only once every image of its plan is stored by someone (or could not be read), waiting for
  the other runs' last batches if needed;
- a run that crashed stops renewing its claims (a heartbeat thread renews them every third of
  the lease); when the lease ends they are taken over;
- an image claimed anew is checked against the stored results first (another run may have
  stored it after this run planned), so it is never recomputed; with ``--force`` only results
  stored after this run started count.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from fundus_review.store import repo, repo_claims
from fundus_review.store.db import Database

_log = logging.getLogger(__name__)

LEASE_S = 60.0  # a claim not renewed for this long belongs to a crashed run
POLL_S = 1.0  # how often a run waiting for others' last images looks again


def new_owner() -> str:
    """host:pid:random, unique per analysis run (two runs of one process differ too)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class ClaimedBatch:
    """The next images this run computes ((rel_path, id), at most a batch), and how many of
    its plan were found finished by other runs since the last batch."""

    items: list[tuple[str, int]]
    elsewhere: int = 0
    waiting: bool = False  # no image to compute now: others hold the remaining ones


@dataclass
class WorkShare:
    """One run's side of the shared work, over its plan (``todo``: (rel_path, id) in order)."""

    db: Database
    model_id: int
    run_ids: Sequence[int]
    todo: Sequence[tuple[str, int]]
    force: bool = False
    lease_s: float = LEASE_S
    poll_s: float = POLL_S
    owner: str = field(default_factory=new_owner)

    def __post_init__(self) -> None:
        self.recipe = repo_claims.recipe_of(self.run_ids)
        with self.db.session(read_only=True) as s:
            self.since = repo_claims.db_now(s)
        self._stop = threading.Event()
        self._heartbeat = threading.Thread(
            target=self._beat, name=f"claims-heartbeat-{self.owner}", daemon=True
        )
        self._heartbeat.start()

    def batches(
        self, batch_size: int, cancelled: Callable[[], bool] = lambda: False
    ) -> Iterator[ClaimedBatch]:
        """Claimed batches until every planned image is computed here or elsewhere. When only
        images held by others are left it yields a ``waiting`` batch, then polls."""
        pending: deque[tuple[str, int]] = deque(self.todo)
        held: dict[int, str] = {}  # id -> rel_path, claimed by another live run
        path_of = dict((image_id, rel) for rel, image_id in self.todo)
        while pending or held:
            if cancelled():
                return
            items: list[tuple[str, int]] = []
            elsewhere = 0
            if not pending:
                yield ClaimedBatch([], 0, waiting=True)
                self._sleep(cancelled)
                pending.extend((rel, i) for i, rel in sorted(held.items(), key=lambda t: t[1]))
                held.clear()
            while pending and len(items) < batch_size:
                window = [
                    pending.popleft() for _ in range(min(batch_size - len(items), len(pending)))
                ]
                got, done_elsewhere, busy = self._claim([i for _, i in window])
                items += [(path_of[i], i) for i in got]
                elsewhere += done_elsewhere
                held.update((i, path_of[i]) for i in busy)
            if items or elsewhere:
                yield ClaimedBatch(items, elsewhere)

    def _claim(self, image_ids: list[int]) -> tuple[list[int], int, list[int]]:
        """One transaction: claim, then drop from the claimed ones what is stored already."""
        with self.db.session() as s:
            out = repo_claims.claim_images(
                s, self.model_id, self.recipe, image_ids, self.owner, self.lease_s, self.since
            )
            stored = self._stored(s, out.claimed) if out.claimed else set()
            if stored:
                repo_claims.finish_claims(s, self.owner, stored)
        got = [i for i in out.claimed if i not in stored]
        return got, len(out.finished_elsewhere) + len(stored), list(out.held_elsewhere)

    def _stored(self, s: object, image_ids: list[int]) -> set[int]:
        if self.force:  # results stored before this run started are the ones it recomputes
            return set()
        done: set[int] | None = None
        for run_id in self.run_ids:
            found = repo.find_done_images(s, image_ids, run_id)
            done = found if done is None else done & found
        return done or set()

    def finish(self, s: object, image_ids: Sequence[int]) -> None:
        """Inside the transaction that stores them: these images are finished."""
        repo_claims.finish_claims(s, self.owner, image_ids)

    def close(self) -> None:
        """Stop the heartbeat and drop every claim not finished (cancel, error or end)."""
        self._stop.set()
        self._heartbeat.join(timeout=5)
        with self.db.session() as s:
            repo_claims.release_claims(s, self.owner)

    def _sleep(self, cancelled: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.poll_s
        while time.monotonic() < deadline and not cancelled():
            time.sleep(min(0.05, self.poll_s))

    def _beat(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            try:
                with self.db.session() as s:
                    repo_claims.renew_claims(s, self.owner, self.lease_s)
            except Exception as exc:  # noqa: BLE001 - a missed beat only shortens the lease
                # Said, not fatal: if beats keep failing, the leases run out and another run
                # takes the images over (computed twice, never lost).
                _log.warning("work claims of %s not renewed: %s", self.owner, exc)
                continue
