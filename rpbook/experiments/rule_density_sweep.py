"""Accuracy against density for each layer-wise rule, against the dense baseline (chapter 3).

Chapter 3 (*Training random sparse networks*), section *Accuracy against
density*: Liu et al. (2022) train randomly pruned networks from scratch and
find that they hold the dense accuracy down to moderate densities, and that
the layer-wise rule (ERK in particular) decides how far down. This sweep
trains one network per rule × density × seed, plus the dense network per seed.

Run it with ``rpbook run rule_density_sweep --profile standard``.
"""
from __future__ import annotations

import math

from dataclasses import dataclass, field

from ..masks import ALL_RULES, sample_masks
from ..train import TrainConfig
from . import Experiment, RunContext
from .specs import DataSpec, NetworkSpec, TrainingSpec, profile_presets
from ._sparse_sweep import (SWEEP_TOLERANCES, UnitTrainer, check_common, check_rules, check_sparse_densities,
                            difference_stats, find, summarize, train_preset, welch_cutoff)

DENSITIES: tuple[float, ...] = (0.5, 0.2, 0.1, 0.05, 0.02, 0.01)
# ER and ERK differ only in the kernel terms, so for an MLP (no kernels) they give the same masks:
# MLP sweeps train ERK only and conv sweeps (the full profile) train both.
MLP_RULES: tuple[str, ...] = ("uniform", "erk", "balanced", "pyramidal")


@dataclass(frozen=True)
class RuleDensityConfig(TrainingSpec, DataSpec, NetworkSpec):
    """One network per ``rules`` × ``densities`` × ``seeds``, and the dense one per seed (chapter 3).

    ``hidden`` sets the MLP's layers (``None`` for the other models); the
    data split is fixed by ``split_seed``, each seed draws its own mask,
    initial weights and batch order.
    """

    rules: tuple[str, ...] = MLP_RULES
    densities: tuple[float, ...] = DENSITIES
    train: TrainConfig = field(default_factory=lambda: train_preset("standard"))

    def __post_init__(self) -> None:
        self.check_network()
        check_rules(self.rules)
        check_sparse_densities(self.densities)
        check_common(self)


presets = profile_presets(
    """``quick``: a 32-unit MLP, two densities, one seed, one epoch. ``standard``: MLP 40-256-256-10 on
    MNIST-1D, four rules × six densities × three seeds. ``full``: VGG-16 on CIFAR-10 (Liu et al.).""",
    quick=lambda: RuleDensityConfig(hidden=(32, 32), densities=(0.1, 0.01), n_train=500, seeds=(0,),
                                    train=train_preset("quick")),
    standard=lambda: RuleDensityConfig(train=train_preset("standard")),
    full=lambda: RuleDensityConfig(model="vgg16", dataset="cifar10", hidden=None, rules=tuple(ALL_RULES), train=train_preset("full")),
)


def run(config: RuleDensityConfig, ctx: RunContext) -> dict:
    """Train every unit (resumable) and return per-seed rows plus a summary per (arm, rule, density).

    Returns
    -------
    dict
        ``runs``: one row per trained network (``arm`` is ``"dense"`` or
        ``"sparse"``, its ``rule``, ``density``, ``seed`` and the metrics of
        :meth:`UnitTrainer.run`); ``summary``: mean and spread of the test
        accuracy over seeds per (arm, rule, density); ``layers``: the names of
        the masked layers, in forward order.
    """
    trainer = UnitTrainer(config, ctx.device)
    units = [{"arm": "dense", "rule": None, "density": 1.0, "seed": s} for s in config.seeds]
    units += [{"arm": "sparse", "rule": r, "density": p, "seed": s}
              for r in config.rules for p in config.densities for s in config.seeds]

    def train(unit: dict) -> dict:
        return trainer.run(model=config.model, hidden=config.hidden, density=unit["density"],
                           rule=unit["rule"] or "uniform", seed=unit["seed"])

    records = ctx.map(units, train, desc="rule × density")
    rows = [{**unit, **rec} for unit, rec in zip(units, records)]
    return {
        "runs": rows,
        "summary": summarize(rows, by=("arm", "rule", "density"), metrics=("test_acc", "train_acc")),
        "layers": trainer.layer_names(model=config.model, hidden=config.hidden),
    }


# ----------------------------------------------------------------------------- reading the result


def dense_stats(result: dict) -> dict:
    """Test-accuracy statistics of the dense network over seeds (chapter 3)."""
    return find(result["summary"], arm="dense")["test_acc"]


