"""Gradient-flow measurements (chapter 5, Evci et al. 2022)."""
import copy
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rpbook.gradflow import (
    GradientNormLogger, fixed_batch, gradient_norm, hessian_gradient_product, masked_gradients,
    signal_propagation,
)
from rpbook.init import initialize_
from rpbook.masks import mask_model
from rpbook.train import TrainConfig, fit


def toy_data(n=260, d=10, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = (x @ torch.randn(d, classes, generator=g)).argmax(1)
    return SimpleNamespace(name="toy", x_train=x[:200], y_train=y[:200], x_val=x[200:230], y_val=y[200:230],
                           x_test=x[230:], y_test=y[230:], task="classification", in_shape=(d,), num_classes=classes)


def sparse_net(density=0.3, seed=0, widths=(10, 24, 16, 3)):
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers += [nn.Linear(a, b), nn.Tanh()]
    model = nn.Sequential(*layers[:-1])
    masking = mask_model(model, density, "uniform", seed=seed)
    initialize_(model, "unit-scaled", seed=seed)
    with torch.no_grad():  # nonzero biases so that they matter for the gradient
        for m in model:
            if isinstance(m, nn.Linear):
                m.bias.normal_(0, 0.1, generator=torch.Generator().manual_seed(seed + 7))
    return model, masking


def test_gradient_norm_equals_a_direct_computation():
    data = toy_data()
    model, masking = sparse_net()
    x, y = data.x_train[:64], data.y_train[:64]
    got = gradient_norm(model, x, y)
    # Direct: an unmasked copy, plain backward, multiply by the mask by hand.
    plain = copy.deepcopy(model)
    for m in plain.modules():
        if hasattr(m, "weight_mask"):
            del m.weight_mask
    F.cross_entropy(plain(x), y).backward()
    masks = masking.masks
    direct = {}
    for (name, m) in plain.named_children():
        if isinstance(m, nn.Linear):
            direct[name] = float((m.weight.grad * masks[name]).norm())
    assert set(got["layers"]) == set(direct)
    for name in direct:
        assert got["layers"][name] == pytest.approx(direct[name], rel=1e-5)
    assert got["total"] == pytest.approx(math.sqrt(sum(v * v for v in direct.values())), rel=1e-5)
    # The dense gradient (RigL's grow signal) is larger: the mask removes gradient.
    with masking.unmasked_gradients():
        assert gradient_norm(model, x, y, masked=False)["total"] > got["total"]


def test_gradient_norm_leaves_grads_and_mode_alone():
    data = toy_data()
    model, _ = sparse_net()
    model.eval()
    gradient_norm(model, data.x_train[:32], data.y_train[:32])
    assert all(p.grad is None for p in model.parameters())
    assert not model.training


def test_masked_gradients_are_zero_outside_the_mask():
    data = toy_data()
    model, masking = sparse_net(density=0.2)
    grads = masked_gradients(model, data.x_train[:50], data.y_train[:50])
    for name, mask in masking.masks.items():
        assert torch.all(grads[name][~mask] == 0)
        assert grads[name][mask].abs().sum() > 0


def test_logger_measures_at_init_and_every_n_steps():
    data = toy_data()
    model, masking = sparse_net()
    batch = fixed_batch(data, 100)
    at_init = gradient_norm(model, *batch)["total"]
    logger = GradientNormLogger(every=5, batch=batch)
    cfg = TrainConfig(epochs=2, batch_size=40, lr=0.05, seed=0)
    fit(model, data, cfg, masking=masking, callbacks=[logger], progress=False, device="cpu")
    steps = logger.steps()
    assert steps[0] == 0 and logger.records[0]["total"] == pytest.approx(at_init)
    assert steps == sorted(set(steps))
    assert all(s % 5 == 0 or s == 10 for s in steps[1:]) and steps[-1] == 10
    assert logger.records[-1]["total"] == pytest.approx(gradient_norm(model, *batch)["total"])
    clone = GradientNormLogger(every=5)
    clone.load_state_dict(logger.state_dict())
    assert clone.records == logger.records


def test_hessian_gradient_product_matches_finite_differences():
    torch.manual_seed(0)
    data = toy_data()
    model, masking = sparse_net()
    model.double()
    x, y = data.x_train[:80].double(), data.y_train[:80]
    hg = hessian_gradient_product(model, x, y)
    g = masked_gradients(model, x, y)
    eps = 1e-5
    layers = {n: m for n, m in model.named_children() if isinstance(m, nn.Linear)}

    def shifted(sign):
        with torch.no_grad():
            for n, m in layers.items():
                m.weight.add_(sign * eps * g[n].detach())
        out = {k: v.detach().clone() for k, v in masked_gradients(model, x, y).items()}
        with torch.no_grad():
            for n, m in layers.items():
                m.weight.sub_(sign * eps * g[n].detach())
        return out

    plus, minus = shifted(+1), shifted(-1)
    for n in layers:
        fd = (plus[n] - minus[n]) / (2 * eps)
        assert torch.allclose(hg[n], fd, rtol=1e-4, atol=1e-7)
        assert torch.all(hg[n][~masking.masks[n]] == 0)


def deep_relu_net(density, init, depth=6, width=200, seed=0):
    sizes = [width] * (depth + 1)
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    model = nn.Sequential(*layers[:-1])
    if density < 1:
        mask_model(model, density, "uniform", seed=seed)
    initialize_(model, init, seed=seed)
    return model


def test_dense_init_shrinks_signal_with_depth_and_sparse_init_does_not():
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(512, 200, generator=g), torch.randint(0, 200, (512,), generator=g)
    density = 0.1
    dense = signal_propagation(deep_relu_net(density, "dense"), x, y)
    unit = signal_propagation(deep_relu_net(density, "unit-scaled"), x, y)
    full = signal_propagation(deep_relu_net(1.0, "dense"), x, y)
    # Dense init: each layer multiplies the variance by about the density.
    ratios = [b / a for a, b in zip(dense["act_var"], dense["act_var"][1:])]
    assert all(0.3 * density < r < 3 * density for r in ratios)
    # Sparsity-aware init keeps the variance of the dense network at every depth.
    for u, f in zip(unit["act_var"], full["act_var"]):
        assert 0.5 < u / f < 2.0
    assert unit["grad_norm"] > 10 * dense["grad_norm"]
    assert len(unit["act_var_unit_cv"]) == len(unit["layers"]) == 6


def test_bad_input_is_rejected():
    model, _ = sparse_net()
    x = torch.randn(4, 10)
    with pytest.raises(ValueError, match="same positive number"):
        gradient_norm(model, x, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="every must be a positive integer"):
        GradientNormLogger(every=0)
    with pytest.raises(ValueError, match="offset"):
        fixed_batch(toy_data(), 10, offset=10_000)
    with pytest.raises(ValueError, match="no Conv2d/Linear"):
        gradient_norm(nn.Sequential(nn.ReLU()), x, torch.zeros(4, dtype=torch.long))


def test_measuring_leaves_batchnorm_statistics_alone():
    from rpbook.gradflow import gradient_norm, hessian_gradient_product, signal_propagation
    from rpbook.models import build_model

    model = build_model("resnet20", in_shape=(3, 32, 32), num_classes=10, width=0.25).train()
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    gradient_norm(model, x, y)
    signal_propagation(model, x, y)
    hessian_gradient_product(model, x, y)
    after = model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed == [] and model.training
