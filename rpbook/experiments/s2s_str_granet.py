"""STR and GraNet from the dense network and from random ER sources (chapter 7).

Chapter 7 (*Sparse-to-sparse*), section *Learned and gradual sparsity from a
random source*: Gadhikar et al. (2023) run not only IMP and pruning at
initialization inside a random Erdős–Rényi source, but also methods that
sparsify *during* one training run: soft threshold reparameterization (STR,
Kusupati et al. 2020; :mod:`rpbook.soft_threshold`), whose density is learned,
and GraNet (Liu et al. 2021; :class:`rpbook.dst.GraNet`), gradual magnitude
pruning on a cubic schedule with RigL's drop-and-grow. This experiment trains
both once per source × seed × setting (a GraNet target density, or an STR
threshold decay), on the MLP / MNIST-1D setting of ``s2s_imp``, and records
test accuracy, the final density, the training FLOPs (chapter 7's convention,
integrated over the epochs as the density falls) and the layer-wise densities
STR finds, next to those the registered density rules give at the same
overall density.

Run it with ``rpbook run s2s_str_granet --profile standard``.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from typing import Any

import torch

from ..data import load_dataset
from ..dst import GraNet
from ..masks import layer_shapes, layerwise_densities, maskable_layers, sparsity_report
from ..models import build_model
from ..pruning import layer_collapse
from ..results import Tolerance
from ..soft_threshold import SoftThreshold, check_s_init, density_trace_flops
from ..train import TrainConfig, fit
from . import Experiment, RunContext
from ._sparse_sweep import seed_stats, train_preset
from .s2s_imp import TRAINING_FLOPS_FACTOR, build_source, check_s2s_config, source_label
from .specs import DataSpec, NetworkSpec, TrainingSpec, profile_presets

METHODS: tuple[str, ...] = ("granet", "str")
#: The registered density rules STR's layer densities are compared with.
COMPARED_RULES: tuple[str, ...] = ("uniform", "erk", "balanced", "pyramidal")


@dataclass(frozen=True)
class S2SSTRGraNetConfig(TrainingSpec, DataSpec, NetworkSpec):
    """GraNet to each of ``targets`` and STR with each of ``str_decays``, from every source (chapter 7).

    Sources: the dense network (``include_dense``) and every
    ``source_rules`` × ``source_densities`` ER mask. GraNet prunes from the
    source's density to a target on the cubic schedule over the first
    ``prune_end`` of training, every ``update_every`` steps, and swaps
    ``drop_fraction`` (cosine-decayed) of each layer's weights at each
    update, regrowing inside the source. STR starts every threshold at
    ``sigmoid(s_init)`` and decays ``s`` by the optimizer's weight decay plus
    a threshold decay from ``str_decays``; the density it reaches is measured.
    """

    include_dense: bool = True
    source_rules: tuple[str, ...] = ("balanced",)
    source_densities: tuple[float, ...] = (0.5, 0.2)
    targets: tuple[float, ...] = (0.1, 0.02)
    str_decays: tuple[float, ...] = (0.04, 0.045, 0.05, 0.055)
    s_init: float = -10.0
    update_every: int = 20
    drop_fraction: float = 0.5
    prune_end: float = 0.75
    train: TrainConfig = field(default_factory=lambda: train_preset("standard"))

    def __post_init__(self) -> None:
        check_s2s_config(self, self.targets, strict=True)
        decays = self.str_decays
        if (not isinstance(decays, tuple) or len(set(decays)) != len(decays) or any(
                isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0 < v <= 1 for v in decays)):
            raise ValueError(f"str_decays must be a tuple of distinct threshold decays in (0, 1] (empty: no STR), "
                             f"got {decays!r}")
        check_s_init(self.s_init)
        if isinstance(self.update_every, bool) or not isinstance(self.update_every, int) or self.update_every < 1:
            raise ValueError(f"update_every must be a positive integer (steps between GraNet updates), "
                             f"got {self.update_every!r}")
        for name in ("drop_fraction", "prune_end"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0 < v < 1:
                raise ValueError(f"{name} must be in (0, 1), got {v!r}")


presets = profile_presets(
    """``quick``: a 32-unit MLP, the dense source and one ER source, one target, one STR decay, one seed, one epoch.
    ``standard``: MLP 40-256-256-10 on MNIST-1D (as ``s2s_imp``), the dense source and balanced sources of
    density 0.5 and 0.2, GraNet to 0.1 and 0.02, STR with four threshold decays, 20 epochs, three seeds.
    ``full``: VGG-16 on CIFAR-10, 160 epochs, GraNet updating every 1,000 steps (the S2S GraNet samples);
    STR's threshold decays would need tuning again at that scale.""",
    quick=lambda: S2SSTRGraNetConfig(hidden=(32, 32), source_densities=(0.3,), targets=(0.1,), str_decays=(0.06,),
                                     update_every=1, n_train=500, seeds=(0,), train=train_preset("quick")),
    standard=lambda: S2SSTRGraNetConfig(),
    full=lambda: S2SSTRGraNetConfig(model="vgg16", dataset="cifar10", hidden=None, update_every=1000,
                                    train=train_preset("full")),
)