def rule_curve(result: dict, rule: str) -> dict:
    """One rule's mean and standard deviation of test accuracy at each density, densest first (chapter 3)."""
    rows = sorted((s for s in result["summary"] if s["arm"] == "sparse" and s["rule"] == rule),
                  key=lambda s: -s["density"])
    if not rows:
        raise ValueError(f"rule {rule!r} is not in this result; it has {', '.join(rules_of(result))}")
    return {"density": [s["density"] for s in rows], "mean": [s["test_acc"]["mean"] for s in rows],
            "std": [s["test_acc"]["std"] for s in rows], "n": [s["test_acc"]["n"] for s in rows]}


def rules_of(result: dict) -> list[str]:
    """The rules a result covers, in the order they were run."""
    return list(dict.fromkeys(s["rule"] for s in result["summary"] if s["arm"] == "sparse"))


def densities_of(result: dict) -> list[float]:
    """The sparse densities a result covers, densest first."""
    return sorted({s["density"] for s in result["summary"] if s["arm"] == "sparse"}, reverse=True)


def ranking(result: dict) -> list[dict]:
    """At each density, the rules from best to worst mean test accuracy, with the lead over the runner-up.

    Rules whose per-seed accuracies are identical (on an MLP, balanced and ERK
    draw the very same masks wherever both clip the small layers to density 1)
    form one tied group, shown as ``"erk = balanced"`` in ``order_text``; the
    lead is measured against the next *different* rule. ``separated`` says
    whether that lead is significant in a two-sided Welch t test at the 95 %
    level (``cutoff``: the t quantile the lead must exceed in standard errors).
    """
    out = []
    for p in densities_of(result):
        entries = sorted((s for s in result["summary"] if s["arm"] == "sparse" and s["density"] == p),
                         key=lambda s: -s["test_acc"]["mean"])
        per_seed = {s["rule"]: [r["test_acc"] for r in unit_rows(result, rule=s["rule"], density=p)] for s in entries}
        groups: list[list[dict]] = []
        for s in entries:
            if groups and per_seed[s["rule"]] == per_seed[groups[-1][0]["rule"]]:
                groups[-1].append(s)
            else:
                groups.append([s])
        lead = difference_stats(groups[0][0]["test_acc"], groups[1][0]["test_acc"]) if len(groups) > 1 else None
        cutoff = welch_cutoff(groups[0][0]["test_acc"], groups[1][0]["test_acc"]) if len(groups) > 1 else math.inf
        out.append({
            "density": p,
            "order": [s["rule"] for s in entries],
            "order_text": " > ".join(" = ".join(s["rule"] for s in g) for g in groups),
            "tied": [[s["rule"] for s in g] for g in groups if len(g) > 1],
            "means": [s["test_acc"]["mean"] for s in entries],
            "lead": lead["diff"] if lead else None,
            "lead_se": lead["se"] if lead else None,
            "cutoff": cutoff,
            "separated": bool(lead and lead["se"] is not None and lead["diff"] > cutoff * lead["se"]),
        })
    return out


def unit_rows(result: dict, *, rule: str | None = None, density: float | None = None) -> list[dict]:
    """The per-seed rows of one rule (or ``None`` for dense) and density (chapter 3 explorer)."""
    return [r for r in result["runs"]
            if (rule is None or r["rule"] == rule) and (density is None or abs(r["density"] - density) < 1e-12)]


def connectivity(config: RuleDensityConfig, rule: str, density: float, seed: int) -> dict:
    """How well connected is the mask one unit of this sweep trained with? (chapter 3, back to chapter 2)

    Resamples exactly the masks :func:`~rpbook.experiments.sparse_run.train_sparse`
    drew for this rule, density and seed (same shapes, same seed, same
    sampler) and measures them with :func:`rpbook.graphs.network_topology`.

    Returns
    -------
    dict
        ``hidden_without_input``: fraction of hidden units none of whose
        incoming weights survive; ``effective_density``: fraction of all
        weights that are kept *and* lie on an input-output path;
        ``inputs_reaching_output`` and ``outputs_reached``: fractions of
        input and output units with a path to the other side.
    """
    from ..graphs import network_topology  # networkx is only needed here

    net = UnitTrainer(config).meta_model(model=config.model, hidden=config.hidden)
    masks = sample_masks(net, density, rule, seed=seed)
    topo = network_topology(masks, chain=not config.model.startswith("resnet"))
    hidden = topo.layers[:-1]
    return {
        "hidden_without_input": sum(t.outputs_without_inputs for t in hidden) / max(1, sum(t.n_out for t in hidden)),
        "effective_density": topo.effective_density,
        "inputs_reaching_output": topo.inputs_reaching_output,
        "outputs_reached": topo.outputs_reached,
    }


EXPERIMENT = Experiment(
    name="rule_density_sweep",
    chapter="3 Training random sparse networks",
    description="test accuracy against density for each layer-wise rule, against the dense network",
    presets=presets,
    run=run,
    tolerances=SWEEP_TOLERANCES,
)
