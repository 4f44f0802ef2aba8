"""Chapter 7, *Sparse-to-sparse*: IMP, pruning at initialisation, STR and GraNet
inside random source masks, layer collapse, and the sparse-to-sparse explorer.

The figures only read stored results of ``s2s_imp``, ``s2s_pruning_at_init``,
``s2s_str_granet`` and ``layer_collapse``.

The notebook of this chapter imports this module (and the science modules) only;
no chapter module imports another.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import numpy as np
from matplotlib.figure import Figure

from ..experiments import s2s_imp, s2s_str_granet
from ..experiments.layer_collapse import collapse_curve
from ..experiments.s2s_pruning_at_init import pai_curve
from .explorer import stored_value, stored_view
from .style import (DEAD_COLOR, PALETTE, book_style, density_ticks, errorbar, log_ticks, nice_number, rule_color,
                    rule_label, source_density_color)

# The notebook imports only this module: the style helpers it needs come with it.
from .style import Table, glue, use_book_style  # noqa: F401

# Figures of chapter 7 (*Sparse-to-sparse*). They only read stored results of
# rpbook.experiments.s2s_imp, s2s_pruning_at_init and layer_collapse.

#: Marker of each ER source density (chapter 7); the colour is the source's rule (:func:`rpbook.masks.rule_color`).
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


def source_style(source: str) -> dict:
    """Line style of a source label such as ``"dense"`` or ``"balanced 0.3"``."""
    if source == "dense":
        return {"color": rule_color("dense"), "marker": "D", "ls": "--"}
    rule, density = source.rsplit(" ", 1)
    return {"color": rule_color(rule), "marker": SOURCE_DENSITY_MARKERS.get(float(density), "o"),
            "ls": "-"}


def plot_s2s_imp(result: Mapping, axes: "Sequence[plt.Axes] | None" = None, *,
                 highlight: str | None = None) -> "Sequence[plt.Axes]":
    """IMP from the dense network against IMP inside ER sources: one panel per source density (chapter 7).

    Each panel shows test accuracy against the target density for the dense
    source (black, dashed) and the three rules' sources of that density;
    lines are means over seeds, bands ± one standard deviation. ``highlight``
    (a source label) is drawn bold, the other ER sources faint.
    """

    sources = s2s_imp.sources_of(result)
    densities = sorted({float(s.rsplit(" ", 1)[1]) for s in sources if s != "dense"}, reverse=True)
    if axes is None:
        _, axes = plt.subplots(1, len(densities), figsize=(3.4 * len(densities), 3.4), sharey=True)
    axes = np.atleast_1d(axes)
    dense = s2s_imp.imp_curve(result, "dense", targets_only=True)
    targets = dense["density"]
    for ax, p0 in zip(axes, densities):
        errorbar(ax, dense["density"], dense["mean"], dense["std"], color=rule_color("dense"), ls="--",
                  label="dense source")
        for source in sources:
            if source == "dense" or float(source.rsplit(" ", 1)[1]) != p0:
                continue
            c = s2s_imp.imp_curve(result, source, targets_only=True)
            style = source_style(source)
            faint = highlight is not None and source != highlight
            errorbar(ax, c["density"], c["mean"], c["std"], color=style["color"], alpha=0.3 if faint else 1.0,
                      lw=2.4 if highlight == source else 1.6, label=rule_label(source.rsplit(" ", 1)[0]))
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

    targets = sorted({s["density"] for s in result["summary"] if s["is_target"]})
    target = targets[0] if target is None else target
    rows = [r for r in s2s_imp.flops_table(result, [target])]
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.6), width_ratios=(1.4, 1))
    bars, dots = axes
    x = np.arange(len(rows))
    for i, r in enumerate(rows):
        style = source_style(r["source"])
        bars.bar(i, r["train_flops"] / 1e9, color=style["color"], alpha=0.85)
        if r["fraction_of_dense"] is not None and r["source"] != "dense":
            bars.text(i, r["train_flops"] / 1e9, f"{r['fraction_of_dense']:.0%}", ha="center", va="bottom", fontsize=7)
    # Rotated, one label per bar: stacked two-line labels ran into each other ("pyramida0.3").
    bars.set_xticks(x, [r["source"] for r in rows], fontsize=7, rotation=45, ha="right", rotation_mode="anchor")
    bars.set_ylabel("training GFLOPs, all IMP levels")
    bars.set_title(f"compute to reach density {target:g} (labels: share of the dense source's)", fontsize=9)
    for r in rows:
        c = s2s_imp.imp_curve(result, r["source"], targets_only=True)
        j = [k for k, d in enumerate(c["density"]) if math.isclose(d, target)][0]
        style = source_style(r["source"])
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

    methods = list(dict.fromkeys(s["method"] for s in result["summary"]))
    sources = list(dict.fromkeys(s["source"] for s in result["summary"]))
    if axes is None:
        _, axes = plt.subplots(1, len(methods), figsize=(2.7 * len(methods), 3.3), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, method in zip(axes, methods):
        for source in sources:
            c = pai_curve(result, source, method)
            style = source_style(source)
            # one rule per result in the book: colour the sources by density, as chapter 6 does
            color = rule_color("dense") if source == "dense" else source_density_color(float(source.rsplit(" ", 1)[1]))
            errorbar(ax, c["density"], c["mean"], c["std"], color=color, ls=style["ls"],
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
#: Marker and line style of each method of ``s2s_str_granet`` (chapter 7); the colour is the source's.
SG_METHOD_STYLE: dict[str, dict] = {"granet": {"marker": "o", "ls": "-", "label": "GraNet"},
                                    "str": {"marker": "s", "ls": ":", "label": "STR"}}


def _source_color(source: str) -> str:
    return rule_color("dense") if source == "dense" else source_density_color(float(source.rsplit(" ", 1)[1]))


def plot_str_granet(result: Mapping, imp: Mapping | None = None, axes: "Sequence[plt.Axes] | None" = None
                    ) -> "Sequence[plt.Axes]":
    """STR and GraNet from the dense network and from ER sources (chapter 7).

    Left: test accuracy against the density each run ends at (GraNet: its
    target; STR: what its thresholds reached), one colour per source (as in
    the pruning-at-init figure), circles and solid lines GraNet, squares and
    dotted lines STR; error bars ± one std over seeds in both directions.
    ``imp`` (the ``s2s_imp`` result) adds IMP from the same sources as faint
    crosses. Right: the same accuracies against the training FLOPs of the run
    (log scale), with IMP's FLOPs summed over its levels.
    """
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    left, right = axes
    sources = s2s_str_granet.sources_of(result)
    densities = set()
    for source in sources:
        color = _source_color(source)
        for method, style in SG_METHOD_STYLE.items():
            pts = s2s_str_granet.method_points(result, source, method)
            x = [p["density"]["mean"] for p in pts]
            xerr = [p["density"]["std"] for p in pts]
            y = [p["test_acc"]["mean"] for p in pts]
            yerr = [p["test_acc"]["std"] for p in pts]
            f = [p["train_flops"]["mean"] / 1e9 for p in pts]
            densities.update(x)
            left.errorbar(x, y, xerr=xerr, yerr=yerr, color=color, marker=style["marker"], ls=style["ls"], ms=5,
                          capsize=2)
            right.errorbar(f, y, yerr=yerr, color=color, marker=style["marker"], ls="none", ms=5, capsize=2)
        if imp is not None and source in s2s_imp.sources_of(imp):
            c = s2s_imp.imp_curve(imp, source, targets_only=True)
            left.plot(c["density"], c["mean"], color=color, marker="x", ls="none", alpha=0.6, ms=6)
            densities.update(c["density"])
            right.plot(np.asarray(c["flops"]) / 1e9, c["mean"], color=color, marker="x", ls="none", alpha=0.6, ms=6)
    ticks = [d for d in (1.0, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001)
             if min(densities) / 1.5 <= d <= max(densities) * 1.5]
    density_ticks(left, ticks)
    left.invert_xaxis()
    left.set_xlabel("density at the end of training (log scale)")
    left.set_ylabel("test accuracy")
    left.set_title("accuracy against the density reached", fontsize=10)
    from matplotlib.lines import Line2D

    # one legend for the colours (sources) and one for the markers (methods), below both panels
    handles = [Line2D([], [], color=_source_color(src), lw=6, label=f"{src} source") for src in sources]
    handles += [Line2D([], [], color="0.3", marker=st["marker"], ls=st["ls"], label=st["label"])
                for st in SG_METHOD_STYLE.values()]
    if imp is not None:
        handles.append(Line2D([], [], color="0.3", marker="x", ls="none", label="IMP (s2s_imp)"))
    left.figure.legend(handles=handles, fontsize=7.5, loc="upper center", ncols=3, bbox_to_anchor=(0.5, 0.0),
                       frameon=False)
    right.set_xscale("log")
    right.xaxis.set_major_locator(mticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    right.xaxis.set_major_formatter(mticker.FormatStrFormatter("%g"))
    right.xaxis.set_minor_formatter(mticker.NullFormatter())
    right.set_xlabel("training GFLOPs (log scale)")
    right.set_title("accuracy against training compute" + (" (×: IMP)" if imp is not None else ""), fontsize=10)
    return axes


def plot_str_layer_densities(result: Mapping, axes: "Sequence[plt.Axes] | None" = None, *,
                             decays: Sequence[float] | None = None) -> "Sequence[plt.Axes]":
    """The layer densities STR learns, against the registered rules at the same overall density (chapter 7).

    One panel per STR threshold decay in ``decays`` (default: all stored).
    Thick black: STR from the dense network (mean over seeds); dashed,
    coloured by source: STR inside each ER source; thin lines: what the rules
    uniform, ERK, balanced and pyramidal give at the overall density STR
    reached from the dense network.
    """
    entries = result["str_layers"]
    stored = list(dict.fromkeys(e["setting"] for e in entries))
    decays = stored if decays is None else list(decays)
    missing = [d for d in decays if d not in stored]
    if missing:
        raise ValueError(f"threshold decay(s) {missing} are not stored; stored: {stored}")
    if axes is None:
        _, axes = plt.subplots(1, len(decays), figsize=(3.9 * len(decays), 3.6), sharey=True)
    axes = np.atleast_1d(axes)
    layers = list(result["layers"])
    x = np.arange(len(layers))
    for ax, lam in zip(axes, decays):
        group = [e for e in entries if e["setting"] == lam]
        dense = next((e for e in group if e["source"] == "dense"), group[0])
        for rule, dens in dense["rules"].items():
            ax.plot(x, dens, color=rule_color(rule), lw=1.2, marker=".", label=rule_label(rule))
        for e in group:
            is_dense = e["source"] == "dense"
            ax.plot(x, e["layer_densities"], color=_source_color(e["source"]), lw=2.6 if is_dense else 1.6,
                    ls="-" if is_dense else "--", marker="s", ms=5,
                    label=f"STR, {e['source']} source ({e['density']:.3f})")
        log_ticks(ax)
        ax.set_xticks(x, [f"{n}\n({nice_number(k)})" for n, k in zip(layers, result["layer_sizes"])])
        ax.set_xlabel("layer (weights), input → output")
        ax.set_title(f"STR, threshold decay {lam:g}: overall {dense['density']:.3f}", fontsize=9)
    axes[0].set_ylabel("layer density (log scale)")
    axes[-1].legend(fontsize=6.5, loc="upper center")
    return axes


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
    from ..experiments.s2s_pruning_at_init import pai_curve

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
            style = source_style(source)
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
            entries.append((src_rows[0]["layer_densities"], f"{source} source", source_style(source)["color"], 0.35))
        for s, label in shown:
            key = "density" if method == "imp" else "target"
            rows = [r for r in _s2s_rows(imp_result, pai_result, method, s) if abs(r[key] - final) < 1e-12]
            if rows:
                entries.append((rows[0]["layer_densities"], label, "black" if s == "dense" else
                                source_style(s)["color"], 1.0))
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


    sources = [s for s in s2s_imp.sources_of(imp_result) if s != "dense"]
    rules = list(dict.fromkeys(s.rsplit(" ", 1)[0] for s in sources))
    densities = sorted({float(s.rsplit(" ", 1)[1]) for s in sources}, reverse=True)
    methods = ["imp"] + (list(dict.fromkeys(s["method"] for s in pai_result["summary"])) if pai_result else [])
    if rule not in rules:
        raise ValueError(f"rule {rule!r} is not stored; stored: {', '.join(rules)}")
    source_density = stored_value(densities, source_density, "source density")
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
        return stored_view(draw, states, None, figsize, dpi)
    import ipywidgets as widgets

    style = {"description_width": "initial"}
    controls = {
        "rule": widgets.Dropdown(options=[(rule_label(r), r) for r in rules], value=rule,
                                 description="source rule", style=style),
        "source_density": widgets.SelectionSlider(options=[(f"{p:g}", p) for p in densities], value=source_density,
                                                  description="source density", continuous_update=False, style=style),
        "method": widgets.Dropdown(options=[(PAI_METHOD_LABELS.get(m, m), m) for m in methods], value=method,
                                   description="method", style=style),
    }
    return stored_view(draw, [], controls, figsize, dpi)




# ----------------------------------------------------------------------------- the numbers the prose quotes


def _source_density(source: str) -> float:
    return float(source.rsplit(" ", 1)[1])


def str_figure_decays(sg: Mapping) -> list[float]:
    """The STR threshold decays whose dense-source density lies nearest GraNet's densest and sparsest target.

    Chapter 7 draws STR's layer densities at these two (one if they coincide).
    """
    targets = sorted({s["setting"] for s in sg["summary"] if s["method"] == "granet"}, reverse=True)
    dense = {e["setting"]: e["density"] for e in sg["str_layers"] if e["source"] == "dense"}
    if not dense:
        dense = {e["setting"]: e["density"] for e in sg["str_layers"]}
    picks = [min(dense, key=lambda lam: abs(math.log(max(dense[lam], 1e-9)) - math.log(t)))
             for t in (targets[0], targets[-1])]
    return list(dict.fromkeys(picks))


def _sg_numbers(sg: dict, imp: dict | None) -> dict:
    """The numbers of the STR/GraNet section (``sg_*``); with ``imp``, also IMP's at the same targets."""
    out: dict = {}
    sources = s2s_str_granet.sources_of(sg)
    er = [s for s in sources if s != "dense"]
    sparsest = min(er, key=_source_density)
    out["sg_sparsest"] = sparsest
    targets = sorted({s["setting"] for s in sg["summary"] if s["method"] == "granet"}, reverse=True)
    t_hi, t_lo = targets[0], targets[-1]
    out.update({"sg_t_hi": t_hi, "sg_t_lo": t_lo})

    def row(source: str, method: str, setting: float) -> dict:
        return next(s for s in sg["summary"] if s["source"] == source and s["method"] == method
                    and s["setting"] == setting)

    for tag, t in (("hi", t_hi), ("lo", t_lo)):
        dense = row("dense", "granet", t)
        out[f"sg_granet_dense_{tag}"] = dense["test_acc"]["mean"]
        out[f"sg_granet_dense_std_{tag}"] = 100 * dense["test_acc"]["std"]
        out[f"sg_granet_src_{tag}"] = row(sparsest, "granet", t)["test_acc"]["mean"]
        gaps = [dense["test_acc"]["mean"] - row(s, "granet", t)["test_acc"]["mean"] for s in er]
        out[f"sg_granet_gap_{tag}"] = 100 * max(gaps)            # worst ER source, in points
        out[f"sg_granet_flops_share_{tag}"] = row(sparsest, "granet", t)["train_flops"]["mean"] / dense["train_flops"]["mean"]
        if imp is not None and "dense" in s2s_imp.sources_of(imp):
            c = s2s_imp.imp_curve(imp, "dense", targets_only=True)
            hit = [j for j, d in enumerate(c["density"]) if math.isclose(d, t)]
            if hit:
                j = hit[0]
                out[f"sg_imp_dense_{tag}"] = c["mean"][j]
                out[f"sg_granet_minus_imp_{tag}"] = 100 * (dense["test_acc"]["mean"] - c["mean"][j])
                out[f"sg_granet_imp_flops_{tag}"] = dense["train_flops"]["mean"] / c["flops"][j]
    decays = sorted({s["setting"] for s in sg["summary"] if s["method"] == "str"})
    for i, lam in enumerate(decays):
        dense = row("dense", "str", lam)
        out[f"sg_str{i}_decay"] = lam
        out[f"sg_str{i}_p_dense"] = dense["density"]["mean"]
        out[f"sg_str{i}_p_dense_std"] = dense["density"]["std"]
        out[f"sg_str{i}_acc_dense"] = dense["test_acc"]["mean"]
        reached = [row(s, "str", lam)["density"]["mean"] for s in sources]
        out[f"sg_str{i}_p_min"], out[f"sg_str{i}_p_max"] = min(reached), max(reached)
        out[f"sg_str{i}_p_src"] = row(sparsest, "str", lam)["density"]["mean"]
        out[f"sg_str{i}_acc_src"] = row(sparsest, "str", lam)["test_acc"]["mean"]
        # GraNet from the dense network at the target nearest (in log density) to what STR reached
        near = min(targets, key=lambda t: abs(math.log(t) - math.log(dense["density"]["mean"])))
        out[f"sg_str{i}_near_target"] = near
        out[f"sg_str{i}_minus_granet"] = 100 * (dense["test_acc"]["mean"] - row("dense", "granet", near)["test_acc"]["mean"])
        out[f"sg_str{i}_flops_vs_granet"] = dense["train_flops"]["mean"] / row("dense", "granet", near)["train_flops"]["mean"]
    # the layer-wise densities STR learns from the dense network, at the decays that land nearest each target
    shown = str_figure_decays(sg)
    for tag, lam in (("hi", shown[0]), ("lo", shown[-1])):
        entry = next(e for e in sg["str_layers"] if e["source"] == "dense" and e["setting"] == lam)
        closest, dist = s2s_str_granet.closest_rule(entry)

        def profile(dens: Sequence[float]) -> str:
            return ", ".join(f"{n} {p:.3f}" for n, p in zip(sg["layers"], dens))

        out.update({f"sg_str_{tag}_decay": lam, f"sg_str_{tag}_p": entry["density"],
                    f"sg_str_{tag}_layers": profile(entry["layer_densities"]),
                    f"sg_str_{tag}_erk": profile(entry["rules"]["erk"]),
                    f"sg_str_{tag}_balanced": profile(entry["rules"]["balanced"]),
                    f"sg_str_{tag}_closest": closest, f"sg_str_{tag}_closest_dist": dist,
                    f"sg_str_{tag}_sparsest_layer": sg["layers"][int(np.argmin(entry["layer_densities"]))],
                    f"sg_str_{tag}_densest_layer": sg["layers"][int(np.argmax(entry["layer_densities"]))]})
    out.update({"sg_str_collapsed": sum(bool(r["collapsed"]) for r in sg["runs"] if r["method"] == "str"),
                "sg_granet_collapsed": sum(bool(r["collapsed"]) for r in sg["runs"] if r["method"] == "granet"),
                "sg_runs_per_method": sum(1 for r in sg["runs"] if r["method"] == "str")})
    return out


