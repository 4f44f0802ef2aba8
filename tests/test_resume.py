"""Safe and exact resume: checkpoints load without running code, refuse another run, and continue bit for bit."""
import dataclasses
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from rpbook.cli import main
from rpbook.dst import SET, RigL
from rpbook.masks import mask_model
from rpbook.pruning import GradualMagnitudePruning, iterative_magnitude_pruning
from rpbook.train import Callback, TrainConfig, fit

CFG = TrainConfig(epochs=3, batch_size=25, lr=0.05, seed=3)
CLI = ["train", "--model", "mlp", "--dataset", "digits", "--epochs", "2", "--n-train", "100", "--no-progress",
       "--device", "cpu", "--hidden", "32,16"]


def toy_data(n=250, d=12, classes=4):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g)
    y = (x @ torch.randn(d, classes, generator=g)).argmax(1)
    return SimpleNamespace(name="toy", x_train=x[:200], y_train=y[:200], x_val=x[200:225], y_val=y[200:225],
                           x_test=x[225:], y_test=y[225:], task="classification")


def sparse_net(density=0.3):
    """A fresh process's model: same seed, same weights and mask. Dropout draws from the global RNG."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 4))
    return model, mask_model(model, density, "erk", seed=0)


class Interrupt(Exception):
    pass


class StopAfter(Callback):
    """Interrupts at the end of an epoch, before that epoch's checkpoint: the run stops after epoch ``k - 1``."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, state):
        if state.epoch + 1 == self.epoch:
            raise Interrupt


def run_and_resume(tmp_path, make_callbacks, density=0.3, stop=2):
    """(uninterrupted, resumed) as (history, state_dict, masks, callbacks) after stopping at epoch ``stop``."""
    results = []
    model, masking = sparse_net(density)
    callbacks = make_callbacks()
    torch.manual_seed(11)  # the global stream dropout draws from
    hist = fit(model, toy_data(), CFG, masking=masking, callbacks=callbacks, progress=False, device="cpu")
    results.append((hist, model.state_dict(), masking.masks, callbacks))

    model, masking = sparse_net(density)
    torch.manual_seed(11)
    with pytest.raises(Interrupt):
        fit(model, toy_data(), CFG, masking=masking, callbacks=make_callbacks() + [StopAfter(stop)], progress=False,
            device="cpu", checkpoint_dir=tmp_path)
    model, masking = sparse_net(density)  # a new process: fresh model, fresh mask, fresh callbacks, other RNG state
    torch.manual_seed(999)
    callbacks = make_callbacks()
    hist = fit(model, toy_data(), CFG, masking=masking, callbacks=callbacks, progress=False, device="cpu",
               checkpoint_dir=tmp_path, resume=True)
    results.append((hist, model.state_dict(), masking.masks, callbacks))
    return results


def assert_identical(full, resumed):
    (h1, w1, m1, c1), (h2, w2, m2, c2) = full, resumed
    assert [r["train_loss"] for r in h2.epochs] == [r["train_loss"] for r in h1.epochs]
    assert h2.epochs == h1.epochs and h2.test == h1.test
    for k in w1:
        assert torch.equal(w1[k], w2[k]), k
    for k in m1:
        assert torch.equal(m1[k], m2[k]), k
    for a, b in zip(c1, c2):
        assert a.state_dict() == b.state_dict()


@pytest.mark.parametrize("method", ["static", "set", "rigl", "gmp"])
def test_resumed_run_equals_uninterrupted_bit_for_bit(method, tmp_path):
    # update_every 4 with 8 steps per epoch: the masks change in every epoch before and after the interruption
    make = {
        "static": lambda: [],
        "set": lambda: [SET(update_every=4, end=0.9, seed=5)],
        "rigl": lambda: [RigL(update_every=4, end=0.9)],
        "gmp": lambda: [GradualMagnitudePruning(0.1, start=0.1, end=0.9, every=4)],
    }[method]
    full, resumed = run_and_resume(tmp_path, make, density=1.0 if method == "gmp" else 0.3)
    if method in ("set", "rigl", "gmp"):
        assert len(full[3][0].events) >= 4  # the mask really moved, also after the interruption (8 steps per epoch)
    assert_identical(full, resumed)


def test_resumed_imp_equals_uninterrupted(tmp_path):
    cfg = dataclasses.replace(CFG, epochs=2)

    def levels(**kwargs):
        model, masking = sparse_net(1.0)
        torch.manual_seed(11)
        out = iterative_magnitude_pruning(model, toy_data(), cfg, [0.5], masking=masking, rewind_step=3,
                                          device="cpu", **kwargs)
        return out, model.state_dict()

    full, full_weights = levels()
    # interrupted in level 1 after its first epoch: level 0 done, the rewind snapshot only in level 0's checkpoint
    with pytest.raises(Interrupt):
        levels(checkpoint_dir=tmp_path, callbacks_factory=lambda lv: [StopAfter(2)] if lv == 1 else [])
    torch.manual_seed(999)
    resumed, resumed_weights = levels(checkpoint_dir=tmp_path, resume=True)
    assert [(lv.test_loss, lv.test_accuracy, lv.history) for lv in resumed] == \
        [(lv.test_loss, lv.test_accuracy, lv.history) for lv in full]
    for a, b in zip(full, resumed):
        assert all(torch.equal(a.masks[k], b.masks[k]) for k in a.masks)
    assert all(torch.equal(full_weights[k], resumed_weights[k]) for k in full_weights)


