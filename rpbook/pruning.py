"""Pruning: scores, keeping the top scores (globally or per layer), gradual and iterative magnitude pruning.

Chapter 5 (*Gradient flow*) uses magnitude pruning on a cubic schedule to make
the masks whose lottery tickets it studies, and iterative magnitude pruning
(IMP) with reset to initialization or rewinding; chapter 7 (*Sparse-to-sparse*)
adds more scores and runs every pruner inside a random source mask.

The pieces (appendix *Formulas and notation*, pruning scores):

- a **score function** maps a model (and optionally a batch) to one score per
  weight, larger = more important; :data:`SCORE_FUNCTIONS` is the registry and
  :func:`register_score` adds to it;
- :func:`prune_to_density` keeps the highest scores so that the kept fraction
  of the *full* network is the target density, globally or per layer, and only
  ever among the weights a ``source_masks`` allows (so pruning never leaves a
  random source mask: that is sparse-to-sparse training);
- :class:`GradualMagnitudePruning` is a training callback that prunes on
  Zhu & Gupta's cubic schedule; :func:`iterative_magnitude_pruning` is IMP;
- :func:`prune_at_init` prunes at initialization with magnitude, SNIP, GraSP,
  SynFlow (iterative or one-shot) or random scores, inside a source mask, and
  :func:`layer_collapse` tells whether any input still reaches the output.

Size (over 600 lines, on purpose): the score registry, thresholding inside a source
mask, the pruning schedules (gradual, IMP, iterative SynFlow) and the collapse check
are one concept, *pruning*, and every schedule calls the same thresholding; split
up, a reader would follow one idea across files.
"""
from __future__ import annotations

import copy
import math
import numbers
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol, Sequence

import torch
from torch import nn

from .masks import Masking, check_density, maskable_layers
from .train import Callback, TrainConfig, TrainState, compute_loss, fit
from .validators import check_fraction

SCOPES: tuple[str, ...] = ("global", "layer")


# ----------------------------------------------------------------------------- scores


class ScoreFunction(Protocol):
    """``fn(model, batch=None, **options) -> {layer name: score tensor of the weight's shape}``."""

    def __call__(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor] | None = None,
                 **options: Any) -> dict[str, torch.Tensor]: ...


SCORE_FUNCTIONS: dict[str, ScoreFunction] = {}


def register_score(name: str) -> Callable[[ScoreFunction], ScoreFunction]:
    """Decorator adding a score function to :data:`SCORE_FUNCTIONS` under ``name`` (chapters 5, 7).

    Raises
    ------
    ValueError
        If ``name`` is empty or already registered.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a score name must be a non-empty string, got {name!r}")

    def decorate(fn: ScoreFunction) -> ScoreFunction:
        if name in SCORE_FUNCTIONS:
            raise ValueError(f"score {name!r} is already registered; registered: {', '.join(SCORE_FUNCTIONS)}")
        SCORE_FUNCTIONS[name] = fn
        return fn

    return decorate


def _masks_for_scoring(model: nn.Module, masks: Mapping[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    """The masks scores are multiplied by: ``masks`` when given, else the model's own (all ones if none)."""
    layers = dict(maskable_layers(model))
    if masks is None:
        return current_masks(model)
    unknown = sorted(set(masks) - set(layers))
    if unknown:
        raise ValueError(f"masks name layers the model does not have: {', '.join(unknown)}; "
                         f"its layers: {', '.join(layers)}")
    out = {}
    for name, m in layers.items():
        mask = masks.get(name)
        if mask is None:
            out[name] = torch.ones(m.weight.shape, dtype=torch.bool)
        elif tuple(mask.shape) != tuple(m.weight.shape):
            raise ValueError(f"mask of layer {name!r} has shape {tuple(mask.shape)}, its weight {tuple(m.weight.shape)}")
        else:
            out[name] = mask.detach().cpu().bool()
    return out


def _check_batch(batch: object, method: str) -> tuple[torch.Tensor, torch.Tensor]:
    if (not isinstance(batch, (tuple, list)) or len(batch) != 2
            or not all(isinstance(t, torch.Tensor) for t in batch)):
        raise ValueError(f"{method} scores need a batch=(inputs, targets) of two tensors, got {type(batch).__name__}")
    if len(batch[0]) == 0 or len(batch[0]) != len(batch[1]):
        raise ValueError(f"{method} needs a non-empty batch with as many targets as inputs, "
                         f"got {len(batch[0])} inputs and {len(batch[1])} targets")
    return batch[0], batch[1]


TASKS: tuple[str, ...] = ("classification", "regression")


def _data_loss(method: str, output: torch.Tensor, y: torch.Tensor, task: object) -> torch.Tensor:
    """The training loss of a score's batch; refuses targets that do not fit the task."""
    if task not in TASKS:
        raise ValueError(f"{method}: unknown task {task!r}; allowed: {', '.join(TASKS)}")
    if task == "classification":
        if y.is_floating_point() or y.dim() != 1 or output.dim() != 2 or output.shape[1] < 2:
            # cross-entropy over one class (or with float targets) is identically 0: every score would be 0
            raise ValueError(f"{method}: task 'classification' needs integer class labels of shape (N,) and at "
                             f"least 2 outputs, got targets {y.dtype} {tuple(y.shape)} and outputs "
                             f"{tuple(output.shape)}; pass task='regression' for a regression batch")
    return compute_loss(output, y, task)


def _check_options(method: str, options: Mapping[str, Any], allowed: Sequence[str]) -> None:
    extra = sorted(set(options) - set(allowed))
    if extra:
        raise ValueError(f"{method} scores take no option(s) {', '.join(extra)}; allowed: {', '.join(allowed) or 'none'}")


