"""rpbook.graphs: hand-made masks, closed forms, chains, drawings' graphs, speed and headlessness."""
from __future__ import annotations

import math
import subprocess
import sys

import networkx as nx
import numpy as np
import pytest
import torch

from rpbook import graphs
from rpbook.masks import layer_shapes, sample_er_mask, sample_masks
from rpbook.models import build_model


# ----------------------------------------------------------------------------- one layer, by hand


def test_linear_degrees_and_isolated_units_by_hand():
    mask = torch.tensor([[1, 0, 1, 0],
                         [0, 0, 0, 0],
                         [1, 0, 1, 1]], dtype=torch.bool)
    in_deg, out_deg = graphs.unit_degrees(mask)
    assert in_deg.tolist() == [2, 0, 3]
    assert out_deg.tolist() == [2, 0, 2, 1]
    topo = graphs.layer_topology(mask, "fc")
    assert (topo.n_out, topo.n_in, topo.fan_in, topo.kept) == (3, 4, 4, 5)
    assert topo.density == pytest.approx(5 / 12)
    assert topo.outputs_without_inputs == 1
    assert topo.inputs_without_outputs == 1
    assert topo.mean_in_degree == pytest.approx(5 / 3)
    assert topo.expected_outputs_without_inputs == pytest.approx(3 * (7 / 12) ** 4)


def test_conv_channel_edges_need_any_kernel_entry():
    mask = torch.zeros(2, 3, 2, 2, dtype=torch.bool)
    mask[0, 0, 1, 1] = True          # one entry is enough for a channel edge
    mask[0, 2] = True                # a full kernel slice is still one channel edge
    mask[1, 2, 0, 0] = True
    adj = graphs.channel_adjacency(mask).toarray()
    assert adj.tolist() == [[1, 0, 1], [0, 0, 1]]
    in_w, out_w = graphs.unit_degrees(mask)
    assert in_w.tolist() == [5, 1] and out_w.tolist() == [1, 0, 5]
    in_c, out_c = graphs.unit_degrees(mask, channels=True)
    assert in_c.tolist() == [2, 1] and out_c.tolist() == [1, 0, 2]
    assert graphs.weight_counts(mask).toarray().tolist() == [[1, 0, 4], [0, 0, 1]]
    topo = graphs.layer_topology(mask)
    assert topo.fan_in == 12 and topo.inputs_without_outputs == 1 and topo.channel_density == pytest.approx(3 / 6)


def test_numpy_masks_and_bad_input():
    assert graphs.unit_degrees(np.eye(3, dtype=np.int64))[0].tolist() == [1, 1, 1]
    with pytest.raises(ValueError, match="only 0 and 1"):
        graphs.channel_adjacency(np.full((2, 2), 0.5))
    with pytest.raises(ValueError, match=">= 2 positive dims"):
        graphs.layer_topology(torch.ones(5))
    with pytest.raises(ValueError, match="torch.Tensor or numpy"):
        graphs.unit_degrees([[1, 0]])
    with pytest.raises(ValueError, match="masks is empty"):
        graphs.network_topology({})
    with pytest.raises(ValueError, match="density"):
        graphs.prob_unit_isolated(10, 1.5)
    with pytest.raises(ValueError, match="fan_in"):
        graphs.expected_isolated_units(10, 0, 0.1)
    with pytest.raises(ValueError, match="one density per layer"):
        graphs.expected_path_count([3, 4, 2], [0.5])


# ----------------------------------------------------------------------------- closed forms


def test_mean_degree_is_p_times_fan_in():
    p, shape = 0.1, (200, 300)
    in_deg, out_deg = graphs.unit_degrees(sample_er_mask(shape, p, seed=3))
    # exact-count masks keep round(p n) weights, so the means are exact
    assert in_deg.mean() == pytest.approx(p * shape[1])
    assert out_deg.mean() == pytest.approx(p * shape[0])
    # and the spread is the binomial one, fan_in p (1 - p), within sampling error
    assert in_deg.var() == pytest.approx(shape[1] * p * (1 - p), rel=0.25)


