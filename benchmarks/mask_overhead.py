"""Per-step training time of masked over dense networks on the CPU, for several masking mechanisms.

Prints the median time of a training step (forward, backward, SGD step with
momentum and weight decay) for each mechanism, interleaved in one process so
that every mechanism sees the same machine state, and its ratio to dense.

Mechanisms:
- ``rpbook``: rpbook.masks.Masking (gradient hook + re-mask after each step), the one the book uses.
- ``inplace``: no hooks; mask the gradients by hand after backward and the weights after step.
- ``prune``: torch.nn.utils.prune.custom_from_mask (forward pre-hook computes weight = orig * mask).
- ``parametrize``: torch.nn.utils.parametrize with a multiply-by-mask parametrization.

Usage: python benchmarks/mask_overhead.py [--repeats 7] [--threads 2]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn
from torch.nn.utils import parametrize, prune

from rpbook.masks import Masking, maskable_layers, sample_masks
from rpbook.models import build_model

DENSITY = 0.1


class MultiplyByMask(nn.Module):
    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * self.mask


def setup(kind: str, name: str, in_shape, batch: int):
    torch.manual_seed(0)
    model = build_model(name, in_shape=in_shape, num_classes=10)
    masks = {k: v.float() for k, v in sample_masks(model, DENSITY, "erk", seed=0).items()}
    layers = dict(maskable_layers(model))
    opt = None
    after_backward = after_step = lambda: None
    if kind == "rpbook":
        masking = Masking(model, masks)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        masking.watch(opt)
    elif kind == "inplace":
        with torch.no_grad():
            for k, m in masks.items():
                layers[k].weight.mul_(m)

        def after_backward():
            for k, m in masks.items():
                layers[k].weight.grad.mul_(m)

        @torch.no_grad()
        def after_step():
            for k, m in masks.items():
                layers[k].weight.mul_(m)
    elif kind == "prune":
        for k, m in masks.items():
            prune.custom_from_mask(layers[k], "weight", m)
    elif kind == "parametrize":
        for k, m in masks.items():
            parametrize.register_parametrization(layers[k], "weight", MultiplyByMask(m))
    if opt is None:
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(batch, *in_shape)
    y = torch.randint(0, 10, (batch,))

    def step():
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        after_backward()
        opt.step()
        after_step()

    return step


def bench(name: str, in_shape, batch: int, steps: int, repeats: int, kinds) -> dict[str, float]:
    steppers = {k: setup(k, name, in_shape, batch) for k in kinds}
    for s in steppers.values():  # warm-up
        for _ in range(3):
            s()
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(repeats):
        for k, s in steppers.items():  # interleaved: drift hits every mechanism alike
            t0 = time.perf_counter()
            for _ in range(steps):
                s()
            times[k].append((time.perf_counter() - t0) / steps)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    kinds = ["dense", "rpbook", "inplace", "prune", "parametrize"]
    cases = [
        ("mlp", (1, 28, 28), 128, 200, "MLP 784-300-100-10, batch 128"),
        ("mlp", (1, 28, 28), 1024, 40, "MLP 784-300-100-10, batch 1024"),
        ("resnet20", (3, 32, 32), 64, 6, "ResNet-20 (CIFAR), batch 64"),
    ]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, density {DENSITY}, median of {args.repeats}")
    for name, in_shape, batch, steps, label in cases:
        med = bench(name, in_shape, batch, steps, args.repeats, kinds)
        row = ", ".join(f"{k} ×{med[k] / med['dense']:.3f}" for k in kinds[1:])
        print(f"{label}: dense {med['dense'] * 1e3:.2f} ms/step; {row}")


if __name__ == "__main__":
    main()
