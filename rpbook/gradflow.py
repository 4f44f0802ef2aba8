"""Gradient-flow measurements: masked gradient norms, signal propagation, Hessian–gradient products.

Chapter 5 (*Gradient flow*) teaches these, following Evci et al. (2022),
"Gradient Flow in Sparse Neural Networks and How Lottery Tickets Win"
(Evci et al. 2022): the quantity is the L2 norm of the **masked** gradient of the
**unregularized** loss (no weight decay) on a **fixed** batch, at
initialization and every few steps of training.

All functions here leave the model's ``.grad`` fields, its train/eval mode,
its weights and its BatchNorm running statistics exactly as they found them, so they can run in the middle of
training (see :class:`GradientNormLogger`).
"""
from __future__ import annotations

import math
import numbers
from typing import Any

import torch
from torch import nn

from .masks import maskable_layers
from .train import Callback, TrainState, compute_loss


def check_batch(x: object, y: object) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise ValueError(f"the batch must be two tensors (inputs, targets), got {type(x).__name__} and {type(y).__name__}")
    if len(x) == 0 or len(x) != len(y):
        raise ValueError(f"the batch must hold the same positive number of inputs and targets, got {len(x)} and {len(y)}")
    return x, y


def _weights(model: nn.Module) -> list[tuple[str, nn.Module]]:
    layers = maskable_layers(model)
    if not layers:
        raise ValueError("the model has no Conv2d/Linear layers whose gradient could be measured")
    return layers


def _mask_of(module: nn.Module) -> torch.Tensor | None:
    return getattr(module, "weight_mask", None)


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: str) -> tuple[torch.Tensor, torch.Tensor]:
    # A measurement in train mode uses the batch statistics, as training does, but must not move
    # BatchNorm's running statistics: measuring the gradient would otherwise change the trained model.
    # Momentum 0 leaves them unchanged inside the op (restoring them afterwards would bump the version
    # of tensors autograd saved); the step counter is put back by hand.
    bns = [m for m in model.modules()
           if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats]
    saved = [(m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None) for m in bns]
    for m in bns:
        m.momentum = 0.0
    try:
        out = model(x.to(_device(model)))
    finally:
        with torch.no_grad():
            for m, (momentum, tracked) in zip(bns, saved):
                m.momentum = momentum
                if tracked is not None:
                    m.num_batches_tracked.copy_(tracked)
    if out.dtype in (torch.float16, torch.bfloat16):
        out = out.float()
    return compute_loss(out, y.to(out.device), task), out


def _gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, task: str, masked: bool,
               create_graph: bool) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    x, y = check_batch(x, y)
    layers = _weights(model)
    weights = [m.weight for _, m in layers]
    loss, _ = _loss(model, x, y, task)
    grads = torch.autograd.grad(loss, weights, create_graph=create_graph, allow_unused=True)
    out = {}
    for (name, module), w, g in zip(layers, weights, grads):
        g = torch.zeros_like(w) if g is None else g
        mask = _mask_of(module)
        if masked and mask is not None:
            # The Masking hook already masks during backward; multiplying again also covers
            # backward passes inside Masking.unmasked_gradients() and masks attached by hand.
            g = g * mask
        out[name] = g
    return out, loss


def masked_gradients(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    task: str = "classification",
    masked: bool = True,
    create_graph: bool = False,
) -> dict[str, torch.Tensor]:
    """Gradient of the unregularized loss on ``(x, y)`` w.r.t. every conv/linear weight (chapter 5).

    The gradient is multiplied by each layer's ``weight_mask`` (when the model
    carries one and ``masked`` is true), which is what Evci et al. log. The
    model's ``.grad`` fields are not touched (``torch.autograd.grad``).

    Returns
    -------
    dict
        Layer name to a gradient tensor of the weight's shape.
    """
    return _gradients(model, x, y, task=task, masked=masked, create_graph=create_graph)[0]


