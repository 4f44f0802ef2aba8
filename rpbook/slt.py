"""Strong lottery tickets: random SubsetSum, the logarithmic construction, and edge-popup.

Chapter 6 (*Strong lottery tickets*) teaches all of it:

- **SubsetSum.** Among ``n`` random numbers, the subset whose sum is closest
  to a target, solved exactly by meet-in-the-middle (:func:`solve_subset_sum`),
  and its error statistics (Lueker 1998): the error falls exponentially in ``n``.
- **The construction** of Pensia et al. (2020): a target ReLU network without
  biases is approximated by *pruning* a random network twice as deep and
  ``n = O(log(d l / eps))`` times wider, one subset-sum per target weight,
  no weight training (:func:`subset_sum_ticket`, appendix *Formulas and notation*, strong lottery tickets).
- **edge-popup** (Ramanujan et al. 2020): frozen random weights, a real score
  per edge, each layer keeps its top-``k`` scores, the scores learn through a
  straight-through gradient (:func:`to_edge_popup`, appendix *Formulas and notation*, strong lottery tickets; Ramanujan et al. 2020). A fixed
  Erdős–Rényi *source mask* restricts the search (Gadhikar et al. 2023,
  ER source networks); the top-``k`` is then taken among the allowed entries of the
  *flattened* mask.
- **The redundant structure** (Pensia et al. 2020, their edge-popup
  experiment): the construction's random network as an ordinary MLP with a
  fixed block structure mask (:func:`subset_sum_architecture`), searched by
  edge-popup with the kept fraction counted among its existing edges, against
  a plain MLP widened to as many edges (:func:`matched_width`).

Headless: numpy and torch only, no plotting.

Size (over 600 lines, on purpose): the three ways chapter 6 finds a strong
ticket (subset sum, the construction built from it, edge-popup) share the
solver and the top-κ machinery; together they are the chapter's one concept.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .validators import check_positive_int, check_seed
from .masks import Masking, check_density, maskable_layers
from .train import TrainConfig

__all__ = [
    "MAX_EXACT_N", "NUMBER_DISTRIBUTIONS", "SubsetSumSolution", "solve_subset_sum", "solve_subset_sums", "random_numbers",
    "subset_sum_errors", "poisson_error_estimate", "MAX_WORST_CASE_N", "worst_case_error",
    "bias_free_mlp", "scale_to_unit_weights", "SubsetSumTicket", "subset_sum_ticket", "gadget_weights",
    "sphere_inputs", "predict", "sup_error",
    "gadget_structure_mask", "subset_sum_architecture", "subset_sum_architecture_params", "mlp_params",
    "matched_width", "DENSITY_BASES", "STRUCTURES",
    "WEIGHT_INITS", "EdgePopupLinear", "EdgePopupConv2d", "to_edge_popup", "edge_popup_layers",
    "edge_popup_masks", "kept_count", "EdgePopupRun", "train_edge_popup",
]

#: Largest ``n`` the exact meet-in-the-middle search accepts (2 × 2^16 partial sums per instance).
MAX_EXACT_N = 32

#: Distributions of the random numbers of a SubsetSum instance (chapter 6).
NUMBER_DISTRIBUTIONS: tuple[str, ...] = ("uniform", "product")


# ============================================================================= SubsetSum


def _subset_bits(m: int) -> torch.Tensor:
    """All ``2**m`` subsets of ``m`` items as rows of 0/1 (row ``s`` is the binary expansion of ``s``)."""
    codes = torch.arange(2 ** m, dtype=torch.int64)
    return ((codes.unsqueeze(1) >> torch.arange(m, dtype=torch.int64)) & 1).to(torch.float64)


def _meet_in_the_middle(values: torch.Tensor, targets: torch.Tensor, chunk: int = 1 << 22) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact best subsets for a batch: ``values`` (B, m), ``targets`` (B, T) → ``selected`` (B, T, m), ``sums`` (B, T).

    Split the numbers into halves A and B and list the ``2**(m/2)`` sums of
    each half. For every target ``t`` and every A-sum ``a`` the best B-sum is a
    neighbour of ``t - a`` in the sorted B-sums (binary search). So the optimum
    over all ``2**m`` subsets costs ``O(2**(m/2) log 2**(m/2))`` per target.
    """
    batch, m = values.shape
    n_targets = targets.shape[1]
    m_a = m // 2
    rows_per_piece = max(1, chunk // (1 << m_a))
    if batch > rows_per_piece:  # bound memory in the batch too: rows are independent instances
        pieces = [_meet_in_the_middle(values[i:i + rows_per_piece], targets[i:i + rows_per_piece], chunk)
                  for i in range(0, batch, rows_per_piece)]
        return torch.cat([p[0] for p in pieces]), torch.cat([p[1] for p in pieces])
    bits_a, bits_b = _subset_bits(m_a), _subset_bits(m - m_a)
    sums_a = values[:, :m_a] @ bits_a.T                      # (B, Na)
    sums_b, order_b = torch.sort(values[:, m_a:] @ bits_b.T, dim=1)  # (B, Nb)
    n_a, n_b = sums_a.shape[1], sums_b.shape[1]
    best_a = torch.empty(batch, n_targets, dtype=torch.int64)
    best_b = torch.empty(batch, n_targets, dtype=torch.int64)
    # Chunk the targets so that (B, chunk, Na) stays a few million entries.
    step = max(1, chunk // max(1, batch * n_a))
    rows = torch.arange(batch).view(batch, 1, 1)
    for lo in range(0, n_targets, step):
        t = targets[:, lo:lo + step]                          # (B, t)
        need = t.unsqueeze(2) - sums_a.unsqueeze(1)           # (B, t, Na)
        pos = torch.searchsorted(sums_b, need.reshape(batch, -1)).view_as(need)
        cand = torch.stack([(pos - 1).clamp(0, n_b - 1), pos.clamp(0, n_b - 1)], dim=-1)  # (B, t, Na, 2)
        got = sums_b[rows.unsqueeze(-1), cand] + sums_a.view(batch, 1, n_a, 1)
        err = (got - t.view(batch, -1, 1, 1)).abs().reshape(batch, t.shape[1], -1)
        flat = err.argmin(dim=2)                              # first minimum: deterministic ties
        best_a[:, lo:lo + step] = flat // 2                   # (A-sum, candidate) pairs were flattened
        best_b[:, lo:lo + step] = torch.gather(cand.reshape(batch, t.shape[1], -1), 2, flat.unsqueeze(2)).squeeze(2)
    sel_a = bits_a[best_a].bool()                             # (B, T, m_a)
    sel_b = bits_b[order_b.gather(1, best_b)].bool()          # (B, T, m - m_a)
    selected = torch.cat([sel_a, sel_b], dim=2)
    # Recompute the sums from the chosen subsets so that sums and subsets agree to the last bit.
    sums = (selected.to(torch.float64) * values.unsqueeze(1)).sum(dim=2)
    return selected, sums


def _as_float64(x: object, what: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x, dtype=np.float64))
    if not torch.isfinite(t).all():
        raise ValueError(f"{what} must be finite numbers, got {x!r}")
    return t


@dataclass(frozen=True)
class SubsetSumSolution:
    """The best subsets for one or many targets (chapter 6).

    ``selected[..., i]`` says whether number ``i`` is in the subset, ``sums``
    is the subset's sum and ``errors`` is ``|target - sum|``, the smallest
    possible over all ``2**n`` subsets.
    """

    values: np.ndarray
    targets: np.ndarray
    selected: np.ndarray
    sums: np.ndarray
    errors: np.ndarray


def solve_subset_sum(values: Sequence[float] | np.ndarray, targets: float | Sequence[float] | np.ndarray) -> SubsetSumSolution:
    """The subset of ``values`` whose sum is closest to each target, exactly (chapter 6, *SubsetSum*).

    Meet-in-the-middle: ``O(2**(n/2) n)`` work per target instead of ``2**n``;
    ``n = 24`` numbers and a thousand targets take well under a second.

    Parameters
    ----------
    values
        ``n`` real numbers, ``0 <= n <=`` :data:`MAX_EXACT_N`.
    targets
        One number or an array of them.

    Returns
    -------
    SubsetSumSolution
        ``selected`` has shape ``targets.shape + (n,)``; ``sums`` and
        ``errors`` have the shape of ``targets``.
    """
    v = _as_float64(values, "values")
    if v.ndim != 1:
        raise ValueError(f"values must be a 1-D list of numbers, got shape {tuple(v.shape)}")
    if v.numel() > MAX_EXACT_N:
        raise ValueError(f"exact SubsetSum is limited to n <= {MAX_EXACT_N} numbers, got n = {v.numel()}")
    t = _as_float64(targets, "targets")
    shape = tuple(t.shape)
    selected, sums = _meet_in_the_middle(v.unsqueeze(0), t.reshape(1, -1))
    sel = selected[0].reshape(*shape, v.numel()).numpy()
    s = sums[0].reshape(shape).numpy()
    return SubsetSumSolution(values=v.numpy(), targets=t.numpy(), selected=sel, sums=s, errors=np.abs(t.numpy() - s))


def solve_subset_sums(values: torch.Tensor | np.ndarray, targets: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Many independent instances at once: row ``b`` of ``values`` (B, n) approximates ``targets[b]`` (chapter 6).

    The construction of :func:`subset_sum_ticket` solves one instance per
    target weight this way.

    Returns
    -------
    selected, sums
        A ``bool`` tensor (B, n) and the float64 sums (B,).
    """
    v = _as_float64(values, "values")
    t = _as_float64(targets, "targets")
    if v.ndim != 2 or t.shape != (v.shape[0],):
        raise ValueError(f"values must have shape (B, n) and targets (B,), got {tuple(v.shape)} and {tuple(t.shape)}")
    if v.shape[1] > MAX_EXACT_N:
        raise ValueError(f"exact SubsetSum is limited to n <= {MAX_EXACT_N} numbers, got n = {v.shape[1]}")
    if v.shape[0] == 0:
        return torch.zeros(v.shape, dtype=torch.bool), torch.zeros(0, dtype=torch.float64)
    selected, sums = _meet_in_the_middle(v, t.unsqueeze(1))
    return selected[:, 0], sums[:, 0]


def random_numbers(n: int, *, seed: int, distribution: str = "uniform", size: int | None = None) -> np.ndarray:
    """``n`` i.i.d. numbers for a SubsetSum instance (chapter 6).

    ``uniform``: ``U[-1, 1]``. ``product``: ``a * b`` with ``a, b ~ U[-1, 1]``
    independent, the path weight of one hidden unit in Pensia et al.'s gadget.
    ``size`` draws that many independent sets at once (shape ``(size, n)``).
    """
    n = check_positive_int(n, "n", minimum=0)
    if distribution not in NUMBER_DISTRIBUTIONS:
        raise ValueError(f"unknown distribution {distribution!r}; allowed: {', '.join(NUMBER_DISTRIBUTIONS)}")
    rng = np.random.default_rng(check_seed(seed))
    shape = (n,) if size is None else (check_positive_int(size, "size"), n)
    x = rng.uniform(-1.0, 1.0, size=shape)
    if distribution == "product":
        x = x * rng.uniform(-1.0, 1.0, size=shape)
    return x


def subset_sum_errors(n: int, targets: Sequence[float] | np.ndarray, *, sets: int, seed: int,
                      distribution: str = "uniform") -> np.ndarray:
    """Best-subset errors of ``sets`` random instances of ``n`` numbers for every target (chapter 6).

    Returns
    -------
    np.ndarray
        Shape ``(sets, len(targets))``: ``errors[s, j]`` is the smallest
        ``|targets[j] - sum(S)|`` over the subsets ``S`` of instance ``s``.
    """
    sets = check_positive_int(sets, "sets")
    t = np.asarray(targets, dtype=np.float64).reshape(-1)
    pools = random_numbers(n, seed=seed, distribution=distribution, size=sets)
    out = np.empty((sets, t.size))
    for s in range(sets):
        out[s] = solve_subset_sum(pools[s], t).errors
    return out


#: Largest ``n`` for which :func:`worst_case_error` lists all ``2**n`` sums (128 MB at 24).
MAX_WORST_CASE_N = 24


def worst_case_error(values: Sequence[float] | np.ndarray, low: float = -1.0, high: float = 1.0) -> float:
    """The worst target in ``[low, high]``: ``sup_z min_S |z - Σ_S|``, exactly (chapter 6, Lueker's quantity).

    The distance to the nearest subset sum is piecewise linear in ``z``, so
    its largest value is at an end of the interval or halfway between two
    neighbouring subset sums: half the widest gap. Lists all ``2**n`` sums,
    so ``n <=`` :data:`MAX_WORST_CASE_N`.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(v)):
        raise ValueError(f"values must be finite numbers, got {values!r}")
    if v.size > MAX_WORST_CASE_N:
        raise ValueError(f"worst_case_error lists all 2**n subset sums; n must be <= {MAX_WORST_CASE_N}, got {v.size}")
    if not low < high:
        raise ValueError(f"need low < high, got low={low!r}, high={high!r}")
    half = v.size // 2
    sums_a = (_subset_bits(half).numpy() @ v[:half])
    sums_b = (_subset_bits(v.size - half).numpy() @ v[half:])
    sums = np.sort((sums_a[:, None] + sums_b[None, :]).ravel())
    ends = np.array([low, high])
    pos = np.searchsorted(sums, ends)
    dist_ends = np.minimum(np.abs(ends - sums[np.clip(pos - 1, 0, sums.size - 1)]),
                           np.abs(ends - sums[np.clip(pos, 0, sums.size - 1)]))
    mids = 0.5 * (sums[1:] + sums[:-1])
    inside = (mids >= low) & (mids <= high)
    gaps = 0.5 * np.diff(sums)[inside]
    return float(max(dist_ends.max(), gaps.max() if gaps.size else 0.0))


def poisson_error_estimate(n: int | np.ndarray, target: float | np.ndarray = 0.0, distribution: str = "uniform",
                           statistic: str = "mean") -> np.ndarray:
    """A back-of-the-envelope best-subset error: mean ``1 / (2 λ)``, median ``ln 2 / (2 λ)`` (chapter 6).

    The ``2**n`` subset sums are treated as a Poisson process whose intensity
    near ``z`` is ``λ(z) = 2**n φ(z)``, with ``φ`` the normal density of a
    random subset sum (mean 0, variance ``n v / 2`` where ``v`` is the
    variance of one number: 1/3 for ``U[-1, 1]``, 1/9 for a product). The
    distance from ``z`` to the nearest point of such a process is exponential
    with rate ``2 λ``. A heuristic, not Lueker's bound: it predicts that every
    extra number halves the error.
    """
    if distribution not in NUMBER_DISTRIBUTIONS:
        raise ValueError(f"unknown distribution {distribution!r}; allowed: {', '.join(NUMBER_DISTRIBUTIONS)}")
    if statistic not in ("mean", "median"):
        raise ValueError(f"statistic must be 'mean' or 'median', got {statistic!r}")
    n_arr = np.asarray(n, dtype=float)
    if np.any(n_arr < 1):
        raise ValueError(f"n must be >= 1, got {n!r}")
    v = 1 / 3 if distribution == "uniform" else 1 / 9
    var = n_arr * v / 2
    z = np.asarray(target, dtype=float)
    density = np.exp(-z ** 2 / (2 * var)) / np.sqrt(2 * np.pi * var)
    factor = 1.0 if statistic == "mean" else math.log(2.0)
    return factor / (2.0 * 2.0 ** n_arr * density)


# ============================================================================= the construction


def bias_free_mlp(in_features: int, hidden: Sequence[int], num_classes: int) -> nn.Sequential:
    """A ReLU MLP without biases, the kind of target Pensia et al.'s theorem covers (chapter 6).

    Built from :class:`rpbook.models.MLP` (layers ``fc1, fc2, ...``) with every
    bias removed: ``f(c x) = c f(x)`` for ``c > 0``, so the network is
    positively homogeneous and its sup over the unit ball is a sup over the sphere.
    """
    from .models import MLP

    model = MLP(in_features, tuple(hidden), num_classes)
    for _, layer in maskable_layers(model):
        layer.register_parameter("bias", None)
    return model


def _target_layers(target: nn.Module) -> list[nn.Linear]:
    layers = maskable_layers(target)
    if not layers:
        raise ValueError("the target has no Linear layers")
    out = []
    for name, layer in layers:
        if not isinstance(layer, nn.Linear):
            raise ValueError(f"the construction handles Linear layers only; {name!r} is a {type(layer).__name__}")
        if layer.bias is not None and bool(layer.bias.detach().abs().max() > 0):
            raise ValueError(f"layer {name!r} has a nonzero bias; the construction needs a bias-free target "
                             "(see bias_free_mlp)")
        out.append(layer)
    for name, module in target.named_modules():
        if module is target or isinstance(module, (nn.Linear, nn.ReLU, nn.Flatten, nn.Sequential)):
            continue
        raise ValueError(f"the target may contain only Flatten, Linear and ReLU layers; {name!r} is a {type(module).__name__}")
    # The construction rebuilds the target as Linear (ReLU Linear)*: a ReLU missing between two layers,
    # or one after the last, would make it (and its error bound) describe a different function.
    leaves = [m for m in target.modules() if not list(m.children())]
    kinds = "".join("L" if isinstance(m, nn.Linear) else "R" for m in leaves if not isinstance(m, nn.Flatten))
    expected = "L" + "RL" * (len(out) - 1)
    if not isinstance(target, nn.Sequential) or kinds != expected or any(
            isinstance(m, nn.Flatten) for m in leaves[1:]):
        found = " ".join({"L": "Linear", "R": "ReLU"}[k] for k in kinds)
        raise ValueError(f"the target must be an nn.Sequential of [Flatten] Linear (ReLU Linear)*, with no ReLU "
                         f"after the last layer; found: {found}")
    return out


#: How :func:`scale_to_unit_weights` normalises each layer.
SCALE_NORMS: tuple[str, ...] = ("spectral", "max")


@torch.no_grad()
def scale_to_unit_weights(target: nn.Module, norm: str = "spectral") -> tuple[nn.Sequential, float]:
    """A float64 copy of a bias-free ReLU MLP with each layer divided by its norm (chapter 6).

    ``spectral`` divides ``W`` by its largest singular value, so ``||W|| = 1``
    as in Pensia et al.'s theorem (appendix *Formulas and notation*, strong lottery tickets); every entry then lies in
    ``[-1, 1]`` and ``||f(x)|| <= ||x||``. ``max`` divides by the largest
    ``|w|`` instead (entries exactly fill ``[-1, 1]``). A ReLU network without
    biases is positively homogeneous layer by layer, so the copy computes
    ``f(x) / c`` with ``c`` the product of the norms: same predicted classes,
    same decision regions.

    Returns
    -------
    (model, c)
        The scaled copy (float64, eval mode) and ``c``.
    """
    if norm not in SCALE_NORMS:
        raise ValueError(f"unknown norm {norm!r}; allowed: {', '.join(SCALE_NORMS)}")
    layers = _target_layers(target)
    modules: list[nn.Module] = [nn.Flatten()]
    scale = 1.0
    for i, layer in enumerate(layers):
        w = layer.weight.detach().double().cpu()
        s = float(torch.linalg.matrix_norm(w, ord=2)) if norm == "spectral" else float(w.abs().max())
        if s == 0:
            raise ValueError(f"layer {i + 1} of the target is all zeros")
        lin = nn.Linear(w.shape[1], w.shape[0], bias=False, dtype=torch.float64)
        lin.weight.copy_(w / s)
        modules.append(lin)
        if i < len(layers) - 1:
            modules.append(nn.ReLU())
        scale *= s
    model = nn.Sequential(*modules).eval()
    return model, scale


def gadget_weights(a: torch.Tensor, b: torch.Tensor, keep_a: torch.Tensor, keep_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The two weights a pruned gadget realises: ``(w⁺, w⁻)`` (chapter 6, *From numbers to networks*).

    One input ``x`` feeds hidden units ``σ(a_i x)``, which feed one output with
    weights ``b_i``. A unit with ``a_i > 0`` is silent for ``x < 0``, one with
    ``a_i < 0`` for ``x > 0``, so the block computes ``w⁺ x`` for ``x >= 0``
    and ``w⁻ x`` for ``x < 0`` with ``w^± = Σ a_i b_i`` over the kept units of
    the matching sign. It is linear (``= w x``) when ``w⁺ = w⁻ = w``.
    """
    path = a * b * keep_a * keep_b
    return (path * (a > 0)).sum(-1), (path * (a < 0)).sum(-1)


@dataclass
class SubsetSumTicket:
    """A strong lottery ticket built by the SubsetSum construction (chapter 6).

    ``source`` is the random network (layers ``fc1 .. fc{2l}``, entries
    ``U[-1, 1]``), ``masks`` the pruning, ``ticket`` the pruned source (a copy
    carrying the masks through :class:`rpbook.masks.Masking`) and ``target``
    the network it approximates. Pruned block ``i`` computes exactly
    ``plus[i] @ relu(x) - minus[i] @ relu(-x)``: the target's ``W x`` with
    ``W`` replaced by ``plus[i]`` on positive and ``minus[i]`` on negative
    inputs. Everything is float64.
    """

    target: nn.Sequential
    source: nn.Sequential
    ticket: nn.Sequential
    masks: dict[str, torch.Tensor]
    n: int
    plus: list[torch.Tensor]
    minus: list[torch.Tensor]
    widths: list[int] = field(default_factory=list)

    @property
    def target_weights(self) -> list[torch.Tensor]:
        """The target's weight matrices, input to output."""
        return [m.weight.detach() for _, m in maskable_layers(self.target)]

    @property
    def weight_errors(self) -> list[torch.Tensor]:
        """Per target layer and entry: ``max(|W - W⁺|, |W - W⁻|)``, the error of that weight's gadget."""
        return [torch.maximum((p - w).abs(), (m - w).abs()) for w, p, m in zip(self.target_weights, self.plus, self.minus)]

    def error_bound(self) -> float:
        """A guaranteed sup error on the unit ball: ``prod_i (1 + e_i) - 1`` (chapter 6).

        ``e_i = ||[W⁺ - W, W⁻ - W]||_F`` bounds how far block ``i`` is from
        ``W_i`` relative to its input norm (``x = relu(x) - relu(-x)`` and
        the two parts are orthogonal). If every target layer has spectral
        norm ``<= 1`` (:func:`scale_to_unit_weights`) the errors compound to
        at most ``prod_i (1 + e_i) - 1`` for ``||x|| <= 1``. ``inf`` when a
        target layer has a larger norm, where this argument does not hold.
        """
        bound = 1.0
        for w, p, m in zip(self.target_weights, self.plus, self.minus):
            if float(torch.linalg.matrix_norm(w, ord=2)) > 1 + 1e-9:
                return math.inf
            bound *= 1.0 + float(torch.cat([p - w, m - w], dim=1).norm())
        return bound - 1.0

    @property
    def target_params(self) -> int:
        """Weights of the target."""
        return sum(m.weight.numel() for _, m in maskable_layers(self.target))

    @property
    def source_params(self) -> int:
        """Weights of the random source network (before pruning)."""
        return sum(m.weight.numel() for _, m in maskable_layers(self.source))

    @property
    def kept_params(self) -> int:
        """Weights the pruning keeps."""
        return int(sum(int(m.sum()) for m in self.masks.values()))

    def summary(self, quantiles: Sequence[float] = (0.5, 0.9, 0.99)) -> dict:
        """Sizes and per-weight errors (largest, and quantiles over all target weights) as a JSON-able dict."""
        errors = torch.cat([e.reshape(-1) for e in self.weight_errors])
        q = torch.quantile(errors, torch.tensor(list(quantiles), dtype=errors.dtype)).tolist()
        return {
            "n": self.n, "target_params": self.target_params, "source_params": self.source_params,
            "kept_params": self.kept_params, "kept_over_target": self.kept_params / self.target_params,
            "source_over_target": self.source_params / self.target_params,
            "source_depth": len(self.masks), "target_depth": len(self.masks) // 2,
            "source_widths": self.widths, "max_weight_error": float(errors.max()),
            "error_bound": self.error_bound(),
            "weight_error_quantiles": dict(zip((f"{x:g}" for x in quantiles), q)),
            "layer_max_weight_errors": [float(e.max()) for e in self.weight_errors],
        }


@torch.no_grad()
def subset_sum_ticket(target: nn.Module, n: int, *, seed: int) -> SubsetSumTicket:
    """Prune a random network twice as deep and ``n`` times wider into an approximation of ``target``.

    Chapter 6, *From numbers to networks* (Pensia et al. 2020, appendix *Formulas and notation*, strong lottery tickets).
    Each target layer ``W`` (``d_out × d_in``) becomes two random layers:
    ``M1`` (``n d_in × d_in``) and ``M2`` (``d_out × n d_in``), entries ``U[-1, 1]``.
    Hidden unit ``k n + r`` keeps only its edge from input ``k`` (weight
    ``a = M1[k n + r, k]``). For every target weight ``W[j, k]``, two exact
    subset sums over the path weights ``a · M2[j, k n + r]`` (one among units
    with ``a > 0``, one among units with ``a < 0``) choose which edges of
    ``M2`` to keep (:func:`gadget_weights`). Hidden units no output uses are
    pruned with their input edge. No weight is trained or changed.

    Parameters
    ----------
    target
        A bias-free ReLU MLP (Flatten, Linear, ReLU layers), ideally with
        weights in ``[-1, 1]`` (:func:`scale_to_unit_weights`).
    n
        Hidden units per input coordinate: the width factor, ``n >= 2``.
        About ``n/2`` of them (those whose ``a`` has the right sign) enter
        each subset-sum, solved exactly; a pool larger than
        :data:`MAX_EXACT_N` uses only its first :data:`MAX_EXACT_N` units.
    seed
        Draws the source's random weights.
    """
    n = check_positive_int(n, "n (hidden units per input)", minimum=2)
    layers = _target_layers(target)
    gen = torch.Generator().manual_seed(check_seed(seed))
    modules: list[tuple[str, nn.Module]] = [("flatten", nn.Flatten())]
    masks: dict[str, torch.Tensor] = {}
    plus: list[torch.Tensor] = []
    minus: list[torch.Tensor] = []
    widths: list[int] = []
    target_modules: list[nn.Module] = [nn.Flatten()]
    for i, layer in enumerate(layers):
        w = layer.weight.detach().double().cpu()
        d_out, d_in = w.shape
        hidden = n * d_in
        m1 = torch.rand(hidden, d_in, generator=gen, dtype=torch.float64) * 2 - 1
        m2 = torch.rand(d_out, hidden, generator=gen, dtype=torch.float64) * 2 - 1
        unit_input = torch.arange(hidden) // n                      # hidden unit -> its input coordinate
        a = m1[torch.arange(hidden), unit_input]                    # (hidden,)
        keep2 = torch.zeros(d_out, hidden, dtype=torch.bool)
        for k in range(d_in):
            units = torch.arange(k * n, (k + 1) * n)
            for sign in (1.0, -1.0):
                # A pool beyond the exact solver's reach uses its first MAX_EXACT_N units; the rest are pruned.
                pool = units[(a[units] * sign) > 0][:MAX_EXACT_N]
                if pool.numel() == 0:
                    continue
                products = a[pool].unsqueeze(0) * m2[:, pool]      # (d_out, |pool|)
                chosen, _ = solve_subset_sums(products, w[:, k])
                keep2[:, pool] = chosen
        used = keep2.any(dim=0)
        keep1 = torch.zeros(hidden, d_in, dtype=torch.bool)
        keep1[torch.arange(hidden), unit_input] = used
        # The weights the pruned block realises on each input sign, per target entry.
        path = (a.unsqueeze(0) * m2 * keep2)                        # (d_out, hidden)
        pos = (path * (a > 0)).view(d_out, d_in, n).sum(-1)
        neg = (path * (a < 0)).view(d_out, d_in, n).sum(-1)
        plus.append(pos)
        minus.append(neg)
        widths.append(hidden)
        lin1 = nn.Linear(d_in, hidden, bias=False, dtype=torch.float64)
        lin2 = nn.Linear(hidden, d_out, bias=False, dtype=torch.float64)
        lin1.weight.copy_(m1)
        lin2.weight.copy_(m2)
        modules += [(f"fc{2 * i + 1}", lin1), (f"relu{2 * i + 1}", nn.ReLU()), (f"fc{2 * i + 2}", lin2)]
        masks[f"fc{2 * i + 1}"], masks[f"fc{2 * i + 2}"] = keep1, keep2
        if i < len(layers) - 1:
            modules.append((f"relu{2 * i + 2}", nn.ReLU()))
        t = nn.Linear(d_in, d_out, bias=False, dtype=torch.float64)
        t.weight.copy_(w)
        target_modules += [t] + ([nn.ReLU()] if i < len(layers) - 1 else [])
    from collections import OrderedDict

    source = nn.Sequential(OrderedDict(modules)).eval()
    ticket = nn.Sequential(OrderedDict((name, _copy_module(m)) for name, m in modules)).eval()
    Masking(ticket, masks)  # zeroes every pruned weight of the copy; the source stays dense
    return SubsetSumTicket(target=nn.Sequential(*target_modules).eval(), source=source, ticket=ticket,
                           masks=masks, n=n, plus=plus, minus=minus, widths=widths)


def _copy_module(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.Linear):
        lin = nn.Linear(module.in_features, module.out_features, bias=False, dtype=module.weight.dtype)
        with torch.no_grad():
            lin.weight.copy_(module.weight)
        return lin
    return type(module)()


def sphere_inputs(dim: int, count: int, *, seed: int) -> torch.Tensor:
    """``count`` points uniform on the unit sphere of ``R^dim``, float64 (chapter 6).

    For bias-free ReLU networks the sup of ``|f - g|`` over the unit ball is
    attained on the sphere (both are positively homogeneous), so sphere
    points are the sharpest random test inputs.
    """
    dim = check_positive_int(dim, "dim")
    count = check_positive_int(count, "count")
    gen = torch.Generator().manual_seed(check_seed(seed))
    x = torch.randn(count, dim, generator=gen, dtype=torch.float64)
    return x / x.norm(dim=1, keepdim=True)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
    """``model(x)`` in float64, computed in batches of rows so that wide sources fit in memory (chapter 6)."""
    batch_size = check_positive_int(batch_size, "batch_size")
    x = x.double()
    return torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


@torch.no_grad()
def sup_error(f: nn.Module, g: nn.Module, x: torch.Tensor, batch_size: int = 2048) -> dict:
    """How far ``g`` is from ``f`` on inputs ``x`` (rows), measured in float64 (chapter 6).

    Returns
    -------
    dict
        ``sup_error``: ``max_x ||f(x) - g(x)||_2``; ``sup_output``:
        ``max_x ||f(x)||_2``; ``relative``: their ratio; ``max_abs``: the
        largest error of any single output coordinate.
    """
    fx, gx = predict(f, x, batch_size), predict(g, x, batch_size)
    diff = fx - gx
    sup = float(diff.norm(dim=1).max())
    ref = float(fx.norm(dim=1).max())
    return {"sup_error": sup, "sup_output": ref, "relative": sup / ref if ref > 0 else math.inf,
            "max_abs": float(diff.abs().max())}


# ============================================================================= the construction's architecture


def gadget_structure_mask(d_in: int, n: int) -> torch.Tensor:
    """The fixed edges of a gadget's first layer: hidden unit ``k n + r`` sees only input ``k`` (chapter 6).

    A ``bool`` tensor of shape ``(n · d_in, d_in)`` with exactly one ``True``
    per row: ``n`` copies of every input, the block pattern of
    :func:`subset_sum_ticket` (and of Pensia et al.'s redundant layers).
    """
    d_in = check_positive_int(d_in, "d_in")
    n = check_positive_int(n, "n (copies per input)")
    unit_input = torch.arange(n * d_in) // n
    return unit_input.unsqueeze(1) == torch.arange(d_in).unsqueeze(0)


def _layer_sizes(in_features: int, hidden: Sequence[int], num_classes: int) -> tuple[int, ...]:
    if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence):
        raise ValueError(f"hidden must be a sequence of positive ints such as (32,), got {hidden!r}")
    return (check_positive_int(in_features, "in_features"),
            *(check_positive_int(h, f"every hidden size (in hidden={tuple(hidden)!r})") for h in hidden),
            check_positive_int(num_classes, "num_classes"))


def subset_sum_architecture(in_features: int, hidden: Sequence[int], num_classes: int,
                            n: int) -> tuple[nn.Sequential, dict[str, torch.Tensor]]:
    """The construction's random network as an MLP plus a fixed structure mask (chapter 6, *Redundant structure*).

    Every layer ``d_in → d_out`` of the target MLP (``in_features``, ``hidden``,
    ``num_classes``) becomes two layers, ``d_in → n d_in → d_out``, with a
    ReLU between them: the first keeps only the block pattern of
    :func:`gadget_structure_mask` (``n`` copies of each input), the second
    is fully connected. The network is twice as deep as the target and has
    :func:`subset_sum_architecture_params` edges. Pensia et al. (2020) call
    it the *redundant* structure; edge-popup on it (``to_edge_popup(...,
    source_masks=masks, density_of="source")``) chooses among its edges only.

    Returns
    -------
    (model, masks)
        An :class:`rpbook.models.MLP` (layers ``fc1 .. fc{2l}``, default
        PyTorch initialisation) and the structure masks of its odd layers
        ``fc1, fc3, ...``; the even layers have no mask (all edges exist).
    """
    from .models import MLP

    sizes = _layer_sizes(in_features, hidden, num_classes)
    n = check_positive_int(n, "n (copies per input)")
    wide: list[int] = []
    for i, d_in in enumerate(sizes[:-1]):
        wide.append(n * d_in)
        if i < len(sizes) - 2:
            wide.append(sizes[i + 1])
    model = MLP(sizes[0], tuple(wide), sizes[-1])
    masks = {f"fc{2 * i + 1}": gadget_structure_mask(d_in, n) for i, d_in in enumerate(sizes[:-1])}
    return model, masks


def subset_sum_architecture_params(in_features: int, hidden: Sequence[int], num_classes: int, n: int) -> int:
    """Edges of :func:`subset_sum_architecture`: ``Σ_i n d_{i-1} (1 + d_i)`` over the target's layers (chapter 6)."""
    sizes = _layer_sizes(in_features, hidden, num_classes)
    n = check_positive_int(n, "n (copies per input)")
    return sum(n * d_in * (1 + d_out) for d_in, d_out in zip(sizes[:-1], sizes[1:]))


def mlp_params(in_features: int, hidden: Sequence[int], num_classes: int) -> int:
    """Weights (edges, no biases) of a fully connected MLP: ``Σ_i d_{i-1} d_i`` (chapter 6)."""
    sizes = _layer_sizes(in_features, hidden, num_classes)
    return sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def matched_width(params: int, in_features: int, num_classes: int, hidden_layers: int) -> int:
    """Width ``w`` of an MLP with ``hidden_layers`` layers of ``w`` units whose edge count is closest to ``params``.

    Chapter 6, *Redundant structure*: the plain network a structured one is
    compared with. Its edges, ``(in + classes) w + (hidden_layers - 1) w²``,
    differ from ``params`` by at most half the step to the next width.
    """
    params = check_positive_int(params, "params")
    hidden_layers = check_positive_int(hidden_layers, "hidden_layers")
    a, b = hidden_layers - 1, check_positive_int(in_features, "in_features") + check_positive_int(
        num_classes, "num_classes")
    guess = params / b if a == 0 else (-b + math.sqrt(b * b + 4 * a * params)) / (2 * a)
    candidates = {max(1, int(math.floor(guess))), max(1, int(math.ceil(guess)))}
    return min(sorted(candidates), key=lambda w: abs(mlp_params(in_features, (w,) * hidden_layers, num_classes) - params))


# ============================================================================= edge-popup

#: Frozen weight distributions of edge-popup (appendix *Formulas and notation*, strong lottery tickets; Ramanujan et al. 2020).
WEIGHT_INITS: tuple[str, ...] = ("kaiming_normal", "signed_constant")

#: What edge-popup's kept fraction is measured against: the full layer, or the edges a source mask allows (chapter 6).
DENSITY_BASES: tuple[str, ...] = ("layer", "source")


class _TopKStraightThrough(torch.autograd.Function):
    """0/1 mask of the ``k`` largest scores among allowed entries; identity gradient (straight-through)."""

    @staticmethod
    def forward(ctx, scores: torch.Tensor, k: int, allowed: torch.Tensor | None) -> torch.Tensor:  # type: ignore[override]
        flat = scores.detach().reshape(-1)
        if allowed is not None:
            # Flatten the source mask first: every allowed entry, not just a row index, competes.
            flat = torch.where(allowed.reshape(-1), flat, torch.full_like(flat, -math.inf))
        mask = torch.zeros_like(flat)
        mask[torch.topk(flat, k, sorted=False).indices] = 1.0
        ctx.allowed = allowed
        return mask.view_as(scores)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        if ctx.allowed is not None:
            grad = grad * ctx.allowed
        return grad, None, None


def kept_count(numel: int, density: float) -> int:
    """Edges a layer of ``numel`` weights keeps at ``density``: ``round(density · numel)``, at least 1 (chapter 6)."""
    return min(numel, max(1, int(round(check_density(density) * numel))))


class _EdgePopupMixin:
    """Shared by the edge-popup Linear and Conv2d layers."""

    weight: nn.Parameter
    scores: nn.Parameter
    source_mask: torch.Tensor | None

    def _setup(self, density: float, source_mask: torch.Tensor | None, within_source: bool = False) -> None:
        self.density = check_density(density)
        self.within_source = bool(within_source and source_mask is not None)
        base = int(source_mask.bool().sum()) if self.within_source else self.weight.numel()
        self.k = kept_count(base, self.density)
        self.weight.requires_grad_(False)
        if getattr(self, "bias", None) is not None:
            self.bias.requires_grad_(False)
        self.scores = nn.Parameter(torch.empty_like(self.weight))
        if source_mask is not None:
            if tuple(source_mask.shape) != tuple(self.weight.shape):
                raise ValueError(f"source mask has shape {tuple(source_mask.shape)}, the weight {tuple(self.weight.shape)}")
            allowed = int(source_mask.bool().sum())
            if self.k > allowed:
                raise ValueError(f"density {self.density:g} keeps {self.k} edges but the source mask allows only "
                                 f"{allowed} (source density {allowed / self.weight.numel():.4g}); "
                                 "the target density must not exceed the source density")
            self.register_buffer("source_mask", source_mask.detach().bool().clone().to(self.weight.device))
        else:
            self.source_mask = None

    def popup_mask(self) -> torch.Tensor:
        """The current 0/1 mask (float), the top-``k`` of ``|scores|`` inside the source mask."""
        return _TopKStraightThrough.apply(self.scores.abs(), self.k, self.source_mask)

    def effective_weight(self) -> torch.Tensor:
        return self.weight * self.popup_mask()


class EdgePopupLinear(_EdgePopupMixin, nn.Linear):
    """A Linear layer whose frozen weights are switched on by learned scores (chapter 6, edge-popup)."""

    def __init__(self, in_features: int, out_features: int, bias: bool, density: float,
                 source_mask: torch.Tensor | None = None, device=None, dtype=None, within_source: bool = False) -> None:
        nn.Linear.__init__(self, in_features, out_features, bias=bias, device=device, dtype=dtype)
        self._setup(density, source_mask, within_source)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.effective_weight(), self.bias)


class EdgePopupConv2d(_EdgePopupMixin, nn.Conv2d):
    """A Conv2d layer whose frozen weights are switched on by learned scores (chapter 6, edge-popup)."""

    def __init__(self, conv: nn.Conv2d, density: float, source_mask: torch.Tensor | None = None,
                 within_source: bool = False) -> None:
        nn.Conv2d.__init__(self, conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                           padding=conv.padding, dilation=conv.dilation, groups=conv.groups,
                           bias=conv.bias is not None, padding_mode=conv.padding_mode,
                           device=conv.weight.device, dtype=conv.weight.dtype)
        self._setup(density, source_mask, within_source)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.effective_weight(), self.bias)


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent = model
    *path, last = name.split(".")
    for part in path:
        parent = getattr(parent, part)
    setattr(parent, last, new)


