"""Does repair matter? Random sparse MLPs with and without dead-unit repair at low densities (chapter 3).

Chapter 3 (*Training random sparse networks*), section *Does repair matter?*:
chapter 2 counts the hidden units a random mask leaves without inputs or
outputs at low density. Gadhikar et al.'s code gives each such unit one edge
(``flow_preservation``), which raises the weight count; the book's default
swap (:func:`rpbook.masks.repair_dead_units`) moves an edge instead, keeping
the count. This experiment trains the same masks (same seed) three ways:
unrepaired, swap-repaired and add-repaired, for two rules, two widths and the
densities where isolated units appear, and records how many units each mask
had cut off before repair.

Run it with ``rpbook run repair_ablation --profile standard``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..masks import REPAIR_MODES, sample_masks
from ..results import Tolerance
from ..train import TrainConfig
from . import Experiment, RunContext
from .specs import DataSpec, NetworkSpec, TrainingSpec, profile_presets
from ._sparse_sweep import (SWEEP_TOLERANCES, UnitTrainer, check_common, check_rules, check_sparse_densities,
                            difference_stats, find, summarize, train_preset)

#: The repair arms: none, the book's count-preserving swap, the authors' add-only variant.
ARMS: tuple[str, ...] = ("none", *REPAIR_MODES)


@dataclass(frozen=True)
class RepairAblationConfig(TrainingSpec, DataSpec, NetworkSpec):
    """One network per ``hiddens`` × ``rules`` × ``densities`` × repair arm × ``seeds`` (chapter 3).

    A seed draws the mask, the initial weights and the batch order; the three
    arms of one seed start from the same unrepaired mask. ``hidden`` is unused
    (``hiddens`` lists the MLP layouts) and kept at its default.
    """

    hiddens: tuple[tuple[int, ...], ...] = ((128, 128), (256, 256))
    rules: tuple[str, ...] = ("uniform", "erk")
    densities: tuple[float, ...] = (0.05, 0.02)
    train: TrainConfig = field(default_factory=lambda: train_preset("standard"))

    def __post_init__(self) -> None:
        self.check_network()
        if self.model != "mlp":
            raise ValueError(f"repair_ablation trains MLPs (model='mlp'), got model={self.model!r}")
        if (not isinstance(self.hiddens, tuple) or not self.hiddens
                or not all(isinstance(h, tuple) and h and all(isinstance(u, int) and u > 0 for u in h)
                           for h in self.hiddens)):
            raise ValueError(f"hiddens must be a non-empty tuple of hidden-size tuples, got {self.hiddens!r}")
        check_rules(self.rules)
        check_sparse_densities(self.densities)
        check_common(self)


presets = profile_presets(
    """``quick``: one 32-32 MLP, ERK at 1 %, one seed, one epoch. ``standard``: MLPs 40-128-128-10 and
    40-256-256-10 on MNIST-1D, uniform and ERK at 5 % and 2 %, three arms, three seeds, 20 epochs.
    ``full``: the same grid on CIFAR-10 with VGG-16 would need conv repair on a GPU and is not the paper's
    experiment; it keeps the MNIST-1D MLPs with five seeds and Liu et al.'s 160-epoch schedule.""",
    quick=lambda: RepairAblationConfig(hiddens=((32, 32),), rules=("erk",), densities=(0.01,), n_train=500,
                                       seeds=(0,), train=train_preset("quick")),
    standard=lambda: RepairAblationConfig(),
    full=lambda: RepairAblationConfig(seeds=(0, 1, 2, 3, 4),
                                      train=TrainConfig(epochs=160, batch_size=128, lr=0.1, momentum=0.9,
                                                        nesterov=True, weight_decay=5e-4, schedule="step",
                                                        milestones=(0.5, 0.75), gamma=0.1, amp=True)),
)


def isolated_hidden_units(config: RepairAblationConfig, hidden: tuple[int, ...], rule: str, density: float,
                          seed: int) -> dict:
    """Hidden units of the unrepaired mask cut off from the input or from the output (chapter 2, *Isolated units*).

    ``without_input``: fraction of hidden units whose whole fan-in was pruned;
    ``without_output``: fraction none of whose outgoing weights survive.
    """
    net = UnitTrainer(config).meta_model(model=config.model, hidden=hidden)
    masks = list(sample_masks(net, density, rule, seed=seed).values())
    n_hidden = sum(m.shape[0] for m in masks[:-1])
    no_in = sum(int((~m.any(dim=1)).sum()) for m in masks[:-1])
    no_out = sum(int((~m.any(dim=0)).sum()) for m in masks[1:])
    return {"without_input": no_in / n_hidden, "without_output": no_out / n_hidden}


