"""Chapter 3, *Training random sparse networks*: accuracy against density per rule,
width and depth sweeps, seed spread, and the explorer over the stored sweeps.

The figures only read stored experiment results (``rule_density_sweep``,
``width_sweep``, ``depth_sweep``, ``rule_seed_spread``, ``repair_ablation``,
``beyond_accuracy``): no training happens here.

The notebook of this chapter imports this module (and the science modules) only;
no chapter module imports another.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from ..experiments import beyond_accuracy as bya
from ..experiments import repair_ablation as rab
from ..experiments import rule_density_sweep as rds
from ..experiments import rule_seed_spread as rss
from ..experiments import width_sweep as ws
from ..masks import check_density
from .explorer import stored_value, stored_view
from .style import PALETTE, axes_or_new, book_style, density_ticks, errorbar, rule_color, rule_label

# The notebook imports only this module: the style helpers it needs come with it.
from .style import Table, glue, use_book_style  # noqa: F401

#: Colours of the three arms of chapter 3's width and depth sweeps.
ARM_COLORS: dict[str, str] = {"dense": PALETTE["black"], "sparse": PALETTE["orange"],
                              "dense-same-nonzero": PALETTE["blue"]}


def plot_accuracy_vs_density(result: Mapping, ax: "plt.Axes | None" = None, *, rules: Sequence[str] | None = None,
                             highlight: str | None = None, mark_density: float | None = None) -> "plt.Axes":
    """Test accuracy against density, one line per layer-wise rule, with the dense baseline (chapter 3).

    Lines are means over seeds, bands ± one standard deviation; the grey band is
    the dense network. ``highlight`` draws one rule bold and the others faint;
    ``mark_density`` draws a vertical line there.
    """

    ax = axes_or_new(ax)
    dense = rds.dense_stats(result)
    densities = rds.densities_of(result)
    ax.axhspan(dense["mean"] - dense["std"], dense["mean"] + dense["std"], color=PALETTE["grey"], alpha=0.25, lw=0)
    ax.axhline(dense["mean"], color=rule_color("dense"), lw=1.2, ls="--", label="dense")
    for rule in rules or rds.rules_of(result):
        c = rds.rule_curve(result, rule)
        faint = highlight is not None and rule != highlight
        errorbar(ax, c["density"], c["mean"], c["std"], color=rule_color(rule), label=rule_label(rule),
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

    ax = axes_or_new(ax)
    densities = rds.densities_of(result)
    best = {r["density"]: r["means"][0] for r in rds.ranking(result)}
    rules = rds.rules_of(result)
    offsets = np.linspace(-0.06, 0.06, len(rules))
    for off, rule in zip(offsets, rules):
        c = rds.rule_curve(result, rule)
        x = np.asarray(c["density"]) * 10 ** off
        sem = np.asarray(c["std"]) / np.sqrt(np.asarray(c["n"]))
        ax.errorbar(x, np.asarray(c["mean"]) - [best[p] for p in c["density"]], yerr=sem, marker="o", ms=4,
                    color=rule_color(rule), label=rule_label(rule), capsize=2)
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

    ax = axes_or_new(ax)
    units = {float(k): v[0] for k, v in result["hidden_units"].items()}
    labels = {"dense": "dense, same width", "sparse": f"random sparse, p = {density:g}",
              "dense-same-nonzero": "dense, as many weights as the sparse one"}
    for arm in ("dense", "sparse", "dense-same-nonzero"):
        if arm == "dense-same-nonzero" and not any(r["arm"] == arm for r in result["runs"]):
            continue
        c = ws.curve(result, arm, density)
        xs = [units[w] for w in c["width"]] if x == "units" else c["nonzero"]
        errorbar(ax, xs, c["mean"], c["std"], color=ARM_COLORS[arm], label=labels[arm],
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
    ax = axes_or_new(ax)
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
    ax = axes_or_new(ax)
    depths = sorted({s["depth"] for s in result["summary"]})
    densities = sorted({s["density"] for s in result["summary"] if s["arm"] == "sparse"}, reverse=True)
    groups = [("dense", 1.0, ARM_COLORS["dense"], "dense")]
    groups += [("sparse", p, c, f"random sparse, p = {p:g}")
               for p, c in zip(densities, (ARM_COLORS["sparse"], PALETTE["vermillion"], PALETTE["purple"]))]
    for arm, p, color, label in groups:
        rows = sorted((s for s in result["summary"] if s["arm"] == arm and s["density"] == p), key=lambda s: s["depth"])
        errorbar(ax, [s["depth"] for s in rows], [s[metric]["mean"] for s in rows], [s[metric]["std"] for s in rows],
                  color=color, label=label)
    ax.set_xticks(depths)
    ax.set_xlabel("hidden layers")
    ax.set_ylabel("test accuracy" if metric == "test_acc" else "final training accuracy")
    ax.legend()
    return ax


def plot_seed_spread(result: Mapping, ax: "plt.Axes | None" = None) -> "plt.Axes":
    """Every seed's test accuracy for each rule, with mean ± one standard error (chapter 3, *How many seeds?*)."""

    ax = axes_or_new(ax, (5.0, 3.4))
    rules = list(dict.fromkeys(row["rule"] for row in result["runs"]))
    for i, rule in enumerate(rules):
        acc = np.asarray(rss.accuracies(result, rule))
        jitter = np.linspace(-0.12, 0.12, len(acc))
        ax.plot(i + jitter, acc, "o", ms=5, alpha=0.7, color=rule_color(rule))
        s = result["stats"][rule]
        ax.errorbar(i + 0.3, s["mean"], yerr=s["sem"], fmt="s", color=PALETTE["black"], capsize=3)
    ax.set_xticks(range(len(rules)), [rule_label(r) for r in rules])
    ax.set_xlim(-0.5, len(rules) - 0.3)
    ax.set_ylabel("test accuracy")
    ax.set_xlabel("layer-wise rule (dots: seeds; squares: mean ± s.e.)")
    return ax


