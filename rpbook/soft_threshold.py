"""Soft threshold reparameterization (STR): sparsity that is learned, not scheduled.

Chapter 7 (*Sparse-to-sparse*), section *Learned and gradual sparsity from a
random source*; formulas in appendix *Formulas and notation*, sparse-to-sparse
training. Kusupati et al. (2020) train every conv/linear layer ``l`` through
its **effective weight**

    w_eff = sign(w) · relu(|w| − g(s_l)),     g = sigmoid,

with one learnable threshold ``s_l`` per layer. ``s_l`` starts very negative
(``g(s_l) ≈ 0``: nothing is thresholded), and weight decay pulls it towards 0,
so the threshold rises during training while the loss pushes back; every
weight whose magnitude falls below ``g(s_l)`` is exactly zero. The final mask
is ``w_eff ≠ 0``: how many weights survive, and in which layer, is found by
training. Gadhikar et al. (2023) run STR inside a random source mask: the
source mask multiplies first, so a weight outside it stays zero.

Why a module of its own, next to :mod:`rpbook.pruning`: STR has no score and
no threshold step a pruning schedule could call. It changes the layers
themselves (their forward computes ``w_eff``, and each gains a parameter), so
it needs attaching and detaching code that belongs to no other pruner, and
:mod:`rpbook.pruning` is already over 1,000 lines.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .masks import Masking, maskable_layers
from .train import Callback, TrainState

#: The name of the threshold parameter STR adds to each layer.
THRESHOLD_PARAM = "str_threshold"


def soft_threshold(weight: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """``sign(w) · relu(|w| − sigmoid(s))``: STR's effective weight (chapter 7; Kusupati et al. 2020).

    Every entry with ``|w| <= sigmoid(s)`` is exactly zero; the others shrink
    towards zero by the threshold. The gradient reaches ``w`` only where the
    entry survives, and reaches ``s`` from every surviving entry.
    """
    return torch.sign(weight) * torch.relu(weight.abs() - torch.sigmoid(s))


def _effective_weight(module: nn.Module) -> torch.Tensor:
    weight = module.weight
    mask = getattr(module, "weight_mask", None)
    if mask is not None:  # the source mask multiplies first: outside it the weight stays zero
        weight = weight * mask
    return soft_threshold(weight, getattr(module, THRESHOLD_PARAM))


class SoftThresholdLinear(nn.Linear):
    """A ``Linear`` layer whose forward uses STR's effective weight (made by :class:`SoftThreshold`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, _effective_weight(self), self.bias)


