"""Dynamic sparse training: SET and RigL as training callbacks.

Chapter 5 (*Gradient flow*) shows that updating the mask during training
improves gradient flow (Evci et al. 2022); chapter 7 starts DST from random
source masks. Definitions (appendix *Formulas and notation*, dynamic sparse training):

- every ``update_every`` (ΔT) steps until ``end`` (75 %) of training, each
  sparse layer **drops** the fraction ``f_t`` of its active weights with the
  smallest magnitude and **grows** as many new connections, so every layer
  keeps its count of active weights;
- **SET** (Mocanu et al. 2018) grows at random, **RigL** (Evci et al. 2020)
  where the dense gradient ``|∂L/∂w|`` is largest;
- ``f_t = f_0 / 2 · (1 + cos(π t / T_end))``: cosine decay from ``f_0 = 0.3``;
- a grown weight starts at **zero** with its optimizer state (momentum, Adam
  moments) reset; a just-dropped position may be regrown (as in RigL's code),
  and then also restarts from zero.
"""
from __future__ import annotations

import math
import numbers
from typing import Any

import torch

from .gradflow import check_batch, gradient_norm, masked_gradients
from .masks import Masking, RegisteredNames, maskable_layers
from .pruning import top_k_mask
from .train import Callback, TrainState, _digest

GROW_CRITERIA: tuple[str, ...] = ("random", "gradient")

#: Every registered DST method by name (what experiments, figures and explorers offer), see :func:`register_dst`.
DST_METHODS: dict[str, type["DynamicSparseTraining"]] = {}
#: The names of the registered DST methods (a live view of :data:`DST_METHODS`).
DST_NAMES = RegisteredNames(DST_METHODS)


def register_dst(cls: type["DynamicSparseTraining"]) -> type["DynamicSparseTraining"]:
    """Class decorator adding a DST method to :data:`DST_METHODS` under ``cls.name`` (chapter 5).

    The class declares ``name``, ``label`` and ``color`` and usually overrides
    :meth:`SET.grow_scores` only (as :class:`RigL` does).

    Raises
    ------
    ValueError
        If the class lacks a name, label or colour, or the name is taken.
    """
    for attr in ("name", "label", "color"):
        if not isinstance(getattr(cls, attr, None), str) or not getattr(cls, attr).strip():
            raise ValueError(f"a DST method declares a non-empty {attr!r}; {cls.__name__} does not")
    if cls.name in DST_METHODS:
        raise ValueError(f"DST method {cls.name!r} is already registered; registered: {', '.join(DST_METHODS)}")
    DST_METHODS[cls.name] = cls
    return cls


def unregister_dst(name: str) -> None:
    """Remove a registered DST method (tests that register a toy method clean up with this)."""
    if name not in DST_METHODS:
        raise ValueError(f"DST method {name!r} is not registered; registered: {', '.join(DST_METHODS)}")
    del DST_METHODS[name]


def cosine_drop_fraction(step: int, end_step: int, initial: float = 0.3) -> float:
    """``f_t = f_0 / 2 (1 + cos(π t / T_end))`` for ``t <= T_end``, else 0 (chapter 5, RigL)."""
    if end_step <= 0 or step >= end_step:
        return 0.0
    return 0.5 * initial * (1.0 + math.cos(math.pi * max(step, 0) / end_step))


