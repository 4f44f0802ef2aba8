"""fit / evaluate: determinism, resume, checkpoints, gradient norms, callbacks, bad input."""
import dataclasses
import math
import os
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from rpbook.init import initialize_
from rpbook.masks import mask_model
from rpbook.models import build_model
from rpbook.train import Callback, TrainConfig, evaluate, fit, lr_at, make_scheduler, masked_gradient_norm


def toy_data(n=300, d=12, classes=4, seed=0, task="classification"):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    w = torch.randn(d, classes, generator=g)
    y = (x @ w).argmax(1) if task == "classification" else (x @ w[:, :1])
    return SimpleNamespace(name="toy", x_train=x[:200], y_train=y[:200], x_val=x[200:250], y_val=y[200:250],
                           x_test=x[250:], y_test=y[250:], task=task, in_shape=(d,), num_classes=classes)


def sparse_model(seed=0, out=4):
    torch.manual_seed(seed)
    model = build_model("mlp", in_shape=(12,), num_classes=out, hidden=(32, 16))
    masking = mask_model(model, 0.3, "erk", seed=seed)
    initialize_(model, "unit-scaled", seed=seed)
    return model, masking


CFG = TrainConfig(epochs=4, batch_size=32, lr=0.05, seed=1)


def test_same_seed_gives_identical_history():
    data = toy_data()
    runs = []
    for _ in range(2):
        model, masking = sparse_model()
        runs.append(fit(model, data, CFG, masking=masking, progress=False, device="cpu"))
    assert runs[0].epochs == runs[1].epochs
    assert runs[0].test == runs[1].test
    model, masking = sparse_model()
    other = fit(model, data, dataclasses.replace(CFG, seed=2), masking=masking, progress=False, device="cpu")
    assert other.epochs != runs[0].epochs


def test_training_learns():
    data = toy_data()
    model, masking = sparse_model()
    hist = fit(model, data, dataclasses.replace(CFG, epochs=10), masking=masking, progress=False, device="cpu")
    assert hist.epochs[-1]["train_loss"] < hist.epochs[0]["train_loss"]
    assert hist.test["accuracy"] > 0.5  # chance is 0.25


class Interrupt(Exception):
    pass


class StopAfter(Callback):
    def __init__(self, epochs):
        self.epochs = epochs

    def on_epoch_end(self, state):
        if state.epoch + 1 == self.epochs:
            raise Interrupt


def test_resume_equals_uninterrupted_run(tmp_path):
    data = toy_data()
    model, masking = sparse_model()
    full = fit(model, data, CFG, masking=masking, progress=False, device="cpu")
    full_weights = {k: v.clone() for k, v in model.state_dict().items()}

    model, masking = sparse_model()
    with pytest.raises(Interrupt):
        fit(model, data, CFG, masking=masking, progress=False, device="cpu", checkpoint_dir=tmp_path, callbacks=[StopAfter(2)])
    assert (tmp_path / "checkpoint.pt").exists()
    # a fresh process would rebuild the model from scratch
    model, masking = sparse_model(seed=0)
    resumed = fit(model, data, CFG, masking=masking, progress=False, device="cpu", checkpoint_dir=tmp_path, resume=True)
    assert resumed.epochs == full.epochs
    assert resumed.test == full.test
    for k, v in model.state_dict().items():
        assert torch.equal(v, full_weights[k]), k
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_checkpoint_of_a_different_config_is_refused(tmp_path):
    data = toy_data()
    model, masking = sparse_model()
    fit(model, data, dataclasses.replace(CFG, epochs=1), masking=masking, progress=False, device="cpu", checkpoint_dir=tmp_path)
    model, masking = sparse_model()
    with pytest.raises(ValueError, match=r"different run: it differs in config\.lr \(0\.05 in the checkpoint, 0\.1 now\)"):
        fit(model, data, dataclasses.replace(CFG, epochs=1, lr=0.1), masking=masking, progress=False, device="cpu",
            checkpoint_dir=tmp_path, resume=True)


