"""Known answers of rpbook.reliability: ECE, reliability bins, FGSM / PGD and AUROC (chapter 3, *More than accuracy*)."""
import functools
import math

import pytest
import torch
from torch import nn

from rpbook import reliability as rel


# ----------------------------------------------------------------------------- calibration


def test_ece_of_a_perfectly_calibrated_toy_is_zero():
    # 20 predictions at confidence 0.75 of which 15 are right, 8 at 0.25 of which 2 are right
    conf = torch.tensor([0.75] * 20 + [0.25] * 8)
    correct = torch.tensor([1] * 15 + [0] * 5 + [1] * 2 + [0] * 6, dtype=torch.bool)
    assert rel.expected_calibration_error(conf, correct, n_bins=15) == pytest.approx(0.0, abs=1e-12)


def test_ece_known_value_and_bins():
    # always sure (confidence 1.0) but right half the time: ECE = |0.5 - 1| = 0.5
    conf = torch.ones(10)
    correct = torch.tensor([1, 0] * 5, dtype=torch.bool)
    assert rel.expected_calibration_error(conf, correct) == pytest.approx(0.5)
    # two bins of different size: weights |B_b| / n
    conf = torch.tensor([0.95] * 3 + [0.55])
    correct = torch.tensor([True, True, True, False])
    expected = 3 / 4 * abs(1.0 - 0.95) + 1 / 4 * abs(0.0 - 0.55)
    assert rel.expected_calibration_error(conf, correct, n_bins=10) == pytest.approx(expected)
    bins = rel.reliability_bins(conf, correct, n_bins=10)
    assert bins["count"][9] == 3 and bins["count"][5] == 1 and sum(bins["count"]) == 4
    assert bins["edges"][0] == 0 and bins["edges"][-1] == 1 and len(bins["edges"]) == 11
    assert bins["accuracy"][0] is None and bins["confidence"][9] == pytest.approx(0.95)


def test_bin_edges_are_right_closed():
    # 0.2 lies on an edge with 5 bins: it belongs to bin (0, 0.2], the first; 0 goes to the first bin too
    bins = rel.reliability_bins(torch.tensor([0.0, 0.2, 0.2000001, 1.0], dtype=torch.float64), torch.ones(4, dtype=torch.bool), n_bins=5)
    assert bins["count"] == [2, 1, 0, 0, 1]


@pytest.mark.parametrize("conf, correct, n_bins, message", [
    (torch.tensor([1.2]), torch.tensor([True]), 15, "must lie in"),
    (torch.tensor([0.5, 0.5]), torch.tensor([True]), 15, "same length"),
    (torch.tensor([0.5]), torch.tensor([True]), 0, "n_bins must be an integer >= 1"),
])
def test_calibration_bad_inputs_are_named(conf, correct, n_bins, message):
    with pytest.raises(ValueError, match=message):
        rel.expected_calibration_error(conf, correct, n_bins)


# ----------------------------------------------------------------------------- AUROC


def test_auroc_known_answers():
    assert rel.auroc([0.9, 0.8, 0.7], [0.1, 0.2]) == 1.0          # separable
    assert rel.auroc([0.1, 0.2], [0.9, 0.8, 0.7]) == 0.0          # separable the wrong way
    assert rel.auroc([0.5, 0.5], [0.5]) == 0.5                    # all tied
    assert rel.auroc([0.3, 0.9], [0.5]) == 0.5                    # one pair above, one below
    with pytest.raises(ValueError, match="at least one positive"):
        rel.auroc([], [0.1])


def test_auroc_matches_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score

    gen = torch.Generator().manual_seed(0)
    pos = torch.randint(0, 8, (300,), generator=gen).double() / 7 + 0.1
    neg = torch.randint(0, 8, (200,), generator=gen).double() / 7
    labels = [1] * 300 + [0] * 200
    assert rel.auroc(pos, neg) == pytest.approx(roc_auc_score(labels, torch.cat([pos, neg]).numpy()), abs=1e-12)


# ----------------------------------------------------------------------------- attacks