def plot_separation_by_seeds(result: Mapping, rule_a: str, rule_b: str, ax: "plt.Axes | None" = None) -> "plt.Axes":
    """Difference of two rules' mean accuracies using the first n seeds, with its 95 % Welch t band (chapter 3).

    The band is ± the t quantile times the standard error (wide for few seeds);
    where it leaves 0 a test *at that fixed n* separates the rules.
    """

    ax = axes_or_new(ax, (5.0, 3.4))
    rows = rss.separation_by_seeds(result, rule_a, rule_b)
    n = np.array([r["n"] for r in rows])
    diff = np.array([r["diff"] for r in rows])
    half = np.array([r["cutoff"] * r["se"] for r in rows])
    ax.fill_between(n, diff - half, diff + half, color=PALETTE["grey"], alpha=0.3, lw=0,
                    label="± t quantile × standard error (95 %)")
    ax.plot(n, diff, "o-", color=PALETTE["black"], ms=4, label="difference of the means")
    ax.axhline(0, color=PALETTE["vermillion"], lw=1)
    ax.set_xticks(n)
    ax.set_xlabel("seeds per rule")
    ax.set_ylabel(f"{rule_label(rule_a)} − {rule_label(rule_b)} accuracy")
    ax.legend(loc="best")
    return ax


# Sliders over the STORED sweeps of rpbook.experiments.rule_density_sweep and
# width_sweep: moving a slider only redraws, nothing is trained. Each explorer
# has a live ipywidgets view and an HTML twin (one frame per stored value
# behind a JavaScript slider); both draw with the same function.


