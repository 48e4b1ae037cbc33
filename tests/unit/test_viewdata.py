"""The app's read side without Qt: runs per dataset, target-class fallback, score points, rows."""

from __future__ import annotations

import numpy as np
import pytest

from fundus_review.core.transform import make_transform
from fundus_review.store import repo
from fundus_review.store.db import open_database
from fundus_review.views.overlays import pick_overlays
from fundus_review.views.queries import (
    RunChoice,
    heatmap_target,
    list_runs,
    load_browse_rows,
    run_for_target,
)
from fundus_review.views.scores import score_choices, score_points

H, W = 8, 12
CLASSES = ["glaucoma", "normal"]


@pytest.fixture
def db(tmp_path):
    """Two datasets; model m1 ran gradcam (predicted) on both and gradcam [class normal] on
    dataset A's first image; disc scores from two reviewers on dataset A."""
    d = open_database(tmp_path / "v.db")
    tf = make_transform(H, W, 4, 4, "resize").to_dict()
    with d.session() as s:
        a = repo.get_or_create_dataset(s, tmp_path / "A")
        b = repo.get_or_create_dataset(s, tmp_path / "B")
        imgs = [repo.upsert_image(s, a, f"a{i}.png", W, H, f"{i:064x}") for i in range(3)]
        other = repo.upsert_image(s, b, "b0.png", W, H, "f" * 64)
        for img, label in zip(imgs, ["glaucoma", "normal", "normal"], strict=True):
            repo.set_label(s, img, label, "folders")
        model = repo.get_or_create_model(
            s, "m1", "timm:resnet18", {"classes": CLASSES}, "a" * 64, tmp_path / "m1"
        )
        model2 = repo.get_or_create_model(
            s, "m2", "timm:resnet18", {"classes": CLASSES}, "b" * 64, tmp_path / "m2"
        )
        grad = repo.get_or_create_cam_run(s, model, "gradcam", ["layer4"])
        cls = repo.get_or_create_cam_run(s, model, "gradcam", ["layer4"], "class:normal")
        unused = repo.get_or_create_cam_run(s, model2, "hirescam", ["layer4"])
        probs = [[0.9, 0.1], [0.2, 0.8], [0.3, 0.7]]
        for img, p in zip(imgs, probs, strict=True):
            repo.save_prediction(s, img, model, p, int(np.argmax(p)), tf)
            repo.save_heatmap(s, grad, img, int(np.argmax(p)), np.full((4, 4), 0.5, np.float32))
        repo.save_prediction(s, other, model, [0.5, 0.5], 0, tf)
        repo.save_heatmap(s, grad, other, 0, np.zeros((4, 4), np.float32))
        repo.save_heatmap(s, cls, imgs[0], 1, np.eye(4, dtype=np.float32))
        ref = repo.get_or_create_reviewer(s, "reference")
        ann = repo.get_or_create_reviewer(s, "ann")
        for k, img in enumerate(imgs):
            hm = repo.get_heatmap(s, grad, img)
            repo.save_scores(s, hm, "optic_disc", ref, {"pointing_hit": float(k % 2)})
            repo.save_scores(s, hm, "optic_disc", ann, {"pointing_hit": 1.0})
        ids = {
            "A": a.id,
            "B": b.id,
            "imgs": [i.id for i in imgs],
            "grad": grad.id,
            "cls": cls.id,
            "unused": unused.id,
            "m1": model.id,
        }
    yield d, ids
    d.close()


def test_runs_carry_model_name_target_and_recipe(db):
    d, ids = db
    runs = {r.id: r for r in list_runs(d)}
    assert runs[ids["cls"]].target_class == "normal"
    assert runs[ids["grad"]].target_class is None
    assert runs[ids["cls"]].recipe == runs[ids["grad"]].recipe == ("gradcam", ("layer4",))
    assert runs[ids["cls"]].title == "gradcam @ layer4 [class normal]"
    assert runs[ids["unused"]].long_title == "m2: hirescam @ layer4"


