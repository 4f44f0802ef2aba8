"""When sparse-to-sparse pruning fails: layer collapse at extreme sparsity (chapter 7).

Chapter 7 (*Sparse-to-sparse*), section *When it fails*: a single global
threshold over all layers can empty one layer before the others are thin,
which cuts every input→output path (appendix *Formulas and notation*, pruning scores; the S2S tabular notebook
falls to the majority class this way). This experiment prunes the dense
network and an ER source at initialization with global magnitude, one-shot
and iterative SynFlow, SNIP, and per-layer quotas, across densities down to
0.001, and records whether a path survives; it trains the masks at one
extreme density to show what a collapse costs.

Run it with ``rpbook run layer_collapse --profile standard``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..data import load_dataset
from ..masks import check_density
from ..train import TrainConfig
from ..results import Tolerance
from . import Experiment, RunContext
from .specs import DataSpec, NetworkSpec, TrainingSpec, profile_presets
from ._sparse_sweep import seed_stats, train_preset
from .s2s_imp import check_s2s_config, imp_train_preset, source_label
from .s2s_pruning_at_init import check_methods, prune_and_train


@dataclass(frozen=True)
class CollapseConfig(TrainingSpec, DataSpec, NetworkSpec):
    """Masks for every source × method × density × seed; training at ``train_densities`` only (chapter 7)."""

    include_dense: bool = True
    source_rules: tuple[str, ...] = ("balanced",)
    source_densities: tuple[float, ...] = (0.2,)
    methods: tuple[str, ...] = ("magnitude", "magnitude-layer", "snip", "synflow-oneshot", "synflow")
    densities: tuple[float, ...] = (0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001)
    train_densities: tuple[float, ...] = (0.005,)
    synflow_iterations: int = 100
    score_batch: int = 256
    reinit: str | None = "unit-scaled"
    train: TrainConfig = field(default_factory=lambda: imp_train_preset("standard"))

    def __post_init__(self) -> None:
        check_s2s_config(self, self.densities, strict=False)
        check_methods(self.methods)
        for p in self.train_densities:
            check_density(p, "train density")
            if p not in self.densities:
                raise ValueError(f"train density {p!r} is not one of densities {self.densities!r}")

presets = profile_presets(
    """``quick``: a 32-unit MLP, two methods, two densities, one seed, one epoch.
    ``standard``: MLP 40-256-256-10 on MNIST-1D, dense and balanced-0.2 sources, five methods,
    densities 0.1 … 0.001, training at 0.005, three seeds. ``full``: VGG-16 on CIFAR-10.""",
    quick=lambda: CollapseConfig(hidden=(32, 32), methods=("magnitude", "magnitude-layer"), densities=(0.05, 0.005),
                                 train_densities=(0.005,), synflow_iterations=10, score_batch=64, n_train=500,
                                 seeds=(0,), train=train_preset("quick")),
    standard=lambda: CollapseConfig(),
    full=lambda: CollapseConfig(model="vgg16", dataset="cifar10", hidden=None, train=train_preset("full")),
)


def run(config: CollapseConfig, ctx: RunContext) -> dict:
    """Prune every unit, train those at ``train_densities`` (resumable), and summarize.

    Returns
    -------
    dict
        ``runs``: one row per unit (``collapsed``, ``paths``, ``cut_layer``,
        ``layer_kept``, and ``test_acc`` where trained); ``summary``: per
        (source, method, density) the number of collapsed seeds, the median
        path count and the test-accuracy statistics.
    """
    data = load_dataset(config.dataset, seed=config.split_seed, n_train=config.n_train)
    sources = ([("dense", 1.0)] if config.include_dense else []) + [
        (r, p) for r in config.source_rules for p in config.source_densities]
    units = [{"rule": r, "source_density": p, "method": m, "density": d, "seed": s}
             for r, p in sources for m in config.methods for d in config.densities for s in config.seeds]

    def one(unit: dict) -> dict:
        return prune_and_train(config, data, rule=unit["rule"], source_density=unit["source_density"],
                               method=unit["method"], target=unit["density"], seed=unit["seed"],
                               train=unit["density"] in config.train_densities, device=ctx.device)

    records = ctx.map(units, one, desc="layer collapse")
    rows = [{"source": source_label(u["rule"], u["source_density"]), **u, **rec} for u, rec in zip(units, records)]
    summary = []
    for r, p in sources:
        for m in config.methods:
            for d in config.densities:
                group = [x for x in rows if x["rule"] == r and x["source_density"] == p and x["method"] == m
                         and x["density"] == d]
                paths = sorted(x["paths"] for x in group if x["paths"] is not None)
                summary.append({"source": source_label(r, p), "method": m, "density": d,
                                "collapsed": sum(bool(x["collapsed"]) for x in group), "n": len(group),
                                "median_paths": paths[len(paths) // 2] if paths else None,
                                "test_acc": seed_stats([x.get("test_acc") for x in group])})
    return {"runs": rows, "summary": summary}


def collapse_curve(result: dict, source: str, method: str) -> dict:
    """Fraction of seeds collapsed and median path count against density, densest first (chapter 7)."""
    rows = sorted((s for s in result["summary"] if s["source"] == source and s["method"] == method),
                  key=lambda s: -s["density"])
    if not rows:
        raise ValueError(f"no rows for source {source!r} and method {method!r}")
    return {"density": [s["density"] for s in rows], "collapsed": [s["collapsed"] / s["n"] for s in rows],
            "paths": [s["median_paths"] for s in rows], "test_acc": [s["test_acc"] for s in rows]}


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
    "*_acc*": Tolerance(abs=0.015, why="15 of 1,000 test examples, as chapter 3's measured training spread x3"),
}

EXPERIMENT = Experiment(
    name="layer_collapse",
    chapter="7 Sparse-to-sparse",
    description="layer collapse under global magnitude pruning at extreme sparsity, and how per-layer "
                "quotas or iterative SynFlow avoid it",
    presets=presets,
    run=run,
    tolerances=TOLERANCES,
)
