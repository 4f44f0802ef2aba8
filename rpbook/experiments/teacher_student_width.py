"""Teacher–student: how wide must a random sparse student be to fit a fixed random teacher? (chapter 4)

A fixed random ReLU teacher MLP (:func:`rpbook.data.load_dataset` ``"teacher"``)
labels Gaussian inputs. Each student has the teacher's depth, every hidden
layer ``k`` times wider, and an exact-count ER mask of density ``p`` in every
layer after the first (the first is dense with ``dense_first``, as in the
chapter's replication construction, where inputs are not replicated). Its
weights are trained inside the fixed mask (Adam, MSE). The grid over
``(p, k, seed)`` gives the error surface; the chapter reads off the smallest
``k`` reaching a fixed error for each ``p`` and fits ``c / log(1/(1-p))``.

Targets are centred on their training mean before training: the teacher's
output has a large constant part (about -10 standard deviations for
``teacher_seed=0``) that would otherwise eat the students' short training
budget without telling anything about width. The reported errors are test
MSE in units of the target variance (1 = predicting the mean).
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..config import seed_everything
from ..data import load_dataset
from ..init import check_init, initialize_
from ..masks import Masking, check_density, maskable_layers, sample_er_mask
from ..models import build_model
from ..overparam import block_link_counts, smallest_width
from ..train import TrainConfig, evaluate, fit
from ..results import Tolerance
from . import Experiment, RunContext
from .specs import profile_presets


def _default_train() -> TrainConfig:
    return TrainConfig(epochs=16, batch_size=256, optimizer="adam", lr=1e-2, momentum=0.0, weight_decay=0.0,
                       schedule="cosine", amp=False)


@dataclass(frozen=True)
class TeacherStudentWidthConfig:
    """The teacher, the data, the (density, width factor) grid and the students' training."""

    in_dim: int = 16
    teacher_hidden: tuple[int, ...] = (8, 8)
    out_dim: int = 1
    teacher_seed: int = 0
    data_seed: int = 0
    n_train: int = 8000
    n_test: int = 2000
    densities: tuple[float, ...] = (1.0, 0.5, 0.3, 0.2, 0.1, 0.05, 0.02)
    width_factors: tuple[int, ...] = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
    dense_first: bool = True
    init: str = "unit-scaled"
    train: TrainConfig = field(default_factory=_default_train)
    seeds: tuple[int, ...] = (0, 1, 2)

    def __post_init__(self) -> None:
        for name in ("in_dim", "out_dim", "n_train", "n_test"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not self.teacher_hidden or any(isinstance(h, bool) or not isinstance(h, int) or h < 1
                                          for h in self.teacher_hidden):
            raise ValueError(f"teacher_hidden must be one or more positive ints, got {self.teacher_hidden!r}")
        if not self.densities or not self.width_factors or not self.seeds:
            raise ValueError("densities, width_factors and seeds must each name at least one value")
        for p in self.densities:
            check_density(p)
        for k in self.width_factors:
            if isinstance(k, bool) or not isinstance(k, int) or k < 1:
                raise ValueError(f"every width factor must be an integer >= 1, got {k!r}")
        check_init(self.init)
        if not isinstance(self.train, TrainConfig):
            raise ValueError(f"train must be a TrainConfig, got {type(self.train).__name__}")
        self.train.validate()


presets = profile_presets(
    """``quick``: a 3×3 grid trained for a few steps; ``standard``: the chapter's grid; ``full``: more of everything.""",
    quick=lambda: TeacherStudentWidthConfig(
        in_dim=8, teacher_hidden=(4, 4), n_train=256, n_test=256, densities=(1.0, 0.5, 0.1),
        width_factors=(1, 2, 4), seeds=(0,),
        train=dataclasses.replace(_default_train(), epochs=8, batch_size=32)),
    standard=lambda: TeacherStudentWidthConfig(),
    full=lambda: TeacherStudentWidthConfig(
        teacher_hidden=(16, 16), n_train=50_000, n_test=10_000,
        densities=(1.0, 0.5, 0.3, 0.2, 0.1, 0.05, 0.03, 0.02, 0.01),
        width_factors=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64), seeds=tuple(range(10)),
        train=dataclasses.replace(_default_train(), epochs=40, batch_size=512, lr=3e-3)),
)


