"""Scale-out: images/s of `analyze` on the local engine and on 1 and 2 local Ray workers, and
what each image costs in decoding, compute, transfer and database writes, in ONE run.

The same synthetic fundus images (`fundus_review.data.synthetic`) and the demo bundle
(`models/demo-cdr`, EfficientNet-Lite0, 224 px) go through `run_analysis` once per engine and
round, each into a fresh SQLite database: the local engine with 1 torch thread and with this
process's threads, and Ray with 1 and 2 workers (one CPU, so one torch thread, each); `--rounds`
alternate all of them so that load from other processes hits each alike, and medians are
printed. Measured per engine:

  startup   from the call to the `Started` event: model build (and for Ray: the actors)
  img/s     images computed / seconds from `Started` to `Finished` (claim, decode, compute,
            transfer back, store: the whole steady-state loop)
  store     time in `store_batch` per image (one transaction per batch: prediction + heatmaps
            + claims), measured on the driver

plus, once: decoding one image (`load_file`), `compute_batch` per image on this process
(local engine), the pickled size of one image's results (what a Ray worker sends back), and
the largest difference between the results the local and the Ray engines stored (they must
agree). Ray runs on a local instance with `--cpus` CPUs (default 2), one CPU per worker.

    .venv/bin/python bench/scale_out.py                  # 64 images, gradcam + hirescam
    .venv/bin/python bench/scale_out.py --images 256 --batch 32 --cpus 8 --workers 1,2,4
"""

from __future__ import annotations

import argparse
import os
import pickle
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import fundus_review.app.analyze as analyze
from fundus_review.app.analyze import AnalysisRequest, Finished, Started, run_analysis
from fundus_review.data.synthetic import write_demo_dataset
from fundus_review.store import open_database, repo
from fundus_review.store.schema import Heatmap, Image, Prediction

REPO = Path(__file__).resolve().parents[1]
PHOTOS = REPO.parent / "shared" / "data" / "drishti_gs1_train" / "images"


class Timed:
    """Wraps a function of `app.analyze`, summing its wall time and call count."""

    def __init__(self, name: str) -> None:
        self.name, self.real = name, getattr(analyze, name)
        self.seconds, self.calls = 0.0, 0

    def __call__(self, *args, **kwargs):
        t = time.perf_counter()
        try:
            return self.real(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t
            self.calls += 1


def run_engine(req: AnalysisRequest) -> dict[str, float]:
    store = Timed("store_batch")
    compute = Timed("compute_batch")
    analyze.store_batch, analyze.compute_batch = store, compute
    try:
        t0 = time.perf_counter()
        t_started = t_end = None
        finished = None
        for ev in run_analysis(req):
            if isinstance(ev, Started):
                t_started = time.perf_counter()
            elif isinstance(ev, Finished):
                t_end, finished = time.perf_counter(), ev
    finally:
        analyze.store_batch, analyze.compute_batch = store.real, compute.real
    assert finished is not None and t_started is not None and t_end is not None
    n = finished.computed
    return {
        "n": n,
        "startup_s": t_started - t0,
        "loop_s": t_end - t_started,
        "img_per_s": n / (t_end - t_started),
        "store_ms_per_img": 1000 * store.seconds / max(n, 1),
        "compute_ms_per_img": 1000 * compute.seconds / max(n, 1) if compute.calls else float("nan"),
    }


def stored(db_path: Path) -> dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]:
    out = {}
    with open_database(db_path) as db, db.session(read_only=True) as s:
        for img in s.query(Image):
            pred = s.query(Prediction).filter_by(image_id=img.id).one()
            maps = {
                hm.cam_run.method: repo.heatmap_array(hm)
                for hm in s.query(Heatmap).filter_by(image_id=img.id)
            }
            out[img.rel_path] = (np.asarray(pred.probs), maps)
    return out


