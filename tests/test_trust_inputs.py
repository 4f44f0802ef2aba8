"""Every input checked before work starts: one-line errors (CLI exit 2) or ValueError (API), damaged caches rebuilt."""
import hashlib
import os
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from rpbook import data as data_module
from rpbook.cli import main
from rpbook.config import MAX_SEED, check_seed, check_seeds
from rpbook.masks import mask_model
from rpbook.train import TrainConfig, evaluate, fit

DRY = ["train", "--dry-run", "--model", "mlp", "--dataset", "digits", "--device", "cpu", "--no-progress"]


def toy_data(n=250, d=12, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = (x @ torch.randn(d, classes, generator=g)).argmax(1)
    return SimpleNamespace(name="toy", x_train=x[:200], y_train=y[:200], x_val=x[200:225], y_val=y[200:225],
                           x_test=x[225:], y_test=y[225:], task="classification")


def net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 4))


def one_line_exit_2(args, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rpbook: error: ") and "\n" not in err, err
    return err


# --------------------------------------------------------------------------- API: silent wrong answers


@pytest.mark.parametrize("batch_size", [-1, 0, 2.5, True])
def test_evaluate_refuses_a_bad_batch_size(batch_size):
    d = toy_data()
    with pytest.raises(ValueError, match=f"batch_size must be an integer >= 1, got {batch_size!r}"):
        evaluate(net(), d.x_test, d.y_test, batch_size=batch_size)


def test_fit_refuses_the_masking_of_another_model():
    model_a, model_b = net(0), net(1)
    masking_a = mask_model(model_a, 0.3, "erk", seed=0)
    with pytest.raises(ValueError, match="masking belongs to another model"):
        fit(model_b, toy_data(), TrainConfig(epochs=1), masking=masking_a, progress=False, device="cpu")


@pytest.mark.parametrize("value", [2.0, float("nan"), -1.0, 0.5])
def test_set_mask_accepts_only_0_and_1(value):
    model = net()
    masking = mask_model(model, 0.3, "erk", seed=0)
    mask = torch.ones(16, 12)
    mask[0, 0] = value
    with pytest.raises(ValueError, match="mask for layer '0' must contain only 0 and 1"):
        masking.set_mask("0", mask)
    with pytest.raises(ValueError, match="must be a tensor"):
        masking.set_mask("0", [[1.0] * 12] * 16)


def test_api_errors_are_value_errors():
    d = toy_data()
    with pytest.raises(ValueError, match="data must be an rpbook Dataset"):
        fit(net(), None, TrainConfig(epochs=1), progress=False, device="cpu")
    with pytest.raises(ValueError, match="config must be a TrainConfig"):
        fit(net(), d, {"epochs": 1}, progress=False, device="cpu")
    with pytest.raises(ValueError, match="x and y must be tensors"):
        evaluate(net(), d.x_test.tolist(), d.y_test)
    with pytest.raises(ValueError, match="same number of examples, got 25 and 24"):
        evaluate(net(), d.x_test, d.y_test[:-1])
    with pytest.raises(ValueError, match=r"class labels must be in 0\.\.3 \(the model has 4 outputs\), got labels 1\.\.7"):
        evaluate(net(), d.x_test, d.y_test * 2 + 1)  # was an IndexError from cross_entropy
    with pytest.raises(ValueError, match=r"the model cannot take these inputs of shape \(10,\) per example"):
        fit(net(), toy_data(d=10), TrainConfig(epochs=1), progress=False, device="cpu")  # was a RuntimeError
    with pytest.raises(ValueError, match="resume must be True or False"):
        fit(net(), d, TrainConfig(epochs=1), progress=False, device="cpu", checkpoint_dir="x", resume="yes")


# --------------------------------------------------------------------------- late or unclear failures


def test_seeds_above_the_documented_maximum_are_refused(capsys):
    assert check_seed(MAX_SEED) == 2**32 - 1
    for bad in (MAX_SEED + 1, 2**63, 10**20):
        with pytest.raises(ValueError, match=rf"got {bad} \(allowed: 0 to 4294967295 = 2\*\*32 - 1\)"):
            check_seed(bad)
    with pytest.raises(ValueError, match=r"got 1099511627776 \(allowed: 0 to 4294967295"):
        check_seeds([0, 2**40])
    err = one_line_exit_2(DRY + ["--seed", "200000000000000"], capsys)
    assert "seed must be a non-negative integer, got 200000000000000 (allowed: 0 to 4294967295" in err


def test_the_largest_seed_trains(tmp_path):
    hist = fit(net(), toy_data(), TrainConfig(epochs=1, seed=MAX_SEED), progress=False, device="cpu")
    assert np.isfinite(hist.test["loss"])


@pytest.mark.parametrize("args, message", [
    (["--width", "1e6"], "parameters (width 1e+06), more than the 1,000,000,000 allowed"),
    (["--width", "1e300"], "the model is too large to build (width 1e+300)"),
    (["--width", "inf"], "--width must be a finite number, got 'inf'"),
    (["--depth", "100000"], "depth must be an integer in [0, 1000], got 100000"),
    (["--hidden", ","], "--hidden must list at least one layer size"),
    (["--weight-decay", "1e308"], "weight_decay must be in [0, 1], got 1e+308"),
    (["--output", ""], "--output must name a file such as run.json, got ''"),
    (["--output", "/proc/run.json"], "cannot write to the folder '/proc'"),
    (["--checkpoint-dir", "__FILE__"], "is a file, not a folder"),
])
def test_cli_refuses_before_any_work(args, message, tmp_path, capsys):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    args = [str(a_file) if a == "__FILE__" else a for a in args]
    err = one_line_exit_2(DRY + args, capsys)
    assert message in err, err


def test_width_bound_holds_in_the_api_before_allocating():
    from rpbook.experiments import sparse_run

    run = sparse_run.SparseRun(model="mlp", dataset="digits", width=1e6)
    with pytest.raises(ValueError, match="parameters allowed|more than the 1,000,000,000"):
        sparse_run.check_model_size(run, (1, 8, 8), 10)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_cli_refuses_an_unwritable_output_folder(tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        assert "cannot write to the folder" in one_line_exit_2(DRY + ["--output", str(folder / "run.json")], capsys)
    finally:
        folder.chmod(0o700)


def test_output_is_checked_before_training(tmp_path, capsys, monkeypatch):
    from rpbook.experiments import sparse_run

    monkeypatch.setattr(sparse_run, "fit", lambda *a, **k: (_ for _ in ()).throw(AssertionError("trained")))
    one_line_exit_2(["train", "--dataset", "digits", "--output", ""], capsys)
    one_line_exit_2(["train", "--dataset", "digits", "--output", "/proc/run.json"], capsys)


def test_checkpoint_dir_that_is_a_file_fails_before_training(tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        fit(net(), toy_data(), TrainConfig(epochs=1), progress=False, device="cpu", checkpoint_dir=a_file)


def test_batchnorm_with_a_last_batch_of_one_trains():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 4))
    d = toy_data()
    d.x_train, d.y_train = d.x_train[:33], d.y_train[:33]  # 32 + 1: BatchNorm cannot normalise the lone example
    hist = fit(model, d, TrainConfig(epochs=2, batch_size=32), progress=False, device="cpu")
    assert [r["step"] for r in hist.epochs] == [1, 2]  # the batch of one sits out
    assert np.isfinite(hist.test["loss"])


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_data_is_reported_as_such(value):
    d = toy_data()
    d.x_train = d.x_train.clone()
    d.x_train[3, 2] = value
    with pytest.raises(ValueError, match=r"the data are not finite: x_train holds 1 NaN/inf value\(s\)") as err:
        fit(net(), d, TrainConfig(epochs=1), progress=False, device="cpu")
    assert "learning rate" not in str(err.value)


# --------------------------------------------------------------------------- the MNIST-1D cache


def small_mnist1d(data_seed):
    g = np.random.default_rng(data_seed)
    arrays = (g.normal(size=(60, 40)), g.integers(0, 10, 60), g.normal(size=(20, 40)), g.integers(0, 10, 20))
    for a in arrays:
        a.flags.writeable = False
    return arrays


@pytest.fixture
def fake_generator(monkeypatch):
    """MNIST-1D's generator replaced by a small one, counting its calls (the cache logic is what is tested)."""
    calls = []

    def generate(data_seed):
        calls.append(data_seed)
        return small_mnist1d(data_seed)

    monkeypatch.setattr(data_module, "_generate_mnist1d", generate)
    data_module._mnist1d_arrays.cache_clear()
    yield calls
    data_module._mnist1d_arrays.cache_clear()


def cache_file(root):
    (path,) = (root / "mnist1d").glob("*.npz")
    return path


def rewrite(path, arrays, *, checksum=True):
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())
    if checksum:  # a well-formed file with a matching checksum: only the content checks can catch it
        path.with_name(path.name + ".sha256").write_text(hashlib.sha256(buf.getvalue()).hexdigest())


