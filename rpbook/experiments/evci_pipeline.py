"""Evci et al.'s pipeline at small scale: one pruning run, then its final mask trained six ways, beside random masks.

Chapter 5 (*Gradient flow*), sections *Lottery tickets* and *Dynamic sparse
training*. Reproduces the protocol of Evci et al. (2022), "Gradient Flow in
Sparse Neural Networks and How Lottery Tickets Win" (Evci et al. 2022), per
setup (model and data) and seed:

1. **Prune**: train the dense network and prune it by magnitude on the cubic
   schedule (every layer to the same density) to ``density``;
2. train the pruning run's final mask again, from
   - **Scratch**: fresh weights with the dense (He) init, blind to the mask;
   - **Scratch+**: fresh weights with the sparsity-aware (unit-scaled) init;
   - **Lottery**: the pruning run's own initial weights (the lottery ticket);
   - **SET** and **RigL**: the mask changes during training
     (init ``dst_init``, Scratch+ by default);
   - **Small dense**: a narrower dense network with about as many parameters;
3. and, the book's addition, a static **random ERK** mask of the same global
   density (one per seed), trained from the dense init (**Random ERK**) and
   the sparsity-aware init (**Random ERK+**), the inits of Scratch / Scratch+.

Every run logs the masked gradient norm on a fixed batch of 1,000 training
examples at step 0 and every ``log_every`` steps, and the L2 distance of its
weights to the pruned solution. At the end the loss is measured along the
straight line from each of ``interp_methods``' solutions to the pruned one.
All runs of a seed share the data order. Run it with
``rpbook run evci_pipeline --profile standard``.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import numbers
import statistics
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..config import seed_everything
from ..validators import check_seed, check_seeds
from ..data import DATASET_NAMES, load_dataset
from ..dst import DST_METHODS
from ..gradflow import GradientNormLogger, fixed_batch
from ..init import check_init, initialize_
from ..masks import Masking, check_density, count_nonzero_parameters, maskable_layers, sample_masks
from ..models import MODEL_NAMES, build_model, count_parameters
from ..pruning import GradualMagnitudePruning, check_scope, dense_masking
from ..train import Callback, TrainConfig, TrainState, compute_loss, evaluate, fit
from ..results import Tolerance
from . import Experiment, RunContext
from .specs import profile_presets

#: The methods a config runs by default (a registered DST method may be added to a config's ``methods``).
METHODS: tuple[str, ...] = ("scratch", "scratch+", "lottery", "set", "rigl", "small-dense", "random", "random+")
#: Methods of the pipeline that are not DST methods; every DST method comes from :data:`rpbook.dst.DST_METHODS`.
FIXED_METHOD_LABELS: dict[str, str] = {"prune": "Prune", "scratch": "Scratch", "scratch+": "Scratch+",
                                       "lottery": "Lottery", "random": "Random ERK", "random+": "Random ERK+",
                                       "small-dense": "Small dense"}
#: The init of each static method that starts from fresh weights (Scratch / Scratch+ and their random-mask twins).
FRESH_INITS: dict[str, str] = {"scratch": "dense", "scratch+": "unit-scaled", "random": "dense",
                               "random+": "unit-scaled"}
#: The methods that train a random ERK mask instead of the pruning run's mask.
RANDOM_MASK_METHODS: tuple[str, ...] = ("random", "random+")


def method_labels() -> dict[str, str]:
    """Display name of every method, the registered DST methods included (chapter 5 figures)."""
    fixed = dict(FIXED_METHOD_LABELS)
    small_dense = fixed.pop("small-dense")
    return {**fixed, **{name: cls.label for name, cls in DST_METHODS.items()}, "small-dense": small_dense}


def allowed_methods() -> tuple[str, ...]:
    """Every method a config may run: the fixed ones and every registered DST method."""
    return tuple(m for m in method_labels() if m != "prune")


@dataclass(frozen=True)
class EvciSetup:
    """One model on one data set, pruned to ``density``, trained with ``train`` (chapter 5)."""

    name: str
    model: str = "mlp"
    dataset: str = "mnist1d"
    hidden: tuple[int, ...] | None = (300, 100)
    density: float = 0.05
    n_train: int | None = None
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a setup needs a non-empty name, got {self.name!r}")
        if self.model not in MODEL_NAMES:
            raise ValueError(f"unknown model {self.model!r}; allowed: {', '.join(MODEL_NAMES)}")
        if self.dataset not in DATASET_NAMES:
            raise ValueError(f"unknown dataset {self.dataset!r}; allowed: {', '.join(DATASET_NAMES)}")
        if self.hidden is not None and self.model != "mlp":
            raise ValueError(f"hidden only applies to 'mlp', not to {self.model!r}")
        check_density(self.density)
        if self.density >= 1.0:
            raise ValueError(f"the pruning run needs a density below 1, got {self.density}")
        self.train.validate()


@dataclass(frozen=True)
class EvciConfig:
    """Setups × seeds of the Evci pipeline and the settings shared by all runs (chapter 5).

    ``prune_start`` / ``prune_end`` are fractions of training (Evci's LeNet-5:
    steps 3,000–7,000 of 11,719); ``dst_every`` is ΔT in steps, ``dst_end``
    the fraction of training after which masks freeze; ``interp_points``
    values of α in [-0.2, 1.2] on the line to the pruned solution.
    """

    setups: tuple[EvciSetup, ...]
    methods: tuple[str, ...] = METHODS
    prune_start: float = 0.25
    prune_end: float = 0.6
    prune_every: int = 10
    prune_scope: str = "layer"
    dst_init: str = "unit-scaled"
    dst_drop_fraction: float = 0.3
    dst_every: int = 50
    dst_end: float = 0.75
    log_every: int = 25
    log_batch: int = 1000
    interp_methods: tuple[str, ...] = ("lottery", "scratch", "random", "random+")
    interp_points: int = 15
    split_seed: int = 0
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)

    def __post_init__(self) -> None:
        if not self.setups:
            raise ValueError("setups must name at least one EvciSetup")
        names = [s.name for s in self.setups]
        if len(set(names)) != len(names):
            raise ValueError(f"setup names must be unique, got {names}")
        for m in self.methods:
            if m not in allowed_methods():
                raise ValueError(f"unknown method {m!r}; allowed: {', '.join(allowed_methods())}")
        for m in self.interp_methods:
            if m not in self.methods or m == "small-dense":
                raise ValueError(f"interp_methods must be sparse methods that are run, got {m!r}")
        if not 0 <= self.prune_start < self.prune_end <= 1:
            raise ValueError(f"need 0 <= prune_start < prune_end <= 1, got {self.prune_start}, {self.prune_end}")
        check_scope(self.prune_scope)
        check_init(self.dst_init)
        if not 0 < self.dst_drop_fraction < 1:
            raise ValueError(f"dst_drop_fraction must be in (0, 1), got {self.dst_drop_fraction!r}")
        if not 0 < self.dst_end <= 1:
            raise ValueError(f"dst_end must be in (0, 1], got {self.dst_end!r}")
        for name in ("prune_every", "dst_every", "log_every", "log_batch", "interp_points"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        check_seed(self.split_seed)
        check_seeds(self.seeds)


def _train(epochs: int, batch_size: int, lr: float) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, momentum=0.9, weight_decay=1e-4,
                       schedule="cosine", amp=False)


presets = profile_presets(
    """``quick``: a 32-16 MLP on 600 MNIST-1D examples, 3 epochs, one seed. ``standard``: MLP 300-100 on
    MNIST-1D and LeNet-5 on digits, both to 95 % sparsity, five seeds, gradient norms every 50 steps.
    ``full``: Evci's LeNet-5 on MNIST (25 epochs) and the MLP 300-100 to 98 % (a GPU machine with the data).""",
    quick=lambda: EvciConfig(setups=(EvciSetup(name="MLP / MNIST-1D", hidden=(32, 16), density=0.1, n_train=600,
                                               train=_train(3, 64, 0.1)),),
                             prune_every=2, dst_every=5, log_every=5, log_batch=200, interp_points=5, seeds=(0,)),
    standard=lambda: EvciConfig(setups=(
        EvciSetup(name="MLP 300-100 / MNIST-1D", model="mlp", dataset="mnist1d", hidden=(300, 100),
                  density=0.05, train=_train(40, 128, 0.1)),
        EvciSetup(name="LeNet-5 / digits", model="lenet5", dataset="digits", hidden=None, density=0.05,
                  train=_train(25, 32, 0.05)),
    # Gradient norms every 50 steps (not 25): the two random-mask arms then fit in the 10 CPU-minute budget.
    ), log_every=50),
    full=lambda: EvciConfig(setups=(
        EvciSetup(name="LeNet-5 / MNIST", model="lenet5", dataset="mnist", hidden=None, density=0.05,
                  train=TrainConfig(epochs=25, batch_size=128, lr=0.05, momentum=0.9, weight_decay=5e-4)),
        EvciSetup(name="MLP 300-100 / MNIST", model="mlp", dataset="mnist", hidden=(300, 100), density=0.02,
                  train=TrainConfig(epochs=25, batch_size=128, lr=0.2, momentum=0.9, weight_decay=1e-4)),
    ), prune_every=100, dst_every=100, log_every=200, seeds=(0, 1, 2, 3, 4)),
)


