"""register_dataset runs on every open and every analysis: unchanged files are not read again."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import select

import fundus_review.importing as importing
from fundus_review.importing import register_dataset
from fundus_review.store.db import open_database
from fundus_review.store.schema import Image, Label


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
    real = importing.file_sha256

    def counting(path):
        calls.append(os.path.basename(path))
        return real(path)

    monkeypatch.setattr(importing, "file_sha256", counting)
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


def test_a_lost_cache_only_costs_time(tmp_path, folder, hashed):
    db = open_database(tmp_path / "x.db")
    first = register_dataset(db, folder)
    for f in (tmp_path / "cache" / "file_ids").iterdir():
        f.write_text("{not json")
    hashed.clear()
    again = register_dataset(db, folder)
    assert len(hashed) == 6
    assert again.image_ids == first.image_ids
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