def _scoring_copy(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> tuple[nn.Module, list[tuple[str, nn.Module]]]:
    """A detached copy of ``model`` (scores never touch the reader's model) with masked weights at zero."""
    clone = copy.deepcopy(model)
    layers = list(maskable_layers(clone))
    with torch.no_grad():
        for name, m in layers:
            w = m.weight.detach().clone()
            w.mul_(masks[name].to(w.device, w.dtype))
            m.weight = nn.Parameter(w)  # a fresh parameter: no gradient hooks of a Masking
    return clone, layers


@register_score("magnitude")
@torch.no_grad()
def magnitude_scores(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor] | None = None,
                     **options: Any) -> dict[str, torch.Tensor]:
    """``|m ⊙ w|`` for every conv/linear weight: the score of magnitude pruning and IMP (chapters 5, 7).

    ``batch`` is ignored (magnitude pruning needs no data). Option ``masks``
    (layer name to 0/1 mask) replaces the model's own masks; masked weights score 0.
    """
    _check_options("magnitude", options, ("masks",))
    masks = _masks_for_scoring(model, options.get("masks"))
    return {name: m.weight.detach().abs().cpu() * masks[name] for name, m in maskable_layers(model)}


@register_score("snip")
def snip_scores(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor] | None = None,
                **options: Any) -> dict[str, torch.Tensor]:
    """SNIP: ``|m ⊙ w ⊙ ∂L/∂w|`` on one batch (chapter 7, appendix *Formulas and notation*, pruning scores; Lee et al. 2019).

    The connection sensitivity: how much the loss would change if the weight
    were removed, to first order. Options: ``masks`` as for :func:`magnitude_scores`;
    ``task`` (``"classification"``, cross-entropy, or ``"regression"``, mean squared error).
    """
    _check_options("snip", options, ("masks", "task"))
    x, y = _check_batch(batch, "SNIP")
    masks = _masks_for_scoring(model, options.get("masks"))
    clone, layers = _scoring_copy(model, masks)
    device = next(clone.parameters()).device
    loss = _data_loss("SNIP", clone(x.to(device)), y.to(device), options.get("task", "classification"))
    grads = torch.autograd.grad(loss, [m.weight for _, m in layers], allow_unused=True)
    out = {}
    for (name, m), g in zip(layers, grads):
        g = torch.zeros_like(m.weight) if g is None else g
        out[name] = (m.weight.detach() * g).abs().cpu() * masks[name]
    return out


@register_score("grasp")
def grasp_scores(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor] | None = None,
                 **options: Any) -> dict[str, torch.Tensor]:
    """GraSP, as "larger = keep": ``m ⊙ w ⊙ (H g)`` (chapter 7, appendix *Formulas and notation*, pruning scores; Wang et al. 2020).

    GraSP removes the weights whose removal least reduces the gradient flow:
    the highest ``-w ⊙ Hg``, i.e. it keeps the highest ``w ⊙ Hg``. ``g`` is the
    masked gradient of the loss of ``logits / temperature`` on ``batch``
    (option ``temperature``, default 200 as in the released code) and ``H g``
    the gradient of ``g · stopgrad(g)`` by double backpropagation. Option
    ``task`` as for :func:`snip_scores` (the temperature only makes sense for classification).
    """
    _check_options("grasp", options, ("masks", "temperature", "task"))
    task = options.get("task", "classification")
    temperature = options.get("temperature", 200.0)
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) or not float(temperature) > 0:
        raise ValueError(f"GraSP temperature must be a positive number, got {temperature!r}")
    x, y = _check_batch(batch, "GraSP")
    masks = _masks_for_scoring(model, options.get("masks"))
    clone, layers = _scoring_copy(model, masks)
    device = next(clone.parameters()).device
    weights = [m.weight for _, m in layers]
    x, y = x.to(device), y.to(device)
    first = torch.autograd.grad(_data_loss("GraSP", clone(x) / float(temperature), y, task), weights,
                                allow_unused=True)
    g = [torch.zeros_like(w) if gi is None else gi.detach() * masks[name].to(w.device, w.dtype)
         for (name, _), w, gi in zip(layers, weights, first)]
    grads = torch.autograd.grad(_data_loss("GraSP", clone(x) / float(temperature), y, task), weights,
                                create_graph=True, allow_unused=True)
    z = sum((gi * gd).sum() for gi, gd in zip(grads, g) if gi is not None)
    hg = torch.autograd.grad(z, weights, allow_unused=True)
    out = {}
    for (name, m), h in zip(layers, hg):
        h = torch.zeros_like(m.weight) if h is None else h
        out[name] = (m.weight.detach() * h.detach()).cpu() * masks[name]
    return out


def _check_in_shape(in_shape: object) -> tuple[int, ...]:
    if (not isinstance(in_shape, (tuple, list, torch.Size)) or not in_shape
            or not all(isinstance(d, numbers.Integral) and not isinstance(d, bool) and d > 0 for d in in_shape)):
        raise ValueError(f"SynFlow needs in_shape, the shape of one input without the batch dimension "
                         f"(e.g. in_shape=(40,)), got {in_shape!r}")
    return tuple(int(d) for d in in_shape)