# ----------------------------------------------------------------------------- pieces


def _flat(model: nn.Module) -> torch.Tensor:
    """All parameters (weights and biases) as one CPU vector."""
    return torch.cat([p.detach().reshape(-1).double().cpu() for p in model.parameters()])


class _Tracker(GradientNormLogger):
    """Gradient norm on the fixed batch plus the L2 distance to a reference weight vector."""

    def __init__(self, every: int, batch: tuple[torch.Tensor, torch.Tensor], reference: torch.Tensor | None):
        super().__init__(every=every, batch=batch)
        self.reference = reference

    def _measure(self, state: TrainState) -> None:
        super()._measure(state)
        if self.reference is not None:
            self.records[-1]["distance"] = float((_flat(state.model) - self.reference).norm())


def _curves(tracker: GradientNormLogger) -> dict:
    out = {"steps": tracker.steps(), "grad_norm": tracker.totals()}
    if tracker.records and "distance" in tracker.records[0]:
        out["distance"] = [r["distance"] for r in tracker.records]
    return out


def small_dense_width(setup: EvciSetup, in_shape: tuple[int, ...], num_classes: int, budget: int) -> float:
    """The width multiplier whose dense model has the parameter count closest to ``budget`` (chapter 5)."""
    best, best_gap = 1.0, math.inf
    for i in range(1, 1001):
        width = i / 1000
        model = build_model(setup.model, in_shape=in_shape, num_classes=num_classes, width=width, hidden=setup.hidden)
        gap = abs(count_parameters(model) - budget)
        if gap < best_gap:
            best, best_gap = width, gap
        if count_parameters(model) > budget:
            break
    return best


