"""Random (Erdős–Rényi) masks, layer-wise density rules, and keeping masked weights at zero.

Chapter 1 (*Start sparse*) introduces masks, density and the accounting of
parameters and FLOPs; chapter 2 (*ER masks as random graphs*) teaches the
layer-wise rules and the sampling.

Conventions used throughout the book: the **density** ``p`` is the fraction of
weights kept, the **sparsity** is ``1 - p``. Only the weights of ``nn.Conv2d``
and ``nn.Linear`` layers are masked; biases and BatchNorm never are.

Size (over 600 lines, on purpose): rules, sampling, keeping masked weights at
zero and counting parameters and FLOPs are the one concept *a mask*; each
section is headed by a comment line.
"""
from __future__ import annotations

import inspect
import math
import numbers
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

MASKABLE_TYPES = (nn.Conv2d, nn.Linear)


# ----------------------------------------------------------------------------- the rule registry


@dataclass(frozen=True)
class DensityRule:
    """A layer-wise density rule as the book shows it: how it solves the budget, its label and colour.

    ``solve(shapes, budget, dense, erk_power)`` returns one density per layer whose
    weighted sum ``sum_l p_l n_l`` equals ``budget`` (weights), with the layers
    in ``dense`` kept at density 1 (appendix *Formulas and notation*, layer-wise rules).
    A rule that can clip layers at density 1 also accepts ``redistribute=False``
    (the released code of Gadhikar et al.: clip, and lose the clipped budget).
    """

    name: str
    solve: Callable[..., list[float]]
    label: str
    color: str
    #: True for rules read off a pruning score (``snip-ratio``, ``grasp-ratio``): ``solve`` then also
    #: takes ``scores=``, one score tensor per layer (see :func:`layerwise_densities`).
    needs_scores: bool = False


#: Every registered rule by name, in registration order (what the CLI, the explorers and the figures offer).
RULE_REGISTRY: dict[str, DensityRule] = {}


class RegisteredNames(Sequence[str]):
    """A live, read-only view of a registry's names: a rule registered later shows up everywhere."""

    def __init__(self, registry: Mapping[str, object], keep: Callable[[object], bool] | None = None):
        self._registry = registry
        self._keep = keep

    def _names(self) -> tuple[str, ...]:
        return tuple(n for n, v in self._registry.items() if self._keep is None or self._keep(v))

    def __getitem__(self, i):  # type: ignore[override]
        return self._names()[i]

    def __len__(self) -> int:
        return len(self._names())

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __repr__(self) -> str:
        return repr(self._names())


#: The names of the registered rules that need only the layer shapes (a live view of :data:`RULE_REGISTRY`):
#: what the chapters' tables, figures and explorers iterate over. The score-derived rules (``snip-ratio``,
#: ``grasp-ratio``) need a data batch and are in :data:`RULE_REGISTRY` (and :data:`ALL_RULES`) only.
RULES: Sequence[str] = RegisteredNames(RULE_REGISTRY, keep=lambda rule: not rule.needs_scores)

#: Every registered rule's name, the score-derived ones included (what ``--rule`` and configs accept).
ALL_RULES: Sequence[str] = RegisteredNames(RULE_REGISTRY)


def shape_rules() -> tuple[str, ...]:
    """The registered rules that need only the layer shapes (not pruning scores): :data:`RULES` as a tuple."""
    return tuple(RULES)


def register_rule(name: str, *, label: str, color: str, needs_scores: bool = False) -> Callable:
    """Decorator adding a layer-wise density rule to :data:`RULE_REGISTRY` (chapter 2).

    The decorated function is the rule's ``solve`` (see :class:`DensityRule`);
    :func:`proportional_rule` builds one from per-layer scores ``r_l`` (``p_l = eps r_l``).
    ``label`` and ``color`` are what every figure, explorer and table shows for it.
    ``needs_scores`` marks a rule whose densities come from per-layer pruning scores.

    Raises
    ------
    ValueError
        If ``name`` is empty or already registered.
    """
    if not isinstance(name, str) or not name.strip() or name != name.strip().lower():
        raise ValueError(f"a rule name must be a non-empty lower-case string, got {name!r}")

    def decorate(solve: Callable) -> Callable:
        if name in RULE_REGISTRY:
            raise ValueError(f"rule {name!r} is already registered; registered: {', '.join(RULE_REGISTRY)}")
        RULE_REGISTRY[name] = DensityRule(name, solve, label, color, needs_scores)
        return solve

    return decorate


def unregister_rule(name: str) -> None:
    """Remove a registered rule (tests that register a toy rule clean up with this)."""
    if name not in RULE_REGISTRY:
        raise ValueError(f"rule {name!r} is not registered; registered: {', '.join(RULE_REGISTRY)}")
    del RULE_REGISTRY[name]


def proportional_rule(score: Callable[[tuple[int, ...], float], float]) -> Callable:
    """A rule's ``solve`` from a per-layer score: ``p_l = eps * score(shape_l, erk_power)`` (chapter 2).

    ``eps`` is solved from the budget, and layers that would exceed density 1
    become dense with the rest shared again (RigL's loop).
    """

    def solve(shapes: Sequence[tuple[int, ...]], budget: float, dense: set, erk_power: float,
              redistribute: bool = True) -> list[float]:
        sizes = [math.prod(s) for s in shapes]
        scores = [score(s, erk_power) for s in shapes]
        if redistribute:
            return _solve_with_dense_layers(sizes, scores, budget, dense)
        return _solve_clipped(sizes, scores, budget, dense)

    solve.__doc__ = score.__doc__
    return solve


