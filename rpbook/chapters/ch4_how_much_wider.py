"""Chapter 4, *How much wider?*: the replication construction, coverage, the
required width, the teacher–student error grid and the width explorer.

The notebook of this chapter imports this module (and the science modules) only;
no chapter module imports another.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from ..experiments.teacher_student_width import error_grid, smallest_widths
from ..masks import sample_er_mask
from ..overparam import (all_covered_probability, construction_conditions, construction_probability,
                         coverage_probability, fit_width_constant, required_width, required_width_for_network,
                         width_factor)
from .explorer import VARY_CHOICES, figure_png, fixed_layout_figure, frames_twin, live_panel
from .style import DEAD_COLOR, PALETTE, axes_or_new, book_style, density_colors

# The notebook imports only this module: the style helpers it needs come with it.
from .style import Table, glue, use_book_style  # noqa: F401


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

    from ..overparam import block_link_counts

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

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(9.0, 3.6))
    rows = coverage["rows"]
    n_pairs_per_k = coverage["n_in"] * coverage["n_out"]
    densities = sorted({r["density"] for r in rows}, reverse=True)
    colors = density_colors(densities)
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

    ax = axes_or_new(ax, (6.4, 3.8))
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

    ax = axes_or_new(ax, (6.4, 4.0))
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
    ax = axes_or_new(ax, (6.4, 3.8))
    colors = density_colors(list(grid.densities))
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

    ax = axes_or_new(ax, (6.4, 3.8))
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
    ax = axes_or_new(ax, (6.4, 3.8))
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

    ax = axes_or_new(ax, (6.4, 3.8))
    colors = density_colors(list(grid.densities))
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
        Optional overlays for the heatmap (see :func:`plot_error_heatmap`).
    """

    def __init__(self, result: dict, *, k_star: Sequence[float] | None = None, fit_c: float | None = None,
                 figsize: tuple[float, float] = (9.6, 3.9), dpi: int = 80):

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






# ----------------------------------------------------------------------------- the numbers the prose quotes


def width_fit(result: dict, threshold: float):
    """The densities that reach test error ``threshold`` and the fit ``k* = c w(p)`` over them (``None``: < 2 reach it)."""
    rows = [r for r in smallest_widths(result, threshold) if r["density"] < 1 and r["status"] == "reached"]
    fit = fit_width_constant([r["density"] for r in rows], [r["k_star"] for r in rows]) if len(rows) >= 2 else None
    return rows, fit


def threshold_accounts(result: dict, threshold: float, in_dim: int, hidden: int) -> tuple[list[dict], dict]:
    """Kept weights of the students at the threshold, with and without their dense first layer (chapter 4).

    For each density that reaches ``threshold``: the grid width ``k >= k*``,
    the mean kept weights, the ``in_dim * hidden * k`` of them in the dense
    first layer and its share. ``slopes``: the exponent ``a`` of a power-law
    fit ``kept ∝ (1/p)^a`` over those densities, counting the first layer
    (``with_first``) and not (``without_first``); the book's law predicts
    ``a ≈ 1`` for the masked layers alone.
    """
    grid = error_grid(result)
    fit_rows, _ = width_fit(result, threshold)
    rows = []
    for r in fit_rows:
        k_grid = min(k for k in grid.width_factors if k >= r["k_star"])
        kept = float(np.mean([u["kept_weights"] for u in result["rows"] if u["density"] == r["density"] and u["k"] == k_grid]))
        first = in_dim * hidden * int(k_grid)
        rows.append({"density p": r["density"], "k (grid, >= k*)": int(k_grid), "kept weights": kept,
                     "in the dense first layer": first, "first-layer share": first / kept,
                     "kept without the first layer": kept - first,
                     "× teacher's weights": kept / result["teacher_weights"]})
    slopes: dict = {}
    if len(rows) >= 2:
        inv_p = np.log([1 / r["density p"] for r in rows])
        slopes["with_first"] = float(np.polyfit(inv_p, np.log([r["kept weights"] for r in rows]), 1)[0])
        slopes["without_first"] = float(np.polyfit(inv_p, np.log([r["kept without the first layer"] for r in rows]), 1)[0])
    return rows, slopes


def numbers(result: dict, threshold: float = 0.1) -> dict:
    """Every number chapter 4's prose quotes from the ``teacher_student_width`` result, by glue name.

    ``threshold`` is the test error a student must reach; the fit of the
    smallest width factor ``k* = c w(p)`` (appendix *Formulas and notation*, how
    much wider) is over the densities that reach it.
    """
    grid = error_grid(result)
    floor = float(np.median(grid.typical()[list(grid.densities).index(1.0)])) if 1.0 in grid.densities \
        else float("nan")
    out: dict = {"ch4_floor": floor, "ch4_thr_ratio": threshold / floor}
    fit_rows, fit = width_fit(result, threshold)
    if fit is None:
        return out
    out.update({"ch4_c": fit.c, "ch4_r2": fit.r2, "ch4_dev": 100 * (math.exp(fit.rms_log) - 1), "ch4_slope": fit.slope})
    ratios = [required_width_for_network(tuple(result["teacher_widths"]), r["density"], 0.05) / r["k_star"]
              for r in fit_rows]
    out.update({"ch4_ratio_min": min(ratios), "ch4_ratio_max": max(ratios)})
    widths = tuple(result["teacher_widths"])  # (inputs, hidden, ..., outputs) of the teacher
    accounts, slopes = threshold_accounts(result, threshold, int(widths[0]), int(widths[1]))
    if accounts:
        sparsest = min(accounts, key=lambda r: r["density p"])
        out.update({"ch4_first_p": sparsest["density p"], "ch4_first_kept": sparsest["in the dense first layer"],
                    "ch4_total_kept": sparsest["kept weights"], "ch4_first_share": sparsest["first-layer share"]})
    if slopes:
        out.update({"ch4_kept_slope_with": slopes["with_first"], "ch4_kept_slope_without": slopes["without_first"]})
    good = [u["uncovered_pairs"] for u in result["rows"] if u["density"] < 1 and u["test_mse"] <= threshold]
    if good:
        out["ch4_uncovered_median"] = float(np.median(good))
    return out
