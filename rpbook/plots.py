"""One figure style for the whole book, and its recurring figures.

Every chapter calls :func:`use_book_style` once (or uses :func:`book_style`
as a context manager); all figures then share fonts, colours and grid.
Colours come from the Okabe–Ito palette, which stays distinguishable for
colour-blind readers; each layer-wise rule keeps its colour in every chapter
(:data:`RULE_COLORS`).

The drawings of masks as graphs live here rather than in
:mod:`rpbook.graphs`, so that the graph statistics stay headless (no
matplotlib import). Chapter 1 introduces the style; chapter 2 uses the graph
drawings.
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterator, Mapping, Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import networkx as nx
import numpy as np
from scipy import stats

from .graphs import layered_positions

#: Okabe–Ito colours, by name.
PALETTE: dict[str, str] = {
    "black": "#000000", "orange": "#E69F00", "sky": "#56B4E9", "green": "#009E73",
    "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "purple": "#CC79A7",
    "grey": "#7F7F7F",
}

#: The colour of each layer-wise density rule, in every chapter.
RULE_COLORS: dict[str, str] = {
    "uniform": PALETTE["blue"], "er": PALETTE["green"], "erk": PALETTE["orange"],
    "balanced": PALETTE["purple"], "pyramidal": PALETTE["sky"], "dense": PALETTE["black"],
}

#: Display names of the rules (chapter 2).
RULE_LABELS: dict[str, str] = {
    "uniform": "uniform", "er": "ER", "erk": "ERK", "balanced": "balanced", "pyramidal": "pyramidal", "dense": "dense",
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


def _axes(ax: "plt.Axes | None", figsize: tuple[float, float] = (6.4, 3.6)) -> "plt.Axes":
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


# ----------------------------------------------------------------------------- chapter 1


def plot_sparse_training_map(ax: "plt.Axes | None" = None) -> "plt.Axes":
    """The four families of sparse training as density over training time (chapter 1).

    Dense-to-sparse training starts dense and prunes gradually; pruning at
    initialisation scores weights once, before training; static random masks
    need no scores at all; dynamic sparse training keeps the density fixed and
    moves the mask. A schematic, not data.
    """
    ax = _axes(ax, (7.0, 3.8))
    t = np.linspace(0, 1, 400)
    p = 0.1
    gradual = np.where(t < 0.2, 1.0, np.where(t > 0.7, p, p + (1 - p) * (1 - (t - 0.2) / 0.5) ** 3))
    ax.plot(t, gradual, color=PALETTE["black"], label="dense-to-sparse (gradual / iterative pruning)")
    ax.plot(t, np.full_like(t, p + 0.035), color=PALETTE["orange"],
            label="pruning at initialisation (SNIP, GraSP, SynFlow)")
    ax.plot(t, np.full_like(t, p), color=PALETTE["blue"], label="static random mask (ER, ERK, ...)")
    ax.plot(t, np.full_like(t, p - 0.035), color=PALETTE["green"], ls="--",
            label="dynamic sparse training (SET, RigL)")
    updates = np.linspace(0.08, 0.72, 9)
    ax.plot(updates, np.full_like(updates, p - 0.035), "o", ms=4, color=PALETTE["green"])
    ax.annotate("mask scored with data,\nthen fixed", xy=(0.0, p + 0.035), xytext=(0.05, 0.42),
                arrowprops={"arrowstyle": "->", "color": PALETTE["orange"]}, color=PALETTE["orange"], fontsize=9)
    ax.annotate("mask moves\n(drop and grow)", xy=(updates[7], p - 0.035), xytext=(0.76, 0.2),
                arrowprops={"arrowstyle": "->", "color": PALETTE["green"]}, color=PALETTE["green"], fontsize=9)
    t_note = 0.3
    ax.annotate("dense training,\nthen prune", xy=(t_note, p + (1 - p) * (1 - (t_note - 0.2) / 0.5) ** 3),
                xytext=(0.4, 0.6), arrowprops={"arrowstyle": "->"}, fontsize=9)
    ax.set_xlabel("training time (fraction of the run)")
    ax.set_ylabel("density p (fraction of weights kept)")
    ax.set_ylim(0, 1.05)
    ax.set_xlim(-0.02, 1.0)
    ax.legend(loc="upper right", fontsize=8.5)
    return ax


def plot_training_curves(curves: Mapping[str, Sequence[float]], *, ylabel: str = "validation accuracy",
                         colors: Mapping[str, str] | None = None, ax: "plt.Axes | None" = None) -> "plt.Axes":
    """One line per run over epochs, e.g. dense against sparse (chapters 1 and 3)."""
    ax = _axes(ax)
    for label, values in curves.items():
        color = (colors or {}).get(label)
        ax.plot(np.arange(1, len(values) + 1), values, marker="o", ms=3, label=label, color=color)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.legend()
    return ax


# ----------------------------------------------------------------------------- chapter 2


def draw_layered_graph(
    graph: nx.DiGraph,
    ax: "plt.Axes | None" = None,
    *,
    node_size: float | None = None,
    edge_width: float = 0.5,
    edge_alpha: float | None = None,
    layer_labels: bool = True,
    legend: bool = True,
) -> "plt.Axes":
    """Draw a layered DAG from :func:`rpbook.graphs.network_graph` (chapter 2).

    Inputs on the left, outputs on the right. Units on an input-output path
    are blue; units cut off from every path (no way in, or no way out) are
    red. Positions come from :func:`rpbook.graphs.layered_positions`, so the
    picture is the same in every run.
    """
    ax = _axes(ax, (7.0, 3.6))
    pos = layered_positions(graph)
    n_nodes = max(1, graph.number_of_nodes())
    if node_size is None:
        node_size = float(np.clip(1800 / n_nodes, 6, 60))
    if edge_alpha is None:
        edge_alpha = float(np.clip(60 / max(1, graph.number_of_edges()) ** 0.8, 0.08, 0.7))
    colors = [LIVE_COLOR if d.get("on_path", True) else DEAD_COLOR for _, d in graph.nodes(data=True)]
    nx.draw_networkx_edges(graph, pos, ax=ax, arrows=False, width=edge_width, alpha=edge_alpha,
                           edge_color=PALETTE["grey"])
    nx.draw_networkx_nodes(graph, pos, ax=ax, node_size=node_size, node_color=colors, linewidths=0)
    ax.set_axis_off()
    n_layers = 1 + max((d["layer"] for _, d in graph.nodes(data=True)), default=0)
    ax.set_xlim(-0.25, n_layers - 0.75)  # fixed limits: frames of an animation line up
    ax.set_ylim(-1.1, 1.1)
    if legend:
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], ls="", marker="o", ms=5, color=LIVE_COLOR, label="on an input→output path"),
                   Line2D([], [], ls="", marker="o", ms=5, color=DEAD_COLOR, label="on no such path")]
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncols=2, fontsize=8,
                  handletextpad=0.2, borderaxespad=0.2)
    if layer_labels:
        sizes = graph.graph.get("unit_layer_sizes")
        layers = sorted({d["layer"] for _, d in graph.nodes(data=True)})
        for layer in layers:
            x = pos[next(n for n, d in graph.nodes(data=True) if d["layer"] == layer)][0]
            shown = sum(1 for _, d in graph.nodes(data=True) if d["layer"] == layer)
            total = sizes[layer] if sizes else shown
            text = f"{total}" if shown == total else f"{shown} of {total}"
            ax.text(x, 1.08, text, ha="center", va="bottom", fontsize=8, color=PALETTE["grey"])
        ax.set_ylim(-1.1, 1.25)
    return ax


def plot_degree_histogram(
    in_degree: np.ndarray,
    fan_in: int,
    density: float,
    ax: "plt.Axes | None" = None,
    *,
    label: str = "sampled mask",
) -> "plt.Axes":
    """Histogram of units' in-degrees against the ``Binomial(fan_in, p)`` law (chapter 2)."""
    ax = _axes(ax)
    in_degree = np.asarray(in_degree)
    lo, hi = int(in_degree.min()), int(in_degree.max())
    law = stats.binom(fan_in, density)
    lo = min(lo, int(law.ppf(0.001)))
    hi = max(hi, int(law.ppf(0.999)))
    k = np.arange(lo, hi + 1)
    counts = np.bincount(in_degree - lo, minlength=len(k))[: len(k)]
    ax.bar(k, counts / counts.sum(), width=0.9, color=PALETTE["sky"], label=label)
    ax.plot(k, law.pmf(k), "o-", ms=3, color=PALETTE["black"], label=f"Binomial({fan_in}, {density:.3g})")
    ax.set_xlabel("in-degree (kept incoming weights of a unit)")
    ax.set_ylabel("fraction of units")
    ax.legend()
    return ax


def plot_layer_densities(
    layer_names: Sequence[str],
    densities: Mapping[str, Sequence[float]],
    ax: "plt.Axes | None" = None,
    *,
    log: bool = False,
) -> "plt.Axes":
    """Grouped bars: the density each rule gives each layer (chapter 2)."""
    ax = _axes(ax, (max(6.4, 0.42 * len(layer_names) * max(1, len(densities)) / 2.5), 3.6))
    n_rules = len(densities)
    width = 0.8 / max(1, n_rules)
    x = np.arange(len(layer_names))
    for i, (rule, values) in enumerate(densities.items()):
        ax.bar(x + (i - (n_rules - 1) / 2) * width, values, width=width, label=RULE_LABELS.get(rule, rule),
               color=RULE_COLORS.get(rule))
    ax.set_xticks(x, layer_names, rotation=60 if len(layer_names) > 6 else 0, ha="right" if len(layer_names) > 6 else "center",
                  fontsize=8 if len(layer_names) > 6 else 9)
    ax.set_ylabel(r"layer density $p_\ell$")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("layer (input → output)")
    ax.legend(ncols=min(5, n_rules))
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