class SoftThresholdConv2d(nn.Conv2d):
    """A ``Conv2d`` layer whose forward uses STR's effective weight (made by :class:`SoftThreshold`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, _effective_weight(self), self.bias)


_STR_CLASS = {nn.Linear: SoftThresholdLinear, nn.Conv2d: SoftThresholdConv2d}


def check_s_init(s_init: object) -> float:
    """A finite negative initial threshold parameter; ``ValueError`` otherwise (chapter 7)."""
    if isinstance(s_init, bool) or not isinstance(s_init, numbers.Real) or not math.isfinite(s_init) or s_init >= 0:
        raise ValueError(f"s_init must be a finite negative number (sigmoid(s_init) is the starting threshold, "
                         f"near 0), got {s_init!r}")
    return float(s_init)


class SoftThreshold(Callback):
    """Attach STR to a model's conv/linear layers; as a :func:`~rpbook.train.fit` callback it adds threshold decay.

    Chapter 7. Creating the object changes the model at once: every layer of
    ``layers`` (default: all conv/linear layers) becomes its STR twin and gains
    a parameter ``str_threshold`` (one scalar ``s_l``), so the optimizer
    :func:`~rpbook.train.fit` builds trains the thresholds too, with the
    config's weight decay acting on them (as in the released STR code). Pass
    the object in ``callbacks`` to add ``threshold_decay`` on top: the extra
    decay of ``s`` alone, the knob that sets how sparse training ends.
    :meth:`finalize` writes ``w_eff`` into the weights, turns ``w_eff ≠ 0``
    into the masks and gives the plain layers back.

    Parameters
    ----------
    model
        The network, dense or with a :class:`~rpbook.masks.Masking` attached
        (the source mask multiplies before the threshold).
    s_init
        Initial ``s_l`` (negative; ``sigmoid(-10) ≈ 4.5e-5``, so almost no
        weight is thresholded at the start).
    threshold_decay
        Extra L2 decay of ``s`` added to its gradient each step (0: only the
        optimizer's weight decay).
    layers
        Names of the layers to reparameterize; default all conv/linear layers.

    Attributes
    ----------
    trace : list of dict
        ``{"epoch", "densities"}`` at the start (epoch 0) and after every
        epoch: each layer's fraction of nonzero effective weights.
    """

    def __init__(self, model: nn.Module, *, s_init: float = -10.0, threshold_decay: float = 0.0,
                 layers: Sequence[str] | None = None):
        self.s_init = check_s_init(s_init)
        if (isinstance(threshold_decay, bool) or not isinstance(threshold_decay, numbers.Real)
                or not math.isfinite(threshold_decay) or not 0 <= threshold_decay <= 1):
            raise ValueError(f"threshold_decay must be a number in [0, 1], got {threshold_decay!r}")
        self.threshold_decay = float(threshold_decay)
        available = dict(maskable_layers(model))
        names = list(available) if layers is None else list(layers)
        unknown = [n for n in names if n not in available]
        if unknown or not names:
            raise ValueError(f"STR layers must name conv/linear layers of the model; unknown: "
                             f"{', '.join(unknown) or 'none given'}; layers: {', '.join(available)}")
        for name in names:
            module = available[name]
            if type(module) not in _STR_CLASS:
                raise ValueError(f"layer {name!r} is a {type(module).__name__}; STR reparameterizes plain "
                                 f"Linear and Conv2d layers only (is STR attached already?)")
        self.model = model
        self._modules: dict[str, nn.Module] = {}
        for name in names:
            module = available[name]
            w = module.weight
            module.register_parameter(THRESHOLD_PARAM, nn.Parameter(torch.full((), self.s_init, dtype=w.dtype,
                                                                               device=w.device)))
            module.__class__ = _STR_CLASS[type(module)]
            self._modules[name] = module
        self.trace: list[dict] = []

    # -- reading
    def thresholds(self) -> dict[str, float]:
        """Each layer's current threshold ``sigmoid(s_l)``."""
        return {n: float(torch.sigmoid(getattr(m, THRESHOLD_PARAM).detach())) for n, m in self._modules.items()}

    @torch.no_grad()
    def effective_masks(self) -> dict[str, torch.Tensor]:
        """Each layer's ``w_eff ≠ 0`` as a ``bool`` CPU mask."""
        return {n: (_effective_weight(m) != 0).cpu() for n, m in self._modules.items()}

    def layer_densities(self) -> dict[str, float]:
        """Each layer's fraction of nonzero effective weights (against the full layer)."""
        return {n: float(m.float().mean()) for n, m in self.effective_masks().items()}

    def global_density(self) -> float:
        """Nonzero effective weights over all weights of the reparameterized layers."""
        masks = self.effective_masks()
        return sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())

    # -- as a callback
    def on_train_begin(self, state: TrainState) -> None:
        missing = [n for n, m in self._modules.items() if not any(p is getattr(m, THRESHOLD_PARAM)
                                                                  for g in state.optimizer.param_groups
                                                                  for p in g["params"])]
        if missing:
            raise ValueError(f"the optimizer does not train the STR thresholds of {', '.join(missing)}: create "
                             "SoftThreshold(model) before fit builds the optimizer")
        if not self.trace:
            self.trace.append({"epoch": 0, "densities": self.layer_densities()})

    def on_after_backward(self, state: TrainState) -> None:
        if self.threshold_decay:
            for m in self._modules.values():
                s = getattr(m, THRESHOLD_PARAM)
                if s.grad is None:
                    s.grad = torch.zeros_like(s)
                s.grad.add_(s.detach(), alpha=self.threshold_decay)

    def on_epoch_end(self, state: TrainState) -> None:
        self.trace.append({"epoch": state.epoch + 1, "densities": self.layer_densities()})

    def state_dict(self) -> dict:
        return {"trace": [dict(t) for t in self.trace]}

    def load_state_dict(self, state: dict) -> None:
        self.trace = [dict(t) for t in state.get("trace", [])]

    def fingerprint(self) -> dict:
        """The reparameterization: a resumed run must threshold the same way."""
        return {"s_init": self.s_init, "threshold_decay": self.threshold_decay, "layers": list(self._modules)}

    # -- leaving STR
    @torch.no_grad()
    def finalize(self, masking: Masking | None = None) -> dict[str, torch.Tensor]:
        """Write ``w_eff`` into the weights, give the plain layers back and return the masks ``w_eff ≠ 0``.

        With ``masking`` (the model's :class:`~rpbook.masks.Masking`) the
        masks are also set, so the model keeps exactly the weights STR kept
        and computes the same function. The object is spent afterwards.
        """
        if not self._modules:
            raise ValueError("this SoftThreshold was finalized already")
        masks = {}
        for name, module in self._modules.items():
            w_eff = _effective_weight(module).detach()
            module.weight.copy_(w_eff)
            masks[name] = (w_eff != 0).cpu()
            del module._parameters[THRESHOLD_PARAM]
            module.__class__ = type(module).__mro__[1]  # SoftThresholdLinear -> Linear
            if masking is not None and name in masking.masks:
                masking.set_mask(name, masks[name])
        self._modules = {}
        return masks


def density_trace_flops(trace: Sequence[Mapping[str, Any]], flops_dense: Mapping[str, int]) -> list[float]:
    """Forward FLOPs per example in each epoch of a density trace: the mean of its start and end (chapter 7).

    ``trace`` holds ``{"epoch", "densities"}`` at the start and after every
    epoch (as :class:`SoftThreshold` and :class:`~rpbook.dst.GraNet` record
    them); an epoch's FLOPs per example are ``sum_l F_l · (p_l(start) + p_l(end)) / 2``
    with ``F_l`` a layer's dense forward FLOPs (the trapezoid rule).
    """
    if len(trace) < 2:
        raise ValueError(f"a density trace needs its start and at least one epoch, got {len(trace)} entries")

    def fwd(densities: Mapping[str, float]) -> float:
        return sum(flops_dense[n] * float(p) for n, p in densities.items())

    return [0.5 * (fwd(a["densities"]) + fwd(b["densities"])) for a, b in zip(trace, trace[1:])]


__all__ = ["THRESHOLD_PARAM", "soft_threshold", "SoftThresholdLinear", "SoftThresholdConv2d", "check_s_init",
           "SoftThreshold", "density_trace_flops"]
