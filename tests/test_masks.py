"""Masks: density rules against the CIFAR ResNet-18 layout of Gadhikar et al.'s code, exact counts, determinism, the zero invariant."""
import functools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from rpbook.masks import (
    ALL_RULES,
    Masking,
    apply_masks,
    count_nonzero_parameters,
    global_density,
    layer_counts,
    layer_shapes,
    layerwise_densities,
    mask_model,
    needs_scores,
    pyramidal_ratio,
    repair_dead_units,
    sample_er_mask,
    sample_masks,
    sparsity_report,
)
from rpbook.models import MODEL_NAMES, build_model


def resnet18_shapes():
    """The 21 masked tensors of CIFAR ResNet-18 in named_modules order (the CIFAR ResNet-18 layout of Gadhikar et al.'s code)."""
    shapes = [(64, 3, 3, 3)] + [(64, 64, 3, 3)] * 4
    c_in = 64
    for c in (128, 256, 512):
        shapes += [(c, c_in, 3, 3), (c, c, 3, 3), (c, c_in, 1, 1), (c, c, 3, 3), (c, c, 3, 3)]
        c_in = c
    return shapes + [(10, 512)]


R18 = resnet18_shapes()
# indices in R18
CONV1, LAYER1, L2_SHORT, L3_CONV, L4_CONV, L4_SHORT, LINEAR = 0, 1, 7, 11, 16, 17, 20


def test_resnet18_layout_matches_science():
    assert len(R18) == 21
    assert sum(math.prod(s) for s in R18) == 11_164_352


@pytest.mark.parametrize(
    "rule, p, expected",
    [
        # the CIFAR ResNet-18 layout of Gadhikar et al.'s code, p = 0.10
        ("er", 0.1, {CONV1: 1.0, LAYER1: 0.522, L2_SHORT: 0.392, L3_CONV: 0.131, L4_CONV: 0.065, L4_SHORT: 0.098, LINEAR: 1.0}),
        ("erk", 0.1, {CONV1: 1.0, LAYER1: 0.480, L2_SHORT: 1.0, L3_CONV: 0.116, L4_CONV: 0.058, L4_SHORT: 0.775, LINEAR: 1.0}),
        ("uniform", 0.1, {CONV1: 0.1, L4_CONV: 0.1, LINEAR: 0.1}),
        # p = 0.01
        ("er", 0.01, {CONV1: 0.577, L4_CONV: 0.0065, LINEAR: 0.169}),
        ("erk", 0.01, {CONV1: 0.514, L4_CONV: 0.0053, LINEAR: 1.0}),
        ("pyramidal", 0.01, {CONV1: 0.698, LINEAR: 0.0005}),
    ],
)
def test_rules_match_worked_example(rule, p, expected):
    dens = layerwise_densities(R18, p, rule)
    for idx, value in expected.items():
        # the table rounds to 3 significant digits
        assert dens[idx] == pytest.approx(value, rel=6e-3, abs=6e-4), (rule, p, idx)


@pytest.mark.parametrize("p, r", [(0.1, 0.862), (0.01, 0.698)])
def test_pyramidal_ratio_matches_worked_example(p, r):
    assert pyramidal_ratio(R18, p) == pytest.approx(r, abs=5e-4)
    dens = layerwise_densities(R18, p, "pyramidal")
    assert dens[-1] == pytest.approx(pyramidal_ratio(R18, p) ** 21, rel=1e-9)


def test_balanced_redistributes_what_clipped_layers_do_not_use():
    # The released code realizes 0.079 for p = 0.1; ours must give exactly 0.1.
    dens = layerwise_densities(R18, 0.1, "balanced")
    sizes = [math.prod(s) for s in R18]
    assert sum(d * n for d, n in zip(dens, sizes)) / sum(sizes) == pytest.approx(0.1, rel=1e-12)
    free = [d * n for d, n in zip(dens, sizes) if d < 1]
    assert max(free) == pytest.approx(min(free), rel=1e-9)  # same nonzero count in every unclipped layer
    assert dens[CONV1] == 1.0 and dens[LINEAR] == 1.0


def scores_for(shapes, rule, seed=0):
    """Random pruning scores for a score-derived rule (None for the others): the budget must hold for any scores."""
    if not needs_scores(rule):
        return None
    return _random_scores(tuple(tuple(s) for s in shapes), seed)


@functools.lru_cache(maxsize=8)
def _random_scores(shapes, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(s, generator=g) for s in shapes]


