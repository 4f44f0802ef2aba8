"""Chapter 5, *Gradient flow*: signal propagation through depth per initialisation,
gradient norms of Evci et al.'s pipeline (DST methods from the registry in
:mod:`rpbook.dst`, random ERK masks beside the pruned one), interpolation
barriers, ensembles of lottery tickets and the init-signal explorer.

The notebook of this chapter imports this module (and the science modules) only;
no chapter module imports another.
"""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from ..dst import DST_METHODS
from ..experiments.evci_pipeline import RANDOM_MASK_METHODS, curves_of, method_labels, setup_key, update_table
from ..experiments.ticket_ensembles import group_names, group_stats, per_seed
from ..experiments.init_signal_propagation import curve, grad_norms, ratio_table
from ..models import build_model
from .explorer import stored_view
from .style import PALETTE, axes_or_new, book_style, density_ticks, log_ticks

# The notebook imports only this module: the style helpers it needs come with it.
from .style import Table, glue, use_book_style  # noqa: F401


#: Colour and label of each initialization (chapter 5).
INIT_COLORS: dict[str, str] = {"dense": PALETTE["vermillion"], "layer-scaled": PALETTE["sky"],
                               "unit-scaled": PALETTE["blue"]}
INIT_LABELS: dict[str, str] = {"dense": "dense init", "layer-scaled": "layer-scaled",
                               "unit-scaled": "unit-scaled (sparsity-aware)"}
INIT_STYLES: dict[str, str] = {"dense": "-", "layer-scaled": "--", "unit-scaled": "-"}
#: Colour of each method of Evci et al.'s pipeline that is not a DST method (chapter 5).
FIXED_METHOD_COLORS: dict[str, str] = {
    "prune": PALETTE["black"], "scratch": PALETTE["vermillion"], "scratch+": PALETTE["orange"],
    "lottery": PALETTE["green"], "small-dense": PALETTE["grey"],
    "random": PALETTE["sky"], "random+": "#332288",  # indigo (Tol's palette): PALETTE has no colour left
}
#: Line style of each method in the curves: dashed for the references, dash-dot for the random masks.
METHOD_STYLES: dict[str, str] = {"prune": "--", "small-dense": "--", **{m: "-." for m in RANDOM_MASK_METHODS}}


def method_color(method: str) -> str:
    """Colour of a method of Evci et al.'s pipeline; a DST method's comes from :data:`rpbook.dst.DST_METHODS`."""
    if method in DST_METHODS:
        return DST_METHODS[method].color
    return FIXED_METHOD_COLORS.get(method, PALETTE["grey"])


def draw_signal_through_depth(ax_act: "plt.Axes", ax_grad: "plt.Axes", result: dict, density: float,
                              inits: Sequence[str] | None = None) -> None:
    """Pre-activation and backward-signal variance per layer for each init at one density (chapter 5).

    ``result`` is ``init_signal_propagation``'s. Both axes are logarithmic: a
    dense init of a sparse net shrinks the variance by about ``p`` per layer,
    a straight line down.
    """

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
    ax = axes_or_new(ax)
    draw_grad_norm_at_init(ax, result)
    ax.legend()
    return ax


def plot_grad_norm_curves(result: dict, setup: str, methods: Sequence[str] | None = None,
                          ax: "plt.Axes | None" = None, key: str = "grad_norm") -> "plt.Axes":
    """Mean ± std over seeds of the masked gradient norm (or ``key="distance"``) during training (chapter 5)."""

    ax = axes_or_new(ax)
    units = [u for u in result["units"] if u["setup"] == setup]
    if not units:
        raise ValueError(f"setup {setup!r} is not in this result")
    available = [m for m in method_labels() if m in units[0]["methods"]]
    for m in methods or available:
        if m not in available or key not in units[0]["methods"][m]:
            continue
        c = curves_of(result, setup, m, key)
        steps, mean, std = np.array(c["steps"]), np.array(c["mean"]), np.array(c["std"])
        ax.plot(steps, mean, color=method_color(m), label=method_labels().get(m, m), ls=METHOD_STYLES.get(m, "-"))
        ax.fill_between(steps, np.maximum(mean - std, mean * 0.05) if key == "grad_norm" else mean - std, mean + std,
                        color=method_color(m), alpha=0.15, lw=0)
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

    ax = axes_or_new(ax)
    units = [u for u in result["units"] if u["setup"] == setup]
    if not units:
        raise ValueError(f"setup {setup!r} is not in this result")
    alphas = np.array(units[0]["interpolation"]["alphas"])
    for m in [k for k in units[0]["interpolation"] if k != "alphas"]:
        values = np.array([u["interpolation"][m][key] for u in units])
        mean, std = values.mean(0), values.std(0)
        ax.plot(alphas, mean, marker="o", ms=3, color=method_color(m), label=f"{method_labels().get(m, m)} → Prune",
                ls=METHOD_STYLES.get(m, "-"))
        ax.fill_between(alphas, mean - std, mean + std, color=method_color(m), alpha=0.15, lw=0)
    for a in (0.0, 1.0):
        ax.axvline(a, color=PALETTE["grey"], ls=":", lw=1)
    ax.set_xlabel("α  (0: the network's own solution, 1: the pruned solution)")
    ax.set_ylabel("training loss" if key == "train_loss" else "test accuracy")
    ax.set_title(setup, fontsize=10)
    return ax