def run(config: S2SSTRGraNetConfig, ctx: RunContext) -> dict:
    """Train GraNet and STR once per source × seed × setting (resumable) and summarize.

    Returns
    -------
    dict
        ``runs``: one row per unit with ``source``, ``rule``,
        ``source_density``, ``seed``, ``method``, ``setting`` (GraNet's
        target or STR's threshold decay), ``test_acc``, ``density`` (reached),
        ``layer_densities``, ``thresholds`` (STR), ``collapsed``,
        ``train_flops`` and ``density_trace`` (global density after each
        epoch); ``summary``: seed statistics per (source, method, setting);
        ``str_layers``: per source and decay, STR's mean layer densities and
        the registered rules' at the same overall density; ``layers``,
        ``layer_sizes``, ``flops_convention``.
    """
    data = load_dataset(config.dataset, seed=config.split_seed, n_train=config.n_train)
    n_examples = len(data.x_train)
    sources = ([("dense", 1.0)] if config.include_dense else []) + [
        (r, p) for r in config.source_rules for p in config.source_densities]
    settings = [("granet", t) for t in config.targets] + [("str", lam) for lam in config.str_decays]
    units = [{"rule": r, "source_density": p, "seed": s, "method": m, "setting": v}
             for r, p in sources for s in config.seeds for m, v in settings]

    def one(unit: dict) -> dict:
        seed = unit["seed"]
        model, masking = build_source(config, data, unit["rule"], unit["source_density"], seed)
        flops_dense = {r.name: r.flops_dense for r in sparsity_report(model, tuple(data.in_shape)).layers}
        train = dataclasses.replace(config.train, seed=seed)
        if unit["method"] == "granet":
            method = GraNet(unit["setting"], end=config.prune_end, update_every=config.update_every,
                            drop_fraction=config.drop_fraction, seed=seed)
        else:
            method = SoftThreshold(model, s_init=config.s_init, threshold_decay=unit["setting"])
        hist = fit(model, data, train, masking=masking, callbacks=[method], device=ctx.device, progress=False,
                   run={k: unit[k] for k in ("rule", "source_density", "method", "setting")})
        thresholds = method.thresholds() if unit["method"] == "str" else None
        masks = method.finalize(masking) if unit["method"] == "str" else masking.masks
        per_epoch = density_trace_flops(method.trace, flops_dense)
        sizes = {n: m.numel() for n, m in masks.items()}
        return {
            "test_acc": hist.test["accuracy"],
            "density": sum(int(m.sum()) for m in masks.values()) / sum(sizes.values()),
            "layer_densities": [float(m.float().mean()) for m in masks.values()],
            "thresholds": None if thresholds is None else list(thresholds.values()),
            "collapsed": layer_collapse(masks)["collapsed"],
            "train_flops": TRAINING_FLOPS_FACTOR * sum(per_epoch) * n_examples,
            "density_trace": [sum(t["densities"][n] * sizes[n] for n in sizes) / sum(sizes.values())
                              for t in method.trace],
        }

    records = ctx.map(units, one, desc="STR and GraNet per source")
    rows = [{"source": source_label(u["rule"], u["source_density"]), **u, **rec} for u, rec in zip(units, records)]
    summary = []
    for rule, p0 in sources:
        label = source_label(rule, p0)
        for method, value in settings:
            group = [r for r in rows if r["source"] == label and r["method"] == method and r["setting"] == value]
            summary.append({"source": label, "rule": rule, "source_density": p0, "method": method, "setting": value,
                            "test_acc": seed_stats([r["test_acc"] for r in group]),
                            "density": seed_stats([r["density"] for r in group]),
                            "train_flops": seed_stats([r["train_flops"] for r in group]),
                            "collapsed": sum(bool(r["collapsed"]) for r in group), "n": len(group)})
    with torch.device("meta"):
        meta = build_model(config.model, in_shape=tuple(data.in_shape), num_classes=data.num_classes,
                           hidden=config.hidden)
    shapes = layer_shapes(meta)
    str_layers = []
    for rule, p0 in sources:
        label = source_label(rule, p0)
        for lam in config.str_decays:
            group = [r for r in rows if r["source"] == label and r["method"] == "str" and r["setting"] == lam]
            mean = [math.fsum(col) / len(col) for col in zip(*(r["layer_densities"] for r in group))]
            p = math.fsum(r["density"] for r in group) / len(group)
            str_layers.append({"source": label, "setting": lam, "density": p, "layer_densities": mean,
                               "rules": {q: layerwise_densities(shapes, p, q) for q in COMPARED_RULES}})
    return {
        "runs": rows, "summary": summary, "str_layers": str_layers,
        "layers": [n for n, _ in maskable_layers(meta)], "layer_sizes": [math.prod(s) for s in shapes],
        "n_train_examples": n_examples,
        "flops_convention": (f"training FLOPs = {TRAINING_FLOPS_FACTOR} × forward FLOPs per example of the network "
                             f"at its current density (multiply-add = 2, conv/linear weights only, as if sparse "
                             f"kernels skipped zeros; per epoch the mean of the densities at its start and end) "
                             f"× training examples, summed over epochs"),
    }


