"""One training run of a random sparse network: build, mask, initialise, train, report.

Chapter 1 runs it once; chapter 3 sweeps it over density, rule, width and
depth; ``rpbook train`` is its command-line face. Not an experiment on its
own (it defines no ``EXPERIMENT``): experiments call :func:`train_sparse`
once per unit of their sweep.
"""
from __future__ import annotations

import copy
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
from ..masks import SCORE_RULE_METHODS, check_density, check_repair, check_rule, mask_model, needs_scores, sparsity_report
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
    repair: bool | str = False
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
        check_repair(self.repair)
        check_init(self.init)
        check_seed(self.seed)
        if not isinstance(self.train, TrainConfig):
            raise ValueError(f"train must be a TrainConfig, got {type(self.train).__name__}")
        self.train.validate()


def layer_scores_for_rule(run: SparseRun, model: torch.nn.Module, data: Any) -> dict[str, torch.Tensor]:
    """Pruning scores for a score-derived rule (``snip-ratio``, ``grasp-ratio``; chapter 3, *More layer-wise rules*).

    As in Liu et al.'s code: the scores of a dense copy of the network, freshly
    initialised (the ``dense`` init, seeded by the run), on one mini-batch of
    training data (the first ``batch_size`` examples). The layer densities are
    read off their global top-k; the masks themselves stay random.
    """
    from ..pruning import compute_scores

    scoring = copy.deepcopy(model)
    initialize_(scoring, "dense", seed=run.seed)
    n = min(run.train.batch_size, len(data.x_train))
    return compute_scores(SCORE_RULE_METHODS[run.rule], scoring, (data.x_train[:n], data.y_train[:n]))


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
        scores = layer_scores_for_rule(run, model, data) if needs_scores(run.rule) else None
        masking = mask_model(model, run.density, run.rule, seed=run.seed, dense_first=run.dense_first,
                             dense_last=run.dense_last, repair=run.repair, layer_scores=scores)
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