@torch.no_grad()
def interpolate(model: nn.Module, start: dict, end: dict, alphas: list[float], batch: tuple, data: Any) -> dict:
    """Train loss on ``batch`` and test accuracy along ``(1-α) start + α end`` (chapter 5, Evci Fig. 4)."""
    losses, accs = [], []
    dev = next(model.parameters()).device
    x, y = batch[0].to(dev), batch[1].to(dev)
    for a in alphas:
        model.load_state_dict({k: (1 - a) * start[k] + a * end[k] for k in start})
        model.eval()
        losses.append(float(compute_loss(model(x), y, data.task)))
        accs.append(evaluate(model, data.x_test, data.y_test, task=data.task)["accuracy"])
    return {"train_loss": losses, "test_accuracy": accs}


def _barrier(losses: list[float], alphas: list[float]) -> float:
    """Largest rise of the loss above the straight line between its values at α = 0 and α = 1."""
    i0 = min(range(len(alphas)), key=lambda i: abs(alphas[i]))
    i1 = min(range(len(alphas)), key=lambda i: abs(alphas[i] - 1))
    inside = [i for i in range(len(alphas)) if -1e-9 <= alphas[i] <= 1 + 1e-9]
    return max(losses[i] - ((1 - alphas[i]) * losses[i0] + alphas[i] * losses[i1]) for i in inside)


# ----------------------------------------------------------------------------- one seed of one setup


@dataclass
class PruningRun:
    """What the pruning run of one setup and seed leaves behind (chapter 5).

    ``theta0``: the initial weights (the lottery ticket's start); ``masks``: the
    final mask; ``state``: the pruned solution; ``model``/``masking``: the
    trained network and its masks; ``history``, ``events``: the training history
    and the pruning schedule's events; ``callbacks``: the extra callbacks passed in.
    """

    model: nn.Module
    masking: Masking
    theta0: dict
    masks: dict
    state: dict
    history: Any
    events: list
    callbacks: list


