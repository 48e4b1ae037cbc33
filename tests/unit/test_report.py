"""write_report end to end on a small analysed database (tiny untrained timm model).

The database: 8 fundus-like images in two labelled classes with optic-disc masks, a second
reviewer on three of them, verdicts on three heatmaps, and GradCAM + HiResCAM of an untrained
model (it predicts one class for every image: correct on one class, false negatives on the other).
Every number checked here is recomputed from the report's own per-image CSV with core.stats.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fundus_review.app.analyze import AnalysisRequest, run_analysis
from fundus_review.app.selection import ResultSelection
from fundus_review.core.stats import paired_difference, spearman, summarize
from fundus_review.data.fov import FovCache
from fundus_review.errors import FundusReviewError
from fundus_review.report import ReportRequest, write_report
from fundus_review.report.tables import read_scores_csv
from fundus_review.store import open_database, repo

# A module-wide analysed database or trained model: seconds per test.
pytestmark = pytest.mark.slow

CLASSES = ["glaucoma", "normal"]
SEED = 7
CAP = 3


def fundus_like(h: int, w: int, disc_xy: tuple[int, int], r: int, seed: int):
    """An orange retina on black with a bright disc; returns (rgb, disc mask)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    retina = (xx - w / 2) ** 2 + (yy - h / 2) ** 2 <= (0.45 * min(h, w) * 1.3) ** 2
    disc = ((xx - disc_xy[0]) ** 2 + (yy - disc_xy[1]) ** 2 <= r**2) & retina
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[retina] = (180, 80, 30)
    rgb[disc] = (250, 220, 150)
    noise = rng.integers(-10, 10, rgb.shape) * retina[..., None]
    return np.clip(rgb.astype(int) + noise, 0, 255).astype(np.uint8), disc


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    import timm
    import torch

    from fundus_review.inference.bundle import ModelCard, write_bundle

    base = tmp_path_factory.mktemp("report")
    root = base / "data"
    masks = {}
    for k in range(8):
        label = CLASSES[k % 2]
        rgb, disc = fundus_like(96, 128, (36 + 8 * k, 40 + 3 * k), 9 + k, seed=k)
        stem = f"{label}_{k}"
        (root / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(root / label / f"{stem}.png")
        (root / "masks" / "optic_disc").mkdir(parents=True, exist_ok=True)
        Image.fromarray(disc.astype(np.uint8) * 255).save(
            root / "masks" / "optic_disc" / f"{stem}.png"
        )
        masks[f"{label}/{stem}.png"] = disc
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", pretrained=False, num_classes=2)
    card = ModelCard(
        name="tiny",
        architecture="timm:test_resnet",
        classes=CLASSES,
        input_size=(64, 64),
        resize="resize",
        target_layers=["layer3"],
    )
    bundle = write_bundle(base / "bundle", card, model.state_dict())
    db_path = base / "r.db"
    req = AnalysisRequest(
        dataset=root, bundle=bundle.path, methods=["gradcam", "hirescam"], db=db_path
    )
    events = list(run_analysis(req))
    assert events[-1].computed == 8

    # A second reviewer on three images: the reference disc grown by one pixel (4-neighbours).
    second = {}
    with open_database(db_path) as db, db.session() as s:
        rev = repo.get_or_create_reviewer(s, "second")
        alice = repo.get_or_create_reviewer(s, "alice")
        ds = repo.list_datasets(s)[0]
        for rel in sorted(masks)[:3]:
            m = masks[rel]
            grown = m.copy()
            grown[1:] |= m[:-1]
            grown[:-1] |= m[1:]
            grown[:, 1:] |= m[:, :-1]
            grown[:, :-1] |= m[:, 1:]
            img = repo.get_image(s, ds, rel)
            repo.replace_imported_mask(s, img, rev, "optic_disc", grown, "import:second")
            second[rel] = (m, grown)
        runs = {r.method: r for r in repo.list_cam_runs(s)}
        verdicts = {}
        for rel, verdict in zip(sorted(masks)[:3], ["yes", "no", "yes"], strict=True):
            hm = repo.get_heatmap(s, runs["gradcam"], repo.get_image(s, ds, rel))
            repo.set_verdict(s, hm, alice, verdict)
            verdicts[rel] = verdict
    cache = FovCache(base / "cache")
    out = base / "out"
    result = write_report(db_path, ReportRequest(out, seed=SEED, gallery_cap=CAP), fov_cache=cache)
    return {
        "db": db_path,
        "out": out,
        "result": result,
        "cache": cache,
        "base": base,
        "second": second,
        "verdicts": verdicts,
        "masks": masks,
    }


def _json(world: dict) -> dict:
    return json.loads((world["out"] / "report.json").read_text(encoding="utf-8"))


def _select(rows: list[dict], **match) -> list[dict]:
    return [r for r in rows if all(r[k] == v for k, v in match.items())]


def test_files_exist_and_scoring_ran_first(world: dict) -> None:
    result = world["result"]
    assert set(result.paths) >= {"html", "pdf", "csv", "aggregates_csv", "json"}
    assert all(p.is_file() and p.parent == world["out"] for p in result.paths.values())
    assert result.paths["html"].name == "report.html"  # the GUI opens this name
    # 8 images x 2 runs, + 3 x 2 by "second"; the same for 4 fixed baselines + 2 mean maps.
    assert result.scoring.scored == (2 + 6) * (8 + 3) and result.problems == []
    rows = read_scores_csv(result.paths["csv"])
    assert len(rows) == result.rows == (2 + 6) * (8 + 3)
    assert len([r for r in rows if r["run_kind"] == "model"]) == 16 + 6


def test_summary_matches_recomputation_from_the_csv(world: dict) -> None:
    doc = _json(world)
    rows = read_scores_csv(world["out"] / "scores.csv")
    assert doc["seed"] == SEED
    summary = [a for a in doc["aggregates"] if a["table"] == "summary"]
    assert len(summary) == (2 + 6) * 2 * 15  # (runs + baselines) x reviewers x metrics
    for a in summary:
        values = [
            r[a["metric"]]
            for r in _select(rows, run=a["run"], structure=a["structure"], reviewer=a["reviewer"])
        ]
        ref = summarize(values, method=a["ci_method"], n_resamples=doc["n_resamples"], seed=SEED)
        assert (a["n"], a["n_dropped"]) == (ref.n, ref.n_dropped)
        assert (a["estimate"], a["ci_low"], a["ci_high"]) == (ref.mean, ref.ci_low, ref.ci_high)
        if a["metric"] == "energy_in_mask":
            assert a["estimate"] == pytest.approx(np.mean(values))
    hits = [a for a in summary if a["metric"] == "pointing_hit"]
    assert {a["ci_method"] for a in hits} == {"wilson"}


def test_groupings_comparisons_and_correlations_match_the_csv(world: dict) -> None:
    doc = _json(world)
    rows = read_scores_csv(world["out"] / "scores.csv")
    aggs = doc["aggregates"]
    tables = {a["table"] for a in aggs}
    assert {
        "by_true_class",
        "by_outcome",
        "by_confidence",
        "paired_methods",
        "spearman_confidence",
        "heatmap_similarity",
        "human_benchmark",
        "verdict_counts",
        "by_verdict",
    } <= tables
    outcomes = {a["group"] for a in aggs if a["table"] == "by_outcome"}
    assert outcomes == {"correct", "false negative"} or outcomes == {"correct", "false positive"}
    for a in (a for a in aggs if a["table"] == "by_outcome" and a["metric"] == "energy_in_mask"):
        sel = _select(
            rows, run=a["run"], structure=a["structure"], reviewer=a["reviewer"], outcome=a["group"]
        )
        ref = summarize([r["energy_in_mask"] for r in sel], n_resamples=1000, seed=SEED)
        assert (a["estimate"], a["ci_low"], a["ci_high"]) == (ref.mean, ref.ci_low, ref.ci_high)
    for a in (a for a in aggs if a["table"] == "paired_methods" and a["metric"] == "pixel_auc"):
        mine = _select(rows, run=a["run"], structure=a["structure"], reviewer=a["reviewer"])
        other = {
            r["image_id"]: r["pixel_auc"]
            for r in _select(
                rows, run=a["versus"], structure=a["structure"], reviewer=a["reviewer"]
            )
        }
        ref = paired_difference(
            [r["pixel_auc"] for r in mine],
            [other[r["image_id"]] for r in mine],
            n_resamples=1000,
            seed=SEED,
        )
        assert (a["estimate"], a["ci_low"], a["p_value"]) == (ref.estimate, ref.ci_low, ref.p_value)
    for a in (
        a for a in aggs if a["table"] == "spearman_confidence" and a["metric"] == "energy_in_mask"
    ):
        sel = _select(rows, run=a["run"], structure=a["structure"], reviewer=a["reviewer"])
        ref = spearman(
            [r["confidence"] for r in sel],
            [r["energy_in_mask"] for r in sel],
            n_resamples=1000,
            seed=SEED,
        )
        assert (a["estimate"], a["ci_low"], a["ci_high"]) == (ref.rho, ref.ci_low, ref.ci_high)


def test_heatmap_similarity_counts_only_the_field_of_view(world: dict) -> None:
    """Each per-image similarity is Spearman's rho of the two stored maps on the model-input
    pixels inside the image's field of view (the border's near-zero ties excluded)."""
    from fundus_review.core.similarity import heatmap_rank_correlation
    from fundus_review.core.transform import InputTransform

    doc = _json(world)
    sims = doc["heatmap_similarity"]
    assert sims
    changed = 0
    with open_database(world["db"]) as db, db.session(read_only=True) as s:
        ds = repo.list_datasets(s)[0]
        runs = {r.method: r for r in repo.list_cam_runs(s)}
        for row in sims:
            img = repo.get_image(s, ds, row["image"])
            ha, tf, _ = repo.load_heatmap(s, runs["gradcam"], img)
            hb, _, _ = repo.load_heatmap(s, runs["hirescam"], img)
            fov = world["cache"].get(Path(ds.root) / img.rel_path, img.sha256)
            inside = InputTransform.from_dict(tf).mask_to_input(fov)
            assert 0 < inside.sum() < inside.size
            expected = heatmap_rank_correlation(ha, hb, inside, seed=SEED)
            assert row["rank_correlation"] == pytest.approx(expected, abs=1e-12)
            changed += expected != pytest.approx(heatmap_rank_correlation(ha, hb, seed=SEED))
    assert changed > 0  # the restriction is not a no-op on these images


def test_aggregates_csv_holds_the_json_aggregates(world: dict) -> None:
    doc = _json(world)
    with (world["out"] / "aggregates.csv").open(newline="", encoding="utf-8") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == len(doc["aggregates"])
    for row, agg in zip(table, doc["aggregates"], strict=True):
        for key in ("table", "run", "metric", "group"):
            assert row[key] == ("" if agg[key] is None else str(agg[key]))
        assert (float(row["estimate"]) if row["estimate"] else None) == agg["estimate"]


def test_human_benchmark_is_the_hand_computed_mask_agreement(world: dict) -> None:
    with (world["out"] / "reviewer_agreement.csv").open(newline="", encoding="utf-8") as fh:
        rows = {r["image"]: r for r in csv.DictReader(fh)}
    assert set(rows) == set(world["second"])
    ious = []
    for rel, (ref, grown) in world["second"].items():
        iou = np.count_nonzero(ref) / np.count_nonzero(grown)  # ref lies inside grown
        assert float(rows[rel]["iou"]) == pytest.approx(iou)
        assert float(rows[rel]["dice"]) == pytest.approx(2 * iou / (1 + iou))
        assert rows[rel]["reviewer"] == "reference vs second"
        ious.append(iou)
    (human,) = [
        a
        for a in _json(world)["aggregates"]
        if a["table"] == "human_benchmark" and a["metric"] == "iou"
    ]
    assert human["estimate"] == pytest.approx(np.mean(ious)) and human["n"] == 3
    html = (world["out"] / "report.html").read_text(encoding="utf-8")
    assert "reference vs second" in html and f"{human['estimate']:.3f}" in html


def test_verdicts_are_counted_next_to_the_scores(world: dict) -> None:
    doc = _json(world)
    counts = {
        (a["reviewer"], a["group"]): a["n"]
        for a in doc["aggregates"]
        if a["table"] == "verdict_counts"
    }
    assert counts == {("alice", "no"): 1, ("alice", "yes"): 2}
    rows = read_scores_csv(world["out"] / "scores.csv")
    for rel, verdict in world["verdicts"].items():
        (row,) = _select(rows, image=rel, method="gradcam", reviewer="reference")
        assert row["verdicts"] == f"alice: {verdict}"


def test_regions_are_counted_by_provenance(world: dict) -> None:
    rows = {(r["structure"], r["reviewer"]): r for r in _json(world)["region_provenance"]}
    assert rows["optic_disc", "reference"]["imported"] == 8
    assert rows["optic_disc", "second"]["imported"] == 3
    assert all(r["proposed"] == 0 and r["drawn"] == 0 for r in rows.values())
    html = (world["out"] / "report.html").read_text(encoding="utf-8")
    assert "Expert regions by provenance" in html and "unreviewed proposals (excluded)" in html


def test_html_is_self_contained_and_shows_the_numbers(world: dict) -> None:
    html = (world["out"] / "report.html").read_text(encoding="utf-8")
    srcs = re.findall(r'\bsrc="([^"]*)"', html)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert all(h.startswith("#") for h in re.findall(r'\bhref="([^"]*)"', html))
    assert not re.search(r"<link|<script|url\(|https?://", html)
    doc = _json(world)
    for a in doc["aggregates"]:
        if a["table"] == "summary" and a["metric"] in ("energy_in_mask", "pixel_auc"):
            cell = f"{a['estimate']:.3f} [{a['ci_low']:.2f}, {a['ci_high']:.2f}]"
            assert cell in html
    assert f"seed {SEED}" in html.lower()
    for m in doc["models"]:
        assert m["weights_sha256"][:16] in html and m["card_sha256"][:16] in html


def test_pdf_has_several_pages(world: dict) -> None:
    data = (world["out"] / "report.pdf").read_bytes()
    assert data.startswith(b"%PDF")
    assert len(re.findall(rb"/Type\s*/Page\b", data)) > 1


def test_pdf_embeds_a_unicode_font_only_when_latin1_cannot_print_the_text(tmp_path: Path) -> None:
    from fundus_review.report.document import Document, Para, Section, Table
    from fundus_review.report.pdf import CORE_FONTS, EMBEDDED_FONTS, fonts_for, render_pdf

    def doc(name: str) -> Document:
        table = Table("Reviewers", ["reviewer", "images"], [[name, "3"]])
        return Document("Report", [], [Section("Who", "who", [Para(f"by {name}"), table])])

    latin, other = doc("Zoë Müller"), doc("Łukasz Ωmega")
    assert fonts_for(latin) is CORE_FONTS and fonts_for(other) is EMBEDDED_FONTS
    plain = render_pdf(latin, tmp_path / "latin.pdf", {}).read_bytes()
    embedded = render_pdf(other, tmp_path / "other.pdf", {}).read_bytes()
    assert b"Helvetica" in plain and b"DejaVu" not in plain
    assert b"DejaVuSans" in embedded and b"FontFile2" in embedded  # TrueType glyphs embedded


def test_gallery_cap_is_honoured_and_stated(world: dict) -> None:
    doc = _json(world)
    html = (world["out"] / "report.html").read_text(encoding="utf-8")
    galleries = doc["galleries"]
    assert galleries and all(len(g["heatmap_ids"]) <= CAP for g in galleries)
    full = [g for g in galleries if g["reviewer"] == "reference"]
    assert all(len(g["heatmap_ids"]) == CAP for g in full)  # 8 tiles per outcome > cap
    for g in full:
        assert f"{CAP} of 8 shown (cap {CAP})" in g["note"] and g["note"] in html
    assert html.count('class="tile"') == sum(len(g["heatmap_ids"]) for g in galleries)
    assert doc["gallery"]["cap"] == CAP


def test_worst_localized_correct_predictions_come_first(world: dict) -> None:
    doc = _json(world)
    rows = read_scores_csv(world["out"] / "scores.csv")
    energy = {(r["heatmap_id"], r["reviewer"]): r["energy_in_mask"] for r in rows}
    first = doc["galleries"][0]
    assert (first["outcome"], first["structure"], first["reviewer"]) == (
        "correct",
        "optic_disc",
        "reference",
    )
    shown = [energy[(float(h), "reference")] for h in first["heatmap_ids"]]
    assert shown == sorted(shown)
    correct = sorted(
        r["energy_in_mask"] for r in _select(rows, reviewer="reference", outcome="correct")
    )
    assert shown[:2] == correct[:2]  # ceil(3 / 2) = 2 worst always shown
    html = (world["out"] / "report.html").read_text(encoding="utf-8")
    gallery_titles = re.findall(r"<h3>optic_disc[^<]*: (\w[\w ]*) predictions", html)
    assert gallery_titles[0] == "correct" and "false negative" in gallery_titles


def test_galleries_can_be_grouped_by_true_class_and_confidence(world: dict, tmp_path: Path) -> None:
    out = tmp_path / "by_class"
    request = ReportRequest(out, seed=SEED, gallery_cap=CAP, gallery_by=("class", "confidence"))
    write_report(world["db"], request, fov_cache=world["cache"])
    doc = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert doc["gallery"]["by"] == ["class", "confidence"]
    rows = read_scores_csv(out / "scores.csv")
    by_id = {(r["heatmap_id"], r["reviewer"]): r for r in rows}
    seen = []
    for g in doc["galleries"]:
        assert g["outcome"] is None and g["confidence_band"] is not None
        members = [by_id[(float(h), g["reviewer"])] for h in g["heatmap_ids"]]
        assert members and all(
            (m["true_class"] or None, m["confidence_band"])
            == (g["true_class"], g["confidence_band"])
            for m in members
        )
        seen.append((g["structure"], g["reviewer"], g["true_class"], g["confidence_band"]))
    assert len(seen) == len(set(seen))
    # Within a class, the most confident predictions come first.
    for a, b in zip(seen, seen[1:], strict=False):
        if a[:3] == b[:3]:
            assert a[3].startswith(">=") or not b[3].startswith(">=")
    html = (out / "report.html").read_text(encoding="utf-8")
    assert re.search(r"<h3>optic_disc[^<]*: all predictions, true class \w+, confidence", html)
    with pytest.raises(FundusReviewError, match="gallery grouping"):
        write_report(world["db"], ReportRequest(tmp_path / "o", gallery_by=("colour",)))


def test_same_database_gives_identical_tables(world: dict, tmp_path: Path) -> None:
    with open_database(world["db"]) as db:  # the GUI passes its open Database
        request = ReportRequest(tmp_path / "again", seed=SEED, gallery_cap=CAP)
        again = write_report(db, request, fov_cache=world["cache"])
    assert again.scoring.scored == 0 and again.scoring.reused == (2 + 6) * (8 + 3)
    for name in ("scores.csv", "aggregates.csv", "reviewer_agreement.csv", "report.json"):
        assert (tmp_path / "again" / name).read_bytes() == (world["out"] / name).read_bytes(), name


def test_bad_requests_are_user_errors(world: dict, tmp_path: Path) -> None:
    with pytest.raises(FundusReviewError, match="no such database"):
        write_report(tmp_path / "missing.db", tmp_path / "o")
    assert not (tmp_path / "missing.db").exists()
    with pytest.raises(FundusReviewError, match="no model 'nope'"):
        nope = ResultSelection(models=["nope"])
        write_report(world["db"], ReportRequest(tmp_path / "o", nope), fov_cache=world["cache"])
    with pytest.raises(FundusReviewError, match="at least 1000"):
        write_report(world["db"], ReportRequest(tmp_path / "o", n_resamples=100))
    with pytest.raises(FundusReviewError, match="unknown gallery metric"):
        write_report(world["db"], ReportRequest(tmp_path / "o", gallery_metric="accuracy"))


def test_cli_filters_prints_paths_and_states_its_seed(
    world: dict, tmp_path: Path, monkeypatch, capsys
) -> None:
    from fundus_review.cli.report import main

    monkeypatch.setenv("FUNDUS_REVIEW_CACHE", str(world["base"] / "cache"))
    out = tmp_path / "cli"
    args = [
        "--db",
        str(world["db"]),
        "--out",
        str(out),
        "--method",
        "gradcam",
        "--structure",
        "optic_disc",
        "--reviewer",
        "reference",
        "--seed",
        str(SEED + 1),
        "--gallery-cap",
        "2",
        "--quiet",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    for name in ("report.html", "report.pdf", "scores.csv", "aggregates.csv", "report.json"):
        assert str(out / name) in printed and (out / name).is_file()
    theirs = json.loads((out / "report.json").read_text())
    assert theirs["seed"] == SEED + 1 and theirs["gallery"]["cap"] == 2
    real = [r for r in theirs["scores"] if r["run_kind"] == "model"]
    assert {(r["method"], r["reviewer"]) for r in real} == {("gradcam", "reference")}
    # The baselines come with the selected images; the mean map only of the selected run.
    base = [r for r in theirs["scores"] if r["run_kind"] == "baseline"]
    assert {r["method"] for r in base} == {"centre", "fov-centre", "uniform", "random", "mean-map"}
    assert {r["run"] for r in base if r["method"] == "mean-map"} == {
        "baseline | mean map of " + real[0]["run"]
    }
    assert f"seed {SEED + 1}" in (out / "report.html").read_text(encoding="utf-8").lower()

    mine = {
        a["metric"]: a
        for a in _json(world)["aggregates"]
        if a["table"] == "summary"
        and a["run"].endswith("gradcam | layer3")
        and not a["run"].startswith("baseline")
        and a["reviewer"] == "reference"
    }
    mine_runs = {r["run"] for r in real}
    summary = [a for a in theirs["aggregates"] if a["table"] == "summary" and a["run"] in mine_runs]
    assert {a["metric"] for a in summary} == set(mine)
    for a in summary:  # the same data give the same means, the other seed other intervals
        assert a["estimate"] == mine[a["metric"]]["estimate"]
    energy = next(a for a in summary if a["metric"] == "energy_in_mask")
    assert energy["ci_low"] != mine["energy_in_mask"]["ci_low"]

    assert main(["--db", str(tmp_path / "none.db"), "--out", str(out)]) == 2
    assert "no such database" in capsys.readouterr().err


def test_a_failed_write_leaves_the_earlier_report_whole(
    world: dict, tmp_path: Path, monkeypatch
) -> None:
    import shutil

    import fundus_review.report.pdf as pdf

    earlier = tmp_path / "report"
    shutil.copytree(world["out"], earlier)
    before = {p.name: p.read_bytes() for p in earlier.iterdir()}

    def dies_mid_write(doc, path: Path, pngs) -> Path:  # noqa: ANN001
        path.with_name(path.name + ".part").write_bytes(b"%PDF-1.4 half a page")
        raise RuntimeError("killed while writing the PDF")

    monkeypatch.setattr(pdf, "render_pdf", dies_mid_write)
    request = ReportRequest(earlier, seed=SEED + 1, gallery_cap=CAP)
    with pytest.raises(RuntimeError, match="killed while writing"):
        write_report(world["db"], request, fov_cache=world["cache"])
    assert {p.name: p.read_bytes() for p in earlier.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["report"]  # no staging folder, no .part

    monkeypatch.undo()
    again = write_report(world["db"], request, fov_cache=world["cache"])
    assert sorted(p.name for p in earlier.iterdir()) == sorted(before)
    assert json.loads((earlier / "report.json").read_text(encoding="utf-8"))["seed"] == SEED + 1
    assert again.paths["html"] == earlier / "report.html"
    assert [p.name for p in tmp_path.iterdir()] == ["report"]
