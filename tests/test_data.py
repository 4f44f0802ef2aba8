"""Tests of rpbook.data: offline data sets, teacher–student data, online loaders on tiny official-format files."""
from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import random
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from rpbook import data
from rpbook.data import DATASET_NAMES, Dataset, load_dataset, make_teacher


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _global_rng_state():
    return random.getstate(), np.random.get_state(), torch.get_rng_state()


def _assert_same_rng_state(before, after):
    assert before[0] == after[0]
    assert all(np.array_equal(a, b) for a, b in zip(before[1], after[1]))
    assert torch.equal(before[2], after[2])


@pytest.fixture(scope="module")
def mnist1d_root(tmp_path_factory):
    return tmp_path_factory.mktemp("rpbook-data")


# --------------------------------------------------------------------------- digits and MNIST-1D


def test_mnist1d_keeps_global_rng_state_and_caches(tmp_path, monkeypatch):
    # First in the file: its one real generation then serves every later MNIST-1D test from memory.
    data._mnist1d_arrays.cache_clear()
    data._generate_mnist1d.cache_clear()
    before = _global_rng_state()
    first = load_dataset("mnist1d", seed=0, root=tmp_path / "none", disk_cache=False)
    _assert_same_rng_state(before, _global_rng_state())
    assert data._generate_mnist1d.cache_info().misses == 1
    assert not (tmp_path / "none").exists()
    load_dataset("mnist1d", seed=0, root=tmp_path)  # served from memory, and written to the disk cache
    assert len(list((tmp_path / "mnist1d").glob("*.npz"))) == 1 and not list((tmp_path / "mnist1d").glob(".*"))
    data._mnist1d_arrays.cache_clear()

    def must_not_generate(data_seed):
        raise AssertionError("regenerated instead of reading the disk cache")

    monkeypatch.setattr(data, "_generate_mnist1d", must_not_generate)
    from_disk = load_dataset("mnist1d", seed=0, root=tmp_path)
    for f in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert torch.equal(getattr(first, f), getattr(from_disk, f)), f
    data._mnist1d_arrays.cache_clear()  # forget the entry read while generation was patched out


@pytest.mark.parametrize("name,in_shape,n_total", [("digits", (1, 8, 8), 1797), ("mnist1d", (40,), 5000)])
def test_offline_shapes_dtypes_and_standardisation(name, in_shape, n_total, mnist1d_root):
    ds = load_dataset(name, seed=0, root=mnist1d_root)
    assert isinstance(ds, Dataset) and ds.name == name
    assert ds.in_shape == in_shape and ds.num_classes == 10 and ds.task == "classification"
    for x, y in [(ds.x_train, ds.y_train), (ds.x_val, ds.y_val), (ds.x_test, ds.y_test)]:
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert tuple(x.shape[1:]) == in_shape and len(x) == len(y)
        assert set(torch.unique(y).tolist()) == set(range(10))
    assert len(ds.x_train) + len(ds.x_val) + len(ds.x_test) == n_total
    assert abs(len(ds.x_val) / (len(ds.x_train) + len(ds.x_val)) - 0.1) < 0.01
    assert abs(float(ds.x_train.mean())) < 1e-4
    assert abs(float(ds.x_train.std()) - 1) < 1e-3
    assert len(ds.info["mean"]) == len(ds.info["std"]) == 1
    assert ds.info["sizes"] == {"train": len(ds.x_train), "val": len(ds.x_val), "test": len(ds.x_test)}
    assert f"train={len(ds.x_train)}" in repr(ds) and f"test={len(ds.x_test)}" in repr(ds)


