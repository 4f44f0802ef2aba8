"""How many seeds does it take to tell two layer-wise rules apart? (chapter 3, exercise)

Chapter 3 (*Training random sparse networks*), section *Which rule wins*:
two rules whose mean accuracies differ by less than the spread over random
masks need many seeds before the difference is more than noise. This
experiment trains two rules at one density for many seeds, so the chapter
can ask readers to predict the number of seeds and then check it.

Run it with ``rpbook run rule_seed_spread --profile standard``. Its
``standard`` result is also what ``tests/test_stored_results.py``
regenerates from scratch (it takes well under a minute).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..masks import check_density
from ..train import TrainConfig
from . import Experiment, RunContext
from .specs import DataSpec, NetworkSpec, TrainingSpec, profile_presets
from ._sparse_sweep import (SWEEP_TOLERANCES, UnitTrainer, check_common, check_rules, seed_stats, train_preset,
                            welch_cutoff)


@dataclass(frozen=True)
class SeedSpreadConfig(TrainingSpec, DataSpec, NetworkSpec):
    """Two (or more) rules at one density, each trained with every seed (chapter 3)."""

    rules: tuple[str, ...] = ("erk", "balanced")
    density: float = 0.1
    seeds: tuple[int, ...] = tuple(range(10))
    train: TrainConfig = field(default_factory=lambda: train_preset("standard"))

    def __post_init__(self) -> None:
        self.check_network()
        if len(check_rules(self.rules)) < 2:
            raise ValueError(f"rules must name at least two rules to compare, got {self.rules!r}")
        check_density(self.density)
        check_common(self)


presets = profile_presets(
    """``quick``: a 16-unit MLP, three seeds, one epoch. ``standard``: MLP 40-256-256-10 on MNIST-1D, ERK
    against balanced at density 0.1, ten seeds; its seeds 0-2 are exactly the runs of the
    ``rule_density_sweep`` standard preset at that density. ``full``: ResNet-20 on CIFAR-10, five seeds.""",
    quick=lambda: SeedSpreadConfig(hidden=(16, 16), n_train=500, seeds=(0, 1, 2), train=train_preset("quick")),
    standard=lambda: SeedSpreadConfig(train=train_preset("standard")),
    full=lambda: SeedSpreadConfig(model="resnet20", dataset="cifar10", hidden=None, seeds=tuple(range(5)),
                                  train=train_preset("full")),
)


def run(config: SeedSpreadConfig, ctx: RunContext) -> dict:
    """Train every rule with every seed (resumable); return the rows and the statistics per rule.

    Returns
    -------
    dict
        ``runs``: one row per network (``rule``, ``seed`` and the metrics of
        :meth:`UnitTrainer.run`); ``stats``: :func:`seed_stats` of the test
        accuracy per rule.
    """
    trainer = UnitTrainer(config, ctx.device)
    units = [{"rule": r, "seed": s} for r in config.rules for s in config.seeds]

    def train(unit: dict) -> dict:
        return trainer.run(model=config.model, hidden=config.hidden, density=config.density, rule=unit["rule"],
                           seed=unit["seed"])

    records = ctx.map(units, train, desc="seeds")
    rows = [{**unit, **rec} for unit, rec in zip(units, records)]
    stats = {r: seed_stats([row["test_acc"] for row in rows if row["rule"] == r]) for r in config.rules}
    return {"runs": rows, "stats": stats}


def accuracies(result: dict, rule: str) -> list[float]:
    """The test accuracy of every seed of one rule, in seed order (chapter 3)."""
    return [row["test_acc"] for row in result["runs"] if row["rule"] == rule]


def separation_by_seeds(result: dict, rule_a: str, rule_b: str) -> list[dict]:
    """Using only the first ``n`` seeds, is ``rule_a`` vs ``rule_b`` more than noise? For n = 2, 3, … (chapter 3).

    The difference of the means is compared with its standard error
    ``sqrt(s_a²/n + s_b²/n)`` times the two-sided 95 % Welch t quantile
    (``cutoff``; about 2.8 at n = 3, near 2 only for many seeds). Looking at
    n = 2, 3, ... and stopping at the first separation is *optional stopping*:
    it is the chapter's warning example, not a valid test.
    """
    a, b = accuracies(result, rule_a), accuracies(result, rule_b)
    out = []
    for n in range(2, min(len(a), len(b)) + 1):
        sa, sb = seed_stats(a[:n]), seed_stats(b[:n])
        diff = sa["mean"] - sb["mean"]
        se = math.sqrt(sa["sem"] ** 2 + sb["sem"] ** 2)
        cutoff = welch_cutoff(sa, sb)
        out.append({"n": n, "diff": diff, "se": se, "cutoff": cutoff, "separated": abs(diff) > cutoff * se})
    return out


def seeds_needed(diff: float, std_a: float, std_b: float, z: float = 2.0) -> float:
    """Seeds per rule for a true difference ``diff`` to exceed ``z`` standard errors: ``z² (s_a² + s_b²) / diff²``.

    Chapter 3, exercise *How many seeds?*. Infinite when ``diff`` is 0.
    """
    if diff == 0:
        return math.inf
    return z * z * (std_a ** 2 + std_b ** 2) / diff ** 2


EXPERIMENT = Experiment(
    name="rule_seed_spread",
    chapter="3 Training random sparse networks",
    description="two layer-wise rules over many seeds: how many seeds separate them",
    presets=presets,
    run=run,
    tolerances=SWEEP_TOLERANCES,
)