def _synflow(model: nn.Module, options: Mapping[str, Any], method: str) -> dict[str, torch.Tensor]:
    _check_options(method, options, ("masks", "in_shape"))
    in_shape = _check_in_shape(options.get("in_shape"))
    masks = _masks_for_scoring(model, options.get("masks"))
    clone, layers = _scoring_copy(model, masks)
    if next(clone.parameters()).device.type == "mps":  # no float64 on Apple GPUs: score on the CPU
        clone = clone.cpu()
    clone = clone.double().eval()  # float64: products of |W| over many layers overflow float32 in deep nets
    with torch.no_grad():
        for tensor in clone.state_dict().values():  # "linearize": every parameter and BN statistic positive
            if tensor.is_floating_point():
                tensor.abs_()
    device = next(clone.parameters()).device
    out = clone(torch.ones((1, *in_shape), dtype=torch.float64, device=device))
    grads = torch.autograd.grad(out.sum(), [m.weight for _, m in layers], allow_unused=True)
    scores = {}
    for (name, m), g in zip(layers, grads):
        g = torch.zeros_like(m.weight) if g is None else g
        scores[name] = (m.weight.detach() * g).cpu() * masks[name]
    return scores


@register_score("synflow")
def synflow_scores(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor] | None = None,
                   **options: Any) -> dict[str, torch.Tensor]:
    """SynFlow: ``|w| ⊙ ∂R/∂|w|`` with ``R = 1ᵀ(∏ |W_l|) 1`` (chapter 7, appendix *Formulas and notation*, pruning scores and dynamic sparse training; Tanaka et al. 2020).

    Data-free: every parameter (and BatchNorm statistic) is replaced by its
    absolute value in a float64 copy, one all-ones input of ``in_shape`` goes
    through, and the summed output is differentiated. With unit weights a
    weight's score is the number of input–output paths through it. The model
    itself is not changed. Options: ``in_shape`` (required), ``masks``.
    """
    return _synflow(model, options, "synflow")


@register_score("random")
@torch.no_grad()
def random_scores(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor] | None = None,
                  **options: Any) -> dict[str, torch.Tensor]:
    """Uniform random scores in (0, 1] inside the mask, 0 outside: random pruning (chapter 7).

    Option ``seed`` (default 0) makes the draw reproducible; option ``masks``
    as for :func:`magnitude_scores`.
    """
    _check_options("random", options, ("masks", "seed"))
    seed = options.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    masks = _masks_for_scoring(model, options.get("masks"))
    gen = torch.Generator().manual_seed(int(seed))
    return {name: (1.0 - torch.rand(m.weight.shape, generator=gen, dtype=torch.float64)) * masks[name]
            for name, m in maskable_layers(model)}


def compute_scores(name: str, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor] | None = None,
                   **options: Any) -> dict[str, torch.Tensor]:
    """Scores of the registered method ``name`` for every conv/linear weight of ``model`` (chapters 5, 7).

    Raises
    ------
    ValueError
        For an unknown score name (the message lists the registered ones).
    """
    if name not in SCORE_FUNCTIONS:
        raise ValueError(f"unknown pruning score {name!r}; registered: {', '.join(sorted(SCORE_FUNCTIONS))}")
    return SCORE_FUNCTIONS[name](model, batch, **options)


# ----------------------------------------------------------------------------- keeping the top scores


def check_scope(scope: object) -> str:
    """Return ``scope`` if it is ``"global"`` or ``"layer"``, else raise ``ValueError`` (chapter 5)."""
    if scope not in SCOPES:
        raise ValueError(f"unknown pruning scope {scope!r}; allowed: {', '.join(SCOPES)}")
    return scope  # type: ignore[return-value]


def top_k_mask(scores: torch.Tensor, allowed: torch.Tensor, k: int) -> torch.Tensor:
    """``bool`` mask of the ``k`` highest scores among ``allowed`` entries (chapters 5, 7).

    Ties go to the lower flat index, so the result is deterministic. ``k``
    must not exceed the number of allowed entries.
    """
    scores, allowed = scores.detach().cpu(), allowed.detach().cpu().bool()  # the result is a CPU mask
    if k > int(allowed.sum()):
        raise ValueError(f"cannot keep {k} entries: only {int(allowed.sum())} are allowed")
    flat = scores.reshape(-1).double()
    flat = torch.where(allowed.reshape(-1), flat, torch.full_like(flat, -math.inf))
    order = torch.argsort(flat, descending=True, stable=True)
    keep = torch.zeros(flat.numel(), dtype=torch.bool)
    keep[order[:k]] = True
    return keep.reshape(scores.shape)


