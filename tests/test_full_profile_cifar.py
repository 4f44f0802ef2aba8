"""The ``full`` preset's code path on a tiny CIFAR-10-format file that the test writes itself.

``full`` is the papers' setting for a GPU (CIFAR-10, ResNet-20 / VGG-16, step
decay, crops and flips, mixed precision); it never runs here. These tests run
its code path end to end on a handful of images: CIFAR-10 loading through the
checksum gate, the models, the step schedule, ``augment="cifar"``, and mixed
precision switched off on the CPU. The presets are shrunk with
``dataclasses.replace`` to one epoch and a few units.
"""
import dataclasses
import hashlib
import io
import math
import pickle
import tarfile

import numpy as np
import pytest
import torch

from rpbook import data as rpdata
from rpbook import train as rptrain
from rpbook.data import load_dataset
from rpbook.experiments import get_experiment, run_experiment
from rpbook.masks import maskable_layers
from rpbook.models import build_model
from rpbook.results import ResultStore
from rpbook.train import lr_at

PER_BATCH, N_TEST = 8, 10  # 40 training images (36 train + 4 validation), 10 test images


def write_tiny_cifar(folder, seed=0) -> str:
    """Write ``cifar-10-python.tar.gz`` with the official layout and pickles; return its md5."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "cifar-10-python.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, n in [(f"data_batch_{i}", PER_BATCH) for i in range(1, 6)] + [("test_batch", N_TEST)]:
            labels = [int(v) for v in rng.integers(0, 10, n)]
            batch = {b"batch_label": name.encode(), b"labels": labels,
                     b"data": rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8),
                     b"filenames": [f"img{i}.png".encode() for i in range(n)]}
            raw = pickle.dumps(batch, protocol=2)  # the protocol of the official (Python 2) pickles
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def tiny_cifar(tmp_path, monkeypatch):
    root = tmp_path / "data"
    md5 = write_tiny_cifar(root / "cifar10")
    monkeypatch.setenv("RPBOOK_DATA", str(root))
    # load_dataset looks the expected md5 up in CHECKSUMS; point it at our file for this test only
    monkeypatch.setitem(rpdata.CHECKSUMS, "cifar10", {"cifar-10-python.tar.gz": md5})
    return root


@pytest.fixture
def watch_training(monkeypatch):
    """Record autocast switches and augmentation calls; fail if a GradScaler is made on the CPU."""
    seen = {"autocast": [], "augment": 0}
    real_autocast, real_augment = torch.autocast, rptrain._augment_cifar

    def autocast(*args, **kwargs):
        seen["autocast"].append((kwargs.get("device_type"), kwargs.get("enabled", True)))
        return real_autocast(*args, **kwargs)

    def augment(x, generator):
        seen["augment"] += 1
        out = real_augment(x, generator)
        assert out.shape == x.shape
        return out

    def no_scaler(*args, **kwargs):
        raise AssertionError("a GradScaler was created: mixed precision is on although training runs on the CPU")

    monkeypatch.setattr(torch, "autocast", autocast)
    monkeypatch.setattr(torch.amp, "GradScaler", no_scaler)
    monkeypatch.setattr(rptrain, "_augment_cifar", augment)
    return seen


def test_tiny_cifar_loads_through_the_checksum_gate(tiny_cifar, monkeypatch):
    ds = load_dataset("cifar10", download=False)
    assert tuple(ds.in_shape) == (3, 32, 32) and ds.num_classes == 10
    assert (len(ds.x_train), len(ds.x_val), len(ds.x_test)) == (36, 4, N_TEST)
    assert ds.x_train.dtype == torch.float32 and abs(float(ds.x_train.mean())) < 0.1
    # a wrong checksum stops loading before the pickles are read
    monkeypatch.setitem(rpdata.CHECKSUMS, "cifar10", {"cifar-10-python.tar.gz": "0" * 32})
    with pytest.raises(ValueError, match="checksum mismatch"):
        load_dataset("cifar10", download=False)


def test_width_sweep_full_path_resnet20(tiny_cifar, watch_training, tmp_path):
    exp = get_experiment("width_sweep")
    full = exp.config("full")
    assert full.model == "resnet20" and full.dataset == "cifar10" and full.train.epochs == 160
    assert full.train.amp and full.train.schedule == "step" and full.train.augment == "cifar"
    config = dataclasses.replace(full, widths=(0.25,), densities=(0.1,), seeds=(0,),
                                 train=dataclasses.replace(full.train, epochs=1, batch_size=8))
    rec = run_experiment("width_sweep", "full", config=config, store=ResultStore(tmp_path), progress=False,
                         device="cpu")
    assert rec["provenance"]["device"] == "cpu" and rec["provenance"]["profile"] == "full"
    runs = rec["result"]["runs"]
    assert [r["arm"] for r in runs] == ["dense", "sparse", "dense-same-nonzero"]

    net = build_model("resnet20", in_shape=(3, 32, 32), num_classes=10, width=0.25)
    layers = maskable_layers(net)
    assert len(layers) == 22  # stem, 18 block convs, 2 projection shortcuts, classifier
    dense, sparse, same = runs
    assert dense["params"] == sum(m.weight.numel() for _, m in layers) == dense["nonzero"]
    assert len(sparse["layer_densities"]) == len(layers)
    assert sparse["realized_density"] == pytest.approx(0.1, abs=0.01)
    assert same["nonzero"] <= dense["params"] and same["matched_width"] < 0.25

    # the step schedule: 36 images / batch 8 = 5 steps; the last step is past both milestones
    steps = math.ceil(36 / 8)
    assert dense["final_lr"] == pytest.approx(lr_at(steps - 1, steps, config.train)) == pytest.approx(0.1 * 0.1 ** 2)
    # crops and flips on every training batch of the three runs, and autocast always off on the CPU
    assert watch_training["augment"] == 3 * steps
    assert watch_training["autocast"] and all(dev == "cpu" and not on for dev, on in watch_training["autocast"])


@pytest.mark.parametrize("name, shrink", [
    ("rule_density_sweep", {"rules": ("erk",), "densities": (0.05,)}),
    ("depth_sweep", {"depths": (20,), "densities": (0.1,), "width": 0.25}),
    ("rule_seed_spread", {"rules": ("erk", "balanced")}),
])
def test_other_full_presets_run_on_tiny_cifar(name, shrink, tiny_cifar, watch_training, tmp_path):
    full = get_experiment(name).config("full")
    assert full.dataset == "cifar10" and full.train == get_experiment("width_sweep").config("full").train
    config = dataclasses.replace(full, n_train=8, seeds=(0,), train=dataclasses.replace(full.train, epochs=1),
                                 **shrink)
    rec = run_experiment(name, "full", config=config, store=ResultStore(tmp_path), progress=False, device="cpu")
    for row in rec["result"]["runs"]:
        assert 0.0 <= row["test_acc"] <= 1.0 and math.isfinite(row["test_loss"])
    assert all(not on for _, on in watch_training["autocast"]) and watch_training["augment"] >= 1


@pytest.mark.parametrize("name, shrink", [
    ("s2s_imp", {"include_dense": False, "source_rules": ("balanced",), "source_densities": (0.5,),
                 "targets": (0.4,)}),
    ("s2s_pruning_at_init", {"include_dense": False, "source_densities": (0.5,), "methods": ("snip", "synflow"),
                             "targets": (0.1,), "synflow_iterations": 2, "score_batch": 8}),
    ("layer_collapse", {"include_dense": False, "methods": ("magnitude", "synflow-oneshot"),
                        "densities": (0.05, 0.005), "train_densities": (0.005,), "score_batch": 8}),
    # STR reparameterizes VGG-16's Conv2d layers; GraNet prunes once, at the end of its (one-step) schedule
    ("s2s_str_granet", {"include_dense": False, "source_densities": (0.5,), "targets": (0.1,), "str_decays": (0.05,)}),
])
def test_chapter7_full_presets_run_vgg16_on_tiny_cifar(name, shrink, tiny_cifar, watch_training, tmp_path):
    full = get_experiment(name).config("full")
    assert full.model == "vgg16" and full.dataset == "cifar10"
    config = dataclasses.replace(full, n_train=8, seeds=(0,), train=dataclasses.replace(full.train, epochs=1),
                                 **shrink)
    rec = run_experiment(name, "full", config=config, store=ResultStore(tmp_path), progress=False, device="cpu")
    runs = rec["result"]["runs"]
    assert runs
    for row in runs:
        if "test_acc" in row:  # trained rows; NaN would have been stored as None and fail here
            assert row["test_acc"] is not None and 0.0 <= row["test_acc"] <= 1.0
        # VGG-16 is a chain (convs, then the classifier on the flattened channels): paths can be followed
        if "paths" in row:
            assert row["paths"] is not None and row["collapsed"] in (True, False)
    assert all(not on for _, on in watch_training["autocast"]) and watch_training["augment"] >= 1


@pytest.mark.parametrize("name, shrink", [
    ("edge_popup_width", {"widths": (0.25,), "densities": (0.5,), "weight_inits": ("signed_constant",)}),
    ("edge_popup_er_source", {"widths": (0.25,), "source_densities": (0.5,), "target_densities": (0.2,)}),
])
def test_chapter6_full_presets_run_on_tiny_cifar(name, shrink, tiny_cifar, watch_training, tmp_path):
    full = get_experiment(name).config("full")
    assert full.dataset == "cifar10" and full.model in ("convnet", "resnet20")
    one_epoch = {k: dataclasses.replace(getattr(full, k), epochs=1, batch_size=8)
                 for k in ("train", "dense_train") if hasattr(full, k)}
    config = dataclasses.replace(full, n_train=8, seeds=(0,), **one_epoch, **shrink)
    rec = run_experiment(name, "full", config=config, store=ResultStore(tmp_path), progress=False, device="cpu")
    rows = rec["result"]["rows"]
    assert rows and all(0.0 <= r["test_accuracy"] <= 1.0 for r in rows)
    if name == "edge_popup_er_source":  # the search stayed inside the source and never moved a weight
        assert all(r["inside_source"] and r["weights_unchanged"] and r["exact_counts"] for r in rows)
    assert all(not on for _, on in watch_training["autocast"])