class Payload:
    """Unpickling this would create ``path``: the test that nothing in a checkpoint runs."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_malicious_checkpoint_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    torch.save({"fingerprint": Payload(marker), "epoch": 1}, ckpt / "checkpoint.pt")
    model, masking = sparse_net()
    with pytest.raises(ValueError) as err:
        fit(model, toy_data(), CFG, masking=masking, progress=False, device="cpu", checkpoint_dir=ckpt, resume=True)
    message = str(err.value)
    assert str(ckpt / "checkpoint.pt") in message and "not a genuine rpbook checkpoint" in message
    assert "\n" not in message
    assert not marker.exists()


def test_genuine_checkpoint_holds_only_plain_data(tmp_path):
    model, masking = sparse_net()
    fit(model, toy_data(), dataclasses.replace(CFG, epochs=1), masking=masking, callbacks=[SET(update_every=4)],
        progress=False, device="cpu", checkpoint_dir=tmp_path)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["callbacks"][0]["class"] == "SET" and ckpt["callbacks"][0]["state"]["events"]
    assert isinstance(ckpt["rng"]["torch"], torch.Tensor)


@pytest.mark.parametrize("bytes_", [b"", b"\x80\x02garbage", b"PK\x03\x04truncated zip"])
def test_damaged_checkpoint_is_a_value_error_naming_the_file(bytes_, tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(bytes_)
    model, masking = sparse_net()
    with pytest.raises(ValueError, match=r"cannot read checkpoint .*checkpoint\.pt"):
        fit(model, toy_data(), CFG, masking=masking, progress=False, device="cpu", checkpoint_dir=tmp_path, resume=True)


def test_api_refuses_to_overwrite_and_to_resume_nothing(tmp_path):
    model, masking = sparse_net()
    with pytest.raises(ValueError, match=r"cannot resume: checkpoint_dir .*missing' does not exist"):
        fit(model, toy_data(), CFG, masking=masking, progress=False, device="cpu",
            checkpoint_dir=tmp_path / "missing", resume=True)
    fit(model, toy_data(), dataclasses.replace(CFG, epochs=1), masking=masking, progress=False, device="cpu",
        checkpoint_dir=tmp_path)
    before = (tmp_path / "checkpoint.pt").read_bytes()
    model, masking = sparse_net()
    with pytest.raises(ValueError, match="already holds a checkpoint of an earlier run; resume it"):
        fit(model, toy_data(), dataclasses.replace(CFG, epochs=1), masking=masking, progress=False, device="cpu",
            checkpoint_dir=tmp_path)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before
    # another DST schedule, or another mask, is another run
    model, masking = sparse_net()
    with pytest.raises(ValueError, match=r"differs in callbacks \(\[\] in the checkpoint, \[\{'class': 'SET'"):
        fit(model, toy_data(), dataclasses.replace(CFG, epochs=1), masking=masking, callbacks=[SET()], progress=False,
            device="cpu", checkpoint_dir=tmp_path, resume=True)
    model, masking = sparse_net(density=0.5)
    with pytest.raises(ValueError, match=r"differs in masks_at_start"):
        fit(model, toy_data(), dataclasses.replace(CFG, epochs=1), masking=masking, progress=False, device="cpu",
            checkpoint_dir=tmp_path, resume=True)


def test_cli_checkpoint_folder_rules(tmp_path, capsys):
    ckpt = tmp_path / "ckpt"
    assert main(CLI + ["--checkpoint-dir", str(ckpt), "--density", "0.1"]) == 0
    capsys.readouterr()
    # rerunning without --resume would overwrite it
    assert main(CLI + ["--checkpoint-dir", str(ckpt), "--density", "0.1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "already holds a checkpoint; add --resume to continue that run, or give another --checkpoint-dir" in err
    assert "\n" not in err
    # --resume on a misspelled folder says so instead of starting from scratch
    assert main(CLI + ["--checkpoint-dir", str(tmp_path / "ckpy"), "--resume", "--density", "0.1"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"--resume: the checkpoint folder '{tmp_path / 'ckpy'}' does not exist; check the path" in err
    assert not (tmp_path / "ckpy").exists()


@pytest.mark.parametrize("change, field", [
    (["--density", "0.5"], "run.density (0.8 in the checkpoint, 0.5 now)"),
    (["--rule", "uniform"], "run.rule ('erk' in the checkpoint, 'uniform' now)"),
    (["--init", "dense"], "run.init ('unit-scaled' in the checkpoint, 'dense' now)"),
    (["--dense-first"], "run.dense_first (False in the checkpoint, True now)"),
    (["--dense-last"], "run.dense_last (False in the checkpoint, True now)"),
    (["--repair"], "run.repair (False in the checkpoint, 'swap' now)"),
    (["--n-train", "120"], "data.n_train (100 in the checkpoint, 120 now)"),
    (["--seed", "1"], "config.seed (0 in the checkpoint, 1 now)"),
])
def test_cli_resume_with_another_run_is_refused_naming_the_field(change, field, tmp_path_factory, capsys):
    ckpt = tmp_path_factory.getbasetemp() / "cli-resume-mismatch"
    if not (ckpt / "checkpoint.pt").exists():
        assert main(CLI + ["--checkpoint-dir", str(ckpt), "--density", "0.8"]) == 0
    # argparse keeps the last of a repeated option: `change` overrides the original run's value
    assert main(CLI + ["--density", "0.8", "--checkpoint-dir", str(ckpt), "--resume"] + change) == 2
    err = capsys.readouterr().err.strip()
    assert "was written for a different run: it differs in " + field in err, err
    assert "\n" not in err
