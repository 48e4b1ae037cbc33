"""Render a ``Document`` as a PDF (matplotlib's PdfPages): the same sections as the HTML.

Landscape A4 pages. Tables are set in a monospaced font, split over pages with their header
repeated and long cells wrapped (never cut); plots and gallery tiles are placed as images. Text
uses the PDF standard fonts (Helvetica, Courier: nothing embedded, an order of magnitude faster to
write than embedded TrueType glyphs) when every string of the document is Latin-1; a document with
other characters (a reviewer named Łukasz, a dataset folder in Greek) embeds matplotlib's DejaVu
fonts instead, so nothing prints as "?".
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from PIL import Image as PILImage

from fundus_review.report.document import Document, Gallery, Para, Plot, Section, Table
from fundus_review.report.figures import new_figure
from fundus_review.report.html import PLOT_DPI

PAGE_W, PAGE_H = 11.69, 8.27  # inches, A4 landscape
MARGIN = 0.45
USABLE_W_PT = (PAGE_W - 2 * MARGIN) * 72
CHAR_W = 0.6  # advance width of a Courier (or DejaVu Sans Mono: 0.602) glyph, per font size
TILE_COLS, TILE_ROWS = 2, 4


def latin1(text: str) -> str:
    return text.encode("latin-1", "replace").decode("latin-1")


@dataclass(frozen=True)
class Fonts:
    rc: dict
    mono: str
    sans: str
    regular: str  # the regular weight's name in the fonts' metrics
    clean: Callable[[str], str]


CORE_FONTS = Fonts(
    {"pdf.use14corefonts": True, "pdf.compression": 6}, "Courier", "Helvetica", "medium", latin1
)
EMBEDDED_FONTS = Fonts(
    {"pdf.use14corefonts": False, "pdf.fonttype": 42, "pdf.compression": 6},
    "DejaVu Sans Mono",
    "DejaVu Sans",
    "normal",
    str,
)


def _strings(doc: Document) -> Iterator[str]:
    yield doc.title
    yield from doc.subtitle
    for section in doc.sections:
        yield section.title
        for block in section.blocks:
            if isinstance(block, Para):
                yield block.text
            elif isinstance(block, Table):
                yield block.title
                yield block.note
                yield from block.columns
                for row in block.rows:
                    yield from (str(c) for c in row)
            elif isinstance(block, Gallery):
                yield block.title
                yield block.note
                for tile in block.tiles:
                    yield tile.title
                    yield from tile.lines


def fonts_for(doc: Document) -> Fonts:
    """The standard fonts when they can print every character of `doc`, else embedded ones."""
    try:
        for text in _strings(doc):
            text.encode("latin-1")
    except UnicodeEncodeError:
        return EMBEDDED_FONTS
    return CORE_FONTS


class _Pages:
    """A cursor over text pages: lines go down the page, a full page is flushed to the PDF."""

    def __init__(self, pdf: PdfPages, fonts: Fonts) -> None:
        self.pdf = pdf
        self.fonts = fonts
        self.fig: Figure | None = None
        self.y = 0.0  # inches from the top

    def _new(self) -> None:
        self.flush()
        self.fig = new_figure(PAGE_W, PAGE_H)
        self.fig.set_layout_engine(None)
        self.y = MARGIN

    def flush(self) -> None:
        if self.fig is not None:
            self.pdf.savefig(self.fig)
            self.fig = None

    def room(self, inches: float) -> None:
        if self.fig is None or self.y + inches > PAGE_H - MARGIN:
            self._new()

    def text(self, s: str, size: float = 9, mono: bool = False, bold: bool = False) -> None:
        step = size * 1.35 / 72
        self.room(step)
        assert self.fig is not None
        self.fig.text(
            MARGIN / PAGE_W,
            1 - (self.y + step * 0.8) / PAGE_H,
            self.fonts.clean(s),
            fontsize=size,
            family=self.fonts.mono if mono else self.fonts.sans,
            va="baseline",
            weight="bold" if bold else self.fonts.regular,
        )
        self.y += step

    def para(self, s: str, size: float = 9) -> None:
        width = int(USABLE_W_PT / (size * 0.5))
        for line in textwrap.wrap(s, width) or [""]:
            self.text(line, size)
        self.y += 0.05

    def image(self, rgb: np.ndarray, height_in: float) -> None:
        self.room(height_in)
        assert self.fig is not None
        h, w = rgb.shape[:2]
        width_in = min(PAGE_W - 2 * MARGIN, height_in * w / h)
        height_in = width_in * h / w
        ax = self.fig.add_axes(
            (
                MARGIN / PAGE_W,
                1 - (self.y + height_in) / PAGE_H,
                width_in / PAGE_W,
                height_in / PAGE_H,
            )
        )
        ax.imshow(rgb, interpolation="antialiased")
        ax.set_axis_off()
        self.y += height_in + 0.05


def _column_widths(t: Table) -> tuple[list[int], float]:
    natural = [max([len(c)] + [len(str(r[i])) for r in t.rows]) for i, c in enumerate(t.columns)]
    widths = [min(w, 48) for w in natural]
    min_size = 4.8
    while sum(widths) + 2 * len(widths) > USABLE_W_PT / (CHAR_W * min_size) and max(widths) > 8:
        k = widths.index(max(widths))
        widths[k] = max(8, int(widths[k] * 0.85))
    total = sum(widths) + 2 * len(widths)
    size = max(min_size, min(8.0, USABLE_W_PT / (CHAR_W * total)))
    return widths, size


def _row_lines(cells: list[str], widths: list[int]) -> list[str]:
    wrapped = [
        textwrap.wrap(str(c), w, break_long_words=True) or [""]
        for c, w in zip(cells, widths, strict=True)
    ]
    height = max(len(w) for w in wrapped)
    return [
        "  ".join((w[i] if i < len(w) else "").ljust(widths[k]) for k, w in enumerate(wrapped))
        for i in range(height)
    ]


def _table(pages: _Pages, t: Table) -> None:
    widths, size = _column_widths(t)
    header = _row_lines(t.columns, widths)
    rule = "  ".join("-" * w for w in widths)
    pages.room(0.5)
    pages.text(t.title, 9.5, bold=True)
    for line in [*header, rule]:
        pages.text(line, size, mono=True)
    step = size * 1.35 / 72
    for row in t.rows or [["none"] + [""] * (len(t.columns) - 1)]:
        lines = _row_lines(row, widths)
        if pages.y + step * len(lines) > PAGE_H - MARGIN:
            pages.room(PAGE_H)  # next page, header again
            pages.text(f"{t.title} (continued)", 9.5, bold=True)
            for line in [*header, rule]:
                pages.text(line, size, mono=True)
        for line in lines:
            pages.text(line, size, mono=True)
    if t.note:
        pages.para(t.note, 7.5)
    pages.y += 0.12


def _plot(pages: _Pages, p: Plot, png: bytes, dpi: float, fit: bool = False) -> None:
    """``fit``: shrink the plot into what is left of the page (the first page's figure)."""
    rgb = np.asarray(PILImage.open(io.BytesIO(png)).convert("RGB"))
    h, w = rgb.shape[:2]
    # Natural size, shrunk to the page width and to one page's height at most.
    width_in = min(w / dpi, PAGE_W - 2 * MARGIN)
    height_in = min(width_in * h / w, PAGE_H - 2 * MARGIN - 0.9)
    if fit and pages.fig is not None:
        height_in = max(1.5, min(height_in, PAGE_H - MARGIN - pages.y - 0.8))
    pages.room(height_in + 0.8)
    pages.text(p.title, 11, bold=True)
    pages.image(rgb, height_in)
    pages.para(p.caption, 8)
    pages.y += 0.1


def _gallery(pages: _Pages, g: Gallery) -> None:
    per_page = TILE_COLS * TILE_ROWS
    col_w = (PAGE_W - 2 * MARGIN - 0.3) / TILE_COLS
    for start in range(0, max(1, len(g.tiles)), per_page):
        pages.room(PAGE_H)
        fig = pages.fig
        assert fig is not None
        pages.text(g.title + (" (continued)" if start else ""), 10.5, bold=True)
        if not start:
            pages.para(
                g.note + ". Panels: original | heatmap | overlay with the expert contour "
                "(green) and the heatmap maximum (white cross).",
                7.5,
            )
        top = pages.y
        cell_h = (PAGE_H - MARGIN - top) / TILE_ROWS
        for k, tile in enumerate(g.tiles[start : start + per_page]):
            row, col = divmod(k, TILE_COLS)
            x = MARGIN + col * (col_w + 0.3)
            y = top + row * cell_h
            h, w = tile.image.shape[:2]
            img_w = col_w
            img_h = min(cell_h - 0.62, img_w * h / w)
            img_w = img_h * w / h
            ax = fig.add_axes(
                (x / PAGE_W, 1 - (y + img_h) / PAGE_H, img_w / PAGE_W, img_h / PAGE_H)
            )
            ax.imshow(tile.image, interpolation="antialiased")
            ax.set_axis_off()
            caption = [tile.title, *tile.lines]
            for i, line in enumerate(caption[:6]):
                fig.text(
                    x / PAGE_W,
                    1 - (y + img_h + 0.1 + i * 0.095) / PAGE_H,
                    pages.fonts.clean(textwrap.shorten(line, 120, placeholder="...")),
                    fontsize=5.8,
                    family=pages.fonts.sans,
                    weight="bold" if i == 0 else pages.fonts.regular,
                    va="top",
                )
        pages.y = PAGE_H  # the next block starts on a new page


def _section(
    pages: _Pages, section: Section, pngs: dict[int, bytes], first_page: bool = False
) -> None:
    pages.room(PAGE_H * 0.25)
    pages.y += 0.1
    pages.text(section.title, 13, bold=True)
    for block in section.blocks:
        if isinstance(block, Para):
            pages.para(block.text)
        elif isinstance(block, Table):
            _table(pages, block)
        elif isinstance(block, Plot):
            _plot(pages, block, pngs[id(block)], PLOT_DPI, fit=first_page)
        elif isinstance(block, Gallery):
            _gallery(pages, block)


def render_pdf(doc: Document, path: Path, pngs: dict[int, bytes]) -> Path:
    fonts = fonts_for(doc)
    with matplotlib.rc_context(fonts.rc):
        return _render(doc, path, pngs, fonts)


def _render(doc: Document, path: Path, pngs: dict[int, bytes], fonts: Fonts) -> Path:
    tmp = path.with_name(path.name + ".part")
    with PdfPages(tmp, metadata={"Title": doc.title, "Creator": "fundus-review"}) as pdf:
        pages = _Pages(pdf, fonts)
        pages.room(PAGE_H)
        pages.text(doc.title, 18, bold=True)
        for line in doc.subtitle:
            pages.text(line, 10)
        pages.y += 0.1
        sections = list(doc.sections)
        # The headline is the first page (its text and figure); the contents follow it.
        if sections and sections[0].anchor == "headline":
            _section(pages, sections.pop(0), pngs, first_page=True)
            pages.room(PAGE_H)
        pages.text("Contents", 12, bold=True)
        for i, s in enumerate(doc.sections, start=1):
            pages.text(f"{i}. {s.title}", 10)
        for section in sections:
            _section(pages, section, pngs)
        pages.flush()
    tmp.replace(path)
    return path
