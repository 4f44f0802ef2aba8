"""One home for the argument checks every module shares: value first, then what it is.

Bad input gets a one-line ``ValueError`` that names the value and what is
allowed, before any work starts. Checks of one concept stay with it
(``masks.check_density``, ``masks.check_rule``, ``init.check_init``,
``models.check_width``); this module holds the generic ones, so there is one
positive-integer check and one seeds check in the package.
"""
from __future__ import annotations

import math
import numbers

import numpy as np


def check_positive_int(value: object, what: str, minimum: int = 1) -> int:
    """``value`` as an int ``>= minimum`` (1 by default), or ``ValueError`` naming ``what`` and the value."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_fraction(value: object, what: str) -> float:
    """``value`` as a float in [0, 1], or ``ValueError`` naming ``what`` and the value."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value) \
            or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{what} must be a fraction in [0, 1], got {value!r}")
    return float(value)


# NumPy's legacy seeding takes 32 bits, and derived streams (seed * 100_003 + epoch in ``fit``) must stay
# inside int64: 2**32 - 1 keeps every seed usable everywhere it is passed on (chapter 1).
MAX_SEED = 2**32 - 1


def check_seed(seed: object) -> int:
    """Return ``seed`` as an int in ``[0, MAX_SEED]`` (``2**32 - 1``), or raise ``ValueError`` naming the bad value.

    Chapter 1, *How to run this book* (seeding: same seed, same mask).
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be a non-negative integer, got {seed!r} (allowed: 0 to {MAX_SEED} = 2**32 - 1)")
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be a non-negative integer, got {seed} (allowed: 0 to {MAX_SEED} = 2**32 - 1)")
    return int(seed)


def check_seeds(seeds: object) -> tuple[int, ...]:
    """A non-empty sequence of distinct seeds in ``[0, MAX_SEED]`` as a tuple of ints, or ``ValueError`` naming the bad one.

    The one seeds check of the package (configs, experiments, the CLI). A
    repeated seed would count one run twice in a mean and its spread.
    """
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise ValueError(f"seeds must be a sequence of non-negative integers (at most {MAX_SEED}), got {seeds!r}")
    given = tuple(seeds)
    if not given:
        raise ValueError("seeds must be a non-empty tuple: name at least one seed")
    out = tuple(check_seed(s) for s in given)
    if len(set(out)) != len(out):
        raise ValueError(f"seeds must be distinct, got {given!r}")
    return out


def check_optional_positive_int(value: object, what: str) -> int | None:
    """``None``, or ``value`` as an int >= 1 (e.g. ``n_train``: all examples, or that many)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{what} must be None or an integer >= 1, got {value!r}")
    return int(value)


__all__ = ["check_positive_int", "check_fraction", "check_seed", "check_seeds", "check_optional_positive_int"]
