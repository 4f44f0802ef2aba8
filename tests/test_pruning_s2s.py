"""Chapter 7: pruning scores restricted to a source mask, pruning at init, layer collapse."""
import warnings

import pytest
import torch
from torch import nn

from rpbook.gradflow import hessian_gradient_product
from rpbook.masks import Masking, sample_masks
from rpbook.pruning import (PAI_METHODS, LayerCollapseWarning, check_layer_collapse, compute_scores,
                            layer_collapse, layer_quota_densities, prune_at_init, synflow_schedule)


def tiny_net(seed: int = 0, sizes=(5, 4, 3)) -> nn.Sequential:
    torch.manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def random_source(model: nn.Module, density: float, seed: int = 0) -> dict:
    return sample_masks(model, density, "uniform", seed=seed)


def tiny_batch(n: int = 8, d: int = 5, classes: int = 3, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randint(0, classes, (n,), generator=g)


def functional_loss(params, x, y, temperature=1.0):
    """The tiny net as an explicit function of its two weight matrices (biases fixed)."""
    (w1, b1), (w2, b2) = params
    out = torch.relu(x @ w1.T + b1) @ w2.T + b2
    return nn.functional.cross_entropy(out / temperature, y)


@pytest.fixture
def masked_tiny():
    model = tiny_net()
    masks = random_source(model, 0.5, seed=3)
    masking = Masking(model, masks)
    return model, masking, {"0": masks["0"], "2": masks["2"]}


def test_snip_matches_direct_gradient(masked_tiny):
    model, _, masks = masked_tiny
    x, y = tiny_batch()
    w1 = model[0].weight.detach().clone().requires_grad_(True)
    w2 = model[2].weight.detach().clone().requires_grad_(True)
    loss = functional_loss([(w1, model[0].bias.detach()), (w2, model[2].bias.detach())], x, y)
    g1, g2 = torch.autograd.grad(loss, [w1, w2])
    scores = compute_scores("snip", model, (x, y))
    torch.testing.assert_close(scores["0"], (w1 * g1).abs().detach() * masks["0"])
    torch.testing.assert_close(scores["2"], (w2 * g2).abs().detach() * masks["2"])
    assert (scores["0"][~masks["0"]] == 0).all() and (scores["2"][~masks["2"]] == 0).all()


@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_grasp_matches_explicit_hessian(masked_tiny, temperature):
    model, _, masks = masked_tiny
    x, y = tiny_batch()
    w = torch.cat([model[0].weight.detach().reshape(-1), model[2].weight.detach().reshape(-1)]).double()
    m = torch.cat([masks["0"].reshape(-1), masks["2"].reshape(-1)]).double()
    n1 = model[0].weight.numel()
    b1, b2 = model[0].bias.detach().double(), model[2].bias.detach().double()

    def f(theta):
        w1, w2 = theta[:n1].reshape(model[0].weight.shape), theta[n1:].reshape(model[2].weight.shape)
        return functional_loss([(w1, b1), (w2, b2)], x.double(), y, temperature)

    g = torch.autograd.functional.jacobian(f, w) * m
    hess = torch.autograd.functional.hessian(f, w)
    expected = w * (hess @ g) * m
    scores = compute_scores("grasp", model, (x, y), temperature=temperature)
    got = torch.cat([scores["0"].reshape(-1), scores["2"].reshape(-1)]).double()
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


def test_grasp_ranks_like_gradflow_hessian_gradient_product(masked_tiny):
    model, _, _ = masked_tiny
    x, y = tiny_batch()
    hg = hessian_gradient_product(model, x, y)
    scores = compute_scores("grasp", model, (x, y), temperature=1.0)
    for name in hg:
        # gradflow differentiates ½‖g‖², GraSP g·stopgrad(g): both gradients are H g
        torch.testing.assert_close(scores[name], (model.get_submodule(name).weight.detach() * hg[name]).cpu(),
                                   rtol=1e-4, atol=1e-7)


def test_synflow_matches_closed_form(masked_tiny):
    model, _, masks = masked_tiny
    a1 = (model[0].weight.detach() * masks["0"]).abs().double()
    a2 = (model[2].weight.detach() * masks["2"]).abs().double()
    c1, c2 = model[0].bias.detach().abs().double(), model[2].bias.detach().abs().double()
    # R = 1ᵀ(|W2|(|W1| 1 + |b1|) + |b2|): ∂R/∂|W1|ᵢⱼ = (1ᵀ|W2|)ᵢ, ∂R/∂|W2|ₖᵢ = (|W1| 1 + |b1|)ᵢ
    h = a1.sum(dim=1) + c1
    expected1 = a1 * a2.sum(dim=0)[:, None]
    expected2 = a2 * h[None, :]
    scores = compute_scores("synflow", model, in_shape=(5,))
    torch.testing.assert_close(scores["0"].double(), expected1, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(scores["2"].double(), expected2, rtol=1e-5, atol=1e-7)
    assert model[0].weight.min() < 0, "SynFlow must not change the model's signs"


def test_synflow_with_unit_weights_counts_paths():
    model = tiny_net(sizes=(6, 5, 4, 3))
    masks = random_source(model, 0.5, seed=7)
    with torch.no_grad():
        for m in model:
            if isinstance(m, nn.Linear):
                m.weight.fill_(1.0)
                m.bias.zero_()
    scores = compute_scores("synflow", model, in_shape=(6,), masks=masks)
    paths = layer_collapse(masks)["paths"]
    # each path has one weight in every layer, so every layer's scores add up to the path count
    for name in masks:
        assert float(scores[name].sum()) == pytest.approx(paths)


def test_random_scores_are_seeded_and_zero_outside_mask(masked_tiny):
    model, _, masks = masked_tiny
    a = compute_scores("random", model, seed=5)
    b = compute_scores("random", model, seed=5)
    c = compute_scores("random", model, seed=6)
    for name in masks:
        assert torch.equal(a[name], b[name]) and not torch.equal(a[name], c[name])
        assert (a[name][~masks[name]] == 0).all() and (a[name][masks[name]] > 0).all()


@pytest.mark.parametrize("method", PAI_METHODS)
@pytest.mark.parametrize("scope", ["global", "layer"])
def test_pruning_stays_inside_source_and_hits_the_density(method, scope):
    model = tiny_net(seed=2, sizes=(20, 30, 30, 4))
    source = random_source(model, 0.4, seed=4)
    Masking(model, source)
    x, y = tiny_batch(16, 20, 4)
    total = sum(m.numel() for m in source.values())
    for target in (0.2, 0.05):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LayerCollapseWarning)
            masks = prune_at_init(model, method, target, batch=(x, y), scope=scope, iterations=5)
        for name, m in masks.items():
            assert not (m & ~source[name]).any(), f"{method} revived a weight outside the source in {name}"
        kept = sum(int(m.sum()) for m in masks.values())
        if scope == "global":
            assert kept == round(target * total)
        else:
            quotas = layer_quota_densities(source, target)
            assert all(int(masks[n].sum()) == max(1, round(quotas[n] * masks[n].numel())) for n in masks)
            assert abs(kept - target * total) <= len(masks)
    assert torch.equal(model[0].weight_mask.bool(), source["0"]), "prune_at_init must not modify the model"


def test_explicit_source_masks_override_the_model():
    model = tiny_net(seed=3, sizes=(20, 30, 4))
    source = random_source(model, 0.3, seed=1)
    x, y = tiny_batch(16, 20, 4)
    for method in ("magnitude", "snip", "synflow-oneshot"):
        masks = prune_at_init(model, method, 0.1, batch=(x, y), source_masks=source, warn=False)
        assert all(not (masks[n] & ~source[n]).any() for n in masks)
    assert not hasattr(model[0], "weight_mask")


def test_layer_quotas_keep_the_source_ratios():
    model = tiny_net(sizes=(50, 40, 10))
    source = sample_masks(model, 0.5, "balanced", seed=0)
    quotas = layer_quota_densities(source, 0.1)
    ratios = {n: quotas[n] / float(source[n].float().mean()) for n in source}
    assert max(ratios.values()) == pytest.approx(min(ratios.values()))
    with pytest.raises(ValueError, match="above the source density"):
        layer_quota_densities(source, 0.9)


def test_synflow_schedule_is_exponential_and_ends_at_target():
    s = synflow_schedule(0.5, 0.005, 4)
    assert s[-1] == pytest.approx(0.005)
    ratios = [b / a for a, b in zip([0.5] + s, s)]
    assert max(ratios) == pytest.approx(min(ratios))
    with pytest.raises(ValueError, match="iterations"):
        synflow_schedule(0.5, 0.1, 0)


def test_collapse_detected_on_constructed_cases():
    # no empty layer, but fc2 only reads hidden unit 0, which has no input: no path survives
    fc1 = torch.zeros(3, 4, dtype=torch.bool)
    fc1[1, 2] = True
    fc2 = torch.zeros(2, 3, dtype=torch.bool)
    fc2[:, 0] = True
    report = layer_collapse({"fc1": fc1, "fc2": fc2})
    assert report["collapsed"] and report["cut_layer"] == "fc2" and report["empty_layers"] == []
    assert report["paths"] == 0
    with pytest.warns(LayerCollapseWarning, match="fc2"):
        check_layer_collapse({"fc1": fc1, "fc2": fc2})
    # an empty layer
    with pytest.warns(LayerCollapseWarning, match="keeps 0 of"):
        check_layer_collapse({"fc1": fc1, "fc2": torch.zeros(2, 3, dtype=torch.bool)})
    # a healthy chain: one path, no warning
    fc2[1, 1] = True
    with warnings.catch_warnings():
        warnings.simplefilter("error", LayerCollapseWarning)
        assert check_layer_collapse({"fc1": fc1, "fc2": fc2})["paths"] == 1


def test_conv_to_linear_chain_is_followed():
    conv = torch.zeros(2, 1, 3, 3, dtype=torch.bool)
    conv[0, 0, 1, 1] = True  # only channel 0 is alive
    fc = torch.zeros(3, 2 * 4, dtype=torch.bool)  # 2 channels × 4 positions after flatten
    fc[0, 5] = True  # reads channel 1: dead
    assert layer_collapse({"conv": conv, "fc": fc})["collapsed"]
    fc[1, 2] = True  # reads channel 0
    assert not layer_collapse({"conv": conv, "fc": fc})["collapsed"]


def test_global_magnitude_collapses_where_quotas_and_iterative_synflow_do_not():
    # The middle layer's weights are 100 times smaller than the others', so one global magnitude
    # threshold empties it first (the layer collapse of appendix *Formulas and notation*, pruning scores).
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 200), nn.ReLU(), nn.Linear(200, 200), nn.ReLU(), nn.Linear(200, 3))
    with torch.no_grad():
        model[2].weight.mul_(0.01)
    with pytest.warns(LayerCollapseWarning, match="'2' keeps 0 of"):
        prune_at_init(model, "magnitude", 0.02)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LayerCollapseWarning)
        prune_at_init(model, "magnitude", 0.02, scope="layer")
        prune_at_init(model, "synflow", 0.02, batch=(torch.randn(2, 4), torch.tensor([0, 1])), iterations=20)