def prune_to_density(
    scores: Mapping[str, torch.Tensor],
    target_density: float | Mapping[str, float],
    *,
    source_masks: Mapping[str, torch.Tensor] | None = None,
    scope: str = "global",
) -> dict[str, torch.Tensor]:
    """Masks that keep the highest scores at a target density, inside optional source masks.

    Chapter 5 (magnitude pruning, IMP) and chapter 7 (sparse-to-sparse). The
    density is measured against the **full** layer or network, as in Gadhikar
    et al. (appendix *Formulas and notation*, pruning scores): a weight outside ``source_masks`` is never kept, so
    pruning stays inside a random source mask.

    Parameters
    ----------
    scores
        Layer name to a score tensor; larger means keep. NaN is not allowed.
    target_density
        Fraction of weights to keep: one number, or (with ``scope="layer"``)
        a per-layer mapping covering every layer in ``scores``.
    source_masks
        Layer name to a 0/1 mask; only entries that are 1 can be kept. Layers
        missing from it are unrestricted.
    scope
        ``"global"``: one threshold over all layers together (can empty a
        layer, the "layer collapse" of appendix *Formulas and notation*, pruning scores); ``"layer"``: every layer
        keeps ``round(p n_l)`` of its ``n_l`` weights (what TF-MOT and Evci's
        pruning runs do), at least one.

    Returns
    -------
    dict
        Layer name to a ``bool`` mask with exactly the requested count
        (``round(p N)`` globally, or ``max(1, round(p_l n_l))`` per layer).

    Raises
    ------
    ValueError
        For a bad density or scope, mismatched shapes, NaN scores, or a target
        above what the source masks allow.
    """
    scope = check_scope(scope)
    if not scores:
        raise ValueError("scores is empty: pass one score tensor per layer")
    source_masks = source_masks or {}
    unknown = sorted(set(source_masks) - set(scores))
    if unknown:
        raise ValueError(f"source_masks name layers without scores: {', '.join(unknown)}")
    allowed = {}
    for name, s in scores.items():
        if not isinstance(s, torch.Tensor):
            raise ValueError(f"score for layer {name!r} must be a tensor, got {type(s).__name__}")
        if torch.isnan(s).any():
            raise ValueError(f"score for layer {name!r} contains NaN")
        src = source_masks.get(name)
        if src is None:
            allowed[name] = torch.ones(s.shape, dtype=torch.bool)
        else:
            if tuple(src.shape) != tuple(s.shape):
                raise ValueError(f"source mask of layer {name!r} has shape {tuple(src.shape)}, its score {tuple(s.shape)}")
            allowed[name] = src.detach().cpu().bool()
    scores = {name: s.detach().cpu() for name, s in scores.items()}

    if isinstance(target_density, Mapping):
        if scope != "layer":
            raise ValueError("a per-layer target_density mapping needs scope='layer'")
        missing = sorted(set(scores) - set(target_density))
        if missing:
            raise ValueError(f"target_density has no entry for layer(s) {', '.join(missing)}")
        per_layer = {name: check_density(target_density[name], f"target density of layer {name!r}") for name in scores}
    else:
        p = check_density(target_density, "target_density")
        per_layer = {name: p for name in scores}

    if scope == "layer":
        out = {}
        for name, s in scores.items():
            n = s.numel()
            k = min(n, max(1, int(round(per_layer[name] * n))))
            available = int(allowed[name].sum())
            if k > available:
                raise ValueError(f"layer {name!r}: target density {per_layer[name]:.4g} needs {k} weights but its "
                                 f"source mask allows only {available} (density {available / n:.4g})")
            out[name] = top_k_mask(s, allowed[name], k)
        return out

    names = list(scores)
    sizes = [scores[n].numel() for n in names]
    total = sum(sizes)
    k = min(total, max(1, int(round(per_layer[names[0]] * total))))
    available = sum(int(allowed[n].sum()) for n in names)
    if k > available:
        raise ValueError(f"target density {per_layer[names[0]]:.4g} needs {k} weights but the source masks allow "
                         f"only {available} (density {available / total:.4g})")
    flat_scores = torch.cat([scores[n].reshape(-1) for n in names])
    flat_allowed = torch.cat([allowed[n].reshape(-1) for n in names])
    keep = top_k_mask(flat_scores, flat_allowed, k)
    out, start = {}, 0
    for name, size in zip(names, sizes):
        out[name] = keep[start:start + size].reshape(scores[name].shape).clone()
        start += size
    return out


def current_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """The ``bool`` mask of every conv/linear layer (all ones where none is attached), chapter 5."""
    out = {}
    for name, m in maskable_layers(model):
        mask = getattr(m, "weight_mask", None)
        out[name] = torch.ones(m.weight.shape, dtype=torch.bool) if mask is None else mask.detach().cpu().bool()
    return out


def dense_masking(model: nn.Module) -> Masking:
    """Attach all-ones masks to every conv/linear layer, so that pruning can change them (chapter 5)."""
    return Masking(model, {name: torch.ones_like(m.weight, dtype=torch.bool) for name, m in maskable_layers(model)})


# ----------------------------------------------------------------------------- gradual magnitude pruning