def gradient_norm(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    task: str = "classification",
    masked: bool = True,
) -> dict[str, Any]:
    """L2 norm of the masked gradient of the unregularized loss on a fixed batch (chapter 5).

    ``||g||_2`` with ``g = m ⊙ ∇_W L(W; x, y)`` over all conv/linear weights
    (biases are not included), plus the norm of every layer's part, so that
    ``total**2 == sum(layer**2)``. The model is evaluated in its current mode.

    Returns
    -------
    dict
        ``{"total": float, "layers": {name: float}, "loss": float}``.
    """
    grads, loss = _gradients(model, x, y, task=task, masked=masked, create_graph=False)
    per_layer = {name: float(g.detach().double().norm()) for name, g in grads.items()}
    total = math.sqrt(sum(v * v for v in per_layer.values()))
    return {"total": total, "layers": per_layer, "loss": float(loss.detach())}


def hessian_gradient_product(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    task: str = "classification",
) -> dict[str, torch.Tensor]:
    """``H g`` of the masked loss by double backpropagation (chapter 5; GraSP and MetaInit use it).

    With ``g = m ⊙ ∇L`` the masked gradient, ``H g`` is the gradient of
    ``½ ||g||²`` (Evci et al. 2022), restricted to the mask: the Hessian of the
    loss as a function of the kept weights only, applied to their gradient.

    Returns
    -------
    dict
        Layer name to ``(H g)`` of the weight's shape (zero outside the mask).
    """
    layers = _weights(model)
    grads = masked_gradients(model, x, y, task=task, create_graph=True)
    half_sq = 0.5 * sum((g * g).sum() for g in grads.values())
    weights = [m.weight for _, m in layers]
    hg = torch.autograd.grad(half_sq, weights, allow_unused=True)
    out = {}
    for (name, module), w, h in zip(layers, weights, hg):
        h = torch.zeros_like(w) if h is None else h.detach()
        mask = _mask_of(module)
        out[name] = h * mask if mask is not None else h
    return out


def signal_propagation(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    task: str = "classification",
) -> dict[str, Any]:
    """Per-layer activation and gradient variance of one forward/backward pass (chapter 5).

    For every conv/linear layer ``l`` (input to output) this records

    - ``act_var``: the variance of its output (the pre-activation ``z_l``),
      over examples and units (and positions, for convs);
    - ``act_var_unit_cv``: how unequal the units are: the coefficient of
      variation, across units, of each unit's own pre-activation variance;
    - ``grad_var``: the variance of ``∂L/∂z_l``, the signal the backward pass
      carries into that layer, computed with the loss *summed* over the batch
      so that the number reflects one example's backward signal;
    - ``weight_grad_norm``: the norm of the masked weight gradient.

    A good initialization keeps ``act_var`` and ``grad_var`` of the same order
    through depth; a dense init of a sparse net shrinks both layer by layer.

    Returns
    -------
    dict
        ``{"layers": [names], "act_var": [...], "act_var_unit_cv": [...], "grad_var": [...],
        "weight_grad_norm": [...], "grad_norm": float, "loss": float}``.
    """
    x, y = check_batch(x, y)
    layers = _weights(model)
    outputs: dict[str, torch.Tensor] = {}
    handles = []
    for name, module in layers:
        def hook(mod, inp, out, name=name):
            out.retain_grad()
            outputs[name] = out
        handles.append(module.register_forward_hook(hook))
    weights = [m.weight for _, m in layers]
    try:
        loss, _ = _loss(model, x, y, task)
        acts = [outputs[name] for name, _ in layers]
        # Summed loss: each example contributes its own dL/dz, not 1/batch of it.
        grads = torch.autograd.grad(loss * len(x), acts + weights, allow_unused=True)
    finally:
        for h in handles:
            h.remove()
    n = len(layers)
    act_var, unit_cv, grad_var, wnorm = [], [], [], []
    for i, (name, module) in enumerate(layers):
        z = acts[i].detach().double()
        act_var.append(float(z.var()))
        # Spread of the per-unit variances: a layer-level correction fixes the mean, not this.
        per_unit = z.transpose(0, 1).reshape(z.shape[1], -1).var(dim=1)
        unit_cv.append(float(per_unit.std() / per_unit.mean()) if per_unit.mean() > 0 else 0.0)
        g = grads[i]
        grad_var.append(0.0 if g is None else float(g.detach().double().var()))
        gw = grads[n + i]
        if gw is None:
            wnorm.append(0.0)
            continue
        mask = _mask_of(module)
        gw = gw / len(x)  # back to the mean loss, as gradient_norm reports it
        if mask is not None:
            gw = gw * mask
        wnorm.append(float(gw.detach().double().norm()))
    return {
        "layers": [name for name, _ in layers],
        "act_var": act_var,
        "act_var_unit_cv": unit_cv,
        "grad_var": grad_var,
        "weight_grad_norm": wnorm,
        "grad_norm": math.sqrt(sum(v * v for v in wnorm)),
        "loss": float(loss.detach()),
    }