def stored_bytes_per_image(db_path: Path) -> float:
    """Mean bytes of the stored (float16 + zlib) heatmaps per image."""
    with open_database(db_path) as db, db.session(read_only=True) as s:
        sizes = [len(hm.data) for hm in s.query(Heatmap)]
        n = s.query(Prediction).count()
    return sum(sizes) / max(n, 1)


def max_differences(a: Path, b: Path) -> tuple[float, float, int]:
    sa, sb = stored(a), stored(b)
    assert sa.keys() == sb.keys(), "the engines stored different images"
    dp = max(float(np.abs(sa[k][0] - sb[k][0]).max()) for k in sa)
    dh = max(float(np.abs(sa[k][1][m] - sb[k][1][m]).max()) for k in sa for m in sa[k][1])
    return dp, dh, len(sa)


def per_image_costs(data: Path, req: AnalysisRequest) -> tuple[float, float, float]:
    """Decode ms per image (median of a batch), and pickled result bytes per image with float32
    heatmaps and as a Ray worker sends them (encoded as stored)."""
    files = sorted((data / "images").glob("*.jpg")) or sorted(data.rglob("*.jpg"))
    times = []
    imgs = []
    for f in files[: req.batch_size]:
        t = time.perf_counter()
        imgs.append(analyze.load_file(f))
        times.append(time.perf_counter() - t)
    model = analyze.LoadedModel.of(req)
    model.build(req)
    with model.engine() as engine:
        result = analyze.compute_batch(engine, model, list(enumerate(imgs)))
    raw = len(pickle.dumps(analyze.ComputedStep(result), protocol=5)) / len(imgs)
    result.encode_heatmaps()  # what a Ray worker sends back
    sent = len(pickle.dumps(analyze.ComputedStep(result), protocol=5)) / len(imgs)
    return 1000 * float(np.median(times)), raw, sent


