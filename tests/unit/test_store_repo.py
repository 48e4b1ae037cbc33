"""repo: datasets, images, labels, models, runs, predictions, heatmaps, scores, results."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import delete, func, select

from fundus_review.errors import StoreError
from fundus_review.store import Database, open_database, repo
from fundus_review.store.schema import (
    Annotation,
    CamRun,
    Dataset,
    Heatmap,
    Image,
    Label,
    ModelRecord,
    Prediction,
    Reviewer,
    Score,
)

CARD = {"classes": ["normal", "glaucoma"], "input_size": (4, 6), "resize": "resize"}
TRANSFORM = {
    "orig_h": 3,
    "orig_w": 5,
    "in_h": 4,
    "in_w": 6,
    "sx": 1.2,
    "sy": 4 / 3,
    "tx": 0.0,
    "ty": 0.0,
}


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def count(s, cls) -> int:  # noqa: ANN001
    return s.scalar(select(func.count()).select_from(cls))


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = open_database(tmp_path / "store.db")
    yield database
    database.close()


@pytest.fixture
def setup(db: Database, tmp_path: Path) -> dict:
    """One dataset with two images, a model and a GradCAM run."""
    with db.session() as s:
        ds = repo.get_or_create_dataset(s, tmp_path / "data", name="drishti")
        a = repo.upsert_image(s, ds, "glaucoma/a.png", 5, 3, sha("a"))
        b = repo.upsert_image(s, ds, "normal/b.png", 5, 3, sha("b"))
        model = repo.get_or_create_model(s, "r18", "timm:resnet18", CARD, sha("w"), tmp_path / "m")
        run = repo.get_or_create_cam_run(s, model, "gradcam", ["layer4[-1]"])
    return {"ds": ds, "a": a, "b": b, "model": model, "run": run, "root": tmp_path}


def analyse(s, run, model, image, value: float = 0.5) -> Heatmap:  # noqa: ANN001
    """What the pipeline stores per image: prediction + heatmap of the same forward pass."""
    repo.save_prediction(s, image, model, np.array([0.3, 0.7], np.float32), 1, TRANSFORM)
    hm = np.full((4, 6), value, np.float32)
    hm[0, 0] = 1.0
    return repo.save_heatmap(s, run, image, 1, hm)


def test_dataset_is_keyed_by_resolved_root(db: Database, tmp_path: Path) -> None:
    with db.session() as s:
        d1 = repo.get_or_create_dataset(s, tmp_path / "data")
        d2 = repo.get_or_create_dataset(s, str(tmp_path / "x" / ".." / "data") + "/")
        assert d1.id == d2.id and d1.name == "data"
        repo.get_or_create_dataset(s, tmp_path / "data", name="renamed")
    with db.session() as s:
        assert [d.name for d in repo.list_datasets(s)] == ["renamed"]


def test_upsert_image_is_idempotent_and_normalises_paths(setup: dict, db: Database) -> None:
    with db.session() as s:
        again = repo.upsert_image(s, setup["ds"], "glaucoma\\a.png", 5, 3, sha("a"))
        assert again.id == setup["a"].id
        assert count(s, Image) == 2
        assert [i.rel_path for i in repo.dataset_images(s, setup["ds"])] == [
            "glaucoma/a.png",
            "normal/b.png",
        ]
        for bad in ("../escape.png", "/abs.png", ""):
            with pytest.raises(ValueError):
                repo.upsert_image(s, setup["ds"], bad, 5, 3, sha("a"))
        with pytest.raises(ValueError, match="SHA-256"):
            repo.upsert_image(s, setup["ds"], "c.png", 5, 3, "abc")


def test_changed_file_drops_its_results_but_not_its_annotations(setup: dict, db: Database) -> None:
    with db.session() as s:
        analyse(s, setup["run"], setup["model"], setup["a"])
        analyse(s, setup["run"], setup["model"], setup["b"])
        rev = repo.get_or_create_reviewer(s, "ref")
        repo.add_annotation(s, setup["a"], rev, "optic_disc", "mask", mask=np.ones((3, 5), bool))
    with db.session() as s:
        repo.upsert_image(s, setup["ds"], "glaucoma/a.png", 5, 3, sha("a, edited"))
    with db.session() as s:
        assert repo.load_heatmap(s, setup["run"], setup["a"]) is None
        assert repo.get_prediction(s, setup["a"], setup["model"]) is None
        assert repo.load_heatmap(s, setup["run"], setup["b"]) is not None
        assert len(repo.list_annotations(s, setup["a"])) == 1


def test_labels_per_source_upsert_and_removal(setup: dict, db: Database) -> None:
    with db.session() as s:
        repo.set_label(s, setup["a"], "glaucoma", "folders")
        repo.set_label(s, setup["a"], "normal", "csv:labels.csv")
        repo.set_label(s, setup["a"], "glaucoma", "csv:labels.csv")  # corrected, not duplicated
        assert repo.image_labels(s, setup["a"]) == {
            "folders": "glaucoma",
            "csv:labels.csv": "glaucoma",
        }
        repo.set_label(s, setup["a"], None, "folders")
        assert repo.image_labels(s, setup["a"]) == {"csv:labels.csv": "glaucoma"}
        assert count(s, Label) == 1


def test_model_identity_is_weights_plus_card(setup: dict, db: Database, tmp_path: Path) -> None:
    with db.session() as s:
        same = repo.get_or_create_model(
            s, "r18", "timm:resnet18", dict(CARD), sha("w"), tmp_path / "moved"
        )
        assert same.id == setup["model"].id
        assert same.bundle_path == str(tmp_path / "moved")  # the bundle moved; same model
        other_card = dict(CARD, resize="letterbox")  # same weights, different predictions
        other = repo.get_or_create_model(s, "r18", "timm:resnet18", other_card, sha("w"), "m")
        assert other.id != same.id
        assert count(s, ModelRecord) == 2
    with db.session() as s:
        stored = s.get(ModelRecord, setup["model"].id)
        assert stored.card == {
            "classes": ["normal", "glaucoma"],
            "input_size": [4, 6],
            "resize": "resize",
        }


def test_cam_run_recipe_is_unique(setup: dict, db: Database) -> None:
    m = setup["model"]
    with db.session() as s:
        r1 = repo.get_or_create_cam_run(s, m, "GradCAM", ["layer4[-1]"], "predicted", {})
        assert r1.id == setup["run"].id
        p1 = repo.get_or_create_cam_run(
            s, m, "scorecam", ["a", "b"], "class:glaucoma", {"x": 1, "y": 2}
        )
        p2 = repo.get_or_create_cam_run(
            s, m, "scorecam", ["a", "b"], "class:glaucoma", {"y": 2, "x": 1}
        )
        assert p1.id == p2.id and p1.layers == ["a", "b"] and p1.params == {"x": 1, "y": 2}
        swapped = repo.get_or_create_cam_run(
            s, m, "scorecam", ["b", "a"], "class:glaucoma", {"x": 1, "y": 2}
        )
        assert swapped.id != p1.id
        assert count(s, CamRun) == 3
        for bad_policy in ("argmax", "class:", "class:  "):
            with pytest.raises(ValueError, match="target policy"):
                repo.get_or_create_cam_run(s, m, "gradcam", ["l"], bad_policy)
        with pytest.raises(ValueError, match="layer"):
            repo.get_or_create_cam_run(s, m, "gradcam", [])


def test_prediction_upsert_and_validation(setup: dict, db: Database) -> None:
    with db.session() as s:
        repo.save_prediction(
            s, setup["a"], setup["model"], np.array([0.3, 0.7], np.float32), 1, TRANSFORM
        )
        repo.save_prediction(s, setup["a"], setup["model"], [0.9, 0.1], 0, TRANSFORM)
        assert count(s, Prediction) == 1
        with pytest.raises(ValueError, match="outside the 2 classes"):
            repo.save_prediction(s, setup["a"], setup["model"], [0.9, 0.1], 2, TRANSFORM)
        with pytest.raises(ValueError, match="finite"):
            repo.save_prediction(s, setup["a"], setup["model"], [np.nan, 0.1], 0, TRANSFORM)
    with db.session() as s:
        p = repo.get_prediction(s, setup["a"].id, setup["model"].id)
        assert (p.probs, p.predicted_index, p.transform) == ([0.9, 0.1], 0, TRANSFORM)
        repo.save_prediction(
            s, setup["b"], setup["model"], np.array([0.3, 0.7], np.float32), 1, TRANSFORM
        )
    with db.session() as s:
        # float32 probabilities keep their float32 value, written by their shortest repr.
        assert repo.get_prediction(s, setup["b"], setup["model"]).probs == [0.3, 0.7]


def test_heatmap_round_trip_with_its_transform(setup: dict, db: Database) -> None:
    rng = np.random.default_rng(1)
    hm = rng.random((4, 6), dtype=np.float32)
    with db.session() as s:
        repo.save_prediction(s, setup["a"], setup["model"], [0.3, 0.7], 1, TRANSFORM)
        repo.save_heatmap(s, setup["run"], setup["a"], 1, hm)
    with db.session() as s:
        got, transform, target = repo.load_heatmap(s, setup["run"].id, setup["a"].id)
        assert got.dtype == np.float32 and got.shape == (4, 6)
        np.testing.assert_allclose(got, hm, atol=2.0**-12)
        assert transform == TRANSFORM and target == 1
        assert repo.load_heatmap(s, setup["run"], setup["b"]) is None


def test_heatmap_upsert_replaces_and_invalidates_stale_scores(setup: dict, db: Database) -> None:
    with db.session() as s:
        hm = analyse(s, setup["run"], setup["model"], setup["a"], 0.5)
        rev = repo.get_or_create_reviewer(s, "ref")
        repo.save_scores(s, hm, "optic_disc", rev, {"iou": 0.4})
    with db.session() as s:  # identical recomputation: the score stays valid
        same = analyse(s, setup["run"], setup["model"], setup["a"], 0.5)
        assert same.id == hm.id and count(s, Score) == 1
    with db.session() as s:  # different pixels: the old score no longer describes this heatmap
        changed = analyse(s, setup["run"], setup["model"], setup["a"], 0.25)
        assert changed.id == hm.id and count(s, Heatmap) == 1 and count(s, Score) == 0
        assert repo.load_heatmap(s, setup["run"], setup["a"])[0][1, 1] == 0.25


@pytest.mark.slow
def test_rerunning_an_analysis_creates_no_duplicates(setup: dict, db: Database) -> None:
    def run_once() -> None:
        with db.session() as s:
            ds = repo.get_or_create_dataset(s, setup["root"] / "data")
            model = repo.get_or_create_model(s, "r18", "timm:resnet18", CARD, sha("w"), "m")
            run = repo.get_or_create_cam_run(s, model, "gradcam", ["layer4[-1]"])
            for name in ("glaucoma/a.png", "normal/b.png"):
                img = repo.upsert_image(s, ds, name, 5, 3, sha(name[-5]))
                repo.set_label(s, img, name.split("/")[0], "folders")
                analyse(s, run, model, img)

    run_once()
    with db.session() as s:
        before = {
            cls.__name__: count(s, cls)
            for cls in (Dataset, Image, Label, ModelRecord, CamRun, Prediction, Heatmap)
        }
    run_once()
    with db.session() as s:
        after = {
            cls.__name__: count(s, cls)
            for cls in (Dataset, Image, Label, ModelRecord, CamRun, Prediction, Heatmap)
        }
    assert (
        before
        == after
        == {
            "Dataset": 1,
            "Image": 2,
            "Label": 2,
            "ModelRecord": 1,
            "CamRun": 1,
            "Prediction": 2,
            "Heatmap": 2,
        }
    )


def test_find_done_images_reuses_results_by_content_hash(setup: dict, db: Database) -> None:
    root = setup["root"]
    with db.session() as s:
        analyse(s, setup["run"], setup["model"], setup["a"], 0.5)
        other_ds = repo.get_or_create_dataset(s, root / "copy_of_data")
        a_copy = repo.upsert_image(s, other_ds, "renamed.png", 5, 3, sha("a"))  # same pixels
        new = repo.upsert_image(s, other_ds, "new.png", 5, 3, sha("new"))
        other_run = repo.get_or_create_cam_run(s, setup["model"], "hirescam", ["layer4[-1]"])
    with db.session() as s:
        done = repo.find_done_images(s, [setup["a"], setup["b"], a_copy, new], setup["run"])
        assert done == {setup["a"].id, a_copy.id}
        assert repo.find_done_images(s, [setup["a"], a_copy], other_run) == set()
        # Ids work as well as rows.
        assert repo.find_done_images(s, [setup["a"].id, new.id], setup["run"].id) == {setup["a"].id}
    with db.session() as s:
        # The copy now has its own prediction and identical heatmap.
        hm_a, tf_a, t_a = repo.load_heatmap(s, setup["run"], setup["a"])
        hm_c, tf_c, t_c = repo.load_heatmap(s, setup["run"], a_copy)
        np.testing.assert_array_equal(hm_a, hm_c)
        assert (tf_a, t_a) == (tf_c, t_c)
        assert repo.find_done_images(s, [a_copy], setup["run"]) == {a_copy.id}
        assert count(s, Heatmap) == 2 and count(s, Prediction) == 2  # no duplicates on re-ask


def test_scores_upsert_and_undefined_values(setup: dict, db: Database) -> None:
    with db.session() as s:
        hm = analyse(s, setup["run"], setup["model"], setup["a"])
        rev = repo.get_or_create_reviewer(s, "ref")
        repo.save_scores(s, hm, "optic_disc", rev, {"iou": 0.5, "pointing_game": 1.0}, {"thr": 0.5})
        repo.save_scores(s, hm, "optic_disc", rev, {"iou": 0.25, "auc": float("nan"), "ebpg": None})
    with db.session() as s:
        got = {sc.metric: (sc.value, sc.params) for sc in repo.list_scores(s, heatmap=hm)}
    assert got == {
        "auc": (None, {}),
        "ebpg": (None, {}),
        "iou": (0.25, {}),
        "pointing_game": (1.0, {"thr": 0.5}),
    }


def test_deleting_a_dataset_cascades_to_everything_derived(setup: dict, db: Database) -> None:
    with db.session() as s:
        hm = analyse(s, setup["run"], setup["model"], setup["a"])
        rev = repo.get_or_create_reviewer(s, "ref")
        repo.set_label(s, setup["a"], "glaucoma", "folders")
        repo.add_annotation(s, setup["a"], rev, "optic_disc", "mask", mask=np.ones((3, 5), bool))
        repo.save_scores(s, hm, "optic_disc", rev, {"iou": 0.5})
        repo.set_verdict(s, hm, rev, "yes")
    with db.session() as s:
        # A bulk SQL delete bypasses the ORM: the database's ON DELETE CASCADE does the work.
        s.execute(delete(Dataset).where(Dataset.id == setup["ds"].id))
    with db.session() as s:
        for cls in (Image, Label, Prediction, Heatmap, Score, Annotation):
            assert count(s, cls) == 0, cls.__name__
        assert count(s, ModelRecord) == 1 and count(s, Reviewer) == 1 and count(s, CamRun) == 1


def test_deleting_a_model_cascades_to_runs_and_results(setup: dict, db: Database) -> None:
    with db.session() as s:
        analyse(s, setup["run"], setup["model"], setup["a"])
    with db.session() as s:
        s.execute(delete(ModelRecord))
    with db.session() as s:
        assert [count(s, c) for c in (CamRun, Prediction, Heatmap, Image)] == [0, 0, 0, 2]


def test_a_reviewer_with_regions_cannot_be_deleted(setup: dict, db: Database) -> None:
    with db.session() as s:
        rev = repo.get_or_create_reviewer(s, "Dr. B")
        repo.add_annotation(s, setup["a"], rev, "optic_cup", "mask", mask=np.ones((3, 5), bool))
    with pytest.raises(StoreError, match="FOREIGN KEY"):
        with db.session() as s:
            s.execute(delete(Reviewer))
    with db.session() as s:
        assert count(s, Annotation) == 1 and count(s, Reviewer) == 1


def test_iter_results_joins_what_the_report_needs(setup: dict, db: Database) -> None:
    with db.session() as s:
        hirescam = repo.get_or_create_cam_run(s, setup["model"], "hirescam", ["layer4[-1]"])
        for img in (setup["b"], setup["a"]):
            analyse(s, setup["run"], setup["model"], img)
            analyse(s, hirescam, setup["model"], img)
        repo.set_label(s, setup["a"], "glaucoma", "folders")
        repo.set_label(s, setup["b"], "normal", "folders")
    with db.session() as s:
        rows = list(repo.iter_results(s))
        assert [(r.rel_path, r.method) for r in rows] == [
            ("glaucoma/a.png", "gradcam"),
            ("glaucoma/a.png", "hirescam"),
            ("normal/b.png", "gradcam"),
            ("normal/b.png", "hirescam"),
        ]
        r = rows[0]
        assert (r.label, r.labels, r.model_name, r.classes) == (
            "glaucoma",
            {"folders": "glaucoma"},
            "r18",
            ["normal", "glaucoma"],
        )
        assert (r.predicted_class, r.confidence, r.target_index) == ("glaucoma", 0.7, 1)
        assert (r.layers, r.target_policy, r.params, r.transform) == (
            ["layer4[-1]"],
            "predicted",
            {},
            TRANSFORM,
        )
        assert r.heatmap_id == repo.get_heatmap(s, setup["run"], setup["a"]).id
        assert len(list(repo.iter_results(s, method="HiResCAM"))) == 2
        assert len(list(repo.iter_results(s, dataset=setup["ds"], model=setup["model"]))) == 4
        other = repo.get_or_create_dataset(s, setup["root"] / "empty")
        assert list(repo.iter_results(s, dataset=other)) == []


def test_iter_results_label_choice(setup: dict, db: Database) -> None:
    with db.session() as s:
        analyse(s, setup["run"], setup["model"], setup["a"])
        repo.set_label(s, setup["a"], "normal", "folders")
    with db.session() as s:
        repo.set_label(s, setup["a"], "glaucoma", "csv:labels.csv")  # newer
    with db.session() as s:
        (row,) = repo.iter_results(s)
        assert row.label == "glaucoma"
        (row,) = repo.iter_results(s, label_source="folders")
        assert row.label == "normal"
        (row,) = repo.iter_results(s, label_source="manual")
        assert row.label is None