def rule_label(rule: str) -> str:
    """The display name of a registered rule, or ``"dense"`` for the dense network (every chapter)."""
    return "dense" if rule == "dense" else RULE_REGISTRY[check_rule(rule)].label


def rule_color(rule: str) -> str:
    """The colour of a registered rule in every figure; black for the dense network."""
    return DENSE_COLOR if rule == "dense" else RULE_REGISTRY[check_rule(rule)].color


#: The dense network's colour beside the rules' (Okabe–Ito black).
DENSE_COLOR = "#000000"


# ----------------------------------------------------------------------------- validation


def check_density(density: object, what: str = "density") -> float:
    """Return ``density`` as a float in (0, 1], or raise ``ValueError`` naming the bad value.

    Chapter 1: a density is the fraction of weights a mask keeps.
    """
    if isinstance(density, bool) or not isinstance(density, numbers.Real):
        raise ValueError(f"{what} must be a number in (0, 1], got {density!r}")
    value = float(density)
    if math.isnan(value) or not 0.0 < value <= 1.0:
        raise ValueError(f"{what} must be in (0, 1] (the fraction of weights kept), got {density!r}")
    return value


def check_rule(rule: object) -> str:
    """Return the canonical rule name, or raise ``ValueError`` listing the allowed rules (chapter 2)."""
    name = str(rule).strip().lower() if isinstance(rule, str) else rule
    if name not in RULE_REGISTRY:
        raise ValueError(f"unknown layer-wise density rule {rule!r}; allowed: {', '.join(RULE_REGISTRY)}")
    return name  # type: ignore[return-value]


# ----------------------------------------------------------------------------- layers


def maskable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The ``(name, module)`` pairs whose weights rpbook masks, in forward order (chapter 1).

    These are all ``nn.Conv2d`` and ``nn.Linear`` modules in ``named_modules()`` order.
    """
    return [(name, m) for name, m in model.named_modules() if isinstance(m, MASKABLE_TYPES)]


def layer_shapes(model: nn.Module) -> list[tuple[int, ...]]:
    """Weight shapes of the maskable layers, PyTorch order ``(c_out, c_in, k_h, k_w)`` (chapter 2)."""
    return [tuple(m.weight.shape) for _, m in maskable_layers(model)]


# ----------------------------------------------------------------------------- density rules


def _solve_with_dense_layers(
    sizes: Sequence[int], scores: Sequence[float], budget: float, dense: set[int]
) -> list[float]:
    """RigL's loop: solve ``eps`` for the free layers, move layers that would exceed 1 to dense."""
    dense = set(dense)
    while True:
        free = [i for i in range(len(sizes)) if i not in dense]
        if not free:
            return [1.0] * len(sizes)
        left = budget - sum(sizes[i] for i in dense)
        eps = left / sum(scores[i] * sizes[i] for i in free)
        over = {i for i in free if eps * scores[i] > 1.0}
        if not over:
            return [1.0 if i in dense else eps * scores[i] for i in range(len(sizes))]
        # Layers that clip pay their full size; the rest of the budget is shared again,
        # so the realized global density stays equal to the request.
        dense |= over


def _solve_clipped(sizes: Sequence[int], scores: Sequence[float], budget: float, dense: set[int]) -> list[float]:
    """The released code's semantics: solve ``eps`` once for the free layers, clip at 1, keep what is left.

    The budget of clipped layers is *not* handed to the others, so the realized
    global density falls below the request whenever a layer clips (chapter 2,
    *Where this book differs from the papers' code*).
    """
    free = [i for i in range(len(sizes)) if i not in dense]
    if not free:
        return [1.0] * len(sizes)
    left = budget - sum(sizes[i] for i in dense)
    eps = left / sum(scores[i] * sizes[i] for i in free)
    return [1.0 if i in dense else min(1.0, eps * scores[i]) for i in range(len(sizes))]


def _solve_pyramidal(sizes: Sequence[int], budget: float, dense: set[int]) -> list[float]:
    """Densities ``r**k`` for the free layers (k = 1, 2, ... from the input), ``r`` solving the budget."""
    free = [i for i in range(len(sizes)) if i not in dense]
    left = budget - sum(sizes[i] for i in dense)
    if not free:
        return [1.0] * len(sizes)
    if left >= sum(sizes[i] for i in free):
        return [1.0] * len(sizes)

    def spent(r: float) -> float:
        return sum(sizes[i] * r ** (k + 1) for k, i in enumerate(free))

    lo, hi = 0.0, 1.0  # spent() is increasing on [0, 1]: bisection finds the unique root
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if spent(mid) < left:
            lo = mid
        else:
            hi = mid
    r = 0.5 * (lo + hi)
    out = [1.0] * len(sizes)
    for k, i in enumerate(free):
        out[i] = r ** (k + 1)
    return out


# The five rules of chapter 2; colours are Okabe–Ito, so they stay apart for colour-blind readers.


@register_rule("uniform", label="uniform", color="#0072B2")
@proportional_rule
def _uniform(shape: tuple[int, ...], erk_power: float) -> float:
    """Uniform: every layer gets the global density, ``p_l = p``."""
    return 1.0


@register_rule("er", label="ER", color="#009E73")
@proportional_rule
def _er(shape: tuple[int, ...], erk_power: float) -> float:
    """ER (Mocanu et al.): ``p_l ∝ (c_in + c_out) / (c_in c_out)``, the kernel size ignored."""
    c_out, c_in = shape[0], shape[1]
    return (c_in + c_out) / (c_in * c_out)


@register_rule("erk", label="ERK", color="#E69F00")
@proportional_rule
def _erk(shape: tuple[int, ...], erk_power: float) -> float:
    """ERK (Evci et al.): ``p_l ∝ (sum of dims / product of dims) ** erk_power``."""
    return (sum(shape) / math.prod(shape)) ** erk_power


