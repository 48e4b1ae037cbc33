"""CAM throughput: the engine against pytorch-grad-cam as users call it, and against a bare forward.

For each model and method, measured in ONE run on the same model and the same images:

  (a) engine   CamEngine.run on batches (probabilities + heatmap from one forward pass)
  (b) naive    per image: predict (a no-grad forward), then
               pytorch_grad_cam.<Method>(model=..., target_layers=[...])(input_tensor=x, targets=None)
  (c) forward  a bare forward pass of the same batch under torch.no_grad()

and prints images/s, the ratios (a)/(b) [goal >= 3] and engine time / forward time [goal <= 1.3],
and the max abs difference between the engine's heatmaps and the library's own maps of (b)
[goal: float tolerance]. Timings are interleaved batch by batch (forward, every engine method,
repeated; then the naive loops over the same images), and medians are reported, so that load
from other processes hits all three alike and the ratios stay meaningful on a noisy machine.

Exit status: 0 when every heatmap matches, 1 when one differs beyond --atol (or the engine and
the library explain different classes), 3 with --fail-on-speed when a speed goal is missed.

    .venv/bin/python bench/cam_throughput.py                       # CPU, the full default run
    .venv/bin/python bench/cam_throughput.py --models resnet50 --images 16 --methods gradcam
    .venv/bin/python bench/cam_throughput.py --device cuda --images 256
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import timm
import torch
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from fundus_review.data.images import is_image_file, load_image
from fundus_review.errors import FundusReviewError
from fundus_review.inference.cam import (
    CAM_METHODS,
    CamEngine,
    CamResult,
    UnknownCamMethodError,
    canonical_method,
)
from fundus_review.inference.device import pick_device
from fundus_review.inference.layers import default_target_layers, resolve_layer
from fundus_review.inference.preprocess import prepare_image

REPO = Path(__file__).resolve().parents[1]
DEFAULT_IMAGE_DIR = REPO.parent / "shared" / "data" / "drishti_gs1_train" / "images"
DEFAULT_METHODS = "gradcam,hirescam,gradcam++,xgradcam,layercam"
GOAL_SPEEDUP = 3.0  # (a)/(b)
GOAL_OVERHEAD = 1.3  # engine time / bare forward time
# Methods the engine computes from its single pass whose library class is called as in (b).
# RandomCAM is left out: its maps are random by design.
COMPARABLE = {
    n
    for n, m in CAM_METHODS.items()
    if m.single_pass and n not in ("finercam", "refinecam", "randomcam")
}
TIE_RTOL = 1e-5  # top-two probabilities this close are a tie that float rounding may break
IMAGENET = SimpleNamespace(
    resize="resize", crop_pct=1.0, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)
)


def machine_threads() -> int:
    # The CPUs this process may run on, which a container or taskset can limit below cpu_count.
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N, mps or auto")
    p.add_argument("--models", default="resnet50,efficientnet_b0", help="timm model names")
    p.add_argument("--methods", default=DEFAULT_METHODS, help="comma-separated CAM methods")
    p.add_argument("--batch", type=int, default=16, help="engine batch size (default 16)")
    p.add_argument("--images", type=int, default=16, help="images per model (default 16)")
    p.add_argument(
        "--naive-images",
        type=int,
        default=4,
        help="how many of them the per-image library loop (b) runs on (default 4; it is the "
        "slow path, and the median over a few images is stable)",
    )
    p.add_argument("--size", type=int, default=224, help="model input size in pixels")
    p.add_argument(
        "--repeats", type=int, default=3, help="timings of engine and forward per batch (default 3)"
    )
    p.add_argument("--warmup", type=int, default=1, help="untimed warm-up runs (default 1)")
    p.add_argument("--threads", type=int, default=machine_threads(), help="torch CPU threads")
    p.add_argument("--atol", type=float, default=1e-4, help="heatmap tolerance (maps in [0, 1])")
    p.add_argument(
        "--image-dir",
        type=Path,
        default=DEFAULT_IMAGE_DIR,
        help="fundus photographs to use (default: ../shared/data/drishti_gs1_train/images; "
        "seeded random inputs when the folder does not exist)",
    )
    p.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="wall (default) or cpu: this process's CPU time, which other processes on a "
        "shared machine do not inflate; use it with --threads 1 (idle threads spin)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fail-on-speed", action="store_true", help="exit 3 when a goal is missed")
    args = p.parse_args(argv)
    if min(args.batch, args.images, args.naive_images, args.repeats) < 1 or args.warmup < 0:
        p.error("--batch, --images, --naive-images and --repeats must be >= 1, --warmup >= 0")
    args.naive_images = min(args.naive_images, args.images)
    if args.clock == "cpu" and args.device != "cpu":
        p.error("--clock cpu measures host CPU time; it is meaningful only with --device cpu")
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    try:
        args.methods = list(dict.fromkeys(canonical_method(m) for m in args.methods.split(",")))
    except UnknownCamMethodError as exc:
        p.error(str(exc))
    for name in args.methods:
        if name not in COMPARABLE:
            p.error(f"{name}: choose among {', '.join(sorted(COMPARABLE))}")
    return args


def load_inputs(n: int, size: int, image_dir: Path, seed: int) -> tuple[torch.Tensor, str]:
    """n normalised (3, size, size) inputs: real photographs (cycled if fewer) or seeded noise."""
    files = []
    if image_dir.is_dir():
        files = sorted(f for f in image_dir.rglob("*") if f.is_file() and is_image_file(f))
    if not files:
        gen = torch.Generator().manual_seed(seed)
        return torch.randn(n, 3, size, size, generator=gen), "seeded random N(0, 1) inputs"
    spec = SimpleNamespace(input_size=(size, size), **vars(IMAGENET))
    distinct = [prepare_image(load_image(f), spec)[0] for f in files[:n]]
    arrays = [distinct[i % len(distinct)] for i in range(n)]
    return torch.from_numpy(np.stack(arrays)), f"{len(distinct)} photographs from {image_dir}"


def build_model(name: str, device: torch.device, seed: int) -> tuple[torch.nn.Module, str]:
    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False).eval().to(device)
    layer_path = default_target_layers(model, f"timm:{name}")[0]
    return model, layer_path


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCKS["wall"]


def timed(fn: Callable[[], object], device: torch.device) -> tuple[float, object]:
    # Asynchronous devices: wait for earlier work before starting and for this work before stopping.
    synchronize(device)
    start = clock()
    out = fn()
    synchronize(device)
    return clock() - start, out


def bare_forward(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(batch)


def naive_cam(
    model: torch.nn.Module, layer: torch.nn.Module, name: str, x: torch.Tensor
) -> tuple[np.ndarray, int]:
    """One image the way the seeds do it: a forward for the prediction, then the library CAM."""
    with torch.no_grad():
        predicted = int(torch.softmax(model(x), dim=1).argmax(dim=1).item())
    with CAM_METHODS[name].library_class(model=model, target_layers=[layer]) as cam:
        heatmap = cam(input_tensor=x, targets=None)
    return heatmap, predicted


def minmax(maps: np.ndarray) -> np.ndarray:
    """Per-map min-max scaling to [0, 1], applied identically to both sides of a comparison."""
    maps = maps.astype(np.float64)
    low = maps.min(axis=(-2, -1), keepdims=True)
    span = maps.max(axis=(-2, -1), keepdims=True) - low
    return (maps - low) / np.where(span > 0, span, 1.0)


@dataclass
class Row:
    model: str
    method: str  # canonical name, or "all" for every method in one engine run
    engine: list[float] = field(default_factory=list)  # seconds per batch
    overhead: list[float] = field(default_factory=list)  # engine / forward, timed side by side
    naive: list[float] = field(default_factory=list)  # seconds per image
    max_diff: float = 0.0
    # Indices of images where engine and library explain different classes, and of those where
    # that is only a tie of the top two classes broken by float rounding (see compare_maps).
    class_mismatches: set[int] = field(default_factory=set)
    ties: set[int] = field(default_factory=set)


def compare_maps(
    row: Row,
    result: CamResult,
    method: str,
    lib_maps: list[np.ndarray],
    lib_classes: list[int],
    explain: Callable[[int, int], np.ndarray],
    first_image: int,
) -> None:
    """Engine vs library heatmaps of the same images, after the same min-max scaling.

    The two sides may pick different classes only where the top scores tie to float rounding
    (batched and single-image convolutions round differently): untrained networks give near-equal
    logits. There the library map of the engine's class is computed (untimed) and compared; a
    class difference that is not such a tie is a real mismatch.
    """
    engine_maps = result.heatmaps[method]
    for i, (lib_map, lib_class) in enumerate(zip(lib_maps, lib_classes, strict=True)):
        engine_class = int(result.target_index[i])
        if lib_class != engine_class:
            probs = result.probs[i]
            if probs[lib_class] < probs[engine_class] * (1 - TIE_RTOL):
                row.class_mismatches.add(first_image + i)
                continue
            row.ties.add(first_image + i)
            lib_map = explain(i, engine_class)
        diff = np.abs(minmax(engine_maps[i]) - minmax(lib_map))
        row.max_diff = max(row.max_diff, float(diff.max()))


def bench_model(
    name: str, args: argparse.Namespace, device: torch.device, inputs: torch.Tensor
) -> tuple[list[Row], list[float], str]:
    model, layer_path = build_model(name, device, args.seed)
    layer = resolve_layer(model, layer_path)
    methods = args.methods
    engines = {m: CamEngine(model, [layer], [m]) for m in methods}
    if len(methods) > 1:
        engines["all"] = CamEngine(model, [layer], methods)
    rows = {m: Row(name, m) for m in engines}
    forward_s: list[float] = []
    batches = [inputs[i : i + args.batch].to(device) for i in range(0, len(inputs), args.batch)]

    # Warm-up: allocator, oneDNN primitives and autograd for the batch shape and for one image.
    # The widest engine covers the code of every single-method engine.
    for _ in range(args.warmup):
        bare_forward(model, batches[0])
        engines.get("all", engines[methods[0]]).run(batches[0])
        naive_cam(model, layer, methods[0], batches[0][:1])

    jobs: list[tuple[str, Callable[[torch.Tensor], object]]] = [
        ("forward", lambda b: bare_forward(model, b))
    ]
    jobs += [(key, engine.run) for key, engine in engines.items()]
    first_image = 0
    for b_index, batch in enumerate(batches):
        results: dict[str, CamResult] = {}
        for rep in range(args.repeats):
            # Rotated order, so that no path always runs right after the same other one.
            shift = (b_index * args.repeats + rep) % len(jobs)
            times: dict[str, float] = {}
            for key, job in jobs[shift:] + jobs[:shift]:
                times[key], out = timed(lambda j=job, b=batch: j(b), device)
                if key != "forward":
                    results.setdefault(key, out)  # type: ignore[arg-type]
            # A last, smaller batch is not timed: every timing is of the same amount of work.
            if len(batch) == len(batches[0]):
                forward_s.append(times["forward"])
                for key, row in rows.items():
                    row.engine.append(times[key])
                    row.overhead.append(times[key] / times["forward"])
        naive_count = min(len(batch), args.naive_images - first_image)
        for m in methods:
            lib_maps, lib_classes = [], []
            for i in range(naive_count):
                elapsed, (heatmap, predicted) = timed(
                    lambda x=batch[i : i + 1], mm=m: naive_cam(model, layer, mm, x), device
                )
                rows[m].naive.append(elapsed)
                lib_maps.append(heatmap[0])
                lib_classes.append(predicted)

            def explain(i: int, target: int, b: torch.Tensor = batch, mm: str = m) -> np.ndarray:
                with CAM_METHODS[mm].library_class(model=model, target_layers=[layer]) as cam:
                    targets = [ClassifierOutputTarget(target)]
                    return cam(input_tensor=b[i : i + 1], targets=targets)[0]

            for key in (m, "all"):
                if key in results and naive_count > 0:
                    compare_maps(
                        rows[m], results[key], m, lib_maps, lib_classes, explain, first_image
                    )
        first_image += len(batch)
        print(f"  {name}: batch {b_index + 1}/{len(batches)} done", file=sys.stderr, flush=True)
    for engine in engines.values():
        engine.close()
    return list(rows.values()), forward_s, layer_path


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def print_table(
    results: list[tuple[str, str, list[Row], list[float]]], args: argparse.Namespace
) -> tuple[bool, bool]:
    """The table; returns (heatmaps all match, speed goals all met)."""
    head = (
        f"{'model':<16} {'method':<10} {'(a) engine':>11} {'(b) naive':>10} {'(c) fwd':>9} "
        f"{'(a)/(b)':>8} {'eng/fwd':>8} {'max|dHM|':>9}  goals"
    )
    print(head)
    print(f"{'':<16} {'':<10} {'img/s':>11} {'img/s':>10} {'img/s':>9} {'>=3':>8} {'<=1.3':>8}")
    print("-" * len(head))
    maps_ok = speed_ok = True
    for model, layer_path, rows, forward_s in results:
        fwd = median(forward_s)
        for row in rows:
            engine = median(row.engine)
            a, c = args.batch / engine, args.batch / fwd
            overhead = median(row.overhead)
            if row.method == "all":
                label = f"all {len(args.methods)}"
                b_text = ratio_text = diff_text = "-"
                verdict = "ok" if overhead <= GOAL_OVERHEAD else "SLOWER THAN GOAL"
                speed_ok &= overhead <= GOAL_OVERHEAD
            else:
                label = row.method
                b = 1.0 / median(row.naive)
                ratio = a / b
                b_text, ratio_text = f"{b:.2f}", f"{ratio:.2f}"
                diff_text = f"{row.max_diff:.1e}"
                problems = []
                if ratio < GOAL_SPEEDUP or overhead > GOAL_OVERHEAD:
                    problems.append("SPEED GOAL MISSED")
                    speed_ok = False
                if row.max_diff > args.atol or row.class_mismatches:
                    mismatches = len(row.class_mismatches)
                    extra = f" ({mismatches} class mismatches)" if mismatches else ""
                    problems.append(f"MAPS DIFFER{extra}")
                    maps_ok = False
                verdict = "; ".join(problems) or "ok"
                if row.ties:
                    verdict += (
                        f" ({len(row.ties)} tied top classes: compared at the engine's class)"
                    )
            print(
                f"{model:<16} {label:<10} {a:>11.2f} {b_text:>10} {c:>9.2f} "
                f"{ratio_text:>8} {overhead:>8.2f} {diff_text:>9}  {verdict}"
            )
        spread = f"{min(forward_s):.2f}-{max(forward_s):.2f} s" if forward_s else "-"
        print(
            f"{'':<16} target layer {layer_path}; forward of one batch took {spread} "
            f"over {len(forward_s)} timings (the machine's noise)"
        )
    return maps_ok, speed_ok


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        device = pick_device(args.device)
    except FundusReviewError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    global clock
    clock = CLOCKS[args.clock]
    inputs, source = load_inputs(args.images, args.size, args.image_dir, args.seed)
    gpu = f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    print(
        f"torch {torch.__version__}, timm {timm.__version__}, "
        f"grad-cam {importlib.metadata.version('grad-cam')}; device {device}{gpu}; "
        f"CPU {cpu_name()}, {machine_threads()} usable cores, torch threads {args.threads}"
    )
    print(
        f"{args.images} images of {args.size}x{args.size} ({source}); engine batch {args.batch}; "
        f"untrained weights (pretrained=False); {args.warmup} warm-up run(s)\n"
        f"{args.clock} clock; (a), (c): medians of {args.repeats} interleaved timings per batch, eng/fwd the median "
        f"of side-by-side ratios; (b): median over {args.naive_images} images"
    )
    results = []
    start = time.perf_counter()
    for name in args.models:
        rows, forward_s, layer_path = bench_model(name, args, device, inputs)
        results.append((name, layer_path, rows, forward_s))
    print(f"\nmeasured in {time.perf_counter() - start:.0f} s\n")
    maps_ok, speed_ok = print_table(results, args)
    print(
        "\n(a) CamEngine.run, probabilities and heatmap from one pass; (b) per image: no-grad "
        "forward to predict, then the library class (targets=None); (c) no-grad forward of the "
        f"batch. max|dHM|: engine vs library heatmaps after the same min-max scaling (tolerance "
        f"{args.atol:g}; single-method and all-method engines both compared). 'all N': every "
        "method from one engine run."
    )
    if not maps_ok:
        return 1
    if args.fail_on_speed and not speed_ok:
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