@torch.no_grad()
def to_edge_popup(
    model: nn.Module,
    density: float,
    *,
    weight_init: str = "signed_constant",
    scale_fan: bool = True,
    source_masks: Mapping[str, torch.Tensor] | None = None,
    seed: int = 0,
    density_of: str = "layer",
) -> nn.Module:
    """Turn every Conv2d/Linear layer of ``model`` into an edge-popup layer, in place (chapter 6).

    appendix *Formulas and notation*, strong lottery tickets; Ramanujan et al. 2020 (Ramanujan et al. 2020) and §3.4 (Gadhikar et al. 2023).

    - Weights are redrawn and frozen (``requires_grad=False``):
      ``kaiming_normal`` ``N(0, 2 / fan)``, or ``signed_constant``
      ``± sqrt(2 / fan)`` with a random sign, where ``fan`` is the fan-in,
      times ``density`` when ``scale_fan`` (the paper's "scaled" variants:
      a unit keeps about ``density · fan_in`` inputs).
    - Biases become 0 and frozen (as ``kn-zero-bias`` in Gadhikar et al.'s code);
      BatchNorm layers lose their learned affine part (weight 1, bias 0,
      frozen), edge-popup's non-affine BatchNorm. Running statistics still update.
    - Scores: one per weight, Kaiming-uniform ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``;
      they are the only parameters with ``requires_grad``, so
      :func:`rpbook.train.fit` optimises only them.
    - Each forward pass keeps, per layer, the ``round(density · numel)``
      entries with the largest ``|score|`` among those allowed by the layer's
      source mask (all entries without one). ``density`` is measured against
      the full layer, as in Gadhikar et al.

    Parameters
    ----------
    source_masks
        Layer name to a 0/1 mask (e.g. from :func:`rpbook.masks.sample_masks`);
        layers without one search all their edges.
    seed
        Draws weights, signs and scores; same seed, same network bit for bit.
    density_of
        ``"layer"`` (default): ``density`` is a fraction of the full layer
        and ``fan`` its full fan-in. ``"source"``: a fraction of the edges
        the source mask allows, and ``fan`` the allowed inputs per unit
        (their mean over units), so a fixed *architecture* given as a mask
        (:func:`subset_sum_architecture`, where a unit may have one input)
        is initialised and pruned as if its missing edges did not exist.

    Returns
    -------
    nn.Module
        ``model`` itself, with :class:`EdgePopupLinear`/:class:`EdgePopupConv2d` layers.
    """
    if weight_init not in WEIGHT_INITS:
        raise ValueError(f"unknown weight_init {weight_init!r}; allowed: {', '.join(WEIGHT_INITS)}")
    density = check_density(density)
    if density_of not in DENSITY_BASES:
        raise ValueError(f"unknown density_of {density_of!r}; allowed: {', '.join(DENSITY_BASES)}")
    within = density_of == "source"
    layers = maskable_layers(model)
    if not layers:
        raise ValueError("the model has no Conv2d/Linear layers to turn into edge-popup layers")
    source_masks = dict(source_masks or {})
    names = {name for name, _ in layers}
    unknown = sorted(set(source_masks) - names)
    if unknown:
        raise ValueError(f"source_masks name layers the model does not have: {', '.join(unknown)}; layers: {', '.join(sorted(names))}")
    # Every layer is checked before any is replaced: a failure must not leave a half-converted model.
    for name, layer in layers:
        if isinstance(layer, _EdgePopupMixin):
            raise ValueError(f"layer {name!r} is already an edge-popup layer")
        src = source_masks.get(name)
        if src is None:
            continue
        if tuple(src.shape) != tuple(layer.weight.shape):
            raise ValueError(f"source mask of layer {name!r} has shape {tuple(src.shape)}, the weight "
                             f"{tuple(layer.weight.shape)}")
        allowed = int(src.bool().sum())
        if allowed == 0:
            raise ValueError(f"the source mask of layer {name!r} allows no edge")
        k = kept_count(allowed if within else layer.weight.numel(), density)
        if k > allowed:
            raise ValueError(f"layer {name!r}: density {density:g} keeps {k} edges but the source mask allows only "
                             f"{allowed} (source density {allowed / layer.weight.numel():.4g}); the target density "
                             f"must not exceed any layer's source density")
    gen = torch.Generator().manual_seed(check_seed(seed))
    for name, layer in layers:
        src = source_masks.get(name)
        if isinstance(layer, nn.Linear):
            new: nn.Module = EdgePopupLinear(layer.in_features, layer.out_features, layer.bias is not None, density,
                                             src, device=layer.weight.device, dtype=layer.weight.dtype,
                                             within_source=within)
        else:
            new = EdgePopupConv2d(layer, density, src, within_source=within)
        fan_in = new.weight[0].numel()
        if within and src is not None:  # the allowed inputs per unit, as if the masked-out edges did not exist
            fan_in = float(src.bool().sum()) / new.weight.shape[0]
        fan = fan_in * (density if scale_fan else 1.0)
        std = math.sqrt(2.0 / fan)
        if weight_init == "kaiming_normal":
            w = torch.randn(new.weight.shape, generator=gen) * std
        else:
            w = (torch.randint(0, 2, new.weight.shape, generator=gen) * 2 - 1).float() * std
        new.weight.copy_(w.to(new.weight))
        bound = 1.0 / math.sqrt(fan_in)
        new.scores.copy_(((torch.rand(new.weight.shape, generator=gen) * 2 - 1) * bound).to(new.scores))
        if new.bias is not None:
            new.bias.zero_()
        _replace(model, name, new)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.affine:
            module.weight.fill_(1.0)
            module.bias.zero_()
            module.weight.requires_grad_(False)
            module.bias.requires_grad_(False)
    return model


