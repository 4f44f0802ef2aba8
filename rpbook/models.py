"""The model zoo: MLP, LeNet-5, Conv-2/4/6, CIFAR ResNets and VGG-16, all with a width multiplier.

Chapter 1 (*Start sparse*) counts their parameters; chapter 3 (*Training
random sparse networks*) trains random sparse versions of them and widens and
deepens them to close the gap to the dense network (Liu et al. 2022).

Conventions the rest of the package relies on:

- every weight layer is an ``nn.Conv2d`` or ``nn.Linear`` (the only types
  :mod:`rpbook.masks` masks; biases and BatchNorm are never masked);
- ``model.named_modules()`` yields those layers in forward order, input to
  output, so the first is the input layer and the last is the classifier;
- weights keep PyTorch's default initialisation: :func:`rpbook.init.initialize_`
  re-initialises them once the mask is known;
- no dropout, so a seeded run is deterministic.
"""
from __future__ import annotations

import math
import numbers
from collections import OrderedDict
from typing import Callable, Sequence

import torch
from torch import nn

from .validators import check_positive_int

MODEL_NAMES: tuple[str, ...] = ("mlp", "lenet5", "convnet", "resnet20", "resnet32", "resnet56", "vgg16")

MLP_HIDDEN: tuple[int, ...] = (300, 100)  # LeNet-300-100
MLP_DEPTH_UNITS = 100
LENET5_SIZES: tuple[int, int, int, int] = (6, 16, 120, 84)  # conv, conv, fc, fc (Evci et al. 2022)
CONVNET_DEPTHS: tuple[int, ...] = (2, 4, 6)
CONVNET_CHANNELS: tuple[int, ...] = (64, 128, 256)
CONVNET_HIDDEN: tuple[int, int] = (256, 256)
RESNET_WIDTHS: tuple[int, int, int] = (16, 32, 64)
VGG16_CONFIG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)


# ----------------------------------------------------------------------------- validation


def check_width(width: object) -> float:
    """Return ``width`` as a float > 0, or raise ``ValueError`` naming the bad value.

    Chapter 3, *Training random sparse networks*: the width multiplier scales
    every hidden layer of a model.
    """
    if isinstance(width, bool) or not isinstance(width, numbers.Real):
        raise ValueError(f"width must be a finite number > 0, got {width!r}")
    value = float(width)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"width must be a finite number > 0, got {width!r}")
    return value


def scale_width(n: int, width: float) -> int:
    """``n`` units times ``width``, rounded to the nearest integer and at least 1 (chapter 3).

    Rounds halves up rather than to even, so that e.g. 5 units at width 0.5
    gives 3 and widening never rounds a layer away to a surprising size.
    """
    return max(1, int(math.floor(n * check_width(width) + 0.5)))


def _check_in_shape(in_shape: object) -> tuple[int, ...]:
    if not isinstance(in_shape, (tuple, list, torch.Size)) or len(in_shape) == 0:
        raise ValueError(
            f"in_shape must be a non-empty tuple of positive ints such as (40,) or (1, 28, 28), got {in_shape!r}"
        )
    for n in in_shape:
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise ValueError(f"in_shape must contain positive ints, got {in_shape!r}")
    return tuple(int(n) for n in in_shape)


def _check_image_shape(in_shape: object, model: str) -> tuple[int, int, int]:
    shape = _check_in_shape(in_shape)
    if len(shape) != 3:
        raise ValueError(
            f"{model} needs image input (C, H, W), got in_shape {shape!r}; "
            "use 'mlp' for vector (or any other) inputs"
        )
    return shape  # type: ignore[return-value]


def _maybe_pool(layers: "OrderedDict[str, nn.Module]", name: str, hw: tuple[int, int]) -> tuple[int, int]:
    """Append a 2×2 max-pool unless the image is already too small to halve.

    Small inputs (8×8 digits, 28×28 MNIST) reach 1×1 before a 32×32-deep
    stack of pools ends; pooling a 1-pixel map would give an empty tensor.
    """
    h, w = hw
    if min(h, w) < 2:
        return hw
    layers[name] = nn.MaxPool2d(2)
    return h // 2, w // 2


# ----------------------------------------------------------------------------- MLP


