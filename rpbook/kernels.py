"""Real sparse execution: CSR/BSR weights, sparse training steps, structured masks, timing (chapter 8).

Every network of chapters 1–7 is a dense tensor times a 0/1 mask: it stores
and multiplies every zero, so it is never faster than the dense network.
Chapter 8 (*What sparsity buys*) converts such a masked model into one that
stores only the kept weights and computes with sparse kernels:

- :func:`sparsify` replaces each masked ``Linear`` by a :class:`CSRLinear`
  (or, for inference only, a :class:`BSRLinear`) and each masked ``Conv2d``
  by a :class:`CSRConv2d` (an ``unfold`` followed by the same sparse product;
  PyTorch has no sparse convolution kernel on the CPU);
- :class:`CSRLinear` trains too: its forward pass and its input gradient are
  sparse × dense products, and its weight gradient is computed only at the
  kept positions with a *sampled* dense–dense product
  (``torch.sparse.sampled_addmm``), so a step's cost follows the density;
  :meth:`CSRLinear.rewire_` runs a SET/RigL drop-and-grow on the sparse format;
- :func:`block_mask` and :func:`nm_mask` draw block-sparse and N:M
  (e.g. 2:4) masks at the same density as an ER mask;
- :func:`semi_structured_linear` is the CUDA path for 2:4 masks
  (``torch.sparse.to_sparse_semi_structured``); it refuses to run without CUDA;
- :func:`median_time` and :func:`fixed_threads` make the measurements of
  ``rpbook.experiments.kernel_timings`` comparable.

Nothing here imports matplotlib or widgets; the figures live in
``rpbook.chapters.ch8_what_sparsity_buys``.
"""
from __future__ import annotations

import contextlib
import copy
import math
import statistics
import time
import warnings
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .masks import check_density

#: Sparse weight layouts :func:`sparsify` can produce.
LAYOUTS: tuple[str, ...] = ("csr", "bsr")
#: Mask structures compared in chapter 8 at equal density.
PATTERNS: tuple[str, ...] = ("er", "block", "nm")
#: Bytes per index of :class:`CSRLinear` (int32; PyTorch's own default, int64, takes 8).
INDEX_BYTES = 4


@contextlib.contextmanager
def quiet_sparse_warnings() -> Iterator[None]:
    """Silence PyTorch's "sparse support is in beta" warnings inside the block (chapter 8)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*[Ss]parse.*beta.*")
        yield


# ----------------------------------------------------------------------------- CSR structure


def _check_mask(mask: torch.Tensor, shape: Sequence[int], what: str) -> torch.Tensor:
    if not isinstance(mask, torch.Tensor):
        raise ValueError(f"{what}: mask must be a tensor, got {type(mask).__name__}")
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(f"{what}: mask has shape {tuple(mask.shape)}, the weight has shape {tuple(shape)}")
    if mask.dtype != torch.bool and not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError(f"{what}: mask must contain only 0 and 1")
    return mask.detach().to("cpu").bool()


def _csr_structure(rows: torch.Tensor, cols: torch.Tensor, n_rows: int, n_cols: int) -> dict[str, torch.Tensor]:
    """CSR indices of a pattern given as row-major sorted (row, col) pairs, plus its transpose.

    ``perm`` reorders values from row-major order to the column-major order of
    the transpose: ``values_T = values[perm]`` is the CSR of ``W^T``.
    """
    crow = torch.zeros(n_rows + 1, dtype=torch.int64)
    crow[1:] = torch.cumsum(torch.bincount(rows, minlength=n_rows), 0)
    perm = torch.argsort(cols * n_rows + rows)
    t_crow = torch.zeros(n_cols + 1, dtype=torch.int64)
    t_crow[1:] = torch.cumsum(torch.bincount(cols, minlength=n_cols), 0)
    return {"crow": crow, "col": cols.clone(), "t_crow": t_crow, "t_col": rows[perm].clone(), "perm": perm}


class _CSRMatmul(torch.autograd.Function):
    """``y = x W^T + b`` with ``W`` in CSR; the weight gradient only at the kept positions (chapter 8)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, values: torch.Tensor, bias: torch.Tensor | None, layer: "CSRLinear"):
        weight = layer.weight_csr()              # cached; shares its values with the parameter
        if x.shape[0] == 1:                      # one example: a sparse matrix-vector product is cheaper
            out = (weight @ x[0]).unsqueeze(0)
        else:
            out = (weight @ x.t()).t()           # (out, B) -> (B, out)
        if bias is not None:
            out = out + bias
        ctx.layer = layer
        ctx.has_bias = bias is not None
        ctx.save_for_backward(x, values)
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x, values = ctx.saved_tensors
        layer = ctx.layer
        grad_x = grad_values = grad_bias = None
        if ctx.needs_input_grad[0]:
            # dL/dx = dL/dy W: a sparse product with W^T, stored as its own CSR (values permuted)
            grad_x = (layer.weight_t_csr(values.detach()) @ grad_out.t()).t()
        if ctx.needs_input_grad[1]:
            # dL/dW = (dL/dy)^T x, needed only where W is kept: a sampled dense-dense product (SDDMM)
            grad_values = torch.sparse.sampled_addmm(layer.weight_csr(), grad_out.t().contiguous(), x.contiguous(),
                                                     beta=0.0, alpha=1.0).values()
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad_out.sum(0)
        return grad_x, grad_values, grad_bias, None


