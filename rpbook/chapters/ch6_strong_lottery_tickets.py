"""Chapter 6, *Strong lottery tickets*: SubsetSum, the construction's gadget,
edge-popup against width and inside ER sources, and the two explorers.

The notebook of this chapter imports this module (and the science modules) only;
no chapter module imports another.

Size (about 720 lines): chapter 6 has the most figures and two explorers;
they belong to this chapter only.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from ..experiments.edge_popup_er_source import width_needed
from ..experiments.edge_popup_structure import accuracy_table
from ..models import scale_width
from ..overparam import width_factor
from ..slt import MAX_EXACT_N, random_numbers, solve_subset_sum
from .explorer import figure_png, fixed_layout_figure, frames_twin, live_panel
from .style import PALETTE, axes_or_new, book_style, density_colors, source_density_color

# The notebook imports only this module: the style helpers it needs come with it.
from .style import Table, glue, use_book_style  # noqa: F401


#: Colour and label of each frozen weight distribution of edge-popup (chapter 6).
WEIGHT_INIT_COLORS: dict[str, str] = {"signed_constant": PALETTE["vermillion"], "kaiming_normal": PALETTE["blue"]}
WEIGHT_INIT_LABELS: dict[str, str] = {"signed_constant": "signed Kaiming constant", "kaiming_normal": "Kaiming normal"}
#: Colour of each subset-sum number distribution (chapter 6).
NUMBER_COLORS: dict[str, str] = {"uniform": PALETTE["blue"], "product": PALETTE["orange"]}
#: The two branches of the SubsetSum gadget: units with a > 0 (x >= 0) and a < 0 (x < 0).
BRANCH_COLORS: dict[str, str] = {"plus": PALETTE["orange"], "minus": PALETTE["sky"]}
#: Colour and label of each network edge-popup searches in ``edge_popup_structure`` (chapter 6).
STRUCTURE_COLORS: dict[str, str] = {"subset_sum": PALETTE["vermillion"], "wide": PALETTE["blue"],
                                    "wide_deep": PALETTE["green"]}
STRUCTURE_LABELS: dict[str, str] = {"subset_sum": "SubsetSum structure (2× deep)", "wide": "plain wide, target depth",
                                    "wide_deep": "plain wide, 2× deep"}


def draw_subset_sum(ax_numbers: "plt.Axes", ax_walk: "plt.Axes", values: Sequence[float], target: float,
                    selected: Sequence[bool]) -> None:
    """One SubsetSum instance: the numbers (chosen ones coloured) and the walk of the chosen subset to its sum.

    Chapter 6, *SubsetSum* (the frame of :func:`subset_sum_explorer`).
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

    return [scale_width(base, w) for w in widths]