def draw_rule_density(figure: Figure, result: dict, density: float, rule: str | None = None) -> Figure:
    """One frame of chapter 3's density explorer over a stored ``rule_density_sweep`` result.

    Left: test accuracy against density per rule (``rule`` bold, the others
    faint; ``None`` shows all alike), each seed at ``density`` as a dot. Right:
    the density each rule gives each layer at ``density``, on a log scale.
    The axes have fixed places, so the frames of the HTML twin line up; the
    explorers draw on a fixed-layout figure (``fixed_layout_figure``).
    """

    rules = rds.rules_of(result)
    density = stored_value(rds.densities_of(result), check_density(density), "density")
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
            ax.plot([density] * len(accs), accs, "o", ms=4.5, color=rule_color(r), mec="white", mew=0.6)
        ax.set_ylim(0, top + 0.05)
        ax.set_title(f"test accuracy; the seeds at p = {density:g} as dots", fontsize=10)
        bars = figure.add_axes((0.68, 0.2, 0.3, 0.66))
        layers = list(result["layers"])
        x = np.arange(len(layers))
        width = 0.8 / len(shown)
        for i, r in enumerate(shown):
            dens = rds.unit_rows(result, rule=r, density=density)[0]["layer_densities"]
            bars.bar(x + (i - (len(shown) - 1) / 2) * width, dens, width=width, color=rule_color(r),
                     label=rule_label(r))
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

    widths = sorted({g["width"] for g in result["gaps"]})
    densities = sorted({g["density"] for g in result["gaps"]}, reverse=True)
    width = stored_value(widths, width, "width")
    density = stored_value(densities, check_density(density), "density")
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
        density = stored_value(densities, density, "density")
        draw = functools.partial(draw_width_gap, result=result)
        if static:
            return stored_view(draw, [{"width": w, "density": density} for w in widths], None, figsize, dpi)
        import ipywidgets as widgets

        units = {float(k): v[0] for k, v in result["hidden_units"].items()}
        controls = {
            "width": widgets.SelectionSlider(options=[(str(units[w]), w) for w in widths],
                                             value=stored_value(widths, widths[0] if width is None else width, "width"),
                                             description="hidden units", continuous_update=False, style=style),
            "density": widgets.SelectionSlider(options=[(f"{d:g}", d) for d in densities], value=density,
                                               description="density p", continuous_update=False, style=style),
        }
        return stored_view(draw, [], controls, figsize, dpi)


    densities = rds.densities_of(result)
    density = stored_value(densities, density, "density")
    draw = functools.partial(draw_rule_density, result=result)
    if static:
        return stored_view(draw, [{"density": d, "rule": None} for d in densities], None, figsize, dpi)
    import ipywidgets as widgets

    controls = {
        "density": widgets.SelectionSlider(options=[(f"{d:g}", d) for d in densities], value=density,
                                           description="density p", continuous_update=False, style=style),
        "rule": widgets.Dropdown(options=[(rule_label(r), r) for r in rds.rules_of(result)], value=rule,
                                 description="rule", style=style),
    }
    return stored_view(draw, [], controls, figsize, dpi)






#: Colours and markers of the two repairs in the *Does repair matter?* figure.
REPAIR_STYLE: dict[str, dict] = {"swap": {"color": PALETTE["blue"], "marker": "o", "label": "swap (count kept)"},
                                 "add": {"color": PALETTE["orange"], "marker": "s", "label": "add (count grows)"}}


def plot_repair_gains(result: Mapping, ax: "plt.Axes | None" = None) -> "plt.Axes":
    """Accuracy gain of each repair over the unrepaired mask, per width × rule × density (chapter 3, *Does repair matter?*).

    Points are the mean gain over seeds, bars ± one standard error of the
    difference; each tick names the cell and the fraction of hidden units the
    unrepaired mask left without any input.
    """
    ax = axes_or_new(ax)
    gains = result["gains"]
    cut_out = repair_cut_off(result)
    x = np.arange(len(gains))
    for k, mode in enumerate(REPAIR_STYLE):
        st = REPAIR_STYLE[mode]
        ax.errorbar(x + (k - 0.5) * 0.25, [g[f"gain_{mode}"] for g in gains], yerr=[g[f"gain_{mode}_se"] for g in gains],
                    fmt=st["marker"], color=st["color"], label=st["label"], capsize=3, ms=5, lw=1.2)
    ax.axhline(0.0, color=PALETTE["grey"], lw=1, ls="--")
    ax.set_xticks(x, [f"{rule_label(g['rule'])}, {g['hidden'].split('-')[0]}\np={g['density']:g}\n"
                      f"{g['isolated_in']:.0%} / {c['without_output']:.0%}" for g, c in zip(gains, cut_out)],
                  fontsize=8)
    ax.set_xlabel("rule, hidden units per layer, density; % of hidden units with no input / no output")
    ax.set_ylabel("test accuracy gain over no repair")
    ax.legend(loc="best")
    return ax


