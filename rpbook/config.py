"""Profiles, device choice and seeding.

Taught in chapter 1 ("Start sparse", section *How to run this book*).
"""
from __future__ import annotations

import os
import random
from typing import Literal

import numpy as np
import torch

# Seeds are checked in one place; the names stay importable from here, where seeding lives.
from .validators import MAX_SEED, check_seed, check_seeds  # noqa: F401

Profile = Literal["quick", "standard", "full"]
PROFILES: tuple[str, ...] = ("quick", "standard", "full")
PROFILE_ENV = "RPBOOK_PROFILE"
DEFAULT_PROFILE = "standard"

PROFILE_DESCRIPTIONS = {
    "quick": "seconds; what the tests and CI execute; shows the mechanics, not the science",
    "standard": "minutes on a laptop CPU with small data; what the built book shows",
    "full": "a GPU and the papers' settings (CIFAR-10, ResNet-20 / VGG-16, long schedules)",
}


def get_profile(profile: str | None = None) -> str:
    """Return the profile to run at: the argument, else ``$RPBOOK_PROFILE``, else ``standard``.

    Chapter 1 explains the three profiles.

    Raises
    ------
    ValueError
        If the name is not one of ``quick``, ``standard``, ``full``.
    """
    name = profile if profile is not None else os.environ.get(PROFILE_ENV, DEFAULT_PROFILE)
    name = str(name).strip().lower()
    if name not in PROFILES:
        source = "argument" if profile is not None else f"${PROFILE_ENV}"
        raise ValueError(f"unknown profile {name!r} (from the {source}); allowed: {', '.join(PROFILES)}")
    return name


def choose_device(device: str | torch.device | None = None) -> torch.device:
    """Pick the device to train on: the argument if given, else cuda > mps > cpu.

    Chapter 1, *How to run this book*.

    Raises
    ------
    ValueError
        If the requested device is unknown or not available on this machine.
    """
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"unknown device {device!r}; allowed: auto, cpu, cuda, cuda:N, mps") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available here; use 'cpu' or 'auto'")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device {device!r} requested but MPS is not available here; use 'cpu' or 'auto'")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unsupported device {device!r}; allowed: auto, cpu, cuda, cuda:N, mps")
    return dev


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python's ``random``, NumPy and torch in one call; return a torch CPU generator.

    Chapter 1. The returned generator is what rpbook passes on to mask sampling
    and data shuffling, so results do not depend on global RNG state.
    """
    seed = check_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def progress_enabled(progress: bool = True) -> bool:
    """Whether to show a progress bar: ``progress`` and not switched off by ``TQDM_DISABLE``.

    tqdm honours ``TQDM_DISABLE`` only when ``disable`` is not passed, so rpbook
    checks it itself (builds and tests set it: bars render blank offline).
    """
    off = os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false", "no")
    return bool(progress) and not off


def describe_runtime(profile: str | None = None) -> str:
    """One line for a chapter's first cell: profile, device and torch version."""
    dev = choose_device()
    name = get_profile(profile)
    extra = f" ({torch.cuda.get_device_name(0)})" if dev.type == "cuda" else ""
    return f"rpbook profile: {name} | device: {dev}{extra} | torch {torch.__version__}"


# -- the numeric environment ------------------------------------------------------------------
# Float results are bit-reproducible only where every one of these is the same: torch picks its
# vector kernels by CPU capability, MKL picks its code path by CPU model (AMD and Intel differ
# even at the same capability), and BLAS splits reductions by thread count.
NUMERIC_ENV_FIELDS: tuple[str, ...] = (
    "torch", "numpy", "device", "device_name", "cpu_capability", "blas", "torch_threads", "mkl_cbwr",
)


def _cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``)."""
    import platform

    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _blas() -> str:
    """The BLAS torch computes with, with its version where torch reports one (e.g. ``mkl 2024.2``)."""
    import re

    shown = torch.__config__.show()
    match = re.search(r"BLAS_INFO=([\w-]+)", shown)
    name = match.group(1) if match else "unknown"
    if name == "mkl":
        version = re.search(r"Math Kernel Library Version ([\d.]+)", shown)
        if version:
            name += f" {version.group(1)}"
    return name


def numeric_environment(device: str | torch.device = "cpu") -> dict:
    """What decides the last bits of a float result computed on ``device`` (chapter 1, *Stored results*).

    Two runs of one config give bit-identical numbers when every field here is
    equal; elsewhere they agree within the tolerances each experiment declares.
    """
    dev = torch.device(device)
    if dev.type == "cuda":
        name = torch.cuda.get_device_name(dev)
        capability = "cuda " + ".".join(map(str, torch.cuda.get_device_capability(dev)))
    elif dev.type == "mps":
        name, capability = _cpu_model(), "mps"
    else:
        name, capability = _cpu_model(), torch.backends.cpu.get_cpu_capability()
    return {
        "torch": torch.__version__,
        "numpy": np.__version__,
        "device": dev.type,
        "device_name": name,
        "cpu_capability": capability,
        "blas": _blas(),
        "torch_threads": torch.get_num_threads(),
        "mkl_cbwr": os.environ.get("MKL_CBWR"),
    }


def same_numeric_environment(a: dict | None, b: dict | None) -> bool:
    """Whether two recorded numeric environments promise bit-identical results (missing → ``False``)."""
    if not a or not b:
        return False
    return all(a.get(k) == b.get(k) for k in NUMERIC_ENV_FIELDS)