def cubic_density(step: int, *, start_step: int, end_step: int, final_density: float,
                  initial_density: float = 1.0) -> float:
    """Density at ``step`` on Zhu & Gupta's cubic schedule (chapter 5, Zhu & Gupta 2017).

    ``p_t = p_f + (p_0 - p_f) (1 - (t - t_0) / (t_1 - t_0))**3`` between
    ``start_step`` ``t_0`` and ``end_step`` ``t_1``; ``p_0`` before, ``p_f``
    after. The cube prunes fast while many redundant weights remain and slowly
    near the end.
    """
    p0 = check_density(initial_density, "initial_density")
    pf = check_density(final_density, "final_density")
    if pf > p0:
        raise ValueError(f"final_density {pf} must not exceed initial_density {p0}")
    for name, v in (("step", step), ("start_step", start_step), ("end_step", end_step)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
    if end_step <= start_step:
        raise ValueError(f"end_step ({end_step}) must be after start_step ({start_step})")
    if step <= start_step:
        return p0
    if step >= end_step:
        return pf
    frac = (step - start_step) / (end_step - start_step)
    return pf + (p0 - pf) * (1.0 - frac) ** 3


class GradualMagnitudePruning(Callback):
    """Prune by magnitude during training on the cubic schedule (chapter 5: Evci's pruning run).

    Every ``every`` steps between ``start`` and ``end`` (fractions of the run)
    the weights with the smallest ``|w|`` are removed until the density of
    :func:`cubic_density` is reached; after ``end`` the mask is final.
    Removed weights are zeroed with their optimizer state
    (:meth:`Masking.set_mask`), and never come back. ``fit`` must get a
    :class:`~rpbook.masks.Masking` (:func:`dense_masking` for a dense start).

    Parameters
    ----------
    final_density
        Density at the end of the schedule.
    start, end
        Fractions of the total steps where pruning starts and ends (Evci's
        LeNet-5 run: steps 3,000 to 7,000 of 11,719, i.e. about 0.26 and 0.6).
    every
        Steps between pruning events (Evci: 100).
    scope
        ``"layer"`` (every layer at the same density, as TF-MOT does) or
        ``"global"``.
    score
        A registered score name (:data:`SCORE_FUNCTIONS`); ``"magnitude"``.

    Attributes
    ----------
    events : list of dict
        ``{"step", "density"}`` of every pruning event (the realized density).
    """

    def __init__(self, final_density: float, *, start: float = 0.25, end: float = 0.6, every: int = 100,
                 scope: str = "layer", score: str = "magnitude"):
        self.final_density = check_density(final_density, "final_density")
        self.start = check_fraction(start, "start (a fraction of training)")
        self.end = check_fraction(end, "end (a fraction of training)")
        if self.end <= self.start:
            raise ValueError(f"end ({end}) must be later than start ({start})")
        if isinstance(every, bool) or not isinstance(every, numbers.Integral) or every < 1:
            raise ValueError(f"every must be a positive integer (steps between pruning events), got {every!r}")
        self.every = int(every)
        self.scope = check_scope(scope)
        if score not in SCORE_FUNCTIONS:
            raise ValueError(f"unknown pruning score {score!r}; registered: {', '.join(sorted(SCORE_FUNCTIONS))}")
        if score == "synflow":
            raise ValueError("GradualMagnitudePruning cannot score with 'synflow' (it needs an input shape); "
                             "use prune_at_init for SynFlow")
        self.score = score
        self.events: list[dict] = []
        self._initial: float | None = None
        self._layer_start: dict[str, float] = {}

    def _steps(self, total_steps: int) -> tuple[int, int]:
        t0 = int(round(self.start * total_steps))
        t1 = max(t0 + 1, int(round(self.end * total_steps)))
        return t0, t1

    def on_train_begin(self, state: TrainState) -> None:
        if state.masking is None:
            raise ValueError("GradualMagnitudePruning needs fit(..., masking=...); use dense_masking(model) for a dense start")
        if self._initial is None:
            self._initial = state.masking.global_density()
            self._layer_start = {n: float(m.float().mean()) for n, m in state.masking.masks.items()}
        if self.final_density > self._initial:
            raise ValueError(f"final_density {self.final_density} is above the starting density {self._initial:.4g}")

    def density_at(self, step: int, total_steps: int) -> float:
        """The schedule's global target density at ``step`` of a run of ``total_steps``."""
        t0, t1 = self._steps(total_steps)
        return cubic_density(step, start_step=t0, end_step=t1, final_density=self.final_density,
                             initial_density=self._initial if self._initial is not None else 1.0)

    def on_step_end(self, state: TrainState) -> None:
        t0, t1 = self._steps(state.total_steps)
        t = state.step
        if t <= t0 or t > t1 or ((t - t0) % self.every != 0 and t != t1):
            return
        target = self.density_at(t, state.total_steps)
        masking = state.masking
        source = masking.masks
        scores = {n: s for n, s in compute_scores(self.score, state.model, state.batch).items() if n in source}
        if self.scope == "layer":
            # Every layer loses the same fraction of its own starting weights, so a dense
            # start ends uniform and a sparse source keeps its layer-wise ratios.
            shrink = target / self._initial
            target = {n: self._layer_start[n] * shrink for n in scores}
        new = prune_to_density(scores, target, source_masks=source, scope=self.scope)
        for name, mask in new.items():
            if not torch.equal(mask, source[name]):
                masking.set_mask(name, mask, state.optimizer)
        self.events.append({"step": t, "density": masking.global_density()})

    def state_dict(self) -> dict:
        return {"events": list(self.events), "initial": self._initial, "layer_start": dict(self._layer_start)}

    def load_state_dict(self, state: dict) -> None:
        self.events = list(state.get("events", []))
        self._initial = state.get("initial")
        self._layer_start = dict(state.get("layer_start") or {})

    def fingerprint(self) -> dict:
        """The pruning schedule: a resumed run must prune the same way."""
        return {"final_density": self.final_density, "start": self.start, "end": self.end, "every": self.every,
                "scope": self.scope, "score": self.score}


# ----------------------------------------------------------------------------- IMP


def imp_densities(final_density: float, *, rate: float = 0.2, start_density: float = 1.0) -> list[float]:
    """IMP's levels: remove ``rate`` of the remaining weights per level until ``final_density`` (chapter 5).

    ``start * (1 - rate)**l`` for ``l = 1, 2, ...``; the last level is exactly
    ``final_density`` (Frankle & Carbin prune 20 % per level, Gadhikar et al. 2023).
    """
    pf = check_density(final_density, "final_density")
    p0 = check_density(start_density, "start_density")
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0.0 < float(rate) < 1.0:
        raise ValueError(f"rate must be the fraction of remaining weights removed per level, in (0, 1), got {rate!r}")
    if pf >= p0:
        raise ValueError(f"final_density {pf} must be below start_density {p0}")
    levels, p = [], p0
    while True:
        p *= 1.0 - float(rate)
        if p <= pf * (1 + 1e-9):
            levels.append(pf)
            return levels
        levels.append(p)


@dataclass
class IMPLevel:
    """One level of IMP: the density it trained at, what it reached, and its mask (chapter 5)."""

    level: int
    density: float
    realized_density: float
    test_accuracy: float | None
    test_loss: float
    history: list[dict] = field(default_factory=list)
    masks: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)


class _Snapshot(Callback):
    """Keep a copy of the weights after ``step`` optimizer steps (IMP rewinding)."""

    def __init__(self, step: int):
        self.step = step
        self.weights: dict[str, torch.Tensor] | None = None

    def on_train_begin(self, state: TrainState) -> None:
        if self.step == 0 and self.weights is None:  # a resumed run brings its snapshot back from the checkpoint
            self.weights = copy.deepcopy(state.model.state_dict())

    def on_step_end(self, state: TrainState) -> None:
        if state.step == self.step:
            self.weights = copy.deepcopy(state.model.state_dict())

    def state_dict(self) -> dict:
        return {"weights": self.weights}

    def load_state_dict(self, state: dict) -> None:
        self.weights = state.get("weights")

    def fingerprint(self) -> dict:
        return {"rewind_step": self.step}


