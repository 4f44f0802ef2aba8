"""Does depth close the gap too? Random sparse vs dense networks of growing depth (chapter 3).

Chapter 3 (*Training random sparse networks*), section *Depth*: Liu et al.
report that the gap between a randomly pruned network and its dense version
also shrinks as the network gets deeper (CIFAR ResNets of depth 20 to 110).
This sweep asks the same question at small scale: per depth and seed, the
dense network and one random sparse network per density.

Run it with ``rpbook run depth_sweep --profile standard``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..masks import check_rule
from ..models import CONVNET_DEPTHS, MODEL_NAMES
from ..train import TrainConfig
from ..results import Tolerance
from . import Experiment, RunContext
from .specs import DataSpec, TrainingSpec, profile_presets
from ._sparse_sweep import (UnitTrainer, check_common, check_sparse_densities, difference_stats,
                            find, summarize, train_preset)

FAMILIES: tuple[str, ...] = ("mlp", "convnet", "resnet")


@dataclass(frozen=True)
class DepthSweepConfig(TrainingSpec, DataSpec):
    """Dense and random sparse networks at each depth (chapter 3).

    ``family`` ``mlp``: ``depth`` hidden layers of ``units`` units each.
    ``convnet``: Conv-2/4/6. ``resnet``: the CIFAR ResNet of that depth
    (``resnet20``, ``resnet32``, ``resnet56``). ``width`` multiplies every
    hidden size or channel count.
    """

    family: str = "mlp"
    units: int = 128
    width: float = 1.0
    depths: tuple[int, ...] = (1, 2, 3, 4, 6, 8)
    densities: tuple[float, ...] = (0.1,)
    rule: str = "erk"
    init: str = "unit-scaled"
    train: TrainConfig = field(default_factory=lambda: train_preset("standard"))

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"unknown family {self.family!r}; allowed: {', '.join(FAMILIES)}")
        if isinstance(self.units, bool) or not isinstance(self.units, int) or self.units < 1:
            raise ValueError(f"units must be an integer >= 1, got {self.units!r}")
        if not isinstance(self.depths, tuple) or not self.depths or len(set(self.depths)) != len(self.depths):
            raise ValueError(f"depths must be a non-empty tuple of distinct integers, got {self.depths!r}")
        for d in self.depths:
            architecture(self, d)  # raises ValueError for a depth the family does not have
        check_sparse_densities(self.densities)
        check_rule(self.rule)
        check_common(self)


def architecture(config: DepthSweepConfig, depth: int) -> dict:
    """``build_model`` arguments of the network of ``depth`` in the config's family (chapter 3)."""
    if isinstance(depth, bool) or not isinstance(depth, int):
        raise ValueError(f"depth must be an integer, got {depth!r}")
    if config.family == "mlp":
        if depth < 1:
            raise ValueError(f"mlp depth (hidden layers) must be >= 1, got {depth}")
        return {"model": "mlp", "hidden": (config.units,) * depth, "depth": None, "width": config.width}
    if config.family == "convnet":
        if depth not in CONVNET_DEPTHS:
            raise ValueError(f"convnet depth must be one of {', '.join(map(str, CONVNET_DEPTHS))}, got {depth}")
        return {"model": "convnet", "hidden": None, "depth": depth, "width": config.width}
    name = f"resnet{depth}"
    if name not in MODEL_NAMES:
        allowed = ", ".join(m[len("resnet"):] for m in MODEL_NAMES if m.startswith("resnet"))
        raise ValueError(f"resnet depth must be one of {allowed}, got {depth}")
    return {"model": name, "hidden": None, "depth": None, "width": config.width}


presets = profile_presets(
    """``quick``: 16-unit MLPs of depth 1 and 3, one seed, one epoch. ``standard``: MLPs with 1 … 8
    hidden layers of 128 units on MNIST-1D, density 0.1, three seeds. ``full``: ResNet-20/32/56 on
    CIFAR-10 (Liu et al.).""",
    quick=lambda: DepthSweepConfig(units=16, depths=(1, 3), n_train=500, seeds=(0,), train=train_preset("quick")),
    standard=lambda: DepthSweepConfig(train=train_preset("standard")),
    full=lambda: DepthSweepConfig(family="resnet", dataset="cifar10", depths=(20, 32, 56), densities=(0.1, 0.05),
                                  train=train_preset("full")),
)


