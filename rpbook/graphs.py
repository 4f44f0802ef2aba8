"""Masks as random graphs: networkx views and topology statistics.

Chapter 2 (*ER masks as random graphs*) teaches everything in this module.

A layer's mask is a bipartite graph between its input units and its output
units. For a linear layer a unit is a neuron and every kept weight is an edge.
For a conv layer a unit is a channel and there is a *channel edge* from input
channel ``j`` to output channel ``i`` when any entry of the kernel slice
``mask[i, j]`` survives. A whole sequential network is a layered DAG: the
output units of one layer are the input units of the next.

The statistics work on ``scipy.sparse`` matrices (degrees, isolated units,
path counts, reachability), so they stay fast on real layer sizes; only the
drawings build networkx graphs, and those subsample large layers.

This module is headless: it never imports matplotlib. The drawings
themselves live in :mod:`rpbook.chapters.ch2_er_masks_as_graphs` (``draw_layered_graph``), which takes
the graphs and positions built here.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import networkx as nx
import numpy as np
import scipy.sparse as sp
import torch


# ----------------------------------------------------------------------------- inputs


def _as_bool_array(mask: object, what: str = "mask") -> np.ndarray:
    """A mask as a numpy bool array with >= 2 dims (conv or linear), or ValueError."""
    if isinstance(mask, torch.Tensor):
        arr = mask.detach().to("cpu").numpy()
    elif isinstance(mask, np.ndarray):
        arr = mask
    else:
        raise ValueError(f"{what} must be a torch.Tensor or numpy array, got {type(mask).__name__}")
    if arr.ndim < 2 or min(arr.shape) < 1:
        raise ValueError(f"{what} must have >= 2 positive dims (out, in[, k_h, k_w]), got shape {arr.shape}")
    if arr.dtype != np.bool_:
        if not np.isin(arr, (0, 1)).all():
            raise ValueError(f"{what} must contain only 0 and 1")
        arr = arr.astype(bool)
    return arr


def _named_masks(masks: object) -> list[tuple[str, np.ndarray]]:
    """``{name: mask}`` or a sequence of masks -> list of ``(name, bool array)`` in order."""
    if isinstance(masks, Mapping):
        items = list(masks.items())
    elif isinstance(masks, (list, tuple)):
        items = [(f"layer{i}", m) for i, m in enumerate(masks)]
    else:
        raise ValueError(f"masks must be a dict name -> mask or a list of masks, got {type(masks).__name__}")
    if not items:
        raise ValueError("masks is empty: need at least one layer")
    return [(str(name), _as_bool_array(m, f"mask {name!r}")) for name, m in items]


def _check_probability(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{what} must be a number in [0, 1], got {value!r}")
    return float(value)


def _check_count(value: object, what: str, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < low:
        raise ValueError(f"{what} must be an integer >= {low}, got {value!r}")
    return int(value)


# ----------------------------------------------------------------------------- one layer


def channel_adjacency(mask: torch.Tensor | np.ndarray) -> sp.csr_array:
    """The layer's bipartite graph as a sparse 0/1 matrix of shape ``(n_out, n_in)`` (chapter 2).

    Entry ``(i, j)`` is 1 when output unit ``i`` receives anything from input
    unit ``j``: the weight itself for a linear layer, any kernel entry of
    ``mask[i, j]`` for a conv layer (a channel edge).
    """
    m = _as_bool_array(mask)
    if m.ndim > 2:
        m = m.reshape(m.shape[0], m.shape[1], -1).any(axis=2)
    return sp.csr_array(m.astype(np.int8))


def weight_counts(mask: torch.Tensor | np.ndarray) -> sp.csr_array:
    """Kept weights between each output unit and each input unit, shape ``(n_out, n_in)`` (chapter 2).

    Equal to :func:`channel_adjacency` for a linear layer; for a conv layer
    entry ``(i, j)`` counts the surviving entries of the kernel slice ``mask[i, j]``.
    """
    m = _as_bool_array(mask)
    counts = m.reshape(m.shape[0], m.shape[1], -1).sum(axis=2, dtype=np.int32)
    return sp.csr_array(counts)


def unit_degrees(mask: torch.Tensor | np.ndarray, *, channels: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """In-degree of every output unit and out-degree of every input unit (chapter 2).

    Parameters
    ----------
    mask
        A linear ``(out, in)`` or conv ``(out, in, k_h, k_w)`` mask.
    channels
        Count channel edges (:func:`channel_adjacency`) instead of kept weights.
        For a linear layer both are the same.

    Returns
    -------
    (in_degree, out_degree)
        ``in_degree[i]`` = kept incoming weights (or channel edges) of output
        unit ``i``; ``out_degree[j]`` = kept outgoing ones of input unit ``j``.
        Under an ER mask of density ``p``, ``in_degree`` is close to
        ``Binomial(fan_in, p)`` (exactly hypergeometric for exact-count masks).
    """
    m = _as_bool_array(mask)
    if channels and m.ndim > 2:
        m = m.reshape(m.shape[0], m.shape[1], -1).any(axis=2)
    axes_in = tuple(range(1, m.ndim))
    axes_out = (0,) + tuple(range(2, m.ndim))
    return m.sum(axis=axes_in, dtype=np.int64), m.sum(axis=axes_out, dtype=np.int64)


@dataclass
class LayerTopology:
    """Topology of one layer's mask (chapter 2); see :func:`layer_topology`."""

    name: str
    shape: tuple[int, ...]
    n_in: int
    n_out: int
    fan_in: int
    kept: int
    density: float
    channel_density: float
    mean_in_degree: float
    outputs_without_inputs: int
    inputs_without_outputs: int
    expected_outputs_without_inputs: float

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def layer_topology(mask: torch.Tensor | np.ndarray, name: str = "") -> LayerTopology:
    """Degrees and isolated units of one layer's mask (chapter 2).

    ``outputs_without_inputs`` counts output units whose whole fan-in was
    pruned (they only pass on their bias); ``inputs_without_outputs`` counts
    input units none of whose outgoing weights survive (their value is lost).
    ``expected_outputs_without_inputs`` is ``n_out (1 - p)^fan_in``, the
    Bernoulli-mask expectation at this layer's realized density ``p``.
    """
    m = _as_bool_array(mask)
    in_deg, out_deg = unit_degrees(m)
    n_out, n_in = m.shape[0], m.shape[1]
    fan_in = int(np.prod(m.shape[1:]))
    kept = int(in_deg.sum())
    density = kept / m.size
    adj = channel_adjacency(m)
    return LayerTopology(
        name=name, shape=tuple(int(d) for d in m.shape), n_in=n_in, n_out=n_out, fan_in=fan_in, kept=kept,
        density=density, channel_density=adj.nnz / (n_out * n_in), mean_in_degree=float(in_deg.mean()),
        outputs_without_inputs=int((in_deg == 0).sum()), inputs_without_outputs=int((out_deg == 0).sum()),
        expected_outputs_without_inputs=expected_isolated_units(n_out, fan_in, density),
    )


