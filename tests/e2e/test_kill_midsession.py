"""Autosave under fire: a process killed mid-session loses no finished edit, and two processes
editing one database at once lose nothing of each other's work."""

from __future__ import annotations

import hashlib
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text

from fundus_review.core.geometry import rasterize
from fundus_review.review.editor import load_regions
from fundus_review.store import open_database, repo

H, W = 48, 64

# One editing session: a stream of creates, edits, deletes, undos and redos through the same
# annotating API the GUI uses. After each finished (committed) step it prints the step's
# region id and the state that region must now have.
WORKER = r"""
import sys, time
from pathlib import Path
from fundus_review.review.editor import Editor, UndoHistory
from fundus_review.core.geometry import Ellipse, Polygon
from fundus_review.store import open_database

db_path, image_id, reviewer, n, go = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
db = open_database(db_path)
ed = Editor(db, image_id, reviewer)
hist = UndoHistory(ed)
print("ready", flush=True)
deadline = time.monotonic() + 120
while go != "-" and not Path(go).exists() and time.monotonic() < deadline:
    time.sleep(0.01)
for i in range(n):
    if i % 4 == 3:
        cmd = hist.undo()          # undo the previous edit (an ellipse edit)
        rid = cmd.region_ids()[0]
        print("step", i, rid, "live", flush=True)
        continue
    cx, cy = 8 + (i * 7) % 48, 8 + (i * 5) % 32
    if i % 4 == 0:
        cmd = hist.push(ed.create("hemorrhage", Polygon(((cx, cy), (cx + 6, cy + 1), (cx + 2, cy + 5)))))
        print("step", i, cmd.region_ids()[0], "live", flush=True)
    elif i % 4 == 1:
        cmd = hist.push(ed.create("optic_disc", Ellipse(cx, cy, 4, 3, i)))
        print("step", i, cmd.region_ids()[0], "live", flush=True)
    else:
        last = [r for r in ed.regions() if r.structure == "optic_disc" and r.reviewer_id == ed.reviewer_id][-1]
        cmd = hist.push(ed.edit(last, Ellipse(cx, cy, 5, 2, -i)))
        print("step", i, last.id, "edited", flush=True)
print("finished", flush=True)
"""


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, int]:
    path = tmp_path / "session.db"
    with open_database(path) as db, db.session() as s:
        ds = repo.get_or_create_dataset(s, tmp_path / "data")
        img = repo.upsert_image(s, ds, "IDRiD_05.jpg", W, H, hashlib.sha256(b"k").hexdigest())
        return path, img.id


def start(db: Path, image_id: int, reviewer: str, n: int, go: str = "-") -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, str(db), str(image_id), reviewer, str(n), go],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_line(proc: subprocess.Popen, timeout: float = 120.0) -> str:
    """One line of the worker's output; fails (instead of hanging) when none comes in time."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        proc.kill()
        pytest.fail(f"worker said nothing for {timeout:.0f} s")
    return proc.stdout.readline()


def check_database(path: Path, image_id: int) -> list:
    with open_database(path) as db:
        with db.engine.connect() as conn:
            assert conn.execute(text("PRAGMA integrity_check")).scalar() == "ok"
        regions = load_regions(db, image_id, include_deleted=True)
    for r in regions:  # every stored region is whole: its raster is its geometry's raster
        np.testing.assert_array_equal(r.mask(), rasterize(r.kind, r.geometry, (H, W)))
    return regions


def test_killing_the_process_mid_session_loses_no_finished_edit(setup) -> None:
    path, image_id = setup
    proc = start(path, image_id, "Dr. Rao", 400)
    steps: list[tuple[int, str]] = []
    try:
        assert read_line(proc).strip() == "ready", proc.stderr.read()
        while len(steps) < 25:
            line = read_line(proc).split()
            assert line and line[0] == "step", proc.stderr.read()
            steps.append((int(line[2]), line[3]))
        os.kill(proc.pid, signal.SIGKILL)  # in the middle of the next edit's transaction
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    regions = {r.id: r for r in check_database(path, image_id)}
    # Replay the finished steps: what each region must hold now. The step in flight when the
    # process died (number len(steps)) may or may not have committed; both outcomes are allowed.
    expected: dict[int, list[dict]] = {}
    for i, (rid, _) in enumerate(steps):
        cx, cy = 8 + (i * 7) % 48, 8 + (i * 5) % 32
        if i % 4 == 0:
            expected[rid] = [{"points": [[cx, cy], [cx + 6, cy + 1], [cx + 2, cy + 5]]}]
        elif i % 4 == 1:
            expected[rid] = [{"cx": cx, "cy": cy, "rx": 4, "ry": 3, "angle": i}]
            created = expected[rid][0]
        elif i % 4 == 2:
            expected[rid] = [{"cx": cx, "cy": cy, "rx": 5, "ry": 2, "angle": -i}]
        else:
            expected[rid] = [created]
    if len(steps) % 4 == 3:  # the undo in flight may have reverted the last edit already
        expected[steps[-1][0]].append(created)
    for rid, allowed in expected.items():
        assert rid in regions, f"the finished edit of region {rid} was lost"
        assert not regions[rid].deleted
        assert regions[rid].geometry in allowed
    assert len(regions) - len(expected) in (0, 1)  # at most the create that was in flight


def test_two_processes_editing_one_database_at_once_lose_nothing(setup, tmp_path: Path) -> None:
    path, image_id = setup
    go = tmp_path / "go"
    n = 24
    procs = {name: start(path, image_id, name, n, str(go)) for name in ("Dr. Rao", "Dr. Kim")}
    outputs = {}
    try:
        for p in procs.values():
            assert read_line(p).strip() == "ready", p.stderr.read()
        go.touch()  # both start editing at the same moment
        for name, p in procs.items():
            out, err = p.communicate(timeout=240)
            assert p.returncode == 0, err
            assert out.strip().endswith("finished")
            outputs[name] = [line.split() for line in out.splitlines() if line.startswith("step")]
    finally:
        for p in procs.values():
            p.kill()
            p.wait(timeout=30)
    regions = check_database(path, image_id)
    for name, steps in outputs.items():
        mine = [r for r in regions if r.reviewer == name]
        created = {int(s[2]) for s in steps}
        assert {r.id for r in mine} == created
        # Per reviewer: n/4 polygons and n/4 ellipses, each ellipse edited then the edit undone.
        assert sum(r.kind == "polygon" for r in mine) == n // 4
        ellipses = [r for r in mine if r.kind == "ellipse"]
        assert len(ellipses) == n // 4 and not any(r.deleted for r in mine)
        for r in ellipses:  # every edit was undone: each ellipse has its created geometry
            assert r.geometry["rx"] == 4 and r.geometry["ry"] == 3


def test_the_worker_itself_finishes_cleanly(setup) -> None:
    """Guards the kill test: an unkilled session ends with every step committed."""
    path, image_id = setup
    t0 = time.monotonic()
    p = start(path, image_id, "Dr. Rao", 8)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert out.splitlines()[-1] == "finished" and time.monotonic() - t0 < 120
    assert len(check_database(path, image_id)) == 4
