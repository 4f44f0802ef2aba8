"""Measured speed and memory of sparse kernels against dense ones (chapter 8, *What sparsity buys*).

For the book's MLP (``in -> width -> width -> classes``, every layer at the
same density, uniform ER masks) this experiment times, side by side in one
run and in alternation (:func:`rpbook.kernels.interleaved_median_times`):

- inference: the dense model (which is also the masked dense model: its
  forward pass multiplies the stored zeros like any other weight) against the
  :func:`rpbook.kernels.sparsify`-ed CSR model;
- one training step (forward, backward, SGD with momentum): the masked dense
  model (:class:`rpbook.masks.Masking`, gradients masked, weights re-masked
  after the step) against the CSR model, whose weight gradient is a sampled
  product at the kept positions only;
- memory: bytes of the weights, dense against CSR values plus indices.

A second grid compares mask *structures* at equal density on one square
layer: ER, block-sparse and N:M masks with CSR kernels, the block mask also
with a BSR kernel.

Timings depend on the machine and on its load; the result stores a
description of both (``machine``). :data:`TOLERANCES` says which fields a
re-measurement can reproduce exactly and which only approximately.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import check_seed
from ..kernels import (CLOCKS, crossover_density, fixed_threads, interleaved_median_times, machine_description, nm_for_density,
                       sparsify, structured_mask, training_step, weight_bytes)
from ..masks import check_density, mask_model
from ..models import MLP
from ..results import Tolerance
from . import Experiment, RunContext

# Medians of thread CPU time on a shared CPU. Cells of the grid measured twice during development on this
# 2-core machine under the load of other processes (load average 5-13) moved by up to about 60 %; bytes, counts
# and densities are exact. The times need their tolerance even on the same numeric environment: a
# re-measurement is never bit-identical.
_TIMING = Tolerance(rel=0.75, always=True,
                    why="CPU-time medians on a shared CPU: repeated cells moved by up to ~60 %")
TOLERANCES = {
    "mlp.#.infer_dense_s": _TIMING, "mlp.#.infer_sparse_s": _TIMING,
    "mlp.#.train_masked_s": _TIMING, "mlp.#.train_sparse_s": _TIMING,
    "structure.#.dense_s": _TIMING, "structure.#.sparse_s": _TIMING,
    "machine.*": Tolerance(any_value=True, why="a description of the machine and its load, not a measurement"),
}
#: Result fields that are wall-clock measurements (compared within their tolerance even on the same machine).
TIMING_FIELDS = tuple(k for k, v in TOLERANCES.items() if v is _TIMING)


def _check_ints(name: str, values: object, minimum: int = 1) -> tuple[int, ...]:
    if not isinstance(values, tuple) or not values:
        raise ValueError(f"{name} must be a non-empty tuple of integers >= {minimum}, got {values!r}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise ValueError(f"every entry of {name} must be an integer >= {minimum}, got {v!r}")
    if len(set(values)) != len(values):
        raise ValueError(f"{name} must be distinct, got {values!r}")
    return values


@dataclass(frozen=True)
class KernelTimingsConfig:
    """The MLP grid (widths × densities × batches), the structure grid, and how to time (chapter 8)."""

    in_features: int = 40
    num_classes: int = 10
    widths: tuple[int, ...] = (256, 1024, 4096)
    densities: tuple[float, ...] = (0.5, 0.2, 0.1, 0.05, 0.02, 0.01)
    batches: tuple[int, ...] = (1, 8, 64, 256)
    structure_width: int = 2048
    structure_batch: int = 64
    structure_densities: tuple[float, ...] = (0.5, 0.25, 0.125, 0.0625, 0.03125)
    block: int = 16
    repeats: int = 9
    warmup: int = 2
    min_time_s: float = 0.0
    clock: str = "thread"
    threads: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("in_features", "num_classes", "structure_width", "structure_batch", "block", "repeats", "threads"):
            _check_ints(name, (getattr(self, name),))
        _check_ints("warmup", (self.warmup,), minimum=0)
        _check_ints("widths", self.widths)
        _check_ints("batches", self.batches)
        for name in ("densities", "structure_densities"):
            values = getattr(self, name)
            if not isinstance(values, tuple) or not values or len(set(values)) != len(values):
                raise ValueError(f"{name} must be a non-empty tuple of distinct densities in (0, 1), got {values!r}")
            for p in values:
                if check_density(p) >= 1:
                    raise ValueError(f"{name} must be below 1 (dense is always measured), got {p!r}")
        for p in self.structure_densities:
            nm_for_density(p)  # ValueError if no N:M pattern has this density
        if self.structure_width % self.block:
            raise ValueError(f"block ({self.block}) must divide structure_width ({self.structure_width})")
        if isinstance(self.min_time_s, bool) or not isinstance(self.min_time_s, (int, float)) or self.min_time_s < 0:
            raise ValueError(f"min_time_s must be a number >= 0, got {self.min_time_s!r}")
        if self.clock not in CLOCKS:
            raise ValueError(f"unknown clock {self.clock!r}; allowed: {', '.join(CLOCKS)}")
        check_seed(self.seed)


def presets(profile: str) -> KernelTimingsConfig:
    """``quick``: one small width, seconds. ``standard``/``full``: the chapter's grid (CPU kernels either way)."""
    if profile == "quick":
        return KernelTimingsConfig(widths=(64,), densities=(0.5, 0.1), batches=(1, 64), structure_width=64,
                                   structure_batch=8, structure_densities=(0.5, 0.25), block=8, repeats=2, warmup=1,
                                   min_time_s=0.0)
    if profile in ("standard", "full"):
        return KernelTimingsConfig()
    raise ValueError(f"unknown profile {profile!r}; allowed: quick, standard, full")