def plot_mask_update_gradnorm(result: dict, setup: str, ax: "plt.Axes | None" = None) -> "plt.Axes":
    """Gradient norm just before (open) and just after (filled) each DST mask update (every registered method), mean over seeds."""

    ax = axes_or_new(ax)
    units = [u for u in result["units"] if u["setup"] == setup]
    for m in DST_METHODS:
        if not units or m not in units[0]["methods"]:
            continue
        events = [u["methods"][m]["mask_updates"] for u in units]
        n = min(len(e) for e in events)
        steps = np.array([events[0][i]["step"] for i in range(n)])
        before = np.array([[e[i]["grad_norm_before"] for i in range(n)] for e in events]).mean(0)
        after = np.array([[e[i]["grad_norm_after"] for i in range(n)] for e in events]).mean(0)
        color = method_color(m)
        ax.vlines(steps, before, after, color=color, lw=1.2)
        ax.plot(steps, before, "o", mfc="white", color=color, ms=4, label=f"{method_labels()[m]}: just before")
        ax.plot(steps, after, "o", color=color, ms=4, label=f"{method_labels()[m]}: just after")
    log_ticks(ax)
    ax.set_xlabel("training step of the mask update")
    ax.set_ylabel("masked gradient norm (fixed batch)")
    ax.set_title(setup, fontsize=10)
    return ax



def plot_ticket_ensembles(result: dict) -> Figure:
    """Figure: disagreement against ensemble gain per group, and member vs ensemble accuracy (chapter 5).

    ``result`` is ``ticket_ensembles``'. Left: one small dot per seed, the
    mean ± std over seeds as a large marker with error bars. Right: per group
    the members' mean accuracy (open) and the ensemble's (filled), mean ± std
    over seeds, with the pruning run's accuracy as a dashed line.
    """
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.0, 3.6), gridspec_kw={"width_ratios": [1.25, 1]})
    groups = group_names(result)
    for g in groups:
        color, label = method_color(g), method_labels().get(g, g)
        x = 100 * np.array(per_seed(result, g, "pairwise_disagreement"))
        y = 100 * np.array(per_seed(result, g, "ensemble_gain"))
        left.scatter(x, y, s=14, color=color, alpha=0.45, lw=0)
        left.errorbar(x.mean(), y.mean(), xerr=x.std(ddof=1) if len(x) > 1 else 0,
                      yerr=y.std(ddof=1) if len(y) > 1 else 0, fmt="o", ms=7, color=color, capsize=3, label=label)
    left.axhline(0, color=PALETTE["grey"], lw=0.8)
    left.set_xlabel("members' disagreement (% of test examples)")
    left.set_ylabel("ensemble gain (points)")
    left.set_xlim(left=0)
    left.set_title("gain vs disagreement", fontsize=10)
    left.legend(fontsize=8, loc="upper left")
    xs = np.arange(len(groups))
    for i, g in enumerate(groups):
        e = group_stats(result, g)
        color = method_color(g)
        right.errorbar(i - 0.12, 100 * e["member_accuracy"]["mean"], yerr=100 * e["member_accuracy"]["std"],
                       fmt="o", mfc="white", color=color, capsize=3)
        right.errorbar(i + 0.12, 100 * e["ensemble_accuracy"]["mean"], yerr=100 * e["ensemble_accuracy"]["std"],
                       fmt="o", color=color, capsize=3)
    # Legend entries in black: the colours are the groups'.
    right.plot([], [], "o", mfc="white", color=PALETTE["black"], label="members (mean)")
    right.plot([], [], "o", color=PALETTE["black"], label="ensemble")
    prune = 100 * result["summary"]["prune"]["test_accuracy"]["mean"]
    right.axhline(prune, color=PALETTE["black"], ls="--", lw=1, label="Prune")
    right.set_xticks(xs, [method_labels().get(g, g) for g in groups], fontsize=8)
    right.set_xlim(-0.5, len(groups) - 0.5)
    right.set_ylabel("test accuracy (%)")
    right.set_title("members and ensemble", fontsize=10)
    right.legend(fontsize=8, loc="best")
    return fig


#: Choices of the init dropdown of :func:`init_signal_explorer`; "all" overlays the three.
INIT_CHOICES: tuple[str, ...] = ("all", "dense", "layer-scaled", "unit-scaled")