def iterative_magnitude_pruning(
    model: nn.Module,
    data: Any,
    config: TrainConfig,
    densities: Sequence[float],
    *,
    masking: Masking | None = None,
    rewind_step: int = 0,
    scope: str = "global",
    score: str = "magnitude",
    final_train: bool = True,
    device: Any = None,
    progress: bool = False,
    callbacks_factory: Callable[[int], Sequence[Callback]] | None = None,
    checkpoint_dir: Any = None,
    resume: bool = False,
) -> list[IMPLevel]:
    """Iterative magnitude pruning with reset to initialization or rewinding (chapter 5, appendix *Formulas and notation*, pruning scores and dynamic sparse training).

    Train; prune to the next density by magnitude (inside the masks ``masking``
    starts with, when given: sparse-to-sparse IMP, chapter 7); put the
    surviving weights back to their values after ``rewind_step`` steps of the
    first run (0 = the initialization: Frankle & Carbin's lottery ticket; a
    few hundred steps = Frankle et al.'s rewinding); repeat. Every level
    trains with a fresh optimizer, so the optimizer state is reset with the
    weights, and the full schedule of ``config``.

    Parameters
    ----------
    model
        The network, already initialized (its current weights are ``θ_0``);
        modified in place.
    data, config
        What :func:`~rpbook.train.fit` trains on and how.
    densities
        Decreasing global target densities, one per level (see :func:`imp_densities`).
    masking
        The :class:`~rpbook.masks.Masking` attached to ``model``: its masks are
        the source that pruning never leaves. ``None`` attaches all-ones masks.
    rewind_step
        Optimizer steps of the first run whose weights the survivors go back to.
    scope, score
        Passed to :func:`prune_to_density` and :func:`compute_scores`.
    final_train
        Train the last ticket too; otherwise the last level holds the pruned,
        rewound, untrained ticket (no test metrics).
    callbacks_factory
        ``level -> callbacks`` for each training run (e.g. a gradient logger).
    checkpoint_dir, resume
        Checkpoint every level's training in ``checkpoint_dir/level-<l>``;
        with ``resume`` an interrupted run continues where it stopped (finished
        levels are read back, not retrained) and equals the uninterrupted one
        bit for bit on the CPU.

    Returns
    -------
    list of IMPLevel
        Level 0 is the run before any pruning; level ``l`` holds the mask of
        ``densities[l-1]``.

    Raises
    ------
    ValueError
        For densities that are not strictly decreasing in (0, 1] or start
        above the source density, a bad rewind step, scope or score.
    """
    check_scope(scope)
    if score not in SCORE_FUNCTIONS:
        raise ValueError(f"unknown pruning score {score!r}; registered: {', '.join(sorted(SCORE_FUNCTIONS))}")
    if score in ("snip", "grasp", "synflow"):
        raise ValueError(f"IMP scores the trained weights without a batch or an input shape, so it cannot use "
                         f"{score!r}; use 'magnitude' or 'random' (prune_at_init runs SNIP, GraSP and SynFlow)")
    densities = [check_density(d, "IMP density") for d in densities]
    if not densities or any(b >= a for a, b in zip(densities, densities[1:])):
        raise ValueError(f"densities must be a non-empty, strictly decreasing sequence, got {densities!r}")
    if isinstance(rewind_step, bool) or not isinstance(rewind_step, numbers.Integral) or rewind_step < 0:
        raise ValueError(f"rewind_step must be a non-negative integer, got {rewind_step!r}")
    total_steps = math.ceil(len(data.x_train) / config.batch_size) * config.epochs
    if rewind_step >= total_steps:
        raise ValueError(f"rewind_step {rewind_step} is not before the end of training ({total_steps} steps)")
    masking = masking if masking is not None else dense_masking(model)
    if densities[0] >= masking.global_density():
        raise ValueError(f"the first IMP density {densities[0]} must be below the starting density "
                         f"{masking.global_density():.4g}")

    from pathlib import Path

    from .train import CHECKPOINT_FILE

    if not isinstance(resume, bool):
        raise ValueError(f"resume must be True or False, got {resume!r}")
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs a checkpoint_dir")
    level_dirs = [Path(checkpoint_dir) / f"level-{lv}" for lv in range(len(densities) + 1)] if checkpoint_dir is not None \
        else [None] * (len(densities) + 1)
    if resume and not (level_dirs[0] / CHECKPOINT_FILE).is_file():
        raise ValueError(f"cannot resume: {str(level_dirs[0])!r} holds no {CHECKPOINT_FILE}; check the path, "
                         "or start a new run without resuming")

    snapshot = _Snapshot(int(rewind_step))
    levels: list[IMPLevel] = []
    for level in range(len(densities) + 1):
        if level == len(densities) and not final_train:
            levels.append(IMPLevel(level=level, density=densities[-1], realized_density=masking.global_density(),
                                   test_accuracy=None, test_loss=math.nan, masks=masking.masks))
            break
        extra = list(callbacks_factory(level)) if callbacks_factory else []
        folder = level_dirs[level]
        hist = fit(model, data, config, masking=masking, callbacks=([snapshot] if level == 0 else []) + extra,
                   device=device, progress=progress, desc=f"IMP level {level}", checkpoint_dir=folder,
                   resume=bool(resume and folder is not None and (folder / CHECKPOINT_FILE).is_file()),
                   run={"imp_level": level, "imp_density": None if level == 0 else densities[level - 1],
                        "imp_scope": scope, "imp_score": score})
        realized = masking.global_density()
        levels.append(IMPLevel(
            level=level, density=realized if level == 0 else densities[level - 1], realized_density=realized,
            test_accuracy=hist.test.get("accuracy"), test_loss=hist.test["loss"], history=hist.epochs,
            masks=masking.masks,
        ))
        if level == len(densities):
            break
        source = masking.masks
        scores = {n: v for n, v in compute_scores(score, model).items() if n in source}
        new = prune_to_density(scores, densities[level], source_masks=source, scope=scope)
        model.load_state_dict(snapshot.weights)
        for name, mask in new.items():
            masking.set_mask(name, mask)  # also zeroes the rewound values of pruned weights
    return levels


