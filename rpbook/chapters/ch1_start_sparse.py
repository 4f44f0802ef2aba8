"""Chapter 1, *Start sparse*: the map of sparse training and the training-curve figure.

The notebook of this chapter imports this module (and the science modules) only;
no chapter module imports another.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from ..masks import SparsityReport, count_nonzero_parameters
from ..models import count_parameters
from .style import PALETTE, axes_or_new

# The notebook imports only this module: the style helpers it needs come with it.
from .style import Table, glue, use_book_style  # noqa: F401


def plot_sparse_training_map(ax: "plt.Axes | None" = None) -> "plt.Axes":
    """The four families of sparse training as density over training time (chapter 1).

    Dense-to-sparse training starts dense and prunes gradually; pruning at
    initialisation scores weights once, before training; static random masks
    need no scores at all; dynamic sparse training keeps the density fixed and
    moves the mask. A schematic, not data.
    """
    ax = axes_or_new(ax, (7.0, 3.8))
    t = np.linspace(0, 1, 400)
    p = 0.1
    gradual = np.where(t < 0.2, 1.0, np.where(t > 0.7, p, p + (1 - p) * (1 - (t - 0.2) / 0.5) ** 3))
    ax.plot(t, gradual, color=PALETTE["black"], label="dense-to-sparse (gradual / iterative pruning)")
    # The three sparse families all train at exactly p: they share one line, told apart by width and style
    # (a thick band, a solid line, a dashed line with dots) rather than by drawing them at false densities.
    ax.plot(t, np.full_like(t, p), color=PALETTE["orange"], lw=9, alpha=0.35, solid_capstyle="butt",
            label="pruning at initialisation (SNIP, GraSP, SynFlow)")
    ax.plot(t, np.full_like(t, p), color=PALETTE["blue"], lw=2.5, label="static random mask (ER, ERK, ...)")
    ax.plot(t, np.full_like(t, p), color=PALETTE["green"], lw=1.5, ls=(0, (4, 3)),
            label="dynamic sparse training (SET, RigL)")
    updates = np.linspace(0.08, 0.72, 9)
    ax.plot(updates, np.full_like(updates, p), "o", ms=5, color=PALETTE["green"])
    ax.annotate("mask scored with data,\nthen fixed", xy=(0.0, p), xytext=(0.05, 0.42),
                arrowprops={"arrowstyle": "->", "color": PALETTE["orange"]}, color=PALETTE["orange"], fontsize=9)
    ax.annotate("mask moves\n(drop and grow)", xy=(updates[7], p), xytext=(0.76, 0.25),
                arrowprops={"arrowstyle": "->", "color": PALETTE["green"]}, color=PALETTE["green"], fontsize=9)
    ax.annotate("all three train at p = 0.1", xy=(0.5, p), xytext=(0.42, 0.3),
                arrowprops={"arrowstyle": "->", "color": PALETTE["blue"]}, color=PALETTE["blue"], fontsize=9)
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
    ax = axes_or_new(ax)
    for label, values in curves.items():
        color = (colors or {}).get(label)
        ax.plot(np.arange(1, len(values) + 1), values, marker="o", ms=3, label=label, color=color)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.legend()
    return ax


def plot_parameters_and_flops(rules: Sequence[str], density: Sequence[float], flops_share: Sequence[float], *,
                              global_density: float, ax: "plt.Axes | None" = None) -> "plt.Axes":
    """Kept parameters and FLOPs, each as a share of the dense network, one pair of bars per rule (chapter 1).

    The rules are named on the x axis, so the bars need no rule colours: one
    colour per quantity keeps the legend true to every bar.
    """
    from ..masks import rule_label

    ax = axes_or_new(ax, (6.4, 3.2))
    x = np.arange(len(rules))
    ax.bar(x - 0.2, density, width=0.4, color=PALETTE["grey"], label="parameters kept (share of dense)")
    ax.bar(x + 0.2, flops_share, width=0.4, color=PALETTE["blue"], label="FLOPs (share of dense)")
    ax.set_xticks(list(x), [rule_label(r) for r in rules])
    ax.set_ylabel("share of the dense network")
    ax.set_xlabel(f"layer-wise rule at global density p = {global_density:g}")
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left")
    return ax


# ----------------------------------------------------------------------------- the numbers the prose quotes


def numbers(*, reports: Mapping[str, SparsityReport] | None = None, runs: Mapping[str, tuple] | None = None,
            sparse: str | None = None) -> dict:
    """Every number chapter 1's prose quotes, by glue name.

    ``reports``: one :func:`rpbook.masks.sparsity_report` per rule (the FLOPs
    share of dense, ``flops_share_<rule>``); ``runs``: ``label -> (model,
    history)`` of the dense run (``"dense"``) and the sparse run ``sparse``
    (test accuracies and nonzero parameters).
    """
    out: dict = {}
    for rule, report in (reports or {}).items():
        out[f"flops_share_{rule}"] = report.flops_sparse / report.flops_dense
    if runs is not None:
        (dense_model, dense_history), (sparse_model, sparse_history) = runs["dense"], runs[sparse]
        out.update({"acc_dense": dense_history.test["accuracy"], "acc_sparse": sparse_history.test["accuracy"],
                    "params_dense": count_parameters(dense_model),
                    "params_sparse": count_nonzero_parameters(sparse_model)})
    return out
