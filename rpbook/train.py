"""Training and evaluation: ``fit``, ``evaluate``, history, checkpoints and callbacks.

Chapter 1 runs a first small ``fit``; chapter 3 trains random sparse networks
with it; chapters 5–7 add mask updates and measurements through callbacks.
"""
from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .atomic_files import torch_save_atomic
from .config import check_seed, choose_device, progress_enabled
from .masks import Masking, maskable_layers

OPTIMIZERS: tuple[str, ...] = ("sgd", "adam", "adamw")
SCHEDULES: tuple[str, ...] = ("cosine", "step", "constant")
AUGMENTATIONS: tuple[str, ...] = ("none", "cifar")
CHECKPOINT_FILE = "checkpoint.pt"
# Above this, weight decay alone shrinks (SGD) or explodes (1e308 overflows) the weights each step: a typo, not a choice.
MAX_WEIGHT_DECAY = 1.0


def _check_number(name: str, value: object, *, low: float | None = None, strict: bool = False, integer: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or (integer and not isinstance(value, numbers.Integral)):
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if low is not None and (value <= low if strict else value < low):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {low}, got {value!r}")


@dataclass
class TrainConfig:
    """Everything that decides a training run, except model, data and mask (chapter 3).

    ``milestones`` are fractions of the run at which the ``step`` schedule
    multiplies the learning rate by ``gamma`` (Liu et al.: 0.5 and 0.75).
    ``grad_norm_every`` logs the masked gradient norm every that many steps
    (0 turns it off). ``amp`` uses mixed precision, on CUDA only.
    """

    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    milestones: tuple[float, ...] = (0.5, 0.75)
    gamma: float = 0.1
    label_smoothing: float = 0.0
    augment: str = "none"
    seed: int = 0
    grad_norm_every: int = 0
    amp: bool = True

    def __post_init__(self) -> None:
        self.milestones = tuple(self.milestones)
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field and what is allowed."""
        _check_number("epochs", self.epochs, low=1, integer=True)
        _check_number("batch_size", self.batch_size, low=1, integer=True)
        _check_number("lr", self.lr, low=0, strict=True)
        _check_number("momentum", self.momentum, low=0)
        if not self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
        _check_number("weight_decay", self.weight_decay, low=0)
        if self.weight_decay > MAX_WEIGHT_DECAY:
            raise ValueError(f"weight_decay must be in [0, {MAX_WEIGHT_DECAY:g}], got {self.weight_decay!r}")
        _check_number("gamma", self.gamma, low=0, strict=True)
        _check_number("grad_norm_every", self.grad_norm_every, low=0, integer=True)
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; allowed: {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; allowed: {', '.join(SCHEDULES)}")
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"unknown augmentation {self.augment!r}; allowed: {', '.join(AUGMENTATIONS)}")
        if any(not 0 < m < 1 for m in self.milestones):
            raise ValueError(f"milestones must be fractions of the run in (0, 1), got {self.milestones!r}")
        check_seed(self.seed)


@dataclass
class History:
    """What ``fit`` records: one row per epoch, gradient norms, and the final test metrics."""

    epochs: list[dict] = field(default_factory=list)
    grad_norms: list[dict] = field(default_factory=list)
    test: dict = field(default_factory=dict)
    wall_time: float = 0.0

    def column(self, key: str) -> list:
        """One metric over epochs, e.g. ``history.column("val_acc")``."""
        return [row.get(key) for row in self.epochs]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        return cls(**d)


class Callback:
    """Hook into :func:`fit` without editing it (chapters 5–7: mask updates, measurements).

    Every method receives the :class:`TrainState`. ``state_dict`` /
    ``load_state_dict`` let a callback with state survive checkpoint and resume.
    """

    def on_train_begin(self, state: "TrainState") -> None: ...
    def on_after_backward(self, state: "TrainState") -> None: ...
    def on_step_end(self, state: "TrainState") -> None: ...
    def on_epoch_end(self, state: "TrainState") -> None: ...
    def on_train_end(self, state: "TrainState") -> None: ...

    def state_dict(self) -> dict:
        """The callback's state for a checkpoint: plain dicts, lists, numbers, strings and tensors only."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def fingerprint(self) -> dict:
        """The settings that change the run (e.g. a DST schedule); a resumed run must have the same ones."""
        return {}


@dataclass
class TrainState:
    """The live objects of a run, handed to callbacks."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    config: TrainConfig
    data: Any
    device: torch.device
    masking: Masking | None
    history: History
    steps_per_epoch: int
    total_steps: int
    epoch: int = 0
    step: int = 0
    batch: tuple[torch.Tensor, torch.Tensor] | None = None
    loss: torch.Tensor | None = None
    extra: dict = field(default_factory=dict)


def _task(data: Any) -> str:
    return getattr(data, "task", "classification")


def compute_loss(output: torch.Tensor, target: torch.Tensor, task: str, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy for classification, mean squared error for regression (chapters 3, 4)."""
    if task == "regression":
        return F.mse_loss(output, target.view_as(output))
    return F.cross_entropy(output, target, label_smoothing=label_smoothing)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    task: str = "classification",
    batch_size: int = 1024,
    device: str | torch.device | None = None,
) -> dict:
    """Loss (and accuracy for classification) of ``model`` on ``(x, y)`` in eval mode (chapter 3).

    Returns
    -------
    dict
        ``{"loss": float, "accuracy": float | None, "n": int}``.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if task not in ("classification", "regression"):
        raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise ValueError(f"x and y must be tensors, got {type(x).__name__} and {type(y).__name__}")
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same number of examples, got {len(x)} and {len(y)}")
    dev = choose_device(device) if device is not None else next(model.parameters()).device
    _check_model_takes(model, x, [y], task, dev)
    was_training = model.training
    model.eval()
    total_loss, correct, n = 0.0, 0, len(x)
    try:
        for i in range(0, n, batch_size):
            xb, yb = x[i:i + batch_size].to(dev), y[i:i + batch_size].to(dev)
            out = model(xb).float()
            total_loss += float(compute_loss(out, yb, task)) * len(xb)
            if task != "regression":
                correct += int((out.argmax(1) == yb).sum())
    finally:
        model.train(was_training)
    if n == 0:
        return {"loss": float("nan"), "accuracy": None, "n": 0}
    return {"loss": total_loss / n, "accuracy": correct / n if task != "regression" else None, "n": n}


@torch.no_grad()
def predict_proba(model: nn.Module, x: torch.Tensor, *, batch_size: int = 1024,
                  device: str | torch.device | None = None) -> torch.Tensor:
    """Softmax class probabilities of ``model`` on ``x`` in eval mode, as a float64 CPU tensor (chapter 5).

    Chapter 5, *The cost of re-learning*: the predictions whose disagreement
    and ensemble :func:`disagreement` and :func:`ensemble_accuracy` measure.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"x must be a tensor, got {type(x).__name__}")
    dev = choose_device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        parts = [torch.softmax(model(x[i:i + batch_size].to(dev)).double(), dim=1).cpu()
                 for i in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(parts) if parts else torch.zeros(0, 0, dtype=torch.float64)


def _check_probs(*probs: torch.Tensor) -> None:
    if not probs:
        raise ValueError("need at least one set of predictions")
    for p in probs:
        if not isinstance(p, torch.Tensor) or p.dim() != 2:
            raise ValueError(f"predictions must be (examples, classes) tensors, got {getattr(p, 'shape', p)!r}")
        if p.shape != probs[0].shape:
            raise ValueError(f"predictions must have the same shape, got {tuple(probs[0].shape)} and {tuple(p.shape)}")


def disagreement(probs_a: torch.Tensor, probs_b: torch.Tensor) -> float:
    """Fraction of examples on which two networks predict different labels (argmax) (chapter 5).

    Function-space distance of chapter 5, *The cost of re-learning* (appendix
    *Formulas and notation*): 0 for networks that compute the same labels,
    whatever their weights.
    """
    _check_probs(probs_a, probs_b)
    if len(probs_a) == 0:
        raise ValueError("disagreement needs at least one example")
    return float((probs_a.argmax(1) != probs_b.argmax(1)).double().mean())


def mean_pairwise_disagreement(probs: Sequence[torch.Tensor]) -> float:
    """Mean :func:`disagreement` over all pairs of at least two networks (chapter 5)."""
    if len(probs) < 2:
        raise ValueError(f"pairwise disagreement needs at least two networks, got {len(probs)}")
    pairs = [(i, j) for i in range(len(probs)) for j in range(i + 1, len(probs))]
    return sum(disagreement(probs[i], probs[j]) for i, j in pairs) / len(pairs)


def ensemble_accuracy(probs: Sequence[torch.Tensor], y: torch.Tensor) -> float:
    """Accuracy of the ensemble that averages the members' softmax outputs (chapter 5).

    Chapter 5, *The cost of re-learning*: members that compute the same
    function gain nothing from averaging; the gain over the members' mean
    accuracy grows with how differently they err.
    """
    _check_probs(*probs)
    if len(y) != len(probs[0]):
        raise ValueError(f"y has {len(y)} labels for {len(probs[0])} predictions")
    mean = torch.stack(list(probs)).mean(0)
    return float((mean.argmax(1) == y.cpu()).double().mean())


def lr_factor(step: int, total_steps: int, config: TrainConfig) -> float:
    """The schedule's multiple of ``config.lr`` at a step: cosine to 0, ``gamma`` at each milestone, or 1 (chapter 3)."""
    if config.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * step / max(1, total_steps)))
    if config.schedule == "step":
        return config.gamma ** sum(step >= m * total_steps for m in config.milestones)
    return 1.0


