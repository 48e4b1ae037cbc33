"""The shipped demo bundles behave as the demo claims, on synthetic images they never saw.

- models/demo-cdr (trained without the corner marker): right for the right reason; its Grad-CAM
  maximum lies in the optic disc (pointing game, default tolerance) with or without the marker.
- models/demo-cdr-shortcut (trained with the marker always agreeing with the label): its
  heatmaps go to the marker, rarely to the disc, and its accuracy collapses when the marker lies.

Fresh images come from seeds no bundle was trained or validated on (training used seeds 1 and 2).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from fundus_review.core.metrics import mass_outside_fov, pointing_game, tolerance_from_transform
from fundus_review.data.fov import fov_mask
from fundus_review.data.images import load_image
from fundus_review.data.masks_io import load_mask
from fundus_review.data.synthetic import write_demo_dataset
from fundus_review.inference.bundle import load_bundle
from fundus_review.inference.cam import CamEngine
from fundus_review.inference.layers import reshape_transform_for, resolve_layer
from fundus_review.inference.preprocess import prepare_batch
from fundus_review.paths import shipped_models_dir

# A module-wide analysed database or trained model: seconds per test.
pytestmark = pytest.mark.slow

N = 36
DEMO_SIZE = (512, 512)  # what `fundus-review demo` generates
HONEST, SHORTCUT = "demo-cdr", "demo-cdr-shortcut"
MAX_BUNDLE_BYTES = 15 * 1024**2


@dataclass
class Outcome:
    """Per image: predicted class, prediction correct, heatmap maximum in the disc (within the
    field of view, as the scoring does), and the maximum's distance to the marker in tolerance
    radii (anywhere in the image: the marker lies outside the field of view)."""

    predicted: list[str] = field(default_factory=list)
    correct: list[bool] = field(default_factory=list)
    disc_hit: list[bool] = field(default_factory=list)
    marker_radii: list[float] = field(default_factory=list)
    mass_outside_fov: list[float] = field(default_factory=list)

    def marker_within(self, radii: float, predicted: str | None = None) -> float:
        d = [
            r
            for r, p in zip(self.marker_radii, self.predicted, strict=True)
            if predicted in (None, p)
        ]
        return float(np.mean(np.asarray(d) <= radii))

    def rate(self, name: str) -> float:
        return float(np.mean(getattr(self, name)))


METHODS = ("gradcam", "hirescam")
_CACHE: dict[tuple[str, Path], dict[str, Outcome]] = {}


def _evaluate(bundle_name: str, data: Path, method: str = "gradcam") -> Outcome:
    """One pass of the bundle over the set computes every method; later calls reuse it."""
    key = (bundle_name, data)
    if key not in _CACHE:
        _CACHE[key] = _run(bundle_name, data)
    return _CACHE[key][method]


def _run(bundle_name: str, data: Path) -> dict[str, Outcome]:
    bundle = load_bundle(shipped_models_dir() / bundle_name)
    card = bundle.card
    model = bundle.build_model("cpu")
    layers = [resolve_layer(model, p) for p in bundle.target_layer_paths(model)]
    with open(data / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    outcomes = {m: Outcome() for m in METHODS}
    reshape = reshape_transform_for(model, card.architecture)
    with CamEngine(model, layers, list(METHODS), reshape) as engine:
        for start in range(0, len(rows), 12):
            chunk = rows[start : start + 12]
            images = [load_image(data / "images" / r["image"]) for r in chunk]
            batch, transforms = prepare_batch(images, card)
            result = engine.run(batch)
            for k, row in enumerate(chunk):
                stem = Path(row["image"]).stem
                tol = tolerance_from_transform(transforms[k])
                fov = fov_mask(images[k])
                disc = load_mask(data / "masks" / "optic_disc" / f"{stem}.png")
                marker_file = data / "masks" / "marker" / f"{stem}.png"
                marker = load_mask(marker_file) if marker_file.is_file() else None
                predicted = card.classes[int(result.target_index[k])]
                for method, out in outcomes.items():
                    heat = transforms[k].heatmap_to_original(result.heatmaps[method][k])
                    out.predicted.append(predicted)
                    out.correct.append(predicted == row["diagnosis"])
                    out.disc_hit.append(pointing_game(heat, disc, tol, fov).hit)
                    out.mass_outside_fov.append(mass_outside_fov(heat, fov))
                    if marker is not None:
                        distance = pointing_game(heat, marker, tol).distance_px
                        out.marker_radii.append(distance / tol)
    return outcomes


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fresh")
    return {
        "plain": write_demo_dataset(root / "plain", n=N, seed=9101, size=DEMO_SIZE),
        # the demo's own condition: the marker always agrees with the label
        "marker": write_demo_dataset(
            root / "marker", n=N, seed=9102, size=DEMO_SIZE, confounder=True
        ),
        # the marker always in the other class's corner
        "lying": write_demo_dataset(
            root / "lying", n=N, seed=9103, size=DEMO_SIZE, confounder=True, confounder_strength=0.0
        ),
    }


@pytest.mark.parametrize("name", [HONEST, SHORTCUT])
def test_shipped_bundle_is_complete_small_and_reproducible(name: str) -> None:
    folder = shipped_models_dir() / name
    bundle = load_bundle(folder)
    assert {"model.toml", "model.safetensors", "training_log.csv", "heldout.txt"} <= {
        p.name for p in folder.iterdir()
    }
    assert sum(p.stat().st_size for p in folder.iterdir()) <= MAX_BUNDLE_BYTES
    assert bundle.card.classes == ["glaucoma", "normal"]
    command = bundle.card.extra["training"]["command"]
    assert command.startswith("fundus-review train ") and f"--out models/{name}" in command


def test_honest_model_is_right_for_the_right_reason(sets: dict[str, Path]) -> None:
    for key in ("plain", "marker", "lying"):
        outcome = _evaluate(HONEST, sets[key])
        assert outcome.rate("correct") >= 0.9, key
        assert outcome.rate("disc_hit") >= 0.9, key
        if outcome.marker_radii:
            assert outcome.marker_within(2.5) <= 0.1, key


def test_honest_model_hirescam_also_points_into_the_disc(sets: dict[str, Path]) -> None:
    assert _evaluate(HONEST, sets["plain"], "hirescam").rate("disc_hit") >= 0.8


def test_shortcut_model_looks_at_the_marker(sets: dict[str, Path]) -> None:
    honest = _evaluate(HONEST, sets["marker"])
    shortcut = _evaluate(SHORTCUT, sets["marker"])
    assert shortcut.rate("correct") >= 0.9  # right, for the wrong reason
    assert set(shortcut.predicted) == {"glaucoma", "normal"}
    # The maximum sits at the marker for "glaucoma" (top right) and near it for "normal"
    # (bottom left, about two tolerance radii from it on the rim of the field), never in the disc.
    assert shortcut.marker_within(1.0, "glaucoma") >= 0.9
    assert shortcut.marker_within(2.5) >= 0.9
    assert shortcut.rate("disc_hit") <= 0.1
    assert honest.rate("disc_hit") - shortcut.rate("disc_hit") >= 0.8
    # The marker lies outside the field of view: so does much of the shortcut's heatmap mass.
    assert np.mean(shortcut.mass_outside_fov) > 3 * np.mean(honest.mass_outside_fov)


def test_a_lying_marker_fools_only_the_shortcut_model(sets: dict[str, Path]) -> None:
    assert _evaluate(HONEST, sets["lying"]).rate("correct") >= 0.9
    shortcut = _evaluate(SHORTCUT, sets["lying"])
    assert shortcut.rate("correct") <= 0.1  # it follows the marker into the wrong class
    assert shortcut.marker_within(2.5) >= 0.9