@functools.lru_cache(maxsize=None)
def _trained_toy(seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A small MLP trained to high accuracy on two noisy Gaussian blobs in 10 dimensions (trained once, shared)."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (400,), generator=gen)
    x = torch.randn(400, 10, generator=gen) * 0.7 + (2 * y[:, None] - 1).float() * 0.5
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(200):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval(), x, y


def test_zero_eps_attacks_leave_accuracy_unchanged():
    model, x, y = _trained_toy()
    clean = float((model(x).argmax(1) == y).float().mean())
    assert clean > 0.85
    for attack in ("fgsm", "pgd"):
        assert rel.accuracy_under_attack(model, x, y, 0.0, attack=attack) == pytest.approx(clean)


def test_attacks_stay_in_the_ball_and_fgsm_is_one_full_pgd_step():
    model, x, y = _trained_toy()
    eps = 0.2
    adv = rel.pgd(model, x, y, eps, steps=7)
    assert (adv - x).abs().max() <= eps + 1e-6
    one = rel.fgsm(model, x, y, eps)
    assert torch.allclose((one - x).abs(), torch.full_like(x, eps), atol=1e-6)  # every feature moves by exactly eps
    assert torch.equal(rel.pgd(model, x, y, eps, steps=1, step_size=eps), one)


def test_pgd_is_at_least_as_strong_as_fgsm_and_both_hurt():
    model, x, y = _trained_toy()
    clean = rel.accuracy_under_attack(model, x, y, 0.0)
    for eps in (0.1, 0.3, 0.6):
        f = rel.accuracy_under_attack(model, x, y, eps, attack="fgsm")
        p = rel.accuracy_under_attack(model, x, y, eps, attack="pgd", steps=10)
        assert p <= f <= clean
    assert rel.accuracy_under_attack(model, x, y, 0.6, attack="pgd") < clean - 0.2


def test_attack_bad_inputs_are_named():
    model, x, y = _trained_toy()
    with pytest.raises(ValueError, match="unknown attack 'cw'"):
        rel.accuracy_under_attack(model, x, y, 0.1, attack="cw")
    with pytest.raises(ValueError, match="eps must be a finite number >= 0"):
        rel.fgsm(model, x, y, -0.1)
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        rel.pgd(model, x, y, 0.1, steps=0)


# ----------------------------------------------------------------------------- OOD sets and the whole report


def test_ood_inputs_keep_what_they_promise():
    gen = torch.Generator().manual_seed(1)
    x_train = torch.randn(5000, 6, generator=gen) * torch.arange(1, 7) + torch.arange(6)
    x_test = torch.randn(300, 6, generator=gen)
    noise = rel.ood_inputs("noise", x_train, x_test, seed=3)
    assert noise.shape == x_test.shape
    assert torch.allclose(noise.mean(0), x_train.mean(0), atol=0.5)
    assert torch.allclose(noise.std(0), x_train.std(0), rtol=0.15)
    shuffled = rel.ood_inputs("shuffled", x_train, x_test, seed=3)
    assert torch.equal(shuffled.sort(dim=1).values, x_test.sort(dim=1).values)  # same values per input
    assert not torch.equal(shuffled, x_test)
    assert torch.equal(rel.ood_inputs("noise", x_train, x_test, seed=3), noise)  # seeded
    with pytest.raises(ValueError, match="unknown OOD kind 'svhn'"):
        rel.ood_inputs("svhn", x_train, x_test)


def test_reliability_metrics_of_a_trained_toy():
    model, x, y = _trained_toy()

    class Data:
        x_train, x_test, y_test = x, x, y

    out = rel.reliability_metrics(model, Data, epsilons=(0.0, 0.3), pgd_steps=5)
    assert out["fgsm_acc"][0] == out["pgd_acc"][0] == out["test_acc"]
    assert out["pgd_acc"][1] <= out["fgsm_acc"][1] < out["test_acc"]
    assert 0 <= out["ece"] <= 1 and math.isfinite(out["nll"])
    assert sum(out["reliability"]["count"]) == len(y)
    assert set(out["ood_auroc"]) == set(rel.OOD_KINDS)
    # a confident blob classifier scores Gaussian noise of the data's statistics lower than the data
    assert out["ood_auroc"]["noise"] > 0.5


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True])
def test_bad_batch_size_is_named_before_any_work(batch_size):
    model, x, y = _trained_toy()
    with pytest.raises(ValueError, match=r"batch_size must be an integer >= 1, got"):
        rel.predict_proba(model, x, batch_size=batch_size)
    with pytest.raises(ValueError, match=r"batch_size must be an integer >= 1, got"):
        rel.accuracy_under_attack(model, x, y, 0.1, attack="fgsm", batch_size=batch_size)