def test_cache_has_a_checksum_and_is_used_when_intact(tmp_path, fake_generator):
    first = data_module._mnist1d_arrays(42, str(tmp_path / "mnist1d"))
    path = cache_file(tmp_path)
    assert path.with_name(path.name + ".sha256").read_text().strip() == hashlib.sha256(path.read_bytes()).hexdigest()
    data_module._mnist1d_arrays.cache_clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = data_module._mnist1d_arrays(42, str(tmp_path / "mnist1d"))
    assert fake_generator == [42] and all(np.array_equal(a, b) for a, b in zip(first, again))


@pytest.mark.parametrize("damage, reason", [
    ("tamper", "SHA-256 does not match"),
    ("no-checksum", "cannot read it or its checksum file"),
    ("truncate", "SHA-256 does not match"),
    ("float-labels", "wrong dtypes"),
    ("labels-out-of-range", "labels outside 0..9"),
    ("nan", "non-finite inputs"),
    ("shapes", "wrong shapes"),
    ("missing-key", "it lacks y_test"),
])
def test_damaged_cache_is_rebuilt_with_a_warning(damage, reason, tmp_path, fake_generator):
    good = data_module._mnist1d_arrays(42, str(tmp_path / "mnist1d"))
    path = cache_file(tmp_path)
    x, y, xt, yt = (np.array(a) for a in good)
    if damage == "tamper":
        raw = bytearray(path.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        path.write_bytes(bytes(raw))
    elif damage == "no-checksum":
        path.with_name(path.name + ".sha256").unlink()
    elif damage == "truncate":
        path.write_bytes(path.read_bytes()[:100])
    else:
        changed = {"float-labels": dict(y=y.astype(np.float32)), "labels-out-of-range": dict(y=y + 10),
                   "nan": dict(x=np.where(x > 1, np.nan, x)), "shapes": dict(x=x[:, :5].reshape(-1)),
                   "missing-key": {}}[damage]
        arrays = {"x": x, "y": y, "x_test": xt, "y_test": yt, **changed}
        if damage == "missing-key":
            del arrays["y_test"]
        rewrite(path, arrays)
    data_module._mnist1d_arrays.cache_clear()
    with pytest.warns(UserWarning, match="MNIST-1D cache .* is damaged") as record:
        rebuilt = data_module._mnist1d_arrays(42, str(tmp_path / "mnist1d"))
    assert str(path) in str(record[0].message) and reason in str(record[0].message)
    assert fake_generator == [42, 42]
    assert all(np.array_equal(a, b) for a, b in zip(good, rebuilt))
    # and the rebuilt cache is intact again
    data_module._mnist1d_arrays.cache_clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data_module._mnist1d_arrays(42, str(tmp_path / "mnist1d"))
    assert fake_generator == [42, 42]