def edge_popup_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The edge-popup layers of ``model`` in forward order (chapter 6)."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, _EdgePopupMixin)]


@torch.no_grad()
def edge_popup_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """The current ``bool`` mask of every edge-popup layer: the subnetwork found so far (chapter 6)."""
    return {name: m.popup_mask().bool().cpu() for name, m in edge_popup_layers(model)}


# ============================================================================= one edge-popup run


#: Networks an :class:`EdgePopupRun` can search: a plain MLP/CNN, or the construction's (chapter 6).
STRUCTURES: tuple[str, ...] = ("plain", "subset_sum")


@dataclass(frozen=True)
class EdgePopupRun:
    """Everything that decides one edge-popup run (chapter 6).

    ``density`` is the fraction of each layer's edges the subnetwork keeps
    (HN's ``prune_rate``), measured against the full layer. ``source_density``
    below 1 first samples a fixed random source mask per layer with
    :func:`rpbook.masks.sample_masks` (rule ``source_rule``; ``uniform`` gives
    every layer the same density, as in Gadhikar et al.'s code) and searches
    only inside it. ``train`` holds the optimiser settings for the scores;
    its ``seed`` is replaced by this run's ``seed``.

    ``structure="subset_sum"`` searches the construction's network instead
    (:func:`subset_sum_architecture` of the ``mlp`` target ``hidden`` with
    ``redundancy`` copies per input; ``width`` must be 1): ``density`` is
    then a fraction of the edges that network has (``density_of="source"``).
    """

    model: str = "mlp"
    dataset: str = "digits"
    width: float = 1.0
    hidden: tuple[int, ...] | None = (64, 64)
    depth: int | None = None
    density: float = 0.1
    weight_init: str = "signed_constant"
    scale_fan: bool = True
    source_density: float = 1.0
    source_rule: str = "uniform"
    n_train: int | None = None
    seed: int = 0
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=20, lr=0.1, weight_decay=1e-4))
    structure: str = "plain"
    redundancy: int = 1

    def __post_init__(self) -> None:
        if self.weight_init not in WEIGHT_INITS:
            raise ValueError(f"unknown weight_init {self.weight_init!r}; allowed: {', '.join(WEIGHT_INITS)}")
        if self.structure not in STRUCTURES:
            raise ValueError(f"unknown structure {self.structure!r}; allowed: {', '.join(STRUCTURES)}")
        check_positive_int(self.redundancy, "redundancy")
        if self.structure == "subset_sum" and (self.model != "mlp" or not self.hidden or self.width != 1.0
                                               or self.source_density != 1.0):
            raise ValueError(f"structure 'subset_sum' needs model 'mlp' with a target hidden tuple, width 1 and "
                             f"source_density 1; got model={self.model!r}, hidden={self.hidden!r}, "
                             f"width={self.width!r}, source_density={self.source_density!r}")
        check_density(self.density)
        check_density(self.source_density, "source_density")
        if self.density > self.source_density:
            raise ValueError(f"density {self.density:g} exceeds source_density {self.source_density:g}: "
                             "a subnetwork cannot keep more edges than its source allows")


