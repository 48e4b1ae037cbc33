"""Result sections: summary, human benchmark, comparisons, groupings, correlations, verdicts.

Tables show the headline metrics; every metric of every table is in aggregates.csv/report.json,
and the appendix lists the complete summary.
"""

from __future__ import annotations

from typing import Any

from fundus_review.core.score_tables import MIN_CORRELATION_N, group_rows
from fundus_review.report.aggregates import VERDICT_ORDER, AggIndex
from fundus_review.report.data import ReportData
from fundus_review.report.document import Para, Section, Table, num, p_text, with_ci

DISPLAY = {
    "pointing_hit": "hit rate",
    "energy_in_mask": "energy in mask",
    "iou_otsu": "IoU Otsu",
    "iou_area_match": "IoU area-matched",
    "dice_area_match": "Dice area-matched",
    "pixel_auc": "pixel AUC",
    "mass_outside_fov": "mass outside FOV",
}
GROUP_DISPLAY = ("pointing_hit", "energy_in_mask", "iou_area_match", "pixel_auc")
PAIRED_DISPLAY = (*GROUP_DISPLAY, "mass_outside_fov")
CORRELATION_DISPLAY = (
    "pointing_hit",
    "energy_in_mask",
    "iou_otsu",
    "iou_area_match",
    "pixel_auc",
    "mass_outside_fov",
)


def _keys(rows: list[dict[str, Any]], structure: str) -> list[tuple[str, str]]:
    return list(group_rows([r for r in rows if r["structure"] == structure], ("run", "reviewer")))


def summary_section(data: ReportData, idx: AggIndex) -> Section:
    blocks: list[Any] = [
        Para(
            "Mean of each score over the images with the structure, 95 % CI in brackets. n: "
            "images scored. A score is undefined (not zero) when the mask has no pixel in the "
            "field of view. Energy's chance level is the mask's share of the field of view."
        )
    ]
    metrics = [m for m in DISPLAY if m in data.metrics]
    for structure in data.structures:
        rows = []
        for run, reviewer in _keys(data.rows, structure):
            n = idx.get("summary", "energy_in_mask", run, structure, reviewer)
            chance = idx.get("summary", "mask_area_fraction", run, structure, reviewer)
            cells = [with_ci(idx.get("summary", m, run, structure, reviewer)) for m in metrics]
            rows.append(
                [run, reviewer, str(n["n"] if n else 0), *cells, num(chance and chance["estimate"])]
            )  # noqa: E501
        blocks.append(
            Table(
                f"{structure}",
                ["CAM run", "reviewer", "n", *[DISPLAY[m] for m in metrics], "energy chance"],
                rows,
            )
        )
    return Section("Summary per CAM run and structure", "summary", blocks)


def human_section(data: ReportData, idx: AggIndex) -> Section:
    aggs = idx.tables.get("human_benchmark", [])
    if not aggs:
        return Section(
            "Human benchmark",
            "human",
            [
                Para(
                    "No structure was outlined by two reviewers on the same image, so there is "
                    "no reviewer-vs-reviewer benchmark."
                )
            ],
        )
    rows = []
    summary = idx.summary_map()
    for (structure, pair), members in group_rows(aggs, ("structure", "reviewer")).items():
        by_metric = {a["metric"]: a for a in members}
        rows.append(
            [
                structure,
                pair,
                str(by_metric["iou"]["n"]),
                with_ci(by_metric["iou"]),
                with_ci(by_metric["dice"]),
            ]
        )
        for run, reviewer in _keys(data.rows, structure):
            iou = summary.get((run, structure, reviewer, "iou_area_match"))
            dice = summary.get((run, structure, reviewer, "dice_area_match"))
            rows.append(
                [
                    structure,
                    f"heatmap: {run} vs {reviewer}",
                    str(iou["n"] if iou else 0),
                    with_ci(iou),
                    with_ci(dice),
                ]
            )
    return Section(
        "Human benchmark",
        "human",
        [
            Para(
                "IoU and Dice between two reviewers' masks of the same structure on the same "
                "image: what the heatmaps' agreement should be read against. Heatmap rows use the "
                "area-matched binarization (as many pixels as the mask)."
            ),
            Table(
                "Reviewer vs reviewer, and heatmaps", ["structure", "who", "n", "IoU", "Dice"], rows
            ),
        ],
    )