# ----------------------------------------------------------------------------- pruning at init, chapter 7


PAI_METHODS: tuple[str, ...] = ("magnitude", "snip", "grasp", "synflow", "synflow-oneshot", "random")


class LayerCollapseWarning(UserWarning):
    """A pruned network in which no input reaches the output (chapter 7, appendix *Formulas and notation*, pruning scores)."""


def layer_quota_densities(source_masks: Mapping[str, torch.Tensor], target_density: float) -> dict[str, float]:
    """Per-layer densities that reach ``target_density`` overall and keep the source's layer ratios (chapter 7).

    Every layer keeps the same fraction ``target / source density`` of its
    source weights, so a per-layer pruner can never empty a layer. Densities
    are measured against the full layers.

    Raises
    ------
    ValueError
        For a bad density or one above the source density.
    """
    if not source_masks:
        raise ValueError("source_masks is empty: pass one mask per layer")
    p = check_density(target_density, "target_density")
    total = sum(m.numel() for m in source_masks.values())
    kept = sum(int(m.bool().sum()) for m in source_masks.values())
    if kept == 0:
        raise ValueError("the source masks keep no weight at all")
    source_density = kept / total
    # An exact-count source keeps round(p_l n_l) weights per layer, so its realized density can sit a
    # fraction of a weight per layer below its nominal one; a target at the nominal density is the source.
    if p > source_density + len(source_masks) / total:
        raise ValueError(f"target density {p:.6g} is above the source density {source_density:.6g}")
    shrink = min(1.0, p / source_density)
    return {name: float(m.bool().float().mean()) * shrink for name, m in source_masks.items()}


def synflow_schedule(start_density: float, target_density: float, iterations: int) -> list[float]:
    """SynFlow's exponential schedule: ``start · (target/start)^(k/n)`` for ``k = 1..n`` (chapter 7).

    Pruning in many small steps, re-scoring after each, is what lets
    iterative SynFlow avoid layer collapse (Tanaka et al. use 100 iterations).
    """
    p0 = check_density(start_density, "start_density")
    pf = check_density(target_density, "target_density")
    if isinstance(iterations, bool) or not isinstance(iterations, numbers.Integral) or iterations < 1:
        raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
    if pf > p0:
        raise ValueError(f"target_density {pf} must not exceed start_density {p0}")
    return [p0 * (pf / p0) ** (k / iterations) for k in range(1, int(iterations) + 1)]


