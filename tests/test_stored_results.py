"""Every committed result in book/_results still fits the code, and a small one regenerates exactly.

Generic over all chapters: (a) checks every ``book/_results/<experiment>/<hash>.json``;
(b) regenerates the cheapest committed ``standard`` results (within a time
budget) from their own configs in a temporary store and compares them with the
committed ones field by field. ``rule_seed_spread`` (chapter 3, about 15 s) is
kept small for this purpose.

Timing keys. Two runs of the same config differ only in wall-clock times,
which are kept out of the comparison: any key in :data:`TIMING_KEYS` at any
depth of ``result``, and the whole ``provenance`` block (date, versions, wall
time). Everything else must be equal *exactly*.

Why exactly is possible: on a CPU, PyTorch is bit-reproducible for a fixed
seed and a fixed number of threads. The thread count matters: MKL/OpenMP
split the reductions of the backward pass (weight gradients sum over the
batch) across threads, so 1 and 2 threads give gradients that differ in the
last bits, and the weights drift apart from there (measured: identical
per-step losses, different gradient sums from the first step on).
``run_experiment`` records ``torch_threads`` in the provenance, and the
regeneration here runs with that many threads.
"""
import json
import math
from pathlib import Path

import pytest
import torch

from rpbook.experiments import experiment_names, get_experiment, run_experiment
from rpbook.results import ResultStore, config_hash, to_jsonable

RESULTS = Path(__file__).resolve().parent.parent / "book" / "_results"
# Keys whose values are wall-clock times (seconds). Add a key here if an experiment records another timing.
TIMING_KEYS = frozenset({"wall_time_s", "wall_time"})
# (b) must stay under about a minute: regenerate the cheapest committed standard results whose recorded
# wall times add up to at most this (always at least the cheapest one).
REGENERATE_BUDGET_S = 45.0


def committed_files() -> list[Path]:
    return sorted(p for p in RESULTS.glob("*/*.json") if not p.parent.name.startswith("."))


def load(path: Path) -> dict:
    with open(path) as fh:
        return json.load(fh)


def strip_timings(obj):
    if isinstance(obj, dict):
        return {k: strip_timings(v) for k, v in obj.items() if k not in TIMING_KEYS}
    if isinstance(obj, list):
        return [strip_timings(v) for v in obj]
    return obj


def first_difference(a, b, path="result"):
    """The path of the first differing value of two JSON trees, with both values, or None."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                return f"{path}.{key}: only in {'committed' if key in a else 'regenerated'}"
            d = first_difference(a[key], b[key], f"{path}.{key}")
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} items committed, {len(b)} regenerated"
        for i, (x, y) in enumerate(zip(a, b)):
            d = first_difference(x, y, f"{path}[{i}]")
            if d:
                return d
        return None
    same = a == b and type(a) is type(b) or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
    return None if same else f"{path}: committed {a!r}, regenerated {b!r}"


@pytest.mark.parametrize("path", committed_files(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_committed_result_names_a_valid_config(path):
    record = load(path)
    name = path.parent.name
    assert record["experiment"] == name, f"{path} says it is {record['experiment']!r} but lives under {name}/"
    assert name in experiment_names(), f"{path}: no experiment {name!r}; known: {experiment_names()}"
    config = get_experiment(name).config_from_dict(record["config"])  # ValueError if the code no longer takes it
    assert to_jsonable(config) == record["config"], f"{path}: the config does not survive a round trip"
    assert config_hash(name, config) == path.stem == record["config_hash"], (
        f"{path}: its config hashes to {config_hash(name, config)}, but the file is named {path.stem}")
    prov = record["provenance"]
    assert prov.get("profile") in ("quick", "standard", "full") and prov.get("wall_time_s") is not None


def test_timing_helpers():
    a = {"x": [1, {"wall_time_s": 3.0, "y": 0.5}], "wall_time": 2}
    assert strip_timings(a) == {"x": [1, {"y": 0.5}]}
    assert first_difference({"x": [1.0, 2.0]}, {"x": [1.0, 2.0000000000000004]}) == \
        "result.x[1]: committed 2.0, regenerated 2.0000000000000004"
    assert first_difference({"x": 1}, {"x": 1.0}) is not None  # int vs float is a change of type
    assert first_difference({"x": [1]}, {"x": [1]}) is None


def regenerable() -> list[Path]:
    """Committed standard results made on a CPU, cheapest first, as many as fit the time budget.

    The cheapest one is always included, so that at least one result is checked.
    """
    found = []
    for path in committed_files():
        prov = load(path)["provenance"]
        if prov.get("profile") == "standard" and str(prov.get("device")) == "cpu" and prov.get("wall_time_s") is not None:
            found.append((prov["wall_time_s"], str(path), path))
    chosen, spent = [], 0.0
    for seconds, _, path in sorted(found):
        if chosen and spent + seconds > REGENERATE_BUDGET_S:
            break
        chosen.append(path)
        spent += seconds
    return chosen


def test_a_small_standard_result_is_committed():
    chosen = regenerable()
    assert chosen and load(chosen[0])["provenance"]["wall_time_s"] <= REGENERATE_BUDGET_S, (
        f"no committed standard result took <= {REGENERATE_BUDGET_S} s on a CPU; "
        "commit a small one so that test_regenerates_exactly can check it")


@pytest.mark.parametrize("path", regenerable(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_regenerates_exactly(path, tmp_path):
    committed = load(path)
    name = committed["experiment"]
    config = get_experiment(name).config_from_dict(committed["config"])
    threads = committed["provenance"].get("torch_threads", 1)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        fresh = run_experiment(name, "standard", config=config, store=ResultStore(tmp_path), progress=False,
                               device="cpu", force=True)
    finally:
        torch.set_num_threads(before)
    assert fresh["config_hash"] == committed["config_hash"]
    diff = first_difference(strip_timings(committed["result"]), strip_timings(fresh["result"]))
    assert diff is None, f"{path} does not regenerate from its own config ({threads} thread(s)): {diff}"