def repair_cut_off(result: Mapping) -> list[dict]:
    """Per gains cell: mean over seeds of the unrepaired masks' shares of hidden units without input / output, and
    the unrepaired mask's nonzero weights (chapter 3, *Does repair matter?*)."""
    out = []
    for g in result["gains"]:
        rows = [r for r in result["runs"] if r["arm"] == "none" and r["hidden"] == g["hidden"]
                and r["rule"] == g["rule"] and r["density"] == g["density"]]
        out.append({key: float(np.mean([r["isolated"][key] for r in rows])) for key in ("without_input", "without_output")}
                   | {"nonzero": float(np.mean([r["nonzero"] for r in rows]))})
    return out


def repair_numbers(record: Mapping) -> dict:
    """The numbers the *Does repair matter?* prose quotes, from the stored ``repair_ablation`` record (chapter 3)."""
    result = record["result"]
    gains = result["gains"]
    worst = max(gains, key=lambda g: g["isolated_in"])
    out = {"ch3_repair_minutes": record["provenance"]["wall_time_s"] / 60, "ch3_repair_cells": len(gains),
           "ch3_repair_isolated_max": worst["isolated_in"], "ch3_repair_worst_rule": rule_label(worst["rule"]),
           "ch3_repair_worst_p": worst["density"], "ch3_repair_worst_units": int(worst["hidden"].split("-")[0]),
           "ch3_repair_worst_none": worst["none"]}
    for mode in ("swap", "add"):
        stats = rab.mean_gain(result, mode)
        out[f"ch3_repair_gain_{mode}"] = stats["mean"]
        out[f"ch3_repair_gain_{mode}_min"] = stats["min"]
        out[f"ch3_repair_gain_{mode}_max"] = stats["max"]
        out[f"ch3_repair_worst_gain_{mode}"] = worst[f"gain_{mode}"]
        out[f"ch3_repair_worst_gain_{mode}_se"] = worst[f"gain_{mode}_se"]
        out[f"ch3_repair_separated_{mode}"] = sum(abs(g[f"gain_{mode}"]) > 2 * g[f"gain_{mode}_se"] for g in gains)
        out[f"ch3_repair_extra_{mode}"] = max(g[f"extra_weights_{mode}"] for g in gains)
    cut = repair_cut_off(result)
    out["ch3_repair_worst_no_output"] = cut[gains.index(worst)]["without_output"]
    # Where add and swap differ most: how many weights the add put in, relative to the mask's count.
    k = max(range(len(gains)), key=lambda i: gains[i]["gain_add"] - gains[i]["gain_swap"])
    d = gains[k]
    out.update({"ch3_repair_split_rule": rule_label(d["rule"]), "ch3_repair_split_p": d["density"],
                "ch3_repair_split_units": int(d["hidden"].split("-")[0]), "ch3_repair_split_add": d["gain_add"],
                "ch3_repair_split_swap": d["gain_swap"], "ch3_repair_split_extra": d["extra_weights_add"],
                "ch3_repair_split_extra_rel": d["extra_weights_add"] / cut[k]["nonzero"]})
    erk = [c["without_output"] for g, c in zip(gains, cut) if g["rule"] == "erk"]
    uni = [c["without_output"] for g, c in zip(gains, cut) if g["rule"] == "uniform"]
    if erk and uni:
        out["ch3_repair_no_output_erk_max"] = max(erk)
        out["ch3_repair_no_output_uniform_max"] = max(uni)
    return out


# ----------------------------------------------------------------------------- more than accuracy (beyond_accuracy)

#: Line styles of the sparse densities of *More than accuracy* (the dense line is black, as in the width figures).
_BEYOND_SPARSE_STYLE: tuple[tuple[str, str], ...] = ((PALETTE["orange"], "-"), (PALETTE["vermillion"], "--"),
                                                    (PALETTE["purple"], ":"))


def _beyond_densities(result: Mapping) -> list[float]:
    return sorted({s["density"] for s in result["summary"] if s["arm"] == "sparse"}, reverse=True)


