"""A small stored world for the mean-map tests: photos of two sizes with circular fields of view,
an honest run (a blob on the optic disc) and a shortcut run (a blob in the top-left corner,
outside the field of view), labels, predictions (one wrong) and expert discs on some images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from fundus_review.core.transform import make_transform
from fundus_review.data.fov import FovCache
from fundus_review.data.images import file_sha256
from fundus_review.data.masks_io import write_mask_atomic
from fundus_review.store import Database, repo

# (h, w, fov centre x, centre y, radius, eye, label, predicted index)
IMAGES = [
    (300, 300, 150, 150, 140, "OD", "a", 0),
    (300, 300, 150, 150, 140, "OS", "b", 1),
    (240, 320, 160, 120, 118, "OD", "a", 0),
    (240, 320, 160, 120, 118, "OS", "b", 0),  # wrong: a "b" image predicted "a"
    (400, 400, 200, 200, 190, "OD", "b", 1),
]
CLASSES = ["a", "b"]


def _disk(h: int, w: int, cx: float, cy: float, r: float) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    return np.hypot(xs - cx, ys - cy) <= r


def _blob(tf, x: float, y: float, sigma: float) -> np.ndarray:
    (xi, yi), = tf.to_input_points(np.array([[x, y]]))  # fmt: skip
    ys, xs = np.mgrid[0 : tf.in_h, 0 : tf.in_w] + 0.5
    return np.exp(-((xs - xi) ** 2 + (ys - yi) ** 2) / (2 * sigma**2)).astype(np.float32)


def disc_centre(h: int, w: int, cx: float, cy: float, r: float, eye: str) -> tuple[float, float]:
    """The disc sits 0.4 radii nasal of the FOV centre: right of it in a right eye."""
    return (cx + 0.4 * r if eye == "OD" else cx - 0.4 * r), cy


def build_world(db: Database, root: Path, cache: FovCache, discs: bool = True) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    out: dict = {"images": []}
    with db.session() as s:
        ds = repo.get_or_create_dataset(s, root, name="mm")
        ref = repo.get_or_create_reviewer(s, "expert")
        runs = {}
        for name in ("honest", "shortcut"):
            model = repo.get_or_create_model(
                s, name, "timm:resnet18", {"classes": CLASSES}, (name[0] * 64), name
            )
            runs[name] = (model, repo.get_or_create_cam_run(s, model, "gradcam", ["layer4"]))
        for k, (h, w, cx, cy, r, eye, label, pred) in enumerate(IMAGES):
            path = root / f"img{k}.png"
            rgb = np.zeros((h, w, 3), np.uint8)
            rgb[_disk(h, w, cx, cy, r)] = (150 + k, 60, 30)
            PILImage.fromarray(rgb).save(path)
            sha = file_sha256(path)
            write_mask_atomic(cache.path_for(sha), _disk(h, w, cx, cy, r))
            img = repo.upsert_image(s, ds, path.name, w, h, sha)
            repo.set_label(s, img, label, "csv")
            tf = make_transform(h, w, 112, 112, "resize")
            dx, dy = disc_centre(h, w, cx, cy, r, eye)
            probs = [0.9, 0.1] if pred == 0 else [0.2, 0.8]
            for name, (model, run) in runs.items():
                repo.save_prediction(s, img, model, probs, pred, tf.to_dict())
                if name == "honest":
                    hm = _blob(tf, dx, dy, 5.0)
                else:  # 8 % of the width in from the top-left corner of the photograph
                    hm = _blob(tf, 0.05 * w, 0.05 * h, 4.0)
                repo.save_heatmap(s, run, img, pred, hm)
            if discs and k != 4:  # the last image has no expert disc
                disc = _disk(h, w, dx, dy, 0.15 * r)
                repo.replace_imported_mask(s, img, ref, "optic_disc", disc, source=f"import:{k}")
            out["images"].append(img.id)
        out["runs"] = {name: run.id for name, (_, run) in runs.items()}
    return out
