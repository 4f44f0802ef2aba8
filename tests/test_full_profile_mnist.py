"""The ``full`` presets that train on MNIST (chapters 5 and 6), on a tiny MNIST written in the official format.

Like ``test_full_profile_cifar.py``: ``full`` never runs here (it is for a GPU and downloads MNIST), so its
code path runs end to end on 40 training and 10 test images through the checksum gate, with the presets
shrunk by ``dataclasses.replace`` to one epoch and one seed.
"""
import dataclasses
import gzip
import hashlib
import math

import numpy as np
import pytest

from rpbook import data as rpdata
from rpbook.experiments import get_experiment, run_experiment
from rpbook.results import ResultStore

N_TRAIN, N_TEST = 40, 10


def write_tiny_mnist(folder) -> dict:
    """The four official idx files (gzip, big-endian header); returns their md5 checksums."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte.gz": (2051, rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8)),
        "train-labels-idx1-ubyte.gz": (2049, np.arange(N_TRAIN, dtype=np.uint8) % 10),
        "t10k-images-idx3-ubyte.gz": (2051, rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8)),
        "t10k-labels-idx1-ubyte.gz": (2049, np.arange(N_TEST, dtype=np.uint8) % 10),
    }
    sums = {}
    for name, (magic, arr) in arrays.items():
        header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
        blob = gzip.compress(header + arr.tobytes())
        (folder / name).write_bytes(blob)
        sums[name] = hashlib.md5(blob).hexdigest()
    return sums


@pytest.fixture
def tiny_mnist(tmp_path, monkeypatch):
    root = tmp_path / "data"
    sums = write_tiny_mnist(root / "mnist")
    monkeypatch.setenv("RPBOOK_DATA", str(root))
    monkeypatch.setitem(rpdata.CHECKSUMS, "mnist", sums)
    return root


def test_evci_pipeline_full_preset_runs_on_tiny_mnist(tiny_mnist, tmp_path):
    full = get_experiment("evci_pipeline").config("full")
    assert [s.dataset for s in full.setups] == ["mnist", "mnist"] and [s.model for s in full.setups] == ["lenet5", "mlp"]
    setups = tuple(dataclasses.replace(s, train=dataclasses.replace(s.train, epochs=2, batch_size=8))
                   for s in full.setups)
    config = dataclasses.replace(full, setups=setups, seeds=(0,), prune_every=1, dst_every=2, log_every=2,
                                 log_batch=16, interp_points=3)
    rec = run_experiment("evci_pipeline", "full", config=config, store=ResultStore(tmp_path), progress=False,
                         device="cpu")
    units = rec["result"]["units"]
    assert [u["setup"] for u in units] == [s.name for s in full.setups]
    for unit in units:
        # every setup reached its density and trained every method of the pipeline on the tiny MNIST
        assert unit["density"] == pytest.approx(dict((s.name, s.density) for s in full.setups)[unit["setup"]],
                                                abs=0.01)
        for method, m in unit["methods"].items():
            assert 0.0 <= m["test_accuracy"] <= 1.0, method


def test_ticket_ensembles_full_preset_runs_on_tiny_mnist(tiny_mnist, tmp_path):
    full = get_experiment("ticket_ensembles").config("full")
    assert (full.setup.dataset, full.setup.model, full.members) == ("mnist", "lenet5", 5)
    setup = dataclasses.replace(full.setup, train=dataclasses.replace(full.setup.train, epochs=1, batch_size=8))
    config = dataclasses.replace(full, setup=setup, members=2, seeds=(0,), prune_every=1)
    rec = run_experiment("ticket_ensembles", "full", config=config, store=ResultStore(tmp_path), progress=False,
                         device="cpu")
    (unit,) = rec["result"]["units"]
    assert unit["density"] == pytest.approx(full.setup.density, abs=0.01)
    for group in full.groups:
        assert 0.0 <= unit["groups"][group]["ensemble_accuracy"] <= 1.0, group


@pytest.mark.parametrize("name, shrink", [
    ("init_signal_propagation", {"width": 32, "densities": (1.0, 0.1), "seeds": (0,), "batch_size": 16}),
    ("slt_construction", {"hidden": (8,), "ns": (8,), "n_sphere": 50, "seeds": (0,)}),
])
def test_other_mnist_full_presets_run(name, shrink, tiny_mnist, tmp_path):
    full = get_experiment(name).config("full")
    assert full.dataset == "mnist"
    if hasattr(full, "train"):
        shrink = {**shrink, "train": dataclasses.replace(full.train, epochs=1, batch_size=8)}
    config = dataclasses.replace(full, **shrink)
    rec = run_experiment(name, "full", config=config, store=ResultStore(tmp_path), progress=False, device="cpu")
    rows = rec["result"].get("runs") or rec["result"].get("rows")
    assert rows
    for row in rows:  # NaN would have been stored as None, so every metric must be a finite number
        if name == "init_signal_propagation":
            assert math.isfinite(row["grad_norm"]) and row["grad_norm"] > 0 and math.isfinite(row["loss"])
            assert all(v is not None and math.isfinite(v) for v in row["act_var"])
        else:
            assert math.isfinite(row["sup_error"]) and row["sup_error"] <= row["error_bound"]
            assert 0.0 <= row["ticket_test_accuracy"] <= 1.0 and 0.0 <= row["target_test_accuracy"] <= 1.0


def test_edge_popup_structure_full_preset_runs_on_tiny_mnist(tiny_mnist, tmp_path):
    full = get_experiment("edge_popup_structure").config("full")
    assert full.dataset == "mnist" and full.target_hidden == (500,) and 5 in full.ns  # Pensia et al.'s setting
    one_epoch = {k: dataclasses.replace(getattr(full, k), epochs=1, batch_size=8) for k in ("train", "dense_train")}
    config = dataclasses.replace(full, target_hidden=(8,), ns=(2,), densities=(0.5,), seeds=(0,), **one_epoch)
    rec = run_experiment("edge_popup_structure", "full", config=config, store=ResultStore(tmp_path), progress=False,
                         device="cpu")
    rows = rec["result"]["rows"]
    assert {r["arm"] for r in rows} == {"dense_target", "subset_sum", "wide", "wide_deep"}
    assert all(0.0 <= r["test_accuracy"] <= 1.0 for r in rows)
    assert all(r["exact_counts"] and r["inside_source"] and r["weights_unchanged"]
               for r in rows if r["arm"] != "dense_target")
