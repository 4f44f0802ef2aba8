"""Wall time of one chapter-3 sweep run serially and on a local process pool, and what a cluster would buy.

Part 1 (measured): regenerates the ``standard`` result of ``rule_seed_spread``
(20 units, ~25 s serially on one core) with ``--executor serial`` and with
``--executor local`` on every core, interleaved over rounds so that both see
the same machine state, 1 torch thread per process (as the stored results were
made). Prints each wall time and CPU time (workers included), the speed-up per
round and its median, and checks that both executors give the same numbers bit
for bit, and the committed numbers: bit for bit on the numeric environment that
made them, within the experiment's declared tolerances on another one. On a busy machine the wall-time ratio measures the other processes
too (and Linux's autogroup gives a whole session one share of a contended CPU,
however many processes it runs); the ratio from CPU seconds says what the pool
would give on idle cores.

Part 2 (a paper estimate): the ``full`` presets of chapter 3's experiments,
counted unit by unit without training (their ``run`` is stopped at its
``ctx.map``), with each unit's cost taken as its architecture's dense training
FLOPs (masking saves none on a GPU) × epochs × training examples, converted to
time with one assumed GPU throughput; then the wall time on 1 GPU (the sum) and
on a 16-GPU SLURM allocation (units packed longest first onto 16 GPUs).

Usage: python benchmarks/sweep_scaling.py [--rounds 2] [--workers N] [--skip-measure] [--gpus 16]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch

from rpbook.experiments import get_experiment, run_experiment
from rpbook.experiments.executors import sweep_units, usable_cores
from rpbook.config import same_numeric_environment
from rpbook.results import ResultStore, compare_results

EXPERIMENT = "rule_seed_spread"
CHAPTER3 = ("rule_density_sweep", "rule_seed_spread", "width_sweep", "depth_sweep")
# Assumptions of the estimate (not measured here: this machine has no GPU): seconds per CIFAR-10 epoch of the
# base network on one V100/A100-class GPU with mixed precision and the data in GPU memory, the order commonly
# reported for these models; a wider or deeper variant costs its dense FLOPs relative to the base (masks save
# no time on a GPU).
EPOCH_S = {"resnet": 10.0, "vgg": 20.0}
BASE = {"resnet": {"model": "resnet20"}, "vgg": {"model": "vgg16"}}
OVERHEAD_S = 60.0  # per SLURM job: queue start, imports, data loading, the test pass


def strip(obj):
    if isinstance(obj, dict):
        return {k: strip(v) for k, v in obj.items() if k != "wall_time_s"}
    if isinstance(obj, list):
        return [strip(v) for v in obj]
    return obj


def cpu_seconds() -> float:
    """CPU seconds of this process and of its finished child processes (the pool's workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def against_committed(rec: dict, stored: dict | None, exp) -> str:
    """How a regenerated record compares with the committed one: exact on its numeric environment, else tolerances."""
    if stored is None:
        return "no committed result for this config"
    exact = same_numeric_environment(stored["provenance"].get("numeric_env"), rec["provenance"]["numeric_env"])
    checks = compare_results(stored["result"], rec["result"], dict(exp.tolerances), exact=exact)
    differ = sum(c.verdict == "differs" for c in checks)
    within = sum(c.verdict == "within" for c in checks)
    where = "same numeric environment as the committed result" if exact else "other numeric environment"
    return f"{where}: {len(checks) - differ - within} exact, {within} within tolerance, {differ} DIFFER"


def measure(rounds: int, workers: int) -> None:
    exp = get_experiment(EXPERIMENT)
    config = exp.config("standard")
    committed = ResultStore(Path(__file__).resolve().parent.parent / "book" / "_results")
    stored = committed.load(EXPERIMENT, config) if committed.has(EXPERIMENT, config) else None
    torch.set_num_threads(1)
    print(f"{EXPERIMENT} [standard], {len(config.rules) * len(config.seeds)} units, 1 torch thread per process, "
          f"{usable_cores()} usable cores, local pool of {workers} workers; load average before: "
          f"{os.getloadavg()[0]:.1f}")
    ratios, ideal = [], []
    for r in range(1, rounds + 1):
        times, cpu, results = {}, {}, {}
        for name in ("serial", "local"):
            with tempfile.TemporaryDirectory() as tmp:
                started, cpu0 = time.perf_counter(), cpu_seconds()
                rec = run_experiment(EXPERIMENT, "standard", config=config, store=ResultStore(tmp), progress=False,
                                     device="cpu", force=True, executor=name,
                                     workers=workers if name == "local" else None)
                times[name] = time.perf_counter() - started
                cpu[name] = cpu_seconds() - cpu0
            results[name] = rec
            print(f"  round {r} {name:<6} {times[name]:6.1f} s wall, {cpu[name]:6.1f} s CPU (workers included)  "
                  f"({against_committed(rec, stored, exp)})")
        same = strip(results["serial"]["result"]) == strip(results["local"]["result"])
        print(f"  round {r} serial and local give {'the same numbers, bit for bit' if same else 'DIFFERENT numbers'}")
        ratios.append(times["serial"] / times["local"])
        # On a busy machine the wall times measure the other processes too; the CPU seconds do not. If the
        # pool's CPU work split evenly over its workers on otherwise idle cores, it would take cpu / workers.
        ideal.append(cpu["serial"] / (cpu["local"] / workers))
        print(f"  round {r} speed-up local / serial: {ratios[-1]:.2f}x wall; {ideal[-1]:.2f}x from CPU seconds "
              f"(idle cores, even split)")
    print(f"speed-up (median of {rounds} rounds): {statistics.median(ratios):.2f}x wall, "
          f"{statistics.median(ideal):.2f}x from CPU seconds; load average after: {os.getloadavg()[0]:.1f}")


def full_units(name: str) -> tuple[object, list[dict]]:
    """The full preset's config and its units, from the experiment's own ``run`` (no training, no data)."""
    config = get_experiment(name).config("full")
    return config, sweep_units(name, config)


def architecture_of(config, unit: dict) -> dict:
    """The ``build_model`` arguments of one unit of a chapter-3 config."""
    if hasattr(config, "depths"):
        from rpbook.experiments.depth_sweep import architecture

        arch = architecture(config, unit["depth"])
    else:
        arch = {"model": config.model, "hidden": config.hidden, "width": unit.get("width", 1.0)}
    return {k: v for k, v in arch.items() if v is not None}


def dense_flops(arch: dict) -> float:
    """Forward FLOPs per CIFAR-10 example of a dense architecture (a multiply-add counts 2)."""
    from rpbook.masks import sparsity_report
    from rpbook.models import build_model

    arch = dict(arch)
    model = build_model(arch.pop("model"), in_shape=(3, 32, 32), num_classes=10, **arch)
    return float(sum(layer.flops_dense for layer in sparsity_report(model, (3, 32, 32)).layers))


def family(config) -> str:
    model = getattr(config, "model", None) or getattr(config, "family", "")
    return "vgg" if str(model).startswith("vgg") else "resnet"


def estimate(gpus: int) -> None:
    print(f"\nchapter 3 at the full profile, on paper: one GPU epoch of CIFAR-10 takes {EPOCH_S['resnet']:.0f} s "
          f"(ResNet-20) and {EPOCH_S['vgg']:.0f} s (VGG-16) (assumed), variants scale with their dense FLOPs, "
          f"{OVERHEAD_S:.0f} s per job")
    jobs = []
    base_flops = {f: dense_flops(BASE[f]) for f in BASE}
    cache: dict[str, float] = {}
    for name in CHAPTER3:
        config, units = full_units(name)
        epochs = config.train.epochs
        fam = family(config)
        total = 0.0
        for unit in units:
            key = json.dumps({"e": name, "w": unit.get("width"), "d": unit.get("depth")}, sort_keys=True)
            if key not in cache:
                cache[key] = dense_flops(architecture_of(config, unit)) / base_flops[fam]
            seconds = EPOCH_S[fam] * cache[key] * epochs + OVERHEAD_S
            jobs.append(seconds)
            total += seconds
        print(f"  {name:<20} {len(units):4d} units × {epochs} epochs ({getattr(config, 'model', fam)}) "
              f"≈ {total / 3600:6.1f} GPU-hours")
    one = sum(jobs)
    loads = [0.0] * gpus
    for seconds in sorted(jobs, reverse=True):  # longest first onto the least-loaded GPU
        least = min(range(gpus), key=loads.__getitem__)
        loads[least] += seconds
    many = max(loads)
    print(f"  {len(jobs)} units: 1 GPU ≈ {one / 3600:.0f} h ({one / 86400:.1f} days); {gpus} GPUs under SLURM ≈ "
          f"{many / 3600:.1f} h (speed-up {one / many:.1f}x; the longest unit alone {max(jobs) / 3600:.1f} h)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=usable_cores())
    parser.add_argument("--gpus", type=int, default=16)
    parser.add_argument("--skip-measure", action="store_true", help="print only the paper estimate")
    args = parser.parse_args()
    if not args.skip_measure:
        measure(args.rounds, args.workers)
    estimate(args.gpus)


if __name__ == "__main__":
    main()