def train_edge_popup(run: EdgePopupRun, *, data=None, device=None, progress: bool = False) -> dict:
    """Find a subnetwork of a frozen random network by edge-popup and report it (chapter 6).

    Builds ``run.model`` from :func:`rpbook.models.build_model`, turns it into
    an edge-popup network (:func:`to_edge_popup`), optimises only the scores
    with :func:`rpbook.train.fit`, and checks the three promises of the
    method on the result: every layer keeps exactly ``round(density · numel)``
    edges, none outside its source mask, and no weight moved.

    Returns
    -------
    dict
        ``test_accuracy``, ``test_loss``, ``history`` (per-epoch rows),
        ``layers`` (name, numel, kept, source allowed), ``kept``, ``numel``,
        ``allowed`` (the searched network's edges), ``exact_counts``,
        ``inside_source``, ``weights_unchanged``, ``wall_time_s``.
    """
    import dataclasses as _dc

    from .config import choose_device, seed_everything
    from .data import load_dataset
    from .masks import sample_masks
    from .models import build_model
    from .train import fit

    dev = choose_device(device)
    seed_everything(run.seed)
    if data is None:
        data = load_dataset(run.dataset, seed=run.seed, n_train=run.n_train)
    source = None
    if run.structure == "subset_sum":
        model, source = subset_sum_architecture(int(np.prod(data.in_shape)), run.hidden, data.num_classes,
                                                run.redundancy)
    else:
        model = build_model(run.model, in_shape=tuple(data.in_shape), num_classes=data.num_classes, width=run.width,
                            hidden=run.hidden, depth=run.depth)
    if run.source_density < 1.0:
        source = sample_masks(model, run.source_density, run.source_rule, seed=run.seed)
    to_edge_popup(model, run.density, weight_init=run.weight_init, scale_fan=run.scale_fan, source_masks=source,
                  seed=run.seed, density_of="source" if run.structure == "subset_sum" else "layer")
    frozen = {name: m.weight.detach().clone() for name, m in edge_popup_layers(model)}
    history = fit(model, data, _dc.replace(run.train, seed=run.seed), device=dev, progress=progress,
                  desc=f"edge-popup k={run.density:g}")
    model.cpu()
    masks = edge_popup_masks(model)
    layers, exact, inside, unchanged = [], True, True, True
    for name, m in edge_popup_layers(model):
        kept = int(masks[name].sum())
        allowed = int(m.source_mask.sum()) if m.source_mask is not None else m.weight.numel()
        outside = int((masks[name] & ~m.source_mask.cpu()).sum()) if m.source_mask is not None else 0
        exact &= kept == m.k
        inside &= outside == 0
        unchanged &= bool(torch.equal(m.weight.detach().cpu(), frozen[name].cpu()))
        layers.append({"name": name, "numel": m.weight.numel(), "kept": kept, "allowed": allowed})
    return {
        "test_accuracy": history.test["accuracy"], "test_loss": history.test["loss"],
        "history": history.epochs, "layers": layers, "kept": sum(r["kept"] for r in layers),
        "numel": sum(r["numel"] for r in layers), "allowed": sum(r["allowed"] for r in layers),
        "exact_counts": exact, "inside_source": inside,
        "weights_unchanged": unchanged, "wall_time_s": history.wall_time, "device": str(dev),
    }