def plot_beyond_metric(result: Mapping, metric: str, ax: "plt.Axes | None" = None, *, ylabel: str | None = None,
                       legend: bool = True) -> "plt.Axes":
    """One metric of ``beyond_accuracy`` against width: dense and random sparse per density (chapter 3).

    Lines are means over seeds, bands ± one standard deviation.
    """
    ax = axes_or_new(ax)
    units = {float(k): v[0] for k, v in result["hidden_units"].items()}
    c = bya.curve(result, metric)
    errorbar(ax, [units[w] for w in c["width"]], c["mean"], c["std"], color=ARM_COLORS["dense"], label="dense")
    for (color, ls), p in zip(_BEYOND_SPARSE_STYLE, _beyond_densities(result)):
        c = bya.curve(result, metric, p)
        errorbar(ax, [units[w] for w in c["width"]], c["mean"], c["std"], color=color, ls=ls,
                 label=f"random sparse, p = {p:g}")
    ax.set_xscale("log")
    ticks = sorted(units[w] for w in c["width"])
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("hidden units per layer (log scale)")
    ax.set_ylabel(ylabel or metric)
    if legend:
        ax.legend(loc="best")
    return ax


def plot_beyond_accuracy(result: Mapping, *, eps: float, ood: str = "noise", figsize: tuple[float, float] = (8.4, 6.4)
                         ) -> Figure:
    """Four panels against width (chapter 3, *More than accuracy*): test accuracy, calibration error,
    accuracy under PGD at radius ``eps``, and the OOD AUROC against the ``ood`` set."""
    fig, axes = plt.subplots(2, 2, figsize=figsize)
    panels = [("test_acc", "(a) clean test accuracy"), ("ece", "(b) calibration error (ECE, lower is better)"),
              (bya.eps_key("pgd", eps), f"(c) accuracy under PGD, ρ = {eps:g}"),
              (f"auroc_{ood}", f"(d) OOD AUROC vs {ood} (0.5 = chance)")]
    for k, (ax, (metric, title)) in enumerate(zip(axes.flat, panels)):
        plot_beyond_metric(result, metric, ax, ylabel=title.split(") ", 1)[1].split(" (")[0].split(",")[0],
                           legend=k == 0)
        ax.set_title(title, loc="left")
        if k < 2:
            ax.set_xlabel("")
    axes.flat[3].axhline(0.5, color=PALETTE["grey"], lw=1, ls=":")
    return fig


def plot_reliability_diagram(result: Mapping, ax: "plt.Axes | None" = None, *, width: float, density: float = 1.0,
                             rule: str | None = None, title: str | None = None) -> "plt.Axes":
    """Reliability diagram of one cell, its seeds pooled (chapter 3, *More than accuracy*).

    Bars: accuracy per confidence bin, shaded by the share of predictions in the
    bin; hatched: the gap up (or down) to the bin's mean confidence; the
    diagonal is perfect calibration, so a hatched gap above a bar is
    over-confidence. The text gives the cell's ECE (mean over seeds).
    """
    ax = axes_or_new(ax)
    bins = bya.pooled_reliability(result, width=width, density=density, rule=rule)
    edges = np.asarray(bins["edges"])
    total = sum(bins["count"])
    color = ARM_COLORS["dense"] if density >= 1.0 else PALETTE["orange"]
    for b, (n, acc, conf) in enumerate(zip(bins["count"], bins["accuracy"], bins["confidence"])):
        if n:
            w = edges[b + 1] - edges[b]
            ax.bar(edges[b], acc, width=w, align="edge", color=color, alpha=0.25 + 0.75 * min(1.0, 5 * n / total),
                   edgecolor="white", lw=0.5, label="accuracy (darker: more inputs)" if b == len(edges) - 2 else None)
            ax.bar(edges[b], conf - acc, bottom=acc, width=w, align="edge", fill=False, hatch="///",
                   edgecolor=PALETTE["vermillion"], lw=0.6, label="gap to mean confidence" if b == len(edges) - 2 else None)
    ax.plot([0, 1], [0, 1], color=PALETTE["grey"], lw=1, ls="--", label="perfect calibration")
    ece = bya.cell(result, width=width, density=density, rule=rule)["ece"]["mean"]
    ax.text(0.03, 0.95, f"ECE {ece:.3f}", transform=ax.transAxes, va="top")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (max softmax probability)")
    ax.set_ylabel("accuracy in the bin")
    if title:
        ax.set_title(title, loc="left")
    return ax