def fixed_batch(data: Any, size: int = 1000, *, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``size`` training examples after ``offset``: Evci's fixed logging batch (chapter 5).

    Evci et al. cut 2,000 training examples into two disjoint 1,000-example
    sets: one for logging gradient norms, one for RigL's grow gradients
    (``offset=size``).
    """
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    if isinstance(offset, bool) or not isinstance(offset, numbers.Integral) or offset < 0:
        raise ValueError(f"offset must be a non-negative integer, got {offset!r}")
    n = len(data.x_train)
    if offset >= n:
        raise ValueError(f"offset {offset} is past the {n} training examples")
    return data.x_train[offset:offset + size], data.y_train[offset:offset + size]


class GradientNormLogger(Callback):
    """Log the masked gradient norm on a fixed batch at step 0 and every ``every`` steps (chapter 5).

    This is Evci et al.'s protocol (Evci et al. 2022): a fixed batch (by default
    the first 1,000 training examples), the unregularized loss, the masked
    gradient, at initialization and then every ``every`` optimizer steps,
    measured after the weight update (and any mask update) of that step.

    Attributes
    ----------
    records : list of dict
        ``{"step", "total", "layers", "loss"}`` per measurement.
    """

    def __init__(self, every: int = 100, batch: tuple[torch.Tensor, torch.Tensor] | None = None,
                 batch_size: int = 1000):
        if isinstance(every, bool) or not isinstance(every, numbers.Integral) or every < 1:
            raise ValueError(f"every must be a positive integer (steps between measurements), got {every!r}")
        if batch is not None:
            check_batch(*batch)
        self.every = int(every)
        self.batch = batch
        self.batch_size = batch_size
        self.records: list[dict] = []

    def _measure(self, state: TrainState) -> None:
        if self.batch is None:
            self.batch = fixed_batch(state.data, self.batch_size)
        x, y = self.batch
        rec = gradient_norm(state.model, x, y, task=getattr(state.data, "task", "classification"))
        rec["step"] = state.step
        self.records.append(rec)

    def on_train_begin(self, state: TrainState) -> None:
        if state.step == 0 and not self.records:
            self._measure(state)

    def on_step_end(self, state: TrainState) -> None:
        if state.step % self.every == 0 or state.step == state.total_steps:
            self._measure(state)

    def steps(self) -> list[int]:
        """Steps of the measurements."""
        return [r["step"] for r in self.records]

    def totals(self) -> list[float]:
        """Total masked gradient norm of every measurement."""
        return [r["total"] for r in self.records]

    def state_dict(self) -> dict:
        return {"records": [dict(r) for r in self.records]}

    def load_state_dict(self, state: dict) -> None:
        self.records = [dict(r) for r in state.get("records", [])]


__all__ = [
    "masked_gradients", "gradient_norm", "hessian_gradient_product", "signal_propagation",
    "fixed_batch", "GradientNormLogger",
]
