"""Chapter 8, *What sparsity buys*: figures, the speed-up explorer and the numbers the prose quotes.

Everything here reads stored results of :mod:`rpbook.experiments.kernel_timings`
and :mod:`rpbook.experiments.structure_accuracy`; nothing is measured or
trained. :func:`numbers` returns every number the chapter's text cites, so the
notebook glues them instead of typing them.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from ..experiments.kernel_timings import crossovers, speedups
from ..experiments.structure_accuracy import accuracy_table
from ..kernels import csr_bytes
from .explorer import fixed_layout_figure, frames_twin, live_panel
from .style import PALETTE, book_style

# The notebook imports only this module: the style helpers it needs come with it.
from .style import Table, glue, use_book_style  # noqa: F401

#: One colour per batch size, per width and per mask pattern, in every figure of the chapter.
BATCH_COLORS = [PALETTE["sky"], PALETTE["blue"], PALETTE["orange"], PALETTE["vermillion"], PALETTE["purple"]]
WIDTH_COLORS = [PALETTE["green"], PALETTE["blue"], PALETTE["vermillion"], PALETTE["purple"]]
PATTERN_STYLE = {
    "dense": {"color": PALETTE["black"], "label": "dense"},
    "er": {"color": PALETTE["green"], "label": "ER (unstructured)"},
    "block": {"color": PALETTE["purple"], "label": "block-sparse"},
    "nm": {"color": PALETTE["orange"], "label": "N:M (2:4 at 0.5)"},
}
KIND_LABEL = {"infer": "inference", "train": "training step"}


def _axes(ax: "plt.Axes | None", figsize=(6.4, 3.6)) -> "plt.Axes":
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def _values(rows: Sequence[Mapping], key: str) -> list:
    return sorted({r[key] for r in rows})


def _density_axis(ax: "plt.Axes", densities: Sequence[float]) -> None:
    ax.set_xscale("log")
    ax.set_xticks(list(densities), [f"{d:g}" for d in densities])
    ax.minorticks_off()
    ax.set_xlabel("density p (kept fraction of weights)")


def _speed_axis(ax: "plt.Axes") -> None:
    """Log scale with plain tick labels (0.5, 1, 2, 10), readable on a phone."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _lookup(rows: Sequence[Mapping], **keys) -> Mapping:
    for r in rows:
        if all(abs(r[k] - v) < 1e-12 if isinstance(v, float) else r[k] == v for k, v in keys.items()):
            return r
    raise ValueError(f"no stored measurement for {keys}; stored: {sorted({tuple(r[k] for k in keys) for r in rows})}")


# ----------------------------------------------------------------------------- figures


def plot_speedup_vs_density(result: Mapping, width: int, *, kind: str = "infer", ax: "plt.Axes | None" = None,
                            batches: Sequence[int] | None = None) -> "plt.Axes":
    """Measured speed-up of the CSR model over dense (or masked dense) against density, one line per batch.

    Chapter 8. The dashed line is the ideal ``1/p``, the grey line 1 (no gain).
    """
    ax = _axes(ax)
    rows = [r for r in speedups(result, kind=kind) if r["width"] == width]
    if not rows:
        raise ValueError(f"width {width!r} is not stored; stored: {_values(speedups(result), 'width')}")
    densities = _values(rows, "density")
    ax.plot(densities, [1 / p for p in densities], "--", color=PALETTE["grey"], label="ideal 1/p")
    ax.axhline(1.0, color=PALETTE["black"], lw=0.8)
    for i, b in enumerate(batches or _values(rows, "batch")):
        cell = sorted((r for r in rows if r["batch"] == b), key=lambda r: r["density"])
        ax.plot([r["density"] for r in cell], [r["speedup"] for r in cell], "o-", color=BATCH_COLORS[i % 5],
                label=f"batch {b}")
    _density_axis(ax, densities)
    _speed_axis(ax)
    ax.set_ylabel("speed-up over " + ("dense" if kind == "infer" else "masked dense") + " (×)")
    ax.set_title(f"{KIND_LABEL[kind]}, MLP {result['in_features']}-{width}-{width}-{result['num_classes']}")
    ax.legend(fontsize=8)
    return ax


def plot_speedups(result: Mapping, width: int, axes: "Sequence[plt.Axes] | None" = None) -> "Sequence[plt.Axes]":
    """Inference (left) and training step (right) speed-ups against density at one width (chapter 8)."""
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10.0, 3.9), sharey=True)
    plot_speedup_vs_density(result, width, kind="infer", ax=axes[0])
    plot_speedup_vs_density(result, width, kind="train", ax=axes[1])
    axes[1].set_ylabel("")
    return axes


