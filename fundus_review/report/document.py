"""The report as a renderer-neutral document: sections of paragraphs, tables, plots and galleries.

The HTML and the PDF are two renderings of one ``Document``, so they always hold the same
content; the formatting helpers here make every number look the same in both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from matplotlib.figure import Figure


@dataclass
class Para:
    text: str


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]]
    note: str = ""


@dataclass
class Plot:
    title: str
    figure: Figure
    caption: str = ""


@dataclass
class Tile:
    image: np.ndarray  # RGB uint8: original | heatmap | overlay with the expert contour
    title: str
    lines: list[str]


@dataclass
class Gallery:
    title: str
    note: str
    tiles: list[Tile]


Block = Para | Table | Plot | Gallery


@dataclass
class Section:
    title: str
    anchor: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Document:
    title: str
    subtitle: list[str]
    sections: list[Section]


def num(value: Any, digits: int = 3) -> str:
    """A number as the report prints it; "-" for a missing value."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    v = float(value)
    if not math.isfinite(v):
        return "-"
    return f"{v:.{digits}f}"


def interval(value: float | None, low: float | None, high: float | None, digits: int = 3) -> str:
    """ "value [low, high]" with the same digits throughout; "-" without a value."""
    if value is None:
        return "-"
    if low is None:
        return num(value, digits)
    return f"{num(value, digits)} [{num(low, digits)}, {num(high, digits)}]"


def with_ci(agg: dict[str, Any] | None, digits: int = 3) -> str:
    """ "mean [low, high]" of an aggregate row."""
    if agg is None or agg.get("estimate") is None:
        return "-"
    est = num(agg["estimate"], digits)
    if agg.get("ci_low") is None:
        return est
    return f"{est} [{num(agg['ci_low'], 2)}, {num(agg['ci_high'], 2)}]"


def p_text(p: float | None) -> str:
    if p is None:
        return "-"
    return f"{p:.3f}" if p >= 0.001 else "<0.001"


def short_sha(sha: str | None, n: int = 12) -> str:
    return "-" if not sha else sha[:n]