class MLP(nn.Sequential):
    """A fully connected ReLU network that flattens its input.

    Chapter 3, *Training random sparse networks* (and chapter 2, where each
    ``Linear`` layer's mask is a random bipartite graph).

    Parameters
    ----------
    in_features : int
        Number of inputs after flattening (784 for MNIST).
    hidden : sequence of int
        Hidden layer sizes before ``width`` scales them; ``()`` gives logistic
        regression. The default ``(300, 100)`` is LeNet-300-100.
    num_classes : int
        Output units (classes, or the output dimension of a regression).
    width : float
        Multiplier of every hidden size.

    Layers are named ``fc1, fc2, ...``; the last ``fc`` is the classifier.
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int] = MLP_HIDDEN,
        num_classes: int = 10,
        width: float = 1.0,
    ) -> None:
        in_features = check_positive_int(in_features, "in_features")
        num_classes = check_positive_int(num_classes, "num_classes")
        width = check_width(width)
        if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence):
            raise ValueError(f"hidden must be a sequence of positive ints such as (300, 100), got {hidden!r}")
        for h in hidden:
            check_positive_int(h, f"every hidden size (in hidden={tuple(hidden)!r})")
        self.hidden: tuple[int, ...] = tuple(scale_width(int(h), width) for h in hidden)

        layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
        sizes = (in_features, *self.hidden, num_classes)
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
            layers[f"fc{i}"] = nn.Linear(n_in, n_out)
            if i < len(sizes) - 1:
                layers[f"relu{i}"] = nn.ReLU()
        super().__init__(layers)


# ----------------------------------------------------------------------------- LeNet-5


class LeNet5(nn.Module):
    """LeNet-5: conv 6 → 16 (5×5, padding 2), max-pools, then fc 120 → 84 → classes.

    Chapter 5, *Gradient flow* (the RigL paper's MNIST model, Evci et al. 2022),
    and chapter 3 on small images.

    Parameters
    ----------
    in_shape : (C, H, W)
        Image shape; ``(1, 28, 28)`` for MNIST, ``(1, 8, 8)`` for digits.
    num_classes : int
        Output units.
    width : float
        Multiplier of every channel and hidden size.
    sizes : (int, int, int, int)
        The four hidden sizes before ``width`` (conv1, conv2, fc1, fc2). The
        default is LeNet-5; ``(3, 3, 27, 20)`` is the RigL paper's "small
        dense" net with as many parameters as a 95 % sparse LeNet-5.

    Both convs keep the image size (padding 2), so 28×28 gives 16×7×7
    features after two pools and 8×8 gives 16×2×2; the flatten size is found
    by a dummy forward pass.
    """

    def __init__(
        self,
        in_shape: tuple[int, ...],
        num_classes: int = 10,
        width: float = 1.0,
        sizes: Sequence[int] = LENET5_SIZES,
    ) -> None:
        super().__init__()
        c, h, w = _check_image_shape(in_shape, "LeNet-5")
        num_classes = check_positive_int(num_classes, "num_classes")
        width = check_width(width)
        if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence) or len(sizes) != 4:
            raise ValueError(f"sizes must be 4 positive ints (conv1, conv2, fc1, fc2), got {sizes!r}")
        c1, c2, f1, f2 = (scale_width(check_positive_int(s, f"every size (in sizes={tuple(sizes)!r})"), width)
                          for s in sizes)

        feats: OrderedDict[str, nn.Module] = OrderedDict()
        feats["conv1"] = nn.Conv2d(c, c1, 5, padding=2)
        feats["relu1"] = nn.ReLU()
        hw = _maybe_pool(feats, "pool1", (h, w))
        feats["conv2"] = nn.Conv2d(c1, c2, 5, padding=2)
        feats["relu2"] = nn.ReLU()
        _maybe_pool(feats, "pool2", hw)
        self.features = nn.Sequential(feats)
        with torch.no_grad():
            flat = self.features(torch.zeros(1, c, h, w)).numel()
        self.classifier = nn.Sequential(OrderedDict(
            flatten=nn.Flatten(),
            fc1=nn.Linear(flat, f1), relu3=nn.ReLU(),
            fc2=nn.Linear(f1, f2), relu4=nn.ReLU(),
            fc3=nn.Linear(f2, num_classes),
        ))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


# ----------------------------------------------------------------------------- Conv-2/4/6


class ConvNet(nn.Module):
    """The Conv-2/4/6 networks of Frankle & Carbin and Ramanujan et al.

    Chapter 6, *Strong lottery tickets* (edge-popup's CIFAR models,
    Ramanujan et al. 2020), and chapter 3 as a small convolutional net.

    Parameters
    ----------
    in_shape : (C, H, W)
        Image shape.
    num_classes : int
        Output units.
    depth : {2, 4, 6}
        Number of conv layers: ``depth // 2`` blocks of two 3×3 convs with
        64, 128, 256 channels, each block followed by a 2×2 max-pool (skipped
        once the image is 1 pixel).
    width : float
        Multiplier of every channel count and of the two 256-unit hidden
        linear layers.

    No batch norm, as in the papers.
    """

    def __init__(self, in_shape: tuple[int, ...], num_classes: int = 10, depth: int = 4, width: float = 1.0) -> None:
        super().__init__()
        c, h, w = _check_image_shape(in_shape, "ConvNet")
        num_classes = check_positive_int(num_classes, "num_classes")
        width = check_width(width)
        if isinstance(depth, bool) or not isinstance(depth, numbers.Integral) or depth not in CONVNET_DEPTHS:
            raise ValueError(f"ConvNet depth must be one of {', '.join(map(str, CONVNET_DEPTHS))}, got {depth!r}")

        feats: OrderedDict[str, nn.Module] = OrderedDict()
        hw, n_in, k = (h, w), c, 0
        for block, channels in enumerate(CONVNET_CHANNELS[: int(depth) // 2], start=1):
            n_out = scale_width(channels, width)
            for _ in range(2):
                k += 1
                feats[f"conv{k}"] = nn.Conv2d(n_in, n_out, 3, padding=1)
                feats[f"relu{k}"] = nn.ReLU()
                n_in = n_out
            hw = _maybe_pool(feats, f"pool{block}", hw)
        self.features = nn.Sequential(feats)
        f1, f2 = (scale_width(n, width) for n in CONVNET_HIDDEN)
        self.classifier = nn.Sequential(OrderedDict(
            flatten=nn.Flatten(),
            fc1=nn.Linear(n_in * hw[0] * hw[1], f1), relu1=nn.ReLU(),
            fc2=nn.Linear(f1, f2), relu2=nn.ReLU(),
            fc3=nn.Linear(f2, num_classes),
        ))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


# ----------------------------------------------------------------------------- CIFAR ResNet


class BasicBlock(nn.Module):
    """Two 3×3 conv–BN layers and a residual connection (He et al. 2016).

    Chapter 3, *Training random sparse networks*. When the block changes the
    shape (stride 2 or more channels), the shortcut is a 1×1 conv + BN
    ("option B") rather than zero padding, so it is a real, maskable layer.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        # no conv biases: the BatchNorm right after each conv cancels them
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        # registered after conv2 and also called after it, so named_modules()
        # matches the order in which forward() uses the layers
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(OrderedDict(
                conv=nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                bn=nn.BatchNorm2d(out_channels),
            ))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNetCIFAR(nn.Module):
    """The CIFAR ResNet of depth 6n + 2 (He et al. 2016; Liu et al.'s ``cifar_resnet_D_W``).

    Chapter 3, *Training random sparse networks*: the deeper and wider
    networks in which random sparse training matches dense (Liu et al. 2022).

    Parameters
    ----------
    in_shape : (C, H, W)
        Image shape; ``(3, 32, 32)`` for CIFAR-10.
    num_classes : int
        Output units.
    depth : int
        ``6n + 2`` (20, 32, 44, 56, 110, ...): a 3×3 stem conv, three stages
        of ``n`` basic blocks, and the classifier.
    width : float
        Multiplier of the stage widths (16, 32, 64).

    Stages 2 and 3 halve the image with a stride-2 first block; a global
    average pool feeds a single ``Linear`` classifier.
    """

    def __init__(self, in_shape: tuple[int, ...] = (3, 32, 32), num_classes: int = 10, depth: int = 20,
                 width: float = 1.0) -> None:
        super().__init__()
        c = _check_image_shape(in_shape, "ResNet")[0]
        num_classes = check_positive_int(num_classes, "num_classes")
        width = check_width(width)
        if (isinstance(depth, bool) or not isinstance(depth, numbers.Integral) or depth < 8
                or (depth - 2) % 6 != 0):
            raise ValueError(f"ResNet depth must be 6n + 2 with n >= 1 (8, 14, 20, 32, 44, 56, 110, ...), got {depth!r}")
        n = (int(depth) - 2) // 6
        self.depth = int(depth)
        widths = [scale_width(k, width) for k in RESNET_WIDTHS]

        self.conv1 = nn.Conv2d(c, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        n_in = widths[0]
        for stage, n_out in enumerate(widths, start=1):
            blocks = []
            for i in range(n):
                stride = 2 if (stage > 1 and i == 0) else 1
                blocks.append(BasicBlock(n_in, n_out, stride))
                n_in = n_out
            setattr(self, f"layer{stage}", nn.Sequential(*blocks))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(n_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.fc(torch.flatten(self.pool(out), 1))


# ----------------------------------------------------------------------------- VGG-16


class VGG16(nn.Module):
    """VGG-16 with batch norm, in its common CIFAR form (one ``Linear`` classifier).

    Chapter 3, *Training random sparse networks* (Liu et al.'s second CIFAR
    model, Liu et al. 2022).

    Parameters
    ----------
    in_shape : (C, H, W)
        Image shape; ``(3, 32, 32)`` for CIFAR-10. Smaller images skip the
        max-pools that would shrink a 1-pixel map.
    num_classes : int
        Output units.
    width : float
        Multiplier of every channel count (64 ... 512).
    """

    def __init__(self, in_shape: tuple[int, ...] = (3, 32, 32), num_classes: int = 10, width: float = 1.0) -> None:
        super().__init__()
        c, h, w = _check_image_shape(in_shape, "VGG-16")
        num_classes = check_positive_int(num_classes, "num_classes")
        width = check_width(width)

        feats: OrderedDict[str, nn.Module] = OrderedDict()
        hw, n_in, k, p = (h, w), c, 0, 0
        for v in VGG16_CONFIG:
            if v == "M":
                p += 1
                hw = _maybe_pool(feats, f"pool{p}", hw)
                continue
            k += 1
            n_out = scale_width(int(v), width)
            # no conv biases: the BatchNorm right after each conv cancels them
            feats[f"conv{k}"] = nn.Conv2d(n_in, n_out, 3, padding=1, bias=False)
            feats[f"bn{k}"] = nn.BatchNorm2d(n_out)
            feats[f"relu{k}"] = nn.ReLU()
            n_in = n_out
        self.features = nn.Sequential(feats)
        # 32×32 ends at 1×1; larger images keep what is left rather than pooling it away
        self.fc = nn.Linear(n_in * hw[0] * hw[1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.features(x), 1))


# ----------------------------------------------------------------------------- factory


def build_model(
    name: str,
    *,
    in_shape: tuple[int, ...],
    num_classes: int,
    width: float = 1.0,
    hidden: Sequence[int] | None = None,
    depth: int | None = None,
) -> nn.Module:
    """Build a model of the zoo by name.

    Chapter 3, *Training random sparse networks* (every chapter builds its
    models through this function).

    Parameters
    ----------
    name : str
        One of :data:`MODEL_NAMES`.
    in_shape : tuple of int
        Shape of one example: ``(40,)`` MNIST-1D, ``(1, 8, 8)`` digits,
        ``(1, 28, 28)`` MNIST, ``(3, 32, 32)`` CIFAR-10. Only ``mlp`` takes
        non-image shapes.
    num_classes : int
        Output units (>= 1; the output dimension for a regression).
    width : float
        Multiplier (> 0) of every hidden size / channel count.
    hidden : sequence of int, optional
        ``mlp`` only: hidden sizes (default ``(300, 100)``).
    depth : int, optional
        ``mlp``: number of 100-unit hidden layers (when ``hidden`` is not
        given). ``convnet``: 2, 4 (default) or 6. ``resnetD``: may only
        repeat D. Other models take no depth.

    Returns
    -------
    nn.Module
        The model in train mode, with PyTorch's default initialisation.
    """
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; allowed: {', '.join(MODEL_NAMES)}")
    width = check_width(width)
    num_classes = check_positive_int(num_classes, "num_classes")
    shape = _check_in_shape(in_shape)
    # silently ignoring a knob would let a sweep over it produce identical runs
    if hidden is not None and name != "mlp":
        raise ValueError(f"hidden={hidden!r} only applies to 'mlp', not to {name!r}")

    if name == "mlp":
        if depth is not None:
            depth = check_positive_int(depth, "mlp depth", minimum=0)
        if hidden is None:
            hidden = MLP_HIDDEN if depth is None else (MLP_DEPTH_UNITS,) * depth
        elif depth is not None and len(hidden) != depth:
            raise ValueError(f"mlp got hidden={hidden!r} and depth={depth!r}, which disagree; give one of them")
        return MLP(math.prod(shape), hidden, num_classes, width)
    if name == "convnet":
        return ConvNet(shape, num_classes, depth=4 if depth is None else depth, width=width)
    if name.startswith("resnet"):
        own = int(name[len("resnet"):])
        if depth is not None and depth != own:
            raise ValueError(f"{name!r} has depth {own}, got depth={depth!r}; "
                             f"use ResNetCIFAR(depth=...) for other depths")
        return ResNetCIFAR(shape, num_classes, depth=own, width=width)
    if depth is not None:
        raise ValueError(f"depth={depth!r} does not apply to {name!r}; only mlp, convnet and resnets take a depth")
    builders: dict[str, Callable[[], nn.Module]] = {
        "lenet5": lambda: LeNet5(shape, num_classes, width),
        "vgg16": lambda: VGG16(shape, num_classes, width),
    }
    return builders[name]()


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (weights, biases, BatchNorm affine), chapter 1, *Start sparse*.

    Counts every entry, masked or not: the dense size a density refers to.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = [
    "MODEL_NAMES", "MLP", "LeNet5", "ConvNet", "BasicBlock", "ResNetCIFAR", "VGG16",
    "build_model", "count_parameters", "check_width", "scale_width",
]