def load_teacher_data(config: TeacherStudentWidthConfig):
    """The teacher data set of this config, targets centred on their training mean (chapter 4)."""
    data = load_dataset("teacher", seed=config.data_seed, val_fraction=0.0, n_train=config.n_train,
                        in_dim=config.in_dim, hidden=tuple(config.teacher_hidden), out_dim=config.out_dim,
                        n_test=config.n_test, teacher_seed=config.teacher_seed)
    mean = data.y_train.mean(dim=0)
    info = dict(data.info, y_mean_removed=mean.tolist())
    return dataclasses.replace(data, y_train=data.y_train - mean, y_val=data.y_val - mean,
                               y_test=data.y_test - mean, info=info)


def _unit_seed(seed: int, density: float, k: int) -> int:
    return int(np.random.SeedSequence([seed, int(round(density * 1_000_000)), k, 4]).generate_state(1)[0])


def build_student(config: TeacherStudentWidthConfig, density: float, k: int, seed: int):
    """A ``k``-times wider student MLP with ER masks of density ``p`` and its :class:`Masking` (chapter 4).

    Every layer gets density ``p`` exactly (no global budget: the theory's
    setting), except the first when ``dense_first``. Returns ``(model,
    masking)``; ``masking`` is ``None`` for a dense student.
    """
    model = build_model("mlp", in_shape=(config.in_dim,), num_classes=config.out_dim,
                        hidden=tuple(k * h for h in config.teacher_hidden))
    masking = None
    if density < 1.0:
        gen = torch.Generator().manual_seed(_unit_seed(seed, density, k))
        layers = maskable_layers(model)
        masks = {name: sample_er_mask(tuple(m.weight.shape), density, generator=gen)
                 for i, (name, m) in enumerate(layers) if not (i == 0 and config.dense_first)}
        masking = Masking(model, masks)
    initialize_(model, config.init, seed=seed)
    return model, masking


def uncovered_pairs(model: torch.nn.Module, k: int) -> int:
    """(Unit, target input) pairs of the layers after the first with no link from that input's ``k`` replicas."""
    total = 0
    for i, (_, m) in enumerate(maskable_layers(model)):
        if i == 0:
            continue
        mask = getattr(m, "weight_mask", None)
        if mask is not None:
            total += int((block_link_counts(mask.bool().cpu(), k) == 0).sum())
    return total


def train_student(config: TeacherStudentWidthConfig, data, density: float, k: int, seed: int,
                  device: str | torch.device = "cpu") -> dict:
    """Train one student inside its fixed mask; return its errors and sizes (chapter 4)."""
    seed_everything(seed)
    model, masking = build_student(config, density, k, seed)
    train = dataclasses.replace(config.train, seed=seed)
    started = time.perf_counter()
    history = fit(model, data, train, masking=masking, device=device, progress=False,
                  desc=f"student p={density:g} k={k}")
    train_mse = evaluate(model, data.x_train, data.y_train, task="regression")["loss"]
    weights = sum(m.weight.numel() for _, m in maskable_layers(model))
    kept = sum(int(m.weight_mask.sum()) if hasattr(m, "weight_mask") else m.weight.numel()
               for _, m in maskable_layers(model))
    return {
        "test_mse": history.test["loss"],
        "train_mse": train_mse,
        "train_loss_curve": [row["train_loss"] for row in history.epochs],
        "weights": weights,
        "kept_weights": kept,
        "uncovered_pairs": uncovered_pairs(model, k),
        "wall_time_s": time.perf_counter() - started,
    }


def run(config: TeacherStudentWidthConfig, ctx: RunContext) -> dict:
    """Train every (density, width factor, seed) student; rows in grid order."""
    data = load_teacher_data(config)
    teacher_weights = sum(m.weight.numel() for m in data.info["teacher"].modules()
                          if isinstance(m, torch.nn.Linear))
    units = [{"density": p, "k": k, "seed": s} for p in config.densities for k in config.width_factors
             for s in config.seeds]
    rows = ctx.map(units, lambda u: train_student(config, data, u["density"], u["k"], u["seed"], ctx.device),
                   desc="teacher-student")
    return {
        "rows": [{**u, **r} for u, r in zip(units, rows)],
        "teacher_weights": teacher_weights,
        "teacher_widths": [config.in_dim, *config.teacher_hidden, config.out_dim],
        "y_mean_removed": data.info["y_mean_removed"],
    }


