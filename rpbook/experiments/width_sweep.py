"""Wider networks close the gap: random sparse vs dense at the same width, and at the same weight count (chapter 3).

Chapter 3 (*Training random sparse networks*), section *Width*: Liu et al.'s
main claim is that the accuracy gap between a randomly pruned network at a
fixed density and the dense network of the same width shrinks as the network
gets wider. This sweep trains, per width multiplier and seed, the dense
network and one random sparse network per density (ERK by default), and, to
compare at equal cost, a dense network narrowed until it has as many weights
as each sparse one has nonzeros.

Run it with ``rpbook run width_sweep --profile standard``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..masks import check_rule, layer_counts, layer_shapes, layerwise_densities
from ..train import TrainConfig
from . import Experiment, RunContext
from .specs import DataSpec, NetworkSpec, TrainingSpec, profile_presets
from ._sparse_sweep import (SWEEP_TOLERANCES, UnitTrainer, check_common, check_sparse_densities, check_widths,
                            difference_stats, find, summarize, train_preset)

ARMS: tuple[str, ...] = ("dense", "sparse", "dense-same-nonzero")


@dataclass(frozen=True)
class WidthSweepConfig(TrainingSpec, DataSpec, NetworkSpec):
    """Dense and random sparse networks at each width multiplier (chapter 3).

    ``widths`` multiply every hidden size of ``hidden`` (MLP) or every channel
    count (other models). ``equal_nonzero`` also trains, for every sparse
    network, a dense one of the width whose weight count is closest to the
    sparse network's nonzeros.
    """

    hidden: tuple[int, ...] | None = (32, 32)
    widths: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)
    densities: tuple[float, ...] = (0.1, 0.05, 0.02)
    rule: str = "erk"
    equal_nonzero: bool = True
    train: TrainConfig = field(default_factory=lambda: train_preset("standard"))

    def __post_init__(self) -> None:
        self.check_network()
        check_widths(self.widths)
        check_sparse_densities(self.densities)
        check_rule(self.rule)
        if not isinstance(self.equal_nonzero, bool):
            raise ValueError(f"equal_nonzero must be True or False, got {self.equal_nonzero!r}")
        check_common(self)


presets = profile_presets(
    """``quick``: widths 8 and 32 units, one density, one seed, one epoch. ``standard``: MLP 40-w-w-10 on
    MNIST-1D with w = 32 … 512, densities 0.1, 0.05, 0.02, three seeds. ``full``: ResNet-20 on CIFAR-10
    with first-stage widths 8 … 64 channels (Liu et al.).""",
    quick=lambda: WidthSweepConfig(hidden=(8, 8), widths=(1.0, 4.0), densities=(0.1,), n_train=500, seeds=(0,),
                                   train=train_preset("quick")),
    standard=lambda: WidthSweepConfig(train=train_preset("standard")),
    full=lambda: WidthSweepConfig(model="resnet20", dataset="cifar10", hidden=None, widths=(0.5, 1.0, 2.0, 3.0, 4.0),
                                  densities=(0.1, 0.05, 0.02), train=train_preset("full")),
)


def run(config: WidthSweepConfig, ctx: RunContext) -> dict:
    """Train every unit (resumable); return per-seed rows, a summary, and the gaps per width and density.

    Returns
    -------
    dict
        ``runs``: one row per trained network, with ``arm`` (``dense``,
        ``sparse`` or ``dense-same-nonzero``), ``width``, ``density``,
        ``seed``, the metrics of :meth:`UnitTrainer.run`, and for the
        same-nonzero arm the ``matched_width`` it was trained at.
        ``summary``: statistics over seeds per (arm, width, density).
        ``gaps``: per width and density, dense minus sparse accuracy and
        sparse minus same-nonzero dense accuracy, each with its standard error.
        ``hidden_units``: the hidden sizes per width (MLP).
    """
    trainer = UnitTrainer(config, ctx.device)
    arch = {"model": config.model, "hidden": config.hidden}
    units = [{"arm": "dense", "width": w, "density": 1.0, "seed": s} for w in config.widths for s in config.seeds]
    units += [{"arm": "sparse", "width": w, "density": p, "seed": s}
              for w in config.widths for p in config.densities for s in config.seeds]
    if config.equal_nonzero:
        units += [{"arm": "dense-same-nonzero", "width": w, "density": p, "seed": s}
                  for w in config.widths for p in config.densities for s in config.seeds]

    def train(unit: dict) -> dict:
        if unit["arm"] != "dense-same-nonzero":
            return trainer.run(**arch, width=unit["width"], density=unit["density"], rule=config.rule,
                               seed=unit["seed"])
        # As many weights as the sparse network of this width and density keeps (the layer-wise counts are
        # rounded per layer, so take the count of an actual mask rather than density × weights).
        target = _sparse_nonzero(trainer, arch, unit["width"], unit["density"], config.rule)
        matched = trainer.width_with_weights(target, max_width=unit["width"], **arch)
        record = trainer.run(**arch, width=matched, density=1.0, seed=unit["seed"])
        record["matched_width"] = matched
        return record

    records = ctx.map(units, train, desc="width")
    rows = [{**unit, **rec} for unit, rec in zip(units, records)]
    summary = summarize(rows, by=("arm", "width", "density"), metrics=("test_acc", "train_acc"))
    return {"runs": rows, "summary": summary, "gaps": _gaps(summary, config),
            "hidden_units": {str(w): list(getattr(trainer.meta_model(**arch, width=w), "hidden", ()))
                             for w in config.widths}}


def _sparse_nonzero(trainer: UnitTrainer, arch: dict, width: float, density: float, rule: str) -> int:
    """Kept weights of the exact-count mask of this width, density and rule (what train_sparse will draw)."""
    shapes = layer_shapes(trainer.meta_model(**arch, width=width))
    return sum(layer_counts(shapes, layerwise_densities(shapes, density, rule)))


def _gaps(summary: list[dict], config: WidthSweepConfig) -> list[dict]:
    out = []
    for w in config.widths:
        dense = find(summary, arm="dense", width=w)
        for p in config.densities:
            sparse = find(summary, arm="sparse", width=w, density=p)
            gap = difference_stats(dense["test_acc"], sparse["test_acc"])
            entry = {"width": w, "density": p, "dense": dense["test_acc"]["mean"],
                     "sparse": sparse["test_acc"]["mean"], "gap": gap["diff"], "gap_se": gap["se"],
                     "nonzero": sparse["nonzero"], "dense_weights": dense["nonzero"]}
            if config.equal_nonzero:
                same = find(summary, arm="dense-same-nonzero", width=w, density=p)
                adv = difference_stats(sparse["test_acc"], same["test_acc"])
                entry.update(same_nonzero=same["test_acc"]["mean"], same_nonzero_weights=same["nonzero"],
                             sparse_advantage=adv["diff"], sparse_advantage_se=adv["se"])
            out.append(entry)
    return out


# ----------------------------------------------------------------------------- reading the result


def gap(result: dict, width: float, density: float) -> dict:
    """The gap entry (dense minus sparse accuracy, and more) for one width and density (chapter 3)."""
    return find(result["gaps"], width=width, density=density)


def curve(result: dict, arm: str, density: float | None = None) -> dict:
    """Mean and standard deviation of test accuracy against width for one arm (and density) (chapter 3)."""
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; allowed: {', '.join(ARMS)}")
    rows = [s for s in result["summary"] if s["arm"] == arm and (arm == "dense" or abs(s["density"] - density) < 1e-12)]
    rows.sort(key=lambda s: s["width"])
    return {"width": [s["width"] for s in rows], "nonzero": [s["nonzero"] for s in rows],
            "mean": [s["test_acc"]["mean"] for s in rows], "std": [s["test_acc"]["std"] for s in rows]}


EXPERIMENT = Experiment(
    name="width_sweep",
    chapter="3 Training random sparse networks",
    description="dense vs random sparse networks as the width grows, also at equal nonzero weights",
    presets=presets,
    run=run,
    tolerances=SWEEP_TOLERANCES,
)
