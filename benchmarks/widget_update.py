"""Time of one update of chapter 2's graph explorer, and of ResNet-20 topology statistics.

A widget update is what happens when a reader moves a slider: resample the
masks of an MLP ``40 -> W -> W -> 10`` (rpbook.masks.sample_masks), recompute
its topology statistics (rpbook.graphs.network_topology: degrees, isolated
units, paths, reachability) and redraw the figure, rendered to PNG as Jupyter
shows it. The issue's budget is 1 s at W = 1024 and 1 s for the per-layer
statistics of a ResNet-20 mask.

Prints the median and the maximum over ``--repeats`` updates, each at a new
density and rule so nothing is cached.

Usage: python benchmarks/widget_update.py [--repeats 7] [--threads 2]
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import time

import matplotlib

matplotlib.use("Agg")

import torch  # noqa: E402

from rpbook.graphs import network_topology  # noqa: E402
from rpbook.masks import sample_masks  # noqa: E402
from rpbook.models import build_model  # noqa: E402
from rpbook.chapters.ch2_er_masks_as_graphs import GraphExplorer  # noqa: E402

BUDGET_S = 1.0
STATES = list(itertools.product((0.1, 0.03, 0.01, 0.003), ("erk", "uniform", "balanced", "er", "pyramidal")))


def time_widget(width: int, repeats: int) -> dict[str, list[float]]:
    explorer = GraphExplorer()
    explorer.update(0.05, width, "erk")  # builds the width's MLP once, as the first slider move does
    explorer.render_png()
    parts: dict[str, list[float]] = {"sample+stats+draw": [], "render png": [], "total": []}
    for density, rule in STATES[:repeats]:
        t0 = time.perf_counter()
        explorer.update(density, width, rule)
        t1 = time.perf_counter()
        explorer.render_png()
        t2 = time.perf_counter()
        parts["sample+stats+draw"].append(t1 - t0)
        parts["render png"].append(t2 - t1)
        parts["total"].append(t2 - t0)
    return parts


def time_resnet_stats(repeats: int) -> list[float]:
    model = build_model("resnet20", in_shape=(3, 32, 32), num_classes=10)
    out = []
    for density, rule in STATES[:repeats]:
        masks = sample_masks(model, density, rule, seed=0)
        t0 = time.perf_counter()
        network_topology(masks, chain=False)
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.repeats} updates each; budget {BUDGET_S:.1f} s")
    worst = 0.0
    for width in (128, 1024):
        parts = time_widget(width, args.repeats)
        line = ", ".join(f"{k} median {statistics.median(v):.3f} s" for k, v in parts.items())
        print(f"widget update, MLP 40-{width}-{width}-10: {line}; total max {max(parts['total']):.3f} s")
        if width == 1024:
            worst = max(worst, statistics.median(parts["total"]))
    stats = time_resnet_stats(args.repeats)
    print(f"ResNet-20 topology statistics (22 layers): median {statistics.median(stats):.3f} s, max {max(stats):.3f} s")
    worst = max(worst, statistics.median(stats))
    print(f"median update / budget at width 1024 and ResNet-20: {worst / BUDGET_S:.2f} (< 1 meets the budget)")


if __name__ == "__main__":
    main()