def test_bad_inputs_raise():
    model = tiny_net()
    with pytest.raises(ValueError, match="unknown pruning-at-init method"):
        prune_at_init(model, "obd", 0.1)
    with pytest.raises(ValueError, match="batch"):
        compute_scores("snip", model)
    with pytest.raises(ValueError, match="temperature"):
        compute_scores("grasp", model, tiny_batch(), temperature=0)
    with pytest.raises(ValueError, match="in_shape"):
        compute_scores("synflow", model)
    with pytest.raises(ValueError, match="seed"):
        compute_scores("random", model, seed=-1)
    with pytest.raises(ValueError, match="masks is empty"):
        layer_collapse({})


def test_snip_and_grasp_refuse_a_regression_batch_unless_told():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 1))
    x, y = torch.randn(16, 6), torch.randn(16, 1)
    for method in ("snip", "grasp"):
        with pytest.raises(ValueError, match="task='regression'"):
            compute_scores(method, model, (x, y))
    scores = compute_scores("snip", model, (x, y), task="regression")
    w = model[2].weight.detach().clone().requires_grad_(True)
    out = torch.relu(x @ model[0].weight.T + model[0].bias) @ w.T + model[2].bias
    (g,) = torch.autograd.grad(nn.functional.mse_loss(out, y), [w])
    torch.testing.assert_close(scores["2"], (w * g).abs().detach())
    assert all(float(s.sum()) > 0 for s in scores.values())
    masks = prune_at_init(model, "snip", 0.2, batch=(x, y), task="regression", warn=False)
    assert all(int(m.sum()) > 0 for m in masks.values())