def lr_at(step: int, total_steps: int, config: TrainConfig) -> float:
    """Learning rate at a step, ``config.lr * lr_factor(step)``: what :func:`make_scheduler` sets (chapter 3)."""
    return config.lr * lr_factor(step, total_steps, config)


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int,
                   start_step: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
    """The config's schedule as a ``torch.optim.lr_scheduler.LambdaLR`` stepped once per optimizer step (chapter 3).

    The learning rate at step ``t`` is ``config.lr * lr_factor(t)``, exactly the
    closed form (multiplying by the factor is bit-identical to the formula the
    stored results were trained with; ``tests/test_train.py`` checks it). A
    resumed run starts the schedule at ``start_step``.
    """
    for group in optimizer.param_groups:
        group["initial_lr"] = config.lr  # the schedule's base, also after a resumed optimizer state
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total_steps, config),
                                             last_epoch=start_step - 1)


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov), Adam or AdamW with the config's settings (chapter 3)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                               nesterov=config.nesterov and config.momentum > 0, weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def _augment_cifar(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random crop with 4-pixel padding and horizontal flip, on tensors (chapter 3, paper scale)."""
    n, _, h, w = x.shape
    padded = F.pad(x, (4, 4, 4, 4))
    dx = torch.randint(0, 9, (n,), generator=generator)
    dy = torch.randint(0, 9, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    rows = (dy.view(n, 1) + torch.arange(h).view(1, h)).to(x.device)
    cols = (dx.view(n, 1) + torch.arange(w).view(1, w)).to(x.device)
    cols = torch.where(flip.view(n, 1).to(x.device), cols.flip(1), cols)
    idx_n = torch.arange(n, device=x.device).view(n, 1, 1, 1)
    idx_c = torch.arange(x.shape[1], device=x.device).view(1, -1, 1, 1)
    return padded[idx_n, idx_c, rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]


def masked_gradient_norm(model: nn.Module) -> tuple[float, dict[str, float]]:
    """L2 norm of the current gradients of the maskable weights, in total and per layer (chapter 5).

    The gradients are the masked ones when a :class:`~rpbook.masks.Masking` is attached.
    """
    per_layer = {}
    for name, module in maskable_layers(model):
        g = module.weight.grad
        per_layer[name] = 0.0 if g is None else float(g.detach().float().norm())
    return math.sqrt(sum(v * v for v in per_layer.values())), per_layer


def _digest(tensors: Sequence[torch.Tensor]) -> str:
    """A short content hash of tensors (values, dtypes and shapes), for the checkpoint fingerprint."""
    h = hashlib.blake2b(digest_size=8)
    for t in tensors:
        t = t.detach().to("cpu").contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _fingerprint(model: nn.Module, data: Any, config: TrainConfig, masking: Masking | None,
                 callbacks: Sequence[Callback], run: Mapping[str, Any] | None) -> dict:
    """What a checkpoint must agree on to be resumed: everything that changes the run.

    Named fields (config, data, callbacks, ``run``) make the refusal say what
    differs; the content hashes of the starting weights and masks catch any
    other difference (rule, density, init, seed) when ``fit`` is called
    directly.
    """
    info = getattr(data, "info", None) or {}
    return {
        "config": json.loads(json.dumps(asdict(config))),
        "model": type(model).__name__,
        "architecture": hashlib.blake2b(repr(model).encode(), digest_size=8).hexdigest(),
        "shapes": {k: list(v.shape) for k, v in model.state_dict().items()},
        "data": {
            "name": str(getattr(data, "name", "?")),
            "n_train": len(data.x_train), "n_val": len(data.x_val), "n_test": len(data.x_test),
            "seed": info.get("seed") if isinstance(info.get("seed"), (int, str)) else None,
            "train": _digest([data.x_train, data.y_train]),
            "val": _digest([data.x_val, data.y_val]),
        },
        "masked_layers": sorted(masking.masks) if masking is not None else [],
        "masks_at_start": _digest(list(masking.masks.values())) if masking is not None else None,
        "weights_at_start": _digest(list(model.state_dict().values())),
        # callbacks that only observe (loggers, progress) have an empty fingerprint and may differ
        "callbacks": [{"class": type(cb).__name__, **json.loads(json.dumps(fp))}
                      for cb in callbacks if (fp := cb.fingerprint())],
        "run": json.loads(json.dumps(dict(run))) if run is not None else None,
    }


def _diff(a: Any, b: Any, prefix: str = "") -> str:
    """The first differing field of two fingerprints, as ``"name (old in the checkpoint, new now)"``."""
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        a, b = dict(enumerate(a)), dict(enumerate(b))
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return "" if a == b else f"{prefix.rstrip('.')} ({a!r} in the checkpoint, {b!r} now)"
    # the named fields first: "run.density" says more than the hash of the masks it changed
    order = sorted(set(a) | set(b), key=lambda k: (str(k) in ("masks_at_start", "weights_at_start", "architecture"), str(k)))
    for key in order:
        va, vb = a.get(key), b.get(key)
        if isinstance(va, (dict, list)) and isinstance(vb, (dict, list)):
            d = _diff(va, vb, f"{prefix}{key}.")
            if d:
                return d
        elif va != vb:
            return f"{prefix}{key} ({va!r} in the checkpoint, {vb!r} now)"
    return ""


# Checkpoints are written with the package's one atomic-write helper (rpbook.atomic_files).
save_atomic = torch_save_atomic


def _load_checkpoint(path: Path, fingerprint: dict) -> dict:
    """Read a checkpoint safely (``weights_only=True``: no code runs) and check it belongs to this run."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated, foreign or malicious file: nothing in it was executed
        lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(err).splitlines() if line.strip()]
        # torch's refusal of a pickled object names it on the "Unsupported global" line
        reason = next((line for line in lines if "Unsupported" in line), lines[0] if lines else type(err).__name__)
        reason = reason.split(". Please use")[0]  # not torch's advice to allow the object: that would run it
        raise ValueError(f"cannot read checkpoint {path}: not a genuine rpbook checkpoint ({reason[:200]}); "
                         "nothing in it was run") from None
    required = {"fingerprint": dict, "epoch": int, "step": int, "model": dict, "optimizer": dict, "masks": dict,
                "history": dict, "callbacks": list}
    if not isinstance(ckpt, dict) or any(not isinstance(ckpt.get(k), t) for k, t in required.items()):
        raise ValueError(f"{path} is not an rpbook checkpoint (or is damaged): it lacks "
                         f"{', '.join(k for k, t in required.items() if not isinstance(ckpt, dict) or not isinstance(ckpt.get(k), t))}")
    diff = _diff(ckpt["fingerprint"], fingerprint)
    if diff:
        raise ValueError(f"checkpoint {path} was written for a different run: it differs in {diff}; "
                         "use another checkpoint directory, or start over without resuming")
    if not 0 <= ckpt["epoch"] <= fingerprint["config"]["epochs"]:
        raise ValueError(f"checkpoint {path} is damaged: epoch {ckpt['epoch']} is outside 0..{fingerprint['config']['epochs']}")
    return ckpt


def check_checkpoint_dir(checkpoint_dir: str | os.PathLike, *, resume: bool) -> Path:
    """The checkpoint file in ``checkpoint_dir``, after the checks ``fit`` makes before training (chapter 3).

    Raises
    ------
    ValueError
        If ``checkpoint_dir`` is a file or not writable, if it already holds a
        checkpoint and ``resume`` is false (it would be overwritten), or if
        ``resume`` is true and it holds none.
    """
    if not isinstance(checkpoint_dir, (str, os.PathLike)) or not str(checkpoint_dir).strip():
        raise ValueError(f"checkpoint_dir must be a folder path, got {checkpoint_dir!r}")
    folder = Path(checkpoint_dir)
    path = folder / CHECKPOINT_FILE
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"checkpoint_dir {str(folder)!r} is a file, not a folder; give a folder for the checkpoints")
    if resume and not path.is_file():
        what = "does not exist" if not folder.exists() else f"holds no {CHECKPOINT_FILE}"
        raise ValueError(f"cannot resume: checkpoint_dir {str(folder)!r} {what}; check the path, "
                         "or start a new run without resuming")
    if not resume and path.exists():
        raise ValueError(f"checkpoint_dir {str(folder)!r} already holds a checkpoint of an earlier run; resume it "
                         "(resume=True, or --resume on the command line), or write to another checkpoint folder "
                         f"(or delete {str(path)!r} to start over)")
    try:  # a folder we cannot write to would fail only after the first epoch
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-probe.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ValueError(f"checkpoint_dir {str(folder)!r} is not writable: {err.strerror or err}") from None
    return path


def _rng_state() -> dict:
    """The global torch RNG streams (dropout draws from them), so a resumed run continues them."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    if isinstance(state.get("torch"), torch.Tensor):
        torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _check_finite_data(data: Any, task: str) -> None:
    """NaN or inf in the inputs would surface as a diverging loss, blamed on the learning rate."""
    for split in ("train", "val", "test"):
        for kind in ("x", "y") if task == "regression" else ("x",):
            t = getattr(data, f"{kind}_{split}")
            if isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel() and not bool(torch.isfinite(t).all()):
                bad = t.numel() - int(torch.isfinite(t).sum())
                raise ValueError(f"the data are not finite: {kind}_{split} holds {bad} NaN/inf value(s) of {t.numel()}; "
                                 "clean or impute them before training")


@torch.no_grad()
def _check_model_takes(model: nn.Module, x: torch.Tensor, ys: Sequence[torch.Tensor], task: str, device: torch.device) -> None:
    """One eval-mode forward of two examples: inputs the model cannot take, or labels beyond its outputs,
    become a ValueError now instead of a RuntimeError/IndexError from inside PyTorch later."""
    if not len(x):
        return
    was_training = model.training
    model.eval()  # no BatchNorm statistics change, no dropout draw: the run is unaffected
    try:
        out = model(x[:2].to(device))
    except RuntimeError as err:
        if isinstance(err, torch.OutOfMemoryError):
            raise
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"the model cannot take these inputs of shape {tuple(x.shape[1:])} per example: {first}") from None
    finally:
        model.train(was_training)
    if task == "regression":
        for y in ys:
            if len(y) and y[0].numel() != out[0].numel():
                raise ValueError(f"regression targets have {y[0].numel()} values per example, the model outputs {out[0].numel()}")
        return
    classes = out.shape[1] if out.dim() == 2 else None
    for y in ys:
        if len(y) and (y.is_floating_point() or y.dim() != 1):
            raise ValueError(f"classification needs integer class labels of shape (n,), got dtype {y.dtype} and shape "
                             f"{tuple(y.shape)}")
        if len(y) and classes is not None and (int(y.min()) < 0 or int(y.max()) >= classes):
            raise ValueError(f"class labels must be in 0..{classes - 1} (the model has {classes} outputs), "
                             f"got labels {int(y.min())}..{int(y.max())}")