def _unit_graph(masks: Mapping[str, torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
    """Each layer as a ``(fan-out units × fan-in units)`` 0/1 matrix; conv layers as channel graphs."""
    out = []
    for name, m in masks.items():
        m = m.detach().cpu().bool()
        if m.dim() > 2:  # a channel edge exists when any kernel entry survives
            m = m.reshape(m.shape[0], m.shape[1], -1).any(dim=2)
        elif m.dim() != 2:
            raise ValueError(f"mask of layer {name!r} has shape {tuple(m.shape)}; expected a linear or conv weight")
        out.append((name, m.double()))
    return out


def layer_collapse(masks: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Does any input still reach the output through the kept weights? (chapter 7, appendix *Formulas and notation*, pruning scores)

    Follows the layers in order as a chain (an MLP, LeNet, VGG: a conv
    layer's output channels feed the next conv's input channels, or the
    blocks of a flattened linear input). Paths are counted in the unit graph
    (for conv layers, the channel graph).

    Returns
    -------
    dict
        ``collapsed`` (no input–output path, or an empty layer; ``None`` when
        the layers do not form a chain, so that paths cannot be followed), ``paths``
        (the number of input–output paths, a float; ``None`` when the layers
        do not form a chain, e.g. a ResNet's shortcuts), ``cut_layer`` (the
        first layer after which no path survives, or ``None``),
        ``empty_layers`` (layers that keep no weight).

    Raises
    ------
    ValueError
        For an empty mapping or a mask that is not a layer weight.
    """
    if not masks:
        raise ValueError("masks is empty: pass one mask per layer, in forward order")
    graph = _unit_graph(masks)
    empty = [name for name, m in masks.items() if not bool(m.bool().any())]
    counts: torch.Tensor | None = torch.ones(graph[0][1].shape[1], dtype=torch.float64)
    cut = None
    for name, m in graph:
        fan_in = m.shape[1]
        if counts.numel() != fan_in:
            if fan_in % counts.numel() != 0:
                counts = None  # not a chain: only empty layers can be detected
                break
            counts = counts.repeat_interleave(fan_in // counts.numel())  # flatten: each channel feeds a block
        counts = m @ counts
        if cut is None and not bool((counts > 0).any()):
            cut = name
    paths = None if counts is None else float(counts.sum())
    # Not a chain (e.g. a ResNet, whose shortcuts bypass an empty branch): unknown, not "collapsed".
    collapsed = None if paths is None else (bool(empty) or paths == 0.0)
    if cut is None and empty:
        cut = empty[0]
    return {"collapsed": collapsed, "paths": paths, "cut_layer": cut, "empty_layers": empty}


def check_layer_collapse(masks: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """:func:`layer_collapse`, and a :class:`LayerCollapseWarning` naming the layer when it collapsed (chapter 7)."""
    report = layer_collapse(masks)
    if report["collapsed"] is None and report["empty_layers"]:
        name = report["empty_layers"][0]
        warnings.warn(f"layer {name!r} keeps 0 of {masks[name].numel()} weights; the layers do not form a chain "
                      f"(shortcut connections?), so whether any input still reaches the output was not checked",
                      LayerCollapseWarning, stacklevel=2)
    elif report["empty_layers"]:
        name = report["empty_layers"][0]
        warnings.warn(f"layer collapse: layer {name!r} keeps 0 of {masks[name].numel()} weights, so no input "
                      f"reaches the output; use per-layer quotas (scope='layer') or iterative SynFlow",
                      LayerCollapseWarning, stacklevel=2)
    elif report["collapsed"]:
        warnings.warn(f"layer collapse: no input–output path survives past layer {report['cut_layer']!r} "
                      f"(every layer keeps weights, but they do not connect); use per-layer quotas "
                      f"(scope='layer') or iterative SynFlow", LayerCollapseWarning, stacklevel=2)
    return report


def prune_at_init(
    model: nn.Module,
    method: str,
    target_density: float,
    *,
    batch: tuple[torch.Tensor, torch.Tensor] | None = None,
    scope: str = "global",
    iterations: int = 100,
    seed: int = 0,
    source_masks: Mapping[str, torch.Tensor] | None = None,
    in_shape: Sequence[int] | None = None,
    temperature: float = 200.0,
    task: str = "classification",
    warn: bool = True,
) -> dict[str, torch.Tensor]:
    """Prune at initialization inside a source mask with one of :data:`PAI_METHODS` (chapter 7, appendix *Formulas and notation*, pruning scores).

    The model is not changed: the function returns the masks, which
    :meth:`~rpbook.masks.Masking.set_mask` then applies.

    Parameters
    ----------
    model
        The initialized network. Its attached masks are the source unless
        ``source_masks`` is given (no masks and no ``source_masks``: dense source).
    method
        ``"magnitude"``, ``"snip"``, ``"grasp"``, ``"random"`` (one shot),
        ``"synflow"`` (``iterations`` rounds on an exponential schedule, as
        in its paper) or ``"synflow-oneshot"`` (one round, as the
        sparse-to-sparse code runs it).
    target_density
        Kept fraction of the **full** network.
    batch
        ``(inputs, targets)`` for SNIP and GraSP; SynFlow reads only the input
        shape from it (or from ``in_shape``).
    scope
        ``"global"``: one threshold over all layers (may collapse a layer);
        ``"layer"``: per-layer quotas of :func:`layer_quota_densities`.
    seed, temperature
        For the random scores and GraSP.
    task
        The loss of SNIP and GraSP: ``"classification"`` (cross-entropy) or
        ``"regression"`` (mean squared error).
    warn
        Emit a :class:`LayerCollapseWarning` when the result has no input–output path.

    Raises
    ------
    ValueError
        For an unknown method or scope, a bad density, a missing batch, or a
        target above the source density.
    """
    if method not in PAI_METHODS:
        raise ValueError(f"unknown pruning-at-init method {method!r}; allowed: {', '.join(PAI_METHODS)}")
    check_scope(scope)
    p = check_density(target_density, "target_density")
    source = _masks_for_scoring(model, source_masks)
    layer_quota_densities(source, p)  # checks p against the source density before any scoring
    start = sum(int(m.sum()) for m in source.values()) / sum(m.numel() for m in source.values())
    p = min(p, start)  # a target at the (nominal) source density keeps the whole source

    options: dict[str, Any] = {}
    score = method
    if method in ("snip", "grasp"):
        _check_batch(batch, method.upper() if method == "snip" else "GraSP")
        options["task"] = task
        if method == "grasp":
            options["temperature"] = temperature
    elif method in ("synflow", "synflow-oneshot"):
        if in_shape is None:
            if batch is None:
                raise ValueError("SynFlow needs in_shape=(...) or a batch to read the input shape from")
            in_shape = tuple(_check_batch(batch, "SynFlow")[0].shape[1:])
        options["in_shape"] = _check_in_shape(in_shape)
        score = "synflow"
    elif method == "random":
        options["seed"] = seed

    def prune_once(current: Mapping[str, torch.Tensor], density: float) -> dict[str, torch.Tensor]:
        scores = compute_scores(score, model, batch, masks=current, **options)
        # quotas from the source, not from the current masks: rounding does not compound over rounds
        target = layer_quota_densities(source, density) if scope == "layer" else density
        return prune_to_density(scores, target, source_masks=current, scope=scope)

    if method == "synflow":
        current = dict(source)
        for density in synflow_schedule(start, p, iterations):
            current = prune_once(current, density)
        masks = current
    else:
        masks = prune_once(source, p)
    if warn:
        check_layer_collapse(masks)
    return masks


__all__ = [
    "SCOPES", "check_scope", "SCORE_FUNCTIONS", "ScoreFunction", "register_score", "magnitude_scores", "compute_scores",
    "top_k_mask", "prune_to_density", "current_masks", "dense_masking", "cubic_density", "GradualMagnitudePruning",
    "imp_densities", "IMPLevel", "iterative_magnitude_pruning", "snip_scores", "grasp_scores", "synflow_scores",
    "random_scores", "PAI_METHODS", "LayerCollapseWarning", "layer_quota_densities", "synflow_schedule",
    "layer_collapse", "check_layer_collapse", "prune_at_init",
]
