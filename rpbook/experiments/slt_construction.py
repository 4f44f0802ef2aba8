"""The SubsetSum construction on a real target: size and error of the strong ticket against ``n``.

Chapter 6, *From numbers to networks*. A bias-free ReLU MLP is trained on
real data with :func:`rpbook.train.fit`, scaled to unit spectral norm per
layer (same predictions), and approximated by pruning random networks twice
as deep and ``n`` times wider (:func:`rpbook.slt.subset_sum_ticket`), one
exact subset-sum per target weight and sign, no weight training. Each
ticket is checked against its target on random inputs on the unit sphere
(where a bias-free ReLU network attains its sup over the ball) and on the
test set.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import torch

from ..config import seed_everything
from ..data import load_dataset
from ..slt import bias_free_mlp, predict, scale_to_unit_weights, sphere_inputs, subset_sum_ticket, sup_error
from ..train import TrainConfig, fit
from ..results import Tolerance
from . import Experiment, RunContext
from .specs import profile_presets


@dataclass(frozen=True)
class SLTConstructionConfig:
    """Target, data, width factors ``n`` and seeds (chapter 6)."""

    dataset: str = "digits"
    hidden: tuple[int, ...] = (32, 32)
    n_train: int | None = None
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=30, lr=0.05, batch_size=64))
    norm: str = "spectral"
    ns: tuple[int, ...] = (8, 16, 24, 32, 40)
    n_sphere: int = 4000
    seeds: tuple[int, ...] = (0, 1, 2)


presets = profile_presets(
    quick=lambda: SLTConstructionConfig(hidden=(8,), n_train=300, train=TrainConfig(epochs=3, lr=0.05, batch_size=64),
                                        ns=(4, 8), n_sphere=200, seeds=(0,)),
    standard=lambda: SLTConstructionConfig(),
    # Pensia et al.'s target: a 784-500-10 MLP on MNIST (appendix *Formulas and notation*, strong lottery tickets, OLT Exp. 1).
    full=lambda: SLTConstructionConfig(dataset="mnist", hidden=(500,),
                                       train=TrainConfig(epochs=20, lr=0.05, batch_size=128),
                                       ns=(8, 16, 24, 32, 40), n_sphere=10000, seeds=(0, 1, 2)),
)


def train_target(config: SLTConstructionConfig, seed: int, device=None) -> tuple[torch.nn.Module, object, dict]:
    """Train the bias-free target MLP of one seed; return it, the data and its test metrics (chapter 6)."""
    seed_everything(seed)
    data = load_dataset(config.dataset, seed=seed, n_train=config.n_train)
    in_features = int(torch.tensor(data.in_shape).prod())
    model = bias_free_mlp(in_features, config.hidden, data.num_classes)
    history = fit(model, data, dataclasses.replace(config.train, seed=seed), device=device, progress=False,
                  desc="target")
    return model.cpu(), data, history.test


def run(config: SLTConstructionConfig, ctx: RunContext) -> dict:
    targets: dict[int, tuple] = {}

    def target_of(seed: int) -> tuple:
        # Training is deterministic per seed, so a resumed sweep retrains the very same target.
        if seed not in targets:
            model, data, test = train_target(config, seed, ctx.device)
            scaled, scale = scale_to_unit_weights(model, config.norm)
            targets[seed] = (scaled, scale, data, test)
        return targets[seed]

    units = [{"seed": s, "n": n} for s in config.seeds for n in config.ns]

    def one(unit: dict) -> dict:
        scaled, scale, data, test = target_of(unit["seed"])
        with torch.no_grad():
            return _measure(unit, scaled, scale, data, test)

    def _measure(unit: dict, scaled, scale: float, data, test: dict) -> dict:
        started = time.perf_counter()
        ticket = subset_sum_ticket(scaled, unit["n"], seed=1000 + unit["seed"])
        wall_time_s = time.perf_counter() - started
        layers = [m for m in ticket.target if isinstance(m, torch.nn.Linear)]
        x_sphere = sphere_inputs(layers[0].in_features, config.n_sphere, seed=unit["seed"])
        err = sup_error(ticket.target, ticket.ticket, x_sphere)
        x_test = data.x_test.double().flatten(1)
        f_pred = predict(ticket.target, x_test).argmax(1)
        g_pred = predict(ticket.ticket, x_test).argmax(1)
        y = data.y_test
        return {
            **unit, **ticket.summary(), **err,
            "target_test_accuracy": float((f_pred == y).float().mean()),
            "ticket_test_accuracy": float((g_pred == y).float().mean()),
            "agreement": float((f_pred == g_pred).float().mean()),
            "target_sizes": [layers[0].in_features] + [lin.out_features for lin in layers],
            "target_fit_test": test, "target_scale": scale, "wall_time_s": wall_time_s,
        }

    rows = ctx.map(units, one, desc="SubsetSum tickets")
    return {"rows": rows}


# Another numeric environment trains a target that differs in the last bits, and the exact subset
# selection then picks a few other subsets. Measured against the stored result (AVX-512, 1 thread)
# with ATEN_CPU_CAPABILITY=default: 1 of 359 test digits changed its ticket prediction, 10 of 15 rows
# kept up to 0.4 % other weights, error statistics moved by up to 0.8 % (per-layer maxima and
# quantiles up to 4.6 %). The tolerances give about 3x that room.
_MEASURED = "ATEN_CPU_CAPABILITY=default vs AVX-512 regeneration, x3"
TOLERANCES = {
    "rows.#.agreement": Tolerance(abs=0.015, why=f"5 of 359 test digits; measured 1 ({_MEASURED})"),
    "rows.#.ticket_test_accuracy": Tolerance(abs=0.015, why=f"5 of 359 test digits; measured 1 ({_MEASURED})"),
    "rows.#.target_test_accuracy": Tolerance(abs=0.006, why=f"2 of 359 test digits; measured 0 ({_MEASURED})"),
    "rows.#.target_fit_test.accuracy": Tolerance(abs=0.006, why=f"2 of 359 test digits; measured 0 ({_MEASURED})"),
    "rows.#.target_fit_test.loss": Tolerance(rel=1e-3, why=f"measured 9e-5 ({_MEASURED})"),
    "rows.#.target_scale": Tolerance(rel=1e-3, why=f"measured 6e-5 ({_MEASURED})"),
    "rows.#.sup_output": Tolerance(rel=1e-3, why=f"measured 7e-5 ({_MEASURED})"),
    "rows.#.kept_*": Tolerance(rel=0.02, why=f"measured 0.4 % ({_MEASURED})"),
    "rows.#.error_bound": Tolerance(rel=0.05, why=f"measured 0.6 % ({_MEASURED})"),
    "rows.#.relative": Tolerance(rel=0.05, why=f"measured 0.8 % ({_MEASURED})"),
    "rows.#.sup_error": Tolerance(rel=0.05, why=f"measured 0.8 % ({_MEASURED})"),
    "rows.#.max_abs": Tolerance(rel=0.05, why=f"measured 0.7 % ({_MEASURED})"),
    "rows.#.max_weight_error": Tolerance(rel=0.05, why=f"measured 0.4 % ({_MEASURED})"),
    "rows.#.weight_error_quantiles.*": Tolerance(rel=0.15, why=f"measured 2 % ({_MEASURED})"),
    "rows.#.layer_max_weight_errors.#": Tolerance(rel=0.15, why=f"measured 4.6 % ({_MEASURED})"),
}

EXPERIMENT = Experiment(
    name="slt_construction",
    chapter="6 Strong lottery tickets",
    description="Pensia et al.'s SubsetSum construction on a trained MLP: kept size and error against the width factor n",
    presets=presets,
    run=run,
    tolerances=TOLERANCES,
)