def test_dataset_filter_keeps_runs_with_heatmaps_there(db):
    d, ids = db
    assert [r.id for r in list_runs(d, None, ids["A"])] == [ids["grad"], ids["cls"]]
    assert [r.id for r in list_runs(d, None, ids["B"])] == [ids["grad"]]
    assert [r.id for r in list_runs(d, ids["m1"])] == [ids["grad"], ids["cls"]]


def test_run_for_target_matches_recipe_and_class():
    runs = [
        RunChoice(1, 1, "gradcam", ["layer4"], "predicted"),
        RunChoice(2, 1, "gradcam", ["layer4"], "class:normal"),
        RunChoice(3, 1, "gradcam", ["layer3"], "class:glaucoma"),
    ]
    recipe = ("gradcam", ("layer4",))
    assert run_for_target(runs, recipe, None).id == 1
    assert run_for_target(runs, recipe, "normal").id == 2
    assert run_for_target(runs, recipe, "glaucoma") is None
    assert run_for_target(runs, ("hirescam", ("layer4",)), None) is None


def test_a_missing_class_heatmap_falls_back_to_the_predicted_one_only_when_it_matches(db):
    d, ids = db
    img0, img1, _ = ids["imgs"]
    assert heatmap_target(d, ids["cls"], img0) == 1
    assert heatmap_target(d, ids["cls"], img1) is None
    # "normal" (index 1) wanted. Image 1 was predicted normal: the predicted run's map is it.
    candidates = [(ids["grad"], 1)]
    ov = pick_overlays(d, img1, candidates, (H, W))
    assert (ov.run_id, ov.target_index, ov.missing) == (ids["grad"], 1, False)
    assert ov.heatmap.shape == (H, W)
    # Image 0 was predicted glaucoma: that map does not explain "normal"; nothing fits.
    ov = pick_overlays(d, img0, candidates, (H, W))
    assert ov.missing and ov.heatmap is None and ov.run_id is None
    # With the class run first, image 0 shows its stored class-normal map.
    ov = pick_overlays(d, img0, [(ids["cls"], None), (ids["grad"], 1)], (H, W))
    assert (ov.run_id, ov.target_index, ov.missing) == (ids["cls"], 1, False)


def test_score_points_per_reviewer_with_confidence_and_correctness(db):
    d, ids = db
    assert score_choices(d, [ids["grad"]]) == (
        ["pointing_hit"],
        ["optic_disc"],
        ["ann", "reference"],
    )
    pts = score_points(d, ids["A"], [ids["grad"]], "pointing_hit", "optic_disc", "reference")
    assert [(p.image_id, p.value) for p in pts] == list(
        zip(ids["imgs"], [0.0, 1.0, 0.0], strict=True)
    )
    assert [p.confidence for p in pts] == pytest.approx([0.9, 0.8, 0.7])
    # image 0: glaucoma predicted glaucoma; 1: normal/normal; 2: normal/normal
    assert [p.correct for p in pts] == [True, True, True]
    both = score_points(d, ids["A"], [ids["grad"]], "pointing_hit", "optic_disc")
    assert len(both) == 6
    assert score_points(d, ids["B"], [ids["grad"]], "pointing_hit", "optic_disc") == []


def test_browse_rows_badge_prefers_the_chosen_reviewer(db):
    d, ids = db
    rows = load_browse_rows(d, ids["A"], ids["m1"], ids["grad"], "reference", "pointing_hit",
                            "optic_disc")  # fmt: skip
    assert [r.score for r in rows] == [0.0, 1.0, 0.0]
    assert [r.prediction for r in rows] == ["glaucoma", "normal", "normal"]
    assert [r.confidence for r in rows] == pytest.approx([0.9, 0.8, 0.7])
    assert all(r.has_heatmap for r in rows)
    ann = load_browse_rows(d, ids["A"], ids["m1"], ids["grad"], "ann", "pointing_hit", "optic_disc")
    assert [r.score for r in ann] == [1.0, 1.0, 1.0]