def test_collapse_of_a_network_with_shortcuts_is_unknown_not_claimed():
    from rpbook.models import build_model

    model = build_model("resnet20", in_shape=(3, 32, 32), num_classes=10, width=0.25)
    masks = sample_masks(model, 0.5, "uniform", seed=0)
    masks["layer3.0.conv2"] = torch.zeros_like(masks["layer3.0.conv2"])  # an empty residual branch
    report = layer_collapse(masks)
    assert report["collapsed"] is None and report["paths"] is None
    assert report["empty_layers"] == ["layer3.0.conv2"]
    with pytest.warns(LayerCollapseWarning, match="not checked"):
        check_layer_collapse(masks)


def test_target_at_the_nominal_source_density_keeps_the_source():
    from rpbook.models import build_model

    model = build_model("mlp", in_shape=(40,), num_classes=10, hidden=(256, 256))
    for rule in ("erk", "pyramidal", "uniform"):
        source = sample_masks(model, 0.3, rule, seed=0)
        kept = sum(int(m.sum()) for m in source.values())
        masks = prune_at_init(model, "magnitude", 0.3, source_masks=source, warn=False)
        assert sum(int(m.sum()) for m in masks.values()) == kept
    with pytest.raises(ValueError, match="above the source density"):
        prune_at_init(model, "magnitude", 0.31, source_masks=source, warn=False)