def measure_mlp(config: KernelTimingsConfig, width: int, density: float, batch: int) -> dict:
    """Time dense/masked-dense against CSR for one (width, density, batch) cell of the MLP grid (chapter 8)."""
    model = MLP(config.in_features, (width, width), config.num_classes)
    masking = mask_model(model, density, "uniform", seed=config.seed)
    sparse = sparsify(model)
    gen = torch.Generator().manual_seed(config.seed)
    x = torch.randn(batch, config.in_features, generator=gen)
    y = torch.randint(0, config.num_classes, (batch,), generator=gen)
    kw = dict(repeats=config.repeats, warmup=config.warmup, min_time_s=config.min_time_s, clock=config.clock)
    with torch.inference_mode():
        infer = interleaved_median_times({"dense": lambda: model(x), "sparse": lambda: sparse(x)}, **kw)
    # a small learning rate: hundreds of timed steps must not blow the weights up (the time does not care)
    opt_dense = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    opt_sparse = torch.optim.SGD(sparse.parameters(), lr=1e-3, momentum=0.9)
    train = interleaved_median_times({
        "masked": lambda: training_step(model, opt_dense, x, y, masking),
        "sparse": lambda: training_step(sparse, opt_sparse, x, y)}, **kw)
    dense_bytes, sparse_bytes = weight_bytes(model), weight_bytes(sparse)
    nnz = sum(int(m.sum()) for m in masking.masks.values())
    return {
        "infer_dense_s": infer["dense"], "infer_sparse_s": infer["sparse"],
        "train_masked_s": train["masked"], "train_sparse_s": train["sparse"],
        "nnz": nnz, "bytes_dense": dense_bytes["total"], "bytes_values": sparse_bytes["values"],
        "bytes_indices": sparse_bytes["indices"],
    }