def test_isolated_units_match_closed_form():
    n_out, fan_in, p = 300, 40, 0.05
    counts = [graphs.layer_topology(sample_er_mask((n_out, fan_in), p, seed=s)).outputs_without_inputs
              for s in range(60)]
    exact = n_out * graphs.prob_unit_isolated(fan_in, p, n_weights=n_out * fan_in)
    bernoulli = graphs.expected_isolated_units(n_out, fan_in, p)
    assert bernoulli == pytest.approx(n_out * 0.95 ** 40)
    assert exact == pytest.approx(bernoulli, rel=0.02)   # hypergeometric vs binomial: same to 2 %
    sem = np.std(counts) / math.sqrt(len(counts))
    assert abs(np.mean(counts) - exact) < 4 * sem


def test_prob_unit_isolated_limits():
    assert graphs.prob_unit_isolated(5, 1.0) == 0.0
    assert graphs.prob_unit_isolated(5, 0.0) == 1.0
    # keeping more than n - fan_in weights leaves no room for an empty unit
    assert graphs.prob_unit_isolated(5, 0.9, n_weights=10) == 0.0


def test_expected_path_count_is_exact_in_mean():
    widths, p = [6, 8, 8, 3], 0.3
    shapes = [(8, 6), (8, 8), (3, 8)]
    samples = []
    for s in range(300):
        masks = [sample_er_mask(sh, p, seed=1000 * s + i) for i, sh in enumerate(shapes)]
        samples.append(graphs.count_paths(graphs.chain_adjacencies(masks)))
    realized = [round(p * math.prod(sh)) / math.prod(sh) for sh in shapes]
    expected = graphs.expected_path_count(widths, realized)
    sem = np.std(samples) / math.sqrt(len(samples))
    assert abs(np.mean(samples) - expected) < 4 * sem
    assert graphs.expected_path_count(widths, [1, 1, 1]) == math.prod(widths)


# ----------------------------------------------------------------------------- chains


def _brute_force_paths(masks):
    g = graphs.network_graph(masks)
    sizes = g.graph["unit_layer_sizes"]
    last = len(sizes) - 1
    n = 0
    for i in range(sizes[0]):
        for o in range(sizes[-1]):
            n += sum(1 for _ in nx.all_simple_paths(g, (0, i), (last, o)))
    return n


def test_paths_and_reachability_by_hand():
    a1 = torch.tensor([[1, 1, 0], [0, 0, 0]], dtype=torch.bool)     # hidden unit 1 receives nothing
    a2 = torch.tensor([[1, 1], [1, 0]], dtype=torch.bool)
    topo = graphs.network_topology({"fc1": a1, "fc2": a2})
    assert topo.paths == 4  # inputs 0 and 1 -> hidden 0 -> outputs 0 and 1
    assert topo.inputs_reaching_output == pytest.approx(2 / 3)
    assert topo.outputs_reached == 1.0
    assert topo.units_on_paths == [2, 1, 2]
    # kept weights on paths: both of fc1's, and fc2's from hidden 0 (2); fc2[0, 1] starts at a dead unit
    assert topo.effective_density == pytest.approx(4 / 10)
    assert topo.density == pytest.approx(5 / 10)
    assert "paths 4" in topo.summary()


def test_count_paths_matches_networkx_on_random_chains():
    for seed in range(3):
        masks = [sample_er_mask(s, 0.35, seed=seed * 10 + i) for i, s in enumerate([(5, 4), (6, 5), (3, 6)])]
        assert graphs.count_paths(graphs.chain_adjacencies(masks)) == _brute_force_paths(masks)


def test_flatten_joins_linear_inputs_to_channels():
    conv = torch.zeros(2, 1, 3, 3, dtype=torch.bool)
    conv[0, 0, 1, 1] = True                   # channel 0 alive, channel 1 receives nothing
    fc = torch.zeros(3, 2 * 4, dtype=torch.bool)   # 2 channels x 4 positions, channel-major
    fc[0, 2] = True                           # from channel 0
    fc[1, 5] = True                           # from channel 1 (dead)
    fc[2, 0] = fc[2, 3] = True                # two weights, same channel edge
    adjs = graphs.chain_adjacencies({"conv": conv, "fc": fc})
    assert adjs[1].toarray().tolist() == [[1, 0], [0, 1], [1, 0]]
    topo = graphs.network_topology({"conv": conv, "fc": fc})
    assert topo.paths == 2
    assert topo.outputs_reached == pytest.approx(2 / 3)
    assert topo.effective_density == pytest.approx((1 + 1 + 2) / (18 + 24))


