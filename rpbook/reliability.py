"""More than accuracy: calibration, adversarial robustness and out-of-distribution detection of a classifier.

Chapter 3 (*Training random sparse networks*), section *More than accuracy*:
Liu et al. report that random sparse networks also match (or beat) dense ones
in uncertainty estimation, adversarial robustness and out-of-distribution
detection. This module measures the three on any trained classifier:

- **calibration**: the expected calibration error over equal-width
  confidence bins (:func:`expected_calibration_error`) and the bins of a
  reliability diagram (:func:`reliability_bins`);
- **adversarial robustness**: accuracy under the L∞ attacks FGSM
  (:func:`fgsm`) and PGD (:func:`pgd`), via :func:`accuracy_under_attack`;
- **out-of-distribution (OOD) detection**: the area under the ROC curve
  (:func:`auroc`) of the maximum softmax probability
  (:func:`max_softmax_probability`) of in-distribution test inputs against
  OOD inputs made offline from the data itself (:func:`ood_inputs`).

:func:`reliability_metrics` runs them all on one model and returns a JSON-able
dict. The formulas are in the appendix *Formulas and notation*, section
*Calibration, attacks and OOD detection*.
"""
from __future__ import annotations

import math
import numbers
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ATTACKS", "OOD_KINDS", "accuracy_under_attack", "auroc", "expected_calibration_error", "fgsm",
           "max_softmax_probability", "ood_inputs", "pgd", "predict_proba", "reliability_bins",
           "reliability_metrics"]

#: The OOD sets :func:`ood_inputs` builds from the data set itself (no download): ``noise`` draws Gaussian
#: inputs with the training split's per-feature mean and standard deviation; ``shuffled`` permutes the
#: features of every test input at random (the same values, no shape).
OOD_KINDS: tuple[str, ...] = ("noise", "shuffled")


def _check_eps(eps: object) -> float:
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not math.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    return float(eps)


def _check_bins(n_bins: object) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, numbers.Integral) or n_bins < 1:
        raise ValueError(f"n_bins must be an integer >= 1, got {n_bins!r}")
    return int(n_bins)


# ----------------------------------------------------------------------------- predictions


def _check_batch_size(batch_size: object) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")


