"""Drills on a dataset folder: every broken or unusual file is reported with its path and a
reason, the rest is analysed, and the EXIF orientation is the one grid everything lies on."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fundus_review.app.analyze import AnalysisRequest, Finished, ImageFailed, run_analysis
from fundus_review.app.importing import import_masks, register_dataset
from fundus_review.core.transform import InputTransform
from fundus_review.data.images import load_image
from fundus_review.inference.bundle import ModelCard, write_bundle
from fundus_review.inference.trust import grant
from fundus_review.store import repo
from fundus_review.store.db import open_database
from fundus_review.store.schema import Image as ImageRow
from tests.conftest import REPO_ROOT
from tests.reliability import hostile_files as hf
from tests.unit.cam_models import RedSpotNet

# file name -> the words its problem must contain
BROKEN = {
    "zero.jpg": "empty file",
    "trunc.jpg": "truncated JPEG",
    "text.jpg": "not an image file",
    "huge.png": "too large",
    "bomb.png": "too large",
    "loop.jpg": "symbolic links",
}
FINE = [
    "good.png",
    "deep.png",
    "gray.png",
    "cmyk.jpg",
    "rgba.png",
    "rotated.jpg",
    *hf.HOSTILE_NAMES,
]


def _red_spot_bundle(folder: Path) -> Path:
    grant("tests.unit.cam_models")  # the suite's own model; revoked after the test
    card = ModelCard(
        name="red-spot",
        architecture="tests.unit.cam_models:red_spot_net",
        classes=["red", "not_red"],
        input_size=(64, 64),
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        target_layers=["features"],
    )
    return write_bundle(folder, card, RedSpotNet().state_dict()).path


def _stored_upright_spot() -> tuple[np.ndarray, tuple[int, int]]:
    """Pixels stored 24 high x 40 wide with a red spot at (row 4, col 30); EXIF orientation 6
    shows them 40 high x 24 wide, the spot at (row 30, col 19)."""
    stored = np.full((24, 40, 3), 20, np.uint8)
    stored[2:7, 28:33] = (255, 0, 0)
    return stored, (30, 19)


@pytest.fixture
def hostile_folder(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    hf.save(root / "good.png", hf.rgb())
    (root / "zero.jpg").write_bytes(b"")
    hf.truncated_jpeg(root / "trunc.jpg")
    (root / "text.jpg").write_text("patient notes, not a photograph\n", encoding="utf-8")
    hf.png_16bit(root / "deep.png")
    hf.save(root / "gray.png", hf.rgb()[..., 0])
    hf.cmyk_jpeg(root / "cmyk.jpg")
    hf.save(root / "rgba.png", np.dstack([hf.rgb(), np.full((24, 32), 128, np.uint8)]))
    hf.exif_rotated_jpeg(root / "rotated.jpg", _stored_upright_spot()[0])
    hf.bilevel_png(root / "huge.png", 15000, 15000)
    hf.bilevel_png(root / "bomb.png", 60000, 60000, rows=64)
    for name in hf.HOSTILE_NAMES:
        hf.save(root / name, hf.rgb(seed=len(name)))
    hf.symlink_loop(root)
    return root


def test_every_bad_file_is_named_and_the_rest_is_analysed(
    hostile_folder: Path, tmp_path: Path
) -> None:
    bundle = _red_spot_bundle(tmp_path / "bundle")
    req = AnalysisRequest(hostile_folder, bundle, ["gradcam"], tmp_path / "a.db", batch_size=4)
    events = list(run_analysis(req))
    started, fin = events[0], events[-1]
    assert isinstance(fin, Finished) and not fin.cancelled
    reported = {Path(p).name: why for p, why in [*started.problems, *fin.failed]}
    for name, words in BROKEN.items():
        assert words in reported.get(name, ""), (name, reported.get(name))
    for path, why in [*started.problems, *fin.failed]:
        assert Path(path).is_absolute() and "\n" not in why  # one line naming the file
    assert [Path(e.path).name for e in events if isinstance(e, ImageFailed)] == ["trunc.jpg"]
    assert fin.computed == len(FINE)

    with open_database(tmp_path / "a.db") as db, db.session() as s:
        stored = sorted(r.rel_path for r in s.query(ImageRow).filter(ImageRow.sha256.isnot(None)))
        assert stored == sorted(FINE + ["trunc.jpg"])  # the truncated one is listed, not analysed
        assert len(repo.list_cam_runs(s)) == 1


def test_the_exif_orientation_is_the_grid_of_heatmaps_and_masks(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    stored, (spot_row, spot_col) = _stored_upright_spot()
    hf.exif_rotated_jpeg(root / "rotated.jpg", stored)
    assert load_image(root / "rotated.jpg").shape == (40, 24, 3)  # what a viewer shows
    masks = root / "masks" / "optic_disc"
    masks.mkdir(parents=True)
    upright = np.zeros((40, 24), np.uint8)
    upright[28:33, 17:22] = 255
    Image.fromarray(upright).save(masks / "rotated.png")
    (root / "masks" / "cup").mkdir()
    Image.fromarray(upright.T.copy()).save(root / "masks" / "cup" / "rotated.png")  # sideways

    bundle = _red_spot_bundle(tmp_path / "bundle")
    db = open_database(tmp_path / "r.db")
    try:
        registered = register_dataset(db, root)
        summary = import_masks(db, registered, root / "masks")
        assert summary.structures == {"optic_disc": 1}
        ((path, why),) = summary.problems
        assert path.endswith("cup/rotated.png") and "rotated by 90 degrees" in why
        events = list(run_analysis(AnalysisRequest(root, bundle, ["gradcam"], db.url), db=db))
        fin = events[-1]
        assert isinstance(fin, Finished) and fin.computed == 1
        with db.session() as s:
            image = s.query(ImageRow).one()
            assert (image.width, image.height) == (24, 40)
            hm, transform, _ = repo.load_heatmap(s, fin.run_ids["gradcam"], image)
            heat = InputTransform.from_dict(transform).heatmap_to_original(hm)
            assert heat.shape == (40, 24)
            peak = np.unravel_index(np.argmax(heat), heat.shape)
            assert abs(peak[0] - spot_row) <= 2 and abs(peak[1] - spot_col) <= 2, peak
    finally:
        db.close()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux's VmHWM")
def test_huge_images_are_refused_from_the_header_in_bounded_memory(tmp_path: Path) -> None:
    huge = hf.bilevel_png(tmp_path / "huge.png", 15000, 15000)
    bomb = hf.bilevel_png(tmp_path / "bomb.png", 60000, 60000, rows=64)
    # A fresh process, so its peak memory is the loader's alone (decoding 15000x15000 RGB
    # would take 675 MB).
    code = (
        "import sys\n"
        "from fundus_review.data.images import load_image, image_size\n"
        "from fundus_review.errors import ImageLoadError\n"
        "for p in sys.argv[1:]:\n"
        "    for f in (load_image, image_size):\n"
        "        try:\n"
        "            f(p)\n"
        "        except ImageLoadError as e:\n"
        "            print(e)\n"
        # VmHWM, not ru_maxrss: that one keeps the forked parent's peak across exec.
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
        "print(int(hwm.split()[1]) // 1024)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    t0 = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", code, str(huge), str(bomb)],
        env=env, capture_output=True, text=True, timeout=120, check=True,
    ).stdout.splitlines()  # fmt: skip
    assert time.monotonic() - t0 < 30
    *errors, peak_mb = out
    assert len(errors) == 4
    assert all("too large" in e for e in errors)
    assert errors[0].startswith(str(huge)) and errors[2].startswith(str(bomb))
    assert int(peak_mb) < 300, f"peak memory {peak_mb} MB"