def _pivot(
    aggs: list[dict[str, Any]], keys: tuple[str, ...], metrics: tuple[str, ...], cell: Any
) -> list[list[str]]:
    """One row per ``keys`` value, one cell per metric (aggregates of other metrics ignored)."""
    rows = []
    for key, members in group_rows(aggs, keys).items():
        by_metric = {a["metric"]: a for a in members}
        n = max((a["n"] for a in members if a["metric"] in metrics), default=0)
        rows.append([*(str(k) for k in key), str(n), *[cell(by_metric.get(m)) for m in metrics]])
    return rows


def _diff_cell(a: dict[str, Any] | None) -> str:
    if a is None or a["estimate"] is None:
        return "-"
    return f"{with_ci(a)} p={p_text(a['p_value'])}"


def paired_section(data: ReportData, idx: AggIndex) -> Section:
    aggs = idx.tables.get("paired_methods", []) + idx.tables.get("paired_models", [])
    if not aggs:
        return Section(
            "Paired comparisons",
            "paired",
            [Para("Only one CAM run per model and method: nothing to compare.")],
        )
    aggs = [{**a, "compares": a["table"][len("paired_") :]} for a in aggs]  # a copy: JSON-bound
    keys = ("structure", "reviewer", "compares", "run", "versus")
    rows = _pivot(aggs, keys, PAIRED_DISPLAY, _diff_cell)
    rows.sort(key=lambda r: data.structures.index(r[0]) if r[0] in data.structures else -1)
    return Section(
        "Paired comparisons",
        "paired",
        [
            Para(
                "Mean difference A - B of two CAM runs on the SAME images (pairs resampled "
                "together), with its 95 % bootstrap CI and a two-sided sign-flip permutation "
                "p-value; no correction for multiple comparisons. 'methods': two methods or "
                "layers of one model; 'models': one method on two models."
            ),
            Table(
                "Differences A - B",
                [
                    "structure",
                    "reviewer",
                    "compares",
                    "A",
                    "B",
                    "n",
                    *[DISPLAY[m] for m in PAIRED_DISPLAY],
                ],
                rows,
            ),
        ],
    )


def _group_table(data: ReportData, idx: AggIndex, table: str, title: str) -> Table | None:
    aggs = idx.tables.get(table, [])
    if not aggs:
        return None
    rows = []
    for (run, structure, reviewer, group), members in group_rows(
        aggs, ("run", "structure", "reviewer", "group")
    ).items():
        by_metric = {a["metric"]: a for a in members}
        n = by_metric.get("energy_in_mask", members[0])["n"]
        rows.append(
            [
                structure,
                run,
                reviewer,
                str(group),
                str(n),
                *[with_ci(by_metric.get(m)) for m in GROUP_DISPLAY],
            ]
        )
    rows.sort(key=lambda r: data.structures.index(r[0]))
    return Table(
        title,
        ["structure", "CAM run", "reviewer", "group", "n", *[DISPLAY[m] for m in GROUP_DISPLAY]],
        rows,
    )


def groups_section(data: ReportData, idx: AggIndex) -> Section:
    blocks: list[Any] = []
    if not data.has_labels():
        blocks.append(
            Para(
                "The images have no true labels, so the groupings by true class and "
                "by correct vs misclassified are not available."
            )
        )
    for table, title in (
        ("by_true_class", "By true class"),
        ("by_outcome", "Correct vs misclassified (false positives / negatives named)"),
        ("by_confidence", "By confidence of the prediction"),
    ):
        t = _group_table(data, idx, table, title)
        if t is not None:
            blocks.append(t)
    wrong = {}
    for r in data.rows:
        if r["outcome"] not in ("correct", "unlabeled", "baseline"):
            wrong[(r["model"], r["image_id"])] = [
                r["model"],
                r["image"],
                str(r["true_class"]),
                r["predicted_class"],
                num(r["confidence"]),
                r["outcome"],
            ]
    if wrong:
        blocks.append(
            Table(
                "Every misclassified image",
                ["model", "image", "true", "predicted", "confidence", "outcome"],
                sorted(wrong.values()),
            )
        )
    return Section("Groupings", "groups", blocks)


