"""Data sets for the book: small offline ones, a teacher–student generator, and the papers' image sets.

Chapter 3 (*Training random sparse networks*) trains on scikit-learn's digits
and on MNIST-1D, which both run in seconds on a laptop CPU and need no
network. Chapter 4 (*How much wider?*) fits students to a random ReLU
*teacher* network. Chapter 3's "at paper scale" section uses MNIST,
Fashion-MNIST and CIFAR-10, read here from their official files with numpy
(no torchvision), downloaded when the machine is online and checked against
their published MD5 checksums before a single byte is parsed.

Every loader returns a :class:`Dataset` whose splits are fixed by ``seed``.

Size (over 600 lines, on purpose): every data set of the book, offline and
online, with one split convention; the loaders share the checks and the cache.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import gzip
import hashlib
import io
import math
import os
import pickle
import random
import sys
import tarfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pooch
import torch
from torch import nn

from .atomic_files import write_atomic
from .config import check_seed
from .validators import check_positive_int

__all__ = ["CHECKSUMS", "DATASET_NAMES", "Dataset", "load_dataset", "make_teacher"]

DATASET_NAMES: tuple[str, ...] = ("digits", "mnist1d", "teacher", "mnist", "fashion-mnist", "cifar10")

DATA_ENV = "RPBOOK_DATA"
#: The data cache: the platform's cache folder for rpbook (``~/.cache/rpbook/data`` on Linux), via pooch.
DEFAULT_ROOT = str(pooch.os_cache("rpbook") / "data")
DOWNLOAD_TIMEOUT_S = 30.0

_IDX_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
_CIFAR_FILE = "cifar-10-python.tar.gz"

# Published MD5s (the values torchvision checks). Unpickling CIFAR-10 is only
# safe for a file we trust, so a match here is the gate to parsing.
CHECKSUMS: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12e480ee83cd310",
    },
    "cifar10": {
        _CIFAR_FILE: "c58f30108f718f92721af3b95e74349a",
    },
}

# Base URLs tried in order; a file's URL is base + file name.
MIRRORS: dict[str, tuple[str, ...]] = {
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    "cifar10": ("https://www.cs.toronto.edu/~kriz/",),
}

# MNIST-1D's own default generator seed: 42 reproduces the published data set.
MNIST1D_DATA_SEED = 42

_EXTRA_KWARGS: dict[str, tuple[str, ...]] = {
    "digits": (),
    "mnist1d": ("data_seed", "disk_cache"),
    "teacher": ("in_dim", "hidden", "out_dim", "n_test", "noise", "teacher_seed"),
    "mnist": ("checksums",),
    "fashion-mnist": ("checksums",),
    "cifar10": ("checksums",),
}


@dataclass(eq=False, repr=False)
class Dataset:
    """Train / validation / test tensors plus what they are (chapter 3; teacher data: chapter 4).

    ``x_*`` are float32 and standardised with train-split statistics; ``y_*``
    are int64 class labels, or float32 targets of shape ``(n, num_classes)``
    when ``task == "regression"``. ``in_shape`` is the shape of one example.
    ``info`` records provenance: ``source``, ``sizes``, ``seed``, the
    normalisation (``mean``, ``std``), the rows each split took
    (``indices``), and per data set extras. For the teacher data set,
    ``info["teacher"]`` is the teacher itself, an :class:`torch.nn.Module`.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    in_shape: tuple[int, ...]
    num_classes: int
    task: str
    info: dict = field(default_factory=dict)

    def to(self, device: str | torch.device) -> "Dataset":
        """Return a copy with every tensor (and a teacher module in ``info``) on ``device``."""
        def move(value: Any) -> Any:
            if isinstance(value, (torch.Tensor, nn.Module)):
                return value.to(device)
            if isinstance(value, dict):
                return {k: move(v) for k, v in value.items()}
            return value

        # Deep copy first: nn.Module.to works in place and must not move the original's teacher.
        info = move(copy.deepcopy(self.info))
        tensors = {f: getattr(self, f).to(device) for f in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")}
        return dataclasses.replace(self, info=info, **tensors)

    def __repr__(self) -> str:
        if self.task == "classification":
            what = f"{self.num_classes} classes"
        else:
            what = f"regression, {self.num_classes} outputs"
        return (f"Dataset({self.name!r}, train={len(self.x_train)}, val={len(self.x_val)}, "
                f"test={len(self.x_test)}, in_shape={tuple(self.in_shape)}, {what})")


def load_dataset(
    name: str,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    root: str | os.PathLike | None = None,
    download: bool = True,
    n_train: int | None = None,
    **kwargs: Any,
) -> Dataset:
    """Load one of :data:`DATASET_NAMES` as a :class:`Dataset` with splits fixed by ``seed``.

    Digits and MNIST-1D are taught in chapter 3, the teacher–student data in
    chapter 4, MNIST / Fashion-MNIST / CIFAR-10 in chapter 3's "at paper scale"
    section.

    Parameters
    ----------
    name
        ``digits``, ``mnist1d``, ``teacher``, ``mnist``, ``fashion-mnist`` or ``cifar10``.
    seed
        Chooses the validation rows, the ``n_train`` subsample, the digits test
        rows and the teacher data. Same seed, same tensors bit for bit.
    val_fraction
        Share of the training pool held out for validation, in ``[0, 1)``.
    root
        Folder with one sub-folder per data set (``root/<name>/``); default
        ``$RPBOOK_DATA``, else ``~/.cache/rpbook/data``. Holds the downloaded
        files and the MNIST-1D cache.
    download
        Fetch missing files of the online data sets; ``False`` never touches the network.
    n_train
        Keep only this many training examples (drawn by ``seed``, stratified
        by class); for ``teacher`` the number generated (default 2000).
    **kwargs
        ``mnist1d``: ``data_seed`` (default 42, the published data set),
        ``disk_cache`` (default True). ``teacher``: ``in_dim=16``,
        ``hidden=(32, 32)``, ``out_dim=1``, ``n_test=1000``, ``noise=0.0``,
        ``teacher_seed`` (default ``seed``). Online sets: ``checksums``, a
        ``{file name: md5}`` dict overriding :data:`CHECKSUMS`.

    Raises
    ------
    ValueError
        Unknown name or keyword, a bad ``val_fraction``/``n_train``/``seed``,
        a checksum mismatch, or a malformed file.
    FileNotFoundError
        A file of an online data set is missing and could not be downloaded.
    """
    key = _canonical_name(name)
    seed = check_seed(seed)
    val_fraction = _check_val_fraction(val_fraction)
    if n_train is not None:
        n_train = check_positive_int(n_train, "n_train")
    unknown = sorted(set(kwargs) - set(_EXTRA_KWARGS[key]))
    if unknown:
        allowed = ", ".join(_EXTRA_KWARGS[key]) or "none"
        raise ValueError(f"unexpected keyword argument(s) {', '.join(unknown)} for dataset {key!r}; allowed: {allowed}")
    if not isinstance(download, bool):
        raise ValueError(f"download must be True or False, got {download!r}")
    base = _data_root(root)

    if key == "digits":
        return _load_digits(seed, val_fraction, n_train)
    if key == "mnist1d":
        return _load_mnist1d(seed, val_fraction, n_train, base, **kwargs)
    if key == "teacher":
        return _load_teacher(seed, val_fraction, n_train, **kwargs)
    return _load_online(key, seed, val_fraction, n_train, base, download, **kwargs)


# One example's shape and the number of classes (outputs for teacher) with the default keyword arguments.
_DATASET_SHAPES: dict[str, tuple[tuple[int, ...], int]] = {
    "digits": ((1, 8, 8), 10), "mnist1d": ((40,), 10), "teacher": ((16,), 1),
    "mnist": ((1, 28, 28), 10), "fashion-mnist": ((1, 28, 28), 10), "cifar10": ((3, 32, 32), 10),
}


def dataset_shape(name: str) -> tuple[tuple[int, ...], int]:
    """``(in_shape, num_classes)`` of a data set with its default arguments, without loading it (chapter 3).

    ``rpbook train`` uses it to check the model's size before any data is read.
    """
    return _DATASET_SHAPES[_canonical_name(name)]


def make_teacher(in_dim: int = 16, hidden: Sequence[int] = (32, 32), out_dim: int = 1, seed: int = 0) -> nn.Sequential:
    """A random ReLU MLP ``Linear, ReLU, ..., Linear`` to generate regression targets (chapter 4).

    Weights and biases follow PyTorch's default ``nn.Linear`` initialisation,
    ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (Kaiming-uniform with ``a=sqrt(5)``),
    drawn from a local generator seeded by ``seed``: the global torch RNG is
    neither used nor advanced. The teacher is returned in eval mode.
    """
    in_dim = check_positive_int(in_dim, "in_dim")
    out_dim = check_positive_int(out_dim, "out_dim")
    hidden = _check_hidden(hidden)
    seed = check_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    dims = [in_dim, *hidden, out_dim]
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(dims[:-1], dims[1:])):
        # skip_init builds on the meta device, so constructing the layer draws nothing from the global RNG.
        lin = torch.nn.utils.skip_init(nn.Linear, fan_in, fan_out)
        bound = 1.0 / math.sqrt(fan_in)
        with torch.no_grad():
            lin.weight.copy_((torch.rand(lin.weight.shape, generator=gen) * 2 - 1) * bound)
            lin.bias.copy_((torch.rand(lin.bias.shape, generator=gen) * 2 - 1) * bound)
        layers.append(lin)
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers).eval()