def test_failed_checkpoint_write_keeps_the_old_one(tmp_path, monkeypatch):
    from rpbook import train

    data = toy_data()
    model, masking = sparse_model()
    with pytest.raises(Interrupt):  # a checkpoint after epoch 1 of 2
        fit(model, data, dataclasses.replace(CFG, epochs=2), masking=masking, progress=False, device="cpu",
            checkpoint_dir=tmp_path, callbacks=[StopAfter(2)])
    before = (tmp_path / "checkpoint.pt").read_bytes()

    def broken_save(obj, fh):
        fh.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(train.torch, "save", broken_save)
    model, masking = sparse_model()
    with pytest.raises(OSError, match="disk full"):
        fit(model, data, dataclasses.replace(CFG, epochs=2), masking=masking, progress=False, device="cpu",
            checkpoint_dir=tmp_path, resume=True)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before
    assert os.listdir(tmp_path) == ["checkpoint.pt"]


def test_logged_gradient_norm_equals_direct_computation():
    data = toy_data()
    model, masking = sparse_model()
    seen = []

    class Grab(Callback):
        def on_after_backward(self, state):
            if state.step == 0:
                direct = torch.sqrt(sum((m.weight.grad ** 2).sum() for m in model.modules() if isinstance(m, nn.Linear)))
                seen.append(float(direct))
                # the logged norm is the masked one: no gradient outside the mask
                for name, mask in masking.masks.items():
                    assert torch.all(dict(model.named_modules())[name].weight.grad[~mask] == 0)

    hist = fit(model, data, dataclasses.replace(CFG, epochs=1, grad_norm_every=2), masking=masking,
               callbacks=[Grab()], progress=False, device="cpu")
    assert hist.grad_norms[0]["step"] == 0
    assert hist.grad_norms[0]["total"] == pytest.approx(seen[0], rel=1e-6)
    assert [g["step"] for g in hist.grad_norms] == [0, 2, 4, 6]


def test_callbacks_are_called_in_order():
    calls = []

    class Log(Callback):
        def on_train_begin(self, s): calls.append("begin")
        def on_step_end(self, s): calls.append("step")
        def on_epoch_end(self, s): calls.append("epoch")
        def on_train_end(self, s): calls.append("end")

    model, masking = sparse_model()
    fit(model, toy_data(), dataclasses.replace(CFG, epochs=2, batch_size=100), masking=masking, callbacks=[Log()],
        progress=False, device="cpu")
    assert calls == ["begin", "step", "step", "epoch", "step", "step", "epoch", "end"]


def test_regression_task_uses_mse_and_no_accuracy():
    data = toy_data(task="regression")
    model, masking = sparse_model(out=1)
    hist = fit(model, data, dataclasses.replace(CFG, optimizer="adam", lr=1e-2), masking=masking, progress=False, device="cpu")
    assert hist.test["accuracy"] is None and hist.epochs[-1]["train_acc"] is None
    assert hist.epochs[-1]["train_loss"] < hist.epochs[0]["train_loss"]


def test_evaluate_accuracy_by_hand():
    model = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    out = evaluate(model, x, torch.tensor([0, 1, 1]), device="cpu")
    assert out["accuracy"] == pytest.approx(2 / 3) and out["n"] == 3


