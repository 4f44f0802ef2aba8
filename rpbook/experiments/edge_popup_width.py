"""edge-popup: accuracy of subnetworks of frozen random networks against width and kept fraction.

Chapter 6, *Finding tickets by optimization*. For every width multiplier,
kept fraction ``k`` and weight distribution (Kaiming normal, signed Kaiming
constant), edge-popup trains only the scores of a frozen random MLP
(:func:`rpbook.slt.train_edge_popup`); the same architecture trained densely
(:func:`rpbook.experiments.sparse_run.train_sparse` at density 1) is the
reference.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..config import choose_device
from ..data import load_dataset
from ..slt import WEIGHT_INITS, EdgePopupRun, train_edge_popup
from ..train import TrainConfig
from ..results import Tolerance
from . import Experiment, RunContext
from .specs import profile_presets
from .sparse_run import SparseRun, train_sparse


@dataclass(frozen=True)
class EdgePopupWidthConfig:
    """The sweep: widths × kept fractions × weight distributions × seeds, plus dense references (chapter 6)."""

    dataset: str = "digits"
    model: str = "mlp"
    hidden: tuple[int, ...] | None = (64, 64)
    depth: int | None = None
    n_train: int | None = None
    widths: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)
    densities: tuple[float, ...] = (0.05, 0.1, 0.2, 0.5)
    weight_inits: tuple[str, ...] = WEIGHT_INITS
    scale_fan: bool = True
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=20, lr=0.1, weight_decay=1e-4))
    dense_train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=20, lr=0.05, weight_decay=5e-4))
    seeds: tuple[int, ...] = (0, 1, 2)

    def __post_init__(self) -> None:
        for w in self.weight_inits:
            if w not in WEIGHT_INITS:
                raise ValueError(f"unknown weight_init {w!r}; allowed: {', '.join(WEIGHT_INITS)}")


presets = profile_presets(
    quick=lambda: EdgePopupWidthConfig(n_train=300, widths=(0.25, 1.0), densities=(0.1, 0.5),
                                       train=TrainConfig(epochs=2, lr=0.1, weight_decay=1e-4),
                                       dense_train=TrainConfig(epochs=2, lr=0.05), seeds=(0,)),
    standard=lambda: EdgePopupWidthConfig(),
    # Ramanujan et al.'s CIFAR-10 Conv-4 setting (appendix *Formulas and notation*, strong lottery tickets; Ramanujan et al. 2020, HN configs/smallscale).
    full=lambda: EdgePopupWidthConfig(
        dataset="cifar10", model="convnet", hidden=None, depth=4, widths=(0.25, 0.5, 1.0, 2.0),
        densities=(0.05, 0.1, 0.3, 0.5, 0.7),
        train=TrainConfig(epochs=100, lr=0.1, weight_decay=1e-4, batch_size=128, augment="cifar"),
        dense_train=TrainConfig(epochs=100, lr=0.1, weight_decay=1e-4, batch_size=128, augment="cifar"),
        seeds=(0, 1, 2)),
)


def run(config: EdgePopupWidthConfig, ctx: RunContext) -> dict:
    device = choose_device(ctx.device)
    datasets: dict[int, object] = {}

    def data_of(seed: int):
        if seed not in datasets:
            datasets[seed] = load_dataset(config.dataset, seed=seed, n_train=config.n_train)
        return datasets[seed]

    units = [{"kind": "dense", "width": w, "seed": s} for w in config.widths for s in config.seeds]
    units += [{"kind": "edge-popup", "width": w, "density": p, "weight_init": init, "seed": s}
              for w in config.widths for p in config.densities for init in config.weight_inits for s in config.seeds]

    def one(unit: dict) -> dict:
        data = data_of(unit["seed"])
        if unit["kind"] == "dense":
            report = train_sparse(SparseRun(model=config.model, dataset=config.dataset, width=unit["width"],
                                            hidden=config.hidden, depth=config.depth, density=1.0,
                                            init="dense", n_train=config.n_train, seed=unit["seed"],
                                            train=config.dense_train), device=device, progress=False, data=data)
            return {**unit, "test_accuracy": report["test_accuracy"], "params": report["params"],
                    "val_acc": [r.get("val_acc") for r in report["history"]], "wall_time_s": report["wall_time_s"]}
        report = train_edge_popup(EdgePopupRun(
            model=config.model, dataset=config.dataset, width=unit["width"], hidden=config.hidden, depth=config.depth,
            density=unit["density"], weight_init=unit["weight_init"], scale_fan=config.scale_fan,
            n_train=config.n_train, seed=unit["seed"], train=config.train), data=data, device=device)
        return {**unit, "test_accuracy": report["test_accuracy"], "kept": report["kept"], "numel": report["numel"],
                "layers": report["layers"], "exact_counts": report["exact_counts"],
                "weights_unchanged": report["weights_unchanged"],
                "val_acc": [r.get("val_acc") for r in report["history"]], "wall_time_s": report["wall_time_s"]}

    rows = ctx.map(units, one, desc="edge-popup width")
    return {"rows": rows}


# Measured with ATEN_CPU_CAPABILITY=default against the AVX-512 original: final test accuracies moved
# by at most 0.011 (4 of 359 test digits), but the per-epoch validation curves of edge-popup swing by
# up to 0.29 in the first epochs (the top-k of scores flips many edges at once while the scores are
# still small). Chapter 6 reads only the final accuracies; the curves are kept as a record, not compared.
# Kept counts are fixed by k and must stay equal.
_MEASURED = "measured with ATEN_CPU_CAPABILITY=default"
TOLERANCES = {
    "rows.#.test_accuracy": Tolerance(abs=0.03, why=f"11 of 359 test digits; {_MEASURED}: at most 4"),
    "rows.#.val_acc.#": Tolerance(any_value=True, why=f"not read by chapter 6; early epochs swing by 0.29, {_MEASURED}"),
}

EXPERIMENT = Experiment(
    name="edge_popup_width",
    chapter="6 Strong lottery tickets",
    description="edge-popup subnetworks of frozen random MLPs: accuracy against width, kept fraction and weight distribution",
    presets=presets,
    run=run,
    tolerances=TOLERANCES,
)
