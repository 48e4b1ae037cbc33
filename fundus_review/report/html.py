"""Render a ``Document`` as one self-contained HTML file: inline CSS, images as base64 PNG.

Nothing is fetched from a network or read from a neighbouring file, so the report can be mailed or
archived as one file and still opens years later.
"""

from __future__ import annotations

import base64
import io
from html import escape
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from fundus_review.report.document import Document, Gallery, Para, Plot, Table

PLOT_DPI = 130

CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1500px; padding: 0 1.5em; color: #222; line-height: 1.4; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #ccc; margin-top: 2em; }
h3 { margin-top: 1.4em; }
.subtitle { color: #555; margin: 0.1em 0; }
nav ol { columns: 2; }
table { border-collapse: collapse; margin: 0.6em 0 0.2em 0; font-size: 0.85em; }
caption { text-align: left; font-weight: bold; padding: 0.3em 0; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; vertical-align: top; }
th { background: #f0f0f0; } tr:nth-child(even) td { background: #fafafa; }
td { font-variant-numeric: tabular-nums; }
.note { color: #555; font-size: 0.85em; margin-top: 0.2em; }
figure { margin: 1em 0; } figure img { max-width: 100%; }
figcaption { color: #444; font-size: 0.85em; }
.gallery { display: flex; flex-wrap: wrap; gap: 12px; }
.tile { border: 1px solid #ddd; padding: 6px; margin: 0; width: 700px; max-width: 100%; }
.tile figcaption { font-size: 0.78em; } .tile b { word-break: break-all; }
"""


def png_base64(rgb: np.ndarray) -> str:
    buf = io.BytesIO()
    PILImage.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def figure_png(plot: Plot) -> bytes:
    buf = io.BytesIO()
    # No metadata: the bytes then depend on the figure alone.
    plot.figure.savefig(buf, format="png", dpi=PLOT_DPI, metadata={"Software": None})
    return buf.getvalue()


def _table(t: Table) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in t.columns)
    body = "\n".join(
        "<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in t.rows
    )
    note = f'<p class="note">{escape(t.note)}</p>' if t.note else ""
    if not t.rows:
        body = f'<tr><td colspan="{len(t.columns)}">none</td></tr>'
    return (
        f"<table><caption>{escape(t.title)}</caption><thead><tr>{head}</tr></thead>"
        f"<tbody>\n{body}\n</tbody></table>{note}"
    )


def _plot(p: Plot, pngs: dict[int, bytes]) -> str:
    data = base64.b64encode(pngs[id(p)]).decode("ascii")
    return (
        f'<figure><img alt="{escape(p.title)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{escape(p.caption)}</figcaption></figure>"
    )


def _gallery(g: Gallery) -> str:
    tiles = []
    for t in g.tiles:
        lines = "<br>".join(escape(x) for x in t.lines)
        tiles.append(
            f'<figure class="tile"><img alt="{escape(t.title)}" '
            f'src="data:image/png;base64,{png_base64(t.image)}">'
            f"<figcaption><b>{escape(t.title)}</b><br>{lines}</figcaption></figure>"
        )
    body = "\n".join(tiles) or "<p>No tile could be drawn.</p>"
    return (
        f'<h3>{escape(g.title)}</h3><p class="note">{escape(g.note)}. Panels: original | '
        "heatmap | overlay with the expert contour (green) and the heatmap maximum (white "
        f'cross).</p><div class="gallery">\n{body}\n</div>'
    )


def render_html(doc: Document, path: Path, pngs: dict[int, bytes]) -> Path:
    """Write ``doc`` to ``path``; ``pngs`` maps id(Plot) to its PNG bytes."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(doc.title)}</title><style>{CSS}</style></head><body>",
        f"<header><h1>{escape(doc.title)}</h1>",
        *[f'<p class="subtitle">{escape(line)}</p>' for line in doc.subtitle],
        "</header><nav><h2>Contents</h2><ol>",
        *[f'<li><a href="#{s.anchor}">{escape(s.title)}</a></li>' for s in doc.sections],
        "</ol></nav>",
    ]
    for section in doc.sections:
        parts.append(f'<section id="{section.anchor}"><h2>{escape(section.title)}</h2>')
        for block in section.blocks:
            if isinstance(block, Para):
                parts.append(f"<p>{escape(block.text)}</p>")
            elif isinstance(block, Table):
                parts.append(_table(block))
            elif isinstance(block, Plot):
                parts.append(_plot(block, pngs))
            elif isinstance(block, Gallery):
                parts.append(_gallery(block))
        parts.append("</section>")
    parts.append("</body></html>")
    tmp = path.with_name(path.name + ".part")
    tmp.write_text("\n".join(parts), encoding="utf-8")
    tmp.replace(path)
    return path