def draw_init_signal(figure: Figure, result: dict, density: float, init: str = "all") -> Figure:
    """One frame of the chapter-5 explorer: variance through depth (forward, backward) and gradient norm at init.

    ``result`` is the stored ``init_signal_propagation`` result; ``init`` one of
    :data:`INIT_CHOICES`. Only stored densities can be shown (nothing is
    computed here).
    """

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
        return stored_view(draw, [{"density": d, "init": init} for d in densities], None, figsize, dpi)
    import ipywidgets as widgets

    style = {"description_width": "initial"}
    start = min(densities, key=lambda d: abs(d - density))
    controls = {
        "density": widgets.SelectionSlider(options=[(f"{d:g}", d) for d in densities], value=start,
                                           description="density p", continuous_update=False, style=style),
        "init": widgets.Dropdown(options=list(INIT_CHOICES), value=init, description="init", style=style),
    }
    return stored_view(draw, [], controls, figsize, dpi)






# ----------------------------------------------------------------------------- the numbers the prose quotes


def _glue_name(method: str) -> str:
    return method.replace("+", "plus").replace("-", "_")


def numbers(signal: dict, evci: dict, ensembles: dict | None = None) -> dict:
    """Every number chapter 5's prose quotes, by glue name.

    ``signal`` is the ``init_signal_propagation`` result, ``evci`` the
    ``evci_pipeline`` result, ``ensembles`` (optional) the ``ticket_ensembles``
    result. With a LeNet-5 setup, also the size of its first layer and how many
    of its weights the pruned mask (and the random ERK mask) keeps.
    """
    ratio = {r["density p"]: r["unit-scaled / dense"] for r in ratio_table(signal)}
    out: dict = {"gf_ratio_p01": ratio[0.1], "gf_ratio_pmin": ratio[min(ratio)], "gf_pmin": min(ratio)}
    for s in evci["summary"]:
        key = setup_key(s["setup"])
        for method, e in s["methods"].items():
            out[f"gf_acc_{key}_{_glue_name(method)}"] = 100 * e["test_accuracy"]["mean"]
            out[f"gf_accsd_{key}_{_glue_name(method)}"] = 100 * e["test_accuracy"]["std"]
            if "grad_norm_init" in e and "scratch" in s["methods"]:
                out[f"gf_g0_{key}_{_glue_name(method)}"] = (e["grad_norm_init"]["mean"]
                                                          / s["methods"]["scratch"]["grad_norm_init"]["mean"])
            if "relative_distance" in e:
                out[f"gf_reldist_{key}_{_glue_name(method)}"] = e["relative_distance"]["mean"]
            if "mask_overlap" in e:
                out[f"gf_overlap_{key}"] = 100 * e["mask_overlap"]["mean"]
        out[f"gf_ratio_{key}"] = s["grad_norm_ratio_init"]["mean"]
        for method, b in s["barrier"].items():
            out[f"gf_barrier_{key}_{_glue_name(method)}"] = b["mean"]
    for row in update_table(evci):
        out[f"gf_gain_{setup_key(row['setup'])}_{row['method'].lower()}"] = row["after / before"]
    lenet = [u for u in evci["units"] if setup_key(u["setup"]) == "lenet5"]
    if lenet:
        conv1_size = build_model("lenet5", in_shape=(1, 8, 8), num_classes=10).features.conv1.weight.numel()
        out["gf_conv1_size"] = conv1_size
        out["gf_conv1_kept"] = round(lenet[0]["layer_densities"]["features.conv1"] * conv1_size)
        if "random" in lenet[0]["methods"]:
            out["gf_conv1_kept_random"] = round(lenet[0]["methods"]["random"]["layer_densities"]["features.conv1"]
                                                * conv1_size)
    if ensembles is not None:
        out["te_seeds"] = len(ensembles["units"])
        out["te_prune_acc"] = 100 * ensembles["summary"]["prune"]["test_accuracy"]["mean"]
        for g in group_names(ensembles):
            e = group_stats(ensembles, g)
            name = _glue_name(g)
            out[f"te_members_{name}"] = 100 * e["member_accuracy"]["mean"]
            out[f"te_ens_{name}"] = 100 * e["ensemble_accuracy"]["mean"]
            out[f"te_gain_{name}"] = 100 * e["ensemble_gain"]["mean"]
            out[f"te_gainsd_{name}"] = 100 * e["ensemble_gain"]["std"]
            out[f"te_dis_{name}"] = 100 * e["pairwise_disagreement"]["mean"]
            out[f"te_dissd_{name}"] = 100 * e["pairwise_disagreement"]["std"]
            out[f"te_disprune_{name}"] = 100 * e["disagreement_with_prune"]["mean"]
    return out