def plot_edge_popup_width(result: Mapping, config: Mapping, axes: "Sequence[plt.Axes] | None" = None,
                          mark: tuple[float, float] | None = None) -> "Sequence[plt.Axes]":
    """edge-popup test accuracy against width, one panel per weight distribution (chapter 6).

    One line per kept fraction κ (dark = sparse), shaded between the seeds'
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
    colors = density_colors(densities)
    for ax, init in zip(axes, inits):
        d = [dense[(w,)] for w in widths]
        ax.plot(units, [m for m, _, _ in d], "-", color=PALETTE["black"], lw=2, label="dense, trained weights")
        for p in densities:
            s = [ep[(init, p, w)] for w in widths]
            ax.plot(units, [m for m, _, _ in s], "o-", color=colors[p], ms=4, label=f"edge-popup, κ = {p:g}")
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
    ax = axes_or_new(ax, (4.2, 3.8))
    rows = [r for r in result["rows"] if r["kind"] == "edge-popup"]
    ep = _mean_by(rows, ["weight_init", "density", "width"])
    densities = sorted({r["density"] for r in rows})
    colors = density_colors(densities)
    for p in densities:
        widths = sorted({r["width"] for r in rows if r["density"] == p})
        x = [ep[("kaiming_normal", p, w)][0] for w in widths]
        y = [ep[("signed_constant", p, w)][0] for w in widths]
        ax.scatter(x, y, color=colors[p], s=[14 + 10 * i for i in range(len(widths))], label=f"κ = {p:g}", zorder=3)
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
        ax.set_title(f"ticket keeps κ = {k:g} of each layer", fontsize=10)
        ax.set_ylim(0, 1.02)
    axes[0].set_ylabel("test accuracy")
    axes[-1].legend(fontsize=7.5, loc="lower right")
    return axes



def plot_edge_popup_structure(result: Mapping, axes: "Sequence[plt.Axes] | None" = None) -> "Sequence[plt.Axes]":
    """edge-popup in the SubsetSum structure against plain wide MLPs of equal edge count (chapter 6).

    One panel per kept fraction κ: test accuracy against the edges of the
    searched network (log scale), one line per arm, shaded between the
    seeds' lowest and highest; dashed: the target MLP trained densely.
    """
    table = accuracy_table(result)
    densities = sorted({t["density"] for t in table})
    dense = [r["test_accuracy"] for r in result["rows"] if r["arm"] == "dense_target"]
    if axes is None:
        _, axes = plt.subplots(1, len(densities), figsize=(3.6 * len(densities), 3.6), sharey=True)
    axes = list(np.atleast_1d(axes))
    arms = [a for a in STRUCTURE_COLORS if any(t["arm"] == a for t in table)]
    for ax, k in zip(axes, densities):
        if dense:
            ax.axhline(float(np.mean(dense)), color=PALETTE["grey"], ls="--", lw=1.5, label="target, trained densely")
        for arm in arms:
            cells = sorted((t for t in table if t["arm"] == arm and t["density"] == k), key=lambda t: t["edges"])
            x = [t["edges"] for t in cells]
            ax.plot(x, [t["mean"] for t in cells], "o-", color=STRUCTURE_COLORS[arm], ms=4,
                    label=STRUCTURE_LABELS[arm])
            ax.fill_between(x, [t["min"] for t in cells], [t["max"] for t in cells], color=STRUCTURE_COLORS[arm],
                            alpha=0.15, lw=0)
        budgets = sorted({t["edges"] for t in table if t["arm"] == "subset_sum"})
        ax.set_xscale("log", base=2)
        ax.set_xticks(budgets, [f"{b / 1000:.1f}k" for b in budgets])
        ax.minorticks_off()
        ax.set_xlabel("edges of the random network")
        ax.set_title(f"ticket keeps κ = {k:g} of the edges", fontsize=10)
        ax.set_ylim(0, 1.02)
    axes[0].set_ylabel("test accuracy")
    axes[-1].legend(fontsize=7.5, loc="lower right")
    return axes


#: Largest n of the SubsetSum explorer's slider (exact search stays instant).
SUBSET_SUM_MAX_N = 24


class SubsetSumExplorer:
    """n and target sliders over one random SubsetSum instance (chapter 6, *SubsetSum*).

    The numbers are the first ``n`` of one fixed draw of ``U[-1, 1]`` numbers,
    so moving ``n`` adds numbers to the same instance. Every frame solves the
    instance exactly (:func:`rpbook.slt.solve_subset_sum`) and draws it with
    :func:`draw_subset_sum`.
    """

    def __init__(self, *, seed: int = 0, max_n: int = SUBSET_SUM_MAX_N, figsize: tuple[float, float] = (9.6, 3.4),
                 dpi: int = 80):

        if isinstance(max_n, bool) or not isinstance(max_n, int) or not 1 <= max_n <= MAX_EXACT_N:
            raise ValueError(f"max_n must be an integer in 1..{MAX_EXACT_N}, got {max_n!r}")
        self.max_n = max_n
        self.pool = random_numbers(max_n, seed=seed)
        self.figure = fixed_layout_figure(figsize, dpi)

    def update(self, n: int, target: float) -> dict:
        """Solve the instance of the first ``n`` numbers for ``target`` and redraw; returns the solution."""

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
        COLORS = PALETTE

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
            ax_curve.set_title(f"edge-popup keeping κ = {density:g} of each layer", fontsize=10)
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
            ax_bar.set_title(f"{u} hidden units, κ = {density:g}", fontsize=10)
        return nums

    def render_png(self) -> bytes:
        return figure_png(self.figure)

    def live(self, *, width: float | None = None, density: float | None = None):
        """Width and kept-fraction sliders (``ipywidgets.interactive``) for Jupyter/Colab."""
        import ipywidgets as widgets


        base = int(self.config["hidden"][0]) if self.config.get("hidden") else 1
        width = self.widths[len(self.widths) // 2] if width is None else width
        density = self.densities[len(self.densities) // 2] if density is None else density
        width, density = self._check(width, density)
        style = {"description_width": "initial"}
        controls = {
            "width": widgets.SelectionSlider(options=[(str(u), w) for u, w in zip(hidden_units(self.widths, base), self.widths)],
                                             value=width, description="hidden units", continuous_update=False, style=style),
            "density": widgets.SelectionSlider(options=[(f"{p:g}", p) for p in self.densities], value=density,
                                               description="kept fraction κ", continuous_update=False, style=style),
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






# ----------------------------------------------------------------------------- the numbers the prose quotes


def numbers(*, subset_sum: Mapping | None = None, construction: Mapping | None = None,
            edge_popup: Mapping | None = None, er_source: Mapping | None = None, base_units: int | None = None,
            threshold: float = 0.9, sphere_points: int | None = None, structure: Mapping | None = None,
            within: float = 0.02) -> dict:
    """Every number chapter 6's prose quotes, by glue name, from the stored results given.

    ``subset_sum``: the ``subset_sum_error`` result; ``construction``: the
    ``slt_construction`` result; ``edge_popup``: the ``edge_popup_width`` record
    (config and result); ``er_source``: the ``edge_popup_er_source`` result,
    read at ``threshold`` mean test accuracy, with ``base_units`` hidden units at width 1;
    ``sphere_points``: how many points of the sphere the construction's sup error was measured on;
    ``structure``: the ``edge_popup_structure`` result, where ``within`` is how close (in accuracy) the
    structured network must come to the smallest wide one to count as matching it.
    """
    out: dict = {}
    if subset_sum is not None:
        uni = subset_sum["summary"]["uniform"]
        ok = [r["n"] for r in uni["success"]["0.01"] if r["p"] >= 0.9]
        worst_last = uni["median_worst_case"][-1]
        typical = uni["median_error"][uni["ns"].index(worst_last["n"])]
        out.update({"ss_halving": 2 ** (-uni["log2_slope"]), "ss_n_last": uni["ns"][-1],
                    "ss_err_last": uni["median_error"][-1], "ss_n_eps": ok[0] if ok else float("nan"),
                    "ss_worst_n": worst_last["n"], "ss_worst_ratio": worst_last["median"] / typical})
    if construction is not None:
        rows = construction["rows"]
        ns = sorted({r["n"] for r in rows})

        def mean_at(n: int, key: str, sub: str | None = None) -> float:
            return float(np.mean([r[key][sub] if sub else r[key] for r in rows if r["n"] == n]))

        n_hi, n_lo = ns[-1], ns[0]
        out.update({"cons_n_hi": n_hi, "cons_n_lo": n_lo, "cons_rel_hi": mean_at(n_hi, "relative"),
                    "cons_rel_lo": mean_at(n_lo, "relative"), "cons_kept_hi": mean_at(n_hi, "kept_over_target"),
                    "cons_source_hi": mean_at(n_hi, "source_over_target"), "cons_agree_hi": mean_at(n_hi, "agreement"),
                    "cons_median_hi": mean_at(n_hi, "weight_error_quantiles", "0.5"),
                    "cons_max_hi": mean_at(n_hi, "max_weight_error"),
                    "cons_target_acc": mean_at(n_hi, "target_test_accuracy"),
                    "cons_ticket_acc": mean_at(n_hi, "ticket_test_accuracy")})
        # The certified bound (a guarantee for every input of the unit ball) against the sampled sup (a maximum
        # over finitely many points of the sphere, not a guarantee): the prose quotes both.
        bounds = [r["error_bound"] for r in rows if r["n"] == n_hi]
        out.update({"cons_bound_hi_min": float(min(bounds)), "cons_bound_hi_max": float(max(bounds))})
        if sphere_points is not None:
            out["cons_sphere_points"] = int(sphere_points)
    if edge_popup is not None:
        rows = edge_popup["result"]["rows"]

        def ep_mean(width: float, density: float | None = None, init: str | None = None,
                    kind: str = "edge-popup") -> float:
            return float(np.mean([r["test_accuracy"] for r in rows if r["kind"] == kind and r["width"] == width
                                  and density in (None, r.get("density")) and init in (None, r.get("weight_init"))]))

        widths = sorted({r["width"] for r in rows})
        densities = sorted({r["density"] for r in rows if r["kind"] == "edge-popup"})
        units = hidden_units(widths, edge_popup["config"]["hidden"][0])
        k_lo, w_lo, w_hi = densities[0], widths[0], widths[-1]
        cells = [(w, p) for w in widths for p in densities]
        out.update({"ep_k_lo": k_lo, "ep_units_lo": units[0], "ep_units_hi": units[-1],
                    "ep_acc_lo": ep_mean(w_lo, k_lo, "signed_constant"),
                    "ep_acc_hi": ep_mean(w_hi, k_lo, "signed_constant"),
                    "ep_dense_hi": ep_mean(w_hi, kind="dense"), "ep_dense_lo": ep_mean(w_lo, kind="dense"),
                    "ep_sc_wins": sum(ep_mean(w, p, "signed_constant") >= ep_mean(w, p, "kaiming_normal")
                                      for w, p in cells),
                    "ep_cells": len(cells)})
    if er_source is not None:
        if base_units is None:
            raise ValueError("er_source needs base_units, the hidden units at width 1")
        needed = width_needed(er_source, base_units, threshold)
        full = {r["density"]: r["hidden_units_needed"] for r in needed if r["source_density"] == 1.0}
        ratios = {(r["density"], r["source_density"]): r["hidden_units_needed"] / full[r["density"]]
                  for r in needed if r["source_density"] < 1 and r["hidden_units_needed"] and full.get(r["density"])}
        sparsest = min(r["source_density"] for r in needed)
        out.update({"er_sparsest": sparsest,
                    "er_worst_ratio": max((v for (_, q), v in ratios.items() if q == sparsest), default=float("nan")),
                    "er_theory_02": float(width_factor(sparsest)) if sparsest < 1 else float("nan"),
                    "er_theory_05": float(width_factor(0.5))})
    if structure is not None:
        out.update(_structure_numbers(structure, within))
    return out


def _structure_numbers(result: Mapping, within: float) -> dict:
    """The numbers of the *Redundant structure or plain width?* section."""
    cell = {(t["arm"], t["n"], t["density"]): t for t in accuracy_table(result)}
    ns = sorted({n for _, n, _ in cell})
    ks = sorted({k for _, _, k in cell})
    n_lo, n_hi, k_lo, k_hi = ns[0], ns[-1], ks[0], ks[-1]
    pairs = [(n, k) for n in ns for k in ks]
    wide_small = cell[("wide", n_lo, k_hi)]
    # the smallest budget at which the structure comes within `within` of the smallest wide network (largest κ)
    match = [n for n in ns if cell[("subset_sum", n, k_hi)]["mean"] >= wide_small["mean"] - within]
    n_match = match[0] if match else float("nan")
    dense = [r["test_accuracy"] for r in result["rows"] if r["arm"] == "dense_target"]
    wide_units = {r["n"]: r["hidden"][0] for r in result["rows"] if r["arm"] == "wide"}
    return {
        "st_target_width": min(int(h) for r in result["rows"] if r["arm"] == "subset_sum" for h in r["hidden"]),
        "st_wide_units_lo": wide_units[n_lo], "st_wide_units_hi": wide_units[n_hi],
        "st_n_lo": n_lo, "st_n_hi": n_hi, "st_k_lo": k_lo, "st_k_hi": k_hi,
        "st_edges_lo": cell[("subset_sum", n_lo, k_hi)]["edges"], "st_edges_hi": cell[("subset_sum", n_hi, k_hi)]["edges"],
        "st_target_edges": int(result["target_params"]), "st_dense": float(np.mean(dense)),
        "st_struct_hi": cell[("subset_sum", n_hi, k_hi)]["mean"], "st_struct_hi_min": cell[("subset_sum", n_hi, k_hi)]["min"],
        "st_struct_hi_max": cell[("subset_sum", n_hi, k_hi)]["max"],
        "st_wide_hi": cell[("wide", n_hi, k_hi)]["mean"], "st_deep_hi": cell[("wide_deep", n_hi, k_hi)]["mean"],
        "st_struct_lo_best": max(cell[("subset_sum", n, k_lo)]["mean"] for n in ns),
        "st_wide_lo_worst": min(cell[("wide", n, k_lo)]["mean"] for n in ns),
        "st_deep_lo_small": cell[("wide_deep", n_lo, k_lo)]["mean"], "st_wide_lo_small": cell[("wide", n_lo, k_lo)]["mean"],
        "st_struct_wins": sum(cell[("subset_sum", n, k)]["mean"] >= cell[("wide", n, k)]["mean"] for n, k in pairs),
        "st_cells": len(pairs), "st_within": within, "st_wide_small": wide_small["mean"],
        "st_match_n": n_match,
        "st_match_ratio": (cell[("subset_sum", n_match, k_hi)]["edges"] / wide_small["edges"]) if match else float("nan"),
        "st_copies_lo": k_lo * n_hi / 2,
    }
