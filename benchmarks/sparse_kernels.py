"""CSR kernels against dense ones for the book's MLP: inference and training-step speed-ups (chapter 8).

Measures, side by side in one run, what the ``kernel_timings`` experiment
stores (the same function, ``rpbook.experiments.kernel_timings.measure_mlp``):
the dense MLP ``40 -> width -> width -> 10`` against its CSR copy
(inference), and one masked dense SGD step against one CSR step (training),
timed in alternation with the CPU time of the one computing thread. Prints
the speed-ups against the ideal ``1/p``, the crossover densities, and the
chapter's two goals:

- inference at density <= 0.05 at least 2x faster than dense at batch 1 and 64;
- a training step at density <= 0.02 faster than the masked dense step.

Usage: python benchmarks/sparse_kernels.py [--widths 256 4096] [--densities 0.1 0.05 0.02 0.01]
                                           [--batches 1 64] [--repeats 7] [--threads 1]
"""
from __future__ import annotations

import argparse
import sys

import torch

from rpbook.experiments.kernel_timings import KernelTimingsConfig, measure_mlp
from rpbook.kernels import crossover_density, fixed_threads, machine_description


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[256, 4096])
    parser.add_argument("--densities", type=float, nargs="+", default=[0.1, 0.05, 0.02, 0.01])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        config = KernelTimingsConfig(widths=tuple(args.widths), densities=tuple(args.densities),
                                     batches=tuple(args.batches), repeats=args.repeats, threads=args.threads)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    rows = []
    with fixed_threads(config.threads):
        m = machine_description()
        print(f"{m['cpu']} ({m['cpu_capability']}), {config.threads} torch thread(s), torch {m['torch_version']}, "
              f"load average {m['load_average_1_5_15min']}; CPU time of the computing thread, median of "
              f"{config.repeats}")
        print(f"{'width':>6} {'batch':>5} {'density':>8} {'infer ×':>8} {'train ×':>8} {'ideal ×':>8} "
              f"{'dense ms':>9} {'CSR ms':>8} {'mask. step ms':>13} {'CSR step ms':>11}")
        for w in config.widths:
            for b in config.batches:
                for p in config.densities:
                    r = measure_mlp(config, w, p, b)
                    r.update(width=w, batch=b, density=p, infer=r["infer_dense_s"] / r["infer_sparse_s"],
                             train=r["train_masked_s"] / r["train_sparse_s"])
                    rows.append(r)
                    print(f"{w:>6} {b:>5} {p:>8g} {r['infer']:>8.2f} {r['train']:>8.2f} {1 / p:>8.0f} "
                          f"{1e3 * r['infer_dense_s']:>9.3f} {1e3 * r['infer_sparse_s']:>8.3f} "
                          f"{1e3 * r['train_masked_s']:>13.3f} {1e3 * r['train_sparse_s']:>11.3f}", flush=True)
    print("\ncrossover density (sparse faster below it; 'never' if it lost everywhere measured):")
    for w in config.widths:
        for b in config.batches:
            cell = [r for r in rows if r["width"] == w and r["batch"] == b]
            for kind in ("infer", "train"):
                c = crossover_density([r["density"] for r in cell], [r[kind] for r in cell])
                won_all = c is not None and all(r[kind] > 1 for r in cell)
                text = "never" if c is None else (f">= {c:g} (won at every density)" if won_all else f"{c:.3g}")
                print(f"  width {w:>5}, batch {b:>4}, {kind:>5}: {text}")
    print("\ngoals:")
    for w in config.widths:
        for b in (1, 64):
            sp = [r["infer"] for r in rows if r["width"] == w and r["batch"] == b and r["density"] <= 0.05]
            if sp:
                print(f"  width {w:>5}, batch {b:>2}: inference at p <= 0.05 at least {min(sp):.2f}x faster "
                      f"-> {'met' if min(sp) >= 2 else 'NOT met'} (goal 2x)")
        sp = [r["train"] for r in rows if r["width"] == w and r["density"] <= 0.02]
        if sp:
            print(f"  width {w:>5}: training step at p <= 0.02 at least {min(sp):.2f}x the masked dense speed "
                  f"-> {'met' if min(sp) > 1 else 'NOT met'} (goal > 1x)")
    return 0


if __name__ == "__main__":
    torch.manual_seed(0)
    sys.exit(main())