def test_digits_splits_are_disjoint_stratified_and_match_the_source():
    from sklearn.datasets import load_digits

    ds = load_dataset("digits", seed=3)
    idx = ds.info["indices"]
    all_idx = np.concatenate([idx["train"], idx["val"], idx["test"]])
    assert len(np.unique(all_idx)) == len(all_idx) == 1797  # disjoint and complete
    raw = load_digits().data.reshape(-1, 1, 8, 8)
    mean, std = ds.info["mean"][0], ds.info["std"][0]
    for split in ("train", "val", "test"):
        x = getattr(ds, f"x_{split}").double() * std + mean
        assert torch.allclose(x, torch.from_numpy(raw[idx[split]]), atol=1e-4)
    # Stratified 20 % test split: every class holds 35-37 of its ~180 images.
    assert np.bincount(ds.y_test.numpy()).min() >= 35 and len(ds.y_test) == 359


def test_mnist1d_splits_are_disjoint(mnist1d_root):
    ds = load_dataset("mnist1d", seed=0, root=mnist1d_root)
    idx = ds.info["indices"]
    assert len(np.intersect1d(idx["train"], idx["val"])) == 0
    assert np.array_equal(np.sort(np.concatenate([idx["train"], idx["val"]])), np.arange(4000))
    assert np.array_equal(idx["test"], np.arange(1000))


@pytest.mark.parametrize("name", ["digits", "mnist1d"])
def test_offline_determinism(name, mnist1d_root):
    a = load_dataset(name, seed=5, root=mnist1d_root)
    b = load_dataset(name, seed=5, root=mnist1d_root)
    c = load_dataset(name, seed=6, root=mnist1d_root)
    for f in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert torch.equal(getattr(a, f), getattr(b, f)), f
    assert not np.array_equal(a.info["indices"]["val"], c.info["indices"]["val"])
    assert not torch.equal(a.x_val, c.x_val)


@pytest.mark.parametrize("name", ["digits", "mnist1d"])
def test_n_train_subsamples_deterministically(name, mnist1d_root):
    full = load_dataset(name, seed=1, root=mnist1d_root)
    small = load_dataset(name, seed=1, n_train=50, root=mnist1d_root)
    again = load_dataset(name, seed=1, n_train=50, root=mnist1d_root)
    assert len(small.x_train) == 50 and torch.equal(small.x_train, again.x_train)
    assert set(small.info["indices"]["train"]) <= set(full.info["indices"]["train"])
    assert np.array_equal(small.info["indices"]["val"], full.info["indices"]["val"])
    assert np.bincount(small.y_train.numpy(), minlength=10).min() == 5  # stratified: 5 per class
    assert abs(float(small.x_train.mean())) < 1e-4  # standardised with the subsample's own statistics


# --------------------------------------------------------------------------- teacher–student


def test_teacher_targets_are_the_scaled_teacher_outputs():
    before = _global_rng_state()
    ds = load_dataset("teacher", seed=2, n_train=300, in_dim=8, hidden=(16, 16), out_dim=2, n_test=100)
    _assert_same_rng_state(before, _global_rng_state())
    assert ds.task == "regression" and ds.num_classes == 2 and ds.in_shape == (8,)
    assert ds.x_train.shape == (300, 8) and ds.y_train.shape == (300, 2) and ds.x_test.shape == (100, 8)
    assert ds.y_train.dtype == torch.float32 and ds.x_train.dtype == torch.float32
    teacher = ds.info["teacher"]
    assert isinstance(teacher, torch.nn.Module)
    scale = torch.tensor(ds.info["y_scale"], dtype=torch.float32)
    with torch.no_grad():
        for split in ("train", "val", "test"):
            x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
            assert torch.equal(y, teacher(x) * scale), split
    assert torch.allclose(ds.y_train.std(0, unbiased=False), torch.ones(2), atol=1e-5)
    assert ds.info["teacher_spec"]["hidden"] == [16, 16]


