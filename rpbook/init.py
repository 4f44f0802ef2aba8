"""Sparsity-aware initialisation: scale each weight by its unit's real fan-in.

Chapter 5 (*Gradient flow*) teaches why this matters; chapter 3 uses it for
every random sparse network it trains. The formulas: appendix *Formulas and notation*, initialisations.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .validators import check_seed
from .masks import maskable_layers

INIT_METHODS: tuple[str, ...] = ("dense", "layer-scaled", "unit-scaled")


def check_init(method: object) -> str:
    """Return the canonical init name or raise ``ValueError`` listing the allowed ones."""
    if not isinstance(method, str) or method.strip().lower().replace("_", "-") not in INIT_METHODS:
        raise ValueError(f"unknown init {method!r}; allowed: {', '.join(INIT_METHODS)}")
    return method.strip().lower().replace("_", "-")


def fan_in_per_unit(mask: torch.Tensor) -> torch.Tensor:
    """Kept incoming weights of each output unit (row or filter) of a mask (chapter 5)."""
    return mask.reshape(mask.shape[0], -1).sum(dim=1)


@torch.no_grad()
def initialize_(
    model: nn.Module,
    method: str = "unit-scaled",
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    gain: float = 2.0,
) -> nn.Module:
    """Re-initialise every conv and linear weight of ``model`` in place, respecting its masks.

    Chapter 5, *Sparsity-aware initialisation*. All three draw ``N(0, σ²)``:

    - ``dense``: ``σ² = gain / fan_in`` with the layer's full fan-in (He/Kaiming);
      the mask is ignored, so a unit keeping ``m`` of ``fan_in`` inputs has its
      pre-activation variance shrunk by ``m / fan_in``.
    - ``layer-scaled``: the dense draw divided by ``sqrt(layer density)``; one
      correction for the whole layer.
    - ``unit-scaled`` (Evci et al. 2022): ``σ_i² = gain / max(1, m_i)`` with
      ``m_i`` the kept fan-in of output unit ``i``, so every unit starts with the
      same pre-activation variance whatever its fan-in.

    ``gain = 2`` preserves variance through ReLUs. Biases become 0, BatchNorm
    weights 1 and biases 0; masked weights stay exactly 0.

    Raises
    ------
    ValueError
        For an unknown method, a non-positive gain, or neither seed nor generator.
    """
    method = check_init(method)
    if isinstance(gain, bool) or not isinstance(gain, (int, float)) or not gain > 0 or math.isinf(gain):
        raise ValueError(f"gain must be a positive finite number, got {gain!r}")
    if generator is None:
        if seed is None:
            raise ValueError("pass a seed or a torch.Generator so that the initialisation is reproducible")
        generator = torch.Generator().manual_seed(check_seed(seed))
    for _, module in maskable_layers(model):
        weight = module.weight
        mask = getattr(module, "weight_mask", None)
        fan_in = weight[0].numel()
        # Draw on the CPU from our generator so every device gives the same numbers.
        noise = torch.randn(weight.shape, generator=generator)
        if method == "dense" or mask is None:
            std = torch.full((weight.shape[0],), math.sqrt(gain / fan_in))
        elif method == "layer-scaled":
            density = float(mask.float().mean())
            std = torch.full((weight.shape[0],), math.sqrt(gain / fan_in / max(density, 1.0 / mask.numel())))
        else:
            kept = fan_in_per_unit(mask.detach().float().cpu()).clamp(min=1.0)
            std = torch.sqrt(gain / kept)
        new = noise * std.view(-1, *([1] * (weight.dim() - 1)))
        if mask is not None:
            new = new * mask.detach().cpu().to(new.dtype)
        weight.copy_(new.to(weight.device, weight.dtype))
        if module.bias is not None:
            module.bias.zero_()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.affine:
            module.weight.fill_(1.0)
            module.bias.zero_()
    return model