def pruning_run(setup: EvciSetup, seed: int, data: Any, *, start: float, end: float, every: int,
                scope: str = "layer", callbacks: tuple[Callback, ...] = (), device: Any = None) -> PruningRun:
    """Train the dense network of ``setup`` (dense init, data order ``seed``) and prune it to ``setup.density``.

    Chapter 5, *The pipeline of Evci et al.*: gradual magnitude pruning on the
    cubic schedule between fractions ``start`` and ``end`` of training, every
    ``every`` steps, per layer (``scope="layer"``) or globally.
    """
    seed_everything(seed)
    model = build_model(setup.model, in_shape=tuple(data.in_shape), num_classes=data.num_classes,
                        hidden=setup.hidden)
    initialize_(model, "dense", seed=seed)
    theta0 = copy.deepcopy(model.state_dict())
    masking = dense_masking(model)
    gmp = GradualMagnitudePruning(setup.density, start=start, end=end, every=every, scope=scope)
    hist = fit(model, data, dataclasses.replace(setup.train, seed=seed), masking=masking,
               callbacks=[gmp, *callbacks], device=device, progress=False)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return PruningRun(model=model, masking=masking, theta0=theta0, masks=masking.masks, state=state, history=hist,
                      events=gmp.events, callbacks=list(callbacks))


def random_erk_masks(model: nn.Module, density: float, seed: int) -> dict[str, torch.Tensor]:
    """A static random ERK mask of global ``density`` for ``model``: the random arm beside a pruned mask (chapter 5)."""
    return sample_masks(model, density, "erk", seed=seed)


#: The methods :func:`sparse_start` can start: the lottery ticket and every fresh-weight static method.
STATIC_METHODS: tuple[str, ...] = ("lottery", *FRESH_INITS)


def sparse_start(model: nn.Module, method: str, run: PruningRun, seed: int, *, density: float | None = None,
                 mask_seed: int | None = None) -> Masking:
    """Mask ``model`` and set its starting weights for one static method of the pipeline (chapter 5).

    ``lottery``: the pruning run's mask and initial weights ``theta0``;
    ``scratch`` / ``scratch+``: its mask with fresh dense / unit-scaled weights
    (seed ``seed``); ``random`` / ``random+``: a random ERK mask of global
    ``density`` (default: the pruned mask's; mask seed ``mask_seed``, default
    ``seed + 10_000``) with the same two inits (DST methods start in
    :func:`run_unit`, from ``dst_init``).
    """
    if method not in STATIC_METHODS:
        raise ValueError(f"no static start for method {method!r}; allowed: {', '.join(STATIC_METHODS)}")
    if method in RANDOM_MASK_METHODS:
        if density is None:
            density = run.masking.global_density()
        masking = Masking(model, random_erk_masks(model, density, seed + 10_000 if mask_seed is None else mask_seed))
    else:
        masking = Masking(model, run.masks)
    if method == "lottery":
        model.load_state_dict(run.theta0)
        masking.apply_()
    else:
        initialize_(model, FRESH_INITS[method], seed=seed)
    return masking


