"""Strong lottery tickets (chapter 6): SubsetSum, the construction, edge-popup."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from rpbook import slt
from rpbook.masks import sample_er_mask, sample_masks
from rpbook.models import build_model
from rpbook.train import TrainConfig, fit


def brute_force_errors(values: np.ndarray, targets: np.ndarray) -> np.ndarray:
    sums = np.array([sum(values[list(c)]) for r in range(len(values) + 1)
                     for c in itertools.combinations(range(len(values)), r)])
    return np.abs(targets[:, None] - sums[None, :]).min(axis=1)


# ----------------------------------------------------------------------------- SubsetSum


@pytest.mark.parametrize("n", [0, 1, 2, 5, 9, 12])
def test_subset_sum_is_optimal_against_brute_force(n):
    rng = np.random.default_rng(n)
    values = rng.uniform(-1, 1, n)
    targets = rng.uniform(-2, 2, 25)
    sol = slt.solve_subset_sum(values, targets)
    np.testing.assert_allclose(sol.errors, brute_force_errors(values, targets), rtol=0, atol=1e-12)
    # the reported subsets really have the reported sums and errors
    np.testing.assert_allclose((sol.selected * values).sum(-1), sol.sums, atol=1e-12)
    np.testing.assert_allclose(np.abs(targets - sol.sums), sol.errors, atol=1e-12)


def test_batched_instances_match_single_solves():
    rng = np.random.default_rng(3)
    values = rng.uniform(-1, 1, (6, 11))
    targets = rng.uniform(-1, 1, 6)
    selected, sums = slt.solve_subset_sums(values, targets)
    for b in range(6):
        single = slt.solve_subset_sum(values[b], targets[b])
        assert abs(abs(targets[b] - float(sums[b])) - float(single.errors)) < 1e-12
        assert abs(float((selected[b].numpy() * values[b]).sum()) - float(sums[b])) < 1e-12


def test_scalar_target_and_bad_input():
    sol = slt.solve_subset_sum([0.5, -0.25], 0.25)
    assert sol.selected.shape == (2,) and sol.errors.shape == ()
    assert float(sol.errors) == 0.0
    with pytest.raises(ValueError, match="n <= 32"):
        slt.solve_subset_sum(np.zeros(slt.MAX_EXACT_N + 1), 0.0)
    with pytest.raises(ValueError, match="finite"):
        slt.solve_subset_sum([0.1, float("nan")], 0.0)
    with pytest.raises(ValueError, match="shape"):
        slt.solve_subset_sums(np.zeros((3, 4)), np.zeros(2))
    with pytest.raises(ValueError, match="distribution"):
        slt.random_numbers(4, seed=0, distribution="gaussian")


def test_worst_case_error_brackets_a_fine_grid():
    values = slt.random_numbers(9, seed=5)
    grid = np.linspace(-1, 1, 4001)
    on_grid = slt.solve_subset_sum(values, grid).errors.max()
    worst = slt.worst_case_error(values)
    # distance to the nearest subset sum is 1-Lipschitz in the target
    assert on_grid - 1e-12 <= worst <= on_grid + (grid[1] - grid[0]) / 2 + 1e-12


def test_error_falls_with_n():
    targets = np.linspace(-1, 1, 101)
    small = slt.subset_sum_errors(4, targets, sets=4, seed=0).mean()
    large = slt.subset_sum_errors(14, targets, sets=4, seed=0).mean()
    assert large < small / 50
    assert slt.poisson_error_estimate(14) < slt.poisson_error_estimate(4)


# ----------------------------------------------------------------------------- the construction


def small_target(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    model = slt.bias_free_mlp(6, (5,), 3)
    scaled, _ = slt.scale_to_unit_weights(model)
    return scaled


def test_scaling_keeps_predictions_and_norms():
    torch.manual_seed(1)
    model = slt.bias_free_mlp(6, (7, 5), 3)
    scaled, c = slt.scale_to_unit_weights(model)
    x = torch.randn(50, 6)
    with torch.no_grad():
        assert torch.equal(model(x).argmax(1), scaled(x.double()).argmax(1))
        torch.testing.assert_close(scaled(x.double()) * c, model(x).double(), rtol=1e-5, atol=1e-5)
    for layer in scaled:
        if isinstance(layer, nn.Linear):
            assert float(torch.linalg.matrix_norm(layer.weight.detach(), ord=2)) == pytest.approx(1.0)


def test_ticket_block_is_the_gadget_exactly():
    target = small_target()
    ticket = slt.subset_sum_ticket(target, 8, seed=0)
    x = slt.sphere_inputs(6, 40, seed=1)
    with torch.no_grad():
        h = x
        for i, (p, m) in enumerate(zip(ticket.plus, ticket.minus)):
            h = torch.relu(h) @ p.T - torch.relu(-h) @ m.T
            if i < len(ticket.plus) - 1:
                h = torch.relu(h)
        torch.testing.assert_close(ticket.ticket(x), h, rtol=0, atol=1e-12)


def test_constructed_network_is_within_eps_of_its_target():
    eps = 0.01
    target = small_target()
    ticket = slt.subset_sum_ticket(target, 40, seed=0)
    err = slt.sup_error(ticket.target, ticket.ticket, slt.sphere_inputs(6, 2000, seed=2))
    # The construction succeeds with probability 1 - delta; for these fixed seeds it does,
    # and the guaranteed bound, computed from the realised weights, holds on every input.
    assert ticket.error_bound() <= eps
    assert err["sup_error"] <= ticket.error_bound()
    # twice as deep, n times wider, only pruned
    assert len(ticket.masks) == 2 * len(ticket.plus)
    assert ticket.widths == [40 * 6, 40 * 5]
    for (name, layer), (_, src) in zip(slt.maskable_layers(ticket.ticket), slt.maskable_layers(ticket.source)):
        kept = ticket.masks[name]
        assert torch.equal(layer.weight[kept], src.weight[kept])
        assert bool((layer.weight[~kept] == 0).all())
    assert ticket.kept_params < ticket.source_params


def test_wider_sources_give_smaller_errors_and_bad_targets_are_refused():
    target = small_target(2)
    x = slt.sphere_inputs(6, 500, seed=0)
    narrow = slt.sup_error(target, slt.subset_sum_ticket(target, 4, seed=0).ticket, x)["sup_error"]
    wide = slt.sup_error(target, slt.subset_sum_ticket(target, 24, seed=0).ticket, x)["sup_error"]
    assert wide < narrow
    with_bias = nn.Sequential(nn.Linear(3, 2))
    with pytest.raises(ValueError, match="bias"):
        slt.subset_sum_ticket(with_bias, 8, seed=0)
    with pytest.raises(ValueError, match="n \\(hidden units per input\\)"):
        slt.subset_sum_ticket(target, 1, seed=0)


# ----------------------------------------------------------------------------- edge-popup


def mlp(width: float = 1.0) -> nn.Module:
    return build_model("mlp", in_shape=(12,), num_classes=4, hidden=(16, 16), width=width)


class _Data:
    """A tiny in-memory data set with the fields rpbook.train.fit reads."""

    def __init__(self, n: int = 64, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.x_train = torch.randn(n, 12, generator=g)
        self.y_train = torch.randint(0, 4, (n,), generator=g)
        self.x_val, self.y_val = self.x_train[:16], self.y_train[:16]
        self.x_test, self.y_test = self.x_train[:16], self.y_train[:16]
        self.name, self.task = "tiny", "classification"


@pytest.mark.parametrize("weight_init", slt.WEIGHT_INITS)
def test_edge_popup_keeps_k_edges_inside_the_source_and_never_moves_weights(weight_init):
    model = mlp()
    source = sample_masks(model, 0.5, "uniform", seed=3)
    slt.to_edge_popup(model, 0.2, weight_init=weight_init, source_masks=source, seed=0)
    before = {n: m.weight.detach().clone() for n, m in slt.edge_popup_layers(model)}
    scores_before = {n: m.scores.detach().clone() for n, m in slt.edge_popup_layers(model)}
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert {id(p) for p in trainable} == {id(m.scores) for _, m in slt.edge_popup_layers(model)}
    fit(model, _Data(), TrainConfig(epochs=3, batch_size=16, lr=0.1, weight_decay=1e-4), progress=False)
    masks = slt.edge_popup_masks(model)
    for name, layer in slt.edge_popup_layers(model):
        assert int(masks[name].sum()) == slt.kept_count(layer.weight.numel(), 0.2)
        assert not bool((masks[name] & ~source[name]).any())
        assert torch.equal(layer.weight, before[name])
        assert not torch.equal(layer.scores, scores_before[name])
        if layer.bias is not None:
            assert bool((layer.bias == 0).all())


def test_source_restriction_uses_the_flattened_mask():
    # Allowed entries only in the last rows: a selection over row indices (the bug of
    # the released ER_SLT code, Gadhikar et al. 2023) would pick entries outside the source.
    layer = nn.Linear(10, 8)
    model = nn.Sequential(layer)
    source = torch.zeros(8, 10, dtype=torch.bool)
    source[5:, :] = True
    slt.to_edge_popup(model, 0.2, source_masks={"0": source}, seed=0)
    ep = model[0]
    with torch.no_grad():
        ep.scores[:5] = 10.0  # the best scores lie outside the source
    mask = ep.popup_mask().bool()
    assert int(mask.sum()) == 16 and not bool((mask & ~source).any())
    expected = torch.zeros(80, dtype=torch.bool)
    allowed_scores = torch.where(source.reshape(-1), ep.scores.detach().abs().reshape(-1), torch.tensor(-1.0))
    expected[torch.argsort(allowed_scores, descending=True)[:16]] = True
    assert torch.equal(mask.reshape(-1), expected)


def test_straight_through_gradient_reaches_every_allowed_score():
    model = nn.Sequential(nn.Linear(5, 3))
    source = sample_er_mask((3, 5), 0.6, seed=1)
    slt.to_edge_popup(model, 0.2, source_masks={"0": source}, seed=0)
    (model(torch.randn(7, 5)) * torch.randn(7, 3)).sum().backward()
    grad = model[0].scores.grad
    assert bool((grad[~source] == 0).all())
    assert bool((grad[source] != 0).all())  # also the edges not kept now: they can pop up later
    assert model[0].weight.grad is None


def test_edge_popup_is_deterministic_and_validates():
    a, b = slt.to_edge_popup(mlp(), 0.3, seed=7), slt.to_edge_popup(mlp(), 0.3, seed=7)
    for (_, la), (_, lb) in zip(slt.edge_popup_layers(a), slt.edge_popup_layers(b)):
        assert torch.equal(la.weight, lb.weight) and torch.equal(la.scores, lb.scores)
    sc = slt.edge_popup_layers(slt.to_edge_popup(mlp(), 0.3, weight_init="signed_constant", seed=0))[0][1]
    assert torch.unique(sc.weight.abs()).numel() == 1
    with pytest.raises(ValueError, match="weight_init"):
        slt.to_edge_popup(mlp(), 0.3, weight_init="uniform")
    with pytest.raises(ValueError, match="source mask allows only"):
        slt.to_edge_popup(mlp(), 0.6, source_masks=sample_masks(mlp(), 0.5, "uniform", seed=0))
    with pytest.raises(ValueError, match="layers the model does not have"):
        slt.to_edge_popup(mlp(), 0.3, source_masks={"conv9": torch.ones(2, 2)})
    with pytest.raises(ValueError, match="exceeds source_density"):
        slt.EdgePopupRun(density=0.5, source_density=0.2)


@pytest.mark.parametrize("name", ["convnet", "resnet20"])
def test_edge_popup_conv_models_train_only_scores(name):
    model = build_model(name, in_shape=(3, 8, 8), num_classes=4, width=0.125, depth=4 if name == "convnet" else None)
    slt.to_edge_popup(model, 0.3, seed=0)
    out = model(torch.randn(2, 3, 8, 8))
    out.sum().backward()
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert trainable == {id(m.scores) for _, m in slt.edge_popup_layers(model)}
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert bool((module.weight == 1).all()) and bool((module.bias == 0).all())


def test_train_edge_popup_reports_its_checks():
    from rpbook.data import load_dataset

    data = load_dataset("digits", seed=0, n_train=100)
    report = slt.train_edge_popup(slt.EdgePopupRun(density=0.1, source_density=0.5, hidden=(16,),
                                                   train=TrainConfig(epochs=1, batch_size=50)), data=data)
    assert report["exact_counts"] and report["inside_source"] and report["weights_unchanged"]
    assert report["kept"] == sum(slt.kept_count(r["numel"], 0.1) for r in report["layers"])


def test_construction_refuses_a_target_it_would_rebuild_differently():
    import torch
    from torch import nn

    from rpbook.slt import subset_sum_ticket

    torch.manual_seed(0)
    for bad in (nn.Sequential(nn.Linear(4, 3, bias=False), nn.ReLU()),
                nn.Sequential(nn.Linear(4, 3, bias=False), nn.Linear(3, 2, bias=False)),
                nn.Sequential(nn.Linear(4, 3, bias=False), nn.ReLU(), nn.ReLU(), nn.Linear(3, 2, bias=False))):
        with pytest.raises(ValueError, match=r"\[Flatten\] Linear \(ReLU Linear\)\*"):
            subset_sum_ticket(bad, n=8, seed=0)


def test_edge_popup_conversion_checks_every_layer_before_changing_any():
    from rpbook.masks import sample_masks
    from rpbook.models import build_model
    from rpbook.slt import edge_popup_layers, to_edge_popup

    model = build_model("mlp", in_shape=(40,), num_classes=10, hidden=(64, 64))
    source = sample_masks(model, 0.3, "pyramidal", seed=0)  # the last layers are far below 0.3
    with pytest.raises(ValueError, match="must not exceed any layer's source density"):
        to_edge_popup(model, 0.25, source_masks=source, seed=0)
    assert edge_popup_layers(model) == []  # nothing was converted
    with pytest.raises(ValueError, match="seed"):
        to_edge_popup(model, 0.1, seed=2.9)


def test_initialisation_refuses_a_fractional_or_negative_seed():
    from rpbook.init import initialize_
    from rpbook.models import build_model

    model = build_model("mlp", in_shape=(40,), num_classes=10, hidden=(8,))
    for bad in (2.9, -1):
        with pytest.raises(ValueError, match="seed"):
            initialize_(model, "dense", seed=bad)


def test_meet_in_the_middle_gives_the_same_answer_in_pieces():
    import torch

    from rpbook.slt import _meet_in_the_middle

    g = torch.Generator().manual_seed(0)
    values = torch.rand(7, 12, generator=g, dtype=torch.float64) * 2 - 1
    targets = torch.rand(7, 5, generator=g, dtype=torch.float64) * 2 - 1
    whole = _meet_in_the_middle(values, targets)
    pieces = _meet_in_the_middle(values, targets, chunk=64 * 2)  # 2 rows of 64 A-sums per piece
    assert torch.equal(whole[0], pieces[0]) and torch.equal(whole[1], pieces[1])


# ----------------------------------------------------------------------------- the construction's architecture


def test_gadget_structure_mask_is_the_constructions_block_pattern():
    mask = slt.gadget_structure_mask(3, 2)
    expected = torch.tensor([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1]], dtype=torch.bool)
    assert torch.equal(mask, expected)
    big = slt.gadget_structure_mask(7, 5)
    assert big.shape == (35, 7) and bool((big.sum(1) == 1).all()) and bool((big.sum(0) == 5).all())
    # the same unit -> input map as subset_sum_ticket's: hidden unit k n + r keeps only input k
    ticket = slt.subset_sum_ticket(slt.bias_free_mlp(3, (4,), 2), 4, seed=0)
    assert not bool((ticket.masks["fc1"] & ~slt.gadget_structure_mask(3, 4)).any())


def test_subset_sum_architecture_layers_masks_and_edge_count():
    model, masks = slt.subset_sum_architecture(6, (4, 3), 2, 5)
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    assert [tuple(m.weight.shape) for _, m in linears] == [(30, 6), (4, 30), (20, 4), (3, 20), (15, 3), (2, 15)]
    assert sorted(masks) == ["fc1", "fc3", "fc5"]  # twice as deep as the target; every odd layer is structured
    for name, d_in in (("fc1", 6), ("fc3", 4), ("fc5", 3)):
        assert torch.equal(masks[name], slt.gadget_structure_mask(d_in, 5))
    # edges: n d_in per structured layer plus the full second layers = Σ n d_in (1 + d_out)
    edges = sum(int(masks[n].sum()) if n in masks else m.weight.numel() for n, m in linears)
    assert edges == slt.subset_sum_architecture_params(6, (4, 3), 2, 5) == 5 * (6 * 5 + 4 * 4 + 3 * 3)
    assert model(torch.randn(2, 6)).shape == (2, 2)
    with pytest.raises(ValueError, match="n \\(copies per input\\)"):
        slt.subset_sum_architecture(6, (4,), 2, 0)


@pytest.mark.parametrize("params, layers", [(4928, 1), (4928, 3), (39424, 3), (1000, 2), (7, 1)])
def test_matched_width_has_the_same_edges_within_rounding(params, layers):
    w = slt.matched_width(params, 64, 10, layers)
    edges = slt.mlp_params(64, (w,) * layers, 10)
    step = slt.mlp_params(64, (w + 1,) * layers, 10) - edges
    assert abs(edges - params) <= step / 2 + 1e-9 or (w == 1 and edges >= params)
    assert slt.mlp_params(64, (67,), 10) == 64 * 67 + 67 * 10
    assert slt.matched_width(4928, 64, 10, 1) == 67  # 74 w closest to 4928


def test_edge_popup_in_the_structured_network_counts_density_within_the_structure():
    model, masks = slt.subset_sum_architecture(12, (5,), 4, 3)
    slt.to_edge_popup(model, 0.5, source_masks=masks, density_of="source", weight_init="signed_constant", seed=0)
    layers = dict(slt.edge_popup_layers(model))
    assert layers["fc1"].k == 18 and layers["fc3"].k == 8  # half of 36 and of 15 structured edges
    assert layers["fc2"].k == 90 and layers["fc4"].k == 30  # half of the full 5x36 and 4x15 layers
    # fan-in of a structured unit is its one input: weights ±sqrt(2 / (1 · κ)) = ±2
    assert torch.allclose(layers["fc1"].weight.abs(), torch.full_like(layers["fc1"].weight, 2.0))
    assert torch.allclose(layers["fc2"].weight.abs(), torch.full_like(layers["fc2"].weight, (2 / (36 * 0.5)) ** 0.5))
    fit(model, _Data(), TrainConfig(epochs=2, batch_size=16, lr=0.1, weight_decay=1e-4), progress=False)
    popped = slt.edge_popup_masks(model)
    for name, mask in masks.items():
        assert int(popped[name].sum()) == layers[name].k and not bool((popped[name] & ~mask).any())
    # the default ("layer") keeps a fraction of the full layer: 0.5 of 12x36 exceeds the 36 allowed edges
    with pytest.raises(ValueError, match="source mask allows only"):
        slt.to_edge_popup(slt.subset_sum_architecture(12, (5,), 4, 3)[0], 0.5, source_masks=masks)
    with pytest.raises(ValueError, match="density_of"):
        slt.to_edge_popup(mlp(), 0.5, density_of="full")


def test_edge_popup_run_validates_the_structure():
    with pytest.raises(ValueError, match="unknown structure"):
        slt.EdgePopupRun(structure="redundant")
    with pytest.raises(ValueError, match="needs model 'mlp'"):
        slt.EdgePopupRun(structure="subset_sum", redundancy=2, width=2.0)