# ----------------------------------------------------------------------------- chapter 4


def _density_colors(densities: Sequence[float]) -> dict[float, tuple]:
    """One colour per density, dark for sparse, light for dense (chapter 4)."""
    cmap = mpl.colormaps["viridis"]
    ordered = sorted(densities)
    return {p: cmap(0.85 * i / max(1, len(ordered) - 1)) for i, p in enumerate(ordered)}


def draw_replication_construction(
    target_hidden: Sequence[int] = (3, 3),
    in_dim: int = 3,
    k: int = 3,
    density: float = 0.35,
    seed: int = 2,
    axes: "Sequence[plt.Axes] | None" = None,
) -> "Sequence[plt.Axes]":
    """The replication construction: a target MLP and its ``k``-fold replicated random sparse source (chapter 4).

    Left: the target. Right: every hidden unit replicated ``k`` times (replicas
    of one target unit share its colour and a shaded band), the first layer
    dense, later layers kept by an ER mask of density ``p``. A source edge is
    drawn in the colour of the target unit it comes from. A source unit that
    receives no link from some target input's replicas is ringed in red: the
    construction cannot copy its target unit.
    """
    import torch

    from .masks import sample_er_mask
    from .overparam import block_link_counts

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(8.6, 3.8), gridspec_kw={"width_ratios": [1, 1.6]})
    ax_t, ax_s = axes
    widths = [in_dim, *target_hidden, 1]
    unit_colors = [PALETTE[c] for c in ("blue", "orange", "green", "purple", "sky", "yellow")]

    def ys(n: int) -> np.ndarray:
        return np.linspace(-1, 1, n) if n > 1 else np.zeros(1)

    # target
    for layer in range(len(widths) - 1):
        y0, y1 = ys(widths[layer]), ys(widths[layer + 1])
        for a in range(widths[layer + 1]):
            for b in range(widths[layer]):
                color = PALETTE["grey"] if layer == 0 else unit_colors[b % len(unit_colors)]
                ax_t.plot([layer, layer + 1], [y0[b], y1[a]], color=color, lw=1.2, alpha=0.8, zorder=1)
    for layer, n in enumerate(widths):
        hidden = 0 < layer < len(widths) - 1
        colors = [unit_colors[j % len(unit_colors)] if hidden else PALETTE["black"] for j in range(n)]
        ax_t.scatter(np.full(n, layer), ys(n), s=110, c=colors, zorder=3, edgecolors="white", linewidths=1.0)
    ax_t.set_title("target network", fontsize=10)

    # source: hidden units replicated k times, replica r of unit j is unit j * k + r
    gen = torch.Generator().manual_seed(seed)
    src = [in_dim] + [k * h for h in target_hidden] + [1]
    masks = [torch.ones(src[1], src[0], dtype=torch.bool)]
    masks += [sample_er_mask((src[l + 1], src[l]), density, generator=gen) for l in range(1, len(src) - 1)]
    pos = []
    for layer, n in enumerate(src):
        if 0 < layer < len(src) - 1:
            per = target_hidden[layer - 1]
            span = np.linspace(-1, 1, n + (per - 1))
            # leave a gap between replica groups
            y = np.array([span[j * k + r + j] for j in range(per) for r in range(k)])
            pos.append(y)
        else:
            pos.append(ys(n))
    uncovered = [np.zeros(n, dtype=bool) for n in src]
    for layer in range(len(src) - 1):
        m = masks[layer]
        k_in = 1 if layer == 0 else k
        if layer > 0:
            uncovered[layer + 1] = (block_link_counts(m, k_in) == 0).any(dim=1).numpy()
        rows, cols = torch.nonzero(m, as_tuple=True)
        for a, b in zip(rows.tolist(), cols.tolist()):
            color = PALETTE["grey"] if layer == 0 else unit_colors[(b // k) % len(unit_colors)]
            ax_s.plot([layer, layer + 1], [pos[layer][b], pos[layer + 1][a]], color=color,
                      lw=0.5 if layer == 0 else 1.1, alpha=0.35 if layer == 0 else 0.85, zorder=1)
    for layer, n in enumerate(src):
        hidden = 0 < layer < len(src) - 1
        colors = [unit_colors[(u // k) % len(unit_colors)] if hidden else PALETTE["black"] for u in range(n)]
        ax_s.scatter(np.full(n, layer), pos[layer], s=60 if hidden else 110, c=colors, zorder=3,
                     edgecolors="white", linewidths=0.8)
        bad = uncovered[layer]
        if bad.any():
            ax_s.scatter(np.full(int(bad.sum()), layer), pos[layer][bad], s=190, facecolors="none",
                         edgecolors=DEAD_COLOR, linewidths=1.8, zorder=4)
        if hidden:
            for j in range(target_hidden[layer - 1]):
                yy = pos[layer][j * k:(j + 1) * k]
                ax_s.add_patch(mpl.patches.FancyBboxPatch(
                    (layer - 0.12, yy.min() - 0.05), 0.24, yy.max() - yy.min() + 0.1,
                    boxstyle="round,pad=0.02", fc=unit_colors[j % len(unit_colors)], alpha=0.15, ec="none", zorder=0))
    n_bad = int(sum(u.sum() for u in uncovered))
    ax_s.set_title(f"source: each hidden unit × {k}, ER mask p = {density:g} after the dense first layer\n"
                   f"{n_bad} unit(s) ringed red miss a link from some input group", fontsize=9.5)
    for ax, w in ((ax_t, widths), (ax_s, src)):
        ax.set_axis_off()
        ax.set_xlim(-0.3, len(w) - 0.7)
        ax.set_ylim(-1.2, 1.2)
        names = ["input"] + [f"hidden {i}" for i in range(1, len(w) - 1)] + ["output"]
        for layer, name in enumerate(names):
            ax.text(layer, -1.2, name, ha="center", va="top", fontsize=8, color=PALETTE["grey"])
    return axes


def plot_coverage_check(coverage: Mapping, axes: "Sequence[plt.Axes] | None" = None) -> "Sequence[plt.Axes]":
    """Closed form against real masks: pair coverage and complete coverage against ``k`` (chapter 4).

    ``coverage`` is the stored result of the ``coverage`` experiment. Left:
    fraction of (source unit, target input) pairs with a surviving link, dots
    from sampled masks, lines ``1 - (1 - p)^k``. Right: fraction of masks that
    cover every pair, lines ``(1 - (1 - p)^k)^(k n_out n_in)``.
    """
    from .overparam import all_covered_probability, coverage_probability

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(9.0, 3.6))
    rows = coverage["rows"]
    n_pairs_per_k = coverage["n_in"] * coverage["n_out"]
    densities = sorted({r["density"] for r in rows}, reverse=True)
    colors = _density_colors(densities)
    ks_all = np.unique([r["k"] for r in rows]).astype(float)
    k_line = np.geomspace(ks_all.min(), ks_all.max(), 200)
    for p in densities:
        sel = sorted((r for r in rows if r["density"] == p), key=lambda r: r["k"])
        k = np.array([r["k"] for r in sel], dtype=float)
        axes[0].plot(k_line, coverage_probability(p, k_line), color=colors[p], lw=1.4)
        axes[0].plot(k, [r["coverage_mean"] for r in sel], "o", ms=4, color=colors[p], label=f"p = {p:g}")
        k_int = np.arange(1, int(ks_all.max()) + 1)
        closed = [all_covered_probability(p, kk, int(kk * n_pairs_per_k)) for kk in k_int]
        axes[1].plot(k_int, closed, color=colors[p], lw=1.4)
        axes[1].plot(k, [r["all_covered"] for r in sel], "o", ms=4, color=colors[p], label=f"p = {p:g}")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("replicas per unit k (width factor)")
    axes[0].set_ylabel("fraction of pairs covered")
    axes[1].set_ylabel("fraction of masks covering every pair")
    axes[0].legend(fontsize=8, loc="lower right")
    axes[1].set_title(f"target layer {coverage['n_in']}→{coverage['n_out']}, "
                      f"{coverage['masks_per_cell']} masks per dot", fontsize=9)
    axes[0].set_title("lines: 1 − (1 − p)^k; dots: sampled ER masks", fontsize=9)
    return axes


def plot_required_width(widths: Sequence[int], delta: float = 0.05, densities: Sequence[float] | None = None,
                        ax: "plt.Axes | None" = None) -> "plt.Axes":
    """Width factor needed for the construction to succeed with probability ``1 - delta``, against density (chapter 4).

    Compares the exact requirement for a target of layer sizes ``widths``
    (every replica needs its links), the union bound over the target's
    edges, and the bare factors ``1/log(1/(1-p))`` and ``1/p``.
    """
    from .overparam import construction_conditions, required_width, required_width_for_network, width_factor

    ax = _axes(ax, (6.4, 3.8))
    p = np.geomspace(0.005, 0.9, 60) if densities is None else np.asarray(densities, dtype=float)
    network = [required_width_for_network(widths, float(x), delta) for x in p]
    edges = sum(c.pairs for c in construction_conditions(widths, 1))
    per_edge = [required_width(float(x), delta, edges) for x in p]
    ax.plot(p, network, color=PALETTE["vermillion"], label=f"construction, target {'-'.join(map(str, widths))}, δ = {delta:g}")
    ax.plot(p, per_edge, color=PALETTE["orange"], ls="--", label=f"{edges} edges, one set of k links each")
    ax.plot(p, width_factor(p), color=PALETTE["blue"], label="1 / log(1/(1−p))")
    ax.plot(p, 1 / p, color=PALETTE["grey"], ls=":", label="1 / p")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("density p (fraction of weights kept)")
    ax.set_ylabel("width factor k")
    ax.legend(fontsize=8)
    return ax


def _log_index(values: Sequence[float], grid: Sequence[float]) -> np.ndarray:
    """Positions of ``values`` on a categorical axis whose ticks are ``grid``, interpolating in log."""
    return np.interp(np.log(np.asarray(values, dtype=float)), np.log(np.asarray(grid, dtype=float)),
                     np.arange(len(grid)), left=np.nan, right=np.nan)


def plot_error_heatmap(
    densities: Sequence[float],
    width_factors: Sequence[float],
    errors: np.ndarray,
    ax: "plt.Axes | None" = None,
    *,
    mark: tuple[float, float] | None = None,
    k_star: Sequence[float] | None = None,
    fit_c: float | None = None,
    vmin: float = 0.02,
    vmax: float = 1.0,
    colorbar: bool = True,
) -> "plt.Axes":
    """Test error of trained students over (density, width factor), log colour scale (chapter 4).

    Rows are densities (dense at the top), columns width factors. ``k_star``
    (one per density) marks where the error first reaches the threshold,
    ``fit_c`` draws the fitted ``c / log(1/(1-p))``, ``mark`` rings one cell.
    """
    from .overparam import width_factor

    ax = _axes(ax, (6.4, 4.0))
    densities = list(densities)
    width_factors = list(width_factors)
    im = ax.imshow(np.asarray(errors, dtype=float), aspect="auto", origin="upper", cmap="magma_r",
                   norm=mpl.colors.LogNorm(vmin=vmin, vmax=vmax), interpolation="nearest")
    ax.set_xticks(range(len(width_factors)), [f"{k:g}" for k in width_factors])
    ax.set_yticks(range(len(densities)), [f"{p:g}" for p in densities])
    ax.set_xlabel("width factor k (student hidden width / teacher's)")
    ax.set_ylabel("density p")
    ax.grid(False)
    if colorbar:
        cb = ax.figure.colorbar(im, ax=ax, fraction=0.05, pad=0.02)
        cb.set_label("test MSE / target variance")
    if k_star is not None:
        x = _log_index(k_star, width_factors)
        ax.plot(x, np.arange(len(densities)), "o", ms=6, mfc="white", mec=PALETTE["black"], label="k* (threshold reached)")
    if fit_c is not None:
        sparse = [i for i, p in enumerate(densities) if p < 1.0]
        p_fine = np.geomspace(min(densities[i] for i in sparse), max(densities[i] for i in sparse), 100)
        y_fine = np.interp(np.log(p_fine), np.log(np.asarray(densities)[sparse][::-1]), np.asarray(sparse)[::-1])
        ax.plot(_log_index(fit_c * np.asarray(width_factor(p_fine)), width_factors), y_fine, color=PALETTE["sky"],
                lw=2, label=f"fit: k = {fit_c:.2g} / log(1/(1−p))")
    if mark is not None:
        i = densities.index(mark[0])
        j = width_factors.index(mark[1])
        ax.add_patch(mpl.patches.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec=PALETTE["sky"], lw=2.5))
    if k_star is not None or fit_c is not None:
        ax.legend(loc="lower left", fontsize=8, facecolor="white", framealpha=0.85, frameon=True)
    return ax


def plot_error_vs_width(grid, threshold: float | None = None, ax: "plt.Axes | None" = None) -> "plt.Axes":
    """Typical test error against width factor, one line per density; faint dots are single seeds (chapter 4).

    ``grid`` is an :class:`rpbook.experiments.teacher_student_width.ErrorGrid`.
    """
    ax = _axes(ax, (6.4, 3.8))
    colors = _density_colors(list(grid.densities))
    typical = grid.typical()
    for i, p in enumerate(grid.densities):
        ax.plot(grid.width_factors, typical[i], "o-", ms=3.5, color=colors[p], label=f"p = {p:g}")
        for s in range(grid.values.shape[2]):
            ax.plot(grid.width_factors, grid.values[i, :, s], ".", ms=3, alpha=0.35, color=colors[p])
    if threshold is not None:
        ax.axhline(threshold, color=PALETTE["black"], ls="--", lw=1, label=f"threshold {threshold:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(list(grid.width_factors), [f"{k:g}" for k in grid.width_factors])
    ax.minorticks_off()
    ax.set_xlabel("width factor k")
    ax.set_ylabel("test MSE / target variance")
    ax.legend(fontsize=8, ncols=2)
    return ax


def plot_width_fit(rows: Sequence[Mapping], fit, ax: "plt.Axes | None" = None, *,
                   worst_case: Mapping[float, float] | None = None) -> "plt.Axes":
    """Smallest width reaching the error threshold against density, with the one-constant fit (chapter 4).

    ``rows`` come from :func:`rpbook.experiments.teacher_student_width.smallest_widths`
    and ``fit`` from :func:`rpbook.overparam.fit_width_constant`.
    ``worst_case`` (density to width) adds the combinatorial requirement.
    """
    from .overparam import width_factor

    ax = _axes(ax, (6.4, 3.8))
    sparse = [r for r in rows if r["density"] < 1.0]
    p = np.array([r["density"] for r in sparse])
    for r in sparse:
        seeds = [k for k in r["k_star_seeds"] if np.isfinite(k)]
        ax.plot([r["density"]] * len(seeds), seeds, "_", ms=10, color=PALETTE["grey"], alpha=0.8)
    reached = [r for r in sparse if r["status"] == "reached"]
    first = [r for r in sparse if r["status"] == "first"]
    ax.plot([r["density"] for r in reached], [r["k_star"] for r in reached], "o", color=PALETTE["black"],
            label="k* of the typical error (grey: single seeds)")
    if first:
        ax.plot([r["density"] for r in first], [r["k_star"] for r in first], "v", color=PALETTE["black"],
                mfc="white", label="reached at the smallest k (upper bound)")
    p_fine = np.geomspace(p.min() * 0.8, min(0.9, p.max() * 1.2), 100)
    if fit is not None:
        ax.plot(p_fine, fit.c * np.asarray(width_factor(p_fine)), color=PALETTE["sky"], lw=2,
                label=f"fit k* = {fit.c:.2g} / log(1/(1−p)),  R² = {fit.r2:.2f}")
        ax.plot(p_fine, np.exp(fit.slope_intercept) * np.asarray(width_factor(p_fine)) ** fit.slope,
                color=PALETTE["green"], ls="--", lw=1.3, label=f"free power law, exponent {fit.slope:.2f}")
    if worst_case:
        wp = sorted(worst_case)
        ax.plot(wp, [worst_case[x] for x in wp], color=PALETTE["vermillion"], ls=":", lw=1.6,
                label="combinatorial requirement (δ = 0.05)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks([r["density"] for r in sparse], [f"{r['density']:g}" for r in sparse])
    ax.minorticks_off()
    ax.set_xlabel("density p")
    ax.set_ylabel("smallest width factor k*")
    ax.legend(fontsize=8)
    return ax


def plot_error_vs_density(grid, width_factors: Sequence[float], c: float | None = None,
                          ax: "plt.Axes | None" = None) -> "plt.Axes":
    """At fixed width, test error against density; dotted lines mark ``p`` where ``c w(p) = k`` (chapter 4).

    Solving ``k = c / log(1/(1-p))`` for ``p`` gives ``p_k = 1 - exp(-c/k)``:
    below that density the fitted law says width ``k`` is too small.
    """
    ax = _axes(ax, (6.4, 3.8))
    typical = grid.typical()
    cmap = mpl.colormaps["viridis"]
    for n, k in enumerate(width_factors):
        j = list(grid.width_factors).index(k)
        color = cmap(0.85 * n / max(1, len(width_factors) - 1))
        ax.plot(grid.densities, typical[:, j], "o-", ms=3.5, color=color, label=f"k = {k:g}")
        if c is not None:
            ax.axvline(1 - np.exp(-c / k), color=color, ls=":", lw=1.3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.invert_xaxis()
    ax.set_xticks(list(grid.densities), [f"{p:g}" for p in grid.densities])
    ax.minorticks_off()
    ax.set_xlabel("density p (sparser →)")
    ax.set_ylabel("test MSE / target variance")
    ax.legend(fontsize=8)
    return ax


def plot_error_collapse(grid, ax: "plt.Axes | None" = None) -> "plt.Axes":
    """Typical error against ``k log(1/(1-p))`` = ``k / w(p)``: one curve if width counts in units of ``w(p)`` (chapter 4).

    ``k log(1/(1-p))`` is minus the log of the chance that a (unit, input)
    pair has no surviving link, so if the theory's variable is the right one
    the curves of all densities fall on top of each other. Dense students
    (``p = 1``) have no such variable and are left out.
    """
    from .overparam import width_factor

    ax = _axes(ax, (6.4, 3.8))
    colors = _density_colors(list(grid.densities))
    typical = grid.typical()
    for i, p in enumerate(grid.densities):
        if p >= 1.0:
            continue
        x = grid.width_factors / float(width_factor(p))
        ax.plot(x, typical[i], "o-", ms=3.5, color=colors[p], label=f"p = {p:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("k · log(1/(1−p))  (width in units of the factor)")
    ax.set_ylabel("test MSE / target variance")
    ax.legend(fontsize=8, ncols=2)
    return ax


# ----------------------------------------------------------------------------- chapter 5: gradient flow

#: Colour and label of each initialization (chapter 5).
INIT_COLORS: dict[str, str] = {"dense": PALETTE["vermillion"], "layer-scaled": PALETTE["sky"],
                               "unit-scaled": PALETTE["blue"]}
INIT_LABELS: dict[str, str] = {"dense": "dense init", "layer-scaled": "layer-scaled",
                               "unit-scaled": "unit-scaled (sparsity-aware)"}
INIT_STYLES: dict[str, str] = {"dense": "-", "layer-scaled": "--", "unit-scaled": "-"}
#: Colour of each training method of Evci et al.'s pipeline (chapter 5).
METHOD_COLORS: dict[str, str] = {
    "prune": PALETTE["black"], "scratch": PALETTE["vermillion"], "scratch+": PALETTE["orange"],
    "lottery": PALETTE["green"], "set": PALETTE["purple"], "rigl": PALETTE["blue"], "small-dense": PALETTE["grey"],
}


def _log_ticks(ax: "plt.Axes") -> None:
    """Logarithmic y axis labelled with plain numbers at 1, 2, 5 × 10^k (for short ranges)."""
    import matplotlib.ticker as mticker

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(mticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(mticker.FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(mticker.NullFormatter())


def draw_signal_through_depth(ax_act: "plt.Axes", ax_grad: "plt.Axes", result: dict, density: float,
                              inits: Sequence[str] | None = None) -> None:
    """Pre-activation and backward-signal variance per layer for each init at one density (chapter 5).

    ``result`` is ``init_signal_propagation``'s. Both axes are logarithmic: a
    dense init of a sparse net shrinks the variance by about ``p`` per layer,
    a straight line down.
    """
    from .experiments.init_signal_propagation import curve

    inits = list(inits or INIT_COLORS)
    depth = np.arange(1, len(result["layers"]) + 1)
    for init in inits:
        style = {"color": INIT_COLORS.get(init), "label": INIT_LABELS.get(init, init), "marker": "o", "ms": 3,
                 "ls": INIT_STYLES.get(init, "-")}
        ax_act.plot(depth, curve(result, init, density, "act_var"), **style)
        ax_grad.plot(depth, curve(result, init, density, "grad_var"), **style)
    for ax, what in ((ax_act, "Var of pre-activations $z_l$"), (ax_grad, r"Var of backward signal $\partial L/\partial z_l$")):
        ax.set_yscale("log")
        ax.set_xlabel("layer l (input → output)")
        ax.set_ylabel(what)
        ax.set_xticks(depth)
    ax_act.set_title(f"forward, density p = {density:g}", fontsize=10)
    ax_grad.set_title(f"backward, density p = {density:g}", fontsize=10)


def draw_grad_norm_at_init(ax: "plt.Axes", result: dict, inits: Sequence[str] | None = None,
                           mark: float | None = None) -> None:
    """Masked gradient norm at initialization against density, per init: mean line, one dot per seed (chapter 5)."""
    from .experiments.init_signal_propagation import grad_norms

    for init in inits or INIT_COLORS:
        g = grad_norms(result, init)
        color = INIT_COLORS.get(init)
        ax.plot(g["density"], g["mean"], marker="o", ms=3, color=color, label=INIT_LABELS.get(init, init),
                ls=INIT_STYLES.get(init, "-"))
        seeds = [(r["density"], r["grad_norm"]) for r in result["runs"] if r["init"] == init and r["grad_norm"] > 0]
        ax.scatter([d for d, _ in seeds], [v for _, v in seeds], s=6, color=color, alpha=0.35, lw=0)
    ax.set_yscale("log")
    density_ticks(ax, sorted({e["density"] for e in result["summary"]}))
    ax.invert_xaxis()
    if mark is not None:
        ax.axvline(mark, color=PALETTE["grey"], ls=":", lw=1)
    ax.set_xlabel("density p (fraction of weights kept)")
    ax.set_ylabel("masked gradient norm at init")


def plot_signal_through_depth(result: dict, density: float, inits: Sequence[str] | None = None) -> "plt.Figure":
    """Figure: variance through depth, forward and backward, at one density (chapter 5)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(9.0, 3.4))
    draw_signal_through_depth(a, b, result, density, inits)
    a.legend(fontsize=8)
    return fig


def plot_grad_norm_at_init(result: dict, ax: "plt.Axes | None" = None) -> "plt.Axes":
    """Figure: gradient norm at init against density for dense, layer- and unit-scaled init (chapter 5)."""
    ax = _axes(ax)
    draw_grad_norm_at_init(ax, result)
    ax.legend()
    return ax


def plot_grad_norm_curves(result: dict, setup: str, methods: Sequence[str] | None = None,
                          ax: "plt.Axes | None" = None, key: str = "grad_norm") -> "plt.Axes":
    """Mean ± std over seeds of the masked gradient norm (or ``key="distance"``) during training (chapter 5)."""
    from .experiments.evci_pipeline import METHOD_LABELS, curves_of

    ax = _axes(ax)
    units = [u for u in result["units"] if u["setup"] == setup]
    if not units:
        raise ValueError(f"setup {setup!r} is not in this result")
    available = [m for m in METHOD_COLORS if m in units[0]["methods"]]
    for m in methods or available:
        if m not in available or key not in units[0]["methods"][m]:
            continue
        c = curves_of(result, setup, m, key)
        steps, mean, std = np.array(c["steps"]), np.array(c["mean"]), np.array(c["std"])
        ax.plot(steps, mean, color=METHOD_COLORS.get(m), label=METHOD_LABELS.get(m, m),
                ls="--" if m in ("prune", "small-dense") else "-")
        ax.fill_between(steps, np.maximum(mean - std, mean * 0.05) if key == "grad_norm" else mean - std, mean + std,
                        color=METHOD_COLORS.get(m), alpha=0.15, lw=0)
    if key == "grad_norm":
        ax.set_yscale("log")
        ax.set_ylabel("masked gradient norm (fixed batch)")
    else:
        ax.set_ylabel("L2 distance to the pruned solution")
    ax.set_xlabel("training step")
    ax.set_title(setup, fontsize=10)
    return ax


def plot_interpolation(result: dict, setup: str, ax: "plt.Axes | None" = None,
                       key: str = "train_loss") -> "plt.Axes":
    """Loss on the line from each final network (α = 0) to the pruned solution (α = 1), mean ± std (chapter 5)."""
    from .experiments.evci_pipeline import METHOD_LABELS

    ax = _axes(ax)
    units = [u for u in result["units"] if u["setup"] == setup]
    if not units:
        raise ValueError(f"setup {setup!r} is not in this result")
    alphas = np.array(units[0]["interpolation"]["alphas"])
    for m in [k for k in units[0]["interpolation"] if k != "alphas"]:
        values = np.array([u["interpolation"][m][key] for u in units])
        mean, std = values.mean(0), values.std(0)
        ax.plot(alphas, mean, marker="o", ms=3, color=METHOD_COLORS.get(m), label=f"{METHOD_LABELS.get(m, m)} → Prune")
        ax.fill_between(alphas, mean - std, mean + std, color=METHOD_COLORS.get(m), alpha=0.15, lw=0)
    for a in (0.0, 1.0):
        ax.axvline(a, color=PALETTE["grey"], ls=":", lw=1)
    ax.set_xlabel("α  (0: the network's own solution, 1: the pruned solution)")
    ax.set_ylabel("training loss" if key == "train_loss" else "test accuracy")
    ax.set_title(setup, fontsize=10)
    return ax


def plot_mask_update_gradnorm(result: dict, setup: str, ax: "plt.Axes | None" = None) -> "plt.Axes":
    """Gradient norm just before (open) and just after (filled) each SET/RigL mask update, mean over seeds."""
    from .experiments.evci_pipeline import METHOD_LABELS

    ax = _axes(ax)
    units = [u for u in result["units"] if u["setup"] == setup]
    for m in ("set", "rigl"):
        if not units or m not in units[0]["methods"]:
            continue
        events = [u["methods"][m]["mask_updates"] for u in units]
        n = min(len(e) for e in events)
        steps = np.array([events[0][i]["step"] for i in range(n)])
        before = np.array([[e[i]["grad_norm_before"] for i in range(n)] for e in events]).mean(0)
        after = np.array([[e[i]["grad_norm_after"] for i in range(n)] for e in events]).mean(0)
        color = METHOD_COLORS[m]
        ax.vlines(steps, before, after, color=color, lw=1.2)
        ax.plot(steps, before, "o", mfc="white", color=color, ms=4, label=f"{METHOD_LABELS[m]}: just before")
        ax.plot(steps, after, "o", color=color, ms=4, label=f"{METHOD_LABELS[m]}: just after")
    _log_ticks(ax)
    ax.set_xlabel("training step of the mask update")
    ax.set_ylabel("masked gradient norm (fixed batch)")
    ax.set_title(setup, fontsize=10)
    return ax


# ----------------------------------------------------------------------------- chapter 3
# Figures of chapter 3 (*Training random sparse networks*). They only read
# stored experiment results (rpbook.experiments.rule_density_sweep,
# width_sweep, depth_sweep, rule_seed_spread): no training happens here.

#: Colours of the three arms of chapter 3's width and depth sweeps.
ARM_COLORS: dict[str, str] = {"dense": PALETTE["black"], "sparse": PALETTE["orange"],
                              "dense-same-nonzero": PALETTE["blue"]}


def _errorbar(ax: "plt.Axes", x: Sequence[float], mean: Sequence[float], std: Sequence[float], **kw) -> None:
    """Mean line with a ± one standard deviation band (over seeds)."""
    x, mean, std = np.asarray(x, float), np.asarray(mean, float), np.asarray(std, float)
    line, = ax.plot(x, mean, marker="o", ms=4, **kw)
    ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.18, lw=0)


def plot_accuracy_vs_density(result: Mapping, ax: "plt.Axes | None" = None, *, rules: Sequence[str] | None = None,
                             highlight: str | None = None, mark_density: float | None = None) -> "plt.Axes":
    """Test accuracy against density, one line per layer-wise rule, with the dense baseline (chapter 3).

    Lines are means over seeds, bands ± one standard deviation; the grey band is
    the dense network. ``highlight`` draws one rule bold and the others faint;
    ``mark_density`` draws a vertical line there.
    """
    from .experiments import rule_density_sweep as rds

    ax = _axes(ax)
    dense = rds.dense_stats(result)
    densities = rds.densities_of(result)
    ax.axhspan(dense["mean"] - dense["std"], dense["mean"] + dense["std"], color=PALETTE["grey"], alpha=0.25, lw=0)
    ax.axhline(dense["mean"], color=RULE_COLORS["dense"], lw=1.2, ls="--", label="dense")
    for rule in rules or rds.rules_of(result):
        c = rds.rule_curve(result, rule)
        faint = highlight is not None and rule != highlight
        _errorbar(ax, c["density"], c["mean"], c["std"], color=RULE_COLORS.get(rule), label=RULE_LABELS.get(rule, rule),
                  alpha=0.3 if faint else 1.0, lw=1.2 if faint else 2.2 if highlight else 1.8)
    if mark_density is not None:
        ax.axvline(mark_density, color=PALETTE["grey"], lw=1, ls=":")
    density_ticks(ax, densities)
    ax.invert_xaxis()
    ax.set_xlabel("density p (fraction of weights kept, log scale)")
    ax.set_ylabel("test accuracy")
    ax.legend(loc="lower left", ncols=2)
    return ax


def plot_rule_lead(result: Mapping, ax: "plt.Axes | None" = None) -> "plt.Axes":
    """Each rule's test accuracy minus the best rule's, per density (chapter 3, *Which rule wins*).

    0 is the winner at that density; error bars are ± one standard error of the
    difference to the winner's mean (over seeds).
    """
    from .experiments import rule_density_sweep as rds

    ax = _axes(ax)
    densities = rds.densities_of(result)
    best = {r["density"]: r["means"][0] for r in rds.ranking(result)}
    rules = rds.rules_of(result)
    offsets = np.linspace(-0.06, 0.06, len(rules))
    for off, rule in zip(offsets, rules):
        c = rds.rule_curve(result, rule)
        x = np.asarray(c["density"]) * 10 ** off
        sem = np.asarray(c["std"]) / np.sqrt(np.asarray(c["n"]))
        ax.errorbar(x, np.asarray(c["mean"]) - [best[p] for p in c["density"]], yerr=sem, marker="o", ms=4,
                    color=RULE_COLORS.get(rule), label=RULE_LABELS.get(rule, rule), capsize=2)
    ax.axhline(0, color=PALETTE["grey"], lw=1)
    density_ticks(ax, densities)
    ax.invert_xaxis()
    ax.set_xlabel("density p (log scale)")
    ax.set_ylabel("accuracy − best rule's accuracy")
    ax.legend(loc="lower left", ncols=2)
    return ax


def plot_width_sweep(result: Mapping, density: float, ax: "plt.Axes | None" = None, *, x: str = "units",
                     mark_width: float | None = None) -> "plt.Axes":
    """Test accuracy against width: dense, random sparse at ``density``, and dense with as many weights (chapter 3).

    ``x="units"`` puts the hidden units per layer on the x axis (log scale);
    ``x="nonzero"`` the number of nonzero weights, which compares networks of
    equal cost.
    """
    from .experiments import width_sweep as ws

    ax = _axes(ax)
    units = {float(k): v[0] for k, v in result["hidden_units"].items()}
    labels = {"dense": "dense, same width", "sparse": f"random sparse, p = {density:g}",
              "dense-same-nonzero": "dense, as many weights as the sparse one"}
    for arm in ("dense", "sparse", "dense-same-nonzero"):
        if arm == "dense-same-nonzero" and not any(r["arm"] == arm for r in result["runs"]):
            continue
        c = ws.curve(result, arm, density)
        xs = [units[w] for w in c["width"]] if x == "units" else c["nonzero"]
        _errorbar(ax, xs, c["mean"], c["std"], color=ARM_COLORS[arm], label=labels[arm],
                  ls="--" if arm == "dense-same-nonzero" else "-")
    if mark_width is not None and x == "units":
        ax.axvline(units[mark_width], color=PALETTE["grey"], lw=1, ls=":")
    ax.set_xscale("log")
    if x == "units":
        ticks = sorted(units.values())
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("hidden units per layer (log scale)")
    else:
        ax.set_xlabel("nonzero weights (log scale)")
    ax.set_ylabel("test accuracy")
    ax.legend(loc="lower right")
    return ax


def plot_width_gaps(result: Mapping, ax: "plt.Axes | None" = None) -> "plt.Axes":
    """Dense minus random sparse test accuracy against width, one line per density (chapter 3).

    Error bars: ± one standard error of the difference (over seeds). A line
    falling towards 0 is Liu et al.'s claim: wider networks close the gap.
    """
    ax = _axes(ax)
    units = {float(k): v[0] for k, v in result["hidden_units"].items()}
    densities = sorted({g["density"] for g in result["gaps"]}, reverse=True)
    colors = [PALETTE[c] for c in ("orange", "vermillion", "purple", "green", "sky")]
    for color, p in zip(colors, densities):
        rows = sorted((g for g in result["gaps"] if g["density"] == p), key=lambda g: g["width"])
        ax.errorbar([units[g["width"]] for g in rows], [g["gap"] for g in rows], yerr=[g["gap_se"] for g in rows],
                    marker="o", ms=4, capsize=2, color=color, label=f"p = {p:g}")
    ax.axhline(0, color=PALETTE["grey"], lw=1)
    ticks = sorted(units.values())
    ax.set_xscale("log")
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("hidden units per layer (log scale)")
    ax.set_ylabel("dense − sparse test accuracy")
    ax.legend(title="density")
    return ax


def plot_depth_sweep(result: Mapping, ax: "plt.Axes | None" = None, *, metric: str = "test_acc") -> "plt.Axes":
    """Test (or train) accuracy against depth for the dense and the random sparse networks (chapter 3)."""
    ax = _axes(ax)
    depths = sorted({s["depth"] for s in result["summary"]})
    densities = sorted({s["density"] for s in result["summary"] if s["arm"] == "sparse"}, reverse=True)
    groups = [("dense", 1.0, ARM_COLORS["dense"], "dense")]
    groups += [("sparse", p, c, f"random sparse, p = {p:g}")
               for p, c in zip(densities, (ARM_COLORS["sparse"], PALETTE["vermillion"], PALETTE["purple"]))]
    for arm, p, color, label in groups:
        rows = sorted((s for s in result["summary"] if s["arm"] == arm and s["density"] == p), key=lambda s: s["depth"])
        _errorbar(ax, [s["depth"] for s in rows], [s[metric]["mean"] for s in rows], [s[metric]["std"] for s in rows],
                  color=color, label=label)
    ax.set_xticks(depths)
    ax.set_xlabel("hidden layers")
    ax.set_ylabel("test accuracy" if metric == "test_acc" else "final training accuracy")
    ax.legend()
    return ax


def plot_seed_spread(result: Mapping, ax: "plt.Axes | None" = None) -> "plt.Axes":
    """Every seed's test accuracy for each rule, with mean ± one standard error (chapter 3, *How many seeds?*)."""
    from .experiments import rule_seed_spread as rss

    ax = _axes(ax, (5.0, 3.4))
    rules = list(dict.fromkeys(row["rule"] for row in result["runs"]))
    for i, rule in enumerate(rules):
        acc = np.asarray(rss.accuracies(result, rule))
        jitter = np.linspace(-0.12, 0.12, len(acc))
        ax.plot(i + jitter, acc, "o", ms=5, alpha=0.7, color=RULE_COLORS.get(rule))
        s = result["stats"][rule]
        ax.errorbar(i + 0.3, s["mean"], yerr=s["sem"], fmt="s", color=PALETTE["black"], capsize=3)
    ax.set_xticks(range(len(rules)), [RULE_LABELS.get(r, r) for r in rules])
    ax.set_xlim(-0.5, len(rules) - 0.3)
    ax.set_ylabel("test accuracy")
    ax.set_xlabel("layer-wise rule (dots: seeds; squares: mean ± s.e.)")
    return ax


def plot_separation_by_seeds(result: Mapping, rule_a: str, rule_b: str, ax: "plt.Axes | None" = None) -> "plt.Axes":
    """Difference of two rules' mean accuracies using the first n seeds, with ± 2 standard errors (chapter 3).

    Where the band leaves 0, a two-sigma test separates the rules.
    """
    from .experiments import rule_seed_spread as rss

    ax = _axes(ax, (5.0, 3.4))
    rows = rss.separation_by_seeds(result, rule_a, rule_b)
    n = np.array([r["n"] for r in rows])
    diff = np.array([r["diff"] for r in rows])
    se = np.array([r["se"] for r in rows])
    ax.fill_between(n, diff - 2 * se, diff + 2 * se, color=PALETTE["grey"], alpha=0.3, lw=0, label="± 2 standard errors")
    ax.plot(n, diff, "o-", color=PALETTE["black"], ms=4, label="difference of the means")
    ax.axhline(0, color=PALETTE["vermillion"], lw=1)
    ax.set_xticks(n)
    ax.set_xlabel("seeds per rule")
    ax.set_ylabel(f"{RULE_LABELS.get(rule_a, rule_a)} − {RULE_LABELS.get(rule_b, rule_b)} accuracy")
    ax.legend(loc="best")
    return ax


# ----------------------------------------------------------------------------- chapter 6: strong lottery tickets

#: Colour and label of each frozen weight distribution of edge-popup (chapter 6).
WEIGHT_INIT_COLORS: dict[str, str] = {"signed_constant": PALETTE["vermillion"], "kaiming_normal": PALETTE["blue"]}
WEIGHT_INIT_LABELS: dict[str, str] = {"signed_constant": "signed Kaiming constant", "kaiming_normal": "Kaiming normal"}
#: Colour of each subset-sum number distribution (chapter 6).
NUMBER_COLORS: dict[str, str] = {"uniform": PALETTE["blue"], "product": PALETTE["orange"]}
#: The two branches of the SubsetSum gadget: units with a > 0 (x >= 0) and a < 0 (x < 0).
BRANCH_COLORS: dict[str, str] = {"plus": PALETTE["orange"], "minus": PALETTE["sky"]}


def source_density_color(density: float) -> str:
    """Colour of an ER source density (chapter 6): black for the full network, then green, orange, purple."""
    table = {1.0: PALETTE["black"], 0.5: PALETTE["green"], 0.3: PALETTE["purple"], 0.2: PALETTE["orange"]}
    return table.get(float(density), PALETTE["grey"])


def draw_subset_sum(ax_numbers: "plt.Axes", ax_walk: "plt.Axes", values: Sequence[float], target: float,
                    selected: Sequence[bool]) -> None:
    """One SubsetSum instance: the numbers (chosen ones coloured) and the walk of the chosen subset to its sum.

    Chapter 6, *SubsetSum* (the frame of :func:`rpbook.widgets.subset_sum_explorer`).
    """
    values = np.asarray(values, dtype=float)
    chosen = np.asarray(selected, dtype=bool)
    idx = np.arange(1, len(values) + 1)
    ax_numbers.bar(idx, values, color=[PALETTE["blue"] if c else PALETTE["grey"] for c in chosen],
                   alpha=1.0, width=0.7)
    ax_numbers.axhline(0, color="black", lw=0.6)
    ax_numbers.set_xlim(0.3, max(len(values), 1) + 0.7)
    ax_numbers.set_ylim(-1.05, 1.05)
    ax_numbers.set_xlabel("number i (blue: in the subset)")
    ax_numbers.set_ylabel("value $X_i$")
    total = float(values[chosen].sum())
    steps = np.concatenate([[0.0], np.cumsum(values[chosen])])
    ax_walk.plot(steps, np.arange(len(steps)), "-o", color=PALETTE["blue"], ms=3.5, lw=1.4)
    ax_walk.axvline(target, color=PALETTE["vermillion"], ls="--", lw=1.4, label=f"target z = {target:+.3f}")
    ax_walk.plot([total], [len(steps) - 1], "s", color=PALETTE["blue"], ms=7, label=f"subset sum = {total:+.6f}")
    lim = max(1.6, float(np.abs(steps).max()) + 0.2)
    ax_walk.set_xlim(-lim, lim)
    ax_walk.set_ylim(-0.5, max(len(steps) - 0.5, 1.5))
    ax_walk.set_xlabel("running sum of the chosen numbers")
    ax_walk.set_ylabel("numbers added")
    ax_walk.legend(loc="upper left", fontsize=8)
    err = abs(target - total)
    ax_walk.set_title(f"n = {len(values)}: error |z − sum| = {err:.2e}", fontsize=10)


def plot_subset_sum_error(result: Mapping, axes: "Sequence[plt.Axes] | None" = None) -> "Sequence[plt.Axes]":
    """Best-subset error against n, typical and worst case, and the chance that every target is hit (chapter 6).

    ``result`` is the stored ``subset_sum_error`` result. Left: the median
    error for random targets (filled), the median worst case over ``[-1, 1]``
    (open) and the Poisson estimate ``ln 2 / (2λ)`` (dotted). Right: the share
    of instances whose worst case is below each ε.
    """
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(9.6, 3.6))
    ax_err, ax_ok = axes
    for dist, s in result["summary"].items():
        color = NUMBER_COLORS.get(dist, PALETTE["grey"])
        ns = np.asarray(s["ns"])
        label = "U[−1, 1]" if dist == "uniform" else "products a·b"
        ax_err.plot(ns, s["median_error"], "o-", color=color, ms=4, label=f"{label}: random target")
        worst = s["median_worst_case"]
        ax_err.plot([w["n"] for w in worst], [w["median"] for w in worst], "o--", mfc="white", color=color, ms=4,
                    lw=1, label=f"{label}: worst target")
        ax_err.plot(ns, s["poisson_median_error"], ":", color=color, lw=1.4)
        for eps, rows in s["success"].items():
            ls = "-" if float(eps) >= 0.01 else "--"
            ax_ok.plot([r["n"] for r in rows], [r["p"] for r in rows], ls, marker="o", ms=3.5, color=color,
                       label=f"{label}, ε = {float(eps):g}")
    ax_err.set_yscale("log")
    ax_err.set_xlabel("n (random numbers)")
    ax_err.set_ylabel("best-subset error (median)")
    ax_err.plot([], [], ":", color="black", label="Poisson estimate ln 2/(2λ)")
    ax_err.legend(fontsize=7.5)
    ax_ok.set_xlabel("n (random numbers)")
    ax_ok.set_ylabel("share with every z ∈ [−1, 1] within ε")
    ax_ok.set_ylim(-0.03, 1.03)
    ax_ok.legend(fontsize=7.5, loc="upper left")
    return axes


def draw_gadget(ax: "plt.Axes", ticket) -> "plt.Axes":
    """The pruned SubsetSum gadget of one weight: input, ``n`` hidden ReLUs, output (chapter 6).

    ``ticket`` is a :class:`rpbook.slt.SubsetSumTicket` of a 1 × 1 target.
    Kept edges are coloured by branch (``a > 0`` carries ``x >= 0``, ``a < 0``
    carries ``x < 0``), line width ∝ |weight|; pruned edges are faint.
    """
    from torch import nn

    src = [m for m in ticket.source if isinstance(m, nn.Linear)]
    m1, m2 = src[0].weight.detach()[:, 0], src[1].weight.detach()[0]
    keep1, keep2 = ticket.masks["fc1"][:, 0], ticket.masks["fc2"][0]
    n = len(m1)
    ys = np.linspace(1, -1, n)
    for i in range(n):
        kept = bool(keep1[i]) and bool(keep2[i])
        color = BRANCH_COLORS["plus"] if m1[i] > 0 else BRANCH_COLORS["minus"]
        for (x0, y0, x1, y1, w) in ((0, 0, 1, ys[i], float(m1[i])), (1, ys[i], 2, 0, float(m2[i]))):
            ax.plot([x0, x1], [y0, y1], color=color if kept else PALETTE["grey"], alpha=1.0 if kept else 0.15,
                    lw=0.6 + 2.5 * abs(w) if kept else 0.6, zorder=1)
        ax.scatter([1], [ys[i]], s=60, color="white", edgecolor=color if kept else PALETTE["grey"], zorder=2, lw=1.2)
        ax.text(0.92, ys[i], f"{float(m1[i]):+.2f}", ha="right", va="center", fontsize=6.5,
                color="black" if kept else PALETTE["grey"])
        ax.text(1.08, ys[i], f"{float(m2[i]):+.2f}", ha="left", va="center", fontsize=6.5,
                color="black" if kept else PALETTE["grey"])
    ax.scatter([0, 2], [0, 0], s=160, color=PALETTE["black"], zorder=3)
    ax.text(-0.08, 0, "x", ha="right", va="center", fontsize=11)
    ax.text(2.08, 0, "y", ha="left", va="center", fontsize=11)
    ax.text(0.5, -1.25, "a_i (random, kept or pruned)", ha="center", fontsize=8)
    ax.text(1.5, -1.25, "b_i", ha="center", fontsize=8)
    ax.plot([], [], color=BRANCH_COLORS["plus"], lw=2, label="kept, a > 0 (carries x ≥ 0)")
    ax.plot([], [], color=BRANCH_COLORS["minus"], lw=2, label="kept, a < 0 (carries x < 0)")
    ax.plot([], [], color=PALETTE["grey"], alpha=0.4, lw=1, label="pruned")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, 1.16), ncols=3, fontsize=7.5)
    ax.set_xlim(-0.3, 2.3)
    ax.set_ylim(-1.35, 1.15)
    ax.axis("off")
    return ax


def draw_gadget_function(ax: "plt.Axes", ticket) -> "plt.Axes":
    """The target ``y = w x`` and what the pruned gadget computes, for ``x ∈ [-1, 1]`` (chapter 6)."""
    import torch

    x = torch.linspace(-1, 1, 201, dtype=torch.float64).unsqueeze(1)
    with torch.no_grad():
        ax.plot(x[:, 0], ticket.target(x)[:, 0], color=PALETTE["black"], lw=3, alpha=0.35, label="target w·x")
        ax.plot(x[:, 0], ticket.ticket(x)[:, 0], color=PALETTE["vermillion"], lw=1.4, label="pruned gadget")
    w = float(ticket.target_weights[0])
    plus, minus = float(ticket.plus[0]), float(ticket.minus[0])
    ax.set_xlabel("input x")
    ax.set_ylabel("output y")
    ax.set_title(f"w = {w:+.4f}; w⁺ = {plus:+.4f}, w⁻ = {minus:+.4f}", fontsize=9)
    ax.legend(fontsize=8)
    return ax


def plot_construction(result: Mapping, axes: "Sequence[plt.Axes] | None" = None) -> "Sequence[plt.Axes]":
    """The SubsetSum construction on a trained target against the width factor n (chapter 6).

    ``result`` is the stored ``slt_construction`` result. Left: per-weight error
    (median, 99th percentile, largest over all target weights) and the
    network's relative sup error on the sphere. Middle: kept and source
    weights over target weights. Right: test accuracy of ticket and target.
    Markers are seeds, lines their means.
    """
    rows = result["rows"]
    ns = sorted({r["n"] for r in rows})
    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(11.0, 3.5))
    ax_err, ax_size, ax_acc = axes

    def series(key, sub=None):
        vals = [[(r[key][sub] if sub else r[key]) for r in rows if r["n"] == n] for n in ns]
        return vals, [float(np.mean(v)) for v in vals]

    for (key, sub, label, color) in (("weight_error_quantiles", "0.5", "weight error, median", PALETTE["sky"]),
                                     ("weight_error_quantiles", "0.99", "weight error, 99th pct", PALETTE["blue"]),
                                     ("max_weight_error", None, "weight error, largest", PALETTE["purple"]),
                                     ("relative", None, "network: sup error / sup output", PALETTE["vermillion"])):
        vals, mean = series(key, sub)
        ax_err.plot(ns, mean, "-", color=color, label=label, lw=2 if key == "relative" else 1.4)
        for n, v in zip(ns, vals):
            ax_err.plot([n] * len(v), v, ".", color=color, ms=4)
    ax_err.set_yscale("log")
    ax_err.set_xlabel("width factor n (hidden units per input)")
    ax_err.set_ylabel("error")
    ax_err.legend(fontsize=7)
    for key, label, color in (("source_over_target", "random source / target", PALETTE["grey"]),
                              ("kept_over_target", "kept (ticket) / target", PALETTE["green"])):
        _, mean = series(key)
        ax_size.plot(ns, mean, "o-", color=color, label=label, ms=4)
    ax_size.set_xlabel("width factor n (hidden units per input)")
    ax_size.set_ylabel("weights relative to the target")
    ax_size.legend(fontsize=8)
    for key, label, color in (("target_test_accuracy", "target", PALETTE["black"]),
                              ("ticket_test_accuracy", "pruned random network", PALETTE["vermillion"]),
                              ("agreement", "same prediction as target", PALETTE["sky"])):
        vals, mean = series(key)
        ax_acc.plot(ns, mean, "-", color=color, label=label)
        for n, v in zip(ns, vals):
            ax_acc.plot([n] * len(v), v, ".", color=color, ms=4)
    ax_acc.set_xlabel("width factor n (hidden units per input)")
    ax_acc.set_ylabel("test accuracy / agreement")
    ax_acc.set_ylim(0, 1.02)
    ax_acc.legend(fontsize=8, loc="lower right")
    return axes


def _mean_by(rows: Sequence[Mapping], keys: Sequence[str], value: str = "test_accuracy") -> dict:
    groups: dict = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r[value])
    return {k: (float(np.mean(v)), float(np.min(v)), float(np.max(v))) for k, v in groups.items()}


def hidden_units(widths: Sequence[float], base: int) -> list[int]:
    """Hidden units per layer of an MLP with ``base`` units at width 1 (chapter 6's width axes)."""
    from .models import scale_width

    return [scale_width(base, w) for w in widths]


def plot_edge_popup_width(result: Mapping, config: Mapping, axes: "Sequence[plt.Axes] | None" = None,
                          mark: tuple[float, float] | None = None) -> "Sequence[plt.Axes]":
    """edge-popup test accuracy against width, one panel per weight distribution (chapter 6).

    One line per kept fraction k (dark = sparse), shaded between the seeds'
    lowest and highest; black: the same MLP trained densely. ``mark`` rings
    one ``(width, k)`` cell in every panel (the explorer's selection).
    """
    rows = result["rows"]
    widths = sorted({r["width"] for r in rows})
    base = int(config["hidden"][0]) if config.get("hidden") else 1
    units = hidden_units(widths, base)
    inits = [i for i in config["weight_inits"]]
    densities = sorted({r["density"] for r in rows if r["kind"] == "edge-popup"})
    if axes is None:
        _, axes = plt.subplots(1, len(inits), figsize=(4.8 * len(inits), 3.6), sharey=True)
    axes = list(np.atleast_1d(axes))
    dense = _mean_by([r for r in rows if r["kind"] == "dense"], ["width"])
    ep = _mean_by([r for r in rows if r["kind"] == "edge-popup"], ["weight_init", "density", "width"])
    colors = _density_colors(densities)
    for ax, init in zip(axes, inits):
        d = [dense[(w,)] for w in widths]
        ax.plot(units, [m for m, _, _ in d], "-", color=PALETTE["black"], lw=2, label="dense, trained weights")
        for p in densities:
            s = [ep[(init, p, w)] for w in widths]
            ax.plot(units, [m for m, _, _ in s], "o-", color=colors[p], ms=4, label=f"edge-popup, k = {p:g}")
            ax.fill_between(units, [lo for _, lo, _ in s], [hi for _, _, hi in s], color=colors[p], alpha=0.15, lw=0)
        if mark is not None and (init, mark[1], mark[0]) in ep:
            u = hidden_units([mark[0]], base)[0]
            ax.plot([u], [ep[(init, mark[1], mark[0])][0]], "o", ms=13, mfc="none", mec=PALETTE["vermillion"], mew=2)
        ax.set_xscale("log", base=2)
        ax.set_xticks(units, [str(u) for u in units])
        ax.set_xlabel("hidden units per layer")
        ax.set_title(WEIGHT_INIT_LABELS.get(init, init), fontsize=10)
        ax.set_ylim(0, 1.02)
    axes[0].set_ylabel("test accuracy")
    axes[-1].legend(fontsize=7.5, loc="lower right")
    return axes


def plot_weight_init_comparison(result: Mapping, ax: "plt.Axes | None" = None) -> "plt.Axes":
    """Signed Kaiming constant against Kaiming normal, one point per (width, k), seed means (chapter 6)."""
    ax = _axes(ax, (4.2, 3.8))
    rows = [r for r in result["rows"] if r["kind"] == "edge-popup"]
    ep = _mean_by(rows, ["weight_init", "density", "width"])
    densities = sorted({r["density"] for r in rows})
    colors = _density_colors(densities)
    for p in densities:
        widths = sorted({r["width"] for r in rows if r["density"] == p})
        x = [ep[("kaiming_normal", p, w)][0] for w in widths]
        y = [ep[("signed_constant", p, w)][0] for w in widths]
        ax.scatter(x, y, color=colors[p], s=[14 + 10 * i for i in range(len(widths))], label=f"k = {p:g}", zorder=3)
    ax.plot([0, 1], [0, 1], color=PALETTE["grey"], lw=1)
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("test accuracy, Kaiming normal weights")
    ax.set_ylabel("test accuracy, signed Kaiming constant")
    ax.legend(fontsize=7.5, title="bigger dot: wider", title_fontsize=7.5, loc="lower right")
    return ax


def plot_er_source(result: Mapping, config: Mapping, axes: "Sequence[plt.Axes] | None" = None,
                   dense: Mapping | None = None) -> "Sequence[plt.Axes]":
    """edge-popup inside ER sources: accuracy against width, one panel per target density (chapter 6).

    One line per source density (1 = the full random network), shaded
    between seeds. ``dense`` optionally maps a width multiplier to the dense
    network's mean accuracy (from ``edge_popup_width``), drawn in grey.
    """
    rows = result["rows"]
    targets = sorted({r["density"] for r in rows})
    sources = sorted({r["source_density"] for r in rows}, reverse=True)
    base = int(config["hidden"][0]) if config.get("hidden") else 1
    if axes is None:
        _, axes = plt.subplots(1, len(targets), figsize=(4.8 * len(targets), 3.6), sharey=True)
    axes = list(np.atleast_1d(axes))
    acc = _mean_by(rows, ["density", "source_density", "width"])
    for ax, k in zip(axes, targets):
        if dense:
            ws = sorted(w for w in dense if w in {r["width"] for r in rows})
            ax.plot(hidden_units(ws, base), [dense[w] for w in ws], "-", color=PALETTE["grey"], lw=2,
                    label="dense, trained weights")
        for q in sources:
            widths = sorted({r["width"] for r in rows if r["density"] == k and r["source_density"] == q})
            if not widths:
                continue
            s = [acc[(k, q, w)] for w in widths]
            units = hidden_units(widths, base)
            label = "full random network" if q == 1.0 else f"ER source, density {q:g}"
            ax.plot(units, [m for m, _, _ in s], "o-", color=source_density_color(q), ms=4, label=label)
            ax.fill_between(units, [lo for _, lo, _ in s], [hi for _, _, hi in s], color=source_density_color(q),
                            alpha=0.12, lw=0)
        ax.set_xscale("log", base=2)
        units = hidden_units(sorted({r["width"] for r in rows}), base)
        ax.set_xticks(units, [str(u) for u in units])
        ax.set_xlabel("hidden units per layer")
        ax.set_title(f"ticket keeps k = {k:g} of each layer", fontsize=10)
        ax.set_ylim(0, 1.02)
    axes[0].set_ylabel("test accuracy")
    axes[-1].legend(fontsize=7.5, loc="lower right")
    return axes


# ----------------------------------------------------------------------------- chapter 7: sparse-to-sparse
# Figures of chapter 7 (*Sparse-to-sparse*). They only read stored results of
# rpbook.experiments.s2s_imp, s2s_pruning_at_init and layer_collapse.

#: Marker of each ER source density (chapter 7); the colour is the source's rule (RULE_COLORS).
SOURCE_DENSITY_MARKERS: dict[float, str] = {0.5: "o", 0.3: "s", 0.2: "^"}
#: Colour and label of each pruning method of chapter 7.
PAI_METHOD_COLORS: dict[str, str] = {
    "imp": PALETTE["black"], "magnitude": PALETTE["vermillion"], "magnitude-layer": PALETTE["orange"],
    "snip": PALETTE["blue"], "grasp": PALETTE["green"], "synflow": PALETTE["purple"],
    "synflow-oneshot": PALETTE["sky"], "random-layer": PALETTE["grey"], "random-global": PALETTE["yellow"],
}
PAI_METHOD_LABELS: dict[str, str] = {
    "imp": "IMP", "magnitude": "magnitude, global", "magnitude-layer": "magnitude, per-layer quotas",
    "snip": "SNIP", "grasp": "GraSP", "synflow": "SynFlow (iterative)", "synflow-oneshot": "SynFlow (one-shot)",
    "random-layer": "random, per layer", "random-global": "random, global",
}


def _source_style(source: str) -> dict:
    """Line style of a source label such as ``"dense"`` or ``"balanced 0.3"``."""
    if source == "dense":
        return {"color": RULE_COLORS["dense"], "marker": "D", "ls": "--"}
    rule, density = source.rsplit(" ", 1)
    return {"color": RULE_COLORS.get(rule, PALETTE["grey"]), "marker": SOURCE_DENSITY_MARKERS.get(float(density), "o"),
            "ls": "-"}


def plot_s2s_imp(result: Mapping, axes: "Sequence[plt.Axes] | None" = None, *,
                 highlight: str | None = None) -> "Sequence[plt.Axes]":
    """IMP from the dense network against IMP inside ER sources: one panel per source density (chapter 7).

    Each panel shows test accuracy against the target density for the dense
    source (black, dashed) and the three rules' sources of that density;
    lines are means over seeds, bands ± one standard deviation. ``highlight``
    (a source label) is drawn bold, the other ER sources faint.
    """
    from .experiments import s2s_imp

    sources = s2s_imp.sources_of(result)
    densities = sorted({float(s.rsplit(" ", 1)[1]) for s in sources if s != "dense"}, reverse=True)
    if axes is None:
        _, axes = plt.subplots(1, len(densities), figsize=(3.4 * len(densities), 3.4), sharey=True)
    axes = np.atleast_1d(axes)
    dense = s2s_imp.imp_curve(result, "dense", targets_only=True)
    targets = dense["density"]
    for ax, p0 in zip(axes, densities):
        _errorbar(ax, dense["density"], dense["mean"], dense["std"], color=RULE_COLORS["dense"], ls="--",
                  label="dense source")
        for source in sources:
            if source == "dense" or float(source.rsplit(" ", 1)[1]) != p0:
                continue
            c = s2s_imp.imp_curve(result, source, targets_only=True)
            style = _source_style(source)
            faint = highlight is not None and source != highlight
            _errorbar(ax, c["density"], c["mean"], c["std"], color=style["color"], alpha=0.3 if faint else 1.0,
                      lw=2.4 if highlight == source else 1.6, label=RULE_LABELS.get(source.rsplit(" ", 1)[0]))
        density_ticks(ax, targets)
        ax.invert_xaxis()
        ax.set_title(f"ER sources of density {p0:g}", fontsize=10)
        ax.set_xlabel("target density (log scale)")
    axes[0].set_ylabel("test accuracy after IMP")
    axes[-1].legend(fontsize=8, loc="lower left")
    return axes


def plot_imp_flops(result: Mapping, axes: "Sequence[plt.Axes] | None" = None, *,
                   target: float | None = None) -> "Sequence[plt.Axes]":
    """What starting sparse saves (chapter 7): IMP training FLOPs per source, and accuracy against them.

    Left: training FLOPs summed over all IMP levels up to ``target`` (default:
    the sparsest target), one bar per source. Right: test accuracy at
    ``target`` against those FLOPs, a point per source (± one std over seeds).
    """
    from .experiments import s2s_imp

    targets = sorted({s["density"] for s in result["summary"] if s["is_target"]})
    target = targets[0] if target is None else target
    rows = [r for r in s2s_imp.flops_table(result, [target])]
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.6), width_ratios=(1.4, 1))
    bars, dots = axes
    x = np.arange(len(rows))
    for i, r in enumerate(rows):
        style = _source_style(r["source"])
        bars.bar(i, r["train_flops"] / 1e9, color=style["color"], alpha=0.85)
        if r["fraction_of_dense"] is not None and r["source"] != "dense":
            bars.text(i, r["train_flops"] / 1e9, f"{r['fraction_of_dense']:.0%}", ha="center", va="bottom", fontsize=7)
    bars.set_xticks(x, [r["source"].replace(" ", "\n") for r in rows], fontsize=7)
    bars.set_ylabel("training GFLOPs, all IMP levels")
    bars.set_title(f"compute to reach density {target:g} (labels: share of the dense source's)", fontsize=9)
    for r in rows:
        c = s2s_imp.imp_curve(result, r["source"], targets_only=True)
        j = [k for k, d in enumerate(c["density"]) if math.isclose(d, target)][0]
        style = _source_style(r["source"])
        dots.errorbar(r["train_flops"] / 1e9, c["mean"][j], yerr=c["std"][j], fmt=style["marker"], color=style["color"],
                      ms=6, capsize=2, label=r["source"])
    dots.set_xlim(0, None)
    dots.set_xlabel("training GFLOPs, all IMP levels")
    dots.set_ylabel(f"test accuracy at density {target:g}")
    dots.legend(fontsize=6.5, ncols=2, loc="lower right")
    return axes


def plot_pruning_at_init(result: Mapping, axes: "Sequence[plt.Axes] | None" = None) -> "Sequence[plt.Axes]":
    """Pruning at initialization from the dense network and from ER sources: one panel per method (chapter 7).

    Test accuracy after training against the target density; one line per
    source (dense dashed black, ER sources coloured by density as in chapter 6),
    means over seeds with ± one std bands. A cross marks a target at which
    some seed's mask had no input→output path.
    """
    from .experiments.s2s_pruning_at_init import pai_curve

    methods = list(dict.fromkeys(s["method"] for s in result["summary"]))
    sources = list(dict.fromkeys(s["source"] for s in result["summary"]))
    if axes is None:
        _, axes = plt.subplots(1, len(methods), figsize=(2.7 * len(methods), 3.3), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, method in zip(axes, methods):
        for source in sources:
            c = pai_curve(result, source, method)
            style = _source_style(source)
            # one rule per result in the book: colour the sources by density, as chapter 6 does
            color = RULE_COLORS["dense"] if source == "dense" else source_density_color(float(source.rsplit(" ", 1)[1]))
            _errorbar(ax, c["density"], c["mean"], c["std"], color=color, ls=style["ls"],
                      label="dense source" if source == "dense" else f"{source} source")
            for d, m, k in zip(c["density"], c["mean"], c["collapsed"]):
                if k:
                    ax.plot(d, m, "x", color=DEAD_COLOR, ms=8, mew=2)
        density_ticks(ax, c["density"])
        ax.invert_xaxis()
        ax.set_title(PAI_METHOD_LABELS.get(method, method), fontsize=10)
        ax.set_xlabel("target density")
    axes[0].set_ylabel("test accuracy after training")
    axes[-1].legend(fontsize=7, loc="lower left")
    return axes


def plot_layer_collapse(result: Mapping, axes: "Sequence[plt.Axes] | None" = None) -> "Sequence[plt.Axes]":
    """Layer collapse (chapter 7). Left: share of seeds whose mask has no input→output path, against density,
    per method (solid: dense source; dashed: ER source). Right: test accuracy of the masks trained at the
    extreme density, with chance level."""
    from .experiments.layer_collapse import collapse_curve

    methods = list(dict.fromkeys(s["method"] for s in result["summary"]))
    sources = list(dict.fromkeys(s["source"] for s in result["summary"]))
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.6), width_ratios=(1.2, 1))
    left, right = axes
    offsets = np.linspace(-0.03, 0.03, len(methods))
    for k, method in enumerate(methods):
        for source in sources:
            c = collapse_curve(result, source, method)
            left.plot(np.asarray(c["density"]) * (1 + offsets[k]), c["collapsed"], marker="o", ms=4,
                      color=PAI_METHOD_COLORS.get(method), ls="-" if source == "dense" else "--",
                      label=PAI_METHOD_LABELS.get(method, method) if source == sources[0] else None)
    density_ticks(left, c["density"])
    left.invert_xaxis()
    left.set_ylim(-0.05, 1.05)
    left.set_xlabel("target density (log scale)")
    left.set_ylabel("share of seeds collapsed")
    left.set_title(f"solid: {sources[0]} source" + (f"; dashed: {sources[1]} source" if len(sources) > 1 else ""),
                   fontsize=9)
    left.legend(fontsize=7, loc="center left", bbox_to_anchor=(0.3, 0.4))
    trained = [s for s in result["summary"] if s["test_acc"]["n"]]
    width = 0.8 / max(1, len(sources))
    for j, source in enumerate(sources):
        for k, method in enumerate(methods):
            hit = [s for s in trained if s["source"] == source and s["method"] == method]
            if not hit:
                continue
            acc = hit[0]["test_acc"]
            x = k + (j - (len(sources) - 1) / 2) * width
            right.bar(x, acc["mean"], width=width * 0.95, color=PAI_METHOD_COLORS.get(method),
                      alpha=1.0 if source == sources[0] else 0.5, hatch=None if source == sources[0] else "//",
                      yerr=acc["std"], capsize=2)
            if hit[0]["collapsed"]:
                right.text(x, acc["mean"] + acc["std"] + 0.01, f"{hit[0]['collapsed']}/{hit[0]['n']}\ncut", ha="center",
                           fontsize=6, color=DEAD_COLOR)
    right.axhline(0.1, color=PALETTE["grey"], ls=":", lw=1)
    right.set_xticks(range(len(methods)), [PAI_METHOD_LABELS.get(m, m).replace(", ", ",\n").replace(" (", "\n(")
                                           for m in methods], fontsize=7)
    d = trained[0]["density"] if trained else float("nan")
    right.set_ylabel(f"test accuracy at density {d:g}")
    right.set_title(f"trained at density {d:g} (plain: {sources[0]}" + (f"; hatched: {sources[1]}" if len(sources) > 1 else "") + "; dotted: chance)",
                    fontsize=9)
    return axes
