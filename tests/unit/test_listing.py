"""The folder listing in a child process gives exactly the in-process scan and registration."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fundus_review.app.identify import file_stamp
from fundus_review.app.importing import register_dataset
from fundus_review.data.dataset import DatasetScan, scan_dataset
from fundus_review.data.listing import (
    FileStat,
    Listing,
    decode_listing,
    encode_listing,
    list_images,
    list_images_in_child,
)
from fundus_review.errors import DatasetError
from fundus_review.store import repo_import
from fundus_review.store.db import open_database
from fundus_review.views.queries import find_dataset_id


def _img(path: Path, value: int = 100) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((4, 5, 3), value, np.uint8)).save(path)


@pytest.fixture
def messy(tmp_path: Path) -> Path:
    """Two class folders and every kind of file the listing skips or reports."""
    root = tmp_path / "ds"
    for i, rel in enumerate(
        ["glaucoma/g1.png", "glaucoma/g2.jpg", "normal/n1.PNG", "normal/n-2.tif"]
    ):
        _img(root / rel, 10 * i)
    _img(root / "normal" / "deeper" / "n3.jpeg")
    _img(root / ".hidden" / "h.png")
    _img(root / "normal" / ".dot.png")
    _img(root / "masks" / "optic_disc" / "g1.png")  # the root's masks/: not photographs
    (root / "normal" / "empty.jpg").write_bytes(b"")
    (root / "glaucoma" / "scan.heic").write_bytes(b"x")
    (root / "glaucoma" / "notes.txt").write_text("x")
    return root


def _same_scan(a: DatasetScan, b: DatasetScan) -> None:
    assert [(r.path, r.rel_path, r.label) for r in a.records] == [
        (r.path, r.rel_path, r.label) for r in b.records
    ]
    assert [r.stat for r in a.records] == [r.stat for r in b.records]
    assert (a.root, a.classes, a.label_source, a.problems, a.labels_csv, a.label_columns) == (
        b.root,
        b.classes,
        b.label_source,
        b.problems,
        b.labels_csv,
        b.label_columns,
    )


def test_folder_labels_and_problems_are_the_same_listed_in_a_child(messy: Path) -> None:
    here = scan_dataset(messy)
    child = scan_dataset(messy, lister=list_images_in_child)
    _same_scan(here, child)
    # ... and they are what the rules say (so equality is not two empty scans).
    assert [r.rel_path for r in child.records] == [
        "glaucoma/g1.png",
        "glaucoma/g2.jpg",
        "normal/deeper/n3.jpeg",
        "normal/n-2.tif",
        "normal/n1.PNG",
    ]
    assert child.label_source == "folders" and child.classes == ["glaucoma", "normal"]
    reasons = dict(child.problems)
    assert reasons[str(messy / "normal" / "empty.jpg")] == "empty file (0 bytes)"
    assert "unsupported image format .heic" in reasons[str(messy / "glaucoma" / "scan.heic")]
    assert len(child.problems) == 2


def test_csv_labels_and_their_problems_are_the_same_listed_in_a_child(messy: Path) -> None:
    (messy / "labels.csv").write_text("image,label\ng1.png,2\ng2,2.0\nn1.png,0\nmissing.png,1\n")
    here = scan_dataset(messy)
    child = scan_dataset(messy, lister=list_images_in_child)
    _same_scan(here, child)
    assert child.label_source == "csv" and child.classes == ["0", "2"]
    reasons = [reason for _, reason in child.problems]
    assert "row 5: 'missing.png' matches no image" in reasons
    assert sum("no row in labels.csv" in r for r in reasons) == 2  # n3.jpeg, n-2.tif


def test_a_stamp_from_the_listing_equals_one_from_a_fresh_stat(messy: Path) -> None:
    scan = scan_dataset(messy, lister=list_images_in_child)
    assert all(file_stamp(r.stat) == file_stamp(os.stat(r.path)) for r in scan.records)


def test_registration_is_the_same_listed_in_a_child(tmp_path: Path, messy: Path) -> None:
    here_db = open_database(tmp_path / "here.db")
    child_db = open_database(tmp_path / "child.db")
    here = register_dataset(here_db, messy, identify=False)
    child = register_dataset(child_db, messy, identify=False, lister=list_images_in_child)
    assert here.image_ids == child.image_ids and len(child.image_ids) == 5
    assert here.problems == child.problems and sorted(here.unread) == sorted(child.unread)
    with here_db.session() as a, child_db.session() as b:
        assert repo_import.image_states(a, here.dataset_id) == repo_import.image_states(
            b, child.dataset_id
        )
        assert repo_import.source_labels(a, here.dataset_id, "folders") == (
            repo_import.source_labels(b, child.dataset_id, "folders")
        )
    # A second listing of the unchanged folder, from the child, changes nothing.
    again = register_dataset(here_db, messy, identify=False, lister=list_images_in_child)
    assert not again.changed and again.image_ids == here.image_ids


@pytest.mark.skipif(sys.platform != "linux", reason="a file name that is not UTF-8: Linux only")
def test_a_file_name_that_is_not_utf8_survives_the_child(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    _img(root / "a.png")
    odd = os.fsdecode(b"caf\xe9.png")  # Latin-1 bytes: a surrogate escape in Python
    Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(os.path.join(root, odd), format="PNG")
    child = list_images_in_child(root)
    assert child == list_images(root) and odd in child.rel_paths


def test_the_blob_round_trips_and_a_damaged_one_is_refused() -> None:
    listing = Listing(
        ["a/b.png", "c.jpg"],
        [FileStat(10, 2**62, 5, 7), FileStat(1, 0, -1, 2**40)],
        [("/x/e.jpg", "empty file (0 bytes)")],
    )
    blob = encode_listing(listing)
    assert decode_listing(blob) == listing
    assert decode_listing(encode_listing(Listing([], [], []))) == Listing([], [], [])
    with pytest.raises(ValueError, match="truncated"):
        decode_listing(blob[:-3])
    with pytest.raises(ValueError, match="not a folder listing"):
        decode_listing(b"Traceback (most recent call last):")


def test_a_failing_child_raises_a_dataset_error_and_records_nothing(
    tmp_path: Path, messy: Path, monkeypatch
) -> None:
    broken = tmp_path / "broken-python"
    broken.write_text("#!/bin/sh\necho 'MemoryError: the child ran out' >&2\nexit 3\n")
    broken.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(broken))
    db = open_database(tmp_path / "app.db")
    with pytest.raises(DatasetError, match="exit 3: MemoryError: the child ran out") as info:
        register_dataset(db, messy, identify=False, lister=list_images_in_child)
    assert str(messy) in str(info.value)
    assert find_dataset_id(db, messy) is None  # nothing was recorded

    garbage = tmp_path / "garbage-python"
    garbage.write_text("#!/bin/sh\necho hello\n")
    garbage.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(garbage))
    with pytest.raises(DatasetError, match="listing the folder failed"):
        list_images_in_child(messy)
