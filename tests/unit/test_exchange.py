"""exchange: masks/COCO/verdict exports and labelme import; drawn regions score like imported ones."""

from __future__ import annotations

import argparse
import base64
import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fundus_review.app.importing import import_masks, register_dataset
from fundus_review.app.scoring import score_database
from fundus_review.cli.exchange import add_exchange_parsers
from fundus_review.core.geometry import Brush, Ellipse, Point, Polygon, shape_mask
from fundus_review.core.transform import make_transform
from fundus_review.data.fov import FovCache
from fundus_review.data.masks_io import load_mask, write_mask_atomic
from fundus_review.errors import FundusReviewError
from fundus_review.exchange.coco import export_coco, mask_to_rle, rle_to_mask
from fundus_review.exchange.labelme import import_labelme
from fundus_review.exchange.masks import export_masks
from fundus_review.exchange.region_filter import Selection
from fundus_review.exchange.verdicts import export_verdicts, verdict_counts, verdict_export_rows
from fundus_review.review.editor import Editor, load_regions
from fundus_review.store import open_database, repo

H, W = 48, 64


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.setenv("FUNDUS_REVIEW_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FUNDUS_REVIEW_HOME", str(tmp_path / "home"))
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    for rel in ("glaucoma/g1.png", "normal/n1.png"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        rgb = np.zeros((H, W, 3), np.uint8)
        yy, xx = np.mgrid[:H, :W]
        rgb[(xx - 32) ** 2 + (yy - 24) ** 2 < 22**2] = (170, 80, 30)
        rgb = np.clip(rgb + rng.integers(0, 20, rgb.shape), 0, 255).astype(np.uint8)
        Image.fromarray(rgb).save(root / rel)
    db = open_database(tmp_path / "x.db")
    reg = register_dataset(db, root)
    yield {"db": db, "reg": reg, "root": root, "tmp": tmp_path}
    db.close()


def image_id(env: dict, rel: str = "glaucoma/g1.png") -> int:
    return env["reg"].image_ids[rel]


def draw_some(env: dict, reviewer: str = "Dr. Rao") -> Editor:
    ed = Editor(env["db"], image_id(env), reviewer)
    ed.create("optic_disc", Ellipse(40.3, 22.7, 7.5, 6.0, 20))
    ed.create("hemorrhage", Polygon(((5.5, 5.2), (15.1, 7.9), (9.3, 16.6))))
    ed.create(
        "hemorrhage", Brush(None, ({"op": "paint", "radius": 2, "points": [[50, 40], [58, 42]]},))
    )
    ed.create("macula_fovea", Point(30.2, 25.7, 0.0))
    return ed


# ------------------------------------------------------------------------------- masks
def test_exported_masks_reimport_identically(env: dict) -> None:
    db = env["db"]
    draw_some(env)
    summary = export_masks(db, env["tmp"] / "out")
    assert summary.layout == "flat" and summary.files == 3 and summary.problems == []
    assert (env["tmp"] / "out" / "hemorrhage" / "g1.png").is_file()
    assert json.loads((env["tmp"] / "out" / "manifest.json").read_text())["files"] == 3
    import_masks(db, env["reg"], env["tmp"] / "out", reviewer="reimported")
    with db.session() as s:
        rao = repo.get_or_create_reviewer(s, "Dr. Rao")
        back = repo.get_or_create_reviewer(s, "reimported")
        for structure in ("optic_disc", "hemorrhage", "macula_fovea"):
            drawn = repo.structure_mask(s, image_id(env), structure, rao)
            again = repo.structure_mask(s, image_id(env), structure, back)
            assert drawn is not None and drawn.any()
            np.testing.assert_array_equal(again, drawn)


def test_several_reviewers_export_by_reviewer_and_flat_refuses_them(env: dict) -> None:
    db = env["db"]
    draw_some(env, "Dr. Rao")
    Editor(db, image_id(env), "Dr. Kim/2").create("optic_disc", Ellipse(20, 20, 5, 5))
    with pytest.raises(FundusReviewError, match="2 reviewers"):
        export_masks(db, env["tmp"] / "flat", layout="flat")
    summary = export_masks(db, env["tmp"] / "out")
    assert summary.layout == "by-reviewer"
    assert summary.reviewers == {"Dr. Rao": "Dr. Rao", "Dr. Kim_2": "Dr. Kim/2"}
    kim = load_mask(env["tmp"] / "out" / "Dr. Kim_2" / "optic_disc" / "g1.png")
    np.testing.assert_array_equal(kim, shape_mask(Ellipse(20, 20, 5, 5), (H, W)))
    only = export_masks(db, env["tmp"] / "kim", Selection(reviewers=["Dr. Kim/2"]))
    assert only.layout == "flat" and only.files == 1


def test_stale_files_and_stem_collisions_are_reported(env: dict, tmp_path: Path) -> None:
    db = env["db"]
    ed = draw_some(env)
    out = tmp_path / "out"
    write_mask_atomic(out / "optic_cup" / "g1.png", np.ones((H, W), bool))  # an old export
    summary = export_masks(db, out)
    assert summary.stale == [out / "optic_cup" / "g1.png"]
    with db.session() as s:  # a second image with the same stem in another folder
        ds = repo.list_datasets(s)[0]
        img = repo.upsert_image(s, ds, "normal/g1.png", W, H, "a" * 64)
        img_id = img.id
    Editor(db, img_id, ed.reviewer).create("optic_disc", Ellipse(10, 10, 4, 4))
    summary = export_masks(db, tmp_path / "out2")
    assert any("same file stem" in reason for _, reason in summary.problems)


# -------------------------------------------------------------------------------- COCO
def test_rle_follows_the_coco_convention() -> None:
    m = np.array([[0, 1, 1], [0, 1, 0]], bool)
    # Column-major: col0 = 0,0 ; col1 = 1,1 ; col2 = 1,0 -> runs 2 zeros, 3 ones, 1 zero.
    assert mask_to_rle(m) == {"size": [2, 3], "counts": [2, 3, 1]}
    starts_set = np.array([[1, 0], [1, 0]], bool)
    assert mask_to_rle(starts_set)["counts"] == [0, 2, 2]
    np.testing.assert_array_equal(rle_to_mask(mask_to_rle(m)), m)
    with pytest.raises(ValueError, match="sum to"):
        rle_to_mask({"size": [2, 3], "counts": [1, 1]})


def test_coco_export_has_polygons_rle_and_exact_areas(env: dict) -> None:
    db = env["db"]
    draw_some(env)
    path = env["tmp"] / "coco.json"
    summary = export_coco(db, path, Selection(dataset=str(env["root"])))
    doc = json.loads(path.read_text())
    assert summary.annotations == 4 and summary.images == 2  # the unannotated image is listed
    cats = {c["id"]: c["name"] for c in doc["categories"]}
    assert {"optic_disc", "hemorrhage", "macula_fovea"} <= set(cats.values())
    regions = {r.id: r for r in load_regions(db, image_id(env))}
    for a in doc["annotations"]:
        r = regions[a["id"]]
        m = r.mask()
        assert a["area"] == int(m.sum()) and cats[a["category_id"]] == r.structure
        rows, cols = np.nonzero(m)
        assert a["bbox"] == [cols.min(), rows.min(), cols.max() - cols.min() + 1,
                             rows.max() - rows.min() + 1]  # fmt: skip
        seg = a["segmentation"]
        if r.kind == "polygon":
            assert seg == [[5.5, 5.2, 15.1, 7.9, 9.3, 16.6]]
        elif r.kind == "ellipse":
            assert isinstance(seg, list) and len(seg[0]) == 128
        else:
            np.testing.assert_array_equal(rle_to_mask(seg), m)
        assert a["fundus_review"]["reviewer"] == "Dr. Rao"
    export_coco(db, path, segmentation="rle")
    for a in json.loads(path.read_text())["annotations"]:
        np.testing.assert_array_equal(rle_to_mask(a["segmentation"]), regions[a["id"]].mask())
    export_coco(db, path, segmentation="polygon")
    brush = next(a for a in json.loads(path.read_text())["annotations"]
                 if regions[a["id"]].kind == "brush")  # fmt: skip
    assert isinstance(brush["segmentation"], list) and len(brush["segmentation"][0]) >= 6


# ----------------------------------------------------------------------------- verdicts
def heatmap_for(env: dict, rel: str = "glaucoma/g1.png", value: np.ndarray | None = None) -> int:
    with env["db"].session() as s:
        model = repo.get_or_create_model(s, "tiny", "timm:resnet18", {"classes": ["g", "n"]},
                                         "0" * 64, "bundle")  # fmt: skip
        run = repo.get_or_create_cam_run(s, model, "gradcam", ["layer4"])
        tf = make_transform(H, W, 16, 16, "resize").to_dict()
        repo.save_prediction(s, image_id(env, rel), model, [0.7, 0.3], 0, tf)
        if value is None:
            value = np.zeros((16, 16), np.float32)
        return repo.save_heatmap(s, run, image_id(env, rel), 0, value).id


def test_verdicts_csv_lists_each_verdict_with_its_context(env: dict) -> None:
    db = env["db"]
    hm = heatmap_for(env)
    rao = Editor(db, image_id(env), "Dr. Rao")
    rao.set_verdict(hm, "partly", 'looks at the cup, "not" the disc rim')
    rao.set_status("done")
    Editor(db, image_id(env), "Dr. Kim").set_verdict(hm, "no")
    path = env["tmp"] / "v" / "verdicts.csv"
    assert export_verdicts(db, path) == 2
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    assert [(r["reviewer"], r["verdict"], r["review_status"]) for r in rows] == [
        ("Dr. Kim", "no", "unreviewed"), ("Dr. Rao", "partly", "done")]  # fmt: skip
    assert rows[1]["comment"] == 'looks at the cup, "not" the disc rim'
    assert rows[1]["image"] == "glaucoma/g1.png" and rows[1]["method"] == "gradcam"
    assert rows[1]["model"] == "tiny" and rows[1]["layers"] == "layer4"
    assert export_verdicts(db, path, reviewers=["Dr. Rao"]) == 1
    assert verdict_counts(verdict_export_rows(db)) == {
        ("tiny", "gradcam"): {"yes": 0, "partly": 1, "no": 1}
    }
    with pytest.raises(FundusReviewError, match="no reviewer 'Dr. Who'"):
        verdict_export_rows(db, reviewers=["Dr. Who"])


# ------------------------------------------------------------------------------ labelme
def labelme_doc(shapes: list[dict], image: str = "g1.png", h: int = H, w: int = W) -> dict:
    return {"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": image,
            "imageData": None, "imageHeight": h, "imageWidth": w}  # fmt: skip


def png_b64(mask: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_labelme_shapes_become_regions_and_reimport_is_idempotent(env: dict) -> None:
    db = env["db"]
    part = np.zeros((4, 5), bool)
    part[1:3, 1:4] = True
    shapes = [
        {"label": "Optic Disc", "shape_type": "circle", "points": [[40, 22], [46, 22]]},
        {"label": "HE", "shape_type": "polygon", "points": [[5, 5], [15, 8], [9, 16]]},
        {"label": "hemorrhage", "shape_type": "rectangle", "points": [[20, 30], [26, 34]]},
        {"label": "macula_fovea", "shape_type": "point", "points": [[30.5, 25.5]]},
        {"label": "hard exudate", "shape_type": "mask", "points": [[50, 10], [54, 13]],
         "mask": png_b64(part)},
        {"label": "vessel", "shape_type": "linestrip", "points": [[1, 1], [5, 5], [9, 2]]},
    ]  # fmt: skip
    src = env["tmp"] / "lm"
    src.mkdir()
    (src / "g1.json").write_text(json.dumps(labelme_doc(shapes)))
    (src / "zz.json").write_text(json.dumps(labelme_doc([], image="nothing.png")))
    s1 = import_labelme(db, env["reg"], [src], "labelme", {"HE": "hemorrhage"})
    assert (s1.files, s1.added) == (1, 5) and s1.unmatched == [str(src.resolve() / "zz.json")]
    assert any("'linestrip'" in reason for _, reason in s1.problems)
    live = load_regions(db, image_id(env))
    regions = {(r.structure, r.kind): r for r in live}
    np.testing.assert_array_equal(regions[("optic_disc", "ellipse")].mask(),
                                  shape_mask(Ellipse(40, 22, 6, 6), (H, W)))  # fmt: skip
    hem = [r.mask() for r in live if r.structure == "hemorrhage"]
    rect = shape_mask(Polygon(((20, 30), (26, 30), (26, 34), (20, 34))), (H, W))
    tri = shape_mask(Polygon(((5, 5), (15, 8), (9, 16))), (H, W))
    assert len(hem) == 2 and rect.sum() == 24
    np.testing.assert_array_equal(hem[0] | hem[1], tri | rect)
    exudate = regions[("hard_exudate", "mask")].mask()
    assert exudate.sum() == 6 and exudate[11:13, 51:54].all()
    s2 = import_labelme(db, env["reg"], [src / "g1.json"], "labelme", {"HE": "hemorrhage"})
    assert (s2.added, s2.updated, s2.unchanged) == (0, 0, 5)
    shapes[1]["points"] = [[5, 5], [20, 8], [9, 16]]  # moved vertex
    del shapes[3]  # removed point
    (src / "g1.json").write_text(json.dumps(labelme_doc(shapes)))
    s3 = import_labelme(db, env["reg"], [src / "g1.json"], "labelme", {"HE": "hemorrhage"})
    # Identity is the shape index: the mask moved from #5 to #4 (where the point was), so it is
    # re-added there and its old entry removed.
    assert (s3.updated, s3.added, s3.removed, s3.unchanged) == (1, 1, 1, 2)
    live = load_regions(db, image_id(env))
    assert len(live) == 4 and not any(r.structure == "macula_fovea" for r in live)
    assert any(r.geometry == {"points": [[5.0, 5.0], [20.0, 8.0], [9.0, 16.0]]} for r in live)


def test_labelme_for_another_image_size_is_refused(env: dict) -> None:
    path = env["tmp"] / "g1.json"
    path.write_text(json.dumps(labelme_doc([{"label": "optic_disc", "shape_type": "polygon",
                                             "points": [[1, 1], [5, 1], [3, 4]]}], h=96, w=128)))  # fmt: skip
    summary = import_labelme(env["db"], env["reg"], [path])
    assert summary.added == 0 and "drawn on a 128x96 image" in summary.problems[0][1]
    assert load_regions(env["db"], image_id(env)) == []


# ------------------------------------------------------ metrics: drawn == imported
def test_a_drawn_polygon_scores_exactly_like_the_same_polygon_imported_as_a_png(env: dict) -> None:
    db = env["db"]
    yy, xx = np.mgrid[:16, :16]
    heatmap_for(env, value=np.exp(-((xx - 10) ** 2 + (yy - 6) ** 2) / 8.0).astype(np.float32))
    poly = Polygon(((30.4, 12.2), (50.7, 15.1), (46.2, 33.9), (28.8, 29.5)))
    Editor(db, image_id(env), "drawn").create("optic_disc", poly)
    # The same polygon written by another tool as a mask PNG and imported.
    masks = env["tmp"] / "masks"
    write_mask_atomic(masks / "optic_disc" / "g1.png", shape_mask(poly, (H, W)))
    import_masks(db, env["reg"], masks, reviewer="imported")
    summary = score_database(db, fov_cache=FovCache(env["tmp"] / "fov"))
    assert summary.problems == [] and summary.scored == 2
    with db.session() as s:
        by_reviewer: dict[str, dict[str, float | None]] = {}
        for sc in repo.list_scores(s):
            by_reviewer.setdefault(sc.reviewer.name, {})[sc.metric] = sc.value
    assert len(by_reviewer["drawn"]) >= 5
    assert by_reviewer["drawn"] == by_reviewer["imported"]
    agree = [a for a in summary.agreements if a.structure == "optic_disc"]
    assert agree and agree[0].iou == 1.0


# ----------------------------------------------------------------------------------- CLI
def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    add_exchange_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_exports_and_imports(env: dict, capsys: pytest.CaptureFixture[str]) -> None:
    draw_some(env)
    dbfile = str(env["tmp"] / "x.db")
    out = env["tmp"] / "cli"
    assert run_cli(["export", "masks", str(out / "m"), "--db", dbfile]) == 0
    assert "Wrote 3 mask PNGs" in capsys.readouterr().out
    assert run_cli(["export", "coco", str(out / "c.json"), "--db", dbfile,
                    "--structure", "hemorrhage", "--segmentation", "rle"]) == 0  # fmt: skip
    assert len(json.loads((out / "c.json").read_text())["annotations"]) == 2
    assert run_cli(["export", "verdicts", str(out / "v.csv"), "--db", dbfile]) == 0
    assert (out / "v.csv").read_text().startswith("dataset,image,image_id,model")
    lm = out / "g1.json"
    lm.write_text(json.dumps(labelme_doc([{"label": "OD", "shape_type": "polygon",
                                           "points": [[1, 1], [9, 1], [5, 7]]}])))  # fmt: skip
    assert run_cli(["import-labelme", str(env["root"]), str(lm), "--db", dbfile,
                    "--reviewer", "lm", "--map", "OD=optic_disc"]) == 0  # fmt: skip
    assert "1 added" in capsys.readouterr().out
    with pytest.raises(FundusReviewError, match="LABEL=STRUCTURE"):
        run_cli(["import-labelme", str(env["root"]), str(lm), "--db", dbfile, "--map", "OD"])


def test_real_idrid_masks_survive_an_export_import_round_trip(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FUNDUS_REVIEW_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "idrid"
    root.mkdir()
    for stem in ("IDRiD_01", "IDRiD_02"):  # links keep the shared data out of the repo
        (root / f"{stem}.jpg").symlink_to(shared_data / "idrid_seg" / "images" / f"{stem}.jpg")
    masks = shared_data / "idrid_seg" / "masks"
    with open_database(tmp_path / "r.db") as db:
        reg = register_dataset(db, root)
        first = import_masks(db, reg, masks, reviewer="idrid")
        assert first.imported >= 6
        export_masks(db, tmp_path / "out")
        import_masks(db, reg, tmp_path / "out", reviewer="again")
        with db.session() as s:
            a, b = repo.get_or_create_reviewer(s, "idrid"), repo.get_or_create_reviewer(s, "again")
            for stem, rel in ((p.stem, p.name) for p in sorted(root.iterdir())):
                for structure_dir in sorted(masks.iterdir()):
                    orig = repo.structure_mask(s, reg.image_ids[rel], structure_dir.name, a)
                    if orig is None:
                        continue
                    again = repo.structure_mask(s, reg.image_ids[rel], structure_dir.name, b)
                    np.testing.assert_array_equal(again, orig)
                    np.testing.assert_array_equal(
                        orig, load_mask(structure_dir / f"{stem}.png", orig.shape)
                    )
