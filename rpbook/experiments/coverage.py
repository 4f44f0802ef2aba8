"""Coverage of a replicated target layer by real random masks, against the closed form (chapter 4).

A target layer with ``n_in`` inputs and ``n_out`` units is replicated ``k``
times on both sides: the source layer has shape ``(k n_out, k n_in)``. Each
(source unit, target input) pair has ``k`` candidate links. This experiment
samples the masks rpbook trains with (:func:`rpbook.masks.sample_er_mask`,
exact-count ER) and measures

- the fraction of covered pairs, whose closed form is ``1 - (1 - p)^k``;
- how often *every* pair is covered, whose closed form (for independent,
  Bernoulli entries) is ``(1 - (1 - p)^k)^(k n_out n_in)``.

The closed forms live in :mod:`rpbook.overparam`; the chapter overlays them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..masks import check_density, sample_er_mask
from ..overparam import block_link_counts
from . import Experiment, RunContext
from .specs import profile_presets


@dataclass(frozen=True)
class CoverageConfig:
    """Target layer size, the (density, width factor) grid, and how many masks per cell."""

    n_in: int = 8
    n_out: int = 8
    densities: tuple[float, ...] = (0.5, 0.3, 0.2, 0.1, 0.05, 0.02)
    width_factors: tuple[int, ...] = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
    masks_per_cell: int = 100
    seeds: tuple[int, ...] = (0,)

    def __post_init__(self) -> None:
        for name in ("n_in", "n_out", "masks_per_cell"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not self.densities or not self.width_factors or not self.seeds:
            raise ValueError("densities, width_factors and seeds must each name at least one value")
        for p in self.densities:
            check_density(p)
        for k in self.width_factors:
            if isinstance(k, bool) or not isinstance(k, int) or k < 1:
                raise ValueError(f"every width factor must be an integer >= 1, got {k!r}")


presets = profile_presets(
    """``quick``: a tiny grid; ``standard``/``full``: the grid the chapter shows (this is cheap).""",
    quick=lambda: CoverageConfig(n_in=4, n_out=4, densities=(0.5, 0.2, 0.05), width_factors=(1, 2, 4, 8, 16),
                                 masks_per_cell=10),
    standard=lambda: CoverageConfig(),
    full=lambda: CoverageConfig(masks_per_cell=1000, seeds=(0, 1, 2)),
)


def _unit_seed(seed: int, density: float, k: int) -> int:
    # one independent stream per cell, so a cell's masks do not depend on the grid around it
    return int(np.random.SeedSequence([seed, int(round(density * 1_000_000)), k]).generate_state(1)[0])


def simulate_cell(n_in: int, n_out: int, density: float, k: int, masks: int, seed: int) -> dict:
    """Sample ``masks`` source-layer masks and measure their coverage (chapter 4).

    Returns
    -------
    dict
        ``coverage_mean`` and ``coverage_std`` (over masks) of the fraction of
        covered (source unit, target input) pairs, ``all_covered`` (fraction
        of masks covering every pair), ``pairs`` per mask and the
        ``realized_density`` (exact-count masks round to whole weights).
    """
    gen = torch.Generator().manual_seed(_unit_seed(seed, density, k))
    fractions, complete, kept = [], 0, 0
    for _ in range(masks):
        mask = sample_er_mask((k * n_out, k * n_in), density, generator=gen)
        covered = block_link_counts(mask, k) > 0
        fractions.append(float(covered.double().mean()))
        complete += int(bool(covered.all()))
        kept += int(mask.sum())
    frac = np.asarray(fractions)
    return {
        "coverage_mean": float(frac.mean()),
        "coverage_std": float(frac.std()),
        "all_covered": complete / masks,
        "pairs": k * n_out * n_in,
        "realized_density": kept / (masks * k * n_out * k * n_in),
    }


def run(config: CoverageConfig, ctx: RunContext) -> dict:
    """Simulate every (density, width factor, seed) cell; rows in grid order."""
    units = [{"density": p, "k": k, "seed": s} for s in config.seeds for p in config.densities
             for k in config.width_factors]

    def one(unit: dict) -> dict:
        return simulate_cell(config.n_in, config.n_out, unit["density"], unit["k"], config.masks_per_cell,
                             unit["seed"])

    rows = ctx.map(units, one, desc="coverage")
    return {"rows": [{**u, **r} for u, r in zip(units, rows)], "n_in": config.n_in, "n_out": config.n_out,
            "masks_per_cell": config.masks_per_cell}


EXPERIMENT = Experiment(
    name="coverage",
    chapter="4 How much wider? Overparameterization of random masks",
    description="coverage of a k-fold replicated target layer by real ER masks vs 1 - (1 - p)^k",
    presets=presets,
    run=run,
)