def test_teacher_determinism_noise_and_default_sizes():
    a, b, c = (load_dataset("teacher", seed=s) for s in (0, 0, 1))
    assert len(a.x_train) == 2000 and len(a.x_test) == 1000 and a.y_train.shape == (2000, 1)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train, c.x_train)
    noisy = load_dataset("teacher", seed=0, noise=0.5)
    assert torch.equal(noisy.x_train, a.x_train) and not torch.equal(noisy.y_train, a.y_train)
    assert 0.4 < float((noisy.y_train - a.y_train).std()) < 0.6
    fixed = load_dataset("teacher", seed=1, teacher_seed=0)
    assert torch.equal(fixed.info["teacher"][0].weight, a.info["teacher"][0].weight)


def test_make_teacher_is_seeded_locally():
    before = _global_rng_state()
    t1, t2 = make_teacher(4, (5,), 3, seed=7), make_teacher(4, (5,), 3, seed=7)
    _assert_same_rng_state(before, _global_rng_state())
    assert [type(m).__name__ for m in t1] == ["Linear", "ReLU", "Linear"]
    assert all(torch.equal(p, q) for p, q in zip(t1.parameters(), t2.parameters()))
    assert float(t1[0].weight.detach().abs().max()) <= 0.5  # U(-1/sqrt(4), 1/sqrt(4))


def test_dataset_to_returns_a_moved_copy():
    ds = load_dataset("teacher", seed=0, n_train=20, n_test=5)
    moved = ds.to("cpu")
    assert moved is not ds and moved.info["teacher"] is not ds.info["teacher"]
    assert torch.equal(moved.x_train, ds.x_train) and moved.name == ds.name


# --------------------------------------------------------------------------- online loaders on tiny official files


def _idx_bytes(magic: int, array: np.ndarray) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


def _write_mnist_like(folder: Path, n_train: int = 20, n_test: int = 10) -> dict:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte.gz": (2051, rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)),
        "train-labels-idx1-ubyte.gz": (2049, np.arange(n_train, dtype=np.uint8) % 10),
        "t10k-images-idx3-ubyte.gz": (2051, rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8)),
        "t10k-labels-idx1-ubyte.gz": (2049, np.arange(n_test, dtype=np.uint8)[::-1] % 10),
    }
    for fname, (magic, arr) in arrays.items():
        (folder / fname).write_bytes(_idx_bytes(magic, arr))
    return {fname: arr for fname, (_, arr) in arrays.items()}


def _checksums(folder: Path) -> dict:
    return {p.name: _md5(p) for p in folder.iterdir() if p.is_file()}