@register_rule("balanced", label="balanced", color="#CC79A7")
@proportional_rule
def _balanced(shape: tuple[int, ...], erk_power: float) -> float:
    """Balanced (Gadhikar et al.): the same number of nonzeros in every layer, ``p_l = X / n_l``."""
    return 1.0 / math.prod(shape)


@register_rule("pyramidal", label="pyramidal", color="#56B4E9")
def _pyramidal(shapes: Sequence[tuple[int, ...]], budget: float, dense: set, erk_power: float,
               redistribute: bool = True) -> list[float]:
    """Pyramidal (Gadhikar et al.): ``p_l = r**l`` from the input, ``r`` the root of the budget.

    ``r <= 1`` never clips a layer, so ``redistribute`` changes nothing here.
    """
    return _solve_pyramidal([math.prod(s) for s in shapes], budget, dense)


def pyramidal_ratio(shapes: Sequence[tuple[int, ...]], density: float) -> float:
    """The ratio ``r`` of the pyramidal rule, ``sum_l n_l r**l = p N`` (chapter 2, appendix *Formulas and notation*, layer-wise rules)."""
    sizes = [math.prod(s) for s in shapes]
    dens = _solve_pyramidal(sizes, check_density(density) * sum(sizes), set())
    return dens[0]


# The "+" variants of Liu et al. (2022) and the rules read off a pruning score (chapter 3, *More layer-wise rules*).

#: The classifier floor of uniform+ (Gale et al. 2019, as in Liu et al.'s ``uniform_plus``).
UNIFORM_PLUS_LAST_FLOOR = 0.2


def _solve_pinned(sizes: Sequence[int], scores: Sequence[float], budget: float, dense: set[int],
                  pinned: Mapping[int, float]) -> list[float] | None:
    """Densities with the layers in ``pinned`` fixed, the proportional rule on the rest; None if unaffordable.

    Unaffordable means the pinned layers leave no budget (or no layer) for the free ones.
    """
    pinned = {i: (1.0 if i in dense else t) for i, t in pinned.items()}
    free = [i for i in range(len(sizes)) if i not in pinned]
    left = budget - sum(sizes[i] * t for i, t in pinned.items())
    if not free or left <= sum(sizes[i] for i in free if i in dense) or left <= 0:
        return None
    sub = _solve_with_dense_layers([sizes[i] for i in free], [scores[i] for i in free], left,
                                   {k for k, i in enumerate(free) if i in dense})
    out = [0.0] * len(sizes)
    for i, t in pinned.items():
        out[i] = t
    for k, i in enumerate(free):
        out[i] = sub[k]
    return out


def _solve_plus(shapes: Sequence[tuple[int, ...]], budget: float, dense: set, scores: Sequence[float], *,
                first_dense: bool, last_floor: float) -> list[float]:
    """The "+" recipe: first layer dense, last layer at least ``last_floor``, the base rule on the rest.

    The pins are dropped (the last floor first) where the budget cannot pay them
    while leaving weights for the other layers (e.g. an MLP at 1 % density, whose
    first layer alone is 13 % of the weights); then the base rule applies.
    """
    sizes = [math.prod(s) for s in shapes]
    last = len(sizes) - 1
    attempts = []
    if first_dense and last_floor > 0:
        attempts.append(({0: 1.0}, True))
    if first_dense:
        attempts.append(({0: 1.0}, False))
    if last_floor > 0:
        attempts.append(({}, True))
    for pins, floor_last in attempts:
        if last in pins:
            continue
        out = _solve_pinned(sizes, scores, budget, dense, pins)
        if out is not None and floor_last and out[last] < last_floor:
            out = _solve_pinned(sizes, scores, budget, dense, {**pins, last: last_floor})
        if out is not None:
            return out
    return _solve_with_dense_layers(sizes, scores, budget, dense)


@register_rule("uniform+", label="uniform+", color="#D55E00")
def _uniform_plus(shapes: Sequence[tuple[int, ...]], budget: float, dense: set, erk_power: float) -> list[float]:
    """Uniform+ (Gale et al.; Liu et al.'s ``uniform_plus``): first layer dense, last at least 0.2, uniform elsewhere."""
    return _solve_plus(shapes, budget, dense, [1.0] * len(shapes), first_dense=True,
                       last_floor=UNIFORM_PLUS_LAST_FLOOR)


@register_rule("erk+", label="ERK+", color="#F0E442")
def _erk_plus(shapes: Sequence[tuple[int, ...]], budget: float, dense: set, erk_power: float) -> list[float]:
    """ERK+ (Liu et al.'s ``ERK_plus``): the last (classifier) layer dense, ERK on the others."""
    scores = [(sum(s) / math.prod(s)) ** erk_power for s in shapes]
    return _solve_plus(shapes, budget, dense, scores, first_dense=False, last_floor=1.0)


