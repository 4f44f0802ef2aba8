"""Interactive explorers for the book, each with a static HTML twin.

Chapter 2 (*ER masks as random graphs*) uses :func:`graph_explorer`: density
and width sliders and a rule dropdown drive a live drawing of a masked MLP as
a layered graph, with its statistics. Live ipywidgets need a running kernel
(Jupyter, Colab). For readers of the static HTML book, the same function
builds a twin: frames precomputed at several densities (or widths) behind a
JavaScript slider (matplotlib's ``Animation.to_jshtml``), which works with no
kernel and no extra dependency. Both draw every frame with
:meth:`GraphExplorer.draw`, so they show the same picture.

Only notebooks import this module; the science (``masks``, ``graphs``, ...)
never does.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from matplotlib.animation import FuncAnimation
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .graphs import NetworkTopology, network_graph, network_topology, reachability, chain_adjacencies
from .masks import RULES, check_density, check_rule, sample_masks
from .models import MLP
from .plots import BOOK_RC, DEAD_COLOR, LIVE_COLOR, PALETTE, RULE_LABELS, book_style, draw_layered_graph, nice_number

#: Densities of the explorer's slider and of its HTML twin's frames.
DENSITIES: tuple[float, ...] = (0.5, 0.3, 0.2, 0.1, 0.05, 0.03, 0.02, 0.01, 0.005, 0.003, 0.002, 0.001)
#: Hidden widths of the explorer's slider and of the width twin's frames.
WIDTHS: tuple[int, ...] = (16, 32, 64, 128, 256, 512, 1024)
VARY_CHOICES: tuple[str, ...] = ("density", "width")


#: Button glyphs of the JavaScript player, replacing matplotlib's Font Awesome icons (a CDN stylesheet).
_PLAYER_GLYPHS = {
    "minus": "\u2212", "fast-backward": "\u21e4", "step-backward": "\u2039", "play fa-flip-horizontal": "\u25c0",
    "pause": "||", "play": "\u25b6", "step-forward": "\u203a", "fast-forward": "\u21e5", "plus": "+",
}


def offline_jshtml(anim: FuncAnimation, *, dpi: float | None = None) -> str:
    """``anim.to_jshtml()`` that works offline: the HTML twin of every explorer (chapters 2–7).

    matplotlib's player loads its button icons from a CDN stylesheet (Font
    Awesome); offline the buttons are blank and the browser logs an error. This
    removes the stylesheet and writes the buttons as plain Unicode glyphs.
    ``dpi`` renders the frames at that resolution (default: ``savefig.dpi``).
    """
    import re

    import matplotlib as mpl

    with mpl.rc_context({"savefig.dpi": dpi} if dpi is not None else {}):
        html = anim.to_jshtml(default_mode="once")
    html = re.sub(r'<link rel="stylesheet"\s+href="https://maxcdn\.bootstrapcdn\.com/[^"]*">', "", html)

    def glyph(match: "re.Match[str]") -> str:
        return _PLAYER_GLYPHS.get(match.group(1), "\u00b7")

    return re.sub(r'<i class="fa fa-([\w -]+?)"></i>', glyph, html)


def figure_png(figure: Figure) -> bytes:
    """``figure`` as PNG bytes: what every live explorer shows after a slider moves (chapters 2–7)."""
    buf = io.BytesIO()
    figure.savefig(buf, format="png")
    return buf.getvalue()


#: Layout of every HTML twin: the frame scales to the column on wide screens; on a phone it keeps a readable
#: size inside its own horizontal scroller (the page never gets wider than the screen), and the controls wrap.
_TWIN_STYLE = """<style>
.rpbook-twin { max-width: 100%; }
.rpbook-twin .animation { display: block; max-width: 100%; }
.rpbook-twin .rpbook-twin-frame { max-width: 100%; overflow-x: auto; }
.rpbook-twin .rpbook-twin-frame img { max-width: 100%; height: auto; }
.rpbook-twin input[type=range].anim-slider { width: min(374px, 100%); }
.rpbook-twin .anim-buttons { display: flex; flex-wrap: wrap; justify-content: center; gap: 2px; }
.rpbook-twin .rpbook-twin-label { display: block; font-weight: 600; margin: 4px 0; }
@media (max-width: 720px) {
  #_rpbook_twinUID .rpbook-twin-frame img { max-width: none; width: PHONE_PXpx; }
}
</style>"""


def frames_twin(figure: Figure, draw_frame: Callable[[int], object], n_frames: int, *, interval_ms: int = 800,
                dpi: float | None = None, labels: Sequence[str] | None = None):
    """The HTML twin of an explorer: ``draw_frame(i)`` for ``i < n_frames`` behind a JavaScript slider.

    Every explorer of chapters 2–7 builds its static version with this, so the
    HTML reader drags through the same frames the live sliders would show.
    ``labels[i]`` (default "frame i of n") is shown above the slider for the
    frame on screen, like a live slider's value. On a phone the frame keeps a
    readable size in its own horizontal scroller. Returns an ``IPython.display.HTML``.
    """
    import re

    from IPython.display import HTML

    if n_frames < 1:
        raise ValueError(f"need at least one frame, got {n_frames}")
    labels = [f"frame {i + 1} of {n_frames}" for i in range(n_frames)] if labels is None else [str(x) for x in labels]
    if len(labels) != n_frames:
        raise ValueError(f"labels: need one per frame ({n_frames}), got {len(labels)}")
    draw_frame(0)

    def frame(i: int) -> list:
        draw_frame(i)
        return []

    anim = FuncAnimation(figure, frame, frames=n_frames, interval=interval_ms, repeat=False)
    html = offline_jshtml(anim, dpi=dpi)
    uid = re.search(r'id="_anim_img(\w+)"', html).group(1)
    html = html.replace(f'<img id="_anim_img{uid}">', f'<div class="rpbook-twin-frame"><img id="_anim_img{uid}"></div>', 1)
    label = (f'<output class="rpbook-twin-label" id="_rpbook_label{uid}" aria-live="polite">'
             f'{_html_escape(labels[0])}</output>')
    html = html.replace('<div class="anim-controls">', '<div class="anim-controls">\n    ' + label, 1)
    # The player sets the image's src for every frame (slider, buttons, play): follow it with the label.
    labels_js = json.dumps(labels).replace("</", "<\\/")  # a label can never close the script
    follow = (f'<script>(function() {{ var labels = {labels_js};'
              f' var img = document.getElementById("_anim_img{uid}");'
              f' var out = document.getElementById("_rpbook_label{uid}");'
              f' new MutationObserver(function() {{ var a = window["anim{uid}"];'
              f' if (a) {{ out.textContent = labels[a.current_frame]; }} }})'
              f'.observe(img, {{attributes: true, attributeFilter: ["src"]}}); }})();</script>')
    width_px = int(round(figure.get_figwidth() * (dpi if dpi is not None else _savefig_dpi(figure))))
    style = _TWIN_STYLE.replace("PHONE_PX", str(max(320, min(width_px, 900)))).replace("UID", uid)
    return HTML(f'{style}<div class="rpbook-twin" id="_rpbook_twin{uid}">{html}{follow}</div>')


def _savefig_dpi(figure: Figure) -> float:
    import matplotlib as mpl

    dpi = mpl.rcParams["savefig.dpi"]
    return figure.dpi if dpi == "figure" else float(dpi)


def _html_escape(text: str) -> str:
    import html

    return html.escape(text, quote=True)


def live_panel(figure: Figure, update: Callable[..., Any], controls: dict, *,
               after: Callable[[Any], None] | None = None, explorer: Any = None):
    """The live version of an explorer: ``ipywidgets.interactive`` over ``controls`` (chapters 2–7).

    Every move of a control calls ``update(**values)``, which redraws
    ``figure``, and shows the figure; ``after`` gets what ``update`` returned
    (e.g. to print statistics). ``explorer`` is kept as the panel's attribute
    of that name, so code and tests can drive it.
    """
    import ipywidgets as widgets
    from IPython.display import Image, display

    def show(**state) -> None:
        out = update(**state)
        display(Image(data=figure_png(figure)))
        if after is not None:
            after(out)

    panel = widgets.interactive(show, **controls)
    panel.explorer = explorer
    return panel


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
                               f"{RULE_LABELS[state.rule]}, p = {state.density:g}{repaired}", fontsize=10)
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
             densities: Sequence[float] = DENSITIES, widths: Sequence[int] = WIDTHS, rules: Sequence[str] = RULES):
        """Sliders (density, width) and a rule dropdown, live in Jupyter/Colab.

        Returns an ``ipywidgets.interactive``; display it, move a slider, and
        :meth:`update` runs and the drawing below it changes. Its attribute
        ``explorer`` is this object.
        """
        import ipywidgets as widgets

        densities = sorted({check_density(d) for d in (*densities, density)})
        widths = sorted({_check_width_units(w) for w in (*widths, width)})
        style = {"description_width": "initial"}
        controls = {
            "density": widgets.SelectionSlider(options=[(f"{d:g}", d) for d in densities], value=check_density(density),
                                               description="density p", continuous_update=False, style=style),
            "width": widgets.SelectionSlider(options=widths, value=_check_width_units(width),
                                             description="hidden width", continuous_update=False, style=style),
            "rule": widgets.Dropdown(options=[(RULE_LABELS[r], check_rule(r)) for r in rules], value=check_rule(rule),
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


__all__ = ["DENSITIES", "WIDTHS", "ExplorerState", "GraphExplorer", "graph_explorer", "offline_jshtml", "figure_png",
           "frames_twin", "live_panel", "fixed_layout_figure"]


# ----------------------------------------------------------------------------- chapter 4


class WidthExplorer:
    """Density and width sliders over the stored teacher–student grid (chapter 4).

    Left: the error heatmap of the trained students with the chosen
    ``(p, k)`` cell ringed. Right: at that cell, the coverage probability
    ``1 - (1 - p)^k`` of one (unit, input) pair, the probability that the
    replication construction succeeds for the whole teacher, and the students'
    errors (typical and per seed). Nothing is trained: every frame reads the
    stored result, so the live sliders and the HTML twin show the same numbers.

    Parameters
    ----------
    result
        The stored result of the ``teacher_student_width`` experiment.
    k_star, fit_c
        Optional overlays for the heatmap (see :func:`rpbook.plots.plot_error_heatmap`).
    """

    def __init__(self, result: dict, *, k_star: Sequence[float] | None = None, fit_c: float | None = None,
                 figsize: tuple[float, float] = (9.6, 3.9), dpi: int = 80):
        from .experiments.teacher_student_width import error_grid

        self.result = result
        self.grid = error_grid(result)
        self.teacher_widths = tuple(int(n) for n in result["teacher_widths"])
        self.k_star = k_star
        self.fit_c = fit_c
        self.figure = fixed_layout_figure(figsize, dpi)  # fixed axes rectangles, whatever the book style says
        self.density: float | None = None
        self.k: int | None = None

    def _check(self, density: float, k: int) -> tuple[float, int]:
        densities = [float(p) for p in self.grid.densities]
        ks = [int(x) for x in self.grid.width_factors]
        if density not in densities:
            raise ValueError(f"density {density!r} is not on the stored grid; allowed: {', '.join(f'{p:g}' for p in densities)}")
        if k not in ks:
            raise ValueError(f"width factor {k!r} is not on the stored grid; allowed: {', '.join(map(str, ks))}")
        return float(density), int(k)

    def numbers(self, density: float, k: int) -> dict:
        """What the right panel shows at ``(density, k)``: coverage, construction probability, errors."""
        from .overparam import construction_probability, coverage_probability

        density, k = self._check(density, k)
        i = list(self.grid.densities).index(density)
        j = list(self.grid.width_factors).index(k)
        return {
            "coverage": float(coverage_probability(density, k)),
            "construction": construction_probability(self.teacher_widths, density, k),
            "typical_error": float(self.grid.typical()[i, j]),
            "seed_errors": [float(v) for v in self.grid.values[i, j]],
        }

    def update(self, density: float, k: int) -> dict:
        """Select a cell of the grid and redraw; returns :meth:`numbers` there."""
        density, k = self._check(density, k)
        self.density, self.k = density, k
        self.draw()
        return self.numbers(density, k)

    def draw(self) -> Figure:
        """Redraw both panels for the current cell."""
        from .overparam import construction_probability, coverage_probability
        from .plots import plot_error_heatmap

        if self.density is None or self.k is None:
            raise ValueError("nothing to draw yet: call update(density, k) first")
        fig = self.figure
        fig.clear()
        nums = self.numbers(self.density, self.k)
        with book_style():
            ax_map = fig.add_axes((0.08, 0.15, 0.5, 0.75))
            ax_cov = fig.add_axes((0.76, 0.36, 0.22, 0.44))
            plot_error_heatmap(list(self.grid.densities), list(self.grid.width_factors), self.grid.typical(), ax_map,
                               mark=(self.density, self.k), k_star=self.k_star, fit_c=self.fit_c, colorbar=True)
            ax_map.set_title(f"students' test error; ringed: p = {self.density:g}, k = {self.k}", fontsize=10)
            ks = np.arange(1, int(max(self.grid.width_factors)) + 1)
            whole = [construction_probability(self.teacher_widths, self.density, int(x)) for x in ks]
            ax_cov.plot(ks, coverage_probability(self.density, ks), color=PALETTE["blue"], label="one pair covered")
            ax_cov.plot(ks, whole, color=PALETTE["vermillion"], label="whole teacher copied")
            ax_cov.plot([self.k], [nums["coverage"]], "o", color=PALETTE["blue"])
            ax_cov.plot([self.k], [nums["construction"]], "o", color=PALETTE["vermillion"])
            ax_cov.set_xscale("log")
            ax_cov.set_ylim(-0.03, 1.03)
            ax_cov.set_xlabel("width factor k")
            ax_cov.set_ylabel("probability")
            ax_cov.set_title(f"coverage at p = {self.density:g}", fontsize=10)
            ax_cov.legend(fontsize=8, loc="upper left")
            seeds = ", ".join(f"{e:.3f}" for e in nums["seed_errors"])
            fig.text(0.66, 0.03,
                     f"at k = {self.k}: one pair {nums['coverage']:.3f}, whole teacher {nums['construction']:.2g}\n"
                     f"test error {nums['typical_error']:.3f} (seeds: {seeds})", fontsize=9, va="bottom")
        return fig

    def render_png(self) -> bytes:
        """The current figure as PNG bytes."""
        return figure_png(self.figure)

    def live(self, *, density: float | None = None, k: int | None = None):
        """Density and width sliders (``ipywidgets.interactive``) for Jupyter/Colab."""
        import ipywidgets as widgets

        densities = [float(p) for p in self.grid.densities]
        ks = [int(x) for x in self.grid.width_factors]
        density, k = self._check(densities[len(densities) // 2] if density is None else density,
                                 ks[len(ks) // 2] if k is None else k)
        style = {"description_width": "initial"}
        controls = {
            "density": widgets.SelectionSlider(options=[(f"{p:g}", p) for p in densities], value=density,
                                               description="density p", continuous_update=False, style=style),
            "k": widgets.SelectionSlider(options=ks, value=k, description="width factor k",
                                         continuous_update=False, style=style),
        }

        return live_panel(self.figure, self.update, controls, explorer=self)

    def html_twin(self, *, vary: str = "density", density: float | None = None, k: int | None = None,
                  interval_ms: int = 800):
        """Frames over the stored densities (at width ``k``) or widths (at ``density``), as a JavaScript slider."""
        if vary not in VARY_CHOICES:
            raise ValueError(f"vary must be one of {', '.join(VARY_CHOICES)}, got {vary!r}")
        densities = [float(p) for p in self.grid.densities]
        ks = [int(x) for x in self.grid.width_factors]
        if vary == "density":
            k = ks[len(ks) // 2] if k is None else k
            cells = [self._check(p, k) for p in densities]
        else:
            density = densities[len(densities) // 2] if density is None else density
            cells = [self._check(density, x) for x in ks]
        return frames_twin(self.figure, lambda i: self.update(*cells[i]), len(cells), interval_ms=interval_ms,
                           labels=[f"density p = {p:g}, width factor k = {k}" for p, k in cells])


def width_explorer(result: dict, *, static: bool = False, vary: str = "density", density: float | None = None,
                   k: int | None = None, k_star: Sequence[float] | None = None, fit_c: float | None = None):
    """The chapter-4 explorer: live sliders, or (``static=True``) its HTML twin.

    Chapter 4, *Explore the grid*. ``result`` is the stored
    ``teacher_student_width`` result; both views draw with
    :meth:`WidthExplorer.update`.
    """
    explorer = WidthExplorer(result, k_star=k_star, fit_c=fit_c)
    if static:
        return explorer.html_twin(vary=vary, density=density, k=k)
    return explorer.live(density=density, k=k)


__all__ += ["WidthExplorer", "width_explorer"]


# ----------------------------------------------------------------------------- chapter 5: gradient flow

#: Choices of the init dropdown of :func:`init_signal_explorer`; "all" overlays the three.
INIT_CHOICES: tuple[str, ...] = ("all", "dense", "layer-scaled", "unit-scaled")


def draw_init_signal(figure: Figure, result: dict, density: float, init: str = "all") -> Figure:
    """One frame of the chapter-5 explorer: variance through depth (forward, backward) and gradient norm at init.

    ``result`` is the stored ``init_signal_propagation`` result; ``init`` one of
    :data:`INIT_CHOICES`. Only stored densities can be shown (nothing is
    computed here).
    """
    from .plots import draw_grad_norm_at_init, draw_signal_through_depth

    densities = sorted({e["density"] for e in result["summary"]})
    if not any(abs(density - d) < 1e-12 for d in densities):
        raise ValueError(f"density {density!r} is not stored; stored: {', '.join(f'{d:g}' for d in densities)}")
    if init not in INIT_CHOICES:
        raise ValueError(f"unknown init {init!r}; allowed: {', '.join(INIT_CHOICES)}")
    inits = None if init == "all" else [init]
    figure.clear()
    with book_style():
        # Fixed axes rectangles (no layout engine, no subplots_adjust): the frames of the HTML twin line up.
        axes = [figure.add_axes((0.085 + 0.33 * i, 0.27, 0.235, 0.62)) for i in range(3)]
        draw_signal_through_depth(axes[0], axes[1], result, density, inits)
        draw_grad_norm_at_init(axes[2], result, inits, mark=density)
        axes[2].set_title("gradient norm at init", fontsize=10)
        # Fixed limits over all densities, so that the frames of the HTML twin line up.
        for ax, key in ((axes[0], "act_var"), (axes[1], "grad_var")):
            values = [v for e in result["summary"] for v in e[key] if v > 0]
            ax.set_ylim(min(values) / 2, max(values) * 2)
        handles, labels = axes[0].get_legend_handles_labels()
        figure.legend(handles, labels, loc="lower center", ncols=len(labels), fontsize=8, bbox_to_anchor=(0.5, 0.0))
    return figure


def init_signal_explorer(result: dict, *, static: bool = False, density: float = 0.1, init: str = "all",
                         figsize: tuple[float, float] = (9.6, 3.4), dpi: int = 80):
    """Chapter 5's explorer: a density slider and an init dropdown over stored signal-propagation results.

    Live (Jupyter/Colab): ``ipywidgets.interactive`` with a density slider and
    an init dropdown. ``static=True``: the HTML twin, a JavaScript slider over
    one frame per stored density, all three inits overlaid. Both draw with
    :func:`draw_init_signal`.

    Returns
    -------
    ipywidgets.interactive or IPython.display.HTML
    """
    densities = sorted({e["density"] for e in result["summary"]}, reverse=True)

    def draw(figure: Figure, density: float, init: str) -> None:
        draw_init_signal(figure, result, density, init)

    if static:
        return _stored_sweep_view(draw, [{"density": d, "init": init} for d in densities], None, figsize, dpi)
    import ipywidgets as widgets

    style = {"description_width": "initial"}
    start = min(densities, key=lambda d: abs(d - density))
    controls = {
        "density": widgets.SelectionSlider(options=[(f"{d:g}", d) for d in densities], value=start,
                                           description="density p", continuous_update=False, style=style),
        "init": widgets.Dropdown(options=list(INIT_CHOICES), value=init, description="init", style=style),
    }
    return _stored_sweep_view(draw, [], controls, figsize, dpi)


__all__ += ["INIT_CHOICES", "draw_init_signal", "init_signal_explorer"]


# ----------------------------------------------------------------------------- chapter 3: training random sparse networks
# Sliders over the STORED sweeps of rpbook.experiments.rule_density_sweep and
# width_sweep: moving a slider only redraws, nothing is trained. Each explorer
# has a live ipywidgets view and an HTML twin (one frame per stored value
# behind a JavaScript slider); both draw with the same function.


def _stored(values: Sequence[float], x: float, what: str) -> float:
    """The stored value equal to ``x``; ``ValueError`` listing the stored values otherwise."""
    for v in values:
        if abs(v - float(x)) <= 1e-9 * max(1.0, abs(v)):
            return v
    raise ValueError(f"{what} {x!r} is not in the stored sweep; stored: {', '.join(f'{v:g}' for v in values)}")


def draw_rule_density(figure: Figure, result: dict, density: float, rule: str | None = None) -> Figure:
    """One frame of chapter 3's density explorer over a stored ``rule_density_sweep`` result.

    Left: test accuracy against density per rule (``rule`` bold, the others
    faint; ``None`` shows all alike), each seed at ``density`` as a dot. Right:
    the density each rule gives each layer at ``density``, on a log scale.
    The axes have fixed places, so the frames of the HTML twin line up; the
    explorers draw on a fixed-layout figure (``fixed_layout_figure``).
    """
    from .experiments import rule_density_sweep as rds
    from .plots import RULE_COLORS, plot_accuracy_vs_density

    rules = rds.rules_of(result)
    density = _stored(rds.densities_of(result), check_density(density), "density")
    if rule is not None and rule not in rules:
        raise ValueError(f"rule {rule!r} is not in the stored sweep; stored: {', '.join(rules)}")
    shown = [rule] if rule else rules
    top = max(s["test_acc"]["max"] for s in result["summary"])
    figure.clear()
    with book_style():
        ax = figure.add_axes((0.08, 0.15, 0.5, 0.74))
        plot_accuracy_vs_density(result, ax, highlight=rule, mark_density=density)
        for r in shown:
            accs = [row["test_acc"] for row in rds.unit_rows(result, rule=r, density=density)]
            ax.plot([density] * len(accs), accs, "o", ms=4.5, color=RULE_COLORS.get(r), mec="white", mew=0.6)
        ax.set_ylim(0, top + 0.05)
        ax.set_title(f"test accuracy; the seeds at p = {density:g} as dots", fontsize=10)
        bars = figure.add_axes((0.68, 0.2, 0.3, 0.66))
        layers = list(result["layers"])
        x = np.arange(len(layers))
        width = 0.8 / len(shown)
        for i, r in enumerate(shown):
            dens = rds.unit_rows(result, rule=r, density=density)[0]["layer_densities"]
            bars.bar(x + (i - (len(shown) - 1) / 2) * width, dens, width=width, color=RULE_COLORS.get(r),
                     label=RULE_LABELS.get(r, r))
        bars.axhline(density, color=PALETTE["grey"], lw=1, ls=":")
        bars.set_yscale("log")
        bars.set_ylim(min(rds.densities_of(result)) / 20, 1.5)
        bars.set_xticks(x, layers)
        bars.set_xlabel("layer (input → output)")
        bars.set_ylabel("layer density p_l (log scale)")
        bars.set_title(f"how each rule spends p = {density:g}", fontsize=10)
        bars.legend(fontsize=7, ncols=2, loc="lower left")
    return figure


def draw_width_gap(figure: Figure, result: dict, width: float, density: float) -> Figure:
    """One frame of chapter 3's width explorer over a stored ``width_sweep`` result.

    Left: test accuracy against hidden units for the dense network, the random
    sparse one at ``density`` and the dense one with as many weights, ``width``
    marked. Right: every seed at that width and the gap (dense − sparse).
    The axes have fixed places.
    """
    from .experiments import width_sweep as ws
    from .plots import ARM_COLORS, plot_width_sweep

    widths = sorted({g["width"] for g in result["gaps"]})
    densities = sorted({g["density"] for g in result["gaps"]}, reverse=True)
    width = _stored(widths, width, "width")
    density = _stored(densities, check_density(density), "density")
    units = {float(k): v[0] for k, v in result["hidden_units"].items()}
    top = max(s["test_acc"]["max"] for s in result["summary"])
    figure.clear()
    with book_style():
        ax = figure.add_axes((0.08, 0.15, 0.52, 0.74))
        plot_width_sweep(result, density, ax, mark_width=width)
        ax.set_ylim(0, top + 0.05)
        ax.set_title(f"p = {density:g}: test accuracy against width", fontsize=10)
        dots = figure.add_axes((0.7, 0.2, 0.28, 0.66))
        arms = [a for a in ws.ARMS if any(r["arm"] == a for r in result["runs"])]
        for i, arm in enumerate(arms):
            accs = [r["test_acc"] for r in result["runs"] if r["arm"] == arm and r["width"] == width
                    and (arm == "dense" or abs(r["density"] - density) < 1e-12)]
            dots.plot(i + np.linspace(-0.12, 0.12, len(accs)), accs, "o", ms=5, color=ARM_COLORS[arm])
        dots.set_xticks(range(len(arms)), ["dense", "sparse", "dense,\nsame weights"][:len(arms)])
        dots.set_xlim(-0.5, len(arms) - 0.5)
        dots.set_ylim(0, top + 0.05)
        dots.set_ylabel("test accuracy (a dot per seed)")
        g = ws.gap(result, width, density)
        dots.set_title(f"{units[width]} units: gap {g['gap']:.3f} ± {g['gap_se']:.3f}", fontsize=10)
    return figure


def _stored_sweep_view(draw, states: Sequence[dict], controls: dict | None, figsize: tuple[float, float], dpi: int):
    """Live ``interactive`` over ``controls``, or (``controls=None``) the HTML twin over ``states``.

    ``draw(figure, **state)`` draws one state of a stored result; nothing is computed here.
    """
    figure = fixed_layout_figure(figsize, dpi)
    if controls is None:
        labels = [", ".join(f"{k} = {v:g}" if isinstance(v, float) else f"{k} = {v}" for k, v in state.items()
                            if v is not None) for state in states]
        return frames_twin(figure, lambda i: draw(figure, **states[i]), len(states), labels=labels)
    return live_panel(figure, lambda **state: draw(figure, **state), controls)


def training_sweep_explorer(result: dict, *, static: bool = False, density: float = 0.1, rule: str = "erk",
                            width: float | None = None, figsize: tuple[float, float] = (10.0, 3.8), dpi: int = 80):
    """Chapter 3's explorer over a stored sweep; nothing is trained when a slider moves.

    For a ``rule_density_sweep`` result: a density slider and a rule dropdown
    (:func:`draw_rule_density`); the HTML twin (``static=True``) has one frame
    per stored density with every rule shown. For a ``width_sweep`` result:
    width and density sliders (:func:`draw_width_gap`); the twin has one frame
    per stored width at ``density``.

    Returns
    -------
    ipywidgets.interactive or IPython.display.HTML
    """
    import functools

    style = {"description_width": "initial"}
    if "hidden_units" in result:
        widths = sorted({g["width"] for g in result["gaps"]})
        densities = sorted({g["density"] for g in result["gaps"]}, reverse=True)
        density = _stored(densities, density, "density")
        draw = functools.partial(draw_width_gap, result=result)
        if static:
            return _stored_sweep_view(draw, [{"width": w, "density": density} for w in widths], None, figsize, dpi)
        import ipywidgets as widgets

        units = {float(k): v[0] for k, v in result["hidden_units"].items()}
        controls = {
            "width": widgets.SelectionSlider(options=[(str(units[w]), w) for w in widths],
                                             value=_stored(widths, widths[0] if width is None else width, "width"),
                                             description="hidden units", continuous_update=False, style=style),
            "density": widgets.SelectionSlider(options=[(f"{d:g}", d) for d in densities], value=density,
                                               description="density p", continuous_update=False, style=style),
        }
        return _stored_sweep_view(draw, [], controls, figsize, dpi)

    from .experiments import rule_density_sweep as rds

    densities = rds.densities_of(result)
    density = _stored(densities, density, "density")
    draw = functools.partial(draw_rule_density, result=result)
    if static:
        return _stored_sweep_view(draw, [{"density": d, "rule": None} for d in densities], None, figsize, dpi)
    import ipywidgets as widgets

    controls = {
        "density": widgets.SelectionSlider(options=[(f"{d:g}", d) for d in densities], value=density,
                                           description="density p", continuous_update=False, style=style),
        "rule": widgets.Dropdown(options=[(RULE_LABELS.get(r, r), r) for r in rds.rules_of(result)], value=rule,
                                 description="rule", style=style),
    }
    return _stored_sweep_view(draw, [], controls, figsize, dpi)


__all__ += ["draw_rule_density", "draw_width_gap", "training_sweep_explorer"]


# ----------------------------------------------------------------------------- chapter 6: strong lottery tickets

#: Largest n of the SubsetSum explorer's slider (exact search stays instant).
SUBSET_SUM_MAX_N = 24


def fixed_layout_figure(figsize: tuple[float, float], dpi: int) -> Figure:
    """A figure whose axes keep the rectangles they are given, also after ``savefig`` under the book style.

    Every explorer of chapters 2–7 draws on one, so the frames of an HTML twin line up.

    (``savefig`` restores a figure without layout engine through
    ``set_layout_engine(None)``, which switches on constrained layout when the
    book style is active; an explicit do-nothing engine survives that.)
    """
    from matplotlib.layout_engine import PlaceHolderLayoutEngine

    figure = Figure(figsize=figsize, dpi=dpi, layout="none")
    figure.set_layout_engine(PlaceHolderLayoutEngine(adjust_compatible=True, colorbar_gridspec=True))
    FigureCanvasAgg(figure)
    return figure


class SubsetSumExplorer:
    """n and target sliders over one random SubsetSum instance (chapter 6, *SubsetSum*).

    The numbers are the first ``n`` of one fixed draw of ``U[-1, 1]`` numbers,
    so moving ``n`` adds numbers to the same instance. Every frame solves the
    instance exactly (:func:`rpbook.slt.solve_subset_sum`) and draws it with
    :func:`rpbook.plots.draw_subset_sum`.
    """

    def __init__(self, *, seed: int = 0, max_n: int = SUBSET_SUM_MAX_N, figsize: tuple[float, float] = (9.6, 3.4),
                 dpi: int = 80):
        from .slt import MAX_EXACT_N, random_numbers

        if isinstance(max_n, bool) or not isinstance(max_n, int) or not 1 <= max_n <= MAX_EXACT_N:
            raise ValueError(f"max_n must be an integer in 1..{MAX_EXACT_N}, got {max_n!r}")
        self.max_n = max_n
        self.pool = random_numbers(max_n, seed=seed)
        self.figure = fixed_layout_figure(figsize, dpi)

    def update(self, n: int, target: float) -> dict:
        """Solve the instance of the first ``n`` numbers for ``target`` and redraw; returns the solution."""
        from .plots import draw_subset_sum
        from .slt import solve_subset_sum

        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= int(n) <= self.max_n:
            raise ValueError(f"n must be an integer in 1..{self.max_n}, got {n!r}")
        if not -1.0 <= float(target) <= 1.0:
            raise ValueError(f"target must lie in [-1, 1], got {target!r}")
        values = self.pool[: int(n)]
        sol = solve_subset_sum(values, float(target))
        self.figure.clear()
        with book_style():
            # Fixed axes rectangles (no layout engine), so that the HTML twin's frames line up.
            ax_numbers = self.figure.add_axes((0.07, 0.17, 0.36, 0.71))
            ax_walk = self.figure.add_axes((0.53, 0.17, 0.45, 0.71))
            draw_subset_sum(ax_numbers, ax_walk, values, float(target), sol.selected)
        return {"n": int(n), "target": float(target), "selected": sol.selected.tolist(), "sum": float(sol.sums),
                "error": float(sol.errors)}

    def render_png(self) -> bytes:
        return figure_png(self.figure)

    def live(self, *, n: int = 8, target: float = 0.37):
        """``ipywidgets.interactive`` with an n slider and a target slider (Jupyter/Colab)."""
        import ipywidgets as widgets

        style = {"description_width": "initial"}
        controls = {
            "n": widgets.IntSlider(value=n, min=1, max=self.max_n, description="n numbers", continuous_update=False,
                                   style=style),
            "target": widgets.FloatSlider(value=target, min=-1.0, max=1.0, step=0.01, description="target z",
                                          continuous_update=False, style=style),
        }

        return live_panel(self.figure, self.update, controls, explorer=self)

    def html_twin(self, *, target: float = 0.37, ns: Sequence[int] | None = None, interval_ms: int = 700):
        """One frame per ``n`` at a fixed target, behind a JavaScript slider (static HTML)."""
        ns = list(range(1, self.max_n + 1)) if ns is None else [int(n) for n in ns]
        return frames_twin(self.figure, lambda i: self.update(ns[i], target), len(ns), interval_ms=interval_ms,
                           labels=[f"n = {n} numbers" for n in ns])


def subset_sum_explorer(*, static: bool = False, n: int = 8, target: float = 0.37, seed: int = 0,
                        ns: Sequence[int] | None = None):
    """Chapter 6's SubsetSum explorer: live n and target sliders, or (``static=True``) frames over n."""
    explorer = SubsetSumExplorer(seed=seed)
    if static:
        return explorer.html_twin(target=target, ns=ns)
    return explorer.live(n=n, target=target)