def plot_reliability_pair(result: Mapping, *, width: float, density: float, rule: str,
                          figsize: tuple[float, float] = (8.4, 3.6)) -> Figure:
    """Reliability diagrams of the dense network and a random sparse one of the same width, seeds pooled (chapter 3)."""
    units = {float(k): v[0] for k, v in result["hidden_units"].items()}[width]
    fig, axes = plt.subplots(1, 2, figsize=figsize, sharey=True)
    plot_reliability_diagram(result, axes[0], width=width, title=f"dense, {units} units per layer")
    plot_reliability_diagram(result, axes[1], width=width, density=density, rule=rule,
                             title=f"random sparse {rule_label(rule)}, p = {density:g}")
    axes[0].legend(loc="upper left", bbox_to_anchor=(0.0, 0.9), fontsize=8)
    axes[1].set_ylabel("")
    return fig


def beyond_numbers(record: Mapping) -> dict:
    """The numbers the *More than accuracy* prose quotes, from the stored ``beyond_accuracy`` record (chapter 3)."""
    result = record["result"]
    config = record["config"]
    units = {float(k): v[0] for k, v in result["hidden_units"].items()}
    widths = sorted(float(w) for w in config["widths"])
    w_lo, w_hi = widths[0], widths[-1]
    densities = _beyond_densities(result)
    p_hi, p_lo = densities[0], densities[-1]
    eps = sorted(config["epsilons"])
    eps_mid = eps[len(eps) // 2]
    out: dict = {"ch3_ba_minutes": record["provenance"]["wall_time_s"] / 60, "ch3_ba_w_lo": units[w_lo],
                 "ch3_ba_w_hi": units[w_hi], "ch3_ba_p_hi": p_hi, "ch3_ba_p_lo": p_lo, "ch3_ba_eps": eps_mid,
                 "ch3_ba_eps_lo": eps[0], "ch3_ba_eps_hi": eps[-1], "ch3_ba_steps": config["pgd_steps"],
                 "ch3_ba_bins": config["n_bins"], "ch3_ba_seeds": len(config["seeds"]),
                 "ch3_ba_networks": len(result["runs"])}
    pgd = bya.eps_key("pgd", eps_mid)
    fgsm = bya.eps_key("fgsm", eps_mid)
    for tag, w in (("lo", w_lo), ("hi", w_hi)):
        for arm, p in (("dense", 1.0), ("sparse", p_hi), ("sparse_lo", p_lo)):
            c = bya.cell(result, width=w, density=p, rule=None if p >= 1 else config["rule"])
            for metric, key in (("test_acc", "acc"), ("ece", "ece"), ("mean_confidence", "conf"), ("nll", "nll"),
                                (pgd, "pgd"), (fgsm, "fgsm"), ("auroc_noise", "ood_noise"),
                                ("auroc_shuffled", "ood_shuffled")):
                if metric in c:
                    out[f"ch3_ba_{arm}_{key}_{tag}"] = c[metric]["mean"]
                    out[f"ch3_ba_{arm}_{key}_{tag}_std"] = c[metric]["std"]
            # accuracy kept under attack, relative to clean accuracy
            out[f"ch3_ba_{arm}_kept_{tag}"] = c[pgd]["mean"] / c["test_acc"]["mean"]
    # the largest PGD-over-FGSM advantage (how much stronger the iterated attack is) over every cell and radius
    gaps = [s[bya.eps_key("fgsm", e)]["mean"] - s[bya.eps_key("pgd", e)]["mean"] for s in result["summary"] for e in eps]
    out["ch3_ba_pgd_extra_max"] = max(gaps)
    out["ch3_ba_pgd_extra_min"] = min(gaps)
    # ECE ordering: in how many (width, density) cells is the sparse network better calibrated than the dense one?
    cells = [(w, p) for w in widths for p in densities]
    better = [bya.cell(result, width=w, density=p, rule=config["rule"])["ece"]["mean"]
              < bya.cell(result, width=w)["ece"]["mean"] for w, p in cells]
    out["ch3_ba_ece_sparse_better"] = sum(better)
    out["ch3_ba_cells"] = len(cells)
    full = bya.presets("full")
    out["ch3_ba_full_networks"] = bya.network_count(full)
    out["ch3_ba_full_widths"] = len(full.widths)
    # At matched clean accuracy: the widest sparse networks against the dense width closest in accuracy
    # (``match`` for the higher density, ``match_lo`` for the lower one).
    for tag, p in (("match", p_hi), ("match_lo", p_lo)):
        sp = bya.cell(result, width=w_hi, density=p, rule=config["rule"])
        w_match = min(widths, key=lambda w: abs(bya.cell(result, width=w)["test_acc"]["mean"] - sp["test_acc"]["mean"]))
        dn = bya.cell(result, width=w_match)
        out[f"ch3_ba_{tag}_units"] = units[w_match]
        for metric, key in (("test_acc", "acc"), ("ece", "ece"), (pgd, "pgd"), ("auroc_noise", "ood_noise")):
            out[f"ch3_ba_{tag}_dense_{key}"] = dn[metric]["mean"]
            out[f"ch3_ba_{tag}_sparse_{key}"] = sp[metric]["mean"]
    # Rules at one width and density.
    if config.get("rules"):
        table = bya.rule_table(result, config["rules_width"], config["rules_density"])
        best, worst = table[0], table[-1]
        by_rule = {s["rule"]: s for s in table}
        out.update({"ch3_ba_rules_units": units[float(config["rules_width"])],
                    "ch3_ba_rules_p": config["rules_density"], "ch3_ba_rules_n": len(table),
                    "ch3_ba_rules_best": rule_label(best["rule"]), "ch3_ba_rules_best_acc": best["test_acc"]["mean"],
                    "ch3_ba_rules_worst": rule_label(worst["rule"]),
                    "ch3_ba_rules_worst_acc": worst["test_acc"]["mean"]})
        for rule in by_rule:
            key = rule.replace("-ratio", "").replace("+", "_plus")
            out[f"ch3_ba_rule_{key}_acc"] = by_rule[rule]["test_acc"]["mean"]
            out[f"ch3_ba_rule_{key}_acc_std"] = by_rule[rule]["test_acc"]["std"]
            out[f"ch3_ba_rule_{key}_ece"] = by_rule[rule]["ece"]["mean"]
    return out


# ----------------------------------------------------------------------------- the numbers the prose quotes


def _sparse_acc(rd: Mapping, rule: str, density: float) -> float:
    return next(s for s in rd["summary"] if s["arm"] == "sparse" and s["rule"] == rule
                and s["density"] == density)["test_acc"]["mean"]


def numbers(records: Mapping[str, Mapping]) -> dict:
    """Every number chapter 3's prose quotes from its stored results, by glue name.

    ``records`` maps ``rule_density_sweep``, ``width_sweep``, ``depth_sweep``
    (and optionally more) to their stored records (config, result, provenance).
    The connectivity numbers come from resampled masks: :func:`connectivity_numbers`.
    """
    rd, wsr, dsr = (records[n]["result"] for n in ("rule_density_sweep", "width_sweep", "depth_sweep"))
    out: dict = {"ch3_total_minutes": sum(rec["provenance"]["wall_time_s"] for rec in records.values()) / 60}
    # Accuracy against density.
    dense = rds.dense_stats(rd)
    densities = rds.densities_of(rd)
    p_hi, p_lo = densities[0], densities[-1]
    p_mid = 0.1 if 0.1 in densities else densities[len(densities) // 2]
    best_mid = max(rds.rules_of(rd), key=lambda r: _sparse_acc(rd, r, p_mid))
    out.update({
        "ch3_dense": dense["mean"], "ch3_dense_std": dense["std"], "ch3_p_hi": p_hi, "ch3_p_lo": p_lo,
        "ch3_p_mid": p_mid, "ch3_gap_erk_hi": dense["mean"] - _sparse_acc(rd, "erk", p_hi),
        "ch3_gap_erk_mid": dense["mean"] - _sparse_acc(rd, "erk", p_mid),
        "ch3_gap_uniform_mid": dense["mean"] - _sparse_acc(rd, "uniform", p_mid),
        "ch3_erk_lo": _sparse_acc(rd, "erk", p_lo), "ch3_uniform_lo": _sparse_acc(rd, "uniform", p_lo),
        "ch3_best_mid": best_mid, "ch3_gap_best_mid": dense["mean"] - _sparse_acc(rd, best_mid, p_mid),
    })
    # Wider networks.
    units = {float(k): v[0] for k, v in wsr["hidden_units"].items()}
    w_lo, w_hi = min(units), max(units)
    p_w = 0.1 if any(g["density"] == 0.1 for g in wsr["gaps"]) else wsr["gaps"][0]["density"]
    g_lo, g_hi = ws.gap(wsr, w_lo, p_w), ws.gap(wsr, w_hi, p_w)
    out.update({"ch3_w_lo": units[w_lo], "ch3_w_hi": units[w_hi], "ch3_p_w": p_w,
                "ch3_gap_w_lo": g_lo["gap"], "ch3_gap_w_lo_se": g_lo["gap_se"],
                "ch3_gap_w_hi": g_hi["gap"], "ch3_gap_w_hi_se": g_hi["gap_se"],
                "ch3_dense_w_lo": g_lo["dense"], "ch3_dense_w_hi": g_hi["dense"], "ch3_sparse_w_hi": g_hi["sparse"]})
    adv = [(g["sparse_advantage"], g["sparse_advantage_se"]) for g in wsr["gaps"] if g["density"] == p_w]
    out.update({"ch3_adv_hi": adv[-1][0], "ch3_adv_hi_se": adv[-1][1], "ch3_adv_lo": adv[0][0]})
    p_sparsest = min(g["density"] for g in wsr["gaps"])
    for key, p in (("hi", p_w), ("lo_p", p_sparsest)):
        train = {arm: next(s for s in wsr["summary"] if s["arm"] == arm and s["width"] == w_hi
                           and s["density"] == p)["train_acc"]["mean"] for arm in ("sparse", "dense-same-nonzero")}
        out[f"ch3_train_sparse_{key}"] = train["sparse"]
        out[f"ch3_train_same_{key}"] = train["dense-same-nonzero"]
    out["ch3_p_sparsest"] = p_sparsest
    # Deeper networks.
    gaps = {g["depth"]: g for g in dsr["gaps"] if g["density"] == dsr["gaps"][0]["density"]}
    d_lo, d_hi = min(gaps), max(gaps)
    d_best = max(gaps, key=lambda d: gaps[d]["dense"])
    out.update({"ch3_d_lo": d_lo, "ch3_d_hi": d_hi, "ch3_d_best": d_best,
                "ch3_gap_d_lo": gaps[d_lo]["gap"], "ch3_gap_d_best": gaps[d_best]["gap"],
                "ch3_gap_d_hi": gaps[d_hi]["gap"], "ch3_gap_d_hi_se": gaps[d_hi]["gap_se"],
                "ch3_dense_d_best": gaps[d_best]["dense"], "ch3_dense_d_hi": gaps[d_hi]["dense"],
                "ch3_sparse_d_lo": gaps[d_lo]["sparse"], "ch3_sparse_d_hi": gaps[d_hi]["sparse"]})
    return out


def connectivity_numbers(rows: Sequence[Mapping], layer_p: float, p_mid: float) -> dict:
    """The connectivity numbers chapter 3 quotes, from the rows of resampled trained masks (one per rule and density)."""
    pyr = {r["density"]: r for r in rows if r["rule"] == "pyramidal"}
    uni = {r["density"]: r for r in rows if r["rule"] == "uniform"}
    return {"ch3_pyr_outputs_lo": pyr[layer_p]["outputs_reached"], "ch3_pyr_eff_lo": pyr[layer_p]["effective_density"],
            "ch3_uni_eff_mid": uni[p_mid]["effective_density"], "ch3_layer_p": layer_p}