def correlation_section(data: ReportData, idx: AggIndex, plots: list[Any]) -> Section:
    aggs = idx.tables.get("spearman_confidence", [])
    rows = _pivot(aggs, ("structure", "run", "reviewer"), CORRELATION_DISPLAY, with_ci)
    return Section(
        "Does confidence go with focus?",
        "confidence",
        [
            Para(
                "Spearman's rank correlation between the model's confidence (probability of "
                "the predicted class) and each score, 95 % bootstrap CI over images (shown "
                f"from {MIN_CORRELATION_N} images on). A value near 0 means the model is no surer "
                "of itself when it looks at the structure."
            ),
            Table(
                "Spearman's rho of confidence and score",
                [
                    "structure",
                    "CAM run",
                    "reviewer",
                    "n",
                    *[DISPLAY[m] for m in CORRELATION_DISPLAY],
                ],
                rows,
            ),
            *plots,
        ],
    )


def similarity_section(idx: AggIndex) -> Section:
    aggs = idx.tables.get("heatmap_similarity", [])
    blocks: list[Any] = []
    if aggs:
        rows = []
        for (run, versus), members in group_rows(aggs, ("run", "versus")).items():
            cells = {a["metric"]: a for a in members}
            overlap = next(k for k in cells if k != "rank_correlation")
            rows.append(
                [
                    run,
                    versus,
                    str(cells["rank_correlation"]["n"]),
                    with_ci(cells["rank_correlation"]),
                    with_ci(cells[overlap]),
                ]
            )
        blocks += [
            Para(
                "How different are the methods/layers really? Spearman's rank correlation of "
                "two runs' heatmaps of the same image (model-input grid, pixels inside the "
                "field of view only; 1 = same ordering of pixels) and the IoU of their top-k "
                "regions of the field of view, averaged over images."
            ),
            Table("Heatmap similarity", ["A", "B", "images", "rank correlation", overlap], rows),
        ]
    else:
        blocks.append(Para("One CAM run per model: no heatmaps to compare with each other."))
    return Section("Heatmap similarity", "similarity", blocks)


def verdict_section(data: ReportData, idx: AggIndex) -> Section:
    counts = idx.tables.get("verdict_counts", [])
    if not counts:
        return Section(
            "Review verdicts",
            "verdicts",
            [Para("No reviewer has given a yes/partly/no verdict on these heatmaps.")],
        )
    table: dict[tuple, dict[str, int]] = {}
    for a in counts:
        table.setdefault((a["run"], a["reviewer"]), {})[a["group"]] = a["n"]
    rows = [
        [run, rev, *[str(c.get(v, 0)) for v in VERDICT_ORDER]] for (run, rev), c in table.items()
    ]
    blocks: list[Any] = [
        Para(
            "Reviewers' judgement of each heatmap (does it focus on the relevant region?) "
            "next to the automatic scores of the same heatmaps."
        ),
        Table("Verdict counts", ["CAM run", "reviewer", *VERDICT_ORDER], rows),
    ]
    by = _group_table(data, idx, "by_verdict", "Automatic scores by verdict")
    if by is not None:
        blocks.append(by)
    return Section("Review verdicts", "verdicts", blocks)


def appendix_table(data: ReportData, idx: AggIndex) -> Table:
    rows = [
        [
            a["structure"],
            a["run"],
            a["reviewer"],
            a["metric"],
            str(a["n"]),
            str(a["n_dropped"]),
            num(a["estimate"], 4),
            num(a["ci_low"], 4),
            num(a["ci_high"], 4),
            a["ci_method"],
        ]
        for a in idx.tables.get("summary", [])
    ]
    return Table(
        "Every metric (summary table, complete)",
        [
            "structure",
            "CAM run",
            "reviewer",
            "metric",
            "n",
            "undefined",
            "mean",
            "CI low",
            "CI high",
            "CI",
        ],
        rows,
        note="undefined: images where the metric has no value (e.g. the mask lies outside the "
        "field of view).",
    )