def test_iterative_synflow_per_layer_hits_the_one_shot_quotas():
    model = tiny_net(seed=2, sizes=(20, 30, 30, 4))
    source = random_source(model, 0.4, seed=4)
    quotas = layer_quota_densities(source, 0.05)
    masks = prune_at_init(model, "synflow", 0.05, in_shape=(20,), source_masks=source, scope="layer",
                          iterations=20, warn=False)
    assert {n: int(m.sum()) for n, m in masks.items()} == {
        n: max(1, round(quotas[n] * m.numel())) for n, m in masks.items()}


def test_scores_that_need_data_are_refused_up_front():
    from rpbook.data import load_dataset
    from rpbook.pruning import GradualMagnitudePruning, iterative_magnitude_pruning
    from rpbook.train import TrainConfig

    data = load_dataset("digits", seed=0, n_train=100)
    model = tiny_net(sizes=(64, 8, 10))
    for score in ("snip", "grasp", "synflow"):
        with pytest.raises(ValueError, match="cannot use"):
            iterative_magnitude_pruning(model, data, TrainConfig(epochs=1), [0.5], score=score)
    with pytest.raises(ValueError, match="synflow"):
        GradualMagnitudePruning(0.1, score="synflow")
    for bad in ((40.7,), (True,), 40, "40", ()):
        with pytest.raises(ValueError, match="in_shape"):
            prune_at_init(model, "synflow", 0.1, in_shape=bad)


# ----------------------------------------------------------------------------- STR and GraNet (chapter 7)


from test_pruning import toy_data  # noqa: E402  (the same toy classification problem as chapter 7's pruning tests)


def toy_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, 40), nn.ReLU(), nn.Linear(40, 24), nn.ReLU(), nn.Linear(24, 4))