def run(config: DepthSweepConfig, ctx: RunContext) -> dict:
    """Train every unit (resumable); return per-seed rows, a summary and the gaps per depth.

    Returns
    -------
    dict
        ``runs``: one row per network (``arm`` ``dense`` or ``sparse``,
        ``depth``, ``density``, ``seed``, metrics); ``summary``: statistics
        over seeds per (arm, depth, density); ``gaps``: dense minus sparse
        test accuracy per depth and density with its standard error.
    """
    trainer = UnitTrainer(config, ctx.device)
    units = [{"arm": "dense", "depth": d, "density": 1.0, "seed": s} for d in config.depths for s in config.seeds]
    units += [{"arm": "sparse", "depth": d, "density": p, "seed": s}
              for d in config.depths for p in config.densities for s in config.seeds]

    def train(unit: dict) -> dict:
        return trainer.run(**architecture(config, unit["depth"]), density=unit["density"], rule=config.rule,
                           seed=unit["seed"])

    records = ctx.map(units, train, desc="depth")
    rows = [{**unit, **rec} for unit, rec in zip(units, records)]
    summary = summarize(rows, by=("arm", "depth", "density"), metrics=("test_acc", "train_acc"))
    gaps = []
    for d in config.depths:
        dense = find(summary, arm="dense", depth=d)
        for p in config.densities:
            sparse = find(summary, arm="sparse", depth=d, density=p)
            g = difference_stats(dense["test_acc"], sparse["test_acc"])
            gaps.append({"depth": d, "density": p, "dense": dense["test_acc"]["mean"],
                         "sparse": sparse["test_acc"]["mean"], "gap": g["diff"], "gap_se": g["se"],
                         "dense_train": dense["train_acc"]["mean"], "sparse_train": sparse["train_acc"]["mean"],
                         "nonzero": sparse["nonzero"], "dense_weights": dense["nonzero"]})
    return {"runs": rows, "summary": summary, "gaps": gaps}


def gap(result: dict, depth: int, density: float) -> dict:
    """The gap entry (dense minus sparse test accuracy) of one depth and density (chapter 3)."""
    return find(result["gaps"], depth=depth, density=density)


# Deeper MLPs amplify last-bit differences far more than chapter 3's two-layer ones. Measured by regenerating
# the stored AVX-512 result with ATEN_CPU_CAPABILITY=default (36 runs, depths 1-8): per-run test accuracy moved by
# up to 0.025, train accuracy 0.020, validation accuracy 0.05 (curves 0.12 in early epochs), losses up to 31 %
# relative (the deepest nets overfit, so their test loss is large and unstable); but the means the chapter reads
# moved by at most 0.0073 and the sparse-dense gaps by 0.009, seed standard deviations by 0.022. The shared
# SWEEP_TOLERANCES (set on two-layer nets) would have failed 94 fields; these keep about 1.5x the measured room.
_DEPTH = "1.5x the change measured with ATEN_CPU_CAPABILITY=default on this experiment"
DEPTH_TOLERANCES = {
    "runs.#.val_acc_curve.#": Tolerance(abs=0.2, why=f"80 of 400 validation examples; 0.12 {_DEPTH}"),
    "runs.#.val_acc": Tolerance(abs=0.08, why=f"32 of 400 validation examples; 0.05 {_DEPTH}"),
    "*loss": Tolerance(rel=0.45, why=f"45 %; 31 % {_DEPTH}"),
    "runs.#.*_acc": Tolerance(abs=0.04, why=f"40 of 1,000 test examples; 0.025 {_DEPTH}"),
    "summary.#.*.min": Tolerance(abs=0.04, why="a single run's accuracy, as runs.#.*_acc"),
    "summary.#.*.max": Tolerance(abs=0.04, why="a single run's accuracy, as runs.#.*_acc"),
    "summary.#.*.std": Tolerance(abs=0.035, why=f"0.022 {_DEPTH}"),
    "summary.#.*.sem": Tolerance(abs=0.02, why=f"0.012 {_DEPTH}"),
    "summary.#.*.mean": Tolerance(abs=0.015, why=f"15 of 1,000 test examples; 0.0073 {_DEPTH}"),
    "gaps.#.gap*": Tolerance(abs=0.03, why=f"a difference of two means; 0.014 {_DEPTH}"),
    "gaps.#.*": Tolerance(abs=0.015, why=f"a mean accuracy; 0.0073 {_DEPTH}"),
}

EXPERIMENT = Experiment(
    name="depth_sweep",
    chapter="3 Training random sparse networks",
    description="dense vs random sparse networks as the depth grows",
    presets=presets,
    run=run,
    tolerances=DEPTH_TOLERANCES,
)