MODEL_SHAPES = {
    "mlp": (40,), "lenet5": (1, 8, 8), "convnet": (1, 8, 8), "resnet20": (3, 32, 32),
    "resnet32": (3, 32, 32), "resnet56": (3, 32, 32), "vgg16": (3, 32, 32),
}


@functools.lru_cache(maxsize=None)
def model_shapes(model_name):
    return tuple(layer_shapes(build_model(model_name, in_shape=MODEL_SHAPES[model_name], num_classes=10)))


@pytest.mark.parametrize("model_name", MODEL_NAMES)
@pytest.mark.parametrize("rule", list(ALL_RULES))
def test_realized_density_equals_request_for_every_model(model_name, rule):
    shapes = list(model_shapes(model_name))
    sizes = [math.prod(s) for s in shapes]
    total = sum(sizes)
    scores = scores_for(shapes, rule)
    for p in (0.5, 0.1, 0.01):
        for first, last in ((False, False), (True, False), (False, True), (True, True)):
            fixed = (sizes[0] if first else 0) + (sizes[-1] if last and (len(sizes) > 1 or not first) else 0)
            if fixed > p * total:
                with pytest.raises(ValueError, match="too low to keep the first/last layer dense"):
                    layerwise_densities(shapes, p, rule, dense_first=first, dense_last=last, layer_scores=scores)
                continue
            dens = layerwise_densities(shapes, p, rule, dense_first=first, dense_last=last, layer_scores=scores)
            assert all(0 < d <= 1 for d in dens)
            if first:
                assert dens[0] == 1.0
            if last:
                assert dens[-1] == 1.0
            counts = layer_counts(shapes, dens)
            # within one weight per layer of the request
            assert abs(sum(counts) - p * total) <= len(shapes), (model_name, rule, p, first, last)


@settings(max_examples=60, deadline=None)
@given(
    shapes=st.lists(
        st.tuples(st.integers(1, 64), st.integers(1, 64), st.sampled_from([1, 3])).map(
            lambda t: (t[0], t[1]) if t[2] == 1 else (t[0], t[1], 3, 3)
        ),
        min_size=1, max_size=8,
    ),
    p=st.floats(0.001, 1.0),
    rule=st.sampled_from(list(ALL_RULES)),
)
def test_budget_is_met_for_any_layout(shapes, p, rule):
    dens = layerwise_densities(shapes, p, rule, layer_scores=scores_for(shapes, rule))
    sizes = [math.prod(s) for s in shapes]
    assert all(0 < d <= 1 + 1e-12 for d in dens)
    assert sum(d * n for d, n in zip(dens, sizes)) == pytest.approx(p * sum(sizes), rel=1e-6)


def test_exact_counts_and_determinism():
    model = build_model("lenet5", in_shape=(1, 28, 28), num_classes=10)
    a = sample_masks(model, 0.1, "erk", seed=3)
    b = sample_masks(model, 0.1, "erk", seed=3)
    c = sample_masks(model, 0.1, "erk", seed=4)
    dens = layerwise_densities(layer_shapes(model), 0.1, "erk")
    counts = layer_counts(layer_shapes(model), dens)
    for (name, mask), k in zip(a.items(), counts):
        assert mask.dtype == torch.bool
        assert int(mask.sum()) == k
        assert torch.equal(mask, b[name])
    assert any(not torch.equal(a[n], c[n]) for n in a)


def test_sample_er_mask_is_uniform_over_positions():
    # Each position is kept with probability k/n: average over many masks.
    g = torch.Generator().manual_seed(0)
    freq = torch.stack([sample_er_mask((20, 10), 0.3, generator=g).float() for _ in range(2000)]).mean(0)
    assert freq.mean().item() == pytest.approx(0.3, abs=1e-6)
    # binomial std of a frequency over 2000 draws: sqrt(.3*.7/2000) = 0.0102; 5 sigma
    assert (freq - 0.3).abs().max().item() < 0.052


@pytest.mark.parametrize("bad", [0, 0.0, -0.1, 1.5, float("nan"), "abc", None, True, float("inf")])
def test_bad_density_is_named(bad):
    with pytest.raises(ValueError, match="density") as err:
        layerwise_densities([(4, 4)], bad, "erk")
    assert repr(bad) in str(err.value) or str(bad) in str(err.value)