def _solve_from_scores(shapes: Sequence[tuple[int, ...]], budget: float, dense: set, erk_power: float, *,
                       scores: Sequence[torch.Tensor]) -> list[float]:
    """Per-layer densities read off the global top-k of ``scores`` (Liu et al.'s SNIP / GraSP ratios).

    ``k`` is the budget left after the dense layers. Each free layer's share of
    the top-k, ``k_l / n_l``, becomes its ratio ``r_l``; a layer the top-k leaves
    empty gets half a weight's worth (so random sampling keeps one weight and the
    layer is not cut off, where Liu et al.'s Bernoulli draw would cut it). The
    proportional solver then meets the budget exactly (RigL's loop), so
    ``p_l ≈ k_l / n_l``.
    """
    sizes = [math.prod(s) for s in shapes]
    if len(scores) != len(shapes):
        raise ValueError(f"got {len(scores)} score tensors for {len(shapes)} layers")
    for s, shape in zip(scores, shapes):
        if not isinstance(s, torch.Tensor) or s.numel() != math.prod(shape):
            raise ValueError(f"each layer's scores must be a tensor with one entry per weight of shape {shape}")
    free = [i for i in range(len(sizes)) if i not in dense]
    if not free:
        return [1.0] * len(sizes)
    layer_scores = [scores[i].detach().reshape(-1).to("cpu", torch.float32) for i in free]
    total = sum(sizes[i] for i in free)
    k = min(total, int(round(budget - sum(sizes[i] for i in dense))))
    counts = [0] * len(free)
    if k > 0:
        # The k-th largest score is the threshold (one selection, not a sort); entries above it are kept and
        # ties at it are filled in layer order, so the same scores always give the same counts.
        flat = np.concatenate([s.numpy() for s in layer_scores])
        threshold = np.partition(flat, total - k)[total - k]
        above = [int(np.count_nonzero(s.numpy() > threshold)) for s in layer_scores]
        ties = [int(np.count_nonzero(s.numpy() == threshold)) for s in layer_scores]
        need = k - sum(above)
        for j in range(len(free)):
            take = min(need, ties[j])
            counts[j] = above[j] + take
            need -= take
    ratios = [1.0] * len(sizes)
    for c, i in zip(counts, free):
        ratios[i] = max(float(c), 0.5) / sizes[i]
    return _solve_with_dense_layers(sizes, ratios, budget, dense)


register_rule("snip-ratio", label="SNIP-ratio", color="#999999", needs_scores=True)(_solve_from_scores)
register_rule("grasp-ratio", label="GraSP-ratio", color="#882255", needs_scores=True)(_solve_from_scores)

#: The score method (:mod:`rpbook.pruning` registry name) each score-derived rule reads its densities from.
SCORE_RULE_METHODS: dict[str, str] = {"snip-ratio": "snip", "grasp-ratio": "grasp"}


def needs_scores(rule: str) -> bool:
    """True if the rule's densities come from pruning scores (pass ``layer_scores``; chapter 3)."""
    return RULE_REGISTRY[check_rule(rule)].needs_scores


def layerwise_densities(
    shapes: Sequence[tuple[int, ...]],
    density: float,
    rule: str = "erk",
    *,
    dense_first: bool = False,
    dense_last: bool = False,
    erk_power: float = 1.0,
    redistribute: bool = True,
    layer_scores: Sequence[torch.Tensor] | None = None,
) -> list[float]:
    """Per-layer densities ``p_l`` whose weighted mean is the requested global density.

    Chapter 2, *Layer-wise density rules*. ``sum_l p_l n_l = p N`` holds exactly
    for every rule (before rounding to whole weights):

    - ``uniform``: ``p_l = p``.
    - ``er``: ``p_l ∝ (c_in + c_out) / (c_in c_out)`` (kernel size ignored).
    - ``erk``: ``p_l ∝ (sum of dims / product of dims) ** erk_power``.
    - ``balanced``: the same number of nonzeros per layer, ``p_l ∝ 1 / n_l``.
    - ``pyramidal``: ``p_l = r**l`` from the input, ``r`` the positive root of the budget.
    - ``uniform+``: first layer dense, last at least 0.2, uniform elsewhere; ``erk+``: last layer dense, ERK elsewhere
      (Liu et al. 2022; the pins are dropped where the budget cannot pay them).
    - ``snip-ratio``, ``grasp-ratio``: each layer's share of the global top-``pN`` of
      ``layer_scores`` (Liu et al. 2022); the masks are then random with those densities.

    Layers whose density would exceed 1 become dense and the rest of the budget
    is shared among the others (RigL's loop). Unlike the released code of
    Gadhikar et al., this is also done for ``balanced`` (there the clipped
    budget is lost, so ResNet-18 at p = 0.1 realizes 0.079); ``redistribute=False``
    gives those released-code semantics for every rule. ``dense_first`` /
    ``dense_last`` keep those layers dense, paid from the same budget.

    Parameters
    ----------
    shapes
        Weight shapes of the maskable layers in forward order (see :func:`layer_shapes`).
    density
        Requested global density in (0, 1].
    rule
        A name in :data:`RULE_REGISTRY` (see :func:`register_rule`).
    dense_first, dense_last
        Keep the first / last layer dense.
    erk_power
        Exponent of the ERK score; 1 is ERK, 0 gives uniform.
    redistribute
        ``True`` (the default, the book's rule): the budget of layers clipped at
        density 1 is shared among the others, so the realized density equals the
        request. ``False``: clip without sharing, as the released code of
        Gadhikar et al. does; the realized density can then be lower.
    layer_scores
        One score tensor per layer (the weight's shape), required by the score-derived rules
        (see :func:`needs_scores`, :func:`rpbook.pruning.compute_scores`) and ignored by the others.

    Returns
    -------
    list of float
        One density in (0, 1] per layer.

    Raises
    ------
    ValueError
        For a density outside (0, 1], an unknown rule, no layers, or dense
        first/last layers that alone need more than the budget.
    """
    p = check_density(density)
    rule = check_rule(rule)
    if isinstance(erk_power, bool) or not isinstance(erk_power, numbers.Real) or not math.isfinite(erk_power):
        raise ValueError(f"erk_power must be a finite number, got {erk_power!r}")
    shapes = [tuple(int(d) for d in s) for s in shapes]
    if not shapes:
        raise ValueError("the model has no maskable (Conv2d or Linear) layers")
    for s in shapes:
        if len(s) < 2 or min(s) < 1:
            raise ValueError(f"weight shape {s} is not a conv or linear weight (need >= 2 positive dims)")
    sizes = [math.prod(s) for s in shapes]
    total = sum(sizes)
    budget = p * total
    dense: set[int] = set()
    if dense_first:
        dense.add(0)
    if dense_last:
        dense.add(len(shapes) - 1)
    fixed = sum(sizes[i] for i in dense)
    if fixed > budget * (1 + 1e-12):
        raise ValueError(
            f"density {p} is too low to keep the first/last layer dense: those layers alone need "
            f"density {fixed / total:.4g}; lower the request or drop dense_first/dense_last"
        )
    if not isinstance(redistribute, bool):
        raise ValueError(f"redistribute must be True or False, got {redistribute!r}")
    if p == 1.0:
        return [1.0] * len(shapes)
    entry = RULE_REGISTRY[rule]
    if entry.needs_scores:
        if layer_scores is None:
            raise ValueError(f"rule {rule!r} reads its densities off pruning scores: pass layer_scores "
                             f"(one tensor per layer, e.g. from rpbook.pruning.compute_scores)")
        if not redistribute:
            raise ValueError(f"rule {rule!r} has no released-code variant: redistribute=False does not apply")
        return entry.solve(shapes, budget, dense, float(erk_power), scores=list(layer_scores))
    if redistribute:
        return entry.solve(shapes, budget, dense, float(erk_power))
    if "redistribute" not in inspect.signature(entry.solve).parameters:
        raise ValueError(f"rule {rule!r} has no released-code variant: its solve takes no redistribute= option")
    return entry.solve(shapes, budget, dense, float(erk_power), redistribute=False)


