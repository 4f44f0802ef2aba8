"""Chapter 2, *ER masks as random graphs*: masks drawn as layered graphs, degree
histograms, per-layer densities, and the graph explorer (density, width and rule sliders).

The notebook of this chapter imports this module (and the science modules) only;
no chapter module imports another.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import networkx as nx
import numpy as np
from matplotlib.figure import Figure
from scipy import stats

from ..graphs import (NetworkTopology, chain_adjacencies, layered_positions, network_graph, network_topology,
                      reachability)
from ..masks import check_density, check_rule, layerwise_densities, sample_masks, shape_rules
from ..models import MLP
from .explorer import VARY_CHOICES, figure_png, fixed_layout_figure, frames_twin, live_panel
from .style import DEAD_COLOR, LIVE_COLOR, PALETTE, axes_or_new, book_style, nice_number, rule_color, rule_label

# The notebook imports only this module: the style helpers it needs come with it.
from .style import Table, glue, use_book_style  # noqa: F401

#: Densities of the graph explorer's slider and of its HTML twin's frames.
DENSITIES: tuple[float, ...] = (0.5, 0.3, 0.2, 0.1, 0.05, 0.03, 0.02, 0.01, 0.005, 0.003, 0.002, 0.001)
#: Hidden widths of the graph explorer's slider and of the width twin's frames.
WIDTHS: tuple[int, ...] = (16, 32, 64, 128, 256, 512, 1024)


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
    ax = axes_or_new(ax, (7.0, 3.6))
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
    ax = axes_or_new(ax)
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
    ax = axes_or_new(ax, (max(6.4, 0.42 * len(layer_names) * max(1, len(densities)) / 2.5), 3.6))
    n_rules = len(densities)
    width = 0.8 / max(1, n_rules)
    x = np.arange(len(layer_names))
    for i, (rule, values) in enumerate(densities.items()):
        ax.bar(x + (i - (n_rules - 1) / 2) * width, values, width=width, label=rule_label(rule),
               color=rule_color(rule))
    ax.set_xticks(x, layer_names, rotation=60 if len(layer_names) > 6 else 0, ha="right" if len(layer_names) > 6 else "center",
                  fontsize=8 if len(layer_names) > 6 else 9)
    ax.set_ylabel(r"layer density $p_\ell$")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("layer (input → output)")
    ax.legend(ncols=min(5, n_rules))
    return ax


@dataclass(frozen=True)
class ExplorerState:
    """What one frame of the explorer shows: density, hidden width, rule and dead-unit repair."""

    density: float
    width: int
    rule: str
    repair: bool = False


def _check_width_units(width: object) -> int:
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or int(width) < 1:
        raise ValueError(f"width must be a positive integer number of hidden units, got {width!r}")
    return int(width)


class GraphExplorer:
    """A masked MLP ``in -> width x depth -> classes`` drawn as a layered graph (chapter 2).

    :meth:`update` resamples the masks for a state, recomputes the topology
    statistics and redraws the figure; :meth:`live` wraps it in ipywidgets
    sliders; :meth:`html_twin` records frames of it for static HTML.

    Parameters
    ----------
    in_features, num_classes
        Input and output units (40 and 10: MNIST-1D, as in chapter 1).
    depth
        Number of hidden layers.
    max_units
        Units drawn per layer (evenly spaced); the statistics always use all units.
    seed
        Mask seed. The same seed at a lower density keeps a subset of the
        weights kept at a higher one, so the frames show one graph thinning out.
    """

    def __init__(self, *, in_features: int = 40, num_classes: int = 10, depth: int = 2, max_units: int = 14,
                 seed: int = 0, figsize: tuple[float, float] = (9.0, 3.6), dpi: int = 72):
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth must be an integer >= 1 (hidden layers), got {depth!r}")
        self.in_features = _check_width_units(in_features)
        self.num_classes = _check_width_units(num_classes)
        self.depth = depth
        self.max_units = _check_width_units(max_units)
        self.seed = int(seed)
        # Fixed axes rectangles instead of a layout engine: a redraw must stay fast.
        self.figure = fixed_layout_figure(figsize, dpi)
        self._models: dict[int, MLP] = {}
        self.state: ExplorerState | None = None
        self.topology: NetworkTopology | None = None
        self.masks: dict | None = None

    # -- the one update every view uses
    def model(self, width: int) -> MLP:
        """The (dense) MLP whose layers get masked, built once per width."""
        width = _check_width_units(width)
        if width not in self._models:
            self._models[width] = MLP(self.in_features, (width,) * self.depth, self.num_classes)
        return self._models[width]

    def update(self, density: float = 0.1, width: int = 128, rule: str = "erk", repair: bool = False) -> NetworkTopology:
        """Resample the masks for this state, recompute the statistics and redraw (chapter 2).

        Raises
        ------
        ValueError
            For a density outside (0, 1], an unknown rule or a bad width.
        """
        state = ExplorerState(check_density(density), _check_width_units(width), check_rule(rule), bool(repair))
        self.masks = sample_masks(self.model(state.width), state.density, state.rule, seed=self.seed, repair=state.repair)
        self.topology = network_topology(self.masks)
        self.state = state
        self.draw()
        return self.topology

    def draw(self) -> Figure:
        """Redraw the figure for the current state: the graph left, per-layer statistics right."""
        if self.state is None or self.masks is None or self.topology is None:
            raise ValueError("nothing to draw yet: call update(density, width, rule) first")
        state, topo = self.state, self.topology
        fig = self.figure
        fig.clear()
        with book_style():
            ax_graph = fig.add_axes((0.01, 0.12, 0.6, 0.76))
            ax_bars = fig.add_axes((0.71, 0.16, 0.27, 0.66))
            graph = network_graph(self.masks, max_units=self.max_units)
            draw_layered_graph(graph, ax_graph, node_size=28, edge_width=0.6, edge_alpha=0.45)
            repaired = ", repaired" if state.repair else ""
            ax_graph.set_title(f"MLP {self.in_features}-{'-'.join([str(state.width)] * self.depth)}-{self.num_classes}, "
                               f"{rule_label(state.rule)}, p = {state.density:g}{repaired}", fontsize=10)
            fwd, bwd = reachability(chain_adjacencies(self.masks))
            cut = [1.0 - float((f & b).mean()) for f, b in zip(fwd, bwd)]
            labels = ["in"] + [f"h{i}" for i in range(1, self.depth + 1)] + ["out"]
            x = np.arange(len(cut))
            ax_bars.bar(x, cut, color=DEAD_COLOR, width=0.6)
            ax_bars.set_xticks(x, labels)
            ax_bars.set_ylim(0, 1.0)
            ax_bars.set_ylabel("fraction of units on no path")
            ax_bars.set_xlabel("unit layer")
            for xi, c in zip(x, cut):
                inside = c > 0.85
                ax_bars.text(xi, c - 0.04 if inside else c + 0.02, f"{c:.0%}", ha="center", va="top" if inside else "bottom",
                             fontsize=8, color="white" if inside else PALETTE["black"])
            ax_bars.set_title(
                f"kept {nice_number(sum(t.kept for t in topo.layers))} weights; "
                f"paths {nice_number(topo.paths)}\ninputs reaching an output: {topo.inputs_reaching_output:.0%}",
                fontsize=9)
        return fig

    def render_png(self) -> bytes:
        """The current figure as PNG bytes."""
        return figure_png(self.figure)

    # -- views
    def live(self, *, density: float = 0.1, width: int = 128, rule: str = "erk",
             densities: Sequence[float] = DENSITIES, widths: Sequence[int] = WIDTHS, rules: Sequence[str] | None = None):
        """Sliders (density, width) and a rule dropdown, live in Jupyter/Colab.

        Returns an ``ipywidgets.interactive``; display it, move a slider, and
        :meth:`update` runs and the drawing below it changes. Its attribute
        ``explorer`` is this object.
        """
        import ipywidgets as widgets

        rules = shape_rules() if rules is None else rules  # score-derived rules need a data batch
        densities = sorted({check_density(d) for d in (*densities, density)})
        widths = sorted({_check_width_units(w) for w in (*widths, width)})
        style = {"description_width": "initial"}
        controls = {
            "density": widgets.SelectionSlider(options=[(f"{d:g}", d) for d in densities], value=check_density(density),
                                               description="density p", continuous_update=False, style=style),
            "width": widgets.SelectionSlider(options=widths, value=_check_width_units(width),
                                             description="hidden width", continuous_update=False, style=style),
            "rule": widgets.Dropdown(options=[(rule_label(r), check_rule(r)) for r in rules], value=check_rule(rule),
                                     description="rule", style=style),
        }

        return live_panel(self.figure, self.update, controls, after=lambda topo: print(topo.summary()),
                          explorer=self)

    def html_twin(self, *, vary: str = "density", density: float = 0.1, width: int = 64, rule: str = "erk",
                  densities: Sequence[float] = DENSITIES, widths: Sequence[int] = WIDTHS, interval_ms: int = 700):
        """Frames of :meth:`update` behind a JavaScript slider, for the static HTML book.

        ``vary="density"`` moves through ``densities`` at a fixed ``width``;
        ``vary="width"`` moves through ``widths`` at a fixed ``density``.
        Returns an ``IPython.display.HTML`` (``Animation.to_jshtml``, frames inline).
        """
        if vary not in VARY_CHOICES:
            raise ValueError(f"vary must be one of {', '.join(VARY_CHOICES)}, got {vary!r}")
        if vary == "density":
            states = [(check_density(d), _check_width_units(width)) for d in densities]
        else:
            states = [(check_density(density), _check_width_units(w)) for w in widths]
        if not states:
            raise ValueError(f"need at least one {vary} for the frames")
        rule = check_rule(rule)
        # frames at the figure's own (small) dpi
        return frames_twin(self.figure, lambda i: self.update(*states[i], rule), len(states),
                           interval_ms=interval_ms, dpi=self.figure.dpi,
                           labels=[f"density p = {p:g}, hidden width {w}" for p, w in states])


def graph_explorer(*, static: bool = False, vary: str = "density", density: float = 0.1, width: int | None = None,
                   rule: str = "erk", depth: int = 2, seed: int = 0, max_units: int = 14,
                   densities: Sequence[float] = DENSITIES, widths: Sequence[int] = WIDTHS):
    """The chapter-2 explorer: live ipywidgets, or (``static=True``) its HTML twin.

    Chapter 2, *Explore it yourself*. Both views draw every frame with the same
    :meth:`GraphExplorer.update`, so the twin shows exactly what the sliders
    would. ``width`` defaults to 128 hidden units for the live view and 64 for
    the twin (smaller frames thin out sooner).

    Returns
    -------
    ipywidgets.interactive or IPython.display.HTML
    """
    explorer = GraphExplorer(depth=depth, seed=seed, max_units=max_units)
    if static:
        return explorer.html_twin(vary=vary, density=density, width=64 if width is None else width, rule=rule,
                                  densities=densities, widths=widths)
    return explorer.live(density=density, width=128 if width is None else width, rule=rule,
                         densities=densities, widths=widths)






# ----------------------------------------------------------------------------- the papers' code, by arithmetic


def resnet18_cifar_shapes(num_classes: int = 10) -> list[tuple[int, ...]]:
    """Weight shapes of the CIFAR ResNet-18 (3×3 stem, four stages of two basic blocks, 1×1 shortcuts).

    Chapter 2, *Where this book differs from the papers' code*: the layout on
    which Gadhikar et al. report their layer-wise rules. Only shapes: nothing is
    built or trained.
    """
    shapes: list[tuple[int, ...]] = [(64, 3, 3, 3)]
    c_in = 64
    for planes, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
        for block in range(2):
            shapes += [(planes, c_in, 3, 3), (planes, planes, 3, 3)]
            if (stride if block == 0 else 1) != 1 or c_in != planes:
                shapes.append((planes, c_in, 1, 1))  # the projection shortcut
            c_in = planes
    shapes.append((num_classes, 512))
    return shapes


def released_code_rows(shapes: Sequence[tuple[int, ...]], density: float,
                       rules: Sequence[str] = ("balanced", "erk")) -> list[dict]:
    """The book's layer-wise densities against the released code's clip-only ones, per rule (chapter 2).

    For each rule: the realized global density with redistribution (the book,
    :func:`rpbook.masks.layerwise_densities`) and without (``redistribute=False``),
    the largest per-layer difference and how many layers clip at density 1.
    Pure arithmetic on the shapes.
    """
    sizes = [int(np.prod(s)) for s in shapes]
    total = sum(sizes)
    rows = []
    for rule in rules:
        book = layerwise_densities(shapes, density, rule)
        clipped = layerwise_densities(shapes, density, rule, redistribute=False)
        rows.append({
            "rule": rule,
            "requested": density,
            "realized (book)": sum(p * n for p, n in zip(book, sizes)) / total,
            "realized (clip only)": sum(p * n for p, n in zip(clipped, sizes)) / total,
            "largest layer difference": max(abs(a - b) for a, b in zip(book, clipped)),
            "layers at density 1": sum(p >= 1.0 for p in clipped),
        })
    return rows


# ----------------------------------------------------------------------------- the numbers the prose quotes


def numbers(*, widths: Sequence[float] | None = None, densities: Sequence[float] | None = None,
            reach: np.ndarray | None = None, topologies: Mapping[str, NetworkTopology] | None = None,
            released: Sequence[Mapping] | None = None) -> dict:
    """Every number chapter 2's prose quotes, by glue name.

    ``reach[w, a]``: fraction of inputs reaching an output at width
    ``widths[w]`` and density ``densities[a]`` (mean over masks); the chapter
    quotes the lowest density at which every input still does
    (``connected_width_<w>``, NaN if none). ``topologies``: one
    :class:`~rpbook.graphs.NetworkTopology` per rule of the MLP at p = 0.02
    (``pyramidal_paths_002``: the input-output paths the pyramidal mask leaves).
    ``released``: :func:`released_code_rows` on ResNet-18 (``released_<rule>``:
    the realized density without redistribution, ``released_<rule>_maxdiff``).
    """
    out: dict = {}
    if reach is not None:
        for w, _ in enumerate(widths):
            ok = [p for p, r in zip(densities, reach[w]) if r == 1.0]
            out[f"connected_width_{w}"] = min(ok) if ok else float("nan")
    if topologies is not None and "pyramidal" in topologies:
        out["pyramidal_paths_002"] = topologies["pyramidal"].paths
    for row in released or ():
        out[f"released_{row['rule']}"] = row["realized (clip only)"]
        out[f"released_{row['rule']}_maxdiff"] = row["largest layer difference"]
    return out
