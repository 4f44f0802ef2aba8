"""Random SubsetSum: how the best-subset error falls with the number of random numbers ``n``.

Chapter 6, *SubsetSum*. For each ``n`` and each distribution (``U[-1, 1]``
numbers, or products ``a·b`` of two of them, the path weights of the
construction), ``sets`` random instances are drawn per seed. Each instance
is scored twice:

- the *typical* error: the exact best-subset error for random targets
  ``z ~ U[-1, 1]`` (meet-in-the-middle, :func:`rpbook.slt.solve_subset_sum`);
- the *worst-case* error over all ``z ∈ [-1, 1]`` (half the widest gap between
  subset sums, :func:`rpbook.slt.worst_case_error`), the quantity of Lueker's
  theorem, for ``n <= worst_case_max_n``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..slt import NUMBER_DISTRIBUTIONS, poisson_error_estimate, random_numbers, solve_subset_sum, worst_case_error
from . import Experiment, RunContext
from .specs import profile_presets


@dataclass(frozen=True)
class SubsetSumErrorConfig:
    """Which ``n``, how many instances and targets (chapter 6)."""

    ns: tuple[int, ...] = (2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24)
    distributions: tuple[str, ...] = ("uniform", "product")
    sets: int = 20
    n_targets: int = 200
    worst_case_max_n: int = 20
    epsilons: tuple[float, ...] = (0.01, 0.001)
    seeds: tuple[int, ...] = (0,)

    def __post_init__(self) -> None:
        for d in self.distributions:
            if d not in NUMBER_DISTRIBUTIONS:
                raise ValueError(f"unknown distribution {d!r}; allowed: {', '.join(NUMBER_DISTRIBUTIONS)}")
        if any(n < 1 for n in self.ns):
            raise ValueError(f"every n must be >= 1, got ns={self.ns!r}")


presets = profile_presets(
    quick=lambda: SubsetSumErrorConfig(ns=(2, 4, 6, 8, 10), sets=3, n_targets=50, worst_case_max_n=10),
    standard=lambda: SubsetSumErrorConfig(),
    full=lambda: SubsetSumErrorConfig(ns=tuple(range(2, 31, 2)), sets=100, n_targets=1000, worst_case_max_n=24,
                                      seeds=(0, 1, 2)),
)


def _unit_seed(seed: int, n: int, distribution: str, purpose: int = 0) -> int:
    # Independent streams per (seed, n, distribution) and per purpose (0: the numbers, 1: the targets),
    # stable across runs and machines. One shared stream would make the first targets equal the numbers.
    key = [seed, n, NUMBER_DISTRIBUTIONS.index(distribution)] + ([purpose] if purpose else [])
    return int(np.random.SeedSequence(key).generate_state(1)[0])


def run(config: SubsetSumErrorConfig, ctx: RunContext) -> dict:
    units = [{"distribution": d, "n": n, "seed": s} for d in config.distributions for n in config.ns for s in config.seeds]

    def one(unit: dict) -> dict:
        stream = _unit_seed(unit["seed"], unit["n"], unit["distribution"])
        rng = np.random.default_rng(_unit_seed(unit["seed"], unit["n"], unit["distribution"], purpose=1))
        pools = random_numbers(unit["n"], seed=stream, distribution=unit["distribution"], size=config.sets)
        errors, worst, drawn = [], [], []
        for pool in pools:
            targets = rng.uniform(-1.0, 1.0, size=config.n_targets)
            drawn.append(targets)
            errors.append(solve_subset_sum(pool, targets).errors)
            if unit["n"] <= config.worst_case_max_n:
                worst.append(worst_case_error(pool))
        e = np.concatenate(errors)
        targets_all = np.concatenate(drawn)
        return {
            **unit,
            "mean_error": float(e.mean()), "median_error": float(np.median(e)),
            "q90_error": float(np.quantile(e, 0.9)),
            "worst_case": worst or None,
            "poisson_median_error": float(np.median(poisson_error_estimate(unit["n"], targets_all,
                                                                           unit["distribution"], "median"))),
        }

    rows = ctx.map(units, one, desc="subset-sum error")
    # Per distribution: pool the seeds; fit log2(median error) = a + slope * n over n >= 6.
    summary = {}
    for d in config.distributions:
        ns = sorted({r["n"] for r in rows if r["distribution"] == d})
        mean = [float(np.mean([r["mean_error"] for r in rows if r["distribution"] == d and r["n"] == n])) for n in ns]
        median = [float(np.median([r["median_error"] for r in rows if r["distribution"] == d and r["n"] == n]))
                  for n in ns]
        estimate = [float(np.median([r["poisson_median_error"] for r in rows if r["distribution"] == d and r["n"] == n]))
                    for n in ns]
        worst = []
        success = {str(eps): [] for eps in config.epsilons}
        for n in ns:
            w = [x for r in rows if r["distribution"] == d and r["n"] == n and r["worst_case"] for x in r["worst_case"]]
            if w:
                worst.append({"n": n, "median": float(np.median(w)), "max": float(np.max(w))})
                for eps in config.epsilons:
                    success[str(eps)].append({"n": n, "p": float(np.mean(np.asarray(w) <= eps))})
        fit_ns = [n for n in ns if n >= 6]
        slope = None
        if len(fit_ns) >= 2:
            # The closed-form least-squares slope, not np.polyfit: LAPACK's result can change in the
            # last bit with the BLAS build and threads, and stored results must regenerate exactly.
            x = np.asarray(fit_ns, dtype=np.float64)
            y = np.log2([median[ns.index(n)] for n in fit_ns])
            slope = float(((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum())
        summary[d] = {"ns": ns, "mean_error": mean, "median_error": median, "poisson_median_error": estimate,
                      "median_worst_case": worst, "success": success, "log2_slope": slope}
    return {"rows": rows, "summary": summary}


EXPERIMENT = Experiment(
    name="subset_sum_error",
    chapter="6 Strong lottery tickets",
    description="Random SubsetSum: typical and worst-case best-subset error against n (Lueker's exponential decay)",
    presets=presets,
    run=run,
)