def run_unit(config: EvciConfig, setup: EvciSetup, seed: int, device: Any = None) -> dict:
    """The whole pipeline for one setup and seed; returns its JSON-able record (chapter 5)."""
    data = load_dataset(setup.dataset, seed=config.split_seed, n_train=setup.n_train)
    in_shape, classes = tuple(data.in_shape), data.num_classes
    train = dataclasses.replace(setup.train, seed=seed)
    log_batch = fixed_batch(data, config.log_batch)
    rigl_batch = fixed_batch(data, config.log_batch, offset=config.log_batch) \
        if len(data.x_train) >= 2 * config.log_batch else log_batch

    def build(width: float = 1.0) -> nn.Module:
        return build_model(setup.model, in_shape=in_shape, num_classes=classes, width=width, hidden=setup.hidden)

    # 1. The pruning run.
    tracker = _Tracker(config.log_every, log_batch, None)
    pruned = pruning_run(setup, seed, data, start=config.prune_start, end=config.prune_end,
                         every=config.prune_every, scope=config.prune_scope, callbacks=(tracker,), device=device)
    model, masking, masks, hist = pruned.model, pruned.masking, pruned.masks, pruned.history
    pruned_state = pruned.state
    pruned_flat = _flat(model)
    record: dict = {
        "setup": setup.name, "seed": seed,
        "density": masking.global_density(),
        "layer_densities": masking.layer_densities(),
        "nonzero_params": count_nonzero_parameters(model),
        "dense_params": count_parameters(model),
        "pruned_norm": float(pruned_flat.norm()),
        "methods": {"prune": {"test_accuracy": hist.test["accuracy"], "test_loss": hist.test["loss"],
                              "train_acc": hist.epochs[-1]["train_acc"], **_curves(tracker),
                              "prune_events": pruned.events}},
    }
    finals: dict[str, dict] = {}

    # 2. The runs from the final mask (and from a random ERK mask of the same density).
    for method in config.methods:
        if method == "small-dense":
            width = small_dense_width(setup, in_shape, classes, record["nonzero_params"])
            net = build(width)
            initialize_(net, "dense", seed=seed + 10_000)
            tracker = _Tracker(config.log_every, log_batch, None)
            hist = fit(net, data, train, callbacks=[tracker], device=device, progress=False)
            record["methods"][method] = {"test_accuracy": hist.test["accuracy"], "test_loss": hist.test["loss"],
                                         "train_acc": hist.epochs[-1]["train_acc"], "width": width,
                                         "params": count_parameters(net), **_curves(tracker)}
            continue
        net = build()
        if method in DST_METHODS:
            net_masking = Masking(net, masks)
            initialize_(net, config.dst_init, seed=seed + 10_000)
        else:
            net_masking = sparse_start(net, method, pruned, seed + 10_000, density=record["density"])
        start_distance = float((_flat(net) - pruned_flat).norm())
        tracker = _Tracker(config.log_every, log_batch, pruned_flat)
        callbacks: list[Callback] = [tracker]
        dst = None
        if method in DST_METHODS:
            # Every DST method gets the same options; SET ignores grow_batch, RigL the seed.
            dst = DST_METHODS[method](seed=seed, grow_batch=rigl_batch, drop_fraction=config.dst_drop_fraction,
                                      update_every=config.dst_every, end=config.dst_end, measure_batch=log_batch)
            callbacks.insert(0, dst)
        hist = fit(net, data, train, masking=net_masking, callbacks=callbacks, device=device, progress=False)
        entry = {"test_accuracy": hist.test["accuracy"], "test_loss": hist.test["loss"],
                 "train_acc": hist.epochs[-1]["train_acc"], "start_distance": start_distance,
                 "final_distance": float((_flat(net) - pruned_flat).norm()), **_curves(tracker)}
        if method in RANDOM_MASK_METHODS:
            entry["density"] = net_masking.global_density()
            entry["layer_densities"] = net_masking.layer_densities()
            entry["mask_overlap"] = sum(int((net_masking.masks[n] & masks[n]).sum()) for n in masks) / max(
                1, sum(int(m.sum()) for m in masks.values()))
        if dst is not None:
            entry["mask_updates"] = [{k: e[k] for k in ("step", "drop_fraction", "swapped",
                                                        "grad_norm_before", "grad_norm_after")}
                                     for e in dst.events]
            changed = sum(int((net_masking.masks[n] & ~masks[n]).sum()) for n in masks)
            entry["mask_changed_fraction"] = changed / max(1, sum(int(m.sum()) for m in masks.values()))
        record["methods"][method] = entry
        finals[method] = {k: v.detach().clone() for k, v in net.state_dict().items()}

    # 3. The line from each solution to the pruned solution.
    alphas = [-0.2 + 1.4 * i / (config.interp_points - 1) for i in range(config.interp_points)]
    probe = build().to(next(iter(pruned_state.values())).device)
    record["interpolation"] = {"alphas": alphas}
    for method in config.interp_methods:
        curve = interpolate(probe, finals[method], pruned_state, alphas, log_batch, data)
        curve["barrier"] = _barrier(curve["train_loss"], alphas)
        record["interpolation"][method] = curve
    return record


# ----------------------------------------------------------------------------- the experiment


def _stats(values: list[float]) -> dict:
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values)}


