"""Sparsity-aware initialisation (appendix *Formulas and notation*, initialisations)."""
import pytest
import torch
from torch import nn

from rpbook.init import INIT_METHODS, fan_in_per_unit, initialize_
from rpbook.masks import apply_masks


def layer_with_varied_fan_in(n_in=400, n_out=200, seed=0):
    """A linear layer whose units keep between 4 and 400 inputs."""
    g = torch.Generator().manual_seed(seed)
    keep = torch.linspace(4, n_in, n_out).round().long()
    mask = torch.zeros(n_out, n_in, dtype=torch.bool)
    for i, k in enumerate(keep):
        mask[i, torch.randperm(n_in, generator=g)[:k]] = True
    layer = nn.Sequential(nn.Linear(n_in, n_out))
    apply_masks(layer, {"0": mask})
    return layer, mask


def preactivation_variance(layer, n=4000, seed=1):
    x = torch.randn(n, layer[0].in_features, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return layer(x).var(dim=0)


def test_unit_scaled_gives_every_unit_the_same_variance():
    layer, mask = layer_with_varied_fan_in()
    initialize_(layer, "unit-scaled", seed=0, gain=2.0)
    var = preactivation_variance(layer)
    # Var(sum_j w_ij x_j) = m_i * 2/m_i = 2 for every unit. Over units, the sample
    # variance scatters because of both w and x draws; a unit with m_i = 4 has
    # relative std sqrt(2/4) from its weights alone, so test the mean per fan-in
    # band, and that variance does not grow with fan-in (correlation ~ 0).
    fan_in = fan_in_per_unit(mask).float()
    low, high = var[fan_in < 100], var[fan_in > 300]
    assert low.mean().item() == pytest.approx(2.0, rel=0.25)
    assert high.mean().item() == pytest.approx(2.0, rel=0.1)
    corr = torch.corrcoef(torch.stack([fan_in, var]))[0, 1].item()
    assert abs(corr) < 0.25


def test_dense_init_shrinks_variance_with_kept_fan_in():
    layer, mask = layer_with_varied_fan_in()
    initialize_(layer, "dense", seed=0, gain=2.0)
    var = preactivation_variance(layer)
    fan_in = fan_in_per_unit(mask).float()
    expected = 2.0 * fan_in / 400  # m_i / fan_in of the He variance
    corr = torch.corrcoef(torch.stack([fan_in, var]))[0, 1].item()
    assert corr > 0.9
    assert (var / expected).median().item() == pytest.approx(1.0, rel=0.1)


def test_layer_scaled_corrects_the_mean_only():
    layer, mask = layer_with_varied_fan_in()
    initialize_(layer, "layer-scaled", seed=0, gain=2.0)
    var = preactivation_variance(layer)
    assert var.mean().item() == pytest.approx(2.0, rel=0.1)
    fan_in = fan_in_per_unit(mask).float()
    assert torch.corrcoef(torch.stack([fan_in, var]))[0, 1].item() > 0.9


@pytest.mark.parametrize("method", INIT_METHODS)
def test_masked_weights_stay_zero_and_seed_reproduces(method):
    layer, mask = layer_with_varied_fan_in(50, 20)
    initialize_(layer, method, seed=3)
    w1 = layer[0].weight.detach().clone()
    assert torch.all(w1[~mask] == 0)
    assert torch.all(layer[0].bias == 0)
    initialize_(layer, method, seed=3)
    assert torch.equal(w1, layer[0].weight)


def test_batchnorm_is_reset():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    with torch.no_grad():
        model[1].weight.fill_(3.0)
    initialize_(model, "dense", seed=0)
    assert torch.all(model[1].weight == 1) and torch.all(model[1].bias == 0)


@pytest.mark.parametrize("bad", ["kaiming", "", None, 3])
def test_unknown_init_is_named(bad):
    with pytest.raises(ValueError, match=r"unknown init .*dense, layer-scaled, unit-scaled"):
        initialize_(nn.Linear(2, 2), bad, seed=0)


def test_init_needs_a_seed_and_a_positive_gain():
    with pytest.raises(ValueError, match="seed"):
        initialize_(nn.Linear(2, 2), "dense")
    with pytest.raises(ValueError, match="gain"):
        initialize_(nn.Linear(2, 2), "dense", seed=0, gain=0)
