"""How much wider must a random sparse network be? Coverage, required width and the width factor.

Chapter 4 (*How much wider? Overparameterization of random masks*) teaches
all of it. Gadhikar et al. (2023) show that a random Erdős–Rényi (ER) network
of density ``p`` can represent a target network when it is wider by a factor
of about ``1 / log(1 / (1 - p))``. The combinatorial core, worked out here as
the book's own derivation (appendix *Formulas and notation*, how much wider), is the *replication construction*:

- every hidden unit ``j`` of the target gets ``k`` replicas in the source;
  replica ``r`` of unit ``j`` is source unit ``j * k + r`` (replicas of one
  unit are contiguous);
- a source unit needs at least one surviving link from the ``k`` replicas of
  each of its target inputs; it then reproduces the target unit exactly,
  with the target weight shared out over the surviving links;
- each such link set fails with probability ``(1 - p) ** k``.

Headless: numpy and torch only, no plotting.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .masks import check_density
from .validators import check_positive_int

# ----------------------------------------------------------------------------- validation


def _check_delta(delta: object) -> float:
    if isinstance(delta, bool) or not isinstance(delta, numbers.Real) or not 0.0 < float(delta) < 1.0:
        raise ValueError(f"delta (the allowed failure probability) must be in (0, 1), got {delta!r}")
    return float(delta)


def _densities(density: object) -> np.ndarray:
    """Density (scalar or array) as a float array, every entry checked to lie in (0, 1]."""
    if np.ndim(density) == 0:
        return np.asarray(check_density(density))  # rejects strings and booleans by name
    arr = np.asarray(density)
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"density must be numbers in (0, 1], got {density!r}")
    arr = arr.astype(float)
    for value in arr.reshape(-1):
        check_density(float(value))
    return arr


def _widths(widths: Sequence[int]) -> tuple[int, ...]:
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence) or len(widths) < 2:
        raise ValueError(f"widths must list the target's layer sizes (input, hidden..., output), got {widths!r}")
    return tuple(check_positive_int(n, f"every layer size (in widths={tuple(widths)!r})") for n in widths)


# ----------------------------------------------------------------------------- closed forms


def width_factor(density: float | np.ndarray) -> float | np.ndarray:
    """The overparameterization factor ``1 / log(1 / (1 - p))`` of Gadhikar et al. (chapter 4).

    It is about ``1 / p`` for small ``p`` (``log(1/(1-p)) = p + p²/2 + ...``,
    so the factor is slightly *below* ``1/p``) and 0 for a dense network (``p = 1``).
    """
    p = _densities(density)
    with np.errstate(divide="ignore"):
        out = 1.0 / -np.log1p(-p)  # p = 1 gives 1 / inf = 0
    return float(out) if out.ndim == 0 else out


def coverage_probability(density: float | np.ndarray, k: int | np.ndarray) -> float | np.ndarray:
    """Probability ``1 - (1 - p) ** k`` that at least one of ``k`` candidate links survives (chapter 4).

    With independent (Bernoulli) masks this is the chance that a target edge
    is represented by at least one of its ``k`` replicas.
    """
    p = _densities(density)
    k_arr = np.asarray(k, dtype=float)
    if np.any(k_arr < 0):
        raise ValueError(f"k (replicas per edge) must be >= 0, got {k!r}")
    with np.errstate(divide="ignore", invalid="ignore"):
        out = -np.expm1(k_arr * np.log1p(-p))
    out = np.where(p >= 1.0, np.where(k_arr > 0, 1.0, 0.0), out)
    return float(out) if out.ndim == 0 else out


def all_covered_probability(density: float | np.ndarray, k: int | np.ndarray, edges: int) -> float | np.ndarray:
    """Probability that every one of ``edges`` independent edges keeps a replica: ``(1 - (1-p)^k)^edges``."""
    edges = check_positive_int(edges, "edges")
    q = coverage_probability(density, k)
    with np.errstate(divide="ignore"):
        out = np.exp(edges * np.log(np.asarray(q, dtype=float)))
    return float(out) if np.ndim(out) == 0 else out


def required_width(density: float, delta: float, edges: int) -> int:
    """Smallest ``k`` with all ``edges`` covered with probability at least ``1 - delta`` (chapter 4).

    Solves ``(1 - (1 - p)^k)^E >= 1 - delta`` exactly:
    ``k = ceil( log(1 - (1 - delta)^(1/E)) / log(1 - p) )``, which is close to
    the union bound ``log(E / delta) / log(1 / (1 - p))`` (:func:`union_bound_width`).
    """
    p = check_density(density)
    delta = _check_delta(delta)
    edges = check_positive_int(edges, "edges")
    if p == 1.0:
        return 1
    # 1 - (1 - delta)^(1/E), computed without cancellation for large E
    per_edge = -math.expm1(math.log1p(-delta) / edges)
    k = math.log(per_edge) / math.log1p(-p)
    return max(1, math.ceil(k - 1e-9))


def union_bound_width(density: float | np.ndarray, delta: float, edges: int) -> float | np.ndarray:
    """The union-bound width ``log(E / delta) / log(1 / (1 - p))``, not rounded (chapter 4).

    ``E (1 - p)^k <= delta`` guarantees that all ``E`` edges are covered with
    probability ``1 - delta``; solving for ``k`` gives this expression: the
    width factor times ``log(E / delta)``.
    """
    delta = _check_delta(delta)
    edges = check_positive_int(edges, "edges")
    return math.log(edges / delta) * width_factor(density)


# ----------------------------------------------------------------------------- the replication construction


@dataclass(frozen=True)
class LayerCondition:
    """One layer's coverage requirement in the replication construction (chapter 4).

    ``pairs`` (source unit, target input) pairs each need one of ``links``
    candidate links to survive.
    """

    layer: int
    pairs: int
    links: int


def construction_conditions(widths: Sequence[int], k: int, *, dense_first: bool = True) -> list[LayerCondition]:
    """What the replication construction needs from each masked layer of a ``k``-times wider source.

    Chapter 4. ``widths`` are the target's layer sizes ``(n_0, ..., n_L)``.
    Hidden layers are replicated ``k`` times, the input and the output are not.
    A source unit of layer ``l`` needs one link from each target input's
    replicas: ``k`` candidates, except in the first layer, where each input
    exists once (one candidate). With ``dense_first`` the first layer is kept
    dense and needs nothing.
    """
    n = _widths(widths)
    k = check_positive_int(k, "k")
    out = []
    for layer in range(1, len(n)):
        if layer == 1 and dense_first:
            continue
        k_out = 1 if layer == len(n) - 1 else k
        k_in = 1 if layer == 1 else k
        out.append(LayerCondition(layer=layer, pairs=k_out * n[layer] * n[layer - 1], links=k_in))
    return out


def construction_probability(widths: Sequence[int], density: float, k: int, *, dense_first: bool = True) -> float:
    """Probability that a Bernoulli(``p``) mask allows the whole construction (chapter 4).

    The link sets of different (source unit, target input) pairs are
    disjoint, so with independent entries the events are independent and the
    probability is the product ``prod_l (1 - (1 - p)^links_l)^pairs_l``.
    """
    p = check_density(density)
    log_prob = 0.0
    for cond in construction_conditions(widths, k, dense_first=dense_first):
        q = coverage_probability(p, cond.links)
        if q <= 0.0:
            return 0.0
        log_prob += cond.pairs * math.log(q)
    return math.exp(log_prob)


def required_width_for_network(
    widths: Sequence[int], density: float, delta: float, *, dense_first: bool = True, k_max: int = 10**7
) -> int:
    """Smallest ``k`` for which the construction succeeds with probability ``>= 1 - delta`` (chapter 4).

    Unlike :func:`required_width`, the number of conditions grows with ``k``
    (every replica needs its own links), which adds a ``log k`` to the union
    bound. The success probability is not monotone for tiny ``k``; this
    returns the first ``k`` that reaches the target.

    Raises
    ------
    ValueError
        If the first layer is masked and no ``k`` can help (one candidate link
        per pair), or if no ``k <= k_max`` suffices.
    """
    p = check_density(density)
    delta = _check_delta(delta)
    _widths(widths)
    if p == 1.0:
        return 1
    if not dense_first:
        # A masked first layer gives each (unit, input) pair a single candidate link, so its factor
        # p^(k n1 n0) falls with k while the later layers' factors rise: scan k up until that factor
        # alone is below 1 - delta; past it no width can work.
        ws = [int(w) for w in widths]
        first_pairs = ws[0] * ws[1]
        for k in range(1, k_max + 1):
            if k * first_pairs * math.log(p) < math.log(1 - delta):
                break
            if construction_probability(widths, p, k, dense_first=False) >= 1 - delta:
                return k
        raise ValueError(
            f"with a masked first layer the inputs are not replicated: each first-layer link is a single "
            f"candidate, so no width reaches 1 - delta = {1 - delta} at density {p}; use dense_first=True"
        )
    # bracket with doubling, then bisect between the last failure and the first success
    k, prev = 1, 0
    while construction_probability(widths, p, k, dense_first=dense_first) < 1 - delta:
        prev, k = k, 2 * k
        if k > k_max:
            raise ValueError(f"no width k <= k_max={k_max} reaches 1 - delta = {1 - delta} at density {p}")
    lo, hi = prev, k
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if construction_probability(widths, p, mid, dense_first=dense_first) >= 1 - delta:
            hi = mid
        else:
            lo = mid
    # the scan above assumes success stays once reached; step back while smaller k also succeed
    while hi > 1 and construction_probability(widths, p, hi - 1, dense_first=dense_first) >= 1 - delta:
        hi -= 1
    return hi


def block_link_counts(mask: torch.Tensor, k_in: int) -> torch.Tensor:
    """Surviving links from each target input's ``k_in`` replicas into each source unit (chapter 4).

    ``mask`` has shape ``(source units, n_in * k_in)`` with the replicas of one
    input contiguous; the result has shape ``(source units, n_in)``. A zero
    entry is an uncovered pair: that source unit cannot see that input.
    """
    k_in = check_positive_int(k_in, "k_in")
    if mask.dim() != 2 or mask.shape[1] % k_in:
        raise ValueError(f"mask must be 2-D with a column count divisible by k_in={k_in}, got shape {tuple(mask.shape)}")
    return mask.to(torch.int64).reshape(mask.shape[0], mask.shape[1] // k_in, k_in).sum(dim=2)


def replica_coverage(mask: torch.Tensor, k_in: int) -> float:
    """Fraction of (source unit, target input) pairs with at least one surviving link (chapter 4).

    Its expectation for a random mask of density ``p`` is
    :func:`coverage_probability` ``(p, k_in)``.
    """
    return float((block_link_counts(mask, k_in) > 0).double().mean())


@dataclass
class Construction:
    """The result of :func:`replicate_into_masks`: the source network and what it lacked."""

    model: nn.Sequential
    uncovered: int
    pairs: int

    @property
    def exact(self) -> bool:
        """True when every pair was covered, so the source computes the target exactly."""
        return self.uncovered == 0


def _linear_layers(target: nn.Module) -> list[nn.Linear]:
    layers = [m for m in target.modules() if isinstance(m, nn.Linear)]
    if not layers:
        raise ValueError("the target has no nn.Linear layers")
    for a, b in zip(layers[:-1], layers[1:]):
        if a.out_features != b.in_features:
            raise ValueError("the target's Linear layers do not chain (expected a plain MLP with ReLUs between them)")
    return layers


@torch.no_grad()
def replicate_into_masks(target: nn.Module, k: int, masks: Sequence[torch.Tensor | None]) -> Construction:
    """Build a ``k``-times wider ReLU MLP that copies ``target`` inside fixed masks (chapter 4).

    Replica ``r`` of hidden unit ``j`` is source unit ``j * k + r``. Source
    weight ``(u, (i, s)) = W[j, i] * m / c`` where ``c`` counts the surviving
    links from input ``i``'s replicas into ``u``: the replicas of ``i`` all
    carry the same value, so ``u`` receives exactly ``W[j, i] x_i``. When some
    ``c = 0`` (an uncovered pair) that term is lost and the copy is inexact.

    Parameters
    ----------
    target
        A plain ReLU MLP (``nn.Linear`` layers with ReLUs between them, e.g.
        :class:`rpbook.models.MLP`).
    k
        Replicas per hidden unit.
    masks
        One mask per target layer, of the source layer's shape
        ``(k_out n_out, k_in n_in)``, or ``None`` for a dense layer.

    Returns
    -------
    Construction
        The source network (``nn.Sequential`` of Linear/ReLU), the number of
        uncovered pairs and the number of pairs.
    """
    k = check_positive_int(k, "k")
    layers = _linear_layers(target)
    if len(masks) != len(layers):
        raise ValueError(f"need one mask (or None) per target layer: {len(layers)} layers, got {len(masks)} masks")
    modules: list[nn.Module] = []
    uncovered = pairs = 0
    for idx, (layer, mask) in enumerate(zip(layers, masks)):
        k_in = 1 if idx == 0 else k
        k_out = 1 if idx == len(layers) - 1 else k
        n_out, n_in = layer.weight.shape
        shape = (k_out * n_out, k_in * n_in)
        if mask is None:
            mask = torch.ones(shape, dtype=torch.bool)
        if tuple(mask.shape) != shape:
            raise ValueError(f"mask {idx} must have the source layer's shape {shape}, got {tuple(mask.shape)}")
        m = mask.detach().to("cpu", torch.float64)
        counts = block_link_counts(mask.detach().cpu().bool(), k_in).to(torch.float64)
        uncovered += int((counts == 0).sum())
        pairs += counts.numel()
        w = layer.weight.detach().to("cpu", torch.float64)
        w_rep = w.repeat_interleave(k_out, dim=0)  # row u = j * k_out + r holds W[j]
        share = torch.where(counts > 0, w_rep / counts.clamp(min=1), torch.zeros_like(w_rep))
        source = nn.Linear(k_in * n_in, k_out * n_out, bias=layer.bias is not None, dtype=torch.float64)
        source.weight.copy_(share.repeat_interleave(k_in, dim=1) * m)
        if layer.bias is not None:
            source.bias.copy_(layer.bias.detach().to("cpu", torch.float64).repeat_interleave(k_out))
        modules.append(source)
        if idx < len(layers) - 1:
            modules.append(nn.ReLU())
    return Construction(model=nn.Sequential(*modules), uncovered=uncovered, pairs=pairs)


# ----------------------------------------------------------------------------- reading the trained grid


def smallest_width(ks: Sequence[float], errors: Sequence[float], threshold: float) -> tuple[float, str]:
    """The smallest width factor at which ``errors`` fall to ``threshold`` (chapter 4).

    Walks the grid ``ks`` (increasing) and interpolates linearly in
    ``(log k, log error)`` between the last point above and the first point at
    or below the threshold.

    Returns
    -------
    (k, status)
        ``status`` is ``"reached"``, ``"first"`` (already reached at the
        smallest ``k``: the value is an upper bound) or ``"never"`` (``k`` is
        NaN: not reached on the grid).
    """
    k_arr = np.asarray(ks, dtype=float)
    e_arr = np.asarray(errors, dtype=float)
    if k_arr.shape != e_arr.shape or k_arr.ndim != 1 or len(k_arr) == 0:
        raise ValueError(f"ks and errors must be 1-D of the same non-zero length, got {k_arr.shape} and {e_arr.shape}")
    if np.any(np.diff(k_arr) <= 0) or np.any(k_arr <= 0):
        raise ValueError(f"ks must be positive and increasing, got {list(ks)!r}")
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0, got {threshold!r}")
    below = np.flatnonzero(e_arr <= threshold)
    if len(below) == 0:
        return float("nan"), "never"
    i = int(below[0])
    if i == 0:
        return float(k_arr[0]), "first"
    lk0, lk1 = math.log(k_arr[i - 1]), math.log(k_arr[i])
    le0, le1 = math.log(e_arr[i - 1]), math.log(e_arr[i])
    t = (math.log(threshold) - le0) / (le1 - le0) if le1 != le0 else 1.0
    return float(math.exp(lk0 + t * (lk1 - lk0))), "reached"


@dataclass(frozen=True)
class WidthFit:
    """One-constant fit ``k*(p) = c / log(1/(1-p))`` and its quality, in log space (chapter 4).

    ``r2`` is the coefficient of determination of ``log k*``; ``rms_log`` the
    root-mean-square of ``log k* - log(c w(p))`` (0.1 means about 10 %
    typical deviation); ``slope`` and ``slope_intercept`` are the free
    power-law fit ``log k* = a + slope * log w(p)``, which equals 1 if the
    theory's shape holds.
    """

    c: float
    r2: float
    rms_log: float
    slope: float
    slope_intercept: float
    n: int


def fit_width_constant(densities: Sequence[float], k_star: Sequence[float]) -> WidthFit:
    """Fit the one constant ``c`` of ``k*(p) = c / log(1/(1-p))`` by least squares in log space (chapter 4).

    NaN entries (never reached) are skipped; dense points (``p = 1``) cannot
    be fitted and are rejected.

    Raises
    ------
    ValueError
        With fewer than two usable points, or a density of 1.
    """
    p = np.asarray(densities, dtype=float)
    ks = np.asarray(k_star, dtype=float)
    if p.shape != ks.shape or p.ndim != 1:
        raise ValueError(f"densities and k_star must be 1-D of the same length, got {p.shape} and {ks.shape}")
    keep = np.isfinite(ks) & (ks > 0)
    p, ks = p[keep], ks[keep]
    if np.any(p >= 1.0):
        raise ValueError("the dense point p = 1 has width factor 0 and cannot enter the fit; drop it")
    if len(p) < 2:
        raise ValueError(f"need at least two (density, k*) points to fit, got {len(p)}")
    x = np.log(np.asarray(width_factor(p), dtype=float))
    y = np.log(ks)
    log_c = float(np.mean(y - x))
    resid = y - (log_c + x)
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum(resid ** 2)) / ss_tot if ss_tot > 0 else float("nan")
    # Closed-form least squares (np.polyfit goes through LAPACK, whose last bits vary with the BLAS build).
    slope = float(((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum())
    intercept = float(y.mean() - slope * x.mean())
    return WidthFit(c=math.exp(log_c), r2=r2, rms_log=float(np.sqrt(np.mean(resid ** 2))),
                    slope=float(slope), slope_intercept=float(intercept), n=int(len(p)))


__all__ = [
    "width_factor", "coverage_probability", "all_covered_probability", "required_width", "union_bound_width",
    "LayerCondition", "construction_conditions", "construction_probability", "required_width_for_network",
    "block_link_counts", "replica_coverage", "Construction", "replicate_into_masks",
    "smallest_width", "WidthFit", "fit_width_constant",
]