def _has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def _progress_bar(total: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm  # imported here so the headless science never needs it

    return tqdm(total=total, desc=desc, unit="epoch", disable=not progress_enabled(enabled), leave=True)


def fit(
    model: nn.Module,
    data: Any,
    config: TrainConfig | None = None,
    *,
    masking: Masking | None = None,
    callbacks: Sequence[Callback] = (),
    device: str | torch.device | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 1,
    resume: bool = False,
    progress: bool = True,
    desc: str = "training",
    run: Mapping[str, Any] | None = None,
) -> History:
    """Train ``model`` on ``data`` and return its :class:`History` (chapter 1 first, then everywhere).

    Parameters
    ----------
    model
        The network (masked or dense).
    data
        An :class:`rpbook.data.Dataset` (``x_train``, ``y_train``, ``x_val``,
        ``y_val``, ``x_test``, ``y_test``, ``task``).
    config
        A :class:`TrainConfig`; defaults if omitted.
    masking
        The :class:`~rpbook.masks.Masking` attached to ``model``, if it is sparse.
        Masked weights and their gradients stay exactly zero.
    callbacks
        :class:`Callback` objects, called in order.
    device
        ``"cpu"``, ``"cuda"``, ``"mps"``; by default the best available.
    checkpoint_dir, checkpoint_every
        Write ``checkpoint.pt`` there every that many epochs (atomically). A
        folder that already holds a checkpoint is refused unless ``resume``.
    resume
        Continue from the checkpoint in ``checkpoint_dir`` (it must exist).
        Weights, masks, optimizer state, callback state (SET/RigL/GMP), the
        global torch RNG and the history are restored, so on the CPU the result
        equals an uninterrupted run bit for bit. Checkpoints are read with
        ``torch.load(..., weights_only=True)``: loading one never runs code.
    progress
        Show a ``tqdm`` progress bar (``TQDM_DISABLE=1`` also hides it).
    run
        A JSON-able description of how the model, mask and data were made
        (e.g. :class:`~rpbook.experiments.sparse_run.SparseRun`'s fields); it
        joins the checkpoint's fingerprint so a resume with another density,
        rule or init is refused naming that field.

    Notes
    -----
    A model with BatchNorm cannot train on a mini-batch of one example, so when
    the training set leaves a last batch of exactly one, that batch is skipped
    (each epoch shuffles, so a different example sits out each time).

    Raises
    ------
    ValueError
        For a bad config, a ``masking`` of another model, non-finite data, a
        checkpoint folder that is a file, not writable, already holds a
        checkpoint (without ``resume``) or holds none (with ``resume``), or a
        checkpoint that is damaged or written for a different run (the message
        names the first differing field).
    """
    config = config or TrainConfig()
    if not isinstance(config, TrainConfig):
        raise ValueError(f"config must be a TrainConfig, got {type(config).__name__}")
    config.validate()
    _check_number("checkpoint_every", checkpoint_every, low=1, integer=True)
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if masking is not None and (not isinstance(masking, Masking) or masking.model is not model):
        raise ValueError("masking belongs to another model: pass the Masking returned by mask_model/apply_masks for "
                         "this model (a Masking of another model would leave this one dense)")
    missing = [k for k in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
               if not isinstance(getattr(data, k, None), torch.Tensor)]
    if missing:
        raise ValueError(f"data must be an rpbook Dataset (tensors x_train, y_train, x_val, y_val, x_test, y_test); "
                         f"missing or not tensors: {', '.join(missing)}")
    if not isinstance(resume, bool):
        raise ValueError(f"resume must be True or False, got {resume!r}")
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs a checkpoint_dir")
    ckpt_path = check_checkpoint_dir(checkpoint_dir, resume=resume) if checkpoint_dir is not None else None
    dev = choose_device(device)
    task = _task(data)
    _check_finite_data(data, task)
    model.to(dev)
    _check_model_takes(model, data.x_train, [data.y_train, data.y_val, data.y_test], task, dev)
    x_train, y_train = data.x_train.to(dev), data.y_train.to(dev)
    n = len(x_train)
    if n == 0:
        raise ValueError("the training split is empty")
    if len(y_train) != n:
        raise ValueError(f"x_train and y_train must have the same number of examples, got {n} and {len(y_train)}")
    steps_per_epoch = math.ceil(n / config.batch_size)
    if n % config.batch_size == 1 and _has_batchnorm(model):
        if n == 1:
            raise ValueError("a model with BatchNorm cannot train on a single example; give at least 2")
        steps_per_epoch -= 1  # BatchNorm cannot normalise a batch of one: that example sits out this epoch
    state, scaler = _start(model, data, config, masking, dev, steps_per_epoch)
    fingerprint = _fingerprint(model, data, config, masking, callbacks, run) if ckpt_path is not None else {}
    start_epoch = 0
    if resume:
        start_epoch = _restore(state, scaler, callbacks, _load_checkpoint(ckpt_path, fingerprint), ckpt_path)
    history = state.history
    scheduler = make_scheduler(state.optimizer, config, state.total_steps, start_step=state.step)

    for cb in callbacks:
        cb.on_train_begin(state)
    bar = _progress_bar(config.epochs, progress, desc)
    bar.update(start_epoch)
    started, wall_before = time.perf_counter(), history.wall_time  # a resumed run keeps its earlier time
    model.train()
    for epoch in range(start_epoch, config.epochs):
        state.epoch = epoch
        # One generator per epoch, derived from the seed: resuming needs no saved RNG state.
        gen = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
        order = torch.randperm(n, generator=gen).to(dev)
        sum_loss, sum_correct = 0.0, 0
        for i in range(state.steps_per_epoch):
            idx = order[i * config.batch_size:(i + 1) * config.batch_size]
            xb, yb = x_train[idx], y_train[idx]
            if config.augment == "cifar":
                xb = _augment_cifar(xb, gen)
            if scheduler.last_epoch != state.step:  # the rate of this step; the last one stays for the epoch row
                scheduler.step()
            loss, out = _train_step(state, xb, yb, task, scaler, callbacks)
            sum_loss += float(loss.detach()) * len(xb)
            if task != "regression":
                sum_correct += int((out.detach().argmax(1) == yb).sum())
            for cb in callbacks:
                cb.on_step_end(state)
        n_seen = min(n, state.steps_per_epoch * config.batch_size)  # n, unless BatchNorm skipped a batch of one
        history.epochs.append(_epoch_row(state, task, sum_loss / n_seen, sum_correct / n_seen))
        for cb in callbacks:
            cb.on_epoch_end(state)
        bar.update(1)
        bar.set_postfix({k: f"{v:.3f}" for k, v in history.epochs[-1].items()
                         if k in ("train_loss", "val_acc") and v is not None})
        history.wall_time = wall_before + time.perf_counter() - started
        if ckpt_path is not None and ((epoch + 1) % checkpoint_every == 0 or epoch + 1 == config.epochs):
            _save_checkpoint(ckpt_path, fingerprint, state, scaler, callbacks)
    bar.close()
    history.wall_time = wall_before + time.perf_counter() - started
    history.test = evaluate(model, data.x_test, data.y_test, task=task)
    if not math.isfinite(history.test["loss"]):
        # the last step can still blow the weights up after a finite loss: never report it as a result
        raise FloatingPointError(f"the test loss is {history.test['loss']} after training: the weights diverged; "
                                 f"try a smaller learning rate than {config.lr}")
    for cb in callbacks:
        cb.on_train_end(state)
    return history


# ----------------------------------------------------------------------------- the steps of fit


def _start(model: nn.Module, data: Any, config: TrainConfig, masking: Masking | None, dev: torch.device,
           steps_per_epoch: int) -> tuple[TrainState, Any]:
    """The optimizer (watched by the masking), the mixed-precision scaler if any, and the run's state."""
    optimizer = make_optimizer(model, config)
    if masking is not None:
        masking.apply_()
        masking.watch(optimizer)
    use_amp = bool(config.amp) and dev.type == "cuda"
    # torch.amp.GradScaler is torch >= 2.3; Colab images with an older torch have only the CUDA one
    scaler = (torch.amp.GradScaler("cuda") if hasattr(torch.amp, "GradScaler") else torch.cuda.amp.GradScaler()) \
        if use_amp else None
    state = TrainState(model=model, optimizer=optimizer, config=config, data=data, device=dev, masking=masking,
                       history=History(), steps_per_epoch=steps_per_epoch,
                       total_steps=steps_per_epoch * config.epochs)
    return state, scaler


def _restore(state: TrainState, scaler: Any, callbacks: Sequence[Callback], ckpt: dict, path: Path) -> int:
    """Load a checkpoint into the run's state exactly; returns the epoch to continue from.

    Masks first, then the weights: ``set_mask`` zeroes weights where the mask
    changed, which must not touch the weights a DST run regrew before the
    interruption. Each callback takes the next saved state of its own class;
    the global random streams come back too.
    """
    try:
        masking = state.masking
        if masking is not None:
            if sorted(ckpt["masks"]) != sorted(masking.masks):
                raise ValueError(f"its masks name layers {sorted(ckpt['masks'])}, the model masks {sorted(masking.masks)}")
            for name, mask in ckpt["masks"].items():
                masking.set_mask(name, mask)
        state.model.load_state_dict(ckpt["model"])
        state.optimizer.load_state_dict(ckpt["optimizer"])
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        history = History.from_dict(ckpt["history"])
        saved = list(ckpt["callbacks"])
        for cb in callbacks:
            match = next((e for e in saved if e["class"] == type(cb).__name__), None)
            if match is not None:
                saved.remove(match)
                cb.load_state_dict(match["state"])
        _set_rng_state(ckpt.get("rng") or {})
        state.history = history
        state.step = ckpt["step"]
        return ckpt["epoch"]
    except (KeyError, TypeError, RuntimeError, ValueError, IndexError) as err:
        raise ValueError(f"checkpoint {path} is damaged and cannot be resumed: {err}") from None


def _train_step(state: TrainState, xb: torch.Tensor, yb: torch.Tensor, task: str, scaler: Any,
                callbacks: Sequence[Callback]) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step on a mini-batch: forward, loss, backward, gradient log, callbacks, update."""
    model, optimizer, config = state.model, state.optimizer, state.config
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device_type=state.device.type, dtype=torch.float16, enabled=scaler is not None):
        out = model(xb)
        loss = compute_loss(out.float(), yb, task, config.label_smoothing)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss became {float(loss.detach())} at epoch {state.epoch + 1}, step {state.step}; "
                                 f"try a smaller learning rate than {config.lr}")
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    else:
        loss.backward()
    state.batch, state.loss = (xb, yb), loss
    if config.grad_norm_every and state.step % config.grad_norm_every == 0:
        total, per_layer = masked_gradient_norm(model)
        if math.isfinite(total):  # mixed precision: the scaler skips steps whose gradients overflowed
            state.history.grad_norms.append({"step": state.step, "epoch": state.epoch, "total": total,
                                             "layers": per_layer})
    for cb in callbacks:
        cb.on_after_backward(state)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    state.step += 1
    return loss, out


def _epoch_row(state: TrainState, task: str, train_loss: float, train_acc: float) -> dict:
    """The history row of an epoch: its last learning rate, training loss and accuracy, validation metrics."""
    row = {"epoch": state.epoch + 1, "step": state.step, "lr": state.optimizer.param_groups[0]["lr"],
           "train_loss": train_loss, "train_acc": train_acc if task != "regression" else None}
    if len(state.data.x_val):
        val = evaluate(state.model, state.data.x_val, state.data.y_val, task=task)
        row.update(val_loss=val["loss"], val_acc=val["accuracy"])
    return row


def _save_checkpoint(path: Path, fingerprint: dict, state: TrainState, scaler: Any,
                     callbacks: Sequence[Callback]) -> None:
    """Everything a resumed run needs, written atomically."""
    save_atomic({
        "fingerprint": fingerprint, "epoch": state.epoch + 1, "step": state.step,
        "model": state.model.state_dict(), "optimizer": state.optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "masks": state.masking.masks if state.masking is not None else {},
        "history": state.history.to_dict(),
        "callbacks": [{"class": type(cb).__name__, "state": cb.state_dict()} for cb in callbacks],
        "rng": _rng_state(),
    }, path)
