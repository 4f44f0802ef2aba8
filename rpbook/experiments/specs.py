"""The parts every experiment config shares, as composable specs: data, network, training; presets as data.

An experiment's config is one frozen dataclass that inherits the specs it
needs (``class RuleDensityConfig(TrainingSpec, DataSpec, NetworkSpec)``) and
adds its own fields. Inheritance keeps the config's JSON flat: the fields
appear under the same names as before, so every stored result keeps its config
hash (sha256 of the sorted JSON). Each spec validates its own fields
(:meth:`DataSpec.check_data`, ...); a config's ``__post_init__`` calls them.

:func:`profile_presets` turns one config factory per profile into the
``presets(profile)`` an :class:`~rpbook.experiments.Experiment` takes, and
refuses an unknown profile with the allowed ones (CONTRIBUTING.md, recipe 4).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..data import DATASET_NAMES
from ..init import check_init
from ..models import MODEL_NAMES
from ..train import TrainConfig
from ..validators import check_optional_positive_int, check_seed, check_seeds

PROFILES: tuple[str, ...] = ("quick", "standard", "full")


@dataclass(frozen=True)
class DataSpec:
    """Which data set, how many training examples (``None``: all), and the seed of the train/validation split."""

    dataset: str = "mnist1d"
    n_train: int | None = None
    split_seed: int = 0

    def check_data(self) -> None:
        """``ValueError`` naming the first bad data field."""
        if self.dataset not in DATASET_NAMES:
            raise ValueError(f"unknown dataset {self.dataset!r}; allowed: {', '.join(DATASET_NAMES)}")
        check_optional_positive_int(self.n_train, "n_train")
        check_seed(self.split_seed)


@dataclass(frozen=True)
class NetworkSpec:
    """The architecture (``model``; ``hidden`` sizes for an MLP, else ``None``) and its initialisation."""

    model: str = "mlp"
    hidden: tuple[int, ...] | None = (256, 256)
    init: str = "unit-scaled"

    def check_network(self) -> None:
        """``ValueError`` naming the first bad network field."""
        if self.model not in MODEL_NAMES:
            raise ValueError(f"unknown model {self.model!r}; allowed: {', '.join(MODEL_NAMES)}")
        check_init(self.init)


@dataclass(frozen=True)
class TrainingSpec:
    """The seeds (one network per seed and setting) and the optimiser settings every run trains with."""

    seeds: tuple[int, ...] = (0, 1, 2)
    train: TrainConfig = field(default_factory=TrainConfig)

    def check_training(self) -> None:
        """``ValueError`` naming the first bad training field (seeds: a non-empty tuple of distinct seeds)."""
        if not isinstance(self.seeds, tuple):
            raise ValueError(f"seeds must be a non-empty tuple of non-negative integers, got {self.seeds!r}")
        check_seeds(self.seeds)
        if not isinstance(self.train, TrainConfig):
            raise ValueError(f"train must be a TrainConfig, got {type(self.train).__name__}")
        self.train.validate()


def profile_presets(doc: str = "", **factories: Callable[[], Any]) -> Callable[[str], Any]:
    """``presets(profile)`` from one config factory per profile (``quick=..., standard=..., full=...``).

    Every profile must have a factory; the returned function builds (and so
    validates) the config of the profile it is asked for, and raises
    ``ValueError`` listing the profiles for any other name.
    """
    missing = [p for p in PROFILES if p not in factories]
    extra = sorted(set(factories) - set(PROFILES))
    if missing or extra:
        raise ValueError(f"presets need exactly the profiles {', '.join(PROFILES)}; "
                         f"missing {missing or 'none'}, unknown {extra or 'none'}")

    def presets(profile: str) -> Any:
        if profile not in factories:
            raise ValueError(f"unknown profile {profile!r}; allowed: {', '.join(PROFILES)}")
        return factories[profile]()

    presets.__doc__ = doc or "The config of each profile (quick, standard, full)."
    return presets


__all__ = ["PROFILES", "DataSpec", "NetworkSpec", "TrainingSpec", "profile_presets"]
