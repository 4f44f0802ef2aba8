"""Pruning at initialization (SNIP, GraSP, SynFlow) from the dense network and from ER sources (chapter 7).

Chapter 7 (*Sparse-to-sparse*), section *Pruning at initialization*:
Gadhikar et al. (2023) run SNIP and SynFlow inside a random ER source mask
instead of the dense network (appendix *Formulas and notation*, pruning scores). This experiment prunes every
source with every method to every target density at initialization, then
trains the pruned network once, against a random per-layer baseline.

Run it with ``rpbook run s2s_pruning_at_init --profile standard``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..data import load_dataset
from ..init import initialize_
from ..pruning import layer_collapse, prune_at_init
from ..train import TrainConfig, fit
from ..results import Tolerance
from . import Experiment, RunContext
from .specs import DataSpec, NetworkSpec, TrainingSpec, profile_presets
from ._sparse_sweep import seed_stats, train_preset
from .s2s_imp import build_source, check_s2s_config, imp_train_preset, source_label

# The method names the chapter uses, as (score, scope) for prune_at_init.
METHODS: dict[str, tuple[str, str]] = {
    "magnitude": ("magnitude", "global"),
    "magnitude-layer": ("magnitude", "layer"),
    "snip": ("snip", "global"),
    "grasp": ("grasp", "global"),
    "synflow": ("synflow", "global"),
    "synflow-oneshot": ("synflow-oneshot", "global"),
    "random-layer": ("random", "layer"),
    "random-global": ("random", "global"),
}


def check_methods(methods: object) -> tuple[str, ...]:
    """A non-empty tuple of names from :data:`METHODS`; ``ValueError`` names a bad one (chapter 7)."""
    if not isinstance(methods, tuple) or not methods:
        raise ValueError(f"methods must be a non-empty tuple, got {methods!r}")
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"unknown method {m!r}; allowed: {', '.join(METHODS)}")
    return methods


@dataclass(frozen=True)
class PaIConfig(TrainingSpec, DataSpec, NetworkSpec):
    """Every source × method × target × seed: prune at init, then train once (chapter 7).

    ``score_batch`` training examples feed SNIP and GraSP (SynFlow and random
    need no data). ``reinit`` re-draws the initialization on the pruned mask
    (``None`` keeps the values the scores saw).
    """

    include_dense: bool = True
    source_rules: tuple[str, ...] = ("balanced",)
    source_densities: tuple[float, ...] = (0.5, 0.2)
    methods: tuple[str, ...] = ("snip", "grasp", "synflow", "random-layer")
    targets: tuple[float, ...] = (0.1, 0.03, 0.01)
    synflow_iterations: int = 100
    score_batch: int = 256
    reinit: str | None = "unit-scaled"
    train: TrainConfig = field(default_factory=lambda: imp_train_preset("standard"))

    def __post_init__(self) -> None:
        check_s2s_config(self, self.targets, strict=False)
        check_methods(self.methods)

presets = profile_presets(
    """``quick``: a 32-unit MLP, one source, two methods, one target, one seed, one epoch.
    ``standard``: MLP 40-256-256-10 on MNIST-1D; dense and balanced 0.5 / 0.2 sources; SNIP, GraSP,
    iterative SynFlow and random per-layer; targets 0.1, 0.03, 0.01; 10 epochs; three seeds.
    ``full``: VGG-16 on CIFAR-10.""",
    quick=lambda: PaIConfig(hidden=(32, 32), source_densities=(0.3,), methods=("snip", "synflow"), targets=(0.05,),
                            synflow_iterations=10, score_batch=64, n_train=500, seeds=(0,), train=train_preset("quick")),
    standard=lambda: PaIConfig(),
    full=lambda: PaIConfig(model="vgg16", dataset="cifar10", hidden=None, train=train_preset("full")),
)


def prune_and_train(config: Any, data: Any, *, rule: str, source_density: float, method: str, target: float,
                    seed: int, train: bool = True, device: Any = None) -> dict:
    """One unit: draw the source, prune it at init with ``method`` to ``target``, optionally train (chapter 7).

    Returns the realized density, per-layer densities, the collapse report
    and, when trained, the test accuracy.
    """
    score, scope = METHODS[method]
    model, masking = build_source(config, data, rule, source_density, seed)
    if device is not None:
        model.to(device)  # score on the training device (SNIP/GraSP/SynFlow of a VGG-16 are slow on a CPU)
    batch = (data.x_train[:config.score_batch], data.y_train[:config.score_batch])
    masks = prune_at_init(model, score, target, batch=batch, scope=scope, iterations=config.synflow_iterations,
                          task=getattr(data, "task", "classification"),
                          seed=seed, warn=False)
    for name, mask in masks.items():
        masking.set_mask(name, mask)
    collapse = layer_collapse(masks)
    out = {"realized_density": masking.global_density(),
           "layer_densities": [float(m.float().mean()) for m in masks.values()],
           "layer_kept": [int(m.sum()) for m in masks.values()],
           "collapsed": collapse["collapsed"], "paths": collapse["paths"], "cut_layer": collapse["cut_layer"]}
    if train:
        if config.reinit is not None:
            initialize_(model, config.reinit, seed=seed + 10_000)
        hist = fit(model, data, dataclasses.replace(config.train, seed=seed), masking=masking, device=device,
                   progress=False)
        out["test_acc"] = hist.test.get("accuracy")
        out["train_acc"] = hist.epochs[-1].get("train_acc")
    return out


def run(config: PaIConfig, ctx: RunContext) -> dict:
    """Prune and train every unit (resumable); summarize accuracy over seeds per (source, method, target).

    Returns
    -------
    dict
        ``runs``: one row per unit; ``summary``: ``test_acc`` seed statistics
        and the number of collapsed seeds per (source, method, target).
    """
    data = load_dataset(config.dataset, seed=config.split_seed, n_train=config.n_train)
    sources = ([("dense", 1.0)] if config.include_dense else []) + [
        (r, p) for r in config.source_rules for p in config.source_densities]
    units = [{"rule": r, "source_density": p, "method": m, "target": t, "seed": s}
             for r, p in sources for m in config.methods for t in config.targets for s in config.seeds]

    def one(unit: dict) -> dict:
        return prune_and_train(config, data, rule=unit["rule"], source_density=unit["source_density"],
                               method=unit["method"], target=unit["target"], seed=unit["seed"], device=ctx.device)

    records = ctx.map(units, one, desc="prune at init")
    rows = [{"source": source_label(u["rule"], u["source_density"]), **u, **rec} for u, rec in zip(units, records)]
    summary = []
    for r, p in sources:
        for m in config.methods:
            for t in config.targets:
                group = [x for x in rows if x["rule"] == r and x["source_density"] == p and x["method"] == m
                         and x["target"] == t]
                summary.append({"source": source_label(r, p), "rule": r, "source_density": p, "method": m,
                                "target": t, "test_acc": seed_stats([x["test_acc"] for x in group]),
                                "collapsed": sum(bool(x["collapsed"]) for x in group), "n": len(group)})
    return {"runs": rows, "summary": summary}


def pai_curve(result: dict, source: str, method: str) -> dict:
    """Mean and std test accuracy against target density for one source and method, densest first (chapter 7)."""
    rows = sorted((s for s in result["summary"] if s["source"] == source and s["method"] == method),
                  key=lambda s: -s["target"])
    if not rows:
        raise ValueError(f"no rows for source {source!r} and method {method!r}")
    return {"density": [s["target"] for s in rows], "mean": [s["test_acc"]["mean"] for s in rows],
            "std": [s["test_acc"]["std"] for s in rows], "collapsed": [s["collapsed"] for s in rows]}


# Scores computed from gradients (SNIP, GraSP, SynFlow) or trained weights (magnitude) differ in the
# last bits on another numeric environment, so a top-k can keep a few other weights. Measured on
# layer_collapse with ATEN_CPU_CAPABILITY=default against the AVX-512 original: 11 of 630 layer masks
# kept other weights (at most 9 weights, 2.9 % of a layer's count, density 0.0016), path counts moved
# by up to 4 %, no collapse verdict and no accuracy changed. Accuracies get chapter 3's measured room.
_MEASURED = "about 3x the change measured on layer_collapse with ATEN_CPU_CAPABILITY=default"
TOLERANCES = {
    "runs.#.layer_kept.#": Tolerance(abs=30, why=f"measured at most 9 weights; {_MEASURED}"),
    "runs.#.layer_densities.#": Tolerance(abs=0.005, why=f"measured 0.0016; {_MEASURED}"),
    "*paths": Tolerance(rel=0.12, why=f"measured 4 %; {_MEASURED}"),
    "*_acc*": Tolerance(abs=0.03, why="30 of 1,000 test examples; measured at most 16 here with ATEN_CPU_CAPABILITY=default, x2"),
}

EXPERIMENT = Experiment(
    name="s2s_pruning_at_init",
    chapter="7 Sparse-to-sparse",
    description="SNIP, GraSP, SynFlow and random pruning at init from the dense network and from ER sources",
    presets=presets,
    run=run,
    tolerances=TOLERANCES,
)