# ----------------------------------------------------------------------------- reading the result


def sources_of(result: dict) -> list[str]:
    """Source labels in run order (``"dense"`` first when present)."""
    return list(dict.fromkeys(s["source"] for s in result["summary"]))


def method_points(result: dict, source: str, method: str) -> list[dict]:
    """One summary row per setting of ``method`` from ``source``, densest reached density first (chapter 7)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; this experiment has {', '.join(METHODS)}")
    rows = [s for s in result["summary"] if s["source"] == source and s["method"] == method]
    if not rows:
        raise ValueError(f"source {source!r} is not in this result; it has {', '.join(sources_of(result))}")
    return sorted(rows, key=lambda s: -s["density"]["mean"])


def log_distance(a: list[float], b: list[float]) -> float:
    """Mean ``|log10 a_l − log10 b_l|`` over layers: how far two layer-density profiles are (chapter 7).

    0 means identical; 1 means a factor of ten per layer on average.
    Densities are floored at 1e-6 so an empty layer stays finite.
    """
    if len(a) != len(b) or not a:
        raise ValueError(f"two non-empty profiles of the same length are needed, got {len(a)} and {len(b)} layers")
    return math.fsum(abs(math.log10(max(x, 1e-6)) - math.log10(max(y, 1e-6))) for x, y in zip(a, b)) / len(a)


def closest_rule(entry: dict) -> tuple[str, float]:
    """The registered rule whose layer densities are nearest STR's in :func:`log_distance`, and that distance."""
    dist = {q: log_distance(entry["layer_densities"], d) for q, d in entry["rules"].items()}
    best = min(dist, key=dist.get)
    return best, dist[best]


# One training run per unit, but GraNet and STR both change the mask from the weights' magnitudes
# many times: on another numeric environment the last bits differ, another weight crosses a threshold,
# and the run goes its own way from there, as IMP's does. Measured with ATEN_CPU_CAPABILITY=default
# against the AVX-512 original (all 54 runs regenerated, 1,121 of 2,636 fields within tolerance, none
# beyond): per-run test accuracy moved by up to 0.044, seed minima by 0.023, the seed std of accuracy
# by 0.012 (its sem by 0.007), per-layer densities by up to 0.013, STR thresholds by 0.005, per-run
# training FLOPs by 0.9 % and their seed spread by 1.9 %; every other field by less than a quarter of
# the (wider, analogy-based) tolerance it was then checked against, well inside the ones below. The
# tolerances give about 1.5x the measured change.
_MEASURED = "about 1.5x the change measured with ATEN_CPU_CAPABILITY=default"
TOLERANCES = {
    "runs.#.layer_densities.#": Tolerance(abs=0.02, why=f"measured 0.013; {_MEASURED}"),
    "str_layers.#.layer_densities.#": Tolerance(abs=0.015, why=f"means of per-run densities (measured 0.013 per run); {_MEASURED}"),
    "str_layers.#.rules.*": Tolerance(abs=0.015, why=f"rules at STR's mean density; {_MEASURED}"),
    "str_layers.#.density": Tolerance(abs=0.01, why="below 0.002 measured; kept as wide as the other densities"),
    "runs.#.thresholds.#": Tolerance(abs=0.01, why=f"measured 0.005; {_MEASURED}"),
    "runs.#.density_trace.#": Tolerance(abs=0.01, why="below 0.002 measured; kept as wide as the other densities"),
    "*density*": Tolerance(abs=0.01, why="below 0.002 measured; kept as wide as the layer densities' mean change"),
    "*flops*": Tolerance(rel=0.03, why=f"per run 0.9 %, seed spreads 1.9 % measured; {_MEASURED}"),
    "*test_acc.std": Tolerance(abs=0.02, why=f"measured 0.012; {_MEASURED}"),
    "*test_acc.sem": Tolerance(abs=0.011, why=f"measured 0.007; {_MEASURED}"),
    "summary.*": Tolerance(abs=0.035, why=f"seed minima measured 0.023, means less; {_MEASURED}"),
    "*_acc*": Tolerance(abs=0.07, why=f"70 of 1,000 test examples; measured 44; {_MEASURED}"),
}

EXPERIMENT = Experiment(
    name="s2s_str_granet",
    chapter="7 Sparse-to-sparse",
    description="STR (learned thresholds) and GraNet (gradual pruning with regrowth) from the dense network and "
                "from balanced ER sources (0.5, 0.2), with reached densities, training FLOPs and STR's layer densities",
    presets=presets,
    run=run,
    tolerances=TOLERANCES,
)
