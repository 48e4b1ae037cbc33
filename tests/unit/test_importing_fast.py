"""register_dataset runs on every open and every analysis: listing is cheap, unchanged files are
not read again, and the reading pass (identify_images) can run later, be cancelled and resume."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import select

import fundus_review.app.identify as identify
from fundus_review.app.identify import identify_images
from fundus_review.app.importing import has_imported_masks, import_masks, register_dataset
from fundus_review.store import repo
from fundus_review.store.db import open_database
from fundus_review.store.schema import Image, Label, Prediction


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv("FUNDUS_REVIEW_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "ds"
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for i in range(3):
            arr = np.full((8, 10, 3), 40 * i + (label == "b") * 7, np.uint8)
            PILImage.fromarray(arr).save(root / label / f"{label}{i}.png")
    return root


@pytest.fixture
def hashed(monkeypatch):
    calls: list[str] = []
    real = identify.file_sha256

    def counting(path):
        calls.append(os.path.basename(path))
        return real(path)

    monkeypatch.setattr(identify, "file_sha256", counting)
    return calls


def _stored(db, dataset_id):
    with db.session(read_only=True) as s:
        images = {
            i.rel_path: (i.id, i.width, i.height, i.sha256)
            for i in s.scalars(select(Image).where(Image.dataset_id == dataset_id))
        }
        labels = dict(
            s.execute(
                select(Image.rel_path, Label.value)
                .join(Label)
                .where(Image.dataset_id == dataset_id)
            ).all()
        )
    return images, labels


def test_first_registration_stores_sizes_hashes_and_labels(tmp_path, folder, hashed):
    db = open_database(tmp_path / "x.db")
    reg = register_dataset(db, folder)
    images, labels = _stored(db, reg.dataset_id)
    assert sorted(images) == [f"{c}/{c}{i}.png" for c in "ab" for i in range(3)]
    sha = hashlib.sha256((folder / "b/b1.png").read_bytes()).hexdigest()
    assert images["b/b1.png"][1:] == (10, 8, sha)
    assert labels == {rel: rel[0] for rel in images}
    assert reg.image_ids == {rel: v[0] for rel, v in images.items()}
    assert len(hashed) == 6
    db.close()


def test_unchanged_files_are_not_hashed_again_but_changed_ones_are(tmp_path, folder, hashed):
    db = open_database(tmp_path / "x.db")
    first = register_dataset(db, folder)
    hashed.clear()
    again = register_dataset(db, folder)
    assert hashed == []
    assert again.image_ids == first.image_ids

    PILImage.fromarray(np.zeros((12, 16, 3), np.uint8)).save(folder / "a" / "a0.png")
    third = register_dataset(db, folder)
    assert hashed == ["a0.png"]
    images, _ = _stored(db, third.dataset_id)
    new_sha = hashlib.sha256((folder / "a/a0.png").read_bytes()).hexdigest()
    assert images["a/a0.png"][1:] == (16, 12, new_sha)
    assert third.image_ids == first.image_ids  # same rows, refreshed in place
    db.close()


def test_listing_reads_no_file_and_the_reading_pass_fills_sizes_in(tmp_path, folder, hashed):
    db = open_database(tmp_path / "x.db")
    listed = register_dataset(db, folder, identify=False)
    assert hashed == []
    images, labels = _stored(db, listed.dataset_id)
    assert len(images) == 6 and all(v[1:] == (None, None, None) for v in images.values())
    assert labels == {rel: rel[0] for rel in images}  # labels need no file reading
    assert sorted(listed.unread) == sorted(listed.image_ids.values())

    assert identify_images(db, listed.unread) == []
    assert len(hashed) == 6
    images, _ = _stored(db, listed.dataset_id)
    assert images["a/a1.png"][1:3] == (10, 8)
    hashed.clear()
    again = register_dataset(db, folder, identify=False)
    assert again.unread == [] and hashed == []
    db.close()


def test_a_cancelled_reading_pass_keeps_what_it_read_and_the_next_one_resumes(
    tmp_path, folder, hashed, monkeypatch
):
    monkeypatch.setattr(identify, "CHUNK", 2)
    db = open_database(tmp_path / "x.db")
    listed = register_dataset(db, folder, identify=False)
    seen: list[tuple[int, int]] = []
    identify_images(db, listed.unread, progress=lambda d, t: seen.append((d, t)),
                    cancel=lambda: len(seen) >= 1)  # fmt: skip
    assert seen == [(2, 6)] and len(hashed) == 2
    images, _ = _stored(db, listed.dataset_id)
    assert sum(v[3] is not None for v in images.values()) == 2

    hashed.clear()
    resumed = register_dataset(db, folder)
    assert len(hashed) == 4 and resumed.unread == []
    images, _ = _stored(db, resumed.dataset_id)
    assert all(v[3] is not None for v in images.values())
    db.close()


def test_an_unreadable_new_file_is_reported_and_leaves_no_row(tmp_path, folder):
    (folder / "a" / "broken.png").write_bytes(b"not a png at all")
    db = open_database(tmp_path / "x.db")
    listed = register_dataset(db, folder, identify=False)
    assert "a/broken.png" in listed.image_ids  # listed: a name is all the listing knows
    problems = identify_images(db, listed.unread)
    assert [p for p, _ in problems] == [str(folder / "a" / "broken.png")]
    images, labels = _stored(db, listed.dataset_id)
    assert "a/broken.png" not in images and "a/broken.png" not in labels

    reg = register_dataset(db, folder)  # the CLI's path: reported, not registered
    assert "a/broken.png" not in reg.image_ids
    assert any("broken.png" in p for p, _ in reg.problems)
    db.close()


def test_a_file_that_breaks_later_keeps_its_row_and_results(tmp_path, folder):
    db = open_database(tmp_path / "x.db")
    reg = register_dataset(db, folder)
    image_id = reg.image_ids["b/b0.png"]
    with db.session() as s:
        model = repo.get_or_create_model(s, "m", "resnet18", {"classes": ["a", "b"]}, "0" * 64, "m")
        repo.save_prediction(s, image_id, model, [0.3, 0.7], 1, {})
    (folder / "b" / "b0.png").write_bytes(b"truncated")
    again = register_dataset(db, folder)
    assert "b/b0.png" not in again.image_ids
    assert any("b0.png" in p for p, _ in again.problems)
    with db.session(read_only=True) as s:
        assert s.get(Image, image_id).width == 10
        assert s.scalar(select(Prediction.image_id)) == image_id
    db.close()


def test_a_changed_file_loses_its_results_but_an_untouched_rewrite_does_not(tmp_path, folder):
    db = open_database(tmp_path / "x.db")
    reg = register_dataset(db, folder)
    ids = reg.image_ids
    with db.session() as s:
        model = repo.get_or_create_model(s, "m", "resnet18", {"classes": ["a", "b"]}, "0" * 64, "m")
        for rel in ("a/a1.png", "a/a2.png"):
            repo.save_prediction(s, ids[rel], model, [0.5, 0.5], 0, {})
    same = (folder / "a" / "a1.png").read_bytes()
    (folder / "a" / "a1.png").write_bytes(same)  # new mtime, same bytes
    PILImage.fromarray(np.zeros((8, 10, 3), np.uint8)).save(folder / "a" / "a2.png")
    register_dataset(db, folder)
    with db.session(read_only=True) as s:
        assert set(s.scalars(select(Prediction.image_id))) == {ids["a/a1.png"]}
    db.close()


def test_masks_of_a_listed_folder_are_imported_after_reading_their_images(tmp_path, folder):
    mask = np.zeros((8, 10), np.uint8)
    mask[2:5, 3:6] = 255
    (folder / "masks" / "optic_disc").mkdir(parents=True)
    PILImage.fromarray(mask).save(folder / "masks" / "optic_disc" / "a1.png")
    db = open_database(tmp_path / "x.db")
    listed = register_dataset(db, folder, identify=False)
    summary = import_masks(db, listed, folder / "masks")
    assert summary.imported == 1 and summary.problems == []
    with db.session(read_only=True) as s:
        img = s.get(Image, listed.image_ids["a/a1.png"])
        assert (
            repo.structure_mask(
                s, img, "optic_disc", repo.get_or_create_reviewer(s, "reference")
            ).sum()
            == 9
        )
    db.close()


def test_a_database_from_before_file_stamps_is_hashed_once_then_not_again(tmp_path, folder, hashed):
    db = open_database(tmp_path / "x.db")
    register_dataset(db, folder)
    with db.session() as s:  # what the 0002 migration leaves: sizes and hashes, no stamps
        for img in s.scalars(select(Image)):
            img.file_stamp = None
    hashed.clear()
    register_dataset(db, folder)
    assert len(hashed) == 6
    hashed.clear()
    register_dataset(db, folder)
    assert hashed == []
    db.close()


def test_moving_an_image_to_another_class_folder_relabels_it(tmp_path, folder):
    db = open_database(tmp_path / "x.db")
    register_dataset(db, folder)
    (folder / "b" / "a2.png").write_bytes((folder / "a" / "a2.png").read_bytes())
    (folder / "a" / "a2.png").unlink()
    reg = register_dataset(db, folder)
    _, labels = _stored(db, reg.dataset_id)
    assert labels["b/a2.png"] == "b"
    assert "b/a2.png" in reg.image_ids and "a/a2.png" not in reg.image_ids
    db.close()


def test_reading_can_be_restricted_to_the_images_a_job_needs(tmp_path, folder, hashed):
    db = open_database(tmp_path / "x.db")
    listed = register_dataset(db, folder, identify=False)
    one = listed.image_ids["b/b2.png"]
    reg = register_dataset(db, folder, only=[one])
    assert hashed == ["b2.png"]
    assert reg.image_ids == {"b/b2.png": one}  # the others are listed but not read yet
    assert sorted(reg.unread) == sorted(set(listed.image_ids.values()) - {one})
    db.close()


def test_has_imported_masks_counts_imports_not_drawings(tmp_path, folder):
    mask = np.zeros((8, 10), np.uint8)
    mask[1:3, 1:3] = 255
    db = open_database(tmp_path / "x.db")
    reg = register_dataset(db, folder)
    with db.session() as s:
        who = repo.get_or_create_reviewer(s, "ann")
        repo.add_annotation(s, reg.image_ids["a/a0.png"], who, "optic_disc", "mask",
                            mask=mask > 0)  # fmt: skip
    assert not has_imported_masks(db, reg.dataset_id)
    (folder / "masks" / "optic_disc").mkdir(parents=True)
    PILImage.fromarray(mask).save(folder / "masks" / "optic_disc" / "a0.png")
    import_masks(db, reg, folder / "masks")
    assert has_imported_masks(db, reg.dataset_id)
    db.close()
