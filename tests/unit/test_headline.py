"""The first page's sentences (report.headline) from known aggregates: the numbers, the verdict
words, the centred-photo caution, the shortcut warning and "not run" for missing checks."""

from __future__ import annotations

from fundus_review.report.aggregates import AggIndex
from fundus_review.report.document import Para, Plot, Table
from fundus_review.report.headline import HeadlineRun, TrustFindings, headline_section

RUN, CENTRE = "m | gradcam | layer4", "baseline | centre"


def _agg(table: str, run: str, metric: str, est: float, lo: float, hi: float, **kw) -> dict:
    row = {
        "table": table,
        "run": run,
        "versus": kw.get("versus"),
        "structure": "optic_disc",
        "reviewer": "reference",
        "group": kw.get("group", ""),
        "metric": metric,
        "n": kw.get("n", 40),
        "estimate": est,
        "ci_low": lo,
        "ci_high": hi,
    }
    return row


def _section(outside: float, centre_hit: float, findings: TrustFindings | None = None):
    idx = AggIndex(
        [
            _agg("summary", RUN, "pointing_hit", 0.62, 0.48, 0.74),
            _agg("summary", CENTRE, "pointing_hit", centre_hit, centre_hit - 0.05, 1.0),
            _agg("summary", RUN, "mass_outside_fov", outside, outside - 0.02, outside + 0.02),
            _agg(
                "versus_best_baseline",
                RUN,
                "pointing_hit",
                0.62 - centre_hit,
                0.62 - centre_hit - 0.1,
                0.62 - centre_hit + 0.1,
                versus=CENTRE,
                group="worse" if centre_hit > 0.8 else "beats",
            ),
        ]
    )
    return headline_section(
        [HeadlineRun(RUN, "m", "gradcam", (CENTRE,))],
        idx,
        ["optic_disc"],
        ["reference"],
        findings or TrustFindings(accuracy={"m": "Accuracy 85 % [72, 93] on 40 labelled images."}),
        {CENTRE: "a Gaussian at the image centre"},
        [CENTRE],
    )


def _text(section) -> str:
    return " ".join(b.text for b in section.blocks if isinstance(b, Para))


def test_disc_centred_photos_get_the_caution_and_the_run_is_worse_than_the_centre() -> None:
    section = _section(outside=0.05, centre_hit=1.0)
    text = _text(section)
    assert section.anchor == "headline" and section.title == "At a glance"
    assert "Accuracy 85 % [72, 93] on 40 labelled images." in text
    assert "falls in the optic disc in 62 % [48, 74] of 40 images" in text
    assert "the best baseline (a Gaussian at the image centre) does 100 % [95, 100]" in text
    assert "the run is worse than the best baseline (-38 points [-48, -28])" in text
    assert "Caution: a map that only peaks at the centre of the picture hits the optic disc" in text
    assert "Shortcut warning" not in text
    # Checks that were not run are said to be so; one figure on the page.
    checks = next(b for b in section.blocks if isinstance(b, Table))
    assert checks.rows == [[RUN, "no", "not run", "not run"]]
    assert sum(isinstance(b, Plot) for b in section.blocks) == 1


def test_a_beaten_baseline_a_shortcut_and_the_trust_verdicts() -> None:
    findings = TrustFindings(
        randomization={RUN: ("passed", "Randomisation test: passed (...).")},
        faithfulness={RUN: ("failed", "Faithfulness (ROAD): failed, ...")},
    )
    section = _section(outside=0.4, centre_hit=0.2, findings=findings)
    text = _text(section)
    assert "so the run beats the best baseline (+42 points [+32, +52])" in text
    assert "Caution" not in text
    assert "Shortcut warning: on average 40 % [38, 42] of the heatmap lies outside" in text
    assert "Randomisation test: passed" in text and "Faithfulness (ROAD): failed" in text
    checks = next(b for b in section.blocks if isinstance(b, Table))
    assert checks.rows == [[RUN, "shortcut?", "passed", "failed"]]
