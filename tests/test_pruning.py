"""Pruning scores, top-k masks inside source masks, the cubic schedule, gradual pruning and IMP (chapter 5)."""
import copy
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from rpbook.init import initialize_
from rpbook.masks import Masking, sample_masks
from rpbook.pruning import (
    SCORE_FUNCTIONS, GradualMagnitudePruning, compute_scores, cubic_density, dense_masking, imp_densities,
    iterative_magnitude_pruning, magnitude_scores, prune_to_density, register_score, top_k_mask,
)
from rpbook.train import Callback, TrainConfig, fit


def toy_data(n=330, d=12, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = (x @ torch.randn(d, classes, generator=g)).argmax(1)
    return SimpleNamespace(name="toy", x_train=x[:240], y_train=y[:240], x_val=x[240:270], y_val=y[240:270],
                           x_test=x[270:], y_test=y[270:], task="classification", in_shape=(d,), num_classes=classes)


def net(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(12, 40), nn.ReLU(), nn.Linear(40, 24), nn.ReLU(), nn.Linear(24, 4))
    initialize_(model, "dense", seed=seed)
    return model


def random_scores(shapes, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {name: torch.rand(shape, generator=g) for name, shape in shapes.items()}


SHAPES = {"a": (30, 20), "b": (10, 30), "c": (4, 10)}


def test_magnitude_scores_are_absolute_weights():
    model = net()
    scores = compute_scores("magnitude", model)
    assert set(scores) == {"0", "2", "4"}
    for name, s in scores.items():
        assert torch.equal(s, dict(model.named_children())[name].weight.detach().abs())
    assert SCORE_FUNCTIONS["magnitude"] is magnitude_scores


def test_global_pruning_keeps_exactly_the_top_scores():
    scores = random_scores(SHAPES)
    masks = prune_to_density(scores, 0.2, scope="global")
    total = sum(math.prod(s) for s in SHAPES.values())
    kept = sum(int(m.sum()) for m in masks.values())
    assert kept == round(0.2 * total)
    kept_min = min(float(scores[n][m].min()) for n, m in masks.items() if m.any())
    dropped_max = max(float(scores[n][~m].max()) for n, m in masks.items())
    assert kept_min > dropped_max


def test_layer_pruning_keeps_each_layers_count_and_its_top_scores():
    scores = random_scores(SHAPES, seed=1)
    masks = prune_to_density(scores, 0.1, scope="layer")
    for name, m in masks.items():
        assert int(m.sum()) == max(1, round(0.1 * scores[name].numel()))
        assert float(scores[name][m].min()) > float(scores[name][~m].max())
    per_layer = prune_to_density(scores, {"a": 0.5, "b": 0.2, "c": 1.0}, scope="layer")
    assert [int(m.sum()) for m in per_layer.values()] == [300, 60, 40]


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_pruning_never_leaves_the_source_mask(scope):
    model = nn.Sequential(nn.Linear(20, 30), nn.Linear(30, 10), nn.Linear(10, 4))
    source = sample_masks(model, 0.4, "uniform", seed=3)
    scores = random_scores({n: tuple(m.shape) for n, m in source.items()}, seed=2)
    # Make the forbidden entries the most attractive ones: they must still be skipped.
    scores = {n: torch.where(source[n], s, s + 10.0) for n, s in scores.items()}
    masks = prune_to_density(scores, 0.1, source_masks=source, scope=scope)
    for n, m in masks.items():
        assert not (m & ~source[n]).any()
    total = sum(m.numel() for m in masks.values())
    if scope == "global":
        assert sum(int(m.sum()) for m in masks.values()) == round(0.1 * total)
    with pytest.raises(ValueError, match="source mask"):
        prune_to_density(scores, 0.6, source_masks=source, scope=scope)


def test_pruning_is_deterministic_under_ties():
    scores = {"a": torch.zeros(8, 8)}
    first = prune_to_density(scores, 0.25)
    assert torch.equal(first["a"], prune_to_density(scores, 0.25)["a"])
    assert first["a"].reshape(-1)[:16].all()  # ties go to the lower index


def test_bad_pruning_requests_are_rejected():
    scores = random_scores(SHAPES)
    with pytest.raises(ValueError, match="scope"):
        prune_to_density(scores, 0.5, scope="row")
    with pytest.raises(ValueError, match="density"):
        prune_to_density(scores, 1.5)
    with pytest.raises(ValueError, match="scope='layer'"):
        prune_to_density(scores, {"a": 0.5, "b": 0.5, "c": 0.5}, scope="global")
    with pytest.raises(ValueError, match="NaN"):
        prune_to_density({"a": torch.tensor([[float("nan"), 1.0]])}, 0.5)
    with pytest.raises(ValueError, match="unknown pruning score"):
        compute_scores("snipp", net())
    with pytest.raises(ValueError, match="only 2"):
        top_k_mask(torch.rand(4), torch.tensor([True, False, True, False]), 3)


def test_registry_takes_new_scores_once():
    name = "test-negative-magnitude"
    try:
        @register_score(name)
        def negative(model, batch=None, **options):
            return {n: -s for n, s in magnitude_scores(model).items()}

        model = net()
        masks = prune_to_density(compute_scores(name, model), 0.3, scope="layer")
        w = dict(model.named_children())["0"].weight.detach().abs()
        assert float(w[masks["0"]].max()) <= float(w[~masks["0"]].min())
        with pytest.raises(ValueError, match="already registered"):
            register_score(name)(negative)
    finally:
        SCORE_FUNCTIONS.pop(name, None)


def test_cubic_schedule():
    kw = dict(start_step=10, end_step=110, final_density=0.05)
    assert cubic_density(0, **kw) == 1.0 and cubic_density(10, **kw) == 1.0
    assert cubic_density(110, **kw) == 0.05 and cubic_density(500, **kw) == 0.05
    assert cubic_density(60, **kw) == pytest.approx(0.05 + 0.95 * 0.5 ** 3)
    values = [cubic_density(t, **kw) for t in range(0, 120)]
    assert all(b <= a for a, b in zip(values, values[1:]))
    # Cubic: the first half of the window removes most of what is removed.
    assert 1 - cubic_density(60, **kw) > 0.8 * (1 - 0.05)
    with pytest.raises(ValueError, match="end_step"):
        cubic_density(5, start_step=10, end_step=10, final_density=0.1)


class MaskHistory(Callback):
    def __init__(self):
        self.masks = []

    def on_step_end(self, state):
        self.masks.append(state.masking.masks)


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_gradual_pruning_reaches_the_final_density_through_nested_masks(scope):
    data = toy_data()
    model = net()
    masking = dense_masking(model)
    gmp = GradualMagnitudePruning(0.1, start=0.2, end=0.6, every=3, scope=scope)
    history = MaskHistory()
    fit(model, data, TrainConfig(epochs=5, batch_size=32, lr=0.05), masking=masking, callbacks=[gmp, history],
        progress=False, device="cpu")
    total = sum(m.numel() for m in masking.masks.values())
    assert abs(masking.global_density() - 0.1) <= len(masking.masks) / total
    if scope == "layer":
        for name, p in masking.layer_densities().items():
            assert abs(p - 0.1) < 1.0 / dict(model.named_children())[name].weight.numel() + 1e-9
    for before, after in zip(history.masks, history.masks[1:]):
        for n in before:
            assert not (after[n] & ~before[n]).any()  # pruned weights never return
    densities = [e["density"] for e in gmp.events]
    assert densities == sorted(densities, reverse=True)
    steps_total = 5 * math.ceil(240 / 32)
    assert gmp.events[-1]["step"] == round(0.6 * steps_total)
    for name, m in dict(model.named_children()).items():
        if hasattr(m, "weight_mask"):
            assert torch.all(m.weight[~masking.masks[name]] == 0)


def test_gradual_pruning_needs_a_masking():
    with pytest.raises(ValueError, match="masking"):
        fit(net(), toy_data(), TrainConfig(epochs=1), callbacks=[GradualMagnitudePruning(0.5)], progress=False)


def test_imp_densities():
    levels = imp_densities(0.1, rate=0.2)
    assert levels[-1] == 0.1
    assert all(b < a for a, b in zip(levels, levels[1:]))
    assert levels[:3] == pytest.approx([0.8, 0.64, 0.512])
    assert len(levels) == math.ceil(math.log(0.1) / math.log(0.8))
    with pytest.raises(ValueError, match="rate"):
        imp_densities(0.1, rate=1.0)


class WeightsAtStart(Callback):
    def __init__(self, sink, level):
        self.sink, self.level = sink, level

    def on_train_begin(self, state):
        self.sink[self.level] = copy.deepcopy(state.model.state_dict())


class WeightsAtStep(Callback):
    def __init__(self, step, sink):
        self.step, self.sink = step, sink

    def on_step_end(self, state):
        if state.step == self.step:
            self.sink["rewind"] = copy.deepcopy(state.model.state_dict())


@pytest.mark.parametrize("rewind_step", [0, 7])
def test_imp_reaches_each_level_and_resets_survivors(rewind_step):
    data = toy_data()
    model = net()
    theta0 = copy.deepcopy(model.state_dict())
    starts, seen = {}, {}
    cfg = TrainConfig(epochs=2, batch_size=32, lr=0.05)
    densities = imp_densities(0.3, rate=0.4)

    def callbacks(level):
        cbs = [WeightsAtStart(starts, level)]
        return cbs + ([WeightsAtStep(rewind_step, seen)] if level == 0 else [])

    levels = iterative_magnitude_pruning(model, data, cfg, densities, rewind_step=rewind_step,
                                         callbacks_factory=callbacks, device="cpu")
    assert [lv.level for lv in levels] == list(range(len(densities) + 1))
    total = sum(p.numel() for n, p in model.named_parameters() if n.endswith("weight"))
    for lv, target in zip(levels[1:], densities):
        assert abs(lv.realized_density - target) <= 0.5 / total
        assert lv.test_accuracy is not None
    for prev, cur in zip(levels, levels[1:]):
        for n in cur.masks:
            assert not (cur.masks[n] & ~prev.masks[n]).any()
    reference = theta0 if rewind_step == 0 else seen["rewind"]
    for level in range(1, len(levels)):
        masks = levels[level].masks
        for key, value in starts[level].items():
            layer, kind = key.split(".")
            expected = reference[key] * masks[layer] if kind == "weight" else reference[key]
            assert torch.equal(value, expected)


def test_imp_inside_a_source_mask_stays_inside_it():
    data = toy_data()
    model = net()
    source = sample_masks(model, 0.5, "uniform", seed=1)
    masking = Masking(model, source)
    levels = iterative_magnitude_pruning(model, data, TrainConfig(epochs=1, batch_size=64), [0.3, 0.15],
                                         masking=masking, final_train=False, device="cpu")
    assert levels[0].density == pytest.approx(0.5, abs=0.01)
    assert levels[-1].test_accuracy is None
    for lv in levels:
        for n, m in lv.masks.items():
            assert not (m & ~source[n]).any()
    with pytest.raises(ValueError, match="strictly decreasing"):
        iterative_magnitude_pruning(net(), data, TrainConfig(epochs=1), [0.3, 0.5])