def test_unknown_rule_lists_allowed():
    with pytest.raises(ValueError, match=r"'erx'.*uniform, er, erk, balanced, pyramidal"):
        layerwise_densities([(4, 4)], 0.5, "erx")


def test_mask_shape_mismatch_is_named():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    with pytest.raises(ValueError, match=r"mask for layer '0' has shape \(4, 3\) but the layer's weight has shape \(3, 4\)"):
        apply_masks(model, {"0": torch.ones(4, 3, dtype=torch.bool)})
    with pytest.raises(ValueError, match="'5'.*not a Conv2d/Linear layer"):
        apply_masks(model, {"5": torch.ones(3, 4, dtype=torch.bool)})
    with pytest.raises(ValueError, match="only 0 and 1"):
        apply_masks(model, {"0": torch.full((3, 4), 0.5)})


OPTIMIZERS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.1),
    "sgd-momentum-wd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-2),
    "sgd-nesterov": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4),
    "adam": lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=1e-3),
    "adamw": lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1),
}


@pytest.mark.parametrize("opt_name", OPTIMIZERS)
@pytest.mark.parametrize("model_name, in_shape", [("mlp", (40,)), ("lenet5", (1, 8, 8)), ("resnet20", (3, 8, 8))])
def test_masked_weights_and_grads_stay_zero(opt_name, model_name, in_shape):
    torch.manual_seed(0)
    model = build_model(model_name, in_shape=in_shape, num_classes=5, width=0.5)
    masking = mask_model(model, 0.2, "erk", seed=0)
    # give every masked-out weight a nonzero value first: attaching must zero them
    opt = OPTIMIZERS[opt_name](model.parameters())
    masking.watch(opt)
    x, y = torch.randn(8, *in_shape), torch.randint(0, 5, (8,))
    for _ in range(20):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        for name, mask in masking.masks.items():
            module = dict(model.named_modules())[name]
            assert torch.all(module.weight.grad[~mask] == 0), name
        opt.step()
        for name, mask in masking.masks.items():
            module = dict(model.named_modules())[name]
            assert torch.all(module.weight[~mask] == 0), name
    assert global_density(model) == pytest.approx(masking.global_density())


def test_zero_invariant_holds_without_watch_for_listed_optimizers():
    # The gradient hook alone keeps zeros at zero for SGD/Adam/AdamW (documented claim).
    torch.manual_seed(1)
    model = build_model("mlp", in_shape=(10,), num_classes=3, hidden=(16,))
    masking = mask_model(model, 0.3, "uniform", seed=0)
    for make in OPTIMIZERS.values():
        opt = make(model.parameters())
        for _ in range(5):
            opt.zero_grad()
            model(torch.randn(4, 10)).sum().backward()
            opt.step()
        for name, mask in masking.masks.items():
            assert torch.all(dict(model.named_modules())[name].weight[~mask] == 0)


def test_set_mask_zeroes_changed_weights_and_optimizer_state():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5))
    masking = apply_masks(model, {"0": sample_er_mask((5, 6), 0.5, seed=0)})
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    masking.watch(opt)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(4, 6)).pow(2).sum().backward()
        opt.step()
    old = masking.masks["0"]
    new = ~old
    masking.set_mask("0", new, opt)
    buf = opt.state[model[0].weight]["momentum_buffer"]
    changed = new != old
    assert torch.all(buf[changed] == 0)
    assert torch.all(model[0].weight[~new] == 0)
    assert torch.all(model[0].weight[changed] == 0)  # regrown weights start at zero


def test_deepcopy_needs_reattach_and_from_model_restores_hooks():
    import copy

    model = build_model("mlp", in_shape=(10,), num_classes=3, hidden=(8,))
    mask_model(model, 0.3, "erk", seed=0)
    clone = copy.deepcopy(model)
    masking = Masking.from_model(clone)
    clone(torch.randn(3, 10)).sum().backward()
    for name, mask in masking.masks.items():
        assert torch.all(dict(clone.named_modules())[name].weight.grad[~mask] == 0)


def test_repair_leaves_no_isolated_units_and_keeps_count():
    g = torch.Generator().manual_seed(0)
    for shape, p in [((100, 80), 0.03), ((32, 16, 3, 3), 0.01)]:
        mask = sample_er_mask(shape, p, generator=g)
        channel = mask.reshape(shape[0], shape[1], -1).any(-1)
        assert (channel.sum(1) == 0).any() and (channel.sum(0) == 0).any()  # the test needs dead units
        fixed = repair_dead_units(mask, generator=g)
        channel = fixed.reshape(shape[0], shape[1], -1).any(-1)
        assert int(fixed.sum()) == int(mask.sum())
        assert (channel.sum(1) > 0).all() and (channel.sum(0) > 0).all()