# --------------------------------------------------------------------------- checks


def _canonical_name(name: object) -> str:
    key = name.strip().lower().replace("_", "-") if isinstance(name, str) else None
    if key not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(DATASET_NAMES)}")
    return key


def _check_val_fraction(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not (0.0 <= float(value) < 1.0):
        raise ValueError(f"val_fraction must be a number in [0, 1), got {value!r}")
    return float(value)


def _check_hidden(hidden: object) -> tuple[int, ...]:
    if isinstance(hidden, (int, np.integer)) and not isinstance(hidden, bool):
        hidden = (hidden,)
    if not isinstance(hidden, (tuple, list)):
        raise ValueError(f"hidden must be a sequence of integers >= 1 (layer widths), got {hidden!r}")
    return tuple(check_positive_int(h, "each hidden width") for h in hidden)


def _data_root(root: str | os.PathLike | None) -> Path:
    if root is None:
        root = os.environ.get(DATA_ENV) or DEFAULT_ROOT
    if not isinstance(root, (str, os.PathLike)):
        raise ValueError(f"root must be a path (str or os.PathLike) or None, got {root!r}")
    return Path(root).expanduser()


# --------------------------------------------------------------------------- splitting


def _split_off(labels: np.ndarray, n_hold: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(len)`` into (kept, held-out) index arrays, ``n_hold`` held out, both sorted.

    With labels, the held-out part is stratified: every class contributes in
    proportion to its size, which keeps tiny validation sets and subsamples
    balanced. Works for any ``n_hold``, including fewer than the classes.
    """
    n = len(labels)
    perm = rng.permutation(n)
    if n_hold in (0, n):
        held = perm[:n_hold]
    else:
        lab = labels[perm]
        counts = np.bincount(lab)
        order = np.argsort(lab, kind="stable")
        starts = np.cumsum(counts) - counts
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n) - starts[lab[order]]
        # An example's position within its (shuffled) class, as a fraction of the class:
        # taking the smallest fractions takes every class in proportion.
        position = (rank + 0.5) / counts[lab]
        held = perm[np.argsort(position, kind="stable")[:n_hold]]
    mask = np.zeros(n, dtype=bool)
    mask[held] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def _train_val_indices(
    name: str, labels: np.ndarray, val_fraction: float, n_train: int | None, rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    pool_size = len(labels)
    n_val = int(round(val_fraction * pool_size))
    if val_fraction > 0:
        n_val = max(n_val, 1)
    if pool_size - n_val < 1:
        raise ValueError(f"val_fraction={val_fraction} leaves no training example of the {pool_size} in {name}; "
                         f"use a smaller val_fraction")
    train, val = _split_off(labels, n_val, rng)
    if n_train is not None:
        if n_train > len(train):
            raise ValueError(f"n_train must be between 1 and {len(train)} (the training examples {name} has "
                             f"with val_fraction={val_fraction}), got {n_train}")
        _, keep = _split_off(labels[train], n_train, rng)
        train = train[keep]
    return train, val


def _channel_stats(x: np.ndarray, channel_axis: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of ``x`` (examples first), accumulated in float64 in chunks.

    Chunks keep the float64 copy small: CIFAR-10's training set would need a
    gigabyte at once.
    """
    if channel_axis is None:
        x = x.reshape(len(x), 1, -1)
    else:
        x = np.moveaxis(x, channel_axis, 1).reshape(len(x), x.shape[channel_axis], -1)
    count = x.shape[0] * x.shape[2]
    total = np.zeros(x.shape[1])
    for i in range(0, len(x), 4096):
        total += x[i:i + 4096].sum(axis=(0, 2), dtype=np.float64)
    mean = total / max(count, 1)
    sq = np.zeros(x.shape[1])
    for i in range(0, len(x), 4096):
        sq += ((x[i:i + 4096].astype(np.float64) - mean[None, :, None]) ** 2).sum(axis=(0, 2))
    std = np.sqrt(sq / max(count, 1))
    # A constant channel (e.g. a one-example subsample) must not divide by zero.
    std[std == 0] = 1.0
    return mean, std


def _to_standardised_tensor(x: np.ndarray, mean: np.ndarray, std: np.ndarray, channel_axis: int | None) -> torch.Tensor:
    # np.array copies: the cached MNIST-1D arrays are read-only and must stay untouched.
    t = torch.from_numpy(np.array(x, dtype=np.float32))
    shape = [1] * t.dim()
    if channel_axis is not None:
        shape[channel_axis] = len(mean)
    m = torch.tensor(mean, dtype=torch.float32).reshape(shape)
    s = torch.tensor(std, dtype=torch.float32).reshape(shape)
    return t.sub_(m).div_(s)


def _assemble(
    name: str, *, x_pool: np.ndarray, y_pool: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
    test_index: np.ndarray, seed: int, val_fraction: float, n_train: int | None, rng: np.random.Generator,
    in_shape: tuple[int, ...], channel_axis: int | None, value_scale: float, info: dict,
) -> Dataset:
    """Carve val (and the n_train subsample) from the training pool, standardise, build the Dataset."""
    train, val = _train_val_indices(name, y_pool, val_fraction, n_train, rng)
    x_tr = x_pool[train]
    mean, std = _channel_stats(x_tr, channel_axis)
    ds = Dataset(
        name=name,
        x_train=_to_standardised_tensor(x_tr, mean, std, channel_axis),
        y_train=torch.from_numpy(y_pool[train].astype(np.int64)),
        x_val=_to_standardised_tensor(x_pool[val], mean, std, channel_axis),
        y_val=torch.from_numpy(y_pool[val].astype(np.int64)),
        x_test=_to_standardised_tensor(x_test, mean, std, channel_axis),
        y_test=torch.from_numpy(np.asarray(y_test).astype(np.int64)),
        in_shape=in_shape,
        num_classes=10,
        task="classification",
        info={},
    )
    ds.info = {
        **info,
        "sizes": {"train": len(train), "val": len(val), "test": len(test_index)},
        "seed": seed,
        "val_fraction": val_fraction,
        "n_train": n_train,
        # Stats in the units users know (pixels in [0, 1] for images), per channel.
        "mean": (mean / value_scale).tolist(),
        "std": (std / value_scale).tolist(),
        "normalisation": "(x - mean) / std, per channel, statistics of the training split",
        "indices": {"train": train, "val": val, "test": test_index},
    }
    return ds


# --------------------------------------------------------------------------- digits


def _load_digits(seed: int, val_fraction: float, n_train: int | None) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.data.reshape(-1, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    pool, test = _split_off(y, int(round(0.2 * len(y))), rng)
    ds = _assemble(
        "digits", x_pool=x[pool], y_pool=y[pool], x_test=x[test], y_test=y[test], test_index=test,
        seed=seed, val_fraction=val_fraction, n_train=n_train, rng=rng, in_shape=(1, 8, 8),
        channel_axis=1, value_scale=1.0,
        info={"source": "sklearn.datasets.load_digits (1797 8x8 images, values 0..16)",
              "split": "test: 20% stratified by seed; val carved from the rest by seed"},
    )
    # Indices into the 1797 rows of load_digits(), so all three splits share one numbering.
    ds.info["indices"]["train"] = pool[ds.info["indices"]["train"]]
    ds.info["indices"]["val"] = pool[ds.info["indices"]["val"]]
    ds.info["index_base"] = "rows of sklearn.datasets.load_digits()"
    return ds


# --------------------------------------------------------------------------- MNIST-1D


_MNIST1D_KEYS = ("x", "y", "x_test", "y_test")


@functools.lru_cache(maxsize=4)
def _generate_mnist1d(data_seed: int) -> tuple[np.ndarray, ...]:
    """Run MNIST-1D's generator with its default arguments and ``seed=data_seed`` (about a second)."""
    # Imported here: mnist1d pulls in matplotlib, scipy and requests (~2 s), needless on a cache hit.
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.seed = data_seed
    # make_dataset reseeds the global `random` and `np.random`; the caller's streams must not notice.
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        raw = make_dataset(args)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    arrays = tuple(np.asarray(raw[k]) for k in _MNIST1D_KEYS)
    for a in arrays:
        a.flags.writeable = False  # shared by every later call through the lru_cache
    return arrays


@functools.lru_cache(maxsize=4)
def _mnist1d_arrays(data_seed: int, cache_dir: str | None) -> tuple[np.ndarray, ...]:
    """MNIST-1D's (x, y, x_test, y_test) for ``data_seed``: from memory, the disk cache, or generated.

    The disk cache carries a SHA-256 beside it (``<cache>.sha256``); a cache that
    fails any check (checksum, keys, shapes, dtypes, label range, finite values)
    is rebuilt with a warning naming the file, never used.
    """
    from importlib.metadata import version

    if cache_dir is None:
        return _generate_mnist1d(data_seed)
    # The generator's arguments are the package defaults, so its version and the seed pin them down.
    # "v2": caches with a checksum; v1 files (without one) are never read.
    digest = hashlib.sha256(repr((version("mnist1d"), data_seed, "v2")).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"mnist1d-seed{data_seed}-{digest}.npz"
    arrays = None
    if path.exists():
        arrays, problem = _read_mnist1d_cache(path)
        if arrays is None:
            warnings.warn(f"rpbook: the MNIST-1D cache {path} is damaged ({problem}); rebuilding it", stacklevel=4)
    if arrays is None:
        arrays = _generate_mnist1d(data_seed)
        _write_npz_atomic(path, dict(zip(_MNIST1D_KEYS, arrays)))
    return arrays


MNIST1D_CLASSES = 10


def _checksum_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _read_mnist1d_cache(path: Path) -> tuple[tuple[np.ndarray, ...] | None, str]:
    """The cached arrays and ``""``, or ``None`` and what is wrong with the file."""
    try:
        raw = path.read_bytes()
        expected = _checksum_path(path).read_text().strip()
    except OSError as err:
        return None, f"cannot read it or its checksum file: {err.strerror or err}"
    if hashlib.sha256(raw).hexdigest() != expected:
        return None, "its SHA-256 does not match the checksum written beside it"
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as f:
            missing = [k for k in _MNIST1D_KEYS if k not in f.files]
            if missing:
                return None, f"it lacks {', '.join(missing)}"
            arrays = tuple(f[k] for k in _MNIST1D_KEYS)
    except Exception as err:  # a corrupt zip or array header
        return None, f"not a readable .npz file: {type(err).__name__}"
    x, y, xt, yt = arrays
    if x.ndim != 2 or xt.ndim != 2 or y.ndim != 1 or yt.ndim != 1 or len(x) != len(y) or len(xt) != len(yt) \
            or x.shape[1] != xt.shape[1] or len(x) == 0 or len(xt) == 0:
        return None, f"wrong shapes x {x.shape}, y {y.shape}, x_test {xt.shape}, y_test {yt.shape}"
    if not (np.issubdtype(x.dtype, np.floating) and np.issubdtype(xt.dtype, np.floating)
            and np.issubdtype(y.dtype, np.integer) and np.issubdtype(yt.dtype, np.integer)):
        return None, f"wrong dtypes x {x.dtype}, y {y.dtype}, x_test {xt.dtype}, y_test {yt.dtype}"
    if y.min() < 0 or yt.min() < 0 or y.max() >= MNIST1D_CLASSES or yt.max() >= MNIST1D_CLASSES:
        return None, f"labels outside 0..{MNIST1D_CLASSES - 1}"
    if not (np.isfinite(x).all() and np.isfinite(xt).all()):
        return None, "non-finite inputs"
    for a in arrays:
        a.flags.writeable = False
    return arrays, ""


def _write_npz_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write the cache and its checksum, each atomically: readers see complete files or none."""
    try:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        raw = buffer.getvalue()
        # the checksum first: a reader that sees the new checksum with an old file rebuilds, never trusts it
        checksum = hashlib.sha256(raw).hexdigest().encode() + b"\n"
        write_atomic(_checksum_path(path), lambda fh: fh.write(checksum))
        write_atomic(path, lambda fh: fh.write(raw))
    except OSError:
        pass  # a read-only or full disk only costs regeneration next time


def _load_mnist1d(seed: int, val_fraction: float, n_train: int | None, base: Path, *,
                  data_seed: int = MNIST1D_DATA_SEED, disk_cache: bool = True) -> Dataset:
    data_seed = check_seed(data_seed)
    if not isinstance(disk_cache, bool):
        raise ValueError(f"disk_cache must be True or False, got {disk_cache!r}")
    cache_dir = str((base / "mnist1d").resolve()) if disk_cache else None
    x, y, x_test, y_test = _mnist1d_arrays(data_seed, cache_dir)
    return _assemble(
        "mnist1d", x_pool=x, y_pool=y, x_test=x_test, y_test=y_test, test_index=np.arange(len(y_test)),
        seed=seed, val_fraction=val_fraction, n_train=n_train, rng=np.random.default_rng(seed),
        in_shape=(x.shape[1],), channel_axis=None, value_scale=1.0,
        info={"source": f"mnist1d.data.make_dataset, generated locally (data_seed={data_seed}; "
                        f"{MNIST1D_DATA_SEED} is the published data set)",
              "data_seed": data_seed,
              "disk_cache": cache_dir,
              "split": "test: the generator's 1000 test examples; val carved from its 4000 training examples by seed",
              "index_base": "train/val: rows of the generated training set; test: rows of its test set"},
    )


# --------------------------------------------------------------------------- teacher–student


def _derived_seed(seed: int, stream: int) -> int:
    # Independent streams per split: the same seed in two torch generators would repeat the same numbers.
    return int(np.random.SeedSequence([seed, stream]).generate_state(1)[0])


def _load_teacher(seed: int, val_fraction: float, n_train: int | None, *, in_dim: int = 16,
                  hidden: Sequence[int] = (32, 32), out_dim: int = 1, n_test: int = 1000,
                  noise: float = 0.0, teacher_seed: int | None = None) -> Dataset:
    n_train = 2000 if n_train is None else n_train
    n_test = check_positive_int(n_test, "n_test")
    if isinstance(noise, bool) or not isinstance(noise, (int, float, np.integer, np.floating)) \
            or not (0.0 <= float(noise) < math.inf):
        raise ValueError(f"noise must be a finite number >= 0 (std of label noise, in units of the target's std), "
                         f"got {noise!r}")
    teacher_seed = seed if teacher_seed is None else check_seed(teacher_seed)
    teacher = make_teacher(in_dim, hidden, out_dim, teacher_seed)  # validates the architecture
    hidden = _check_hidden(hidden)
    # val_fraction is the share of train + val, as for the other data sets.
    n_val = int(round(val_fraction * n_train / (1.0 - val_fraction)))
    if val_fraction > 0:
        n_val = max(n_val, 1)

    def draw(n: int, stream: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(_derived_seed(seed, stream))
        x = torch.randn(n, in_dim, generator=gen)
        with torch.no_grad():
            y = teacher(x)
        eps = torch.randn(n, out_dim, generator=gen)
        return x, y, eps

    (x_tr, y_tr, e_tr), (x_va, y_va, e_va), (x_te, y_te, e_te) = draw(n_train, 1), draw(n_val, 2), draw(n_test, 3)
    raw_std = y_tr.double().std(dim=0, unbiased=False) if n_train > 1 else torch.ones(out_dim, dtype=torch.float64)
    if bool((raw_std == 0).any()):
        raise ValueError(f"the teacher (in_dim={in_dim}, hidden={hidden}, out_dim={out_dim}, "
                         f"teacher_seed={teacher_seed}) gives a constant output on the training inputs "
                         f"(dead ReLUs); try another teacher_seed or wider layers")
    # Targets scaled to unit train std, so errors compare across teachers; noise is in the same units.
    scale = (1.0 / raw_std).to(torch.float32)
    noise = float(noise)

    def target(y: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        out = y * scale
        return out + noise * eps if noise > 0 else out

    spec = {"in_dim": int(in_dim), "hidden": list(hidden), "out_dim": int(out_dim), "teacher_seed": teacher_seed,
            "architecture": "nn.Sequential(Linear, ReLU, ..., Linear)",
            "init": "U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases (PyTorch's nn.Linear default), "
                    "drawn from torch.Generator().manual_seed(teacher_seed)"}
    info = {
        "source": "teacher-student: x ~ N(0, I), y = teacher(x) * y_scale + noise * N(0, 1)",
        "teacher": teacher,
        "teacher_spec": spec,
        "y_scale": scale.tolist(),
        "noise": noise,
        "sizes": {"train": n_train, "val": n_val, "test": n_test},
        "seed": seed,
        "val_fraction": val_fraction,
        "n_train": n_train,
        "mean": [0.0] * in_dim,
        "std": [1.0] * in_dim,
        "normalisation": "none on x (already N(0, I)); y scaled by y_scale to unit train std",
        "indices": {"train": np.arange(n_train), "val": np.arange(n_val), "test": np.arange(n_test)},
        "index_base": "each split is drawn fresh from its own stream of the seed",
    }
    return Dataset(name="teacher", x_train=x_tr, y_train=target(y_tr, e_tr), x_val=x_va, y_val=target(y_va, e_va),
                   x_test=x_te, y_test=target(y_te, e_te), in_shape=(int(in_dim),), num_classes=int(out_dim),
                   task="regression", info=info)


# --------------------------------------------------------------------------- online data sets


def _download(url: str, dest: Path, timeout: float = DOWNLOAD_TIMEOUT_S) -> None:
    """Fetch ``url`` into ``dest`` with pooch's HTTP downloader (raises ``OSError`` when offline)."""
    import requests

    # Some mirrors refuse a library's default user agent.
    downloader = pooch.HTTPDownloader(timeout=timeout, progressbar=False, headers={"User-Agent": "rpbook (pooch)"})
    try:
        downloader(url, str(dest), None)
    except requests.exceptions.RequestException as err:  # connection refused, DNS, timeouts, HTTP errors
        raise OSError(str(err)) from err


def _md5(path: Path) -> str:
    return pooch.file_hash(str(path), alg="md5")


def _expected_checksums(key: str, checksums: object) -> dict[str, str]:
    table = dict(CHECKSUMS[key])
    if checksums is None:
        return table
    if not isinstance(checksums, dict):
        raise ValueError(f"checksums must be a dict {{file name: md5}}, got {checksums!r}")
    for fname, md5 in checksums.items():
        if fname not in table:
            raise ValueError(f"checksums names unknown file {fname!r} for {key}; allowed: {', '.join(table)}")
        if not (isinstance(md5, str) and len(md5) == 32 and all(c in "0123456789abcdefABCDEF" for c in md5)):
            raise ValueError(f"checksum for {fname!r} must be 32 hex digits (an md5), got {md5!r}")
        table[fname] = md5.lower()
    return table


def _missing_message(key: str, missing: list[str], folder: Path, reason: str) -> str:
    urls = ", ".join(MIRRORS[key][0] + f for f in missing)
    return (f"{key}: missing {', '.join(repr(f) for f in missing)} in {folder} ({reason}). "
            f"Download {urls} into that folder, or point root= / ${DATA_ENV} at a folder holding {key}/, "
            f"or run on an online machine such as Colab, where load_dataset({key!r}) downloads it.")


def _fetch(key: str, fname: str, folder: Path, expected_md5: str, missing: list[str]) -> None:
    """Download ``fname`` from the mirrors with ``pooch.retrieve``, which verifies the MD5 before moving it into place.

    pooch writes to a temporary file beside the target and renames it only when
    the hash matches, so a half-written or foreign file never appears under the
    real name and nothing unverified is ever parsed.
    """
    import logging

    folder.mkdir(parents=True, exist_ok=True)
    failures, wrong = [], []
    logger, level = pooch.get_logger(), pooch.get_logger().level
    logger.setLevel(logging.WARNING)  # rpbook prints its own one line per download
    try:
        for base in MIRRORS[key]:
            url = base + fname
            print(f"rpbook: downloading {url}", file=sys.stderr)
            try:
                pooch.retrieve(url, known_hash=f"md5:{expected_md5}", fname=fname, path=folder, progressbar=False,
                               downloader=lambda url, output, _pooch, check_only=False: _download(url, Path(output)))
                return
            except ValueError as err:  # pooch: the downloaded file's hash does not match
                wrong.append(f"{url} gave a file whose md5 is not {expected_md5} ({err})")
            except OSError as err:  # offline, refused, timed out
                failures.append(f"{url}: {err}")
    finally:
        logger.setLevel(level)
    if wrong:  # reachable, but not the official file: a network error message would mislead
        raise ValueError(f"{key}: downloaded {fname!r} does not match its checksum: expected md5 {expected_md5}; "
                         f"{'; '.join(wrong)}. Nothing was saved in {folder}.")
    raise FileNotFoundError(_missing_message(key, missing, folder, "download failed: " + "; ".join(failures)))


def _verified_files(key: str, folder: Path, download: bool, expected: dict[str, str]) -> dict[str, Path]:
    """The data set's files, present and matching their MD5, downloading what is missing if allowed."""
    missing = [f for f in expected if not (folder / f).is_file()]
    if missing and not download:
        raise FileNotFoundError(_missing_message(key, missing, folder, "download=False"))
    for fname in list(missing):
        _fetch(key, fname, folder, expected[fname], missing)
        missing.remove(fname)
    for fname, md5 in expected.items():
        actual = _md5(folder / fname)
        if actual != md5:
            raise ValueError(f"{key}: checksum mismatch for {folder / fname}: expected md5 {md5}, got {actual}. "
                             f"The file is corrupt or not the official one; delete it and load again to re-download.")
    return {fname: folder / fname for fname in expected}


def _read_idx(path: Path, magic: int, item_shape: tuple[int, ...]) -> np.ndarray:
    """Parse a gzipped IDX file of unsigned bytes: check magic number, dimensions and length."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = len(item_shape) + 1
    header = 4 * (1 + ndim)
    if len(raw) < header:
        raise ValueError(f"{path.name}: not an IDX file (only {len(raw)} bytes after gunzip)")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise ValueError(f"{path.name}: bad IDX magic number {found}, expected {magic}")
    dims = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    if dims[1:] != item_shape:
        raise ValueError(f"{path.name}: IDX item shape {dims[1:]}, expected {item_shape}")
    if len(raw) - header != math.prod(dims):
        raise ValueError(f"{path.name}: IDX header says {dims} ({math.prod(dims)} bytes of data), "
                         f"file has {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _read_mnist_like(files: dict[str, Path]) -> tuple[np.ndarray, ...]:
    out = []
    for split in ("train", "test"):
        img_path, lab_path = files[_IDX_FILES[f"{split}_images"]], files[_IDX_FILES[f"{split}_labels"]]
        images = _read_idx(img_path, 2051, (28, 28))
        labels = _read_idx(lab_path, 2049, ())
        if len(images) != len(labels):
            raise ValueError(f"{img_path.name} has {len(images)} images but {lab_path.name} has {len(labels)} labels")
        if labels.size and labels.max() > 9:
            raise ValueError(f"{lab_path.name}: label {int(labels.max())} out of range; allowed: 0..9")
        out += [images[:, None], labels]
    return tuple(out)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler for CIFAR-10 batches that can build numpy arrays and nothing else (defence in depth)."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
                ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise ValueError(f"CIFAR-10 batch wants to load {module}.{name}; only numpy arrays are allowed")
        if module.startswith("numpy.core.") and hasattr(np, "_core"):
            module = "numpy._core." + module[len("numpy.core."):]  # numpy 2 moved numpy.core; skip its shim
        return super().find_class(module, name)


def _read_cifar_tar(path: Path) -> tuple[np.ndarray, ...]:
    """Read the python batches straight out of the tar (nothing is extracted to disk)."""
    wanted = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    batches: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            name = member.name[2:] if member.name.startswith("./") else member.name
            folder, _, base = name.rpartition("/")
            # Only the official layout counts; a '../data_batch_1' elsewhere in the archive is ignored.
            if not member.isfile() or folder != "cifar-10-batches-py" or base not in wanted or base in batches:
                continue
            f = tar.extractfile(member)
            assert f is not None
            batch = _NumpyOnlyUnpickler(io.BytesIO(f.read()), encoding="bytes").load()
            if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
                raise ValueError(f"{path.name}: member {member.name} is not a CIFAR-10 batch (no b'data'/b'labels')")
            data = np.asarray(batch[b"data"], dtype=np.uint8)
            labels = np.asarray(batch[b"labels"], dtype=np.int64)
            if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
                raise ValueError(f"{path.name}: member {member.name} has data {data.shape} and {len(labels)} labels; "
                                 f"expected (n, 3072) and n labels")
            if labels.size and (labels.min() < 0 or labels.max() > 9):
                raise ValueError(f"{path.name}: member {member.name} has labels outside 0..9")
            batches[base] = (data.reshape(-1, 3, 32, 32), labels)
    absent = [b for b in wanted if b not in batches]
    if absent:
        raise ValueError(f"{path.name}: missing member(s) {', '.join(absent)} (expected cifar-10-batches-py/...)")
    x_train = np.concatenate([batches[b][0] for b in wanted[:5]])
    y_train = np.concatenate([batches[b][1] for b in wanted[:5]])
    return x_train, y_train, batches["test_batch"][0], batches["test_batch"][1]


def _load_online(key: str, seed: int, val_fraction: float, n_train: int | None, base: Path, download: bool,
                 *, checksums: dict[str, str] | None = None) -> Dataset:
    expected = _expected_checksums(key, checksums)
    folder = base / key
    files = _verified_files(key, folder, download, expected)
    if key == "cifar10":
        x, y, x_test, y_test = _read_cifar_tar(files[_CIFAR_FILE])
        in_shape, source = (3, 32, 32), "CIFAR-10 python version (cifar-10-python.tar.gz)"
    else:
        x, y, x_test, y_test = _read_mnist_like(files)
        in_shape, source = (1, 28, 28), f"{key} gzipped IDX files"
    return _assemble(
        key, x_pool=x, y_pool=y, x_test=x_test, y_test=y_test, test_index=np.arange(len(y_test)),
        seed=seed, val_fraction=val_fraction, n_train=n_train, rng=np.random.default_rng(seed),
        in_shape=in_shape, channel_axis=1, value_scale=255.0,
        info={"source": source, "folder": str(folder), "md5": expected,
              "split": "test: the official test set; val carved from the official training set by seed",
              "index_base": "train/val: rows of the official training set; test: rows of the official test set"},
    )
