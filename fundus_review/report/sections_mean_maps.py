"""The report's "Dataset-mean heatmaps" section and its report.json part (``app.mean_maps``).

One grid of mean maps per frame (rows: CAM runs; columns: all images, each true class, each
predicted class, correct / misclassified), the n of every panel in its title, and a table of
the numbers that make a corner artifact visible without the picture: the share of heatmap mass
outside the field of view and in the photograph's corners (bootstrap CI, next to a uniform
map's share) and the share of images whose map peaks in a corner (Wilson CI).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fundus_review.app.mean_maps import MeanMapGroup, MeanMapSet, mean_maps
from fundus_review.app.selection import ResultSelection
from fundus_review.core.mean_maps import CORNER_INNER
from fundus_review.data.fov import FovCache
from fundus_review.report.data import ReportData
from fundus_review.report.document import Para, Plot, Section, Table, interval
from fundus_review.report.figures import new_figure
from fundus_review.store.db import Database

__all__ = ["MeanMapFindings", "collect_mean_maps", "mean_maps_json", "mean_maps_section"]

ANCHOR = "mean-maps"
# A run is flagged when the mass outside the FOV (or in the corners) is at least this share and
# its CI's lower end lies above a uniform map's share.
OFF_FOV_FLAG = 0.4
CORNER_FLAG = 0.25
FRAME_TITLES = {"fov": "field-of-view frame", "disc": "optic-disc frame"}


@dataclass
class MeanMapFindings:
    maps: MeanMapSet
    table: list[dict[str, Any]]
    run_labels: dict[int, str]


def collect_mean_maps(
    db: Database,
    selection: ResultSelection,
    data: ReportData,
    fov_cache: FovCache,
    *,
    seed: int = 0,
    n_resamples: int = 1000,
) -> MeanMapFindings:
    found = mean_maps(db, selection, fov_cache=fov_cache)
    data.problems.extend(found.problems)
    labels = {r.run_id: r.label for r in data.runs if not r.is_baseline}
    return MeanMapFindings(found, found.table(seed, n_resamples), labels)


def _label(f: MeanMapFindings, run_id: int, model: str, method: str) -> str:
    return f.run_labels.get(run_id, f"{model} | {method}")


def _pct(share: dict[str, Any] | None) -> str:
    if not share or share.get("mean") is None:
        return "-"
    text = interval(100 * share["mean"], 100 * share["ci_low"], 100 * share["ci_high"], 1)
    ref = share.get("uniform")
    return text + ("" if ref is None else f" (uniform {100 * ref:.1f})")


def _peak(p: dict[str, Any] | None) -> str:
    if not p or not p.get("n"):
        return "-"
    rate = interval(100 * p["rate"], 100 * p["ci_low"], 100 * p["ci_high"], 0)
    return f"{p['k']}/{p['n']} = {rate}"


def _panel_title(g: MeanMapGroup) -> str:
    head = {"all": "", "true class": "true ", "predicted class": "pred. ", "outcome": ""}[
        g.grouping
    ]
    return f"{head}{g.group} (n={g.n})"


def mean_map_plot(f: MeanMapFindings, frame: str) -> Plot | None:
    """The grid of one frame: runs x groups; NaN cells (no image covers them) in grey."""
    runs = [r for r in f.maps.runs() if f.maps.panels(r[0], frame)]
    if not runs:
        return None
    columns: list[tuple[str, str]] = []
    for run_id, _, _ in runs:
        for g in f.maps.panels(run_id, frame):
            if (g.grouping, g.group) not in columns:
                columns.append((g.grouping, g.group))
    grid = f.maps.grids[frame]
    fig = new_figure(1.2 + 1.9 * len(columns), 0.8 + 2.0 * len(runs))
    axes = np.atleast_2d(fig.subplots(len(runs), len(columns), squeeze=False))
    image = None
    e = grid.extent
    circle = np.linspace(0, 2 * np.pi, 200)
    for i, (run_id, model, method) in enumerate(runs):
        for j, (grouping, group) in enumerate(columns):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            g = f.maps.get(run_id, frame, grouping, group)
            if g is None:
                ax.set_axis_off()
                continue
            image = ax.imshow(
                np.ma.masked_invalid(g.acc.mean()),
                cmap=_cmap(),
                vmin=0.0,
                vmax=1.0,
                extent=(-e, e, e, -e),
                interpolation="bilinear",
            )
            # the FOV circle (fov frame) or the disc (disc frame): one unit around the centre
            ax.plot(np.cos(circle), np.sin(circle), color="white", lw=0.7, ls="--")
            ax.set_title(_panel_title(g), fontsize=7)
            if j == 0:
                ax.set_ylabel(_wrap(_label(f, run_id, model, method)), fontsize=6)
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.6, label="mean heatmap value")
    if frame == "fov":
        caption = (
            "Where each run looks on average, every photograph registered to its field of view: "
            "the dashed circle is the edge of the retina's image, the square around it the "
            "photograph's corners, grey where no photograph reaches. A bright spot outside the "
            "circle, or in the same place for every class, is something the model uses that is "
            "not anatomy (a marker, a corner, burned-in text). n = heatmaps in the panel."
        )
    else:
        caption = (
            "The same maps registered to the expert optic disc (dashed circle: the disc, one "
            "disc radius; the frame spans "
            f"{e:g} disc radii each side), only images with an expert disc. Left eyes are "
            "mirrored"
            + (" " if f.maps.mirror else " not ")
            + "so every disc sits like a right eye's: the macula lies to the left, about five "
            "disc radii from the centre. A glaucoma model should light up the centre."
        )
    return Plot(f"Dataset-mean heatmaps - {FRAME_TITLES[frame]}", fig, caption)


def _cmap():  # noqa: ANN202 - a matplotlib colormap
    from matplotlib import colormaps

    return colormaps["jet"].with_extremes(bad="#9a9a9a")


def _wrap(text: str, width: int = 28) -> str:
    words, lines, line = text.split(" "), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join([*lines, line])


def _above(share: dict[str, Any] | None, floor: float) -> bool:
    """A share at least ``floor`` whose CI lies above a uniform map's share."""
    if not share or share.get("mean") is None or share["mean"] < floor:
        return False
    return share.get("uniform") is None or (share.get("ci_low") or 0.0) > share["uniform"]