def drop_and_grow(
    weight: torch.Tensor,
    mask: torch.Tensor,
    grow_scores: torch.Tensor,
    fraction: float,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One layer's mask update: drop the smallest ``|w|``, grow the highest ``grow_scores`` (chapter 5).

    ``k = round(fraction · active)`` active weights with the smallest
    magnitude leave the mask, then the ``k`` inactive positions (just-dropped
    ones included) with the highest grow score join it, so the count of active
    weights is unchanged. Ties go to the lower flat index.

    Returns
    -------
    (after_drop, after_grow, k)
        Two ``bool`` masks of the weight's shape and the number swapped.
    """
    mask = mask.detach().cpu().bool()
    active = int(mask.sum())
    k = int(round(fraction * active))
    if k == 0 or active == mask.numel():
        return mask.clone(), mask.clone(), 0
    after_drop = top_k_mask(weight.detach().cpu().abs(), mask, active - k)
    grown = top_k_mask(grow_scores.detach().cpu(), ~after_drop, k)
    return after_drop, after_drop | grown, k


class DynamicSparseTraining(Callback):
    """Drop by magnitude and regrow every ΔT steps (chapter 5); see :class:`SET` and :class:`RigL`.

    ``fit`` must get the :class:`~rpbook.masks.Masking` of the sparse model.
    Layers whose mask is all ones stay dense.

    Parameters
    ----------
    grow
        ``"random"`` (SET) or ``"gradient"`` (RigL).
    drop_fraction
        ``f_0``, the fraction of each layer's active weights swapped at the
        first update (0.3).
    update_every
        ΔT, optimizer steps between updates (RigL: 100).
    end
        Fraction of training after which the mask is frozen (0.75).
    grow_batch
        A fixed ``(x, y)`` for RigL's dense gradient (Evci et al. use a second
        fixed 1,000-example batch); ``None`` uses the current mini-batch.
    measure_batch
        A fixed ``(x, y)``: the masked gradient norm on it is recorded just
        before and just after every update (Evci et al.'s measurement).
    seed
        Seeds SET's random growth (one generator per update step, so resuming
        gives the same masks).

    Attributes
    ----------
    events : list of dict
        Per update: ``step``, ``drop_fraction``, ``swapped`` (total over
        layers), ``per_layer`` counts, and with a ``measure_batch``
        ``grad_norm_before`` / ``grad_norm_after``.
    """

    def __init__(self, grow: str, *, drop_fraction: float = 0.3, update_every: int = 100, end: float = 0.75,
                 grow_batch: tuple[torch.Tensor, torch.Tensor] | None = None,
                 measure_batch: tuple[torch.Tensor, torch.Tensor] | None = None, seed: int = 0):
        if grow not in GROW_CRITERIA:
            raise ValueError(f"unknown grow criterion {grow!r}; allowed: {', '.join(GROW_CRITERIA)}")
        if isinstance(drop_fraction, bool) or not isinstance(drop_fraction, numbers.Real) or not 0 < drop_fraction < 1:
            raise ValueError(f"drop_fraction must be in (0, 1), got {drop_fraction!r}")
        if isinstance(update_every, bool) or not isinstance(update_every, numbers.Integral) or update_every < 1:
            raise ValueError(f"update_every must be a positive integer (steps between mask updates), got {update_every!r}")
        if isinstance(end, bool) or not isinstance(end, numbers.Real) or not 0 < end <= 1:
            raise ValueError(f"end must be a fraction of training in (0, 1], got {end!r}")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        for what, batch in (("grow_batch", grow_batch), ("measure_batch", measure_batch)):
            if batch is not None:
                if not isinstance(batch, (tuple, list)) or len(batch) != 2:
                    raise ValueError(f"{what} must be a pair (x, y), got {type(batch).__name__}")
                check_batch(*batch)
        self.grow = grow
        self.drop_fraction = float(drop_fraction)
        self.update_every = int(update_every)
        self.end = float(end)
        self.grow_batch = grow_batch
        self.measure_batch = measure_batch
        self.seed = int(seed)
        self.events: list[dict] = []

    def on_train_begin(self, state: TrainState) -> None:
        if state.masking is None:
            raise ValueError(f"{type(self).__name__} needs fit(..., masking=...): the mask it updates")

    def end_step(self, total_steps: int) -> int:
        """The last step at which the mask may change."""
        return int(self.end * total_steps)

    def on_step_end(self, state: TrainState) -> None:
        t, t_end = state.step, self.end_step(state.total_steps)
        if t % self.update_every != 0 or t >= t_end:
            return
        self.update(state, cosine_drop_fraction(t, t_end, self.drop_fraction))

    def grow_scores(self, state: TrainState, masking: Masking) -> dict[str, torch.Tensor]:
        """Per layer, the score of every position; the highest inactive ones grow (chapter 5)."""
        if self.grow == "random":
            return self.random_scores(state, masking)
        return self.gradient_scores(state, masking)

    def random_scores(self, state: TrainState, masking: Masking) -> dict[str, torch.Tensor]:
        """SET's growth: uniform random scores, one generator per update step (so a resumed run agrees)."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + state.step)
        return {name: torch.rand(m.shape, generator=g) for name, m in masking.masks.items()}

    def gradient_scores(self, state: TrainState, masking: Masking) -> dict[str, torch.Tensor]:
        """RigL's growth: ``|dL/dw|`` of the dense gradient on ``grow_batch`` (or the current mini-batch)."""
        x, y = self.grow_batch if self.grow_batch is not None else state.batch
        task = getattr(state.data, "task", "classification")
        with masking.unmasked_gradients():
            grads = masked_gradients(state.model, x, y, task=task, masked=False)
        return {name: grads[name].detach().abs() for name in masking.masks}

    def update(self, state: TrainState, fraction: float) -> dict:
        """Swap ``fraction`` of every sparse layer's active weights now; return the event record."""
        masking = state.masking
        task = getattr(state.data, "task", "classification")
        event: dict[str, Any] = {"step": state.step, "drop_fraction": fraction}
        if self.measure_batch is not None:
            event["grad_norm_before"] = gradient_norm(state.model, *self.measure_batch, task=task)["total"]
        scores = self.grow_scores(state, masking)
        modules = dict(maskable_layers(state.model))
        per_layer = {}
        for name, mask in masking.masks.items():
            after_drop, after_grow, k = drop_and_grow(modules[name].weight, mask, scores[name], fraction)
            if k == 0:
                continue
            # Two steps so that a position dropped and regrown in the same update also
            # restarts at zero with a fresh optimizer state.
            masking.set_mask(name, after_drop, state.optimizer)
            masking.set_mask(name, after_grow, state.optimizer)
            per_layer[name] = k
        event["swapped"] = sum(per_layer.values())
        event["per_layer"] = per_layer
        if self.measure_batch is not None:
            event["grad_norm_after"] = gradient_norm(state.model, *self.measure_batch, task=task)["total"]
        self.events.append(event)
        return event

    def state_dict(self) -> dict:
        return {"events": [dict(e) for e in self.events]}

    def fingerprint(self) -> dict:
        """The method and its schedule: a resumed run must update the mask the same way."""
        return {"grow": self.grow, "drop_fraction": self.drop_fraction, "update_every": self.update_every,
                "end": self.end, "seed": self.seed,
                "grow_batch": _digest(list(self.grow_batch)) if self.grow_batch is not None else None}

    def load_state_dict(self, state: dict) -> None:
        self.events = [dict(e) for e in state.get("events", [])]


