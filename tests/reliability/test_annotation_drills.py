"""Drills on expert annotations and exports: bad masks and labelme files are reported one by
one while the rest imports; an export that cannot write leaves the previous file as it was."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fundus_review.app.importing import register_dataset
from fundus_review.cli.main import main
from fundus_review.exchange.labelme import import_labelme
from fundus_review.review.editor import load_regions
from fundus_review.store.db import open_database
from tests.reliability import hostile_files as hf

H, W = 48, 64


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FUNDUS_REVIEW_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "data"
    root.mkdir()
    for i in range(3):
        hf.save(root / f"im{i}.png", hf.rgb(H, W, seed=i))
    return root


def _mask(h: int = H, w: int = W) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[10:30, 20:40] = 255
    return m


def _polygon(label: str = "optic_disc") -> dict:
    return {"label": label, "shape_type": "polygon", "points": [[5, 5], [30, 5], [20, 25]]}


def _labelme(shapes: list, image: str, h: int = H, w: int = W) -> str:
    doc = {"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": image,
           "imageData": None, "imageHeight": h, "imageWidth": w}  # fmt: skip
    return json.dumps(doc)


def test_masks_of_the_wrong_size_or_not_binary_are_named_and_skipped(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    masks = tmp_path / "masks"
    (masks / "optic_disc").mkdir(parents=True)
    (masks / "optic_cup").mkdir()
    hf.save(masks / "optic_disc" / "im0.png", _mask())
    hf.save(masks / "optic_disc" / "im1.png", _mask(40, 40))
    soft = np.tile(np.linspace(0, 255, W).astype(np.uint8), (H, 1))  # a probability map
    hf.save(masks / "optic_disc" / "im2.png", soft)
    levels = _mask() // 2  # cup and disc coded 0/127/255 in one file
    levels[15:25, 25:35] = 255
    hf.save(masks / "optic_cup" / "im0.png", levels)

    db_path = tmp_path / "m.db"
    code = main(["import-masks", str(data), str(masks), "--db", str(db_path)])
    out, err = capsys.readouterr()
    assert code == 0 and "Imported 1 masks" in out
    lines = {line.split(": ", 1)[0].removeprefix("  skipped "): line for line in err.splitlines()}
    assert all(line.count(str(masks)) == 1 for line in lines.values())  # named once per line
    assert (
        "is 40x40 (width x height) but its image is 64x48"
        in lines[str(masks / "optic_disc" / "im1.png")]
    )
    assert "not binary (64 gray levels" in lines[str(masks / "optic_disc" / "im2.png")]
    assert "not binary (3 gray levels" in lines[str(masks / "optic_cup" / "im0.png")]


def test_malformed_labelme_files_are_named_and_the_good_one_imports(
    data: Path, tmp_path: Path
) -> None:
    src = tmp_path / "labelme"
    src.mkdir()
    (src / "truncated.json").write_text('{"shapes": [', encoding="utf-8")
    (src / "binary.json").write_bytes(b"\xff\xfe\x00garbage")
    (src / "im1.json").write_text("[1, 2, 3]", encoding="utf-8")
    bad_shapes = ["not a shape", {"label": "optic_disc", "points": "abc"},
                  {"label": "optic_disc", "shape_type": "weird", "points": [[1, 2]]}]  # fmt: skip
    (src / "im0.json").write_text(_labelme([*bad_shapes, _polygon()], "im0.png"), "utf-8")
    with open_database(tmp_path / "l.db") as db:
        registered = register_dataset(db, data)
        summary = import_labelme(db, registered, [src])
        problems = dict(summary.problems)
        assert "not a readable JSON file" in problems[str(src / "truncated.json")]
        assert "not a readable JSON file" in problems[str(src / "binary.json")]
        assert "not a labelme file" in problems[str(src / "im1.json")]
        assert "not a JSON object" in problems[f"{src / 'im0.json'} (shape 1)"]
        assert "not [x, y] pairs" in problems[f"{src / 'im0.json'} (shape 2)"]
        assert "'weird'" in problems[f"{src / 'im0.json'} (shape 3)"]
        assert summary.added == 1
        assert [r.structure for r in load_regions(db, registered.image_ids["im0.png"])] == [
            "optic_disc"
        ]


def test_an_image_path_outside_the_dataset_is_never_followed(data: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    hf.save(outside / "im2.png", hf.rgb(10, 10))  # another picture by that name, another size
    src = data / "annotations"
    src.mkdir()
    # The drawing's own name says which image it is; its imagePath points out of the dataset.
    (src / "im2.json").write_text(_labelme([_polygon()], "../../elsewhere/im2.png"), "utf-8")
    (src / "im1.json").write_text(_labelme([_polygon()], "../../../../etc/passwd"), "utf-8")
    (src / "orphan.json").write_text(_labelme([_polygon()], "../elsewhere/zz.png"), "utf-8")
    with open_database(tmp_path / "p.db") as db:
        registered = register_dataset(db, data)
        summary = import_labelme(db, registered, [src])
        assert summary.problems == [] and summary.added == 2
        assert summary.unmatched == [str((src / "orphan.json").resolve())]
        for name in ("im1.png", "im2.png"):  # on the dataset's image, checked against its size
            assert len(load_regions(db, registered.image_ids[name])) == 1


def _exported_then_changed(data: Path, tmp_path: Path, out: Path) -> tuple[str, Path, dict]:
    """A disc mask imported and exported into ``out``, then changed in the database: the next
    export must replace the file or, when it cannot write, leave ``previous`` as it is."""
    masks = tmp_path / "masks" / "optic_disc"
    masks.mkdir(parents=True)
    hf.save(masks / "im0.png", _mask())
    db = str(tmp_path / "e.db")
    assert main(["import-masks", str(data), str(tmp_path / "masks"), "--db", db]) == 0
    assert main(["export", "masks", str(out), "--db", db]) == 0
    previous = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    hf.save(masks / "im0.png", 255 - _mask())  # the region changes, then is exported again
    assert main(["import-masks", str(data), str(tmp_path / "masks"), "--db", db]) == 0
    return db, out, previous


def test_an_export_into_a_read_only_folder_keeps_the_previous_file(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, out, previous = _exported_then_changed(data, tmp_path, tmp_path / "out")
    capsys.readouterr()
    with hf.read_only(out / "optic_disc"):
        code = main(["export", "masks", str(out), "--db", db])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert f"error: {out / 'optic_disc' / 'im0.png'}: cannot write" in err
    assert "earlier file there is unchanged" in err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == previous


def test_an_export_onto_a_full_disk_keeps_the_previous_file(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A disk that fills up mid-write: the export runs in a child process whose files may not
    grow past 64 bytes (RLIMIT_FSIZE, enforced by the kernel like a full disk; no mount needed),
    so every write of a PNG fails part-way; the earlier export must stay byte for byte."""
    import subprocess
    import sys

    db, out, previous = _exported_then_changed(data, tmp_path, tmp_path / "out")
    # The database is opened before the disk "fills" (its WAL index is then already full-size):
    # this drill is about the export, the database's own drills are in test_store_drills.
    code = (
        "import resource, signal, sys; from fundus_review.store import open_database; "
        f"keep = open_database({db!r}); "
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
        "resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64)); "
        "from fundus_review.cli.main import main; sys.exit(main(sys.argv[1:]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "export", "masks", str(out), "--db", db],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "PYTHONDONTWRITEBYTECODE": "1"},
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert f"{out / 'optic_disc' / 'im0.png'}: cannot write" in done.stderr
    assert "earlier file there is unchanged" in done.stderr
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == previous


@pytest.fixture
def small_tmpfs(tmp_path: Path):  # noqa: ANN201 - yields the mount point
    """A 256 KiB tmpfs: a real file system that fills up. Needs root (mount); skipped elsewhere,
    where the file-size-limit drill above covers the same failed write."""
    import os
    import subprocess

    point = tmp_path / "small_disk"
    point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(point)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)


def test_an_export_onto_a_full_tmpfs_keeps_the_previous_file(
    data: Path, tmp_path: Path, small_tmpfs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, out, previous = _exported_then_changed(data, tmp_path, small_tmpfs / "out")
    # Fill the disk to the last block.
    with open(small_tmpfs / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    capsys.readouterr()
    code = main(["export", "masks", str(out), "--db", db])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"{out / 'optic_disc' / 'im0.png'}: cannot write" in err
    assert "earlier file there is unchanged" in err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == previous
    assert not [p for p in out.rglob("*") if p.is_file() and p not in previous]  # no temp left