def plot_speedup_by_width(result: Mapping, batch: int, axes: "Sequence[plt.Axes] | None" = None) -> "Sequence[plt.Axes]":
    """Speed-up against density for every stored width, at one batch size: inference and training (chapter 8)."""
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10.0, 3.9), sharey=True)
    for ax, kind in zip(axes, ("infer", "train")):
        rows = [r for r in speedups(result, kind=kind) if r["batch"] == batch]
        if not rows:
            raise ValueError(f"batch {batch!r} is not stored")
        densities = _values(rows, "density")
        ax.plot(densities, [1 / p for p in densities], "--", color=PALETTE["grey"], label="ideal 1/p")
        ax.axhline(1.0, color=PALETTE["black"], lw=0.8)
        for i, w in enumerate(_values(rows, "width")):
            cell = sorted((r for r in rows if r["width"] == w), key=lambda r: r["density"])
            ax.plot([r["density"] for r in cell], [r["speedup"] for r in cell], "o-", color=WIDTH_COLORS[i % 4],
                    label=f"width {w}")
        _density_axis(ax, densities)
        _speed_axis(ax)
        ax.set_title(f"{KIND_LABEL[kind]}, batch {batch}")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("speed-up over dense / masked dense (×)")
    return axes


def plot_memory(result: Mapping, width: int, ax: "plt.Axes | None" = None) -> "plt.Axes":
    """Bytes of the MLP's weights against density: dense, CSR values, CSR values + indices, ideal (chapter 8)."""
    ax = _axes(ax)
    rows = sorted({r["density"]: r for r in result["mlp"] if r["width"] == width}.values(), key=lambda r: r["density"])
    if not rows:
        raise ValueError(f"width {width!r} is not stored")
    d = [r["density"] for r in rows]
    mb = 1e6
    dense = rows[0]["bytes_dense"] / mb
    ax.axhline(dense, color=PALETTE["black"], label="dense (float32)")
    ax.plot(d, [p * dense for p in d], "--", color=PALETTE["grey"], label="ideal: p × dense")
    ax.plot(d, [r["bytes_values"] / mb for r in rows], "o-", color=PALETTE["sky"], label="CSR values")
    ax.plot(d, [(r["bytes_values"] + r["bytes_indices"]) / mb for r in rows], "o-", color=PALETTE["blue"],
            label="CSR values + indices (int32)")
    _density_axis(ax, d)
    _speed_axis(ax)  # the same plain log ticks
    ax.set_ylabel("weight memory (MB)")
    ax.set_title(f"MLP {result['in_features']}-{width}-{width}-{result['num_classes']}")
    ax.legend(fontsize=8)
    return ax


def plot_structure_speed(result: Mapping, ax: "plt.Axes | None" = None) -> "plt.Axes":
    """Speed-up over dense of one square layer for ER, block and N:M masks (CSR) and block masks (BSR)."""
    ax = _axes(ax)
    rows = result["structure"]
    densities = _values(rows, "density")
    ax.plot(densities, [1 / p for p in densities], "--", color=PALETTE["grey"], label="ideal 1/p")
    ax.axhline(1.0, color=PALETTE["black"], lw=0.8)
    for pattern, kernel, marker in (("er", "csr", "o-"), ("nm", "csr", "s-"), ("block", "csr", "^-"),
                                    ("block", "bsr", "^--")):
        cell = sorted((r for r in rows if r["pattern"] == pattern and r["kernel"] == kernel), key=lambda r: r["density"])
        ax.plot([r["density"] for r in cell], [r["dense_s"] / r["sparse_s"] for r in cell], marker,
                color=PATTERN_STYLE[pattern]["color"], label=f"{PATTERN_STYLE[pattern]['label']}, {kernel.upper()}")
    _density_axis(ax, densities)
    _speed_axis(ax)
    ax.set_ylabel("speed-up over dense (×)")
    ax.set_title(f"one {math.isqrt(rows[0]['bytes_dense'] // 4)} × {math.isqrt(rows[0]['bytes_dense'] // 4)} layer, "
                 "inference")
    ax.legend(fontsize=8)
    return ax


def plot_structure_accuracy(result: Mapping, ax: "plt.Axes | None" = None) -> "plt.Axes":
    """Test accuracy against density for ER, block and N:M random masks, mean ± std over seeds (chapter 8)."""
    ax = _axes(ax)
    table = accuracy_table(result)
    dense = [r for r in table if r["pattern"] == "dense"]
    sparse = [r for r in table if r["pattern"] != "dense"]
    densities = _values(sparse, "density")
    if dense:
        m, s = dense[0]["mean"], dense[0]["std"]
        ax.axhspan(m - s, m + s, color=PALETTE["black"], alpha=0.08, lw=0)
        ax.axhline(m, color=PALETTE["black"], lw=1, label="dense")
    for j, pattern in enumerate(p for p in ("er", "block", "nm") if any(r["pattern"] == p for r in sparse)):
        cell = sorted((r for r in sparse if r["pattern"] == pattern), key=lambda r: r["density"])
        x = [r["density"] * (1 + 0.04 * (j - 1)) for r in cell]  # a small offset keeps error bars apart
        ax.errorbar(x, [r["mean"] for r in cell], yerr=[r["std"] for r in cell], fmt="o-", capsize=3,
                    color=PATTERN_STYLE[pattern]["color"], label=PATTERN_STYLE[pattern]["label"])
    _density_axis(ax, densities)
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=8)
    return ax