class EdgePopupExplorer:
    """Width and kept-fraction sliders over the stored edge-popup results (chapter 6).

    Left: accuracy against width at the chosen kept fraction ``k``, both weight
    distributions, the dense network, and the chosen width ringed. Right, at
    the chosen ``(width, k)``: the dense network, edge-popup with each weight
    distribution, and (when ``er_result`` has that cell) edge-popup inside ER
    sources. Nothing is trained: every frame reads stored results.
    """

    def __init__(self, width_record: dict, er_record: dict | None = None, *,
                 figsize: tuple[float, float] = (10.0, 3.7), dpi: int = 80):
        self.rows = width_record["result"]["rows"]
        self.config = width_record["config"]
        self.er_rows = er_record["result"]["rows"] if er_record else []
        self.widths = sorted({r["width"] for r in self.rows})
        self.densities = sorted({r["density"] for r in self.rows if r["kind"] == "edge-popup"})
        self.figure = fixed_layout_figure(figsize, dpi)

    def _check(self, width: float, density: float) -> tuple[float, float]:
        if width not in self.widths:
            raise ValueError(f"width {width!r} is not stored; stored: {', '.join(f'{w:g}' for w in self.widths)}")
        if density not in self.densities:
            raise ValueError(f"kept fraction {density!r} is not stored; stored: {', '.join(f'{p:g}' for p in self.densities)}")
        return float(width), float(density)

    def numbers(self, width: float, density: float) -> dict:
        """Mean test accuracy (over seeds) of every variant stored at ``(width, k)``."""
        width, density = self._check(width, density)

        def mean(rows):
            vals = [r["test_accuracy"] for r in rows]
            return float(np.mean(vals)) if vals else None

        out = {"dense": mean([r for r in self.rows if r["kind"] == "dense" and r["width"] == width])}
        for init in self.config["weight_inits"]:
            out[init] = mean([r for r in self.rows if r["kind"] == "edge-popup" and r["width"] == width
                              and r["density"] == density and r["weight_init"] == init])
        for q in sorted({r["source_density"] for r in self.er_rows if r["source_density"] < 1}, reverse=True):
            m = mean([r for r in self.er_rows if r["source_density"] == q and r["width"] == width
                      and r["density"] == density])
            if m is not None:
                out[f"ER source {q:g}"] = m
        return out

    def update(self, width: float, density: float) -> dict:
        """Select ``(width, k)`` and redraw; returns :meth:`numbers` there."""
        from .plots import (PALETTE as COLORS, WEIGHT_INIT_COLORS, WEIGHT_INIT_LABELS, hidden_units,
                            source_density_color)

        width, density = self._check(width, density)
        nums = self.numbers(width, density)
        base = int(self.config["hidden"][0]) if self.config.get("hidden") else 1
        units = hidden_units(self.widths, base)
        fig = self.figure
        fig.clear()
        with book_style():
            # Fixed axes rectangles (no layout engine), so that the HTML twin's frames line up.
            ax_curve = fig.add_axes((0.07, 0.15, 0.47, 0.75))
            ax_bar = fig.add_axes((0.72, 0.15, 0.26, 0.75))
            dense = [float(np.mean([r["test_accuracy"] for r in self.rows if r["kind"] == "dense" and r["width"] == w]))
                     for w in self.widths]
            ax_curve.plot(units, dense, "-", color=COLORS["black"], lw=2, label="dense, trained weights")
            for init in self.config["weight_inits"]:
                acc = [float(np.mean([r["test_accuracy"] for r in self.rows if r["kind"] == "edge-popup"
                                      and r["width"] == w and r["density"] == density and r["weight_init"] == init]))
                       for w in self.widths]
                ax_curve.plot(units, acc, "o-", ms=4, color=WEIGHT_INIT_COLORS.get(init), label=WEIGHT_INIT_LABELS.get(init, init))
            u = hidden_units([width], base)[0]
            ax_curve.axvline(u, color=COLORS["grey"], ls="--", lw=1)
            ax_curve.set_xscale("log", base=2)
            ax_curve.set_xticks(units, [str(x) for x in units])
            ax_curve.set_ylim(0, 1.02)
            ax_curve.set_xlabel("hidden units per layer")
            ax_curve.set_ylabel("test accuracy (mean of seeds)")
            ax_curve.set_title(f"edge-popup keeping k = {density:g} of each layer", fontsize=10)
            ax_curve.legend(fontsize=7.5, loc="lower right")
            labels, values, colors = [], [], []
            for key, value in nums.items():
                if value is None:
                    continue
                if key == "dense":
                    labels.append("dense"); colors.append(COLORS["black"])
                elif key in WEIGHT_INIT_COLORS:
                    labels.append(WEIGHT_INIT_LABELS[key].replace("signed Kaiming constant", "signed const.")
                                  .replace("Kaiming normal", "Kaiming normal")); colors.append(WEIGHT_INIT_COLORS[key])
                else:
                    q = float(key.split()[-1])
                    labels.append(f"ER {q:g} (sign. c.)"); colors.append(source_density_color(q))
                values.append(value)
            y = np.arange(len(values))[::-1]
            ax_bar.barh(y, values, color=colors)
            for yi, v in zip(y, values):
                inside = v > 0.3  # short bars get their label beside them
                ax_bar.text(v - 0.02 if inside else v + 0.02, yi, f"{v:.3f}", ha="right" if inside else "left",
                            va="center", color="white" if inside else "black", fontsize=8)
            ax_bar.set_yticks(y, labels, fontsize=8)
            ax_bar.set_xlim(0, 1)
            ax_bar.set_xlabel("test accuracy")
            ax_bar.set_title(f"{u} hidden units, k = {density:g}", fontsize=10)
        return nums

    def render_png(self) -> bytes:
        return figure_png(self.figure)

    def live(self, *, width: float | None = None, density: float | None = None):
        """Width and kept-fraction sliders (``ipywidgets.interactive``) for Jupyter/Colab."""
        import ipywidgets as widgets

        from .plots import hidden_units

        base = int(self.config["hidden"][0]) if self.config.get("hidden") else 1
        width = self.widths[len(self.widths) // 2] if width is None else width
        density = self.densities[len(self.densities) // 2] if density is None else density
        width, density = self._check(width, density)
        style = {"description_width": "initial"}
        controls = {
            "width": widgets.SelectionSlider(options=[(str(u), w) for u, w in zip(hidden_units(self.widths, base), self.widths)],
                                             value=width, description="hidden units", continuous_update=False, style=style),
            "density": widgets.SelectionSlider(options=[(f"{p:g}", p) for p in self.densities], value=density,
                                               description="kept fraction k", continuous_update=False, style=style),
        }

        return live_panel(self.figure, self.update, controls, explorer=self)

    def html_twin(self, *, vary: str = "width", width: float | None = None, density: float | None = None,
                  interval_ms: int = 800):
        """Frames over the stored widths (at ``density``) or kept fractions (at ``width``), as a JavaScript slider."""
        if vary not in ("width", "density"):
            raise ValueError(f"vary must be 'width' or 'density', got {vary!r}")
        if vary == "width":
            density = self.densities[len(self.densities) // 2] if density is None else density
            cells = [self._check(w, density) for w in self.widths]
        else:
            width = self.widths[len(self.widths) // 2] if width is None else width
            cells = [self._check(width, p) for p in self.densities]
        return frames_twin(self.figure, lambda i: self.update(*cells[i]), len(cells), interval_ms=interval_ms,
                           labels=[f"width ×{w:g}, kept fraction {p:g}" for w, p in cells])


def edge_popup_explorer(width_record: dict, er_record: dict | None = None, *, static: bool = False,
                        vary: str = "width", width: float | None = None, density: float | None = None):
    """Chapter 6's edge-popup explorer over stored results: live sliders, or (``static=True``) its HTML twin.

    ``width_record`` / ``er_record`` are the stored records (``run_experiment(...)``)
    of ``edge_popup_width`` and ``edge_popup_er_source``.
    """
    explorer = EdgePopupExplorer(width_record, er_record)
    if static:
        return explorer.html_twin(vary=vary, width=width, density=density)
    return explorer.live(width=width, density=density)


__all__ += ["SubsetSumExplorer", "subset_sum_explorer", "EdgePopupExplorer", "edge_popup_explorer"]


# ----------------------------------------------------------------------------- chapter 7: sparse-to-sparse
# One explorer over the STORED results of rpbook.experiments.s2s_imp and
# s2s_pruning_at_init: source rule, source density and pruning method.
# Nothing is trained when a control moves.


def _s2s_rows(imp_result: dict, pai_result: dict | None, method: str, source: str, seed: int | None = None) -> list:
    if method == "imp":
        return [r for r in imp_result["runs"] if r["source"] == source and (seed is None or r["seed"] == seed)]
    if pai_result is None:
        return []
    return [r for r in pai_result["runs"] if r["source"] == source and r["method"] == method
            and (seed is None or r["seed"] == seed)]


def draw_s2s_explorer(figure: Figure, imp_result: dict, pai_result: dict | None = None, *, rule: str = "balanced",
                      source_density: float = 0.3, method: str = "imp") -> Figure:
    """One frame of chapter 7's explorer: a pruning method from the dense network vs from one ER source.

    Left: test accuracy against target density for the dense source (black,
    dashed) and the chosen source (bold); the other stored ER sources faint.
    Right: the layer densities of the chosen source and of the final masks
    (sparsest target, first seed) from both sources, on a log scale: pruning
    inside a source inherits its layer-wise ratios. ``method`` is ``"imp"`` or
    a method of the pruning-at-init result. The axes have fixed places.
    """
    from .experiments import s2s_imp
    from .experiments.s2s_pruning_at_init import pai_curve
    from .plots import PAI_METHOD_LABELS, _source_style

    source = s2s_imp.source_label(rule, float(source_density))
    if method == "imp":
        sources = s2s_imp.sources_of(imp_result)

        def curve(s: str) -> dict:
            return s2s_imp.imp_curve(imp_result, s, targets_only=True)
    else:
        if pai_result is None or method not in {s["method"] for s in pai_result["summary"]}:
            raise ValueError(f"method {method!r} is not in the stored pruning-at-init result")
        sources = list(dict.fromkeys(s["source"] for s in pai_result["summary"]))

        def curve(s: str) -> dict:
            return pai_curve(pai_result, s, method)
    stored = source in sources
    figure.clear()
    with book_style():
        ax = figure.add_axes((0.07, 0.15, 0.5, 0.72))
        for s in sources:
            if s in ("dense", source):
                continue
            c = curve(s)
            ax.plot(c["density"], c["mean"], color=PALETTE["grey"], alpha=0.35, lw=1)
        d = curve("dense")
        ax.plot(d["density"], d["mean"], color="black", ls="--", marker="D", ms=4, label="dense source")
        ax.fill_between(d["density"], np.subtract(d["mean"], d["std"]), np.add(d["mean"], d["std"]),
                        color="black", alpha=0.12, lw=0)
        if stored:
            c = curve(source)
            style = _source_style(source)
            ax.plot(c["density"], c["mean"], color=style["color"], marker=style["marker"], lw=2.4,
                    label=f"{source} source")
            ax.fill_between(c["density"], np.subtract(c["mean"], c["std"]), np.add(c["mean"], c["std"]),
                            color=style["color"], alpha=0.2, lw=0)
        ax.set_xscale("log")
        ax.set_xticks(d["density"], [f"{x:g}" for x in d["density"]])
        ax.minorticks_off()
        ax.invert_xaxis()
        top = max(max(curve(s)["mean"]) for s in sources)
        ax.set_ylim(0.0, top + 0.08)
        ax.set_xlabel("target density (log scale)")
        ax.set_ylabel("test accuracy")
        ax.legend(fontsize=8, loc="lower left")
        title = PAI_METHOD_LABELS.get(method, method)
        ax.set_title(f"{title}: dense source vs {source}" if stored else
                     f"{title}: {source} not stored for this method", fontsize=10)

        bars = figure.add_axes((0.68, 0.2, 0.3, 0.64))
        layers = list(imp_result["layers"])
        x = np.arange(len(layers))
        final = min(d["density"])
        shown = [("dense", "dense source → final")] + ([(source, f"{source} → final")] if stored else [])
        src_rows = [r for r in imp_result["runs"] if r["source"] == source and r["level"] == 0]
        entries = []
        if src_rows:
            entries.append((src_rows[0]["layer_densities"], f"{source} source", _source_style(source)["color"], 0.35))
        for s, label in shown:
            key = "density" if method == "imp" else "target"
            rows = [r for r in _s2s_rows(imp_result, pai_result, method, s) if abs(r[key] - final) < 1e-12]
            if rows:
                entries.append((rows[0]["layer_densities"], label, "black" if s == "dense" else
                                _source_style(s)["color"], 1.0))
        w = 0.8 / max(1, len(entries))
        for i, (dens, label, color, alpha) in enumerate(entries):
            bars.bar(x + (i - (len(entries) - 1) / 2) * w, dens, width=w, color=color, alpha=alpha, label=label)
        bars.set_yscale("log")
        bars.set_ylim(1e-3, 30)
        bars.set_xticks(x, layers)
        bars.set_xlabel("layer (input → output)")
        bars.set_ylabel("layer density (log scale)")
        bars.set_title(f"layer densities at target {final:g} (seed 0)", fontsize=9)
        bars.legend(fontsize=6.5, loc="upper right", ncols=1)
    return figure


def s2s_explorer(imp_result: dict, pai_result: dict | None = None, *, static: bool = False, rule: str = "balanced",
                 source_density: float = 0.3, method: str = "imp", figsize: tuple[float, float] = (10.0, 3.8),
                 dpi: int = 72):
    """Chapter 7's explorer over stored results: source rule, source density, method.

    Live (``static=False``): two dropdowns and a slider. HTML twin
    (``static=True``): one frame per stored IMP source, then one per
    pruning-at-init method at the sparsest stored balanced source.

    Returns
    -------
    ipywidgets.interactive or IPython.display.HTML
    """
    import functools

    from .experiments import s2s_imp
    from .plots import PAI_METHOD_LABELS

    sources = [s for s in s2s_imp.sources_of(imp_result) if s != "dense"]
    rules = list(dict.fromkeys(s.rsplit(" ", 1)[0] for s in sources))
    densities = sorted({float(s.rsplit(" ", 1)[1]) for s in sources}, reverse=True)
    methods = ["imp"] + (list(dict.fromkeys(s["method"] for s in pai_result["summary"])) if pai_result else [])
    if rule not in rules:
        raise ValueError(f"rule {rule!r} is not stored; stored: {', '.join(rules)}")
    source_density = _stored(densities, source_density, "source density")
    if method not in methods:
        raise ValueError(f"method {method!r} is not stored; stored: {', '.join(methods)}")
    draw = functools.partial(draw_s2s_explorer, imp_result=imp_result, pai_result=pai_result)
    if static:
        states = [{"rule": r, "source_density": p, "method": "imp"} for r in rules for p in densities]
        if pai_result:
            pai_sources = [s["source"] for s in pai_result["summary"] if s["source"] != "dense"]
            last = min(pai_sources, key=lambda s: float(s.rsplit(" ", 1)[1])) if pai_sources else None
            if last:
                r, p = last.rsplit(" ", 1)
                states += [{"rule": r, "source_density": float(p), "method": m} for m in methods[1:]]
        return _stored_sweep_view(draw, states, None, figsize, dpi)
    import ipywidgets as widgets

    style = {"description_width": "initial"}
    controls = {
        "rule": widgets.Dropdown(options=[(RULE_LABELS.get(r, r), r) for r in rules], value=rule,
                                 description="source rule", style=style),
        "source_density": widgets.SelectionSlider(options=[(f"{p:g}", p) for p in densities], value=source_density,
                                                  description="source density", continuous_update=False, style=style),
        "method": widgets.Dropdown(options=[(PAI_METHOD_LABELS.get(m, m), m) for m in methods], value=method,
                                   description="method", style=style),
    }
    return _stored_sweep_view(draw, [], controls, figsize, dpi)


__all__ += ["draw_s2s_explorer", "s2s_explorer"]
