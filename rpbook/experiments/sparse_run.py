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
from typing import Any, Callable

import torch

from ..config import choose_device, seed_everything
from ..validators import check_seed
from ..data import DATASET_NAMES, load_dataset
from ..init import check_init, initialize_
from ..masks import SCORE_RULE_METHODS, check_density, check_repair, check_rule, mask_model, needs_scores, sparsity_report
from ..models import MODEL_NAMES, build_model
from ..train import TrainConfig, fit

# 1e9 float32 weights are 4 GB before gradients and optimizer state (three to four times more):
# beyond any laptop and most single GPUs, so a larger model is a typo in --width/--hidden, refused before allocating.
MAX_PARAMETERS = 1_000_000_000
# The deepest network of the book has tens of layers; thousands is a typo (and slow to even build).
MAX_LAYERS = 1000


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
        if self.hidden is not None and (not isinstance(self.hidden, tuple) or not 1 <= len(self.hidden) <= MAX_LAYERS):
            raise ValueError(f"hidden must be a tuple of 1 to {MAX_LAYERS} layer sizes, got {self.hidden!r}")
        if self.depth is not None and (isinstance(self.depth, bool) or not isinstance(self.depth, numbers.Integral)
                                       or not 0 <= self.depth <= MAX_LAYERS):
            raise ValueError(f"depth must be an integer in [0, {MAX_LAYERS}], got {self.depth!r}")
        check_density(self.density)
        check_rule(self.rule)
        check_repair(self.repair)
        check_init(self.init)
        check_seed(self.seed)
        if not isinstance(self.train, TrainConfig):
            raise ValueError(f"train must be a TrainConfig, got {type(self.train).__name__}")
        self.train.validate()


def check_model_size(run: SparseRun, in_shape: tuple[int, ...], num_classes: int) -> int:
    """Build ``run``'s model on the meta device (no memory, no random draws) and return its parameter count.

    Chapter 1 counts parameters; this refuses models above :data:`MAX_PARAMETERS`
    before anything is allocated (e.g. a ``--width 1e6`` typo).

    Raises
    ------
    ValueError
        If the model cannot be built with these settings or is too large.
    """
    try:
        with torch.device("meta"):
            model = build_model(run.model, in_shape=tuple(in_shape), num_classes=num_classes,
                                width=run.width, hidden=run.hidden, depth=run.depth)
        size = sum(p.numel() for p in model.parameters())
    except (RuntimeError, OverflowError, MemoryError, TypeError):  # sizes beyond int64: torch cannot even describe them
        size = math.inf
    if size == math.inf:
        raise ValueError(f"the model is too large to build (width {run.width:g}): more than the {MAX_PARAMETERS:,} "
                         "parameters allowed; use a smaller width or hidden sizes")
    if size > MAX_PARAMETERS:
        raise ValueError(f"the model would have {size:,} parameters (width {run.width:g}), more than the {MAX_PARAMETERS:,} "
                         f"allowed (about {4 * MAX_PARAMETERS / 1e9:.0f} GB of float32 weights); use a smaller width or hidden sizes")
    return size


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
    measure: Callable[[torch.nn.Module, Any], dict] | None = None,
) -> dict:
    """Train one random sparse (or dense) network and return a JSON-able report (chapters 1, 3).

    The same ``run`` gives the same masks bit for bit and, on the CPU, the
    same numbers. ``measure(model, data)``, if given, is called on the
    trained model and its dict returned as ``measured`` (chapter 3, *More
    than accuracy*: calibration, attacks, OOD detection), so callers get
    more than accuracy without keeping the model.

    Returns
    -------
    dict
        ``density`` (realized), ``layers`` (name, shape, density per layer),
        ``params``, ``nonzero``, ``flops_dense``, ``flops_sparse`` (per
        example), ``history`` (per-epoch rows), ``test_loss``,
        ``test_accuracy``, ``wall_time_s`` (and ``measured`` with ``measure``).
    """
    run.validate()
    dev = choose_device(device)
    seed_everything(run.seed)
    if data is None:
        data = load_dataset(run.dataset, seed=run.seed, n_train=run.n_train)
    check_model_size(run, tuple(data.in_shape), data.num_classes)
    model = build_model(run.model, in_shape=tuple(data.in_shape), num_classes=data.num_classes,
                        width=run.width, hidden=run.hidden, depth=run.depth)
    masking = None
    if run.density < 1.0:
        scores = layer_scores_for_rule(run, model, data) if needs_scores(run.rule) else None
        masking = mask_model(model, run.density, run.rule, seed=run.seed, dense_first=run.dense_first,
                             dense_last=run.dense_last, repair=run.repair, layer_scores=scores)
    initialize_(model, run.init, seed=run.seed)
    config = dataclasses.replace(run.train, seed=run.seed)
    # the run's fields join the checkpoint fingerprint: resuming with another density or rule is refused by name
    described = {f.name: getattr(run, f.name) for f in dataclasses.fields(run) if f.name != "train"}
    described["hidden"] = list(run.hidden) if run.hidden is not None else None
    history = fit(model, data, config, masking=masking, device=dev, checkpoint_dir=checkpoint_dir,
                  resume=resume, progress=progress, desc=f"{run.model} p={run.density:g} {run.rule}", run=described)
    # after training: the masks are the ones the run ended with (a resumed run's come from its checkpoint)
    report = sparsity_report(model, tuple(data.in_shape))
    measured = measure(model, data) if measure is not None else None
    out = {
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
    if measure is not None:
        out["measured"] = measured
    return out