def test_repair_adds_edges_only_when_too_few_to_move():
    # 80 kept weights cannot connect 100 output units: repair must add the shortfall.
    mask = sample_er_mask((100, 80), 0.01, seed=0)
    fixed = repair_dead_units(mask, seed=0)
    channel = fixed.reshape(100, 80)
    assert (channel.sum(1) > 0).all() and (channel.sum(0) > 0).all()
    assert 100 <= int(fixed.sum()) <= 100 + 80


def test_repair_is_deterministic():
    mask = sample_er_mask((50, 50), 0.02, seed=1)
    assert torch.equal(repair_dead_units(mask, seed=5), repair_dead_units(mask, seed=5))


def test_sparsity_report_counts_flops_and_parameters():
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 5 * 5, 3))
    masks = {"0": sample_er_mask((4, 2, 3, 3), 0.5, seed=0), "3": sample_er_mask((3, 100), 0.1, seed=0)}
    apply_masks(model, masks)
    report = sparsity_report(model, (2, 5, 5))
    conv, lin = report.layers
    assert conv.flops_dense == 2 * 72 * 25 and conv.flops_sparse == 2 * 36 * 25
    assert lin.flops_dense == 2 * 300 and lin.flops_sparse == 2 * 30
    assert report.nonzero == 36 + 30 and report.density == pytest.approx(66 / 372)
    # biases always count
    assert count_nonzero_parameters(model) == 66 + 4 + 3
    assert "total" in str(report) and "<table>" in report._repr_html_()


# ----------------------------------------------------------------------------- released-code semantics (issue 16)

from rpbook import masks  # noqa: E402  (the module itself, for the option tests below)


def test_redistribute_false_is_the_released_clip_and_loses_budget():
    """Balanced without redistribution: the released code's numbers (MLP 40-256-256-10)."""
    shapes = [(256, 40), (256, 256), (10, 256)]
    sizes = [40 * 256, 256 * 256, 2560]
    for p, realized in [(0.5, 0.3301), (0.3, 0.2327), (0.2, 0.1660)]:
        dens = masks.layerwise_densities(shapes, p, "balanced", redistribute=False)
        assert max(dens) == 1.0
        assert abs(sum(d * n for d, n in zip(dens, sizes)) / sum(sizes) - realized) < 1e-4
        # the default keeps today's behaviour: the realized density is the request
        book = masks.layerwise_densities(shapes, p, "balanced")
        assert abs(sum(d * n for d, n in zip(book, sizes)) / sum(sizes) - p) < 1e-12
    # without any clipped layer the two semantics agree exactly
    assert masks.layerwise_densities(shapes, 0.01, "erk", redistribute=False) == \
        masks.layerwise_densities(shapes, 0.01, "erk")


def test_redistribute_is_validated_and_reaches_sample_masks():
    import pytest
    from rpbook.models import MLP

    with pytest.raises(ValueError, match="redistribute"):
        masks.layerwise_densities([(4, 4)], 0.5, "erk", redistribute="no")
    net = MLP(40, (256, 256), 10)
    clipped = masks.sample_masks(net, 0.5, "balanced", seed=0, redistribute=False)
    kept = sum(int(m.sum()) for m in clipped.values())
    assert kept < 0.34 * sum(m.numel() for m in clipped.values())
    again = masks.sample_masks(net, 0.5, "balanced", seed=0, redistribute=False)
    assert all(torch.equal(clipped[k], again[k]) for k in clipped)


# ----------------------------------------------------------------------------- the rules of chapter 3's *More layer-wise rules*

MLP_SHAPES = [(256, 40), (256, 256), (10, 256)]


def test_uniform_plus_keeps_first_dense_and_last_at_the_floor():
    sizes = [math.prod(s) for s in MLP_SHAPES]
    dens = layerwise_densities(MLP_SHAPES, 0.2, "uniform+")
    # the first layer (10,240 weights) fits in the budget (15,616): dense; the rest uniform but the last >= 0.2
    assert dens[0] == 1.0 and dens[2] == pytest.approx(0.2)
    assert sum(d * n for d, n in zip(dens, sizes)) == pytest.approx(0.2 * sum(sizes), rel=1e-12)
    # at 5 % the first layer alone exceeds the budget: the pin is dropped, the classifier floor stays
    dens = layerwise_densities(MLP_SHAPES, 0.05, "uniform+")
    assert dens[0] < 1.0 and dens[2] == pytest.approx(0.2) and dens[0] == pytest.approx(dens[1])