def numbers(imp: dict | None = None, pai: dict | None = None, col: dict | None = None, sg: dict | None = None) -> dict:
    """Every number chapter 7's prose quotes, by glue name, from the stored results given.

    ``imp``: the ``s2s_imp`` result (accuracy gaps, training FLOPs, collapsed
    IMP levels); ``pai``: ``s2s_pruning_at_init``; ``col``: ``layer_collapse``;
    ``sg``: ``s2s_str_granet`` (with ``imp`` also compared with IMP).
    """
    out: dict = {}
    if sg is not None:
        out.update(_sg_numbers(sg, imp))
    if imp is not None:
        targets = sorted({s["density"] for s in imp["summary"] if s["is_target"]}, reverse=True)  # densest first
        curve = {s: s2s_imp.imp_curve(imp, s, targets_only=True) for s in s2s_imp.sources_of(imp)}
        dense_acc = {t: s2s_imp.accuracy_table(imp, [t])[0][t]["mean"] for t in targets}
        er_sources = [s for s in s2s_imp.sources_of(imp) if s != "dense"]
        best = {t: max(er_sources, key=lambda s: curve[s]["mean"][targets.index(t)]) for t in targets}
        best_acc = {t: curve[best[t]]["mean"][targets.index(t)] for t in targets}
        t_hi, t_lo = targets[0], targets[-1]
        worst_gap = max(dense_acc[t_lo] - curve[s]["mean"][-1] for s in er_sources)
        out.update({"imp_t_hi": t_hi, "imp_t_lo": t_lo, "imp_dense_hi": dense_acc[t_hi], "imp_dense_lo": dense_acc[t_lo],
                    "imp_best_hi": best[t_hi], "imp_best_lo": best[t_lo], "imp_best_acc_hi": best_acc[t_hi],
                    "imp_best_acc_lo": best_acc[t_lo], "imp_gap_hi": 100 * (dense_acc[t_hi] - best_acc[t_hi]),
                    "imp_gap_lo": 100 * (dense_acc[t_lo] - best_acc[t_lo]), "imp_worst_gap_lo": 100 * worst_gap,
                    "imp_dense_std_lo": 100 * curve["dense"]["std"][-1]})
        # How far "the order of the rules" reproduces: per (source density, target) cell, which source is worst,
        # and where balanced and ERK sources differ at all (on this MLP both clip the small layers to 1).
        src_ps = sorted({float(src.split()[-1]) for src in er_sources}, reverse=True)
        cells = pyr_worst = 0
        differ = []
        for q in src_ps:
            group = [src for src in er_sources if src.endswith(f" {q:g}")]
            for j in range(len(targets)):
                cells += 1
                pyr_worst += min(group, key=lambda src: curve[src]["mean"][j]).startswith("pyramidal")
            pair = [curve.get(f"balanced {q:g}"), curve.get(f"erk {q:g}")]
            if all(pair) and pair[0]["mean"] != pair[1]["mean"]:
                differ.append(f"{q:g}")
        out.update({"imp_cells": cells, "imp_pyr_worst_cells": pyr_worst,
                    "imp_bal_erk_differ": ", ".join(differ) if differ else "none"})
        # Training compute: the share of the dense source's FLOPs at the sparsest target.
        share = {r["source"]: r["fraction_of_dense"] for r in s2s_imp.flops_table(imp, [t_hi, t_lo])
                 if r["target"] == t_lo}
        src_densities = sorted({_source_density(s) for s in er_sources}, reverse=True)
        for p in src_densities:
            out[f"flops_share_{str(p).replace('.', '')}"] = min(v for s, v in share.items() if s.endswith(f" {p:g}"))
        out["flops_sparsest_p"] = src_densities[-1]
        out["flops_sparsest_share"] = min(share[s] for s in er_sources if s.endswith(f" {src_densities[-1]:g}"))
        out["flops_densest_share"] = min(share[s] for s in er_sources if s.endswith(f" {src_densities[0]:g}"))
        out["flops_densest_p"] = src_densities[0]
        out["imp_collapsed_levels"] = sum(bool(r["collapsed"]) for r in imp["runs"])
        out["imp_levels_total"] = len(imp["runs"])
    if pai is not None:
        sources = list(dict.fromkeys(s["source"] for s in pai["summary"]))
        methods = list(dict.fromkeys(s["method"] for s in pai["summary"]))
        sparsest = min((s for s in sources if s != "dense"), key=_source_density)
        densest = max((s for s in sources if s != "dense"), key=_source_density)
        scored = [m for m in methods if not m.startswith("random")]
        diffs = {m: [b - a for a, b in zip(pai_curve(pai, "dense", m)["mean"], pai_curve(pai, sparsest, m)["mean"])]
                 for m in methods}
        for m in scored:
            out[f"pai_diff_lo_{m}"] = 100 * diffs[m][-1]                 # at the sparsest target
            out[f"pai_maxloss_{m}"] = -100 * min(0.0, min(diffs[m]))     # largest loss at any target
            out[f"pai_std_lo_{m}"] = 100 * pai_curve(pai, "dense", m)["std"][-1]
        out["pai_sparsest"] = sparsest
        out["pai_densest"] = densest
        out["pai_densest_maxdiff"] = 100 * max(abs(b - a) for m in scored for a, b in
                                               zip(pai_curve(pai, "dense", m)["mean"], pai_curve(pai, densest, m)["mean"]))
        if "synflow" in methods:
            synflow_lo = pai_curve(pai, "dense", "synflow")["mean"][-1]
            out["pai_synflow_dense_lo"] = synflow_lo
            out["pai_synflow_snip_lo"] = synflow_lo - pai_curve(pai, "dense", "snip")["mean"][-1]
        if "random-layer" in methods:
            out["pai_random_gain"] = 100 * max(diffs["random-layer"])
    if col is not None:
        sources = list(dict.fromkeys(s["source"] for s in col["summary"]))
        methods = list(dict.fromkeys(s["method"] for s in col["summary"]))

        def first_collapse(source: str, method: str) -> str:
            if method not in methods:
                return "never"
            c = collapse_curve(col, source, method)
            hits = [d for d, f in zip(c["density"], c["collapsed"]) if f > 0]
            return f"{max(hits):g}" if hits else "never"

        out.update({"col_mag_dense": first_collapse("dense", "magnitude"),
                    "col_oneshot_dense": first_collapse("dense", "synflow-oneshot"),
                    "col_quota_dense": first_collapse("dense", "magnitude-layer"),
                    "col_mag_src": first_collapse(sources[-1], "magnitude"),
                    "col_oneshot_src": first_collapse(sources[-1], "synflow-oneshot")})
        trained = {(s["source"], s["method"]): s for s in col["summary"] if s["test_acc"]["n"]}
        if ("dense", "synflow") in trained and ("dense", "magnitude-layer") in trained:
            out["col_train_p"] = next(iter(trained.values()))["density"]
            out["col_synflow_acc"] = trained[("dense", "synflow")]["test_acc"]["mean"]
            out["col_quota_acc"] = trained[("dense", "magnitude-layer")]["test_acc"]["mean"]
    return out