def _write_cifar(folder: Path, per_batch: int = 4, n_test: int = 10) -> dict:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    batches = {f"data_batch_{i}": per_batch for i in range(1, 6)} | {"test_batch": n_test}
    arrays = {}
    with tarfile.open(folder / "cifar-10-python.tar.gz", "w:gz") as tar:
        for name, n in batches.items():
            x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
            y = [int(v) for v in rng.integers(0, 10, n)]
            arrays[name] = (x, y)
            # Like the official Python-2 pickles: bytes keys, protocol 2.
            blob = pickle.dumps({b"batch_label": name.encode(), b"labels": y, b"data": x,
                                 b"filenames": [b"img%d.png" % i for i in range(n)]}, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return arrays


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_mnist_like_loads_official_format(name, tmp_path):
    arrays = _write_mnist_like(tmp_path / name)
    ds = load_dataset(name, root=tmp_path, download=False, val_fraction=0.0,
                      checksums=_checksums(tmp_path / name))
    assert ds.in_shape == (1, 28, 28) and ds.num_classes == 10
    assert ds.x_train.shape == (20, 1, 28, 28) and ds.x_test.shape == (10, 1, 28, 28) and len(ds.x_val) == 0
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    raw = arrays["train-images-idx3-ubyte.gz"].astype(np.float64) / 255
    assert np.allclose(ds.info["mean"][0], raw.mean()) and np.allclose(ds.info["std"][0], raw.std())
    expect = (raw - raw.mean()) / raw.std()
    assert np.allclose(ds.x_train.numpy()[:, 0], expect, atol=1e-5)
    assert ds.y_train.tolist() == arrays["train-labels-idx1-ubyte.gz"].tolist()
    assert ds.y_test.tolist() == arrays["t10k-labels-idx1-ubyte.gz"].tolist()
    with_val = load_dataset(name, root=tmp_path, download=False, seed=4, checksums=_checksums(tmp_path / name))
    assert (len(with_val.x_train), len(with_val.x_val)) == (18, 2)


def test_cifar10_loads_official_format(tmp_path):
    arrays = _write_cifar(tmp_path / "cifar10")
    ds = load_dataset("cifar10", root=tmp_path, download=False, val_fraction=0.0,
                      checksums=_checksums(tmp_path / "cifar10"))
    assert ds.in_shape == (3, 32, 32) and ds.x_train.shape == (20, 3, 32, 32) and ds.x_test.shape == (10, 3, 32, 32)
    x = np.concatenate([arrays[f"data_batch_{i}"][0] for i in range(1, 6)]).reshape(-1, 3, 32, 32) / 255
    mean, std = x.mean(axis=(0, 2, 3)), x.std(axis=(0, 2, 3))
    assert np.allclose(ds.info["mean"], mean) and len(ds.info["std"]) == 3
    assert np.allclose(ds.x_train.numpy(), (x - mean[:, None, None]) / std[:, None, None], atol=1e-5)
    assert ds.y_train.tolist() == sum((arrays[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    assert ds.y_test.tolist() == arrays["test_batch"][1]


def test_cifar10_refuses_pickles_that_are_not_numpy(tmp_path):
    folder = tmp_path / "cifar10"
    folder.mkdir()
    with tarfile.open(folder / "cifar-10-python.tar.gz", "w:gz") as tar:
        blob = pickle.dumps({b"data": Path("x"), b"labels": []}, protocol=2)
        info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        info.size = len(blob)
        tar.addfile(info, io.BytesIO(blob))
    with pytest.raises(ValueError, match="only numpy arrays"):
        load_dataset("cifar10", root=tmp_path, download=False, checksums=_checksums(folder))


@pytest.mark.parametrize("name,fname", [("mnist", "train-images-idx3-ubyte.gz"),
                                        ("fashion-mnist", "t10k-labels-idx1-ubyte.gz"),
                                        ("cifar10", "cifar-10-python.tar.gz")])
def test_corrupted_file_fails_checksum_before_parsing(name, fname, tmp_path, monkeypatch):
    folder = tmp_path / name
    _write_cifar(folder) if name == "cifar10" else _write_mnist_like(folder)
    checksums = _checksums(folder)
    blob = bytearray((folder / fname).read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (folder / fname).write_bytes(bytes(blob))

    def must_not_parse(*args, **kwargs):
        raise AssertionError("parsed a file whose checksum failed")

    monkeypatch.setattr(data, "_read_idx", must_not_parse)
    monkeypatch.setattr(data, "_read_cifar_tar", must_not_parse)
    with pytest.raises(ValueError, match="md5") as err:
        load_dataset(name, root=tmp_path, download=False, checksums=checksums)
    assert fname in str(err.value) and checksums[fname] in str(err.value) and "delete" in str(err.value)


def test_published_checksums_reject_fake_files(tmp_path):
    _write_mnist_like(tmp_path / "mnist")
    with pytest.raises(ValueError, match="f68b3c2dcbeaaa9fbdd348bbdeb94873"):
        load_dataset("mnist", root=tmp_path, download=False)


@pytest.mark.parametrize("name,fname", [("mnist", "train-labels-idx1-ubyte.gz"), ("cifar10", "cifar-10-python.tar.gz")])
def test_missing_file_without_download(name, fname, tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("download=False must not touch the network")

    monkeypatch.setattr(data, "_download", no_network)
    if name == "mnist":
        _write_mnist_like(tmp_path / name)
        (tmp_path / name / fname).unlink()
    with pytest.raises(FileNotFoundError) as err:
        load_dataset(name, root=tmp_path, download=False)
    msg = str(err.value)
    assert fname in msg and str(tmp_path / name) in msg and "RPBOOK_DATA" in msg and "Colab" in msg
    assert "train-images-idx3-ubyte.gz" not in msg  # only the file that is really missing


def test_offline_download_gives_one_clean_error(tmp_path, monkeypatch):
    calls = []

    def offline(url, dest, timeout=30.0):
        calls.append(url)
        raise OSError("Network is unreachable")

    monkeypatch.setattr(data, "_download", offline)
    monkeypatch.setenv("RPBOOK_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("fashion-mnist")
    msg = str(err.value)
    assert "train-images-idx3-ubyte.gz" in msg and str(tmp_path / "fashion-mnist") in msg
    assert "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/train-images-idx3-ubyte.gz" in msg
    assert "Network is unreachable" in msg and len(calls) == 1
    assert not [p for p in (tmp_path / "fashion-mnist").iterdir()]  # no partial files left behind


def test_download_writes_verified_files(tmp_path, monkeypatch):
    source = tmp_path / "source" / "mnist"
    _write_mnist_like(source)
    checksums = _checksums(source)
    mirrors = []

    def fake_download(url, dest, timeout=30.0):
        mirrors.append(url)
        if url.startswith("https://ossci"):
            raise OSError("HTTP Error 503")  # the first mirror is down: fall back to the second
        Path(dest).write_bytes((source / url.rsplit("/", 1)[-1]).read_bytes())

    monkeypatch.setattr(data, "_download", fake_download)
    ds = load_dataset("mnist", root=tmp_path / "cache", checksums=checksums)
    assert len(ds.x_train) + len(ds.x_val) == 20
    assert sorted(p.name for p in (tmp_path / "cache" / "mnist").iterdir()) == sorted(checksums)
    assert any(u.startswith("http://yann.lecun.com") for u in mirrors)


def test_download_with_wrong_checksum_saves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_download", lambda url, dest, timeout=30.0: Path(dest).write_bytes(b"<html>"))
    with pytest.raises(ValueError, match="cifar-10-python.tar.gz.*md5 c58f30108f718f92721af3b95e74349a"):
        load_dataset("cifar10", root=tmp_path)
    assert not list((tmp_path / "cifar10").iterdir())


def test_bad_idx_magic(tmp_path):
    folder = tmp_path / "mnist"
    _write_mnist_like(folder)
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(_idx_bytes(2049, np.zeros((10, 28, 28), np.uint8)))
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz.*magic number 2049.*2051"):
        load_dataset("mnist", root=tmp_path, download=False, checksums=_checksums(folder))


# --------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("kwargs,needle", [
    ({"name": "foo"}, "'foo'"),
    ({"name": "digits", "val_fraction": 1.0}, "1.0"),
    ({"name": "digits", "val_fraction": -0.1}, "-0.1"),
    ({"name": "digits", "n_train": 0}, "got 0"),
    ({"name": "digits", "n_train": 10**6}, "1000000"),
    ({"name": "digits", "seed": -1}, "-1"),
    ({"name": "digits", "in_dim": 3}, "in_dim"),
    ({"name": "teacher", "hidden": (4, 0)}, "got 0"),
    ({"name": "mnist", "checksums": {"train.gz": "0" * 32}}, "train.gz"),
])
def test_bad_inputs_raise_value_error_naming_the_value(kwargs, needle, tmp_path):
    name = kwargs.pop("name")
    with pytest.raises(ValueError) as err:
        load_dataset(name, root=tmp_path, download=False, **kwargs)
    assert needle in str(err.value)


def test_unknown_name_lists_the_allowed_names():
    with pytest.raises(ValueError) as err:
        load_dataset("foo")
    assert all(n in str(err.value) for n in DATASET_NAMES)