def test_schedules():
    cfg = TrainConfig(lr=1.0, schedule="step", milestones=(0.5, 0.75), gamma=0.1)
    assert [lr_at(s, 100, cfg) for s in (0, 49, 50, 74, 75, 99)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    cos = TrainConfig(lr=1.0, schedule="cosine")
    assert lr_at(0, 100, cos) == 1.0 and lr_at(50, 100, cos) == pytest.approx(0.5) and lr_at(100, 100, cos) == pytest.approx(0)


def _hand_lr(step, total, config):
    """The per-step learning rate as fit computed it by hand before torch's scheduler (the stored results' rates)."""
    if config.schedule == "cosine":
        return 0.5 * config.lr * (1 + math.cos(math.pi * step / max(1, total)))
    if config.schedule == "step":
        return config.lr * config.gamma ** sum(step >= m * total for m in config.milestones)
    return config.lr


class LrLog(Callback):
    def __init__(self):
        self.rates = []

    def on_after_backward(self, state):  # the rate the coming optimizer step uses
        self.rates.append((state.step, state.optimizer.param_groups[0]["lr"]))


@pytest.mark.parametrize("schedule, lr", [("cosine", 0.1), ("cosine", 0.05), ("cosine", 0.037), ("step", 0.1),
                                          ("step", 0.3), ("constant", 0.05)])
def test_scheduler_gives_the_hand_computed_rates_bit_for_bit(schedule, lr):
    config = TrainConfig(epochs=3, batch_size=32, lr=lr, schedule=schedule, milestones=(0.3, 0.7), gamma=0.1)
    total = 997
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = make_scheduler(opt, config, total)
    for step in range(total):
        if scheduler.last_epoch != step:
            scheduler.step()
        assert opt.param_groups[0]["lr"] == _hand_lr(step, total, config), step  # exact, not approx
        opt.step()
    # inside fit every step trains at the hand-computed rate too
    data, log = toy_data(), LrLog()
    model = sparse_model()[0]
    fit(model, data, config, callbacks=[log], progress=False, device="cpu")
    steps = len(log.rates)
    assert [r for _, r in log.rates] == [_hand_lr(s, steps, config) for s, _ in log.rates]


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("epochs", 0, "epochs must be >= 1, got 0"),
        ("epochs", 2.5, "epochs must be an integer, got 2.5"),
        ("lr", 0, "lr must be > 0, got 0"),
        ("lr", float("nan"), "lr must be finite"),
        ("batch_size", 0, "batch_size must be >= 1"),
        ("optimizer", "rmsprop", "unknown optimizer 'rmsprop'; allowed: sgd, adam, adamw"),
        ("schedule", "linear", "unknown schedule 'linear'; allowed: cosine, step, constant"),
        ("label_smoothing", 1.0, "label_smoothing must be in"),
        ("seed", -1, "seed must be a non-negative integer"),
    ],
)
def test_bad_config_is_named(field, value, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TrainConfig(**{field: value})


def test_masked_gradient_norm_without_grads_is_zero():
    total, per_layer = masked_gradient_norm(nn.Sequential(nn.Linear(2, 2)))
    assert total == 0.0 and per_layer == {"0": 0.0}


def test_tqdm_disable_env_hides_bars(monkeypatch):
    from rpbook.config import progress_enabled

    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert not progress_enabled(True)
    monkeypatch.setenv("TQDM_DISABLE", "0")
    assert progress_enabled(True) and not progress_enabled(False)


def test_disagreement_and_ensemble_known_answers():
    from rpbook.train import disagreement, ensemble_accuracy, mean_pairwise_disagreement

    def one_hot(labels, confidence=0.9):
        p = torch.full((len(labels), 3), (1 - confidence) / 2, dtype=torch.float64)
        p[torch.arange(len(labels)), torch.tensor(labels)] = confidence
        return p

    a, b, c = one_hot([0, 1, 2, 0]), one_hot([0, 1, 1, 1]), one_hot([0, 2, 2, 1])
    assert disagreement(a, a) == 0.0
    assert disagreement(a, b) == 0.5  # examples 2 and 3 differ
    assert mean_pairwise_disagreement([a, b, c]) == pytest.approx((0.5 + 0.5 + 0.5) / 3)
    y = torch.tensor([0, 1, 2, 0])
    # votes per example: (0,0,0), (1,1,2), (2,1,2), (0,1,1): the average softmax follows the majority
    assert ensemble_accuracy([a, b, c], y) == 0.75
    assert ensemble_accuracy([a, a], y) == 1.0  # identical members: the ensemble is the member
    with pytest.raises(ValueError, match="at least two networks"):
        mean_pairwise_disagreement([a])
    with pytest.raises(ValueError, match="same shape"):
        disagreement(a, one_hot([0, 1]))
    with pytest.raises(ValueError, match="labels"):
        ensemble_accuracy([a], torch.tensor([0, 1]))


def test_predict_proba_sums_to_one_and_keeps_the_mode():
    from rpbook.train import predict_proba

    model = nn.Sequential(nn.Linear(4, 3))
    model.train()
    x = torch.randn(10, 4)
    p = predict_proba(model, x, batch_size=3)
    assert p.shape == (10, 3) and p.dtype == torch.float64
    assert torch.allclose(p.sum(1), torch.ones(10, dtype=torch.float64))
    assert torch.equal(p.argmax(1), model(x).argmax(1))
    assert model.training  # the mode is restored
    with pytest.raises(ValueError, match="batch_size"):
        predict_proba(model, x, batch_size=0)
