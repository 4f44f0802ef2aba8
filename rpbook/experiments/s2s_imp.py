"""IMP from the dense network against IMP from random ER source networks (chapter 7).

Chapter 7 (*Sparse-to-sparse*), sections *IMP from a random source* and *What
is saved*: Gadhikar et al. (2023) run iterative magnitude pruning inside a
random Erdős–Rényi source mask (balanced, ERK or pyramidal layer-wise ratios,
density 0.5, 0.3 or 0.2) instead of the dense network, and find the same
accuracy at the target density for far less training compute (Gadhikar et al. 2023).
This experiment runs IMP once per source × seed through every target density
and records, per level, the test accuracy, the mask's layer densities, whether
it collapsed, and the training FLOPs spent so far.

Run it with ``rpbook run s2s_imp --profile standard``.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from typing import Any

import torch

from ..config import seed_everything
from ..data import load_dataset
from ..init import check_init, initialize_
from ..masks import check_density, check_rule, mask_model, maskable_layers, sparsity_report
from ..models import build_model
from ..pruning import check_scope, dense_masking, imp_densities, iterative_magnitude_pruning, layer_collapse
from ..train import TrainConfig
from ..results import Tolerance
from . import Experiment, RunContext
from .specs import DataSpec, NetworkSpec, TrainingSpec, profile_presets
from ._sparse_sweep import seed_stats, train_preset

TARGETS: tuple[float, ...] = (0.1, 0.05, 0.02, 0.01)
SOURCE_RULES: tuple[str, ...] = ("balanced", "erk", "pyramidal")
SOURCE_DENSITIES: tuple[float, ...] = (0.5, 0.3, 0.2)
# FLOPs of one training step per example: forward + backward (input and weight gradients) ≈ 3 × forward.
TRAINING_FLOPS_FACTOR = 3


def imp_train_preset(profile: str) -> TrainConfig:
    """Training of one IMP level: chapter 3's optimiser with fewer epochs at ``standard`` (chapter 7).

    IMP trains the network once per level, so ``standard`` trains 10 epochs
    per level (chapter 3 trains 20) to keep the whole chapter within its
    CPU budget; ``full`` is the S2S CIFAR setting's optimiser (Gadhikar et al. 2023)
    with Liu et al.'s 160-epoch step schedule.
    """
    if profile == "standard":
        return dataclasses.replace(train_preset("standard"), epochs=10)
    return train_preset(profile)


def check_sources(rules: object, densities: object) -> None:
    """Validate source rules and densities; ``ValueError`` names the bad value (chapter 7)."""
    if not isinstance(rules, tuple) or not isinstance(densities, tuple):
        raise ValueError(f"source_rules and source_densities must be tuples, got {rules!r} and {densities!r}")
    for r in rules:
        check_rule(r)
    for p in densities:
        if check_density(p, "source density") >= 1.0:
            raise ValueError(f"a source density must be below 1 (the dense source is include_dense), got {p!r}")


def check_targets(targets: object) -> tuple[float, ...]:
    """Strictly decreasing target densities in (0, 1) (chapter 7)."""
    if not isinstance(targets, tuple) or not targets:
        raise ValueError(f"targets must be a non-empty tuple of densities, got {targets!r}")
    for p in targets:
        if check_density(p, "target density") >= 1.0:
            raise ValueError(f"a target density must be below 1, got {p!r}")
    if any(b >= a for a, b in zip(targets, targets[1:])):
        raise ValueError(f"targets must be strictly decreasing, got {targets!r}")
    return targets


def check_s2s_config(config: Any, targets: tuple[float, ...], *, strict: bool) -> None:
    """Validate the fields every chapter-7 config shares; ``ValueError`` names the first bad one.

    ``targets`` must lie below every source density (``strict``: IMP prunes at
    least once) or at most at it (pruning at init may keep the whole source).
    """
    config.check_network()
    config.check_data()
    check_sources(config.source_rules, config.source_densities)
    check_targets(targets)
    if any(targets[0] >= p if strict else targets[0] > p for p in config.source_densities):
        relation = "be below every" if strict else "not exceed any"
        raise ValueError(f"the densest target {targets[0]} must {relation} source density "
                         f"{config.source_densities}")
    for name in ("synflow_iterations", "score_batch"):
        v = getattr(config, name, 1)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if getattr(config, "reinit", None) is not None:
        check_init(config.reinit)
    config.check_training()


@dataclass(frozen=True)
class S2SIMPConfig(TrainingSpec, DataSpec, NetworkSpec):
    """IMP from the dense network and from every ``source_rules`` × ``source_densities`` ER source (chapter 7).

    Each IMP run removes ``rate`` of the remaining weights per level until the
    first target, then steps through the remaining ``targets``; every level
    trains with ``train`` from the reset initialization (Frankle & Carbin).
    ``split_seed`` fixes the data split; each seed draws its source mask,
    initial weights and batch order.
    """

    include_dense: bool = True
    source_rules: tuple[str, ...] = SOURCE_RULES
    source_densities: tuple[float, ...] = SOURCE_DENSITIES
    targets: tuple[float, ...] = TARGETS
    rate: float = 0.5
    scope: str = "global"
    train: TrainConfig = field(default_factory=lambda: imp_train_preset("standard"))

    def __post_init__(self) -> None:
        check_s2s_config(self, self.targets, strict=True)
        if isinstance(self.rate, bool) or not isinstance(self.rate, numbers.Real) or not 0 < self.rate < 1:
            raise ValueError(f"rate must be in (0, 1), got {self.rate!r}")
        check_scope(self.scope)

presets = profile_presets(
    """``quick``: a 32-unit MLP, one ER source, two targets, one seed, one epoch per level.
    ``standard``: MLP 40-256-256-10 on MNIST-1D, the dense source and 3 rules × 3 source densities,
    targets 0.1 … 0.01, half the weights pruned per level, 10 epochs per level, three seeds.
    ``full``: VGG-16 on CIFAR-10 with 20 % per level (the S2S schedule).""",
    quick=lambda: S2SIMPConfig(hidden=(32, 32), source_rules=("balanced",), source_densities=(0.3,),
                               targets=(0.1, 0.05), n_train=500, seeds=(0,), train=train_preset("quick")),
    standard=lambda: S2SIMPConfig(),
    full=lambda: S2SIMPConfig(model="vgg16", dataset="cifar10", hidden=None, rate=0.2, train=train_preset("full")),
)


def imp_schedule(source_density: float, targets: tuple[float, ...], rate: float) -> list[float]:
    """IMP levels from a source: ``rate`` of the remaining weights per level to the first target, then the targets.

    Chapter 7. ``imp_schedule(1.0, (0.1, 0.05), 0.5)`` is ``[0.5, 0.25, 0.125, 0.1, 0.05]``.
    """
    check_targets(targets)
    return imp_densities(targets[0], rate=rate, start_density=source_density) + list(targets[1:])


def source_label(rule: str, density: float) -> str:
    """``"dense"`` or e.g. ``"balanced 0.3"``: how the chapter names a source (chapter 7)."""
    return "dense" if rule == "dense" else f"{rule} {density:g}"


def build_source(config: Any, data: Any, rule: str, density: float, seed: int):
    """The initialized model and its source :class:`~rpbook.masks.Masking` for one unit (chapter 7).

    ``rule="dense"`` gives all-ones masks. The mask is drawn before the
    initialization so that ``unit-scaled`` sees each unit's real fan-in.
    """
    seed_everything(seed)
    model = build_model(config.model, in_shape=tuple(data.in_shape), num_classes=data.num_classes,
                        hidden=config.hidden)
    masking = dense_masking(model) if rule == "dense" else mask_model(model, density, rule, seed=seed)
    initialize_(model, config.init, seed=seed)
    return model, masking


def level_flops(flops_dense: dict[str, int], masks: dict[str, torch.Tensor]) -> int:
    """Forward FLOPs per example of a masked network: each layer's dense FLOPs × its density (chapter 7)."""
    return int(sum(flops_dense[n] * float(m.float().mean()) for n, m in masks.items()))