# ----------------------------------------------------------------------------- reading the stored grid


@dataclass(frozen=True)
class ErrorGrid:
    """The stored rows as arrays: ``values[i, j, s]`` for density ``i``, width factor ``j``, seed ``s``."""

    densities: np.ndarray
    width_factors: np.ndarray
    seeds: tuple[int, ...]
    values: np.ndarray

    def typical(self) -> np.ndarray:
        """Geometric mean over seeds, shape ``(densities, width factors)``: errors spread over decades."""
        return np.exp(np.log(np.clip(self.values, 1e-12, None)).mean(axis=2))


def error_grid(result: dict, key: str = "test_mse") -> ErrorGrid:
    """Arrange a stored result's rows by (density, width factor, seed) (chapter 4).

    Densities come out in decreasing order (dense first), width factors increasing.
    """
    rows = result["rows"]
    if not rows or key not in rows[0]:
        allowed = ", ".join(k for k in (rows[0] if rows else {}) if isinstance(rows[0][k], (int, float)))
        raise ValueError(f"no column {key!r} in the result; numeric columns: {allowed}")
    densities = sorted({r["density"] for r in rows}, reverse=True)
    ks = sorted({r["k"] for r in rows})
    seeds = tuple(sorted({r["seed"] for r in rows}))
    values = np.full((len(densities), len(ks), len(seeds)), np.nan)
    for r in rows:
        values[densities.index(r["density"]), ks.index(r["k"]), seeds.index(r["seed"])] = r[key]
    return ErrorGrid(np.asarray(densities, dtype=float), np.asarray(ks, dtype=float), seeds, values)


def smallest_widths(result: dict, threshold: float, key: str = "test_mse") -> list[dict]:
    """For each density, the smallest width factor whose typical error reaches ``threshold`` (chapter 4).

    Returns one dict per density (decreasing): ``density``, ``k_star``,
    ``status`` (see :func:`rpbook.overparam.smallest_width`) and the
    per-seed ``k_star_seeds``.
    """
    grid = error_grid(result, key)
    typical = grid.typical()
    out = []
    for i, p in enumerate(grid.densities):
        k_star, status = smallest_width(grid.width_factors, typical[i], threshold)
        per_seed = [smallest_width(grid.width_factors, grid.values[i, :, s], threshold)[0]
                    for s in range(len(grid.seeds))]
        out.append({"density": float(p), "k_star": k_star, "status": status, "k_star_seeds": per_seed})
    return out


# Measured: regenerated with ATEN_CPU_CAPABILITY=default against the stored AVX-512 result (14 CPU-minutes),
# 1,293 fields came out exact and 3,753 moved, all within 5 % relative; the largest absolute change, a
# training MSE of the widest student, moved by 3.6 %. (The bound was first set by analogy with chapter 3's
# 0.19 % loss spread, x25; the measurement keeps it.) Mask statistics (uncovered pairs, kept weights) involve no
# floats and must stay equal.
_WHY = "3.6 % measured with ATEN_CPU_CAPABILITY=default (largest absolute change); all within 5 %"
TOLERANCES = {
    "rows.#.test_mse": Tolerance(rel=0.05, why=_WHY),
    "rows.#.train_mse": Tolerance(rel=0.05, why=_WHY),
    "rows.#.train_loss_curve.#": Tolerance(rel=0.05, why=_WHY),
    "y_mean_removed.#": Tolerance(rel=1e-5, why="a mean of teacher outputs: last bits only"),
}

EXPERIMENT = Experiment(
    name="teacher_student_width",
    chapter="4 How much wider? Overparameterization of random masks",
    description="random sparse students of width factor k at density p fitting a fixed random teacher",
    presets=presets,
    run=run,
    tolerances=TOLERANCES,
)