@torch.no_grad()
def predict_proba(model: nn.Module, x: torch.Tensor, *, batch_size: int = 1024) -> torch.Tensor:
    """Softmax class probabilities of ``model`` on ``x`` in eval mode, float32, on the CPU (chapter 3).

    Float32 is what this module's stored metrics were computed from; chapter 5's ensembles average float64
    probabilities (:func:`rpbook.train.predict_proba`).
    """
    _check_batch_size(batch_size)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        out = [F.softmax(model(x[i:i + batch_size].to(device)).float(), dim=1).cpu()
               for i in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


def max_softmax_probability(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The largest softmax probability per input, the OOD score of Hendrycks and Gimpel (chapter 3).

    High means "looks like training data"; the detector flags inputs whose
    score falls below a threshold.
    """
    return predict_proba(model, x).max(dim=1).values


# ----------------------------------------------------------------------------- calibration


def reliability_bins(confidence: torch.Tensor, correct: torch.Tensor, n_bins: int = 15) -> dict:
    """Equal-width confidence bins of a reliability diagram (chapter 3, *More than accuracy*).

    Bin ``b`` (``b = 1 … n_bins``) holds the predictions with confidence in
    ``((b - 1) / n_bins, b / n_bins]`` (the first bin also takes 0).

    Returns
    -------
    dict
        ``edges`` (``n_bins + 1`` floats), and per bin ``count``,
        ``confidence`` (mean confidence, ``None`` for an empty bin) and
        ``accuracy`` (fraction correct, ``None`` for an empty bin).
    """
    n_bins = _check_bins(n_bins)
    conf = torch.as_tensor(confidence, dtype=torch.float64).flatten()
    hit = torch.as_tensor(correct).flatten().to(torch.float64)
    if conf.shape != hit.shape:
        raise ValueError(f"confidence and correct must have the same length, got {conf.numel()} and {hit.numel()}")
    if conf.numel() and (conf.min() < 0 or conf.max() > 1 or not torch.isfinite(conf).all()):
        raise ValueError("confidence values must lie in [0, 1]")
    index = torch.clamp(torch.ceil(conf * n_bins).long() - 1, 0, n_bins - 1)
    count = torch.bincount(index, minlength=n_bins)
    conf_sum = torch.bincount(index, weights=conf, minlength=n_bins)
    hit_sum = torch.bincount(index, weights=hit, minlength=n_bins)
    return {
        "edges": [b / n_bins for b in range(n_bins + 1)],
        "count": [int(c) for c in count],
        "confidence": [float(s / c) if c else None for s, c in zip(conf_sum, count)],
        "accuracy": [float(s / c) if c else None for s, c in zip(hit_sum, count)],
    }


def expected_calibration_error(confidence: torch.Tensor, correct: torch.Tensor, n_bins: int = 15) -> float:
    """Expected calibration error over ``n_bins`` equal-width confidence bins (chapter 3, *More than accuracy*).

    ``ECE = sum_b |B_b| / n * |acc(B_b) - conf(B_b)|``: the gap between how
    often the model is right and how sure it says it is, averaged over bins
    weighted by their size. 0 for a perfectly calibrated model.
    """
    bins = reliability_bins(confidence, correct, n_bins)
    n = sum(bins["count"])
    if n == 0:
        raise ValueError("expected_calibration_error needs at least one prediction")
    return math.fsum(c / n * abs(a - f) for c, a, f in zip(bins["count"], bins["accuracy"], bins["confidence"]) if c)


# ----------------------------------------------------------------------------- adversarial attacks


def _input_gradient_sign(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    loss = F.cross_entropy(model(x).float(), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    return grad.sign()


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """Fast gradient sign method (Goodfellow et al. 2015): ``x + eps * sign(grad_x L)`` (chapter 3).

    One L∞ step of size ``eps`` up the cross-entropy ``L`` of the true labels
    ``y``. ``eps`` is in the units of the model's input (the book's inputs are
    standardised, so ``eps = 0.1`` is a tenth of a standard deviation per
    feature). The model's train/eval mode is left as it was; call it in eval mode.
    """
    eps = _check_eps(eps)
    if eps == 0:
        return x.detach().clone()
    return (x + eps * _input_gradient_sign(model, x, y)).detach()


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, steps: int = 10,
        step_size: float | None = None) -> torch.Tensor:
    """Projected gradient descent on the loss, L∞ ball of radius ``eps`` (Madry et al. 2018) (chapter 3).

    ``steps`` sign-gradient steps of ``step_size`` (default ``2.5 * eps / steps``,
    Madry et al.'s choice), each followed by projection onto
    ``[x - eps, x + eps]``. It starts at ``x`` itself (no random start), so the
    attack is deterministic. With one step of size ``eps`` it is :func:`fgsm`.
    """
    eps = _check_eps(eps)
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    alpha = 2.5 * eps / steps if step_size is None else _check_eps(step_size)
    x0 = x.detach()
    if eps == 0:
        return x0.clone()
    adv = x0.clone()
    for _ in range(int(steps)):
        adv = adv + alpha * _input_gradient_sign(model, adv, y)
        adv = torch.max(torch.min(adv, x0 + eps), x0 - eps).detach()
    return adv


#: The attacks :func:`accuracy_under_attack` knows, by name.
ATTACKS: dict[str, Callable[..., torch.Tensor]] = {"fgsm": fgsm, "pgd": pgd}


def accuracy_under_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, attack: str = "pgd",
                          batch_size: int = 1024, **options: object) -> float:
    """Fraction of ``x`` still classified as ``y`` after the L∞ ``attack`` of radius ``eps`` (chapter 3).

    ``attack`` is ``"fgsm"`` or ``"pgd"`` (``options`` go to :func:`pgd`, e.g.
    ``steps``). The model is put in eval mode for the attack and restored after.
    """
    if attack not in ATTACKS:
        raise ValueError(f"unknown attack {attack!r}; allowed: {', '.join(ATTACKS)}")
    _check_batch_size(batch_size)
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"x and y must be non-empty and of the same length, got {len(x)} and {len(y)}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    try:
        for i in range(0, len(x), batch_size):
            xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
            adv = ATTACKS[attack](model, xb, yb, eps, **options)
            with torch.no_grad():
                correct += int((model(adv).argmax(dim=1) == yb).sum())
    finally:
        model.train(was_training)
    return correct / len(x)


# ----------------------------------------------------------------------------- out-of-distribution detection


def auroc(positive: Sequence[float] | torch.Tensor, negative: Sequence[float] | torch.Tensor) -> float:
    """Area under the ROC curve of scores that should be higher for ``positive`` (chapter 3, *More than accuracy*).

    Equal to the probability that a random positive scores above a random
    negative, ties counting one half (the Mann–Whitney U statistic divided by
    ``n_pos * n_neg``). 1: every positive above every negative; 0.5: no better
    than chance. For OOD detection the positives are the in-distribution inputs.
    """
    pos = torch.as_tensor(positive, dtype=torch.float64).flatten()
    neg = torch.as_tensor(negative, dtype=torch.float64).flatten()
    if pos.numel() == 0 or neg.numel() == 0:
        raise ValueError(f"auroc needs at least one positive and one negative score, got {pos.numel()} and {neg.numel()}")
    if not (torch.isfinite(pos).all() and torch.isfinite(neg).all()):
        raise ValueError("auroc scores must be finite")
    scores = torch.cat([pos, neg])
    # average ranks (1-based) with ties sharing the mean of their ranks
    order = torch.argsort(scores, stable=True)
    sorted_scores = scores[order]
    _, inverse, counts = torch.unique_consecutive(sorted_scores, return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).to(torch.float64)
    mean_rank = ends - (counts.to(torch.float64) - 1) / 2
    ranks = torch.empty_like(scores)
    ranks[order] = mean_rank[inverse]
    n_pos, n_neg = pos.numel(), neg.numel()
    u = float(ranks[:n_pos].sum()) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)


def ood_inputs(kind: str, x_train: torch.Tensor, x_test: torch.Tensor, *, seed: int = 0) -> torch.Tensor:
    """As many out-of-distribution inputs as ``x_test`` has, built offline from the data (chapter 3).

    ``noise``: Gaussian inputs with the per-feature mean and standard deviation
    of ``x_train`` (every feature has the right first two moments, but there is
    no signal). ``shuffled``: each test input with its features permuted at
    random (the same values, in no meaningful order). ``seed`` fixes the draw.
    """
    if kind not in OOD_KINDS:
        raise ValueError(f"unknown OOD kind {kind!r}; allowed: {', '.join(OOD_KINDS)}")
    gen = torch.Generator().manual_seed(int(seed))
    flat_test = x_test.reshape(len(x_test), -1).float()
    if kind == "noise":
        flat_train = x_train.reshape(len(x_train), -1).double()
        mean, std = flat_train.mean(dim=0), flat_train.std(dim=0)
        draw = torch.randn(flat_test.shape, generator=gen, dtype=torch.float64)
        return (mean + std * draw).float().reshape(x_test.shape)
    perms = torch.argsort(torch.rand(flat_test.shape, generator=gen), dim=1)
    return torch.gather(flat_test, 1, perms).reshape(x_test.shape)


# ----------------------------------------------------------------------------- all of it on one model


def reliability_metrics(model: nn.Module, data: object, *, epsilons: Sequence[float], pgd_steps: int = 10,
                        n_bins: int = 15, ood: Sequence[str] = OOD_KINDS, ood_seed: int = 0) -> dict:
    """Calibration, robustness and OOD detection of a trained classifier on ``data``'s test split (chapter 3).

    ``data`` is an :class:`rpbook.data.Dataset` (``x_train``, ``x_test``,
    ``y_test``). Returns a JSON-able dict: ``test_acc``, ``ece`` and ``nll``
    (mean negative log-likelihood), ``mean_confidence``, ``reliability``
    (:func:`reliability_bins`), ``fgsm_acc`` and ``pgd_acc`` (one accuracy per
    entry of ``epsilons``), and ``ood_auroc`` (one AUROC of the maximum
    softmax probability per OOD kind, test inputs as positives).
    """
    x, y = data.x_test, data.y_test
    probs = predict_proba(model, x)
    conf, pred = probs.max(dim=1)
    correct = pred == y
    nll = float(-torch.log(probs[torch.arange(len(y)), y].double().clamp_min(1e-45)).mean())
    out = {
        "test_acc": float(correct.double().mean()),
        "ece": expected_calibration_error(conf, correct, n_bins),
        "nll": nll,
        "mean_confidence": float(conf.double().mean()),
        "reliability": reliability_bins(conf, correct, n_bins),
        "fgsm_acc": [accuracy_under_attack(model, x, y, e, attack="fgsm") for e in epsilons],
        "pgd_acc": [accuracy_under_attack(model, x, y, e, attack="pgd", steps=pgd_steps) for e in epsilons],
        "ood_auroc": {},
    }
    for kind in ood:
        scores = max_softmax_probability(model, ood_inputs(kind, data.x_train, x, seed=ood_seed))
        out["ood_auroc"][kind] = auroc(conf, scores)
    return out
