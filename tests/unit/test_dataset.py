"""scan_dataset: discovery rules, the four label sources, CSV matching and its reported problems."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fundus_review.data.dataset import DatasetScan, scan_dataset
from fundus_review.errors import DatasetError


def _img(path: Path, value: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((4, 5, 3), value, np.uint8)).save(path)
    return path


def _labels(scan: DatasetScan) -> dict[str, str | None]:
    return {r.rel_path: r.label for r in scan.records}


def _reasons(scan: DatasetScan) -> list[str]:
    return [reason for _, reason in scan.problems]


# --- the real datasets -----------------------------------------------------------------------


def test_drishti_labels_come_from_its_labels_csv(shared_data: Path) -> None:
    root = shared_data / "drishti_gs1_train"
    scan = scan_dataset(root)
    assert scan.label_source == "csv"
    assert scan.labels_csv == root / "labels.csv"
    assert scan.label_columns == ("image", "diagnosis")
    assert len(scan.records) == 50  # masks/ is skipped: 100 mask PNGs are not photographs
    assert all(r.rel_path.startswith("images/drishtiGS_") for r in scan.records)
    assert scan.classes == ["glaucoma", "normal"]
    assert Counter(r.label for r in scan.records) == {"glaucoma": 32, "normal": 18}
    assert _labels(scan)["images/drishtiGS_002.jpg"] == "glaucoma"
    assert _labels(scan)["images/drishtiGS_008.jpg"] == "normal"
    assert scan.problems == []


def test_idrid_has_no_labels_and_a_single_images_folder_is_not_a_class(shared_data: Path) -> None:
    scan = scan_dataset(shared_data / "idrid_seg")
    assert scan.label_source == "none"
    assert scan.classes == []
    assert [r.rel_path for r in scan.records] == [f"images/IDRiD_{i:02d}.jpg" for i in range(1, 13)]
    assert all(r.label is None and r.path.is_file() for r in scan.records)


# --- discovery -------------------------------------------------------------------------------


def test_recursive_sorted_and_skips_hidden_masks_and_non_images(tmp_path: Path) -> None:
    for rel in ["b.jpg", "a.PNG", "sub/z.tif", "sub/deeper/c.JPEG", "x.bmp", "y.tiff"]:
        _img(tmp_path / rel)
    _img(tmp_path / ".hidden" / "h.png")
    _img(tmp_path / "sub" / ".cache" / "h.png")
    _img(tmp_path / ".dot.jpg")
    _img(tmp_path / "masks" / "optic_disc" / "a.png")  # expert masks at the root: skipped
    _img(tmp_path / "sub" / "masks" / "m.png")  # deeper "masks" folder is an ordinary folder
    _img(tmp_path / "__MACOSX" / "a.png")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "scan.heic").write_bytes(b"x")
    (tmp_path / "empty.jpg").write_bytes(b"")
    scan = scan_dataset(tmp_path)
    assert [r.rel_path for r in scan.records] == [
        "a.PNG",
        "b.jpg",
        "sub/deeper/c.JPEG",
        "sub/masks/m.png",  # only the root's masks/ is skipped
        "sub/z.tif",
        "x.bmp",
        "y.tiff",
    ]
    assert all(r.path == tmp_path / r.rel_path for r in scan.records)
    problems = dict(scan.problems)
    assert problems[str(tmp_path / "empty.jpg")] == "empty file (0 bytes)"
    assert "unsupported image format .heic" in problems[str(tmp_path / "scan.heic")]
    assert str(tmp_path / "notes.txt") not in problems
    assert scan.label_source == "none"


def test_scan_is_deterministic_and_ordered_by_path_parts(tmp_path: Path) -> None:
    for rel in ["a-b.png", "a/b.png", "a/a.png", "B.png"]:
        _img(tmp_path / rel)
    first = [r.rel_path for r in scan_dataset(tmp_path).records]
    # Folder "a" sorts as "a" (before "a-b.png"); a plain string sort would put "-" before "/".
    assert first == ["B.png", "a/a.png", "a/b.png", "a-b.png"]
    assert first == [r.rel_path for r in scan_dataset(tmp_path).records]


def test_missing_root_file_root_and_root_without_images(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="folder not found"):
        scan_dataset(tmp_path / "nope")
    (tmp_path / "file.jpg").write_bytes(b"x")
    with pytest.raises(DatasetError, match="not a folder"):
        scan_dataset(tmp_path / "file.jpg")
    empty = tmp_path / "empty"
    _img(empty / "masks" / "optic_disc" / "a.png")
    (empty / "readme.txt").write_text("x")
    with pytest.raises(DatasetError, match="no images found") as info:
        scan_dataset(empty)
    assert str(empty) in str(info.value)


# --- label sources ---------------------------------------------------------------------------


def test_image_folder_layout_gives_folder_labels(tmp_path: Path) -> None:
    for rel in ["normal/a.jpg", "normal/b.jpg", "glaucoma/c.jpg", "glaucoma/deep/d.jpg"]:
        _img(tmp_path / rel)
    scan = scan_dataset(tmp_path)
    assert scan.label_source == "folders"
    assert scan.classes == ["glaucoma", "normal"]
    assert _labels(scan) == {
        "glaucoma/c.jpg": "glaucoma",
        "glaucoma/deep/d.jpg": "glaucoma",
        "normal/a.jpg": "normal",
        "normal/b.jpg": "normal",
    }


def test_numeric_folder_classes_sort_numerically(tmp_path: Path) -> None:
    for grade in ["10", "2", "0", "1"]:
        _img(tmp_path / grade / "x.png")
    scan = scan_dataset(tmp_path)
    assert scan.classes == ["0", "1", "2", "10"]


def test_image_at_root_disables_folder_labels(tmp_path: Path) -> None:
    _img(tmp_path / "normal" / "a.jpg")
    _img(tmp_path / "glaucoma" / "b.jpg")
    _img(tmp_path / "loose.jpg")
    assert scan_dataset(tmp_path).label_source == "none"


def test_aptos_csv_ids_without_extension(tmp_path: Path) -> None:
    for stem in ["000c1434d8d7", "001639a390f0", "0024cdab0c1e"]:
        _img(tmp_path / "train_images" / f"{stem}.png")
    csv = tmp_path / "train.csv"
    csv.write_text("id_code,diagnosis\n000c1434d8d7,2\n001639a390f0,4\n0024cdab0c1e,1\n")
    scan = scan_dataset(tmp_path / "train_images", labels_csv=csv)
    assert scan.label_source == "csv"
    assert scan.label_columns == ("id_code", "diagnosis")
    assert _labels(scan) == {
        "000c1434d8d7.png": "2",
        "001639a390f0.png": "4",
        "0024cdab0c1e.png": "1",
    }
    assert scan.classes == ["1", "2", "4"]
    assert scan.problems == []


def test_eyepacs_image_level_and_float_grades(tmp_path: Path) -> None:
    for stem in ["10_left", "10_right", "13_left"]:
        _img(tmp_path / f"{stem}.jpeg")
    (tmp_path / "trainLabels.csv").write_text("image,level\n10_left,0.0\n10_right,2.0\n13_left,0\n")
    scan = scan_dataset(tmp_path, labels_csv="trainLabels.csv")  # relative to the root
    assert _labels(scan) == {"10_left.jpeg": "0", "10_right.jpeg": "2", "13_left.jpeg": "0"}
    assert scan.classes == ["0", "2"]


def test_filename_label_columns_semicolon_bom_and_subfolders(tmp_path: Path) -> None:
    _img(tmp_path / "site1" / "p1.jpg")
    _img(tmp_path / "site2" / "p1.jpg")  # same name in two folders: the CSV path decides
    _img(tmp_path / "site2" / "p2.jpg")
    (tmp_path / "labels.csv").write_bytes(
        "\ufefffilename;label;comment\nsite1\\p1.jpg;referable;ok\n./site2/p1.jpg;"
        "non-referable;x\nsite2/p2.jpg;referable;\n".encode()
    )
    scan = scan_dataset(tmp_path)
    assert scan.label_source == "csv"
    assert _labels(scan) == {
        "site1/p1.jpg": "referable",
        "site2/p1.jpg": "non-referable",
        "site2/p2.jpg": "referable",
    }
    assert scan.problems == []


def test_explicit_columns_override_detection(tmp_path: Path) -> None:
    _img(tmp_path / "a.png")
    _img(tmp_path / "b.png")
    (tmp_path / "meta.csv").write_text("label,Picture,Eye Grade\nx,a.png,R1\ny,b.png,R0\n")
    scan = scan_dataset(
        tmp_path,
        labels_csv=tmp_path / "meta.csv",
        filename_column="Picture",
        label_column="eye grade",
    )
    assert _labels(scan) == {"a.png": "R1", "b.png": "R0"}
    assert scan.label_columns == ("Picture", "Eye Grade")


def test_idrid_grading_header_is_detected(tmp_path: Path) -> None:
    _img(tmp_path / "IDRiD_001.jpg")
    _img(tmp_path / "IDRiD_002.jpg")
    (tmp_path / "grades.csv").write_text(
        "Image name,Retinopathy grade,Risk of macular edema \nIDRiD_001,3,2\nIDRiD_002,0,0\n"
    )
    scan = scan_dataset(tmp_path, labels_csv=tmp_path / "grades.csv")
    assert scan.label_columns == ("Image name", "Retinopathy grade")
    assert _labels(scan) == {"IDRiD_001.jpg": "3", "IDRiD_002.jpg": "0"}


def test_unusual_filename_header_found_by_matching_values(tmp_path: Path) -> None:
    for name in ["r1.png", "r2.png"]:
        _img(tmp_path / name)
    (tmp_path / "labels.csv").write_text("patient,photo,label\n7,r1.png,a\n8,r2.png,b\n")
    scan = scan_dataset(tmp_path)
    assert scan.label_columns == ("photo", "label")
    assert _labels(scan) == {"r1.png": "a", "r2.png": "b"}


def test_unmatched_rows_unlabeled_images_and_ambiguous_stems_are_reported(tmp_path: Path) -> None:
    _img(tmp_path / "a.png")
    _img(tmp_path / "b.jpg")
    _img(tmp_path / "b.png")  # "b" in the CSV could mean either file
    _img(tmp_path / "c.png")
    _img(tmp_path / "d.png")
    csv = tmp_path / "labels.csv"
    csv.write_text(
        "image,diagnosis\na,1\nb,0\nghost.jpg,1\nd.png,\nA.PNG,1\n,2\n"
    )  # A.PNG repeats a.png's label (case-insensitive match): harmless
    scan = scan_dataset(tmp_path)
    assert _labels(scan) == {
        "a.png": "1",
        "b.jpg": None,
        "b.png": None,
        "c.png": None,
        "d.png": None,
    }
    assert scan.classes == ["1"]
    problems = scan.problems
    assert (str(csv), "row 4: 'ghost.jpg' matches no image") in problems
    assert (str(csv), "row 7: empty filename") in problems
    ambiguous = [r for p, r in problems if "row 3: 'b' is ambiguous" in r]
    assert len(ambiguous) == 1 and "b.jpg" in ambiguous[0] and "b.png" in ambiguous[0]
    assert (str(tmp_path / "c.png"), "no row in labels.csv; left unlabeled") in problems
    assert (str(tmp_path / "d.png"), "empty label in labels.csv row 5") in problems
    # d.png has a row (with an empty label): it is not also reported as having none.
    assert sum(p == str(tmp_path / "d.png") for p, _ in problems) == 1
    # The duplicate stem b is reported once for the row; its images are listed as unlabeled.
    assert (str(tmp_path / "b.jpg"), "no row in labels.csv; left unlabeled") in problems


def test_conflicting_duplicate_rows_leave_the_image_unlabeled(tmp_path: Path) -> None:
    _img(tmp_path / "a.png")
    _img(tmp_path / "b.png")
    (tmp_path / "labels.csv").write_text(
        "image,label\na.png,glaucoma\na.png,normal\nb.png,normal\n"
    )
    scan = scan_dataset(tmp_path)
    assert _labels(scan) == {"a.png": None, "b.png": "normal"}
    assert any("conflicting labels" in r and "glaucoma" in r for r in _reasons(scan))


def test_csv_beats_folder_layout(tmp_path: Path) -> None:
    _img(tmp_path / "left" / "a.png")
    _img(tmp_path / "right" / "b.png")
    (tmp_path / "labels.csv").write_text("image,label\na.png,x\nb.png,y\n")
    scan = scan_dataset(tmp_path)
    assert scan.label_source == "csv"
    assert _labels(scan) == {"left/a.png": "x", "right/b.png": "y"}


def test_bad_csvs_raise_dataset_error_naming_file_and_columns(tmp_path: Path) -> None:
    _img(tmp_path / "a.png")
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("patient,age,sex\n1,50,f\n")
    with pytest.raises(DatasetError) as info:
        scan_dataset(tmp_path, labels_csv=wrong)
    msg = str(info.value)
    assert str(wrong) in msg and "'patient', 'age', 'sex'" in msg

    named = tmp_path / "named.csv"
    named.write_text("image,diagnosis\na.png,1\n")
    with pytest.raises(DatasetError, match="label column 'grade'.*'image', 'diagnosis'"):
        scan_dataset(tmp_path, labels_csv=named, label_column="grade")
    with pytest.raises(DatasetError, match="filename column 'file'"):
        scan_dataset(tmp_path, labels_csv=named, filename_column="file")

    binary = tmp_path / "photo.csv"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    with pytest.raises(DatasetError, match="not a CSV"):
        scan_dataset(tmp_path, labels_csv=binary)

    one_col = tmp_path / "one.csv"
    one_col.write_text("just some text\nmore text\n")
    with pytest.raises(DatasetError, match="not a labels CSV"):
        scan_dataset(tmp_path, labels_csv=one_col)

    header_only = tmp_path / "header.csv"
    header_only.write_text("image,label\n")
    with pytest.raises(DatasetError, match="no rows"):
        scan_dataset(tmp_path, labels_csv=header_only)

    with pytest.raises(DatasetError, match="labels CSV not found"):
        scan_dataset(tmp_path, labels_csv=tmp_path / "absent.csv")


def test_summary_line(tmp_path: Path) -> None:
    _img(tmp_path / "n" / "a.png")
    _img(tmp_path / "g" / "b.png")
    (tmp_path / "g" / "c.png").write_bytes(b"")
    text = scan_dataset(tmp_path).summary()
    assert "2 images" in text and "2 labelled from folders (2 classes)" in text
    assert "1 problems" in text


def test_sorting_in_slices_equals_one_stable_sort() -> None:
    from fundus_review.data.listing import _sorted_in_slices

    rng = np.random.default_rng(0)
    # Many ties (30 distinct keys over 10,000 items) so that stability shows.
    items = [(f"d{int(k)}/x", i) for i, k in enumerate(rng.integers(0, 30, 10_000))]
    key = lambda t: t[0].split("/")  # noqa: E731
    assert _sorted_in_slices(items, key, size=97) == sorted(items, key=key)
    assert _sorted_in_slices(items[:50], key, size=97) == sorted(items[:50], key=key)
