"""Work claims: concurrent analyze runs on one database share the images (issue 13, item 1)."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest

import fundus_review.app.analyze as analyze
from fundus_review.app.analyze import AnalysisProgress, AnalysisRequest, Started, run_analysis
from fundus_review.store import open_database, repo, repo_claims
from fundus_review.store.schema import Heatmap, Prediction, WorkClaim
from tests.unit.test_analysis import _finished, _red_spot_bundle, _run, _spot_image


@pytest.fixture(autouse=True)
def _trust_test_models() -> None:
    from fundus_review.inference.trust import grant

    grant("tests.unit.cam_models")


def _dataset(folder: Path, n: int) -> Path:
    folder.mkdir()
    for i in range(n):
        _spot_image(folder / f"img{i:02d}.png", 40, 48, 8 + 2 * i % 24, 10 + 3 * i % 30)
    return folder


def test_claims_are_exclusive_finished_ones_count_and_stale_ones_are_taken_over(
    tmp_path: Path,
) -> None:
    claim_primitives(tmp_path, tmp_path / "c.db")


def claim_primitives(tmp_path: Path, url: str | Path) -> None:
    with open_database(url) as db:
        with db.session() as s:
            ds = repo.get_or_create_dataset(s, tmp_path)
            ids = [repo.upsert_image(s, ds, f"{i}.png", 4, 4, f"{i:064x}").id for i in range(6)]
            model = repo.get_or_create_model(s, "m", "a", {}, "0" * 64, tmp_path).id
            start = repo_claims.db_now(s)
        a, b, dead = "host:1:a", "host:2:b", "host:3:dead"

        def claim(owner: str, which: list[int], lease: float = 60.0, since=start):
            with db.session() as s:
                return repo_claims.claim_images(
                    s, model, "7", [ids[k] for k in which], owner, lease, since
                )

        assert claim(a, [0, 1, 2]).claimed == [ids[0], ids[1], ids[2]]
        got = claim(b, [1, 2, 3])
        assert got.claimed == [ids[3]]  # 1 and 2 are a's
        assert sorted(got.held_elsewhere) == [ids[1], ids[2]] and not got.finished_elsewhere
        # a crashed worker: its lease ran out without a renewal
        assert claim(dead, [4], lease=-1.0).claimed == [ids[4]]
        assert claim(b, [4]).claimed == [ids[4]]
        # a finishes image 0 (results stored): b, running since `start`, counts it as done
        with db.session() as s:
            assert repo_claims.finish_claims(s, a, [ids[0], ids[3]]) == 1  # 3 is b's, not a's
        got = claim(b, [0])
        assert got.claimed == [] and got.finished_elsewhere == [ids[0]]
        # a run that started after image 0 finished (a --force run) may take it again
        with db.session() as s:
            later = repo_claims.db_now(s) + timedelta(seconds=1)
        assert claim(b, [0], since=later).claimed == [ids[0]]
        # a cancels: its unfinished claims (1, 2) go, so b gets them at once
        with db.session() as s:
            assert repo_claims.release_claims(s, a) == 2
        assert claim(b, [1, 2, 5]).claimed == [ids[1], ids[2], ids[5]]
        with db.session(read_only=True) as s:
            rows = repo_claims.claims_of(s, model, "7")
            assert [(r.image_id, r.owner) for r in rows] == [(i, b) for i in ids]
            # the same images under another recipe (other CAM runs) are claims of their own
            assert repo_claims.claims_of(s, model, "8") == []
        with db.session() as s:
            other = repo_claims.claim_images(s, model, "8", ids[:2], a, 60.0, start)
            assert other.claimed == ids[:2]


@pytest.mark.slow
def test_two_concurrent_runs_split_the_images(tmp_path: Path, monkeypatch) -> None:
    two_runs_split_the_images(tmp_path, tmp_path / "shared.db", monkeypatch)


def two_runs_split_the_images(tmp_path: Path, url: str | Path, monkeypatch) -> None:
    """Two runs of the same request, each with its own Database (engine, connections), at once:
    every image computed exactly once, by one of them, and both did some of the work."""
    data = _dataset(tmp_path / "data", 12)
    bundle = _red_spot_bundle(tmp_path / "bundle", "resize")
    computed: dict[str, list[int]] = {"a": [], "b": []}
    both_started = threading.Barrier(2, timeout=60)
    real = analyze.compute_batch

    def recording(engine, model, good):
        who = threading.current_thread().name
        if not computed[who]:
            both_started.wait()  # neither finishes its first batch before the other has one
        computed[who].extend(image_id for image_id, _ in good)
        return real(engine, model, good)

    monkeypatch.setattr(analyze, "compute_batch", recording)
    finished = {}

    def run(who: str) -> None:
        req = AnalysisRequest(data, bundle, ["gradcam", "hirescam"], url, batch_size=2)
        with open_database(url) as db:
            finished[who] = _finished(list(run_analysis(req, db=db)))

    threads = [threading.Thread(target=run, args=(w,), name=w) for w in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert set(finished) == {"a", "b"}, "a run failed (see the thread's exception above)"
    a, b = set(computed["a"]), set(computed["b"])
    assert len(computed["a"]) == len(a) and len(computed["b"]) == len(b)
    assert a and b and not a & b  # both worked, never on the same image
    with open_database(url) as db, db.session(read_only=True) as s:
        assert a | b == {p.image_id for p in s.query(Prediction)}
        assert s.query(Prediction).count() == 12 and s.query(Heatmap).count() == 24
        claims = s.query(WorkClaim).all()
        assert len(claims) == 12 and all(c.finished_at is not None for c in claims)
    for who, ids in (("a", a), ("b", b)):
        fin = finished[who]
        assert fin.computed == len(ids) and not fin.cancelled
        assert fin.computed + fin.elsewhere + fin.reused == 12


def test_a_crashed_runs_claims_are_taken_over_and_cancel_releases_claims(
    tmp_path: Path,
) -> None:
    data = _dataset(tmp_path / "data", 6)
    bundle = _red_spot_bundle(tmp_path / "bundle", "resize")
    req = AnalysisRequest(data, bundle, ["gradcam"], tmp_path / "k.db", batch_size=2)
    # a first run that is cancelled at once records the model and its run, computes nothing
    cancel = threading.Event()
    events = []
    for ev in run_analysis(req, cancel):
        events.append(ev)
        cancel.set()
    first = _finished(events)
    assert first.cancelled and first.computed == 0
    recipe = repo_claims.recipe_of(first.run_ids.values())
    with open_database(req.db) as db:
        with db.session() as s:
            assert repo_claims.claims_of(s, first.model_id, recipe) == []  # nothing claimed
            since = repo_claims.db_now(s)
            ids = [i for _, i in analyze.repo_analysis.image_paths(s, range(1, 100))]
            # two crashed workers: one's lease is over, the other's ends in a second
            repo_claims.claim_images(s, first.model_id, recipe, ids[:2], "gone:1:x", -1, since)
            repo_claims.claim_images(s, first.model_id, recipe, ids[2:3], "gone:2:y", 1.0, since)
    # a run cancelled after its first batch keeps it and hands back what it had claimed ahead
    cancel = threading.Event()
    events = []
    for ev in run_analysis(req, cancel):
        events.append(ev)
        if isinstance(ev, AnalysisProgress):
            cancel.set()
    part = _finished(events)
    assert part.cancelled and part.computed == 2
    with open_database(req.db) as db, db.session(read_only=True) as s:
        rows = repo_claims.claims_of(s, first.model_id, recipe)
        assert sum(r.finished_at is not None for r in rows) == 2
        assert {r.owner for r in rows if r.finished_at is None} <= {"gone:2:y"}
    rest = _finished(_run(req))  # waits for the second crashed claim to expire, then takes it
    assert (rest.computed, rest.reused, rest.elsewhere) == (4, 2, 0)
    started = _run(req)[0]
    assert isinstance(started, Started) and started.total == 0
    with open_database(req.db) as db, db.session(read_only=True) as s:
        rows = repo_claims.claims_of(s, first.model_id, recipe)
        assert len(rows) == 6 and all(r.finished_at is not None for r in rows)
        assert not any(r.owner.startswith("gone:") for r in rows)
        assert s.query(Heatmap).count() == 6


def test_a_claim_released_between_the_statements_is_not_lost(tmp_path: Path, monkeypatch) -> None:
    """Under READ COMMITTED another run's release can delete a claim after this run's takeover
    UPDATE missed it and before its SELECT: the image must come back as held (to be polled
    again), not vanish from every list."""
    with open_database(tmp_path / "r.db") as db:
        with db.session() as s:
            ds = repo.get_or_create_dataset(s, tmp_path)
            ids = [repo.upsert_image(s, ds, f"{i}.png", 4, 4, f"{i:064x}").id for i in range(2)]
            model = repo.get_or_create_model(s, "m", "a", {}, "0" * 64, tmp_path).id
            start = repo_claims.db_now(s)
            repo_claims.claim_images(s, model, "7", ids, "other", 60.0, start)
        real_select = repo_claims.select
        session: list = []

        def select_after_release(*cols):  # noqa: ANN002
            if cols and cols[0] is WorkClaim.image_id and len(cols) == 3:
                # the other run's release, committed just now (SQLite's write lock forbids a
                # second connection here, so it goes through this session)
                session[0].execute(
                    repo_claims.delete(WorkClaim).where(WorkClaim.image_id == ids[1])
                )
            return real_select(*cols)

        monkeypatch.setattr(repo_claims, "select", select_after_release)
        with db.session() as s:
            session.append(s)
            got = repo_claims.claim_images(s, model, "7", ids, "me", 60.0, start)
        assert got.claimed == [] and got.finished_elsewhere == []
        assert sorted(got.held_elsewhere) == ids  # ids[1] included: the next poll claims it
        monkeypatch.setattr(repo_claims, "select", real_select)
        with db.session() as s:
            assert repo_claims.claim_images(s, model, "7", ids, "me", 60.0, start).claimed == [
                ids[1]
            ]