def run(config: EvciConfig, ctx: RunContext) -> dict:
    """Run every setup × seed (resumable per unit) and summarize over seeds.

    Returns
    -------
    dict
        ``units``: one record per setup and seed (see :func:`run_unit`);
        ``summary``: per setup, per method the mean/std over seeds of test
        accuracy, gradient norm at step 0, final distance to the pruned
        solution, (for the random ERK masks) the fraction of the pruned mask's
        weights they also keep, and (for SET/RigL) the mean gradient norm just before and
        after mask updates; per setup the ratio Scratch+ / Scratch of the
        gradient norm at step 0, and the interpolation barriers.
    """
    units = [{"setup": i, "seed": s} for i in range(len(config.setups)) for s in config.seeds]
    records = ctx.map(units, lambda u: run_unit(config, config.setups[u["setup"]], u["seed"], ctx.device),
                      desc="setup × seed")
    summary = []
    for i, setup in enumerate(config.setups):
        recs = [r for u, r in zip(units, records) if u["setup"] == i]
        methods = {}
        for m in ("prune", *config.methods):
            rows = [r["methods"][m] for r in recs]
            entry = {"test_accuracy": _stats([row["test_accuracy"] for row in rows]),
                     "train_acc": _stats([row["train_acc"] for row in rows]),
                     "grad_norm_init": _stats([row["grad_norm"][0] for row in rows])}
            if "final_distance" in rows[0]:
                entry["final_distance"] = _stats([row["final_distance"] for row in rows])
                entry["start_distance"] = _stats([row["start_distance"] for row in rows])
                entry["relative_distance"] = _stats([row["final_distance"] / r["pruned_norm"]
                                                     for row, r in zip(rows, recs)])
            if "mask_overlap" in rows[0]:
                entry["mask_overlap"] = _stats([row["mask_overlap"] for row in rows])
            if "mask_updates" in rows[0]:
                before = [e["grad_norm_before"] for row in rows for e in row["mask_updates"]]
                after = [e["grad_norm_after"] for row in rows for e in row["mask_updates"]]
                entry["update_grad_norm_before"] = _stats(before)
                entry["update_grad_norm_after"] = _stats(after)
                entry["update_gain"] = _stats([a / b for a, b in zip(after, before) if b > 0])
                entry["mask_changed_fraction"] = _stats([row["mask_changed_fraction"] for row in rows])
            methods[m] = entry
        ratio = None
        if "scratch" in config.methods and "scratch+" in config.methods:
            ratio = _stats([r["methods"]["scratch+"]["grad_norm"][0] / r["methods"]["scratch"]["grad_norm"][0]
                            for r in recs if r["methods"]["scratch"]["grad_norm"][0] > 0])
        barriers = {m: _stats([r["interpolation"][m]["barrier"] for r in recs]) for m in config.interp_methods}
        summary.append({"setup": setup.name, "density": _stats([r["density"] for r in recs]),
                        "methods": methods, "grad_norm_ratio_init": ratio, "barrier": barriers})
    return {"units": [{**u, **r} for u, r in zip(units, records)], "summary": summary,
            "labels": method_labels()}


# ----------------------------------------------------------------------------- reading the result


def setup_names(result: dict) -> list[str]:
    """The setups of a result, in order."""
    return [s["setup"] for s in result["summary"]]


def summary_of(result: dict, setup: str) -> dict:
    """The summary entry of one setup; ``ValueError`` naming the setups otherwise."""
    for s in result["summary"]:
        if s["setup"] == setup:
            return s
    raise ValueError(f"setup {setup!r} is not in this result; it has {', '.join(setup_names(result))}")


def accuracy_table(result: dict) -> list[dict]:
    """One row per setup and method: test accuracy mean ± std over seeds, in percent (chapter 5)."""
    rows = []
    for s in result["summary"]:
        for m, entry in s["methods"].items():
            acc = entry["test_accuracy"]
            rows.append({"setup": s["setup"], "method": method_labels().get(m, m),
                         "test accuracy (%)": 100 * acc["mean"], "± std": 100 * acc["std"], "seeds": acc["n"]})
    return rows


def setup_key(setup: str) -> str:
    """A short name for a setup, for labels: ``"MLP 300-100 / MNIST-1D"`` -> ``"mlp"``."""
    return setup.split()[0].lower().replace("-", "")


def distance_table(result: dict, methods: tuple[str, ...] = ("lottery", "scratch", "scratch+", "random", "random+",
                                                            "set", "rigl")) -> list[dict]:
    """Distance to the pruned solution at the start and the end of training, mean over seeds (chapter 5)."""
    rows = []
    for s in result["summary"]:
        for m in [m for m in methods if m in s["methods"]]:
            e = s["methods"][m]
            rows.append({"setup": s["setup"], "run": method_labels()[m], "at start": e["start_distance"]["mean"],
                         "at the end": e["final_distance"]["mean"],
                         "end / ‖pruned‖": e["relative_distance"]["mean"]})
    return rows


def barrier_table(result: dict) -> list[dict]:
    """Loss barrier on the line from each run's solution to the pruned one, mean ± std (chapter 5)."""
    rows = []
    for s in result["summary"]:
        for m, b in s["barrier"].items():
            rows.append({"setup": s["setup"], "line": f"{method_labels()[m]} → Prune", "barrier": b["mean"],
                         "± std": b["std"]})
    return rows