def photo_decode_ms(folder: Path, n: int = 8) -> tuple[float, str] | None:
    """Median decode time of real fundus photographs (DRISHTI-GS1 JPEGs), when present."""
    files = sorted(folder.glob("*.jpg"))[:n] if folder.is_dir() else []
    if not files:
        return None
    times, shape = [], None
    for f in files:
        t = time.perf_counter()
        img = analyze.load_file(f)
        times.append(time.perf_counter() - t)
        shape = getattr(img, "shape", shape)
    return 1000 * float(np.median(times)), f"{shape[1]}x{shape[0]}" if shape else "?"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=64)
    p.add_argument("--size", type=int, default=512, help="synthetic image side, px")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--methods", default="gradcam,hirescam")
    p.add_argument("--bundle", type=Path, default=REPO / "models" / "demo-cdr")
    p.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray instance")
    p.add_argument("--workers", default="1,2", help="Ray worker counts to run")
    p.add_argument("--gpus-per-worker", type=float, default=0.0)
    p.add_argument(
        "--photos", type=Path, default=PHOTOS, help="real fundus JPEGs whose decode time to print"
    )
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds of all engines")
    p.add_argument(
        "--also-db",
        help="also run the local engine into this database URL (e.g. a PostgreSQL server) "
        "to measure its store cost; it must be empty or hold no results of these images",
    )
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    methods = args.methods.split(",")
    workers = [int(w) for w in args.workers.split(",")]

    from fundus_review.app.analyze_ray import init_local_ray

    with tempfile.TemporaryDirectory(prefix="scale_out_") as tmp:
        tmp_path = Path(tmp)
        data = write_demo_dataset(tmp_path / "data", n=args.images, size=(args.size, args.size))

        def request(db: str, **kw) -> AnalysisRequest:
            return AnalysisRequest(
                data,
                args.bundle,
                methods,
                tmp_path / db,
                batch_size=args.batch,
                import_masks=False,
                **kw,
            )

        print(
            f"{args.images} synthetic images {args.size}x{args.size} px (JPEG), bundle "
            f"{args.bundle.name}, methods {','.join(methods)}, batch {args.batch}; "
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, "
            f"torch {torch.__version__} with {torch.get_num_threads()} threads (local engine)"
        )
        decode_ms, raw_bytes, sent_bytes = per_image_costs(data, request("probe.db"))
        load_before = os.getloadavg()
        t = time.perf_counter()
        init_local_ray(num_cpus=args.cpus)
        ray_start = time.perf_counter() - t
        runs: dict[str, list[dict[str, float]]] = {}
        threads = torch.get_num_threads()
        try:
            # Rounds alternate the engines, so that load from other processes hits all alike.
            for k in range(args.rounds):
                for n_threads in sorted({1, threads}):
                    torch.set_num_threads(n_threads)
                    name = f"local {n_threads}t"
                    runs.setdefault(name, []).append(run_engine(request(f"l{n_threads}_{k}.db")))
                torch.set_num_threads(threads)
                if args.also_db and k == 0:
                    other = request("unused.db")
                    other.db = args.also_db
                    runs["local db2"] = [run_engine(other)]
                for w in workers:
                    req = request(
                        f"ray{w}_{k}.db",
                        engine="ray",
                        workers=w,
                        gpus_per_worker=args.gpus_per_worker,
                    )
                    runs.setdefault(f"ray x{w}", []).append(run_engine(req))
        finally:
            import ray

            ray.shutdown()
        load_after = os.getloadavg()
        encoded = stored_bytes_per_image(tmp_path / f"l{threads}_0.db")
        dp, dh, n_cmp = max_differences(
            tmp_path / f"l{threads}_0.db", tmp_path / f"ray{workers[-1]}_0.db"
        )

    def med(name: str, key: str) -> float:
        return float(np.median([r[key] for r in runs[name]]))

    base = med(f"local {threads}t", "img_per_s")
    print(
        f"\nRay instance start (ray.init, {args.cpus} CPUs): {ray_start:.1f} s; load average "
        f"{load_before[0]:.1f} before, {load_after[0]:.1f} after; {args.rounds} rounds, medians"
    )
    print(
        f"{'engine':<10} {'images':>6} {'startup s':>9} {'loop s':>7} {'img/s':>7} "
        f"{'(min-max)':>13} {'vs local':>8} {'store ms/img':>12}"
    )
    for name, rs in runs.items():
        rates = [r["img_per_s"] for r in rs]
        print(
            f"{name:<10} {int(rs[0]['n']):>6} {med(name, 'startup_s'):>9.1f} "
            f"{med(name, 'loop_s'):>7.1f} {med(name, 'img_per_s'):>7.2f} "
            f"{f'({min(rates):.2f}-{max(rates):.2f})':>13} {med(name, 'img_per_s') / base:>8.2f} "
            f"{med(name, 'store_ms_per_img'):>12.2f}"
        )
    print(
        f"\nper image: decode {decode_ms:.1f} ms (one {args.size}-px JPEG), compute_batch "
        f"{med(f'local {threads}t', 'compute_ms_per_img'):.1f} ms (local engine, {threads} "
        f"threads, batch {args.batch}), results with float32 heatmaps {raw_bytes / 1024:.0f} "
        f"KiB (pickled), as a Ray worker sends them (heatmaps encoded as stored) "
        f"{sent_bytes / 1024:.0f} KiB, stored heatmaps {encoded / 1024:.0f} KiB; 'vs local': "
        f"against local {threads}t"
    )
    photos = photo_decode_ms(args.photos)
    if photos:
        print(f"decode of a real photograph ({args.photos}, {photos[1]} JPEG): {photos[0]:.1f} ms")
    if args.also_db:
        print(f"local->db2 stored into {args.also_db.split('@')[-1]}")
    print(
        f"local vs ray x{workers[-1]} on the same {n_cmp} images: max |d prob| = {dp:.2e}, "
        f"max |d heatmap| = {dh:.2e} (stored float16)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
