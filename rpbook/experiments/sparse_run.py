"""One training run of a random sparse network: build, mask, initialise, train, report.

Chapter 1 runs it once; chapter 3 sweeps it over density, rule, width and
depth; ``rpbook train`` is its command-line face. Not an experiment on its
own (it defines no ``EXPERIMENT``): experiments call :func:`train_sparse`
once per unit of their sweep.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from typing import Any

import torch

from ..config import choose_device, seed_everything
from ..validators import check_seed
from ..data import DATASET_NAMES, load_dataset
from ..init import check_init, initialize_
from ..masks import check_density, check_rule, mask_model, sparsity_report
from ..models import MODEL_NAMES, build_model
from ..train import TrainConfig, fit


@dataclass(frozen=True)
class SparseRun:
    """Everything that decides one run (chapter 3).

    ``density`` 1.0 trains the dense network. ``n_train`` subsamples the
    training split (quick profiles). ``train`` holds the optimiser settings;
    its ``seed`` is replaced by this run's ``seed``.
    """

    model: str = "mlp"
    dataset: str = "mnist1d"
    width: float = 1.0
    hidden: tuple[int, ...] | None = None
    depth: int | None = None
    density: float = 0.1
    rule: str = "erk"
    dense_first: bool = False
    dense_last: bool = False
    repair: bool = False
    init: str = "unit-scaled"
    n_train: int | None = None
    seed: int = 0
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field and what is allowed."""
        if self.model not in MODEL_NAMES:
            raise ValueError(f"unknown model {self.model!r}; allowed: {', '.join(MODEL_NAMES)}")
        if self.dataset not in DATASET_NAMES:
            raise ValueError(f"unknown dataset {self.dataset!r}; allowed: {', '.join(DATASET_NAMES)}")
        if isinstance(self.width, bool) or not isinstance(self.width, numbers.Real) or math.isnan(self.width) or not self.width > 0:
            raise ValueError(f"width must be a number > 0, got {self.width!r}")
        check_density(self.density)
        check_rule(self.rule)
        check_init(self.init)
        check_seed(self.seed)
        if not isinstance(self.train, TrainConfig):
            raise ValueError(f"train must be a TrainConfig, got {type(self.train).__name__}")
        self.train.validate()


def train_sparse(
    run: SparseRun,
    *,
    device: Any = None,
    checkpoint_dir: Any = None,
    resume: bool = False,
    progress: bool = True,
    data: Any = None,
) -> dict:
    """Train one random sparse (or dense) network and return a JSON-able report (chapters 1, 3).

    The same ``run`` gives the same masks bit for bit and, on the CPU, the
    same numbers.

    Returns
    -------
    dict
        ``density`` (realized), ``layers`` (name, shape, density per layer),
        ``params``, ``nonzero``, ``flops_dense``, ``flops_sparse`` (per
        example), ``history`` (per-epoch rows), ``test_loss``,
        ``test_accuracy``, ``wall_time_s``.
    """
    run.validate()
    dev = choose_device(device)
    seed_everything(run.seed)
    if data is None:
        data = load_dataset(run.dataset, seed=run.seed, n_train=run.n_train)
    model = build_model(run.model, in_shape=tuple(data.in_shape), num_classes=data.num_classes,
                        width=run.width, hidden=run.hidden, depth=run.depth)
    masking = None
    if run.density < 1.0:
        masking = mask_model(model, run.density, run.rule, seed=run.seed, dense_first=run.dense_first,
                             dense_last=run.dense_last, repair=run.repair)
    initialize_(model, run.init, seed=run.seed)
    report = sparsity_report(model, tuple(data.in_shape))
    config = dataclasses.replace(run.train, seed=run.seed)
    history = fit(model, data, config, masking=masking, device=dev, checkpoint_dir=checkpoint_dir,
                  resume=resume, progress=progress, desc=f"{run.model} p={run.density:g} {run.rule}")
    return {
        "density": report.density,
        "layers": [{"name": r.name, "shape": list(r.shape), "density": r.density} for r in report.layers],
        "params": report.params,
        "nonzero": report.nonzero,
        "flops_dense": report.flops_dense,
        "flops_sparse": report.flops_sparse,
        "history": history.epochs,
        "test_loss": history.test["loss"],
        "test_accuracy": history.test["accuracy"],
        "wall_time_s": history.wall_time,
        "device": str(dev),
    }