def run(config: S2SIMPConfig, ctx: RunContext) -> dict:
    """Run IMP once per source × seed (resumable) and summarize per source and density.

    Returns
    -------
    dict
        ``runs``: one row per (source, seed, IMP level) with ``source``,
        ``rule``, ``source_density``, ``seed``, ``level``, ``density``
        (target), ``realized_density``, ``test_acc``, ``layer_densities``,
        ``collapsed``, ``flops_per_example`` (forward), ``train_flops``
        (this level) and ``cumulative_flops`` (all levels so far, the
        source's own training included); ``summary``: seed statistics of
        ``test_acc`` and ``cumulative_flops`` per (source, density);
        ``layers``: masked layer names; ``flops_convention``.
    """
    data = load_dataset(config.dataset, seed=config.split_seed, n_train=config.n_train)
    n_examples = len(data.x_train)
    sources = ([("dense", 1.0)] if config.include_dense else []) + [
        (r, p) for r in config.source_rules for p in config.source_densities]
    units = [{"rule": r, "source_density": p, "seed": s} for r, p in sources for s in config.seeds]

    def one(unit: dict) -> list[dict]:
        rule, p0, seed = unit["rule"], unit["source_density"], unit["seed"]
        model, masking = build_source(config, data, rule, p0, seed)
        flops_dense = {r.name: r.flops_dense for r in sparsity_report(model, tuple(data.in_shape)).layers}
        schedule = imp_schedule(p0, config.targets, config.rate)
        train = dataclasses.replace(config.train, seed=seed)
        levels = iterative_magnitude_pruning(model, data, train, schedule, masking=masking, scope=config.scope,
                                             device=ctx.device)
        rows, spent = [], 0
        for lv in levels:
            fwd = level_flops(flops_dense, lv.masks)
            cost = TRAINING_FLOPS_FACTOR * fwd * n_examples * train.epochs
            spent += cost
            rows.append({
                "level": lv.level, "density": p0 if lv.level == 0 else lv.density, "realized_density": lv.realized_density,
                "test_acc": lv.test_accuracy, "layer_densities": [float(m.float().mean()) for m in lv.masks.values()],
                "collapsed": layer_collapse(lv.masks)["collapsed"], "flops_per_example": fwd,
                "train_flops": cost, "cumulative_flops": spent,
            })
        return rows

    records = ctx.map(units, one, desc="IMP per source")
    rows = [{"source": source_label(u["rule"], u["source_density"]), **u, **row}
            for u, rec in zip(units, records) for row in rec]
    summary = []
    for rule, p0 in sources:
        label = source_label(rule, p0)
        for d in sorted({r["density"] for r in rows if r["source"] == label}, reverse=True):
            group = [r for r in rows if r["source"] == label and r["density"] == d]
            summary.append({"source": label, "rule": rule, "source_density": p0, "density": d,
                            "is_target": any(math.isclose(d, t) for t in config.targets),
                            "test_acc": seed_stats([r["test_acc"] for r in group]),
                            "cumulative_flops": seed_stats([r["cumulative_flops"] for r in group]),
                            "collapsed": sum(bool(r["collapsed"]) for r in group), "n": len(group)})
    with torch.device("meta"):
        meta = build_model(config.model, in_shape=tuple(data.in_shape), num_classes=data.num_classes,
                           hidden=config.hidden)
    return {
        "runs": rows, "summary": summary, "layers": [n for n, _ in maskable_layers(meta)],
        "n_train_examples": n_examples,
        "flops_convention": (f"training FLOPs = {TRAINING_FLOPS_FACTOR} × forward FLOPs per example of the masked "
                             f"network (multiply-add = 2, conv/linear weights only, as if sparse kernels skipped "
                             f"zeros) × training examples × epochs, summed over IMP levels"),
    }