def update_table(result: dict) -> list[dict]:
    """Gradient norm right after over right before DST mask updates (every registered method), all seeds."""
    rows = []
    for s in result["summary"]:
        for m in DST_METHODS:
            if m not in s["methods"]:
                continue
            e = s["methods"][m]
            rows.append({"setup": s["setup"], "method": method_labels()[m], "after / before": e["update_gain"]["mean"],
                         "± std": e["update_gain"]["std"], "updates": e["update_gain"]["n"],
                         "mask changed": e["mask_changed_fraction"]["mean"]})
    return rows


#: The largest loss rise along the line to the pruned solution that still counts as "no barrier" (nats).
NO_BARRIER_LOSS = 0.1


def checks(result: dict) -> dict[str, dict[str, bool]]:
    """Per setup: does each of Evci et al.'s findings (and two baselines) show in this result? (chapter 5)

    The thresholds are deliberately simple: a gain counts when it is above
    1.1, an accuracy difference when it exceeds one standard deviation over
    seeds. The random ERK arms (when run) add two: does a random mask of the
    same density train as well as the pruned one from fresh weights, and does
    the lottery ticket beat it? "No barrier" needs the Lottery barrier to be small in absolute
    terms (mean + 2 std below :data:`NO_BARRIER_LOSS`) *and* under half of
    Scratch's: a mean of 0.46 ± 0.31 is a barrier, whatever Scratch does.
    A comparison with Scratch is only meaningful when every Scratch run
    trained, i.e. ended with a test loss below ``ln(classes) - 0.1``.
    """
    out = {}
    for s in result["summary"]:
        m = s["methods"]
        scratch_losses = [u["methods"]["scratch"]["test_loss"] for u in result["units"] if u["setup"] == s["setup"]]

        def acc(method: str) -> float:
            return m[method]["test_accuracy"]["mean"]

        def std(method: str) -> float:
            return m[method]["test_accuracy"]["std"]

        fresh = [k for k in ("scratch", "scratch+", "set", "rigl") if k in m]
        best = max(fresh + ["lottery"] + [k for k in RANDOM_MASK_METHODS if k in m], key=acc)
        found = {
            "sparsity-aware init starts with a larger gradient than the dense init":
                s["grad_norm_ratio_init"]["mean"] > 1,
            "Lottery ≥ Scratch in accuracy": acc("lottery") >= acc("scratch"),
            "Lottery ends closer to the pruned solution than Scratch":
                m["lottery"]["final_distance"]["mean"] < m["scratch"]["final_distance"]["mean"],
            "every Scratch run trained (test loss below chance level ln 10 - 0.1)":
                all(loss < math.log(10) - 0.1 for loss in scratch_losses),
            "no barrier Lottery → Prune, a barrier Scratch → Prune":
                s["barrier"]["lottery"]["mean"] + 2 * s["barrier"]["lottery"]["std"] < NO_BARRIER_LOSS
                and s["barrier"]["lottery"]["mean"] < 0.5 * s["barrier"]["scratch"]["mean"],
            "RigL raises the gradient norm at its updates": m["rigl"]["update_gain"]["mean"] > 1.1,
            "SET raises the gradient norm at its updates": m["set"]["update_gain"]["mean"] > 1.1,
            "Scratch+ beats Scratch by more than one std": acc("scratch+") - acc("scratch") > std("scratch"),
            "RigL is the best run from fresh weights in the pruned mask": acc("rigl") == max(acc(k) for k in fresh),
            "the best sparse run beats the small dense net by > 1 std":
                acc(best) - acc("small-dense") > std(best),
        }
        if "random+" in m and "scratch+" in m:
            found["a random ERK mask trains as well as the pruned mask (Random ERK+ ≥ Scratch+ - 1 std)"] = \
                acc("random+") >= acc("scratch+") - std("scratch+")
            found["Lottery beats the random ERK mask by > 1 std (Lottery - Random ERK+)"] = \
                acc("lottery") - acc("random+") > std("random+")
        out[s["setup"]] = found
    return out


def curves_of(result: dict, setup: str, method: str, key: str = "grad_norm") -> dict:
    """Mean and std over seeds of a logged curve (``grad_norm`` or ``distance``) against step."""
    recs = [u for u in result["units"] if u["setup"] == setup]
    if not recs:
        raise ValueError(f"setup {setup!r} is not in this result; it has {', '.join(setup_names(result))}")
    rows = [r["methods"][method] for r in recs]
    if key not in rows[0]:
        raise ValueError(f"method {method!r} has no {key!r} curve")
    n = min(len(r[key]) for r in rows)
    values = [[r[key][i] for r in rows] for i in range(n)]
    return {"steps": rows[0]["steps"][:n], "mean": [statistics.fmean(v) for v in values],
            "std": [statistics.stdev(v) if len(v) > 1 else 0.0 for v in values]}


