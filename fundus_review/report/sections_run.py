"""The report's first section: what was run, on what, by whom, with which settings."""

from __future__ import annotations

import json
from typing import Any

from fundus_review.core.metrics import describe_metric
from fundus_review.report.data import ReportData
from fundus_review.report.document import Para, Section, Table, short_sha
from fundus_review.report.provenance import HEADERS, provenance_table_rows


def _count_images(rows: list[dict[str, Any]], **match: Any) -> int:
    return len({r["image_id"] for r in rows if all(r[k] == v for k, v in match.items())})


def run_section(
    data: ReportData,
    *,
    seed: int,
    n_resamples: int,
    gallery_cap: int,
    gallery_metric: str,
    gallery_by: str,
    generated: str,
) -> Section:
    blocks: list[Any] = [
        Para(
            f"Database {data.db_name}. Report written {generated}. Every confidence interval is "
            f"95 %: percentile bootstrap with {n_resamples} resamples and seed {seed} "
            "(numpy default_rng), Wilson's score interval for the pointing-game hit rate. The same "
            "database and seed give the same numbers."
        ),
        Table(
            "Datasets",
            ["dataset", "folder", "images", "analysed images"],
            [
                [d["dataset"], d["root"], str(d["images"]), str(d["analysed_images"])]
                for d in data.datasets
            ],
        ),
        Table(
            "Models",
            [
                "model",
                "architecture",
                "classes",
                "input (h x w)",
                "resize",
                "negative class",
                "weights sha256",
                "card sha256",
                "bundle",
            ],
            [
                [
                    m["model"],
                    m["architecture"],
                    ", ".join(m["classes"]),
                    " x ".join(str(v) for v in (m["input_size"] or [])),
                    str(m["resize"]),
                    m["negative_class"] or "none",
                    short_sha(m["weights_sha256"], 16),
                    short_sha(m["card_sha256"], 16),
                    m["bundle_path"],
                ]
                for m in data.models
            ],
            note="The negative class (by name: normal, healthy, no_dr ...) decides what counts as "
            "a false positive or a false negative; without one every error is 'misclassified'. "
            "Full hashes and cards are in report.json.",
        ),
        Table(
            "CAM runs",
            ["run", "method", "target layers", "target", "parameters", "created (UTC)"],
            [
                [
                    r.label,
                    r.method,
                    ", ".join(r.layers),
                    r.target_policy,
                    json.dumps(r.params, sort_keys=True) if r.params else "-",
                    r.created,
                ]
                for r in data.runs
            ],
        ),
        Table(
            "Expert regions",
            ["structure", "reviewer", "images with the region (and a heatmap)"],
            [
                [s, rev, str(_count_images(data.rows, structure=s, reviewer=rev))]
                for s in data.structures
                for rev in data.reviewers
                if _count_images(data.rows, structure=s, reviewer=rev)
            ],
        ),
        Table(
            "Expert regions by provenance",
            list(HEADERS),
            provenance_table_rows(data.region_provenance),
            note="Live regions of the analysed datasets. Accepted and edited proposals of the "
            "segmenter were reviewed by the reviewer and count as that reviewer's expert regions; "
            "unreviewed proposals are never scored, exported or counted as ground truth.",
        ),
        Table(
            "Settings",
            ["setting", "value"],
            _settings(data, gallery_cap, gallery_metric, gallery_by),
        ),
        Table(
            "Software",
            ["package", "version"],
            [[k, v] for k, v in data.software.items()],
        ),
    ]
    if data.problems:
        blocks.append(
            Table(
                "Problems (these images or regions are not in the scores)",
                ["file", "problem"],
                [[path, reason] for path, reason in data.problems],
            )
        )
    return Section("What was run", "run", blocks)


def _settings(
    data: ReportData, gallery_cap: int, gallery_metric: str, gallery_by: str
) -> list[list[str]]:
    p = data.params.to_dict()
    sel = {k: v for k, v in data.selection.items() if v}
    return [
        [
            "pointing-game tolerance",
            f"{p['tolerance_at_model_px']:g} px at model-input scale, "
            "scaled to each image's original resolution",
        ],
        ["fixed threshold (iou/dice_fixed)", f"{p['fixed_threshold']:g}"],
        ["top-k region (iou/dice_top)", f"{p['top_percent']:g} % of the field of view"],
        ["other binarizations", "Otsu (as CheXlocalize); area-matched to the expert mask"],
        ["field of view", f"automatic ({p['fov']}); metrics count only pixels inside it"],
        ["scoring version", str(p["scoring_version"])],
        [
            "confidence bands",
            ", ".join(f"{t:g}" for t in data.thresholds) + " (probability of "
            "the predicted class; a value on a threshold goes to the upper band)",
        ],
        [
            "gallery",
            f"at most {gallery_cap} tiles per gallery, ordered by {gallery_metric} ("
            f"{'higher' if describe_metric(gallery_metric).higher_is_better is not False else 'lower'}"
            " is better), worst first; one gallery per structure and "
            f"{gallery_by}",
        ],
        ["selection", ", ".join(f"{k}={v}" for k, v in sel.items()) or "everything stored"],
    ]


def glossary_table(metrics: tuple[str, ...]) -> Table:
    return Table(
        "Metrics",
        ["metric", "better", "meaning"],
        [
            [
                m,
                {True: "higher", False: "lower", None: "-"}[describe_metric(m).higher_is_better],
                describe_metric(m).description,
            ]
            for m in metrics
        ],
    )