# ----------------------------------------------------------------------------- reading the result


def sources_of(result: dict) -> list[str]:
    """Source labels in run order (``"dense"`` first when present)."""
    return list(dict.fromkeys(s["source"] for s in result["summary"]))


def imp_curve(result: dict, source: str, *, targets_only: bool = False) -> dict:
    """Mean, std and all per-seed test accuracies against density for one source, densest first (chapter 7)."""
    rows = [s for s in result["summary"] if s["source"] == source and (s["is_target"] or not targets_only)]
    if not rows:
        raise ValueError(f"source {source!r} is not in this result; it has {', '.join(sources_of(result))}")
    rows.sort(key=lambda s: -s["density"])
    return {"density": [s["density"] for s in rows], "mean": [s["test_acc"]["mean"] for s in rows],
            "std": [s["test_acc"]["std"] for s in rows], "min": [s["test_acc"]["min"] for s in rows],
            "max": [s["test_acc"]["max"] for s in rows],
            "flops": [s["cumulative_flops"]["mean"] for s in rows], "collapsed": [s["collapsed"] for s in rows]}


def accuracy_table(result: dict, targets: Any = None) -> list[dict]:
    """One row per source: mean ± std test accuracy at each target density (chapter 7's table)."""
    targets = targets or sorted({s["density"] for s in result["summary"] if s["is_target"]}, reverse=True)
    out = []
    for source in sources_of(result):
        row: dict[str, Any] = {"source": source}
        for t in targets:
            hit = [s for s in result["summary"] if s["source"] == source and math.isclose(s["density"], t)]
            row[t] = hit[0]["test_acc"] if hit else None
        out.append(row)
    return out