# ----------------------------------------------------------------------------- the explorer


def draw_speedup_frame(figure: Figure, result: Mapping, density: float, batch: int) -> Figure:
    """One frame of the explorer: at (density, batch), measured vs ideal speed-up per width (chapter 8).

    Left: inference; right: training step. Bars: measured speed-up per
    stored width; the dashed line: the ideal ``1/p``; the black line: 1.
    Only stored measurements can be shown.
    """
    rows = result["mlp"]
    widths = _values(rows, "width")
    _lookup(rows, density=float(density), batch=int(batch), width=widths[0])  # ValueError if not stored
    ideal = 1.0 / density
    figure.clear()
    with book_style():
        for i, kind in enumerate(("infer", "train")):
            ax = figure.add_axes((0.09 + 0.49 * i, 0.16, 0.39, 0.66))
            sp = {r["width"]: r["speedup"] for r in speedups(result, kind=kind)
                  if abs(r["density"] - density) < 1e-12 and r["batch"] == batch}
            x = np.arange(len(widths))
            vals = [sp[w] for w in widths]
            # bars start at 1 (no gain): a win rises above the line, a loss hangs below it
            ax.bar(x, [v - 1.0 for v in vals], bottom=1.0, color=[WIDTH_COLORS[j % 4] for j in range(len(widths))],
                   width=0.6)
            ax.axhline(ideal, ls="--", color=PALETTE["grey"])
            ax.set_xlim(-0.5, len(widths) - 0.5)
            ax.text(-0.45, ideal * 1.08, f"ideal 1/p = {ideal:g}", ha="left", va="bottom", fontsize=8,
                    color=PALETTE["grey"])
            ax.axhline(1.0, color=PALETTE["black"], lw=0.8)
            for xi, v in zip(x, vals):
                ax.text(xi, v * (1.06 if v >= 1 else 0.94), f"{v:.2f}×", ha="center", va="bottom" if v >= 1 else "top",
                        fontsize=8)
            _speed_axis(ax)
            ax.set_ylim(0.05, 200)
            ax.set_xticks(x, [str(w) for w in widths])
            ax.set_xlabel("hidden width")
            ax.set_title(f"{KIND_LABEL[kind]}", fontsize=10)
            if i == 0:
                ax.set_ylabel("speed-up (×, log scale)")
        figure.suptitle(f"density p = {density:g}, batch {batch}: measured CSR speed-up vs ideal", fontsize=10)
    return figure


def speedup_explorer(result: Mapping, *, static: bool = False, vary: str = "density", density: float = 0.05,
                     batch: int = 64, figsize: tuple[float, float] = (8.0, 3.4), dpi: int = 80):
    """Density × batch sliders over the stored kernel timings (chapter 8, *Explore the measurements*).

    Live: two selection sliders (``ipywidgets``). ``static=True``: the HTML
    twin, a JavaScript slider over the stored densities at ``batch``
    (``vary="density"``) or over the stored batches at ``density``
    (``vary="batch"``). Both draw with :func:`draw_speedup_frame`.
    """
    rows = result["mlp"]
    densities, batches = sorted(_values(rows, "density"), reverse=True), _values(rows, "batch")
    if vary not in ("density", "batch"):
        raise ValueError(f"vary must be 'density' or 'batch', got {vary!r}")
    figure = fixed_layout_figure(figsize, dpi)
    if static:
        states = [(d, batch) for d in densities] if vary == "density" else [(density, b) for b in batches]
        return frames_twin(figure, lambda i: draw_speedup_frame(figure, result, *states[i]), len(states),
                           interval_ms=900, dpi=dpi, labels=[f"density p = {d:g}, batch {b}" for d, b in states])
    import ipywidgets as widgets

    style = {"description_width": "initial"}
    controls = {
        "density": widgets.SelectionSlider(options=[(f"{d:g}", d) for d in densities], value=density,
                                           description="density p", continuous_update=False, style=style),
        "batch": widgets.SelectionSlider(options=batches, value=batch, description="batch",
                                         continuous_update=False, style=style),
    }
    return live_panel(figure, lambda density, batch: draw_speedup_frame(figure, result, density, batch), controls)


