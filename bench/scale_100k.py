"""100,000 registered images: the browser stays responsive, the report's aggregation stays small.

    .venv/bin/python bench/scale_100k.py populate --dir /tmp/fr-100k [--n 100000]
    .venv/bin/python bench/scale_100k.py gui      --dir /tmp/fr-100k
    .venv/bin/python bench/scale_100k.py report   --dir /tmp/fr-100k

populate  (once per folder; minutes) writes ONE small JPEG and N hard links to it in two class
          folders (a real folder the window re-lists on open), registers them with the app's own
          listing (`register_dataset(identify=False)`), then writes the rest DIRECTLY into the
          database with bulk inserts, to save hours of CPU: every image's size/hash/stamp (the
          result the background read would store), one model (the shipped demo-cdr bundle's
          card), 3 CAM runs (gradcam, hirescam, layercam) with a heatmap row per image (a tiny
          placeholder blob: aggregation never decodes heatmaps), a prediction per image, every
          metric's score vs the optic disc of one reviewer (N x 3 x 15 score rows), review
          statuses and an optic-disc/-cup region on every 10th image.
gui       opens a real MainWindow on it (a reopen: the rows are registered) and prints the
          longest gap of a 10 ms UI-thread timer while the list appears, then while the list is
          sorted by each key (both directions) and filtered (text typed letter by letter, label,
          prediction, correctness, status, confidence range); the target is < 100 ms.
report    in a child process per variant: `report.data.collect` + every aggregate table over
          the N x 3 runs (the part of `write_report` that reads the scores), printing seconds,
          tracemalloc's peak and the child's peak RSS (ru_maxrss).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("gradcam", "hirescam", "layercam")
REVIEWER = "dr-a"


def _db_path(work: Path) -> Path:
    return work / "bench.db"


def populate(work: Path, n: int) -> None:
    from PIL import Image as PILImage
    from sqlalchemy import bindparam, insert, select, update

    from fundus_review.app.identify import file_stamp
    from fundus_review.app.importing import register_dataset
    from fundus_review.app.scoring import ScoringParams
    from fundus_review.data.images import file_sha256
    from fundus_review.store.codec import HEATMAP_DTYPE, encode_heatmap
    from fundus_review.store.db import open_database
    from fundus_review.store.schema import (
        Annotation,
        CamRun,
        Heatmap,
        Image,
        ImageReview,
        ModelRecord,
        Prediction,
        Reviewer,
        Score,
        utcnow,
    )

    data = work / "data"
    marker = work / ".populated"
    if marker.is_file() and marker.read_text() == str(n):
        print(f"{work} already holds {n} images")
        return
    t0 = time.perf_counter()
    work.mkdir(parents=True, exist_ok=True)
    for p in work.glob("bench.db*"):
        p.unlink()
    yy, xx = np.mgrid[0:96, 0:128]
    img = np.zeros((96, 128, 3), np.uint8)
    img[(xx - 64) ** 2 + (yy - 48) ** 2 <= 44**2] = (190, 80, 30)
    img[(xx - 50) ** 2 + (yy - 48) ** 2 <= 36] = 250
    per_file = 40_000  # a file system caps the links of one inode (ext4: 65,000)
    sources = [work / f"one_{k}.jpg" for k in range((n + per_file - 1) // per_file)]
    for src in sources:
        PILImage.fromarray(img).save(src, quality=85)
    for label in ("glaucoma", "normal"):
        (data / label).mkdir(parents=True, exist_ok=True)
    source_of: dict[str, int] = {}
    for i in range(n):
        rel = f"{'glaucoma' if i % 2 else 'normal'}/img_{i:06d}.jpg"
        source_of[rel] = i // per_file
        if not (data / rel).exists():
            os.link(sources[i // per_file], data / rel)
    print(f"{n} hard links in {time.perf_counter() - t0:.1f} s")
    db = open_database(_db_path(work))
    reg = register_dataset(db, data, identify=False)
    print(f"registered (listing) in {time.perf_counter() - t0:.1f} s")
    # Every link shares its source's inode, so its stamp too (taken after the last link).
    stamps = [file_stamp(os.stat(src)) for src in sources]
    sha = file_sha256(sources[0])
    card = tomllib.loads((ROOT / "models/demo-cdr/model.toml").read_text())
    now = utcnow()
    metrics = ScoringParams().metric_names()
    rng = np.random.default_rng(0)
    transform = {"orig_h": 96, "orig_w": 128, "in_h": 224, "in_w": 224,
                 "sx": 1.75, "sy": 2.3333333, "tx": 0.0, "ty": 0.0}  # fmt: skip
    # Decodable by the store's codec: the window shows the first image's heatmap on opening, and
    # an undecodable placeholder pops an error that also starts torch's import mid-opening.
    blob = encode_heatmap(np.zeros((7, 7), np.float32))
    with db.session() as s:
        c = s.connection()
        c.execute(
            update(Image.__table__).where(Image.__table__.c.id == bindparam("b_id")),
            [
                {
                    "b_id": i,
                    "width": 128,
                    "height": 96,
                    "sha256": sha,
                    "file_stamp": stamps[source_of[rel]],
                }  # fmt: skip
                for rel, i in reg.image_ids.items()
            ],
        )
        model_id = c.execute(
            insert(ModelRecord.__table__).returning(ModelRecord.__table__.c.id),
            {
                "name": card["name"],
                "architecture": card["architecture"],
                "card": card,
                "weights_sha256": "0" * 64,
                "card_sha256": "1" * 64,
                "created_at": now,
                "bundle_path": str((ROOT / "models/demo-cdr").resolve()),
            },  # fmt: skip
        ).scalar_one()
        rev_id = c.execute(
            insert(Reviewer.__table__).returning(Reviewer.__table__.c.id),
            {"name": REVIEWER, "created_at": now},
        ).scalar_one()
        ids = [i for (i,) in c.execute(select(Image.id).where(Image.dataset_id == reg.dataset_id))]
        glaucoma_p = rng.uniform(0.0, 1.0, len(ids))
        c.execute(
            insert(Prediction.__table__),
            [
                {
                    "image_id": i,
                    "model_id": model_id,
                    "probs": [float(p), 1.0 - float(p)],
                    "predicted_index": int(p < 0.5),
                    "transform": transform,
                    "created_at": now,
                    "updated_at": now,
                }  # fmt: skip
                for i, p in zip(ids, glaucoma_p, strict=True)
            ],
        )
        statuses = ("unreviewed", "in_progress", "done", "flagged")
        c.execute(
            insert(ImageReview.__table__),
            [
                {
                    "image_id": i,
                    "reviewer_id": rev_id,
                    "status": statuses[k % 4],
                    "comment": "",
                    "created_at": now,
                    "updated_at": now,
                }  # fmt: skip
                for k, i in enumerate(ids)
                if k % 3 == 0
            ],
        )
        geo = {"disc": {"cx": 64.0, "cy": 48.0, "rx": 20.0, "ry": 24.0},
               "cup": {"cx": 64.0, "cy": 48.0, "rx": 8.0, "ry": 10.0}}  # fmt: skip
        c.execute(
            insert(Annotation.__table__),
            [
                {
                    "image_id": i,
                    "reviewer_id": rev_id,
                    "structure": struct,
                    "kind": "ellipse",
                    "geometry": {"type": "ellipse", **geo[key]},
                    "raster": None,
                    "source": "drawn",
                    "created_at": now,
                    "updated_at": now,
                }  # fmt: skip
                for k, i in enumerate(ids)
                if k % 10 == 0
                for struct, key in (("optic_disc", "disc"), ("optic_cup", "cup"))
            ],
        )
        for method in METHODS:
            run_id = c.execute(
                insert(CamRun.__table__).returning(CamRun.__table__.c.id),
                {
                    "model_id": model_id,
                    "method": method,
                    "layers_json": '["blocks.5"]',
                    "target_policy": "predicted",
                    "params_json": "{}",
                    "created_at": now,
                },  # fmt: skip
            ).scalar_one()
            c.execute(
                insert(Heatmap.__table__),
                [
                    {
                        "cam_run_id": run_id,
                        "image_id": i,
                        "target_index": 0,
                        "height": 7,
                        "width": 7,
                        "dtype": HEATMAP_DTYPE,
                        "data": blob,
                        "created_at": now,
                        "updated_at": now,
                    }  # fmt: skip
                    for i in ids
                ],
            )
            hm_ids = [
                h for (h,) in c.execute(select(Heatmap.id).where(Heatmap.cam_run_id == run_id))
            ]
            for start in range(0, len(hm_ids), 20_000):
                chunk = hm_ids[start : start + 20_000]
                vals = rng.uniform(0.0, 1.0, (len(chunk), len(metrics)))
                c.execute(
                    insert(Score.__table__),
                    [
                        {
                            "heatmap_id": h,
                            "structure": "optic_disc",
                            "reviewer_id": rev_id,
                            "metric": m,
                            "value": float(round(v[k]) if m == "pointing_hit" else v[k]),
                            "params": {},
                            "created_at": now,
                            "updated_at": now,
                        }  # fmt: skip
                        for h, v in zip(chunk, vals, strict=True)
                        for k, m in enumerate(metrics)
                    ],
                )
            print(f"run {method}: heatmaps and scores in {time.perf_counter() - t0:.1f} s")
    marker.write_text(str(n))
    print(f"populated {work} in {time.perf_counter() - t0:.1f} s")


# -- the browser ------------------------------------------------------------------------------


class GapMeter:
    """A 10 ms timer on the UI thread; its longest gap is the longest the UI was frozen."""

    def __init__(self) -> None:
        from PySide6.QtCore import QTimer

        self.last = time.perf_counter()
        self.worst = 0.0
        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(self._tick)
        self.timer.start()

    def _tick(self) -> None:
        now = time.perf_counter()
        self.worst = max(self.worst, now - self.last)
        self.last = now

    def reset(self) -> None:
        self.last, self.worst = time.perf_counter(), 0.0


def _pump(app, seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.002)


def _wait(app, cond, timeout: float) -> float:
    t0 = time.perf_counter()
    while not cond():
        app.processEvents()
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError(f"condition not met in {timeout} s")
        time.sleep(0.002)
    return time.perf_counter() - t0


def gui(work: Path, n: int) -> None:
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ["FUNDUS_REVIEW_CACHE"] = str(work / "cache")
    os.environ["FUNDUS_REVIEW_HOME"] = str(work / "home")
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from fundus_review.gui.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    settings = QSettings(str(work / "settings.ini"), QSettings.IniFormat)
    settings.clear()
    gaps = GapMeter()
    results: list[tuple[str, float, float]] = []  # (what, seconds until shown, worst gap)

    t0 = time.perf_counter()
    win = MainWindow(
        db=_db_path(work), dataset=work / "data", model=ROOT / "models/demo-cdr", settings=settings
    )
    registered: list[int] = []
    win.registered.connect(registered.append)
    win.resize(1500, 950)
    win.show()
    built = time.perf_counter() - t0
    gaps.reset()
    _wait(app, lambda: win.browser.model.rowCount() == n, 600)
    rows_at = time.perf_counter() - t0
    results.append(("open: the list shows every row", rows_at, gaps.worst))
    gaps.reset()
    _wait(app, lambda: bool(registered), 600)
    _wait(app, lambda: win.tasks.pool.activeThreadCount() == 0, 600)
    results.append(("open: background re-scan of the folder", time.perf_counter() - t0, gaps.worst))
    # torch's import (CAM methods, device), started once the re-scan is done, holds the GIL for
    # long stretches: a one-off after opening, not the browser; reported on its own.
    gaps.reset()
    _wait(app, lambda: win._startup_started and win._startup.pool.activeThreadCount() == 0, 600)
    results.append(("after open: torch imported (one-off)", time.perf_counter() - t0, gaps.worst))
    _pump(app, 0.5)
    gaps.reset()
    _pump(app, 2.0)
    results.append(("idle for 2 s (the machine's own noise)", 2.0, gaps.worst))
    f = win.browser.filters
    model = win.browser.model

    def timed(what: str, action, settled=None) -> None:
        _pump(app, 0.2)
        gaps.reset()
        t = time.perf_counter()
        action()
        _wait(app, settled or (lambda: True), 120)
        _pump(app, 0.15)  # the repaint and anything queued after it
        results.append((what, time.perf_counter() - t, gaps.worst))

    for key in [f.sort.itemText(i) for i in range(f.sort.count())]:
        for desc in (False, True):
            timed(
                f"sort by {key}{' (descending)' if desc else ''}",
                lambda key=key, desc=desc: (
                    f.descending.setChecked(desc),
                    f.sort.setCurrentIndex(f.sort.findText(key)),
                ),
            )
    f.sort.setCurrentIndex(0)
    f.descending.setChecked(False)

    def typing() -> None:
        for ch in "img_0123":
            f.text.setText(f.text.text() + ch)
            app.processEvents()

    timed("filter: type 'img_0123' letter by letter", typing)
    timed("filter: clear the text", lambda: f.text.clear())
    for what, combo, pick in (
        ("label = glaucoma", f.label, "glaucoma"),
        ("prediction = normal", f.prediction, "normal"),
        ("result = misclassified", f.correctness, "misclassified"),
        ("review = flagged", f.status, "flagged"),
        ("region = optic_cup", f.structure, "optic_cup"),
    ):
        timed(f"filter: {what}", lambda c=combo, p=pick: c.setCurrentIndex(c.findText(p)))
    timed("filter: confidence 0.90-1.00", lambda: f.conf_min.setValue(0.9))
    visible = model.rowCount()
    timed("filter: clear all", win.browser.clear_filters)
    timed("step to the next image (Down)", lambda: win.browser.list.setCurrentIndex(
        model.index(min(model.rowCount() - 1, 5))))  # fmt: skip
    print(f"\n{n:,} images, platform {app.platformName()}, {os.cpu_count()} CPU(s); window built in"
          f" {built:.2f} s; the combined filter left {visible:,} rows")  # fmt: skip
    print(f"{'step':50s} {'seconds':>8s} {'max UI gap':>11s}")
    for what, sec, gap in results:
        flag = "" if gap < 0.1 else "  > 100 ms"
        print(f"{what:50s} {sec:8.2f} {gap * 1000:9.0f} ms{flag}")
    win.close()


# -- the report's aggregation -------------------------------------------------------------------


def _rss_mb() -> int:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def _report_child(work: Path, trace: bool, resamples: int) -> None:
    import tracemalloc

    if trace:  # Python's own allocations, exactly, at several times the run time
        tracemalloc.start()
    from fundus_review.app.scoring import ScoringParams, ScoringSummary
    from fundus_review.app.selection import ResultSelection
    from fundus_review.report import aggregates
    from fundus_review.report.data import collect
    from fundus_review.report.heatmaps import HeatmapPass
    from fundus_review.store.db import open_database

    db = open_database(_db_path(work))
    before, _ = tracemalloc.get_traced_memory()  # the imports and the open database
    tracemalloc.reset_peak()
    out: dict[str, object] = {"rss_before_mb": _rss_mb()}
    t0 = time.perf_counter()
    data = collect(db, ScoringSummary(), ResultSelection(), params=ScoringParams())
    out |= {"rows": len(data.rows), "collect_s": round(time.perf_counter() - t0, 1)}
    out["rss_after_collect_mb"] = _rss_mb()
    if trace:
        out["traced_peak_collect_mb"] = round((tracemalloc.get_traced_memory()[1] - before) / 2**20)
    if resamples:
        tables = aggregates.build_aggregates(data, HeatmapPass(), seed=0, n_resamples=resamples)
        out |= {"aggregate_rows": len(tables), "total_s": round(time.perf_counter() - t0, 1)}
        out["rss_after_aggregates_mb"] = _rss_mb()
        if trace:
            out["traced_peak_mb"] = round((tracemalloc.get_traced_memory()[1] - before) / 2**20)
    print(json.dumps(out))


def report(work: Path, code: Path | None, trace: bool, resamples: int) -> None:
    env = dict(os.environ)
    if code is not None:  # e.g. an older checkout, for a before/after comparison
        env["PYTHONPATH"] = str(code.resolve())
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "_report_child",
            "--dir",
            str(work),
            "--resamples",
            str(resamples),
            *(["--trace"] if trace else []),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    if out.returncode:
        print(out.stderr)
        raise SystemExit(out.returncode)
    print(f"code: {code or ROOT}")
    print(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["populate", "gui", "report", "_report_child"])
    ap.add_argument("--dir", type=Path, required=True, help="work folder (kept between runs)")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--code", type=Path, help="report: the checkout whose code to measure")
    ap.add_argument("--trace", action="store_true", help="report: also tracemalloc (slow)")
    ap.add_argument(
        "--resamples", type=int, default=200, help="report: bootstrap resamples (0: no aggregates)"
    )
    args = ap.parse_args()
    random.seed(0)
    if args.what == "populate":
        populate(args.dir, args.n)
    elif args.what == "gui":
        gui(args.dir, args.n)
    elif args.what == "report":
        report(args.dir, args.code, args.trace, args.resamples)
    else:
        _report_child(args.dir, args.trace, args.resamples)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
