"""One figure style for the whole book: palette, rcParams, tables, glue and shared axis helpers.

Every chapter calls :func:`use_book_style` once (or uses :func:`book_style`
as a context manager); all figures then share fonts, colours and grid.
Colours come from the Okabe–Ito palette, which stays distinguishable for
colour-blind readers. A layer-wise rule's label and colour come from the rule
registry (:func:`rpbook.masks.register_rule`), so a new rule is drawn the same
way in every chapter without touching this module. Chapter 1 introduces the
style; every chapter module (``rpbook.chapters.ch1_start_sparse`` ...) uses it.
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterator, Mapping, Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np

from ..masks import rule_color, rule_label

#: Okabe–Ito colours, by name.
PALETTE: dict[str, str] = {
    "black": "#000000", "orange": "#E69F00", "sky": "#56B4E9", "green": "#009E73",
    "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "purple": "#CC79A7",
    "grey": "#7F7F7F",
}


#: Units on an input-output path, and units cut off from every path.
LIVE_COLOR = PALETTE["blue"]
DEAD_COLOR = PALETTE["vermillion"]

BOOK_RC: dict[str, object] = {
    "figure.figsize": (6.4, 3.6),
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "figure.constrained_layout.use": True,
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "axes.prop_cycle": mpl.cycler(color=[PALETTE[c] for c in ("blue", "orange", "green", "purple", "sky", "vermillion", "black")]),
    "legend.frameon": False,
    "legend.fontsize": 9,
    "lines.linewidth": 1.8,
    "image.cmap": "viridis",
}


def use_book_style() -> None:
    """Apply the book's matplotlib style to every following figure (chapter 1)."""
    mpl.rcParams.update(BOOK_RC)


@contextlib.contextmanager
def book_style() -> Iterator[None]:
    """Context manager: the book's style inside the block, the previous style after it."""
    with mpl.rc_context(BOOK_RC):
        yield


def axes_or_new(ax: "plt.Axes | None", figsize: tuple[float, float] = (6.4, 3.6)) -> "plt.Axes":
    """``ax``, or the axes of a new figure of ``figsize`` (every chapter's figures take an optional ``ax``)."""
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def density_ticks(ax: "plt.Axes", densities: Sequence[float]) -> None:
    """Log-scaled density axis with plain-number tick labels (chapter 2)."""
    ax.set_xscale("log")
    ax.set_xticks(list(densities), [f"{d:g}" for d in densities])
    ax.minorticks_off()


def nice_number(x: float) -> str:
    """A count for a label: 1234567 -> '1.23M', 12.0 -> '12'."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    for size, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= size:
            return f"{x / size:.3g}{suffix}"
    return f"{x:.3g}"


# ----------------------------------------------------------------------------- tables and numbers in prose


class Table:
    """A small table that shows as HTML in notebooks and the book, and as aligned text elsewhere.

    Chapter 1 uses it for the per-layer densities, parameters and FLOPs of
    each rule. ``formats`` maps a column to a format spec (``"{:.3f}"``).
    """

    def __init__(self, rows: Sequence[Mapping[str, object]], *, formats: Mapping[str, str] | None = None,
                 caption: str | None = None):
        if not rows:
            raise ValueError("a Table needs at least one row")
        self.rows = [dict(r) for r in rows]
        self.columns = list(self.rows[0])
        self.formats = dict(formats or {})
        self.caption = caption

    def _cell(self, row: Mapping[str, object], col: str) -> str:
        value = row.get(col, "")
        fmt = self.formats.get(col)
        if fmt and isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
            return fmt.format(value)
        return str(value)

    def __repr__(self) -> str:
        cells = [[self._cell(r, c) for c in self.columns] for r in self.rows]
        widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(self.columns)]
        text = [all(isinstance(r.get(c), str) for r in self.rows) for c in self.columns]  # text left, numbers right

        def line(values: Sequence[str]) -> str:
            return "  ".join(v.ljust(w) if t else v.rjust(w) for v, w, t in zip(values, widths, text)).rstrip()

        head = line(self.columns)
        lines = [head, "-" * len(head)] + [line(row) for row in cells]
        return "\n".join(([self.caption] if self.caption else []) + lines)

    def _repr_html_(self) -> str:
        import html

        text = [all(isinstance(r.get(c), str) for r in self.rows) for c in self.columns]
        pad = "padding: 0.15em 0.7em;"  # inline, so the table reads the same in Jupyter, Colab and the book

        def align(is_text: bool) -> str:
            return f'style="{pad} text-align: {"left" if is_text else "right"};"'

        head = "".join(f"<th {align(t)}>{html.escape(c)}</th>" for c, t in zip(self.columns, text))
        body = "".join("<tr>" + "".join(f"<td {align(t)}>{html.escape(self._cell(r, c))}</td>"
                                        for c, t in zip(self.columns, text)) + "</tr>" for r in self.rows)
        caption = f"<caption>{html.escape(self.caption)}</caption>" if self.caption else ""
        return (f'<table class="rpbook-table">{caption}<thead><tr>{head}</tr></thead>'
                f"<tbody>{body}</tbody></table>")


def glue(name: str, value: object) -> None:
    """Hand a computed value to the book's prose (myst-nb ``glue``, shown nowhere in the cell).

    Chapter 1: every number in the text comes from a cell. The markdown cites
    it as ``{glue:text}`name:.2f```. Outside a book build (Colab, plain
    Jupyter) myst-nb may be missing; then nothing happens, and the cell's own
    printed output carries the number.
    """
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        return
    if isinstance(value, (np.generic, np.ndarray)) and np.ndim(value) == 0:
        value = value.item()  # a NumPy scalar's repr (np.float64(...)) would not format in the text
    myst_glue(name, value, display=False)


def log_ticks(ax: "plt.Axes") -> None:
    """Logarithmic y axis labelled with plain numbers at 1, 2, 5 × 10^k (for short ranges)."""
    import matplotlib.ticker as mticker

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(mticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(mticker.FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(mticker.NullFormatter())


def errorbar(ax: "plt.Axes", x: Sequence[float], mean: Sequence[float], std: Sequence[float], **kw) -> None:
    """Mean line with a ± one standard deviation band (over seeds)."""
    x, mean, std = np.asarray(x, float), np.asarray(mean, float), np.asarray(std, float)
    line, = ax.plot(x, mean, marker="o", ms=4, **kw)
    ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.18, lw=0)




def density_colors(densities: Sequence[float]) -> dict[float, tuple]:
    """One colour per density, dark for sparse, light for dense (chapters 4 and 6)."""
    cmap = mpl.colormaps["viridis"]
    ordered = sorted(densities)
    return {p: cmap(0.85 * i / max(1, len(ordered) - 1)) for i, p in enumerate(ordered)}


def source_density_color(density: float) -> str:
    """Colour of an ER source density (chapters 6 and 7): black for the full network, then green, orange, purple."""
    table = {1.0: PALETTE["black"], 0.5: PALETTE["green"], 0.3: PALETTE["purple"], 0.2: PALETTE["orange"]}
    return table.get(float(density), PALETTE["grey"])


__all__ = ["PALETTE", "LIVE_COLOR", "DEAD_COLOR", "BOOK_RC", "use_book_style", "book_style", "axes_or_new",
           "density_ticks", "nice_number", "Table", "glue", "log_ticks", "errorbar", "rule_color", "rule_label",
           "density_colors", "source_density_color"]