# ----------------------------------------------------------------------------- the numbers of the prose


def numbers(timings: Mapping, accuracy: Mapping | None = None) -> dict:
    """Every number the chapter's prose quotes, computed from the stored results (chapter 8).

    Keys (``w`` = width, ``b`` = batch, ``p`` written without the dot,
    e.g. ``p005`` for 0.05): ``infer_w{w}_b{b}_p{p}`` and
    ``train_w{w}_b{b}_p{p}`` speed-ups; ``*_gap`` the ideal ``1/p`` divided
    by the speed-up; ``cross_{kind}_w{w}_b{b}`` crossover densities (NaN when
    sparse never wins); memory and structure numbers; accuracies per
    ``acc_{pattern}_p{p}`` when ``accuracy`` is given.
    """
    out: dict = {}

    def tag(p: float) -> str:
        return "p" + f"{p:g}".replace(".", "")

    for kind in ("infer", "train"):
        for r in speedups(timings, kind=kind):
            key = f"{kind}_w{r['width']}_b{r['batch']}_{tag(r['density'])}"
            out[key] = r["speedup"]
            out[key + "_gap"] = r["ideal"] / r["speedup"]
        for c in crossovers(timings, kind=kind):
            out[f"cross_{kind}_w{c['width']}_b{c['batch']}"] = math.nan if c["crossover"] is None else c["crossover"]
    widths = _values(timings["mlp"], "width")
    out["widest"] = widths[-1]
    out["narrowest"] = widths[0]
    # goals: inference at p <= 0.05 faster than dense by at least 2x at batch 1 and 64; training at p <= 0.02
    for w in widths:
        for b in (1, 64):
            sp = [r["speedup"] for r in speedups(timings, kind="infer")
                  if r["width"] == w and r["batch"] == b and r["density"] <= 0.05]
            if sp:
                out[f"goal_infer_w{w}_b{b}"] = min(sp)
        sp = [r["speedup"] for r in speedups(timings, kind="train") if r["width"] == w and r["density"] <= 0.02]
        if sp:
            out[f"goal_train_w{w}"] = min(sp)
    for w in widths:
        for kind in ("infer", "train"):
            out[f"best_{kind}_w{w}"] = max(r["speedup"] for r in speedups(timings, kind=kind) if r["width"] == w)
            out[f"worst_{kind}_w{w}"] = min(r["speedup"] for r in speedups(timings, kind=kind) if r["width"] == w)
            for b in _values(timings["mlp"], "batch"):
                out[f"best_{kind}_w{w}_b{b}"] = max(r["speedup"] for r in speedups(timings, kind=kind)
                                                    if r["width"] == w and r["batch"] == b)
    # memory
    for w in widths:
        rows = {r["density"]: r for r in timings["mlp"] if r["width"] == w}
        for p, r in rows.items():
            out[f"mem_w{w}_{tag(p)}"] = (r["bytes_values"] + r["bytes_indices"]) / r["bytes_dense"]
            out[f"mem_index_share_w{w}_{tag(p)}"] = r["bytes_indices"] / (r["bytes_values"] + r["bytes_indices"])
    # the density below which CSR (float32 values, int32 indices: INDEX_BYTES) takes less memory than dense, for a big square layer
    n = 4096
    out["mem_break_even"] = next(p / 10000 for p in range(10000, 0, -1)
                                 if csr_bytes(n, n, int(p / 10000 * n * n)) <= 4 * n * n)
    # structure
    for r in timings["structure"]:
        out[f"struct_{r['pattern']}_{r['kernel']}_{tag(r['density'])}"] = r["dense_s"] / r["sparse_s"]
    out["struct_width"] = math.isqrt(timings["structure"][0]["bytes_dense"] // 4)
    machine = timings.get("machine", {})
    out["machine_cpu"] = machine.get("cpu")
    out["machine_capability"] = machine.get("cpu_capability")
    load = machine.get("load_average_1_5_15min")
    out["machine_load"] = load[0] if load else math.nan
    out["machine_cpus"] = machine.get("logical_cpus")
    if accuracy is not None:
        for r in accuracy_table(accuracy):
            key = f"acc_{r['pattern']}_{tag(r['density'])}"
            out[key] = 100 * r["mean"]
            out[key + "_std"] = 100 * r["std"]
        sparse = [r for r in accuracy_table(accuracy) if r["pattern"] != "dense"]
        for p in _values(sparse, "density"):
            er = next((r["mean"] for r in sparse if r["pattern"] == "er" and r["density"] == p), None)
            for pat in ("block", "nm"):
                other = next((r["mean"] for r in sparse if r["pattern"] == pat and r["density"] == p), None)
                if er is not None and other is not None:
                    out[f"acc_gap_{pat}_{tag(p)}"] = 100 * (er - other)
    return out