# Measured across CPUs on 2026-12-02, on two pairs of CPU kernels:
# (1) AVX-512 -> AVX2: the previous stored result (made on AVX-512) against this one (AVX2), field by field for the
#     six methods both ran (same settings; gradient-norm curves compared at step 0 only, as log_every changed);
# (2) AVX2 -> ATEN_CPU_CAPABILITY=default: `rpbook verify evci_pipeline` of this result: 4,460 fields exact,
#     3,686 within the tolerances declared before (set by analogy), 2,554 beyond them.
# MLP 300-100 / MNIST-1D moves little: per-run test accuracy by at most 0.030, its seed means by 0.009, per-run
# barriers by 0.13 and their mean by 0.015. LeNet-5 / digits is chaotic across CPU kernels: magnitude pruning keeps
# other weights of its 150-weight first conv layer, and a run that trains on one CPU stays near chance on another
# (seed 1's Scratch moved by 0.62 of test accuracy), so its seed means move by up to 0.18, per-run barriers by up to
# 1.46, gradient norms by up to 98 %, seed spreads by up to 96 % (RigL's final distance: std 8.4 vs 0.36), and one
# DST run recorded one mask update fewer. The random ERK arms' overlap with the pruned mask moved by up to 0.0066
# (the pruned mask changes). The tolerances below cover the largest measured change x1.2; they are this wide because
# of LeNet-5 — on another CPU, trust the MLP's numbers to the MLP figures above and LeNet-5's only to its seed spread.
# Counts of the schedule (steps, pruning events, densities, layer densities) came out exact in both measurements.
# On the recorded environment (AVX2) `rpbook verify evci_pipeline` regenerates all 10,700 fields bit-identically.
_WHY = "measured across CPU kernels (AVX-512/AVX2/default), x1.2; wide because LeNet-5 / digits is chaotic"
TOLERANCES = {
    "summary.*.std": Tolerance(any_value=True, why="the spread over seeds of a LeNet-5 setup whose runs train on one "
                                                   "CPU and not on another is not reproducible (measured: up to 96 %)"),
    "*.interpolation.*.barrier": Tolerance(abs=1.75, why=f"{_WHY}; MLP per run 0.13, mean 0.015"),
    "*.interpolation.*.test_accuracy*": Tolerance(abs=0.75, why=_WHY),
    "*test_accuracy*": Tolerance(abs=0.75, why=f"{_WHY}; MLP per run 0.030, seed means 0.009"),
    "*train_acc*": Tolerance(abs=0.8, why=f"{_WHY}; MLP per run 0.046"),
    "*loss*": Tolerance(rel=0.8, why=f"{_WHY}; MLP per run 10 %"),
    "*mask_changed_fraction*": Tolerance(abs=0.12, why=f"{_WHY}; MLP 0.016"),
    "*mask_overlap*": Tolerance(abs=0.01, why="measured 0.0066 (AVX2 -> default): the pruned mask it is compared with changes"),
    "*distance*": Tolerance(rel=0.5, why=f"{_WHY}; MLP 5 %"),
    "units.#.pruned_norm": Tolerance(rel=0.1, why=f"{_WHY}; MLP 1 %"),
    "*update_gain.n": Tolerance(abs=2, why="one DST run recorded one mask update fewer on another CPU (LeNet-5)"),
    "*grad_norm_ratio_init*": Tolerance(rel=0.5, why=f"{_WHY}; MLP 36 %"),
    "*grad_norm*": Tolerance(rel=1.0, why=f"{_WHY}: up to 98 % on LeNet-5, 80 % on the MLP at step 0 (another mask)"),
    "*update_gain*": Tolerance(rel=0.1, why=f"{_WHY}; 5 % on both setups"),
    "summary.*": Tolerance(abs=0.05, rel=0.3, why=f"seed means; {_WHY}"),
}

EXPERIMENT = Experiment(
    name="evci_pipeline",
    chapter="5 Gradient flow",
    description="pruning run, then Scratch / Scratch+ / Lottery / SET / RigL / small dense from its mask, "
                "random ERK masks of the same density beside it",
    presets=presets,
    run=run,
    tolerances=TOLERANCES,
)