def measure_structure(config: KernelTimingsConfig, density: float) -> list[dict]:
    """One square layer at one density: ER, block and N:M masks, CSR (and BSR for blocks) vs dense (chapter 8)."""
    n = config.structure_width
    gen = torch.Generator().manual_seed(config.seed)
    x = torch.randn(config.structure_batch, n, generator=gen)
    rows = []
    for pattern in ("er", "block", "nm"):
        mask = structured_mask((n, n), density, pattern, block=config.block, generator=gen)
        layer = torch.nn.Linear(n, n, bias=False)
        with torch.no_grad():
            layer.weight.mul_(mask)
        layer.register_buffer("weight_mask", mask.float(), persistent=False)
        kernels = {"csr": sparsify(layer)}
        if pattern == "block":
            kernels["bsr"] = sparsify(layer, layout="bsr", blocksize=config.block)
        fns = {"dense": lambda: layer(x), **{k: (lambda m=m: m(x)) for k, m in kernels.items()}}
        with torch.inference_mode():
            times = interleaved_median_times(fns, repeats=config.repeats, warmup=config.warmup,
                                             min_time_s=config.min_time_s, clock=config.clock)
        for kernel, module in kernels.items():
            b = weight_bytes(module)
            rows.append({"pattern": pattern, "kernel": kernel, "density": density,
                         "realized_density": float(mask.float().mean()), "dense_s": times["dense"],
                         "sparse_s": times[kernel], "bytes_dense": n * n * 4, "bytes_values": b["values"],
                         "bytes_indices": b["indices"]})
    return rows


def run(config: KernelTimingsConfig, ctx: RunContext) -> dict:
    """Measure the MLP grid and the structure grid with ``config.threads`` torch threads, on the CPU.

    Returns
    -------
    dict
        ``mlp``: one row per (width, density, batch) with the four times (s),
        ``nnz`` and the bytes; ``structure``: one row per (density, pattern,
        kernel); ``machine``: :func:`rpbook.kernels.machine_description` at the
        start of the run; ``semi_structured_2_4``: why the CUDA 2:4 path was
        not measured (or ``None`` if it could be).
    """
    with fixed_threads(config.threads):
        machine = machine_description()
        units = [{"width": w, "density": p, "batch": b} for w in config.widths for p in config.densities
                 for b in config.batches]
        # timings: never two units at once (parallel=False), whatever the executor
        cells = ctx.map(units, lambda u: measure_mlp(config, u["width"], u["density"], u["batch"]),
                        desc="kernel timings", parallel=False)
        structure = ctx.map([{"structure_density": p} for p in config.structure_densities],
                            lambda u: measure_structure(config, u["structure_density"]), desc="structures",
                            parallel=False)
        machine["load_average_at_end"] = machine_description()["load_average_1_5_15min"]
    return {
        "mlp": [{**u, **c} for u, c in zip(units, cells)],
        "structure": [row for rows in structure for row in rows],
        "in_features": config.in_features, "num_classes": config.num_classes,
        "machine": machine,
        "semi_structured_2_4": None if torch.cuda.is_available() else
        "not measured: torch.sparse.to_sparse_semi_structured needs a CUDA GPU with sparse tensor cores",
    }


# ----------------------------------------------------------------------------- accessors


def speedups(result: dict, *, kind: str = "infer") -> list[dict]:
    """Rows of (width, density, batch, speed-up, ideal = 1/density) for ``kind`` ``infer`` or ``train`` (chapter 8).

    The speed-up is dense (inference) or masked dense (training) time over
    the CSR time; above 1 the sparse kernel wins.
    """
    if kind not in ("infer", "train"):
        raise ValueError(f"kind must be 'infer' or 'train', got {kind!r}")
    base, sparse = ("infer_dense_s", "infer_sparse_s") if kind == "infer" else ("train_masked_s", "train_sparse_s")
    return [{"width": r["width"], "density": r["density"], "batch": r["batch"], "speedup": r[base] / r[sparse],
             "ideal": 1.0 / r["density"]} for r in result["mlp"]]


def crossovers(result: dict, *, kind: str = "infer") -> list[dict]:
    """Per (width, batch): the density below which the sparse kernel wins (:func:`rpbook.kernels.crossover_density`)."""
    rows = speedups(result, kind=kind)
    out = []
    for w in sorted({r["width"] for r in rows}):
        for b in sorted({r["batch"] for r in rows}):
            cell = [r for r in rows if r["width"] == w and r["batch"] == b]
            out.append({"width": w, "batch": b,
                        "crossover": crossover_density([r["density"] for r in cell], [r["speedup"] for r in cell])})
    return out


EXPERIMENT = Experiment(
    name="kernel_timings",
    chapter="8 What sparsity buys",
    description="CSR vs dense kernels: inference and training-step time and weight bytes over width × density × batch",
    presets=presets,
    run=run,
    tolerances=TOLERANCES,
)