def run(config: RepairAblationConfig, ctx: RunContext) -> dict:
    """Train every unit (resumable) and return per-seed rows, a summary per cell and the repair gains.

    Returns
    -------
    dict
        ``runs``: one row per network (``hidden``, ``rule``, ``density``,
        ``arm`` in :data:`ARMS`, ``seed``, the metrics of :meth:`UnitTrainer.run`,
        and the unrepaired mask's ``isolated`` fractions); ``summary``: mean and
        spread of test accuracy and nonzero count per (hidden, rule, density,
        arm); ``gains``: per (hidden, rule, density), the mean accuracy gain of
        each repair over none, with its standard error.
    """
    trainer = UnitTrainer(config, ctx.device)
    units = [{"hidden": list(h), "rule": r, "density": p, "arm": a, "seed": s}
             for h in config.hiddens for r in config.rules for p in config.densities for a in ARMS
             for s in config.seeds]

    def train(unit: dict) -> dict:
        hidden = tuple(unit["hidden"])
        record = trainer.run(model=config.model, hidden=hidden, density=unit["density"], rule=unit["rule"],
                             seed=unit["seed"], repair=False if unit["arm"] == "none" else unit["arm"])
        record["isolated"] = isolated_hidden_units(config, hidden, unit["rule"], unit["density"], unit["seed"])
        return record

    records = ctx.map(units, train, desc="repair ablation")
    rows = [{**unit, **rec, "hidden": "-".join(map(str, unit["hidden"]))} for unit, rec in zip(units, records)]
    for row in rows:
        row["isolated_in"] = row["isolated"]["without_input"]
    summary = summarize(rows, by=("hidden", "rule", "density", "arm"), metrics=("test_acc", "isolated_in"))
    gains = []
    for h in config.hiddens:
        name = "-".join(map(str, h))
        for r in config.rules:
            for p in config.densities:
                base = find(summary, hidden=name, rule=r, density=p, arm="none")
                entry = {"hidden": name, "rule": r, "density": p, "none": base["test_acc"]["mean"],
                         "isolated_in": base["isolated_in"]["mean"]}
                for mode in REPAIR_MODES:
                    cell = find(summary, hidden=name, rule=r, density=p, arm=mode)
                    diff = difference_stats(cell["test_acc"], base["test_acc"])
                    entry[f"gain_{mode}"] = diff["diff"]
                    entry[f"gain_{mode}_se"] = diff["se"]
                    entry[f"extra_weights_{mode}"] = cell["nonzero"] - base["nonzero"]
                gains.append(entry)
    return {"runs": rows, "summary": summary, "gains": gains}


# ----------------------------------------------------------------------------- reading the result


def mean_gain(result: dict, mode: str) -> dict:
    """Mean, min and max over cells of the accuracy gain of repair ``mode`` over none (chapter 3)."""
    values = [g[f"gain_{mode}"] for g in result["gains"]]
    return {"mean": sum(values) / len(values), "min": min(values), "max": max(values), "cells": len(values)}


# Same training and metrics as chapter 3's other sweeps: the same measured tolerances apply.
# Gains are differences of two means (each within 0.015), the isolated fractions come from the
# masks alone (exact: integer counts of a seeded draw) and nonzero counts are exact integers.
TOLERANCES = {
    **SWEEP_TOLERANCES,
    "gains.#.gain_*": Tolerance(
        abs=0.03, why="a difference of two mean accuracies, each within 0.015 (SWEEP_TOLERANCES)"),
    "gains.#.none": SWEEP_TOLERANCES["gaps.#.dense*"],
}

EXPERIMENT = Experiment(
    name="repair_ablation",
    chapter="3 Training random sparse networks",
    description="accuracy with and without dead-unit repair (swap vs add) at low density",
    presets=presets,
    run=run,
    tolerances=TOLERANCES,
)