# ----------------------------------------------------------------------------- closed forms


def prob_unit_isolated(fan_in: int, density: float, n_weights: int | None = None) -> float:
    """Probability that a unit with ``fan_in`` candidate weights keeps none of them (chapter 2).

    For a Bernoulli mask this is ``(1 - p)^fan_in``. Given ``n_weights`` (the
    layer's size), it is the exact value for an exact-count mask keeping
    ``round(p n)`` of ``n`` weights: ``C(n - fan_in, k) / C(n, k)``.
    """
    fan_in = _check_count(fan_in, "fan_in", 1)
    p = _check_probability(density, "density")
    if n_weights is None:
        return (1.0 - p) ** fan_in
    n = _check_count(n_weights, "n_weights", fan_in)
    k = int(round(p * n))
    if k > n - fan_in:
        return 0.0
    # log C(n - f, k) - log C(n, k), via lgamma for large layers
    lg = math.lgamma
    return math.exp(lg(n - fan_in + 1) - lg(n - fan_in - k + 1) - lg(n + 1) + lg(n - k + 1))


def expected_isolated_units(n_units: int, fan_in: int, density: float) -> float:
    """Expected number of units with no surviving input, ``n (1 - p)^fan_in`` (chapter 2).

    Each of ``n_units`` units keeps each of its ``fan_in`` incoming weights
    independently with probability ``p``.
    """
    return _check_count(n_units, "n_units") * prob_unit_isolated(fan_in, density)


