"""Dynamic sparse training: SET and RigL as training callbacks.

Chapter 5 (*Gradient flow*) shows that updating the mask during training
improves gradient flow (Evci et al. 2022); chapter 7 starts GraNet (gradual
pruning with RigL's regrowth, :class:`GraNet`) from random source masks. Definitions (appendix *Formulas and notation*, dynamic sparse training):

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
from .pruning import GradualMagnitudePruning, top_k_mask
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
    allowed: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One layer's mask update: drop the smallest ``|w|``, grow the highest ``grow_scores`` (chapter 5).

    ``k = round(fraction · active)`` active weights with the smallest
    magnitude leave the mask, then the ``k`` inactive positions (just-dropped
    ones included) with the highest grow score join it, so the count of active
    weights is unchanged. Ties go to the lower flat index. ``allowed`` (a 0/1
    mask) restricts growth to its positions, e.g. a random source mask
    (chapter 7's :class:`GraNet`); then at most as many weights move as the
    source has free positions, so a layer that fills its source keeps its
    weights instead of having its smallest ones zeroed and regrown in place.

    Returns
    -------
    (after_drop, after_grow, k)
        Two ``bool`` masks of the weight's shape and the number swapped.
    """
    mask = mask.detach().cpu().bool()
    active = int(mask.sum())
    k = int(round(fraction * active))
    if allowed is not None:
        allowed = allowed.detach().cpu().bool()
        # Only positions of the source outside the mask can take a dropped weight's place: without any, the
        # "regrown" weights would be the dropped ones, reset to zero.
        k = min(k, int((allowed & ~mask).sum()))
    if k == 0 or active == mask.numel():
        return mask.clone(), mask.clone(), 0
    after_drop = top_k_mask(weight.detach().cpu().abs(), mask, active - k)
    free = ~after_drop if allowed is None else ~after_drop & allowed
    grown = top_k_mask(grow_scores.detach().cpu(), free, k)
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

    def grow_region(self, name: str) -> torch.Tensor | None:
        """Where layer ``name`` may grow: ``None`` (anywhere) here; :class:`GraNet` returns its source mask."""
        return None

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
            after_drop, after_grow, k = drop_and_grow(modules[name].weight, mask, scores[name], fraction,
                                                      self.grow_region(name))
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


class GraNet(RigL):
    """GraNet (Liu et al. 2021): gradual magnitude pruning with RigL's drop-and-grow at the scheduled density.

    Chapter 7, section *Learned and gradual sparsity from a random source*
    (appendix *Formulas and notation*, sparse-to-sparse training). Every
    ``update_every`` steps until ``end`` of training, first
    :class:`~rpbook.pruning.GradualMagnitudePruning` removes the smallest
    weights (globally) down to the cubic schedule's density
    (:func:`~rpbook.pruning.cubic_density`, from the starting density: the
    source's, or 1 for a dense start, to ``final_density``), then RigL's
    update (:meth:`SET.update`) drops the fraction ``f_t`` of every layer's
    active weights by magnitude and regrows as many where the dense gradient is
    largest, so the count stays on the schedule. ``f_t`` decays from
    ``drop_fraction`` as a cosine (:func:`cosine_drop_fraction`).

    Regrowth stays inside the **starting mask** (``grow_within_source``), so
    from a random source the network never leaves it, as with IMP and STR in
    chapter 7 (Gadhikar et al. 2023); with ``grow_within_source=False`` it may
    grow anywhere, as the released GraNet does. GraNet is not in
    :data:`DST_METHODS`: that registry holds constant-count methods that
    chapter 5's pipeline runs at a fixed density.

    Attributes
    ----------
    pruning : GradualMagnitudePruning
        The schedule's pruning callback (its ``events`` record each pruning step).
    events : list of dict
        RigL's update records (see :class:`DynamicSparseTraining`).
    trace : list of dict
        ``{"epoch", "densities"}``: the layer densities at the start and after every epoch.
    """

    name, label, color = "granet", "GraNet", "#D55E00"

    def __init__(self, final_density: float, *, start: float = 0.0, end: float = 0.75, update_every: int = 100,
                 drop_fraction: float = 0.5, scope: str = "global", grow_within_source: bool = True,
                 grow_batch: tuple[torch.Tensor, torch.Tensor] | None = None, seed: int = 0):
        if not isinstance(grow_within_source, bool):
            raise ValueError(f"grow_within_source must be True or False, got {grow_within_source!r}")
        super().__init__(drop_fraction=drop_fraction, update_every=update_every, end=end, grow_batch=grow_batch,
                         seed=seed)
        # prunes at every update step (every = update_every), and last at the end of the schedule
        self.pruning = GradualMagnitudePruning(final_density, start=start, end=end, every=update_every, scope=scope)
        self.grow_within_source = grow_within_source
        self.trace: list[dict] = []
        self._source: dict[str, torch.Tensor] = {}

    def on_train_begin(self, state: TrainState) -> None:
        super().on_train_begin(state)
        self.pruning.on_train_begin(state)
        if not self._source:
            self._source = state.masking.masks
        if not self.trace:
            self.trace.append({"epoch": 0, "densities": state.masking.layer_densities()})

    def grow_region(self, name: str) -> torch.Tensor | None:
        """The starting (source) mask of layer ``name``, or ``None`` when growth may go anywhere."""
        return self._source.get(name) if self.grow_within_source else None

    def on_step_end(self, state: TrainState) -> None:
        self.pruning.on_step_end(state)   # down to the schedule's density ...
        super().on_step_end(state)        # ... then drop and regrow at that count

    def on_epoch_end(self, state: TrainState) -> None:
        self.trace.append({"epoch": state.epoch + 1, "densities": state.masking.layer_densities()})

    def state_dict(self) -> dict:
        return {**super().state_dict(), "pruning": self.pruning.state_dict(), "trace": [dict(t) for t in self.trace],
                "source": dict(self._source)}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.pruning.load_state_dict(state.get("pruning", {}))
        self.trace = [dict(t) for t in state.get("trace", [])]
        self._source = dict(state.get("source") or {})

    def fingerprint(self) -> dict:
        """RigL's schedule, the pruning schedule and where growth may go."""
        return {**super().fingerprint(), "pruning": self.pruning.fingerprint(),
                "grow_within_source": self.grow_within_source}


__all__ = ["GROW_CRITERIA", "DST_METHODS", "DST_NAMES", "register_dst", "unregister_dst", "cosine_drop_fraction", "drop_and_grow", "DynamicSparseTraining", "SET", "RigL", "GraNet"]