def _ci_pct(share: dict[str, Any]) -> str:
    return (
        f"{100 * share['mean']:.0f} % (95 % CI {100 * share['ci_low']:.0f}-"
        f"{100 * share['ci_high']:.0f} %; a uniform map: {100 * share['uniform']:.0f} %)"
    )


def flagged_runs(f: MeanMapFindings) -> list[str]:
    """One sentence per run whose maps clearly sit outside the retina, for all its images or
    for one true class (a class-specific marker is diluted in the mean over all images)."""
    out = []
    for run_id, model, method in f.maps.runs():
        rows = [
            r for r in f.table
            if r["run_id"] == run_id and r["frame"] == "fov" and r["grouping"] in ("all", "true class")
            and (_above(r.get("off_fov_share"), OFF_FOV_FLAG) or _above(r.get("corner_share"), CORNER_FLAG))
        ]  # fmt: skip
        if not rows:
            continue
        # all images when they qualify (the broadest statement), else the worst true class
        every = [r for r in rows if r["grouping"] == "all"]
        worst = every[0] if every else max(rows, key=lambda r: r["off_fov_share"]["mean"])
        where = "all images" if worst["grouping"] == "all" else f"true class {worst['group']}"
        out.append(
            f"{_label(f, run_id, model, method)}, {where} (n = {worst['n']}): "
            f"{_ci_pct(worst['off_fov_share'])} of the heatmap mass lies outside the field of "
            f"view and {_ci_pct(worst['corner_share'])} in the photograph's corners; "
            f"{_peak(worst.get('peak_in_corner'))} % of the maps peak in a corner. The model "
            "looks outside the retina: an artifact, not anatomy."
        )
    return out


def mean_maps_section(f: MeanMapFindings | None) -> Section | None:
    if f is None or not f.maps.groups:
        return None
    blocks: list[Any] = [
        Para(
            "Each CAM run's heatmaps averaged over images, per true class, predicted class and "
            "outcome, after registering every photograph to a common frame, so that photographs "
            "of different sizes and cameras add up. The numbers below read the same maps: how "
            "much of each heatmap lies outside the field of view and in the four corners "
            f"(beyond {CORNER_INNER:g} field-of-view radii on both axes), averaged over images, "
            "next to what a uniform map would put there; and how often a map's maximum falls in "
            "a corner. Honest maps stay inside the circle."
        )
    ]
    blocks += [Para(s) for s in flagged_runs(f)]
    for frame in f.maps.grids:
        plot = mean_map_plot(f, frame)
        if plot is not None:
            blocks.append(plot)
    rows = []
    for row in f.table:
        if row["frame"] != "fov":
            continue
        rows.append(
            [
                _label(f, row["run_id"], row["model"], row["method"]),
                row["group"] if row["grouping"] in ("all", "outcome") else
                f"{row['grouping']}: {row['group']}",
                str(row["n"]),
                _pct(row.get("off_fov_share")),
                _pct(row.get("corner_share")),
                _peak(row.get("peak_in_corner")),
            ]
        )  # fmt: skip
    blocks.append(
        Table(
            "Heatmap mass outside the field of view and in the corners (per cent)",
            ["run", "group", "n", "outside FOV % [CI]", "in corners % [CI]", "peak in a corner %"],
            rows,
            note=(
                "Shares are means over images with 95 % percentile-bootstrap CIs; peaks: "
                "images whose map has its maximum in a corner, Wilson 95 % CI. 'uniform': the "
                f"share a constant map would have there. Images with an expert disc: "
                f"{f.maps.disc_images} of {f.maps.images}."
            ),
        )
    )
    return Section("Dataset-mean heatmaps", ANCHOR, blocks)


def mean_maps_json(f: MeanMapFindings | None) -> dict[str, Any] | None:
    """report.json "mean_maps": the settings and every group's numbers (not the grids: those
    are `fundus-review export mean-maps`)."""
    if f is None:
        return None
    rows = [{**r, "run": _label(f, r["run_id"], r["model"], r["method"])} for r in f.table]
    return {**f.maps.settings(), "groups": rows}