def flops_table(result: dict, targets: Any = None) -> list[dict]:
    """Training FLOPs to reach each target density, per source, and the ratio to the dense source (chapter 7)."""
    targets = targets or sorted({s["density"] for s in result["summary"] if s["is_target"]}, reverse=True)
    dense = {s["density"]: s["cumulative_flops"]["mean"] for s in result["summary"] if s["source"] == "dense"}
    out = []
    for source in sources_of(result):
        for t in targets:
            hit = [s for s in result["summary"] if s["source"] == source and math.isclose(s["density"], t)]
            if not hit:
                continue
            flops = hit[0]["cumulative_flops"]["mean"]
            ref = next((v for d, v in dense.items() if math.isclose(d, t)), None)
            out.append({"source": source, "target": t, "train_flops": flops,
                        "fraction_of_dense": flops / ref if ref else None})
    return out


# IMP trains, prunes by magnitude and retrains for ten levels: on another numeric environment the
# weights differ in the last bits, a few other weights fall below a threshold, and the next levels
# amplify that. Measured with ATEN_CPU_CAPABILITY=default against the AVX-512 original: per-run test
# accuracy moved by up to 0.057 (57 of 1,000 examples), seed means by up to 0.034, per-layer densities
# by up to 0.008, FLOP counts by 0.06 % (their seed spread, 0 in the original, becomes about 2e5 FLOPs).
# The tolerances give about 1.5x that. Chapter 7 says its IMP differences are within this noise.
_MEASURED = "about 1.5x the change measured with ATEN_CPU_CAPABILITY=default"
TOLERANCES = {
    "runs.#.layer_densities.#": Tolerance(abs=0.015, why=f"measured 0.008; {_MEASURED}"),
    "*flops*": Tolerance(abs=5e5, rel=1e-3, why=f"measured 0.06 % and a spread of 2e5 FLOPs; {_MEASURED}"),
    "*test_acc.std": Tolerance(abs=0.035, why=f"measured 0.023; {_MEASURED}"),
    "*test_acc.sem": Tolerance(abs=0.02, why=f"measured 0.013; {_MEASURED}"),
    "summary.*": Tolerance(abs=0.05, why=f"seed means measured within 0.034; {_MEASURED}"),
    "*_acc*": Tolerance(abs=0.085, why=f"85 of 1,000 test examples; measured 57; {_MEASURED}"),
}

EXPERIMENT = Experiment(
    name="s2s_imp",
    chapter="7 Sparse-to-sparse",
    description="IMP from the dense network vs IMP inside ER sources (balanced/ERK/pyramidal, 0.5/0.3/0.2) "
                "down to densities 0.1 … 0.01, with training FLOPs",
    presets=presets,
    run=run,
    tolerances=TOLERANCES,
)