class CSRLinear(nn.Module):
    """A linear layer that stores only its kept weights, in CSR, and trains them (chapter 8).

    ``values`` holds the ``nnz`` kept weights in row-major order; the buffers
    ``crow_indices``/``col_indices`` say where they sit. The forward pass is
    ``W x`` as a sparse × dense product; backward computes the input gradient
    with ``W^T`` (kept as a second CSR index over the same values) and the
    weight gradient only at the ``nnz`` kept positions with
    ``torch.sparse.sampled_addmm``. So no tensor of the dense weight's size
    is ever formed.

    Build one with :meth:`from_dense` (a ``Linear`` and its 0/1 mask).
    """

    def __init__(self, in_features: int, out_features: int, rows: torch.Tensor, cols: torch.Tensor,
                 values: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.values = nn.Parameter(values.detach().clone())
        self.bias = nn.Parameter(bias.detach().clone()) if bias is not None else None
        self._set_structure(rows, cols)
        with quiet_sparse_warnings():  # PyTorch warns once per process that CSR is beta: here, not mid-training
            self.weight_csr()

    def _set_structure(self, rows: torch.Tensor, cols: torch.Tensor) -> None:
        s = _csr_structure(rows.cpu(), cols.cpu(), self.out_features, self.in_features)
        device = self.values.device
        # int32 indices when they fit: half the index memory, and faster kernels (measured in chapter 8)
        small = max(rows.numel(), self.out_features, self.in_features) < 2**31 - 1
        index = torch.int32 if small else torch.int64
        for name, tensor in (("crow_indices", s["crow"]), ("col_indices", s["col"]), ("t_crow_indices", s["t_crow"]),
                             ("t_col_indices", s["t_col"])):
            self.register_buffer(name, tensor.to(device, index))
        self.register_buffer("t_perm", s["perm"].to(device))
        self._cache: tuple | None = None

    @classmethod
    def from_dense(cls, linear: nn.Linear, mask: torch.Tensor | None = None) -> "CSRLinear":
        """The CSR version of ``linear``, keeping the weights where ``mask`` is 1 (default: its nonzeros).

        Chapter 8, *Sparse inference for real*. A masked ``Linear`` of
        :class:`rpbook.masks.Masking` carries its mask as ``weight_mask``; that
        one is used when ``mask`` is not given.
        """
        if not isinstance(linear, nn.Linear):
            raise ValueError(f"CSRLinear.from_dense needs an nn.Linear, got {type(linear).__name__}")
        weight = linear.weight.detach()
        if mask is None:
            mask = getattr(linear, "weight_mask", None)
            mask = weight != 0 if mask is None else mask
        mask = _check_mask(mask, weight.shape, "CSRLinear.from_dense")
        rows, cols = mask.nonzero(as_tuple=True)  # row-major order: the order of CSR values
        values = weight[rows.to(weight.device), cols.to(weight.device)]
        return cls(linear.in_features, linear.out_features, rows, cols, values, linear.bias)

    # -- views of the weight
    @property
    def nnz(self) -> int:
        return int(self.values.numel())

    @property
    def density(self) -> float:
        return self.nnz / (self.in_features * self.out_features)

    def weight_csr(self, values: torch.Tensor | None = None) -> torch.Tensor:
        """The weight as a ``torch.sparse_csr_tensor`` of shape ``(out, in)``.

        Without ``values`` it is built once and kept: it shares its values
        with the ``values`` parameter, so in-place optimizer steps show up in
        it; a new parameter tensor (``rewire_``, ``.to(device)``) rebuilds it.
        """
        if values is None:
            key = self.values.data_ptr()  # _set_structure resets the cache when the indices change
            cache = self._cache
            if cache is None or cache[0] != key:
                cache = self._cache = (key, self._build(self.crow_indices, self.col_indices, self.values.detach(),
                                                        (self.out_features, self.in_features)))
            return cache[1]
        return self._build(self.crow_indices, self.col_indices, values, (self.out_features, self.in_features))

    def weight_t_csr(self, values: torch.Tensor | None = None) -> torch.Tensor:
        """``W^T`` in CSR, shape ``(in, out)``, with the values permuted (a copy)."""
        values = self.values.detach() if values is None else values
        return self._build(self.t_crow_indices, self.t_col_indices, values[self.t_perm],
                           (self.in_features, self.out_features))

    @staticmethod
    def _build(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
        return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)

    def mask(self) -> torch.Tensor:
        """The 0/1 pattern as a dense ``bool`` tensor (for checks and for converting back)."""
        rows, cols = self.rows_cols()
        out = torch.zeros(self.out_features, self.in_features, dtype=torch.bool, device=self.values.device)
        out[rows, cols] = True
        return out

    def rows_cols(self) -> tuple[torch.Tensor, torch.Tensor]:
        counts = (self.crow_indices[1:] - self.crow_indices[:-1]).long()
        rows = torch.repeat_interleave(torch.arange(self.out_features, device=counts.device), counts)
        return rows, self.col_indices.long()

    def to_dense_weight(self) -> torch.Tensor:
        """The dense weight with zeros where nothing is kept."""
        return self.weight_csr(self.values.detach()).to_dense()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        if torch.is_grad_enabled() and (x.requires_grad or self.values.requires_grad):
            out = _CSRMatmul.apply(x2, self.values, self.bias, self)
        else:  # inference: skip the autograd bookkeeping (about 10 µs a call, as much as a small product)
            weight, bias = self.weight_csr(), self.bias
            if x2.shape[0] == 1:
                out = (weight @ x2[0]).unsqueeze(0)
            else:
                out = (weight @ x2.t()).t()
            if bias is not None:
                out = out + bias
        return out.reshape(*lead, self.out_features)

    def weight_bytes(self) -> int:
        """Bytes of the weight: values plus row pointers and column indices (chapter 8, *Memory*)."""
        return (self.nnz * self.values.element_size() + self.crow_indices.numel() * self.crow_indices.element_size()
                + self.col_indices.numel() * self.col_indices.element_size())

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, nnz={self.nnz}, " \
               f"density={self.density:.4g}, bias={self.bias is not None}"

    # -- dynamic sparse training on the sparse format
    @torch.no_grad()
    def rewire_(self, fraction: float, *, grow: str = "random", generator: torch.Generator | None = None,
                dense_grad: torch.Tensor | None = None, optimizer: torch.optim.Optimizer | None = None) -> int:
        """SET/RigL on the CSR format: drop the ``k`` smallest ``|w|``, grow ``k`` new positions (chapter 8).

        ``k = round(fraction · nnz)``, so ``nnz`` stays the same and the
        ``values`` parameter keeps its identity (optimizers keep working).
        ``grow="random"`` (SET) picks the new positions uniformly among the
        empty ones with ``generator``; ``grow="gradient"`` (RigL) picks the
        empty positions of largest ``|dense_grad|`` (the caller computes that
        dense gradient every ΔT steps, which is RigL's occasional dense cost).
        Grown weights start at 0, as in RigL. Survivors keep their values and
        their optimizer state (``optimizer``: each per-value state tensor is
        carried along; new positions start with zero state).

        Returns
        -------
        int
            ``k``, the number of positions swapped.
        """
        if not 0 <= fraction <= 1:
            raise ValueError(f"fraction must be in [0, 1], got {fraction!r}")
        if grow not in ("random", "gradient"):
            raise ValueError(f"grow must be 'random' (SET) or 'gradient' (RigL), got {grow!r}")
        total = self.in_features * self.out_features
        k = min(int(round(fraction * self.nnz)), total - self.nnz)
        if k == 0:
            return 0
        rows, cols = self.rows_cols()
        keep = torch.ones(self.nnz, dtype=torch.bool, device=self.values.device)
        # ties go to the lower position, as in rpbook.dst.drop_and_grow
        order = torch.argsort(self.values.abs(), stable=True)
        keep[order[:k]] = False
        occupied = torch.zeros(total, dtype=torch.bool, device=self.values.device)
        occupied[(rows * self.in_features + cols)[keep]] = True
        if grow == "random":
            free = (~occupied).nonzero(as_tuple=True)[0]
            pick = torch.randperm(free.numel(), generator=generator)[:k].to(free.device)
            new_flat = free[pick]
        else:
            if dense_grad is None or tuple(dense_grad.shape) != (self.out_features, self.in_features):
                raise ValueError(f"grow='gradient' needs dense_grad of shape {(self.out_features, self.in_features)}")
            score = dense_grad.detach().abs().flatten().to(self.values.device).clone()
            score[occupied] = -1.0
            new_flat = torch.topk(score, k, sorted=False).indices
        old_flat = (rows * self.in_features + cols)[keep]
        flat = torch.cat([old_flat, new_flat])
        source = torch.cat([keep.nonzero(as_tuple=True)[0], torch.full((k,), -1, device=flat.device)])
        order = torch.argsort(flat)
        flat, source = flat[order], source[order]

        def carry(old: torch.Tensor) -> torch.Tensor:
            new = torch.zeros_like(old)
            ok = source >= 0
            new[ok] = old[source[ok]]
            return new

        state = optimizer.state.get(self.values, {}) if optimizer is not None else {}
        for key, value in list(state.items()):
            if isinstance(value, torch.Tensor) and value.shape == self.values.shape:
                state[key] = carry(value)
        self.values.data = carry(self.values.data)
        self._set_structure(flat // self.in_features, flat % self.in_features)
        return k


class CSRConv2d(nn.Module):
    """A convolution with a CSR weight: ``unfold`` (im2col), then the :class:`CSRLinear` product (chapter 8).

    PyTorch has no sparse convolution kernel on the CPU; lowering the
    convolution to a matrix product is the standard workaround. The unfolded
    input is ``kernel_h · kernel_w`` times larger than the input, which is
    part of the gap to the ideal speed-up. Groups other than 1 are refused.
    """

    def __init__(self, conv: nn.Conv2d, mask: torch.Tensor | None = None):
        super().__init__()
        if not isinstance(conv, nn.Conv2d):
            raise ValueError(f"CSRConv2d needs an nn.Conv2d, got {type(conv).__name__}")
        if conv.groups != 1 or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError("CSRConv2d supports groups=1, zero padding given as numbers; got "
                             f"groups={conv.groups}, padding={conv.padding!r}, padding_mode={conv.padding_mode!r}")
        weight = conv.weight.detach()
        if mask is None:
            mask = getattr(conv, "weight_mask", None)
            mask = weight != 0 if mask is None else mask
        mask = _check_mask(mask, weight.shape, "CSRConv2d")
        self.out_channels, self.in_channels = conv.out_channels, conv.in_channels
        self.kernel_size, self.stride = conv.kernel_size, conv.stride
        self.padding, self.dilation = conv.padding, conv.dilation
        flat = nn.Linear(weight[0].numel(), conv.out_channels, bias=conv.bias is not None)
        with torch.no_grad():
            flat.weight.copy_(weight.reshape(conv.out_channels, -1))
            if conv.bias is not None:
                flat.bias.copy_(conv.bias)
        self.linear = CSRLinear.from_dense(flat.to(weight.device), mask.reshape(conv.out_channels, -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        cols = F.unfold(x, self.kernel_size, dilation=self.dilation, padding=self.padding, stride=self.stride)
        oh = (h + 2 * self.padding[0] - self.dilation[0] * (self.kernel_size[0] - 1) - 1) // self.stride[0] + 1
        ow = (w + 2 * self.padding[1] - self.dilation[1] * (self.kernel_size[1] - 1) - 1) // self.stride[1] + 1
        out = self.linear(cols.transpose(1, 2))          # (N, L, out)
        return out.transpose(1, 2).reshape(n, self.out_channels, oh, ow)

    def weight_bytes(self) -> int:
        return self.linear.weight_bytes()


class BSRLinear(nn.Module):
    """Inference-only linear layer with a block-sparse (BSR) weight (chapter 8, *Structure*).

    Stores every block that holds at least one kept weight, zeros included,
    so it pays off only for block-structured masks (:func:`block_mask`).
    """

    def __init__(self, linear: nn.Linear, blocksize: int, mask: torch.Tensor | None = None):
        super().__init__()
        if not isinstance(linear, nn.Linear):
            raise ValueError(f"BSRLinear needs an nn.Linear, got {type(linear).__name__}")
        out_f, in_f = linear.weight.shape
        if isinstance(blocksize, bool) or not isinstance(blocksize, int) or blocksize < 1 \
                or out_f % blocksize or in_f % blocksize:
            raise ValueError(f"blocksize must be a positive integer dividing both weight dimensions {(out_f, in_f)}, "
                             f"got {blocksize!r}")
        weight = linear.weight.detach()
        if mask is None:
            mask = getattr(linear, "weight_mask", None)
            mask = weight != 0 if mask is None else mask
        mask = _check_mask(mask, weight.shape, "BSRLinear")
        with quiet_sparse_warnings():
            self.register_buffer("weight", (weight * mask.to(weight.device, weight.dtype)).to_sparse_bsr((blocksize, blocksize)))
        self.bias = nn.Parameter(linear.bias.detach().clone()) if linear.bias is not None else None
        self.in_features, self.out_features, self.blocksize = in_f, out_f, blocksize

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        with quiet_sparse_warnings():
            out = (self.weight @ x.reshape(-1, self.in_features).t()).t()
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*lead, self.out_features)

    def weight_bytes(self) -> int:
        w = self.weight
        return (w.values().numel() * w.values().element_size() + w.crow_indices().numel() * w.crow_indices().element_size()
                + w.col_indices().numel() * w.col_indices().element_size())


def _layer_mask(module: nn.Module) -> torch.Tensor | None:
    return getattr(module, "weight_mask", None)


def sparsify(model: nn.Module, *, layout: str = "csr", blocksize: int = 16, min_sparsity: float = 0.0) -> nn.Module:
    """A copy of ``model`` in which each masked ``Linear``/``Conv2d`` computes with a sparse weight (chapter 8).

    A layer is converted when it carries a mask (``weight_mask``, as
    :class:`rpbook.masks.Masking` leaves it) or, without one, when at least
    ``min_sparsity`` of its weights are exactly zero (``min_sparsity=0``
    converts every ``Linear``/``Conv2d``). ``layout="csr"`` gives
    :class:`CSRLinear`/:class:`CSRConv2d` (trainable); ``"bsr"`` gives
    inference-only :class:`BSRLinear` with ``blocksize × blocksize`` blocks
    (convolutions stay CSR). The original model is not changed; outputs
    agree with it to float rounding.

    Raises
    ------
    ValueError
        For an unknown layout, a ``min_sparsity`` outside [0, 1], or a layer
        whose shape the layout cannot take.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; allowed: {', '.join(LAYOUTS)}")
    if not 0 <= min_sparsity <= 1:
        raise ValueError(f"min_sparsity must be in [0, 1], got {min_sparsity!r}")
    # copy.deepcopy keeps the weight_mask buffers, which is all we need (no gradient hooks on a copy)
    out = copy.deepcopy(model)

    def converted(layer: nn.Module) -> nn.Module | None:
        mask = _layer_mask(layer)
        if mask is None and float((layer.weight == 0).float().mean()) < min_sparsity:
            return None
        if isinstance(layer, nn.Conv2d):
            return CSRConv2d(layer, mask)
        if layout == "bsr":
            return BSRLinear(layer, blocksize, mask)
        return CSRLinear.from_dense(layer, mask)

    def convert(parent: nn.Module) -> None:
        for name, child in parent.named_children():
            if isinstance(child, (nn.Linear, nn.Conv2d)):
                new = converted(child)
                if new is not None:
                    setattr(parent, name, new)
            else:
                convert(child)

    if isinstance(out, (nn.Linear, nn.Conv2d)):  # a single layer
        return converted(out) or out
    convert(out)
    return out


def weight_bytes(model: nn.Module) -> dict[str, int]:
    """Bytes of the conv/linear weights of ``model``, dense or sparse (chapter 8, *Memory*).

    Returns
    -------
    dict
        ``values`` (stored weight values), ``indices`` (CSR/BSR row pointers
        and column indices) and ``total``. A dense layer stores all its
        weights and no indices.
    """
    values = indices = 0
    for module in model.modules():
        if isinstance(module, CSRConv2d):
            continue  # counted through its CSRLinear
        if isinstance(module, (CSRLinear, BSRLinear)):
            total = module.weight_bytes()
            v = module.values if isinstance(module, CSRLinear) else module.weight.values()
            values += v.numel() * v.element_size()
            indices += total - v.numel() * v.element_size()
        elif isinstance(module, (nn.Linear, nn.Conv2d)):
            values += module.weight.numel() * module.weight.element_size()
    return {"values": values, "indices": indices, "total": values + indices}


def csr_bytes(rows: int, cols: int, nnz: int, value_bytes: int = 4, index_bytes: int = INDEX_BYTES) -> int:
    """Bytes of a CSR matrix: ``nnz`` values and column indices plus ``rows + 1`` row pointers (chapter 8).

    With float32 values and int32 indices that is ``8 nnz + 4 (rows + 1)``:
    CSR needs less memory than the dense ``4 rows cols`` only below a density
    of about 1/2 (about 1/3 with PyTorch's default int64 indices).
    """
    return nnz * (value_bytes + index_bytes) + (rows + 1) * index_bytes


# ----------------------------------------------------------------------------- training steps


def training_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                  masking=None) -> float:
    """One SGD step on cross-entropy; re-applies ``masking`` after the step (chapter 8).

    The same function times the masked dense step (a dense model with a
    :class:`rpbook.masks.Masking`) and the sparse step (a :func:`sparsify`-ed
    model), so the two differ only in their kernels. Returns the loss.
    """
    optimizer.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    if masking is not None:
        masking.apply_()
    return float(loss.detach())


# ----------------------------------------------------------------------------- structured masks


def _check_shape(shape: Sequence[int]) -> tuple[int, int]:
    shape = tuple(int(d) for d in shape)
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"structured masks are for 2-d weights (out, in) with positive sizes, got {shape}")
    return shape  # type: ignore[return-value]


def block_mask(shape: Sequence[int], density: float, block: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random block-sparse mask: ``round(density · blocks)`` whole ``block × block`` tiles kept (chapter 8).

    Tiles are drawn uniformly without replacement on the grid of
    ``ceil(out/block) × ceil(in/block)`` tiles; edge tiles are cropped, so the
    realized density can differ slightly from ``density`` when ``block`` does
    not divide the shape. At least one tile is kept.
    """
    out_f, in_f = _check_shape(shape)
    density = check_density(density)
    if isinstance(block, bool) or not isinstance(block, int) or block < 1:
        raise ValueError(f"block must be a positive integer, got {block!r}")
    nb_r, nb_c = math.ceil(out_f / block), math.ceil(in_f / block)
    k = max(1, int(round(density * nb_r * nb_c)))
    tiles = torch.zeros(nb_r * nb_c, dtype=torch.bool)
    tiles[torch.randperm(nb_r * nb_c, generator=generator)[:k]] = True
    full = tiles.view(nb_r, nb_c).repeat_interleave(block, 0).repeat_interleave(block, 1)
    return full[:out_f, :in_f].contiguous()


def nm_for_density(density: float) -> tuple[int, int]:
    """The N:M pattern with density ``N/M = density``: 2:4 at 0.5, else 1:M (chapter 8).

    Raises ``ValueError`` when ``1/density`` is not (close to) an integer.
    """
    density = check_density(density)
    if abs(density - 0.5) < 1e-12:
        return 2, 4
    m = round(1 / density)
    if abs(1 / m - density) > 1e-9:
        raise ValueError(f"no N:M pattern with N/M = {density!r}; use a density 1/M, e.g. 0.25, 0.125, 0.0625")
    return 1, m


def nm_mask(shape: Sequence[int], n: int, m: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random N:M mask: in every group of ``m`` consecutive inputs of a row, ``n`` kept (chapter 8).

    2:4 is the pattern NVIDIA's sparse tensor cores accelerate
    (Mishra et al. 2021). Groups run along the input dimension; when ``m``
    does not divide it, the last group is cropped (and keeps at most its size).
    """
    out_f, in_f = _check_shape(shape)
    if isinstance(n, bool) or isinstance(m, bool) or not isinstance(n, int) or not isinstance(m, int) or not 1 <= n <= m:
        raise ValueError(f"need integers 1 <= n <= m, got n={n!r}, m={m!r}")
    groups = math.ceil(in_f / m)
    scores = torch.rand(out_f, groups, m, generator=generator)
    keep = torch.zeros(out_f, groups, m, dtype=torch.bool)
    keep.scatter_(2, torch.topk(scores, n, dim=2).indices, True)
    return keep.reshape(out_f, groups * m)[:, :in_f].contiguous()


def structured_mask(shape: Sequence[int], density: float, pattern: str, *, block: int = 8,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """A mask of ``pattern`` (``er``, ``block`` or ``nm``) at ``density`` (chapter 8, *Structure vs randomness*)."""
    from .masks import sample_er_mask

    if pattern not in PATTERNS:
        raise ValueError(f"unknown mask pattern {pattern!r}; allowed: {', '.join(PATTERNS)}")
    if pattern == "er":
        return sample_er_mask(_check_shape(shape), density, generator=generator or torch.Generator().manual_seed(0))
    if pattern == "block":
        return block_mask(shape, density, block, generator=generator)
    n, m = nm_for_density(density)
    return nm_mask(shape, n, m, generator=generator)


def is_nm(mask: torch.Tensor, n: int, m: int) -> bool:
    """Whether every full group of ``m`` consecutive inputs of every row keeps exactly ``n`` (chapter 8)."""
    full = mask.shape[1] // m * m
    return bool((mask[:, :full].reshape(mask.shape[0], -1, m).sum(-1) == n).all())


# ----------------------------------------------------------------------------- 2:4 on CUDA


def semi_structured_linear(linear: nn.Linear, mask: torch.Tensor | None = None) -> nn.Linear:
    """A copy of ``linear`` whose 2:4-masked weight runs on sparse tensor cores (CUDA only; chapter 8).

    Uses ``torch.sparse.to_sparse_semi_structured``, which needs a CUDA GPU
    with sparse tensor cores (compute capability 8.0+), float16/bfloat16
    weights and sizes that are multiples of 64 (or 128). On this book's CPU
    builds it raises ``ValueError`` before doing anything.
    """
    if not torch.cuda.is_available():
        raise ValueError("semi-structured (2:4) sparsity needs a CUDA GPU; none is available here")
    from torch.sparse import to_sparse_semi_structured

    weight = linear.weight.detach()
    mask = _check_mask(weight != 0 if mask is None else mask, weight.shape, "semi_structured_linear")
    if not is_nm(mask, 2, 4):
        raise ValueError("semi_structured_linear needs a 2:4 mask (2 kept in every 4 consecutive inputs)")
    out = copy.deepcopy(linear).half().cuda()
    out.weight = nn.Parameter(to_sparse_semi_structured(out.weight.detach() * mask.cuda().half()), requires_grad=False)
    return out


# ----------------------------------------------------------------------------- timing


#: Clocks :func:`median_time` can read: the CPU time of the calling thread, or the wall clock.
CLOCKS: dict[str, Callable[[], float]] = {"thread": time.thread_time, "wall": time.perf_counter}


def _clock(name: str) -> Callable[[], float]:
    if name not in CLOCKS:
        raise ValueError(f"unknown clock {name!r}; allowed: {', '.join(CLOCKS)}")
    return CLOCKS[name]


@contextlib.contextmanager
def fixed_threads(threads: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(threads)``, then restore (chapter 8, *How we measure*)."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def median_time(fn: Callable[[], object], *, repeats: int = 20, warmup: int = 3, min_time_s: float = 0.0,
                clock: str = "thread") -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls after ``warmup`` calls (chapter 8, *How we measure*).

    ``clock="thread"`` (default) reads the CPU time of the calling thread:
    with one torch thread all the arithmetic runs there, and time spent
    waiting while other processes use the CPU is not counted, which on a
    shared machine is most of the noise. ``clock="wall"`` reads the wall
    clock (what a user waits). The median ignores the occasional slowed call;
    the warm-up calls let caches, allocators and lazily built kernels settle.
    ``min_time_s`` repeats a very fast ``fn`` inside each timed call until
    that much time has passed, and divides (timer resolution).
    """
    now = _clock(clock)
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be a non-negative integer, got {warmup!r}")
    for _ in range(warmup):
        fn()
    inner = 1
    if min_time_s > 0:
        start = now()
        fn()
        once = max(now() - start, 1e-9)
        inner = max(1, int(math.ceil(min_time_s / once)))
    times = []
    for _ in range(repeats):
        start = now()
        for _ in range(inner):
            fn()
        times.append((now() - start) / inner)
    return float(statistics.median(times))


def interleaved_median_times(fns: dict[str, Callable[[], object]], *, repeats: int = 20, warmup: int = 3,
                             min_time_s: float = 0.0, clock: str = "thread") -> dict[str, float]:
    """Median seconds per call of each function, timed in turns: A, B, A, B, ... (chapter 8, *How we measure*).

    On a shared machine the load changes from second to second. Timing the
    contenders in alternation exposes them to the same load, so their
    *ratio* is steadier than that of two medians measured one after the
    other. Each function gets :func:`median_time`'s warm-up and inner-loop
    treatment, and the same ``clock``.
    """
    now = _clock(clock)
    if not fns:
        raise ValueError("need at least one function to time")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be a non-negative integer, got {warmup!r}")
    inner = {}
    for name, fn in fns.items():
        for _ in range(warmup):
            fn()
        start = now()
        fn()
        once = max(now() - start, 1e-9)
        inner[name] = max(1, int(math.ceil(min_time_s / once))) if min_time_s > 0 else 1
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = now()
            for _ in range(inner[name]):
                fn()
            times[name].append((now() - start) / inner[name])
    return {name: float(statistics.median(t)) for name, t in times.items()}


def crossover_density(densities: Sequence[float], speedups: Sequence[float]) -> float | None:
    """The density below which the sparse kernel is faster (speed-up > 1), interpolated in log–log (chapter 8).

    Scans from the sparsest density up and returns the first density at which
    the speed-up falls to 1, interpolating ``log speed-up`` linearly in
    ``log density`` between the two grid points around it. ``None`` if sparse
    is slower everywhere; the largest density if it is faster everywhere.
    """
    pts = sorted((float(p), float(s)) for p, s in zip(densities, speedups))
    if not pts:
        raise ValueError("need at least one (density, speed-up) pair")
    if pts[0][1] <= 1:
        return None
    for (p0, s0), (p1, s1) in zip(pts, pts[1:]):
        if s1 <= 1 < s0:
            l0, l1 = math.log(s0), math.log(s1)
            t = l0 / (l0 - l1) if l0 != l1 else 0.0
            return float(math.exp(math.log(p0) + t * (math.log(p1) - math.log(p0))))
    return pts[-1][0]


def machine_description() -> dict:
    """What a timing depends on: CPU model and capability, logical CPUs, threads, load (chapter 8).

    Stored with every kernel measurement, because a speed-up measured on one
    machine is a fact about that machine.
    """
    import os
    import platform

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        load = None
    return {
        "cpu": model,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "mkl": bool(torch.backends.mkl.is_available()),
        "load_average_1_5_15min": load,
        "torch_version": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
