"""Work claims: which analysis run computes which image, so that concurrent runs share the work.

A claim is one ``work_claims`` row per (model, recipe, image). Claiming is atomic on every
backend: an ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` gives each caller exactly the rows
it created (on SQLite the write transaction is ``BEGIN IMMEDIATE`` as well; on PostgreSQL a
second inserter of the same key waits for the first one's transaction and then sees its row), and
a takeover is a conditional ``UPDATE ... WHERE <still stale> RETURNING``: two workers taking over
the same stale claim both run it, and the row lock makes the second re-check its condition, so
exactly one wins. Times come from the database server's clock (PostgreSQL ``now()``), so workers
on machines whose clocks disagree still agree on which claims expired.

Like ``store.repo``, every function takes an open Session first; the caller's ``with
db.session()`` block is the transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fundus_review.store.schema import WorkClaim

_CHUNK = 500  # stays below SQLite's bound-parameter limit in IN (...) lists


@dataclass
class ClaimOutcome:
    """What one ``claim_images`` call found, image ids in the order asked."""

    claimed: list[int] = field(default_factory=list)  # now this owner's: compute them
    finished_elsewhere: list[int] = field(default_factory=list)  # finished since `since`
    held_elsewhere: dict[int, datetime] = field(default_factory=dict)  # id -> lease end


def recipe_of(run_ids: Iterable[int]) -> str:
    """The claim recipe of an analysis: its CAM run ids, sorted ("3,4")."""
    return ",".join(str(i) for i in sorted(set(int(r) for r in run_ids)))


def db_now(s: Session) -> datetime:
    """The current time, aware UTC, from the database server where it has a clock of its own."""
    if s.get_bind().dialect.name == "postgresql":
        return s.scalar(select(func.clock_timestamp())).astimezone(UTC)
    return datetime.now(UTC)


def _chunks(ids: Sequence[int]) -> Iterable[Sequence[int]]:
    for i in range(0, len(ids), _CHUNK):
        yield ids[i : i + _CHUNK]


def _insert_new(s: Session, rows: list[dict]) -> set[int]:
    """Insert the rows whose key is free; the image ids inserted (by this call only)."""
    dialect = s.get_bind().dialect.name
    if dialect in ("sqlite", "postgresql"):
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        stmt = (
            insert(WorkClaim)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["model_id", "recipe", "image_id"])
            .returning(WorkClaim.image_id)
        )
        return set(s.scalars(stmt))
    won: set[int] = set()
    for row in rows:  # any other backend: one savepoint per row, the unique constraint decides
        try:
            with s.begin_nested():
                s.add(WorkClaim(**row))
            won.add(row["image_id"])
        except IntegrityError:
            pass
    return won


def claim_images(
    s: Session,
    model_id: int,
    recipe: str,
    image_ids: Sequence[int],
    owner: str,
    lease_s: float,
    since: datetime,
) -> ClaimOutcome:
    """Claim the images for ``owner`` for ``lease_s`` seconds; renews owner's other active claims.

    An image is claimed when nobody holds it, when its claim expired unfinished (a crashed
    worker), or when its claim finished before ``since`` (the claimant's run start: results
    stored before it are the caller's business, see ``app.claims``). Images whose claim finished
    at or after ``since`` are reported as finished elsewhere; images with an active claim of
    another owner as held elsewhere, with its lease end.
    """
    now = db_now(s)
    until = now + timedelta(seconds=lease_s)
    renew_claims(s, owner, lease_s, now=now)
    ids = list(dict.fromkeys(int(i) for i in image_ids))
    won: set[int] = set()
    for chunk in _chunks(ids):
        rows = [
            dict(
                model_id=model_id,
                recipe=recipe,
                image_id=i,
                owner=owner,
                claimed_at=now,
                expires_at=until,
                finished_at=None,
            )
            for i in chunk
        ]
        won |= _insert_new(s, rows)
    rest = [i for i in ids if i not in won]
    key = and_(WorkClaim.model_id == model_id, WorkClaim.recipe == recipe)
    for chunk in _chunks(rest):
        stale = or_(
            and_(WorkClaim.finished_at.is_(None), WorkClaim.expires_at <= now),
            and_(WorkClaim.finished_at.is_(None), WorkClaim.owner == owner),
            and_(WorkClaim.finished_at.is_not(None), WorkClaim.finished_at < since),
        )
        takeover = (
            update(WorkClaim)
            .where(key, WorkClaim.image_id.in_(chunk), stale)
            .values(owner=owner, claimed_at=now, expires_at=until, finished_at=None)
            .returning(WorkClaim.image_id)
            .execution_options(synchronize_session=False)
        )
        won |= set(s.scalars(takeover))
    out = ClaimOutcome(claimed=[i for i in ids if i in won])
    others = [i for i in ids if i not in won]
    for chunk in _chunks(others):
        query = select(WorkClaim.image_id, WorkClaim.finished_at, WorkClaim.expires_at).where(
            key, WorkClaim.image_id.in_(chunk)
        )
        seen: set[int] = set()
        for image_id, finished_at, expires_at in s.execute(query):
            seen.add(image_id)
            if finished_at is not None:
                out.finished_elsewhere.append(image_id)
            else:
                out.held_elsewhere[image_id] = expires_at
        # Under READ COMMITTED (PostgreSQL) another run may have released (deleted) a claim
        # between the statements above: such an image is free now, so report it as held until
        # now, and the caller's next poll claims it, instead of losing it from every list.
        for image_id in set(chunk) - seen:
            out.held_elsewhere[image_id] = now
    order = {i: k for k, i in enumerate(ids)}
    out.finished_elsewhere.sort(key=order.__getitem__)
    return out


def renew_claims(s: Session, owner: str, lease_s: float, *, now: datetime | None = None) -> int:
    """The heartbeat: extend every active claim of ``owner`` by ``lease_s`` from now."""
    now = now or db_now(s)
    stmt = (
        update(WorkClaim)
        .where(WorkClaim.owner == owner, WorkClaim.finished_at.is_(None))
        .values(expires_at=now + timedelta(seconds=lease_s))
        .execution_options(synchronize_session=False)
    )
    return int(s.execute(stmt).rowcount or 0)


def finish_claims(s: Session, owner: str, image_ids: Iterable[int]) -> int:
    """Mark ``owner``'s claims of these images finished (their results are stored, or the image
    could not be read); the number of claims marked."""
    now = db_now(s)
    ids = sorted({int(i) for i in image_ids})
    n = 0
    for chunk in _chunks(ids):
        stmt = (
            update(WorkClaim)
            .where(
                WorkClaim.owner == owner,
                WorkClaim.finished_at.is_(None),
                WorkClaim.image_id.in_(chunk),
            )
            .values(finished_at=now)
            .execution_options(synchronize_session=False)
        )
        n += int(s.execute(stmt).rowcount or 0)
    return n


def release_claims(s: Session, owner: str, image_ids: Iterable[int] | None = None) -> int:
    """Drop ``owner``'s unfinished claims (all of them, or those of ``image_ids``), so others may
    compute those images at once (cancel, end of run); the number dropped."""
    mine = and_(WorkClaim.owner == owner, WorkClaim.finished_at.is_(None))
    if image_ids is None:
        return int(s.execute(delete(WorkClaim).where(mine)).rowcount or 0)
    ids = sorted({int(i) for i in image_ids})
    n = 0
    for chunk in _chunks(ids):
        stmt = delete(WorkClaim).where(mine, WorkClaim.image_id.in_(chunk))
        n += int(s.execute(stmt).rowcount or 0)
    return n


def claims_of(s: Session, model_id: int, recipe: str) -> list[WorkClaim]:
    """Every claim of one recipe, by image id (diagnostics and tests)."""
    query = (
        select(WorkClaim)
        .where(WorkClaim.model_id == model_id, WorkClaim.recipe == recipe)
        .order_by(WorkClaim.image_id)
    )
    return list(s.scalars(query))