@register_dst
class SET(DynamicSparseTraining):
    """Sparse Evolutionary Training (Mocanu et al. 2018): drop by magnitude, grow at random (chapter 5)."""

    name, label, color = "set", "SET", "#CC79A7"
    grow_criterion = "random"

    def __init__(self, **options: Any):
        super().__init__(self.grow_criterion, **options)

    def grow_scores(self, state: TrainState, masking: Masking) -> dict[str, torch.Tensor]:
        """Random scores: SET grows anywhere (see :meth:`DynamicSparseTraining.random_scores`)."""
        return self.random_scores(state, masking)


@register_dst
class RigL(SET):
    """Rigging the Lottery (Evci et al. 2020): SET's drop, but grow where the dense gradient is largest (chapter 5)."""

    name, label, color = "rigl", "RigL", "#0072B2"
    grow_criterion = "gradient"

    def grow_scores(self, state: TrainState, masking: Masking) -> dict[str, torch.Tensor]:
        """``|dL/dw|`` of the dense gradient (see :meth:`DynamicSparseTraining.gradient_scores`)."""
        return self.gradient_scores(state, masking)


__all__ = ["GROW_CRITERIA", "DST_METHODS", "DST_NAMES", "register_dst", "unregister_dst", "cosine_drop_fraction", "drop_and_grow", "DynamicSparseTraining", "SET", "RigL"]