def test_erk_plus_keeps_the_classifier_dense_and_is_erk_elsewhere():
    dens = layerwise_densities(R18, 0.01, "erk+")
    erk = layerwise_densities(R18, 0.01, "erk")
    assert dens[LINEAR] == 1.0
    # the other layers keep ERK's proportions (ERK's ratio between two free layers)
    assert dens[L3_CONV] / dens[L4_CONV] == pytest.approx(erk[L3_CONV] / erk[L4_CONV], rel=1e-9)


def test_score_rules_read_densities_off_the_global_top_k():
    # scores that are larger in layer 1 than anywhere else: the top-k fills layer 1 first
    scores = [torch.full(MLP_SHAPES[0], 1.0), torch.full(MLP_SHAPES[1], 3.0), torch.full(MLP_SHAPES[2], 2.0)]
    sizes = [math.prod(s) for s in MLP_SHAPES]
    p = 0.9  # a budget of 70,502 weights: all 65,536 of layer 1, all 2,560 of layer 2, the rest to layer 0
    dens = layerwise_densities(MLP_SHAPES, p, "snip-ratio", layer_scores=scores)
    assert dens[1] == 1.0 and dens[2] == 1.0
    assert dens[0] == pytest.approx((0.9 * sum(sizes) - 65_536 - 2_560) / 10_240, rel=1e-9)
    # at 10 % the top-k lies inside layer 1; the others keep about one weight each (half a weight's share)
    dens = layerwise_densities(MLP_SHAPES, 0.1, "snip-ratio", layer_scores=scores)
    assert layer_counts(MLP_SHAPES, dens)[0] == 1 and layer_counts(MLP_SHAPES, dens)[2] == 1
    assert sum(d * n for d, n in zip(dens, sizes)) == pytest.approx(0.1 * sum(sizes), rel=1e-12)
    with pytest.raises(ValueError, match="pass layer_scores"):
        layerwise_densities(MLP_SHAPES, p, "grasp-ratio")


def test_score_rule_masks_use_snip_scores_and_stay_random():
    from rpbook.pruning import compute_scores

    model = build_model("mlp", in_shape=(40,), num_classes=10, hidden=(64, 64))
    g = torch.Generator().manual_seed(0)
    batch = (torch.randn(32, 40, generator=g), torch.randint(0, 10, (32,), generator=g))
    scores = compute_scores("snip", model, batch)
    a = sample_masks(model, 0.1, "snip-ratio", seed=1, layer_scores=scores)
    b = sample_masks(model, 0.1, "snip-ratio", seed=1, layer_scores=scores)
    c = sample_masks(model, 0.1, "snip-ratio", seed=2, layer_scores=scores)
    shapes = layer_shapes(model)
    dens = layerwise_densities(shapes, 0.1, "snip-ratio", layer_scores=list(scores.values()))
    for (name, mask), k in zip(a.items(), layer_counts(shapes, dens)):
        assert int(mask.sum()) == k and torch.equal(mask, b[name])
    assert any(not torch.equal(a[n], c[n]) for n in a)  # the mask is random, only its per-layer counts are read off


def test_add_repair_adds_edges_and_swap_keeps_the_count():
    mask = sample_er_mask((64, 64), 0.01, seed=0)
    swap = repair_dead_units(mask, seed=0, mode="swap")
    add = repair_dead_units(mask, seed=0, mode="add")
    for m in (swap, add):
        assert bool(m.any(dim=1).all()) and bool(m.any(dim=0).all())
    assert int(swap.sum()) == int(mask.sum()) or int(swap.sum()) > int(mask.sum())  # grows only if nothing can move
    assert int(add.sum()) > int(mask.sum())
    assert bool((add | mask).eq(add).all())  # add keeps every original edge
    with pytest.raises(ValueError, match="repair mode"):
        repair_dead_units(mask, seed=0, mode="grow")
    with pytest.raises(ValueError, match="repair must be"):
        sample_masks(build_model("mlp", in_shape=(40,), num_classes=10), 0.1, repair="grow")