def layer_counts(shapes: Sequence[tuple[int, ...]], densities: Sequence[float]) -> list[int]:
    """Exact number of kept weights per layer: ``round(p_l n_l)``, at least 1 (chapter 2).

    Keeping at least one weight means no layer is cut off entirely by rounding.
    """
    if len(shapes) != len(densities):
        raise ValueError(f"got {len(densities)} densities for {len(shapes)} layers")
    counts = []
    for shape, p in zip(shapes, densities):
        n = math.prod(shape)
        counts.append(min(n, max(1, int(round(check_density(p, "layer density") * n)))))
    return counts


# ----------------------------------------------------------------------------- sampling


def _generator(seed: int | None, generator: torch.Generator | None) -> torch.Generator:
    if generator is not None:
        return generator
    if seed is None:
        raise ValueError("pass a seed or a torch.Generator so that masks are reproducible")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return torch.Generator().manual_seed(int(seed))


def sample_er_mask(
    shape: Sequence[int],
    density: float,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A uniformly random mask with exactly ``round(density * numel)`` ones (at least one).

    Chapter 2: each layer's mask is an Erdős–Rényi random bipartite graph. Exact
    counts (as in RigL) rather than Bernoulli draws keep reported densities exact.

    Returns
    -------
    torch.Tensor
        A ``bool`` tensor of the given shape, on the CPU.
    """
    shape = tuple(int(d) for d in shape)
    if not shape or min(shape) < 1:
        raise ValueError(f"mask shape must have positive dimensions, got {shape}")
    k = layer_counts([shape], [density])[0]
    g = _generator(seed, generator)
    n = math.prod(shape)
    flat = torch.zeros(n, dtype=torch.bool)
    flat[torch.randperm(n, generator=g)[:k]] = True
    return flat.view(shape)


#: How :func:`repair_dead_units` pays for an added edge: ``swap`` removes one elsewhere (the count is kept),
#: ``add`` only adds (the released code of Gadhikar et al.; the count grows). Chapter 3, *Does repair matter?*
REPAIR_MODES: tuple[str, ...] = ("swap", "add")


def check_repair(repair: object) -> str | None:
    """``None`` for no repair, else the repair mode; ``True`` means ``"swap"`` (chapter 2, *Isolated units*)."""
    if repair is False or repair is None:
        return None
    if repair is True:
        return "swap"
    if isinstance(repair, str) and repair in REPAIR_MODES:
        return repair
    raise ValueError(f"repair must be False, True or one of {', '.join(REPAIR_MODES)}, got {repair!r}")


def repair_dead_units(mask: torch.Tensor, *, seed: int | None = None, generator: torch.Generator | None = None,
                      mode: str = "swap") -> torch.Tensor:
    """Give every unit with no incoming or no outgoing connection one edge, keeping the count.

    Chapter 2, *Isolated units*. For a conv layer the unit is a channel and a
    channel edge exists when any kernel entry survives (appendix *Formulas and notation*, masks as graphs). Each
    added edge is paid for by removing a random edge between two units that
    keep at least one other edge, so the number of kept weights is unchanged
    (the released code of Gadhikar et al. only adds). Only when no such edge
    is left (fewer kept weights than units to connect) does the count grow.
    ``mode="add"`` is the authors' variant: edges are added, none removed.
    """
    if mode not in REPAIR_MODES:
        raise ValueError(f"repair mode must be one of {', '.join(REPAIR_MODES)}, got {mode!r}")
    if mask.dim() < 2:
        raise ValueError(f"expected a conv or linear mask with >= 2 dims, got shape {tuple(mask.shape)}")
    g = _generator(seed, generator)
    rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=g)))
    m = mask.detach().to("cpu", torch.bool).numpy().copy()
    n_out, n_in = m.shape[0], m.shape[1]
    k = int(np.prod(m.shape[2:])) if m.ndim > 2 else 1
    flat = m.reshape(n_out, n_in, k)
    row_count = flat.sum(axis=(1, 2)).astype(np.int64)
    col_count = flat.sum(axis=(0, 2)).astype(np.int64)
    kept = list(np.flatnonzero(flat))

    def removable_exists() -> bool:
        if not kept:
            return False
        idx = np.asarray(kept, dtype=np.int64)
        rows, cols = idx // (n_in * k), (idx % (n_in * k)) // k
        return bool(np.any((row_count[rows] >= 2) & (col_count[cols] >= 2)))

    def remove_one() -> None:
        if mode == "add":
            return
        # Checked first so that a layer with too few weights to move (the count must grow)
        # costs one vectorised scan per unit instead of a long fruitless rejection loop.
        if not removable_exists():
            return
        # Rejection sampling: a random kept entry whose row and column keep another entry.
        for _ in range(10_000):
            if not kept:
                return
            j = int(rng.integers(len(kept)))
            flat_idx = kept[j]
            a, rest = divmod(flat_idx, n_in * k)
            b = rest // k
            if row_count[a] >= 2 and col_count[b] >= 2:
                flat.reshape(-1)[flat_idx] = False
                row_count[a] -= 1
                col_count[b] -= 1
                kept[j] = kept[-1]
                kept.pop()
                return

    def add(a: int, b: int) -> None:
        pos = int(rng.integers(k))
        flat[a, b, pos] = True
        row_count[a] += 1
        col_count[b] += 1
        kept.append((a * n_in + b) * k + pos)

    for a in np.flatnonzero(row_count == 0):
        add(int(a), int(rng.integers(n_in)))
        remove_one()
    for b in np.flatnonzero(col_count == 0):
        add(int(rng.integers(n_out)), int(b))
        remove_one()
    return torch.from_numpy(flat.reshape(m.shape).copy())


def sample_masks(
    model: nn.Module,
    density: float,
    rule: str = "erk",
    *,
    seed: int = 0,
    dense_first: bool = False,
    dense_last: bool = False,
    erk_power: float = 1.0,
    repair: bool | str = False,
    redistribute: bool = True,
    layer_scores: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Sample one exact-count ER mask per maskable layer of ``model`` (chapter 2).

    The options are those of :func:`layerwise_densities` (``redistribute=False``:
    the released code's clipping), ``repair`` (``True``/``"swap"`` or ``"add"``, see
    :func:`repair_dead_units`) and ``layer_scores`` (layer name to score tensor) for
    the score-derived rules.

    Returns
    -------
    dict
        Layer name to ``bool`` mask of the layer's weight shape. The same seed
        gives the same masks bit for bit.
    """
    mode = check_repair(repair)
    layers = maskable_layers(model)
    shapes = [tuple(m.weight.shape) for _, m in layers]
    scores = None
    if layer_scores is not None:
        missing = [name for name, _ in layers if name not in layer_scores]
        if missing:
            raise ValueError(f"layer_scores has no scores for layer(s) {', '.join(missing)}")
        scores = [layer_scores[name] for name, _ in layers]
    densities = layerwise_densities(
        shapes, density, rule, dense_first=dense_first, dense_last=dense_last, erk_power=erk_power,
        redistribute=redistribute, layer_scores=scores,
    )
    g = _generator(seed, None)
    masks = {}
    for (name, _), shape, p in zip(layers, shapes, densities):
        mask = sample_er_mask(shape, p, generator=g)
        if mode is not None and p < 1.0:
            mask = repair_dead_units(mask, generator=g, mode=mode)
        masks[name] = mask
    return masks


# ----------------------------------------------------------------------------- masking a model


def _live_owner(module: nn.Module) -> "Masking | None":
    """The Masking that hooks this module now, or None (also for a deep copy's stale buffer)."""
    ref = getattr(module, "_rpbook_mask_owner", None)
    owner = ref() if ref is not None else None
    if owner is not None and any(m is module for m in owner._modules.values()):
        return owner
    return None


def _mask_gradient(module: nn.Module, masking: "Masking", grad: torch.Tensor) -> torch.Tensor:
    if masking._unmasked:
        return grad
    return grad * module.weight_mask


class Masking:
    """Attach masks to a model and keep every masked weight, and its gradient, exactly zero.

    Chapter 1. Each mask lives next to the weight it masks, as a non-persistent
    buffer ``weight_mask`` (so ``model.to(device)`` moves it and the model's
    ``state_dict`` stays that of the dense architecture). A gradient hook
    multiplies each weight's gradient by its mask during ``backward``, so logged
    gradient norms are the masked ones; with a zero gradient, SGD (momentum,
    Nesterov, weight decay), Adam and AdamW all leave a zero weight at zero.
    :meth:`watch` additionally re-applies the masks after every optimizer step,
    which guards against optimizers that move zero-gradient weights.
    ``benchmarks/mask_overhead.py`` measures this against ``torch.nn.utils.prune``
    and ``parametrize``.

    Parameters
    ----------
    model
        The network; its ``Conv2d``/``Linear`` layers can be masked.
    masks
        Layer name to a 0/1 (or bool) tensor of the weight's shape. Layers not
        named stay dense.
    """

    def __init__(self, model: nn.Module, masks: Mapping[str, torch.Tensor]):
        layers = dict(maskable_layers(model))
        for name, mask in masks.items():
            if name not in layers:
                allowed = ", ".join(layers) or "none"
                raise ValueError(f"mask names layer {name!r}, which is not a Conv2d/Linear layer of the model; layers: {allowed}")
            weight = layers[name].weight
            if not isinstance(mask, torch.Tensor):
                raise ValueError(f"mask for layer {name!r} must be a tensor, got {type(mask).__name__}")
            if tuple(mask.shape) != tuple(weight.shape):
                raise ValueError(
                    f"mask for layer {name!r} has shape {tuple(mask.shape)} but the layer's weight has shape {tuple(weight.shape)}"
                )
            if mask.dtype != torch.bool and not bool(((mask == 0) | (mask == 1)).all()):
                raise ValueError(f"mask for layer {name!r} must contain only 0 and 1")
            if _live_owner(layers[name]) is not None:
                raise ValueError(f"layer {name!r} already carries a mask; call Masking.remove() first")
        self.model = model
        self._unmasked = False
        self._handles: list = []
        self._modules: dict[str, nn.Module] = {}
        for name, mask in masks.items():
            module = layers[name]
            if hasattr(module, "weight_mask"):  # a stale buffer, e.g. copied by copy.deepcopy
                del module.weight_mask
            module.register_buffer("weight_mask", mask.detach().to(module.weight.device, module.weight.dtype), persistent=False)
            self._handles.append(module.weight.register_hook(lambda g, m=module: _mask_gradient(m, self, g)))
            module._rpbook_mask_owner = weakref.ref(self)
            self._modules[name] = module
        self.apply_()

    @classmethod
    def from_model(cls, model: nn.Module) -> "Masking":
        """Re-attach the masks a model already carries, e.g. after ``copy.deepcopy``.

        ``deepcopy`` copies the ``weight_mask`` buffers but not the gradient
        hooks, so a copied sparse model must be re-attached before training.
        """
        masks = {name: m.weight_mask.detach().clone() for name, m in maskable_layers(model)
                 if hasattr(m, "weight_mask") and _live_owner(m) is None}
        return cls(model, masks)

    # -- the invariant
    @torch.no_grad()
    def apply_(self) -> None:
        """Zero every masked weight (in place)."""
        if self._modules:
            # one fused call for all layers: this runs after every optimizer step
            modules = list(self._modules.values())
            torch._foreach_mul_([m.weight for m in modules], [m.weight_mask for m in modules])

    def watch(self, optimizer: torch.optim.Optimizer) -> None:
        """Re-apply the masks after every ``optimizer.step()``."""
        self._handles.append(optimizer.register_step_post_hook(lambda *_: self.apply_()))

    @contextmanager
    def unmasked_gradients(self) -> Iterator[None]:
        """Inside this block backward gives dense gradients (RigL's grow criterion, chapter 5)."""
        self._unmasked = True
        try:
            yield
        finally:
            self._unmasked = False

    @torch.no_grad()
    def set_mask(self, name: str, mask: torch.Tensor, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Replace one layer's mask (dynamic sparse training, chapter 5).

        Weights that leave the mask are zeroed. Optimizer state (momentum, Adam
        moments) is zeroed wherever the mask changed, so a regrown weight starts
        from zero with a fresh state and a dropped one cannot drift back.
        """
        if name not in self._modules:
            raise ValueError(f"layer {name!r} is not masked; masked layers: {', '.join(self._modules)}")
        module = self._modules[name]
        if not isinstance(mask, torch.Tensor):
            raise ValueError(f"mask for layer {name!r} must be a tensor, got {type(mask).__name__}")
        if mask.dtype != torch.bool and not bool(((mask == 0) | (mask == 1)).all()):  # 2.0 or NaN: not a mask
            raise ValueError(f"mask for layer {name!r} must contain only 0 and 1")
        if tuple(mask.shape) != tuple(module.weight.shape):
            raise ValueError(
                f"mask for layer {name!r} has shape {tuple(mask.shape)} but the layer's weight has shape {tuple(module.weight.shape)}"
            )
        new = mask.detach().to(module.weight.device, module.weight.dtype)
        changed = new != module.weight_mask
        module.weight_mask.copy_(new)
        module.weight.mul_(new)
        module.weight[changed] = 0.0
        if optimizer is not None:
            state = optimizer.state.get(module.weight, {})
            for value in state.values():
                if isinstance(value, torch.Tensor) and value.shape == module.weight.shape:
                    value[changed] = 0

    def remove(self) -> None:
        """Detach hooks and buffers; the weights keep their zeros."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
        for module in self._modules.values():
            del module.weight_mask
            del module._rpbook_mask_owner
        self._modules.clear()

    # -- views
    @property
    def masks(self) -> dict[str, torch.Tensor]:
        """Layer name to ``bool`` mask (CPU copies)."""
        return {name: m.weight_mask.detach().to("cpu").bool() for name, m in self._modules.items()}

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Masks for a checkpoint."""
        return self.masks

    def layer_densities(self) -> dict[str, float]:
        """Realized density of every maskable layer (1.0 for unmasked layers)."""
        return layer_densities(self.model)

    def global_density(self) -> float:
        """Realized global density over all maskable weights."""
        return global_density(self.model)


def apply_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> Masking:
    """Attach ``masks`` to ``model`` and zero the masked weights (chapter 1). See :class:`Masking`."""
    return Masking(model, masks)


def mask_model(
    model: nn.Module,
    density: float,
    rule: str = "erk",
    *,
    seed: int = 0,
    dense_first: bool = False,
    dense_last: bool = False,
    erk_power: float = 1.0,
    repair: bool | str = False,
    redistribute: bool = True,
    layer_scores: Mapping[str, torch.Tensor] | None = None,
) -> Masking:
    """Sample ER masks for ``model`` with a layer-wise rule and attach them (chapters 1–3)."""
    masks = sample_masks(
        model, density, rule, seed=seed, dense_first=dense_first, dense_last=dense_last,
        erk_power=erk_power, repair=repair, redistribute=redistribute, layer_scores=layer_scores,
    )
    return Masking(model, masks)


# ----------------------------------------------------------------------------- accounting


def _layer_mask(module: nn.Module) -> torch.Tensor | None:
    return getattr(module, "weight_mask", None)


def layer_densities(model: nn.Module) -> dict[str, float]:
    """Realized density of each maskable layer: kept weights over all weights (chapter 1)."""
    out = {}
    for name, module in maskable_layers(model):
        mask = _layer_mask(module)
        out[name] = 1.0 if mask is None else float(mask.sum()) / mask.numel()
    return out


def global_density(model: nn.Module) -> float:
    """Kept maskable weights over all maskable weights (chapter 1)."""
    kept = total = 0
    for _, module in maskable_layers(model):
        mask = _layer_mask(module)
        total += module.weight.numel()
        kept += module.weight.numel() if mask is None else int(mask.sum())
    return kept / total if total else 1.0


def count_nonzero_parameters(model: nn.Module) -> int:
    """All parameters minus the masked-out weights (biases and BatchNorm always count)."""
    n = sum(p.numel() for p in model.parameters())
    for _, module in maskable_layers(model):
        mask = _layer_mask(module)
        if mask is not None:
            n -= mask.numel() - int(mask.sum())
    return n


@dataclass
class LayerAccount:
    """One row of a :class:`SparsityReport`."""

    name: str
    kind: str
    shape: tuple[int, ...]
    params: int
    nonzero: int
    density: float
    flops_dense: int
    flops_sparse: int


@dataclass
class SparsityReport:
    """Per-layer and total density, parameters and FLOPs per example (chapter 1).

    FLOPs count a multiply-add as two operations and cover conv and linear
    weights only (biases, BatchNorm and activations are a few percent at most).
    """

    layers: list[LayerAccount] = field(default_factory=list)

    @property
    def params(self) -> int:
        return sum(r.params for r in self.layers)

    @property
    def nonzero(self) -> int:
        return sum(r.nonzero for r in self.layers)

    @property
    def density(self) -> float:
        return self.nonzero / self.params if self.params else 1.0

    @property
    def flops_dense(self) -> int:
        return sum(r.flops_dense for r in self.layers)

    @property
    def flops_sparse(self) -> int:
        return sum(r.flops_sparse for r in self.layers)

    def rows(self) -> list[dict]:
        """One dict per layer plus a ``total`` row, for tables and JSON."""
        rows = [
            {"layer": r.name, "kind": r.kind, "shape": "×".join(map(str, r.shape)), "weights": r.params,
             "kept": r.nonzero, "density": r.density, "MFLOPs dense": r.flops_dense / 1e6,
             "MFLOPs sparse": r.flops_sparse / 1e6}
            for r in self.layers
        ]
        rows.append({"layer": "total", "kind": "", "shape": "", "weights": self.params, "kept": self.nonzero,
                     "density": self.density, "MFLOPs dense": self.flops_dense / 1e6,
                     "MFLOPs sparse": self.flops_sparse / 1e6})
        return rows

    def __str__(self) -> str:
        rows = self.rows()
        head = f"{'layer':<22}{'shape':>16}{'weights':>11}{'kept':>10}{'density':>9}{'MFLOPs dense':>14}{'MFLOPs sparse':>15}"
        lines = [head, "-" * len(head)]
        for r in rows:
            if r["layer"] == "total":
                lines.append("-" * len(head))
            lines.append(
                f"{r['layer']:<22}{r['shape']:>16}{r['weights']:>11,}{r['kept']:>10,}{r['density']:>9.3f}"
                f"{r['MFLOPs dense']:>14.3f}{r['MFLOPs sparse']:>15.3f}"
            )
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = self.rows()
        cols = list(rows[0])
        fmt = {"density": "{:.3f}", "MFLOPs dense": "{:.3f}", "MFLOPs sparse": "{:.3f}", "weights": "{:,}", "kept": "{:,}"}
        body = "".join(
            "<tr>" + "".join(f"<td>{fmt.get(c, '{}').format(r[c])}</td>" for c in cols) + "</tr>" for r in rows
        )
        return f"<table><thead><tr>{''.join(f'<th>{c}</th>' for c in cols)}</tr></thead><tbody>{body}</tbody></table>"


@torch.no_grad()
def sparsity_report(model: nn.Module, in_shape: Sequence[int]) -> SparsityReport:
    """Density, kept weights and dense/sparse FLOPs per example of every maskable layer (chapter 1).

    A dummy forward pass of one example of shape ``in_shape`` finds each
    layer's number of output positions; the model's train/eval mode and
    BatchNorm statistics are left as they were.
    """
    layers = maskable_layers(model)
    positions: dict[str, int] = {}
    handles = []
    for name, module in layers:
        def hook(mod, inp, out, name=name):
            positions[name] = int(out[0, 0].numel()) if isinstance(mod, nn.Conv2d) else int(out[..., 0].numel())
        handles.append(module.register_forward_hook(hook))
    was_training = model.training
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    try:
        model.eval()
        model(torch.zeros((1, *in_shape), device=device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    report = SparsityReport()
    for name, module in layers:
        mask = _layer_mask(module)
        n = module.weight.numel()
        kept = n if mask is None else int(mask.sum())
        pos = positions.get(name, 0)
        report.layers.append(LayerAccount(
            name=name, kind="conv" if isinstance(module, nn.Conv2d) else "linear",
            shape=tuple(module.weight.shape), params=n, nonzero=kept, density=kept / n,
            flops_dense=2 * n * pos, flops_sparse=2 * kept * pos,
        ))
    return report