def expected_path_count(widths: Sequence[int], densities: Sequence[float]) -> float:
    """Expected number of input-output paths in a masked MLP, ``prod(n_l) * prod(p_l)`` (chapter 2).

    ``widths`` are the unit counts ``n_0 (inputs), n_1, ..., n_L (outputs)``
    and ``densities`` the ``L`` layer densities. Each of the ``prod n_l``
    paths of the dense network survives when all of its ``L`` edges do,
    which (for independent Bernoulli edges) has probability ``prod p_l``.
    """
    widths = [_check_count(w, "width", 1) for w in widths]
    densities = [_check_probability(p, "density") for p in densities]
    if len(densities) != len(widths) - 1:
        raise ValueError(f"need one density per layer: {len(widths) - 1} layers but {len(densities)} densities")
    return float(math.prod(widths) * math.prod(densities))


# ----------------------------------------------------------------------------- whole network


def chain_adjacencies(masks: object) -> list[sp.csr_array]:
    """Channel adjacency of each layer of a sequential network, joined into one chain (chapter 2).

    Layer ``l`` must take the previous layer's outputs as inputs. When a
    linear layer follows a conv layer through a flatten, its ``k * c`` inputs
    are grouped into the ``c`` channels they came from (PyTorch flattens
    channel-major), so the chain stays at the channel level.

    Raises
    ------
    ValueError
        If a layer's input size is not a multiple of the previous layer's
        output size (e.g. a ResNet's shortcut layers: not a chain).
    """
    named = _named_masks(masks)
    adjs: list[sp.csr_array] = []
    prev_out: int | None = None
    for name, m in named:
        adj = channel_adjacency(m)
        n_in = adj.shape[1]
        if prev_out is not None and n_in != prev_out:
            if n_in % prev_out:
                raise ValueError(
                    f"layer {name!r} has {n_in} inputs but the previous layer has {prev_out} outputs: "
                    "the masks do not form a chain (networks with skip connections, such as ResNets, "
                    "need chain=False)"
                )
            k = n_in // prev_out
            group = sp.csr_array((np.ones(n_in, dtype=np.int8), (np.arange(n_in), np.arange(n_in) // k)),
                                 shape=(n_in, prev_out))
            adj = sp.csr_array((adj @ group) > 0).astype(np.int8)
        adjs.append(adj)
        prev_out = adj.shape[0]
    return adjs


def count_paths(adjacencies: Sequence[sp.csr_array]) -> float:
    """Number of input-to-output paths through a chain of layers (chapter 2).

    ``1ᵀ A_L ... A_1 1`` with each ``A_l`` the 0/1 ``(n_out, n_in)`` adjacency,
    computed as repeated sparse matrix-vector products in float64 (exact below
    ``2**53``, then a close approximation).
    """
    if not adjacencies:
        raise ValueError("need at least one layer")
    v = np.ones(adjacencies[0].shape[1], dtype=np.float64)
    for adj in adjacencies:
        v = adj.astype(np.float64) @ v
    return float(v.sum())


def reachability(adjacencies: Sequence[sp.csr_array]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Which units are reachable from some input, and which reach some output (chapter 2).

    Returns
    -------
    (forward, backward)
        Lists of bool arrays, one per unit layer (inputs first, outputs last).
        ``forward[l][i]``: unit ``i`` of layer ``l`` lies on a path from some
        input. ``backward[l][i]``: some output can be reached from it.
    """
    if not adjacencies:
        raise ValueError("need at least one layer")
    fwd = [np.ones(adjacencies[0].shape[1], dtype=bool)]
    for adj in adjacencies:
        fwd.append((adj @ fwd[-1].astype(np.int64)) > 0)
    bwd = [np.ones(adjacencies[-1].shape[0], dtype=bool)]
    for adj in reversed(adjacencies):
        bwd.append((adj.T @ bwd[-1].astype(np.int64)) > 0)
    bwd.reverse()
    return fwd, bwd


@dataclass
class NetworkTopology:
    """Topology of a whole masked network (chapter 2); see :func:`network_topology`.

    For a chain, ``paths`` counts input-output paths, ``inputs_reaching_output``
    is the fraction of inputs with a path to some output,
    ``outputs_reached`` the fraction of outputs with a path from some input,
    ``units_on_paths[l]`` the units of unit layer ``l`` on some input-output
    path and ``effective_density`` the fraction of all weights that are kept
    *and* on such a path (the rest are kept but useless). All of these are
    ``None`` when ``chain=False``.
    """

    layers: list[LayerTopology] = field(default_factory=list)
    paths: float | None = None
    inputs_reaching_output: float | None = None
    outputs_reached: float | None = None
    units_on_paths: list[int] | None = None
    effective_density: float | None = None

    @property
    def density(self) -> float:
        """Kept weights over all weights."""
        return sum(t.kept for t in self.layers) / sum(math.prod(t.shape) for t in self.layers)

    @property
    def isolated_units(self) -> int:
        """Output units without any input, summed over layers."""
        return sum(t.outputs_without_inputs for t in self.layers)

    def rows(self) -> list[dict]:
        """One dict per layer, for tables."""
        return [
            {"layer": t.name, "shape": "×".join(map(str, t.shape)), "density": t.density,
             "mean in-degree": t.mean_in_degree, "outputs w/o inputs": t.outputs_without_inputs,
             "expected": t.expected_outputs_without_inputs, "inputs w/o outputs": t.inputs_without_outputs}
            for t in self.layers
        ]

    def summary(self) -> str:
        """A few lines for a notebook cell."""
        lines = [f"density {self.density:.4f}, isolated output units {self.isolated_units}"]
        if self.paths is not None:
            lines.append(f"input-output paths {self.paths:.4g}; inputs reaching an output {self.inputs_reaching_output:.1%}; "
                         f"outputs reached {self.outputs_reached:.1%}; effective density {self.effective_density:.4f}")
        return "\n".join(lines)


def network_topology(masks: object, *, chain: bool = True) -> NetworkTopology:
    """Per-layer degrees and isolated units, plus paths and reachability for a chain (chapter 2).

    Parameters
    ----------
    masks
        ``{layer name: mask}`` in forward order (as :func:`rpbook.masks.sample_masks`
        returns them) or a list of masks.
    chain
        The layers form a sequential network (MLP, LeNet-5, VGG): compute
        paths and reachability over the channel-level layered DAG. Pass
        ``False`` for networks with skip connections (ResNets); then only the
        per-layer statistics are computed.
    """
    named = _named_masks(masks)
    topo = NetworkTopology(layers=[layer_topology(m, name) for name, m in named])
    if not chain:
        return topo
    adjs = chain_adjacencies(dict(named))
    fwd, bwd = reachability(adjs)
    topo.paths = count_paths(adjs)
    topo.inputs_reaching_output = float(bwd[0].mean())
    topo.outputs_reached = float(fwd[-1].mean())
    topo.units_on_paths = [int((f & b).sum()) for f, b in zip(fwd, bwd)]
    # A kept weight is useful when its input unit is reached from the inputs and
    # its output unit reaches the outputs. Flattened linear inputs map to channels.
    useful = 0
    for (name, m), f_in, b_out in zip(named, fwd[:-1], bwd[1:]):
        counts = weight_counts(m)
        if counts.shape[1] != f_in.size:
            f_in = np.repeat(f_in, counts.shape[1] // f_in.size)
        useful += int(counts[np.flatnonzero(b_out)][:, np.flatnonzero(f_in)].sum())
    topo.effective_density = useful / sum(m.size for _, m in named)
    return topo


# ----------------------------------------------------------------------------- networkx views


def _subsample(n: int, max_units: int | None) -> np.ndarray:
    """Evenly spaced unit indices: all of them, or ``max_units`` of them (deterministic)."""
    if max_units is None or n <= max_units:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_units).round().astype(int))


def layer_graph(mask: torch.Tensor | np.ndarray, *, max_units: int | None = None) -> nx.DiGraph:
    """One layer's mask as a bipartite networkx ``DiGraph`` (chapter 2).

    Nodes are ``(0, j)`` for input units and ``(1, i)`` for output units, with
    attributes ``layer`` and ``unit``; an edge ``(0, j) -> (1, i)`` for every
    kept weight (channel edge for conv layers). With ``max_units`` only that
    many evenly spaced units per side are kept, for drawing large layers.
    """
    return network_graph([mask], max_units=max_units)


def network_graph(masks: object, *, max_units: int | None = None) -> nx.DiGraph:
    """A sequential network's masks as a layered networkx DAG (chapter 2).

    Node ``(l, i)`` is unit ``i`` of unit layer ``l`` (``l = 0`` the inputs);
    conv layers contribute channels, and a linear layer after a flatten is
    joined at the channel level (:func:`chain_adjacencies`). Every node has
    attributes ``layer``, ``unit``, ``name`` (the weight layer feeding it,
    ``"input"`` for layer 0) and ``on_path`` (the unit lies on some
    input-output path of the *full* network, see :func:`reachability`). With ``max_units``, each unit layer keeps that
    many evenly spaced units, and only edges among kept units are drawn.
    """
    if max_units is not None:
        _check_count(max_units, "max_units", 1)
    named = _named_masks(masks)
    adjs = chain_adjacencies(dict(named))
    sizes = [adjs[0].shape[1]] + [a.shape[0] for a in adjs]
    names = ["input"] + [name for name, _ in named]
    keep = [_subsample(n, max_units) for n in sizes]
    fwd, bwd = reachability(adjs)
    g = nx.DiGraph()
    for l, idx in enumerate(keep):
        g.add_nodes_from(((l, int(i)), {"layer": l, "unit": int(i), "name": names[l],
                                        "on_path": bool(fwd[l][i] and bwd[l][i])}) for i in idx)
    for l, adj in enumerate(adjs):
        sub = sp.coo_array(adj[keep[l + 1]][:, keep[l]])
        g.add_edges_from(((l, int(keep[l][c])), (l + 1, int(keep[l + 1][r]))) for r, c in zip(sub.row, sub.col))
    g.graph["unit_layer_sizes"] = sizes
    g.graph["layer_names"] = names
    return g


def layered_positions(graph: nx.DiGraph, *, layer_gap: float = 1.0) -> dict:
    """Node positions for a layered drawing: ``x`` = layer, ``y`` = rank within the layer (chapter 2).

    Computed from the node attributes alone, so the drawing does not depend on
    set iteration order (``nx.bipartite_layout`` does, through ``PYTHONHASHSEED``).
    Each layer is centred on ``y = 0`` and spread over ``[-1, 1]``.
    """
    by_layer: dict[int, list[int]] = {}
    for node, data in graph.nodes(data=True):
        if "layer" not in data or "unit" not in data:
            raise ValueError(f"node {node!r} has no 'layer'/'unit' attributes; build the graph with network_graph")
        by_layer.setdefault(int(data["layer"]), []).append(int(data["unit"]))
    pos = {}
    for layer, units in by_layer.items():
        units = sorted(units)
        n = len(units)
        for rank, unit in enumerate(units):
            y = 0.0 if n == 1 else 1.0 - 2.0 * rank / (n - 1)
            pos[(layer, unit)] = (layer * layer_gap, y)
    return pos
