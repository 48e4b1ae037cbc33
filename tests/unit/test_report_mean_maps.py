"""The report's "Dataset-mean heatmaps" section: HTML, PDF, report.json (stored maps, no torch)."""

from __future__ import annotations

import json

import pytest

from fundus_review.data.fov import FovCache
from fundus_review.report import ReportRequest, write_report
from fundus_review.store import open_database
from tests.unit.mean_map_world import build_world

pytestmark = pytest.mark.slow  # a whole report: a few seconds here


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("mmreport")
    cache = FovCache(base / "fov")
    with open_database(base / "mm.db") as db:
        world = build_world(db, base / "data", cache)
        result = write_report(db, ReportRequest(base / "out"), fov_cache=cache)
    return {"world": world, "result": result, "out": base / "out"}


def test_report_json_has_every_group_with_its_numbers(report: dict) -> None:
    doc = json.loads((report["out"] / "report.json").read_text())
    mm = doc["mean_maps"]
    assert mm["images"] == 5 and mm["images_with_disc"] == 4
    assert mm["grids"]["fov"]["size"] == 128 and mm["mirror_left_eyes_in_disc_frame"] is True
    by = {(g["model"], g["frame"], g["grouping"], g["group"]): g for g in mm["groups"]}
    short = by[("shortcut", "fov", "all", "all images")]
    honest = by[("honest", "fov", "all", "all images")]
    assert short["n"] == honest["n"] == 5
    assert short["corner_share"]["mean"] > 0.8 > 0.01 > honest["corner_share"]["mean"]
    assert short["run"].startswith("shortcut | gradcam")
    assert by[("honest", "fov", "outcome", "misclassified")]["n"] == 1
    assert by[("honest", "disc", "all", "all images")]["n"] == 4
    assert "corner_share" not in by[("honest", "disc", "all", "all images")]


def test_html_and_pdf_carry_the_section_with_n_and_the_flag(report: dict) -> None:
    html = (report["out"] / "report.html").read_text()
    assert 'id="mean-maps"' in html
    start = html.index('id="mean-maps"')
    section = html[start : html.index("</section>", start)]
    assert "field-of-view frame" in section and "optic-disc frame" in section
    assert section.count("<img") == 2  # one grid per frame, embedded
    # the shortcut run is flagged in words, the honest one is not
    assert section.count("an artifact, not anatomy") == 1
    assert "shortcut | gradcam | layer4, all images (n = 5)" in section
    assert "5/5 = 100 [57, 100]" in section  # peaks in a corner, Wilson CI, n = 5
    pdf = (report["out"] / "report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and len(pdf) > 10_000