def test_soft_threshold_shrinks_small_weights_to_exactly_zero():
    from rpbook.soft_threshold import soft_threshold

    w = torch.tensor([-0.5, -0.1, 0.0, 0.05, 0.2, 0.3])
    s = torch.logit(torch.tensor(0.2))  # threshold sigmoid(s) = 0.2
    out = soft_threshold(w, s)
    assert torch.allclose(out, torch.tensor([-0.3, 0.0, 0.0, 0.0, 0.0, 0.1]), atol=1e-6)
    assert int((out == 0).sum()) == 4  # exactly zero, not small
    # the gradient reaches w only where it survives, and s from every survivor (d/ds = -sigmoid'(s) sign(w))
    w.requires_grad_(True)
    s = s.clone().requires_grad_(True)
    soft_threshold(w, s).sum().backward()
    assert w.grad.tolist() == [1.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    assert float(s.grad) == pytest.approx(-0.2 * 0.8 * (-1 + 1), abs=1e-7)
    # |out| summed: each survivor pulls the same way, so d/ds = -sigmoid'(s) * (number of survivors) != 0
    s.grad = None
    soft_threshold(w, s).abs().sum().backward()
    assert float(s.grad) == pytest.approx(-0.2 * 0.8 * 2, rel=1e-5)


def test_str_layers_compute_the_effective_weight_and_respect_the_source():
    from rpbook.soft_threshold import THRESHOLD_PARAM, SoftThreshold, SoftThresholdLinear, soft_threshold

    model = toy_net()
    source = sample_masks(model, 0.3, "uniform", seed=1)
    masking = Masking(model, source)
    st = SoftThreshold(model, s_init=-1.5)
    first = model[0]
    assert isinstance(first, SoftThresholdLinear) and isinstance(first, nn.Linear)
    assert sum(1 for n, _ in model.named_parameters() if n.endswith(THRESHOLD_PARAM)) == 3
    with torch.no_grad():
        first.weight.add_(1.0)  # raw weights outside the source become nonzero (bypassing the Masking) ...
    x = torch.randn(5, 12)
    expected = nn.functional.linear(x, soft_threshold(first.weight * source["0"], first.str_threshold), first.bias)
    assert torch.allclose(first(x), expected)
    # ... but the source mask multiplies first: the effective weight stays zero outside it
    assert not (st.effective_masks()["0"] & ~source["0"]).any()
    with pytest.raises(ValueError, match="plain Linear and Conv2d"):
        SoftThreshold(model)
    for bad in (0.0, 3, float("nan"), True):
        with pytest.raises(ValueError, match="s_init"):
            SoftThreshold(toy_net(), s_init=bad)
    with pytest.raises(ValueError, match="threshold_decay"):
        SoftThreshold(toy_net(), threshold_decay=-0.1)
    with pytest.raises(ValueError, match="unknown: nope"):
        SoftThreshold(toy_net(), layers=["nope"])


def test_str_threshold_decay_makes_the_network_sparse_and_finalize_keeps_its_function():
    from rpbook.soft_threshold import THRESHOLD_PARAM, SoftThreshold
    from rpbook.train import TrainConfig, fit

    data = toy_data()
    config = TrainConfig(epochs=4, batch_size=24, lr=0.05, weight_decay=0.0, seed=0, amp=False)
    densities = {}
    for decay in (0.0, 0.5):
        model = toy_net()
        source = sample_masks(model, 0.5, "uniform", seed=2)
        masking = Masking(model, source)
        st = SoftThreshold(model, s_init=-6.0, threshold_decay=decay)
        fit(model, data, config, masking=masking, callbacks=[st], progress=False)
        assert len(st.trace) == config.epochs + 1 and st.trace[0]["epoch"] == 0
        densities[decay] = st.global_density()
        x = data.x_test
        with torch.no_grad():
            before = model(x)
        masks = st.finalize(masking)
        with torch.no_grad():
            after = model(x)
        assert torch.allclose(before, after, atol=1e-6)               # finalize keeps the function
        assert all(type(m) is nn.Linear for m in model if hasattr(m, "weight"))
        assert not any(n.endswith(THRESHOLD_PARAM) for n, _ in model.named_parameters())
        assert all(not (masks[n] & ~source[n]).any() for n in source)  # never leaves the source
        assert {n: bool(torch.equal(m, masking.masks[n])) for n, m in masks.items()} == {n: True for n in masks}
        with pytest.raises(ValueError, match="finalized already"):
            st.finalize()
    # without decay sigmoid(-6) = 0.0025 barely thresholds; decay pulls s up and prunes
    assert densities[0.0] > 0.45 and densities[0.5] < 0.8 * densities[0.0]


def test_density_trace_flops_is_the_trapezoid_rule():
    from rpbook.soft_threshold import density_trace_flops

    trace = [{"epoch": 0, "densities": {"a": 1.0, "b": 0.5}}, {"epoch": 1, "densities": {"a": 0.5, "b": 0.5}},
             {"epoch": 2, "densities": {"a": 0.5, "b": 0.0}}]
    assert density_trace_flops(trace, {"a": 100, "b": 10}) == pytest.approx([75 + 5, 50 + 2.5])
    with pytest.raises(ValueError, match="start and at least one epoch"):
        density_trace_flops(trace[:1], {"a": 1, "b": 1})


def test_drop_and_grow_grows_only_where_allowed():
    from rpbook.dst import drop_and_grow

    weight = torch.tensor([[0.1, 0.9, 0.0, 0.0, 0.5, 0.0]])
    mask = torch.tensor([[1, 1, 0, 0, 1, 0]], dtype=torch.bool)
    scores = torch.tensor([[0.0, 0.0, 9.0, 5.0, 0.0, 7.0]])
    allowed = torch.tensor([[1, 1, 0, 1, 1, 0]], dtype=torch.bool)
    after_drop, after_grow, k = drop_and_grow(weight, mask, scores, 1 / 3, allowed)
    assert k == 1 and after_drop.tolist() == [[False, True, False, False, True, False]]
    assert after_grow.tolist() == [[False, True, False, True, True, False]]  # 9 and 7 are not allowed
    _, free_grow, _ = drop_and_grow(weight, mask, scores, 1 / 3)
    assert free_grow[0, 2]
    # A layer that fills its source keeps its weights: nothing can move, so nothing is dropped (and zeroed).
    full = mask.clone()
    after_drop, after_grow, k = drop_and_grow(weight, full, scores, 1 / 3, allowed=full)
    assert k == 0 and after_drop.equal(full) and after_grow.equal(full)
    # One free position in the source: one weight moves, although the fraction asks for two.
    weight4 = torch.tensor([[0.1, 0.9, 0.0, 0.2, 0.5, 0.0]])
    mask4 = torch.tensor([[1, 1, 0, 1, 1, 0]], dtype=torch.bool)
    after_drop, after_grow, k = drop_and_grow(weight4, mask4, scores, 1 / 2, allowed=mask4 | torch.tensor(
        [[0, 0, 1, 0, 0, 0]], dtype=torch.bool))
    assert k == 1 and after_drop.tolist() == [[False, True, False, True, True, False]]
    assert after_grow.tolist() == [[False, True, True, True, True, False]]


class _ScheduleWatch:
    """After every step (GraNet's updates included): the kept count, and whether the masks stay in the source."""

    def __init__(self, source):
        from rpbook.train import Callback

        outer = self

        class Watch(Callback):
            def on_step_end(self, state):
                masks = state.masking.masks
                outer.rows.append({"step": state.step, "kept": sum(int(m.sum()) for m in masks.values()),
                                   "inside": all(not (masks[n] & ~source[n]).any() for n in source),
                                   "masks": {n: m.clone() for n, m in masks.items()}})

        self.rows, self.callback = [], Watch()


def test_granet_keeps_the_count_on_schedule_and_regrows_only_inside_the_source():
    from rpbook.dst import GraNet
    from rpbook.pruning import cubic_density
    from rpbook.train import TrainConfig, fit

    data = toy_data()
    model = toy_net()
    source = sample_masks(model, 0.5, "balanced", seed=0)
    masking = Masking(model, source)
    total = sum(m.numel() for m in source.values())
    start = sum(int(m.sum()) for m in source.values()) / total
    config = TrainConfig(epochs=4, batch_size=24, lr=0.05, seed=0, amp=False)  # 40 steps
    granet = GraNet(0.1, end=0.75, update_every=5, drop_fraction=0.5, seed=0)
    watch = _ScheduleWatch(source)
    fit(model, data, config, masking=masking, callbacks=[granet, watch.callback], progress=False)
    t1 = 30
    for row in watch.rows:
        assert row["inside"]
        if row["step"] % 5 == 0 and 0 < row["step"] <= t1:
            p = cubic_density(row["step"], start_step=0, end_step=t1, final_density=0.1, initial_density=start)
            assert row["kept"] == round(p * total)  # pruned to the schedule, and regrowth kept the count
    assert watch.rows[-1]["kept"] == round(0.1 * total)
    swapped = [e["swapped"] for e in granet.events]
    assert len(swapped) == 5 and all(s > 0 for s in swapped)  # regrowth happened at every update before the end
    # and it moved weights to positions they did not hold before (not only back to where they were dropped)
    grew = [any((b["masks"][n] & ~a["masks"][n]).any() for n in source) for a, b in zip(watch.rows, watch.rows[1:])]
    assert sum(grew) >= 3
    assert len(granet.trace) == config.epochs + 1
    assert granet.trace[-1]["densities"] == masking.layer_densities()
    # growing anywhere (the released GraNet) leaves the source at some point on this net
    model2 = toy_net()
    masking2 = Masking(model2, source)
    free = GraNet(0.1, end=0.75, update_every=5, drop_fraction=0.5, seed=0, grow_within_source=False)
    watch2 = _ScheduleWatch(source)
    fit(model2, data, config, masking=masking2, callbacks=[free, watch2.callback], progress=False)
    assert not all(r["inside"] for r in watch2.rows)
    with pytest.raises(ValueError, match="grow_within_source"):
        GraNet(0.1, grow_within_source="yes")
    with pytest.raises(ValueError, match="final_density"):
        GraNet(1.5)