def test_non_chain_is_refused_but_per_layer_stats_work():
    model = build_model("resnet20", in_shape=(3, 32, 32), num_classes=10)
    masks = sample_masks(model, 0.05, "erk", seed=0)
    with pytest.raises(ValueError, match="chain=False"):
        graphs.network_topology(masks)
    topo = graphs.network_topology(masks, chain=False)
    assert topo.paths is None and len(topo.layers) == len(layer_shapes(model))
    assert topo.density == pytest.approx(0.05, abs=1e-3)
    assert [t.name for t in topo.layers] == list(masks)


def test_resnet20_topology_counts_channels_and_weights():
    # Speed is benchmarks/widget_update.py's job; here: the statistics of a real ResNet-20 mask add up.
    model = build_model("resnet20", in_shape=(3, 32, 32), num_classes=10)
    masks = sample_masks(model, 0.01, "uniform", seed=0)
    topo = graphs.network_topology(masks, chain=False)
    assert sum(t.kept for t in topo.layers) == sum(int(m.sum()) for m in masks.values())
    for t, m in zip(topo.layers, masks.values()):
        assert (t.n_out, t.n_in) == tuple(m.shape[:2])
        assert t.channel_density >= t.density  # a channel edge needs only one surviving kernel entry


# ----------------------------------------------------------------------------- networkx views


def test_network_graph_subsamples_and_marks_dead_units():
    model = build_model("mlp", in_shape=(40,), num_classes=10)
    masks = sample_masks(model, 0.01, "uniform", seed=0)
    g = graphs.network_graph(masks, max_units=12)
    sizes = g.graph["unit_layer_sizes"]
    assert sizes == [40, 300, 100, 10]
    per_layer = [sum(1 for _, d in g.nodes(data=True) if d["layer"] == l) for l in range(4)]
    assert per_layer == [12, 12, 12, 10]
    assert all(g.nodes[u]["layer"] + 1 == g.nodes[v]["layer"] for u, v in g.edges)
    assert any(not d["on_path"] for _, d in g.nodes(data=True))  # p = 0.01 cuts units off
    topo = graphs.network_topology(masks)
    full = graphs.network_graph(masks)
    on_path = [sum(1 for _, d in full.nodes(data=True) if d["layer"] == l and d["on_path"]) for l in range(4)]
    assert on_path == topo.units_on_paths


def test_layer_graph_is_bipartite_with_kept_edges():
    mask = sample_er_mask((7, 9), 0.3, seed=1)
    g = graphs.layer_graph(mask)
    assert g.number_of_edges() == int(mask.sum())
    assert nx.is_bipartite(g)
    assert {d["name"] for _, d in g.nodes(data=True)} == {"input", "layer0"}


def test_layered_positions_do_not_depend_on_insertion_order():
    mask = sample_er_mask((6, 5), 0.4, seed=2)
    g = graphs.layer_graph(mask)
    h = nx.DiGraph()
    h.add_nodes_from(reversed(list(g.nodes(data=True))))
    h.add_edges_from(g.edges)
    pos_g, pos_h = graphs.layered_positions(g), graphs.layered_positions(h)
    assert pos_g == pos_h
    assert pos_g[(0, 0)] == (0.0, 1.0) and pos_g[(1, 5)] == (1.0, -1.0)
    with pytest.raises(ValueError, match="layer"):
        graphs.layered_positions(nx.path_graph(3))


# ----------------------------------------------------------------------------- headless


def test_science_modules_stay_headless():
    code = (
        "import sys\n"
        "import rpbook.masks, rpbook.init, rpbook.train, rpbook.graphs\n"
        "bad = [m for m in ('matplotlib', 'rpbook.chapters', 'ipywidgets') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
