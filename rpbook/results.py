"""The result store: experiment results as JSON, keyed by a hash of their config.

Chapter 1 (*How to run this book*) explains it: a chapter asks for an
experiment at a profile; a stored result for exactly that config is loaded,
otherwise the experiment runs and its result is stored with its provenance.
A failed or interrupted run never overwrites a stored result; the finished
units of an interrupted sweep are kept in a ``.partial`` file and reused.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import math
import os
import platform
import sys
from pathlib import Path
from typing import Any, Iterator

import torch

from .atomic_files import write_json_atomic  # noqa: F401 (re-exported: the one atomic-write helper)
from . import __version__

RESULTS_ENV = "RPBOOK_RESULTS"
PARTIAL_DIR = ".partial"


def to_jsonable(obj: Any) -> Any:
    """Turn dataclasses, tuples, tensors and numpy scalars into plain JSON values (NaN → None)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return to_jsonable(obj.detach().cpu().tolist())
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "shape", None) == ():
        obj = obj.item()
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):
        return to_jsonable(obj.tolist())
    if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
        return None
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} in a JSON result: {obj!r}")


def from_jsonable(cls: type, data: Any) -> Any:
    """Rebuild a (nested) config dataclass from its JSON form; ``ValueError`` if it no longer fits.

    Used to check that every committed result names a config the current code
    still accepts (unknown or missing fields, or values the config rejects).
    """
    import typing

    if not (dataclasses.is_dataclass(cls) and isinstance(data, dict)):
        raise ValueError(f"expected a {getattr(cls, '__name__', cls)} as a JSON object, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{cls.__name__} has no field(s) {', '.join(unknown)}")
    kwargs = {}
    for name, value in data.items():
        hint = hints.get(name)
        kwargs[name] = _from_json_value(hint, value)
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ValueError(f"cannot rebuild {cls.__name__}: {err}") from err


def _from_json_value(hint: Any, value: Any) -> Any:
    import typing

    if value is None:
        return None
    origin = typing.get_origin(hint)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and args:
        for arg in args:
            if dataclasses.is_dataclass(arg) and isinstance(value, dict):
                return from_jsonable(arg, value)
        hint, origin = args[0], typing.get_origin(args[0])
        args = [a for a in typing.get_args(hint) if a is not type(None)]
    if dataclasses.is_dataclass(hint):
        return from_jsonable(hint, value)
    if origin is tuple and isinstance(value, list):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_from_json_value(args[0], v) for v in value)
        if args and len(args) == len(value):
            return tuple(_from_json_value(a, v) for a, v in zip(args, value))
        return tuple(_from_json_value(None, v) for v in value)
    if hint is tuple and isinstance(value, list):
        return tuple(value)
    if origin is list and isinstance(value, list):
        return [_from_json_value(args[0] if args else None, v) for v in value]
    if hint is float and isinstance(value, int):
        return float(value)
    return value


def config_hash(experiment: str, config: Any) -> str:
    """A short stable hash of an experiment name and its config (chapter 1)."""
    canonical = json.dumps({"experiment": experiment, "config": to_jsonable(config)}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]



def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1)


def default_results_dir() -> Path:
    """``$RPBOOK_RESULTS``, else the book's ``_results`` folder seen from here, else the repository's.

    Notebooks run with ``book/`` as working directory, the CLI from the
    repository root; both find the same ``book/_results``.
    """
    env = os.environ.get(RESULTS_ENV)
    if env:
        return Path(env)
    cwd = Path.cwd()
    for candidate in (cwd / "_results", cwd / "book" / "_results"):
        if candidate.is_dir():
            return candidate
    repo_book = Path(__file__).resolve().parent.parent / "book"
    if repo_book.is_dir():  # an editable install inside the repository
        return repo_book / "_results"
    return cwd / "_results"


def provenance(*, device: str, wall_time: float, profile: str | None = None, seeds: Any = None) -> dict:
    """Where a result came from: versions, device, date, wall time and the numeric environment (chapter 1)."""
    from .config import numeric_environment

    return {
        "numeric_env": numeric_environment(device),
        "rpbook_version": __version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "device": device,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "wall_time_s": round(float(wall_time), 3),
        "profile": profile,
        "seeds": to_jsonable(seeds),
    }


RECORD_FIELDS = {"experiment": str, "config": dict, "config_hash": str, "provenance": dict}


def load_record(path: str | os.PathLike) -> dict:
    """Read one stored result file and check its shape; ``ValueError`` naming the file if it is damaged.

    Chapter 1, *Stored results*. Checks: valid JSON, an object with
    ``experiment``, ``config``, ``config_hash``, ``result`` and ``provenance`` of
    the right types, and a hash that matches its config.
    """
    path = Path(path)
    try:
        with open(path, errors="strict") as fh:
            record = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise ValueError(f"damaged result file {path}: not valid JSON ({type(err).__name__})") from None
    except IsADirectoryError:
        raise ValueError(f"damaged result file {path}: it is a folder") from None
    if not isinstance(record, dict):
        raise ValueError(f"damaged result file {path}: expected a JSON object, got a {type(record).__name__}")
    for key, kind in RECORD_FIELDS.items():
        if not isinstance(record.get(key), kind):
            raise ValueError(f"damaged result file {path}: field {key!r} is missing or not a {kind.__name__}")
    if "result" not in record:
        raise ValueError(f"damaged result file {path}: field 'result' is missing")
    try:
        expected = config_hash(record["experiment"], record["config"])
    except (TypeError, ValueError, RecursionError):
        raise ValueError(f"damaged result file {path}: its config cannot be hashed") from None
    if expected != record["config_hash"]:
        raise ValueError(f"damaged result file {path}: config_hash {record['config_hash']!r} does not match its config ({expected})")
    return record


class ResultStore:
    """JSON results under ``root/<experiment>/<config hash>.json`` (chapter 1).

    Each file holds ``experiment``, ``config``, ``config_hash``, ``result`` and
    ``provenance``. Unfinished sweeps keep their finished units in
    ``root/.partial/<experiment>-<hash>.jsonl``.
    """

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else default_results_dir()

    def path(self, experiment: str, config: Any) -> Path:
        return self.root / experiment / f"{config_hash(experiment, config)}.json"

    def partial_path(self, experiment: str, config: Any) -> Path:
        return self.root / PARTIAL_DIR / f"{experiment}-{config_hash(experiment, config)}.jsonl"

    def has(self, experiment: str, config: Any) -> bool:
        return self.path(experiment, config).is_file()

    def load(self, experiment: str, config: Any) -> dict:
        """The stored record for exactly this config; ``FileNotFoundError`` if there is none.

        ``ValueError`` naming the file if it is damaged (rerun with ``force`` to replace it).
        """
        path = self.path(experiment, config)
        if not path.is_file():
            raise FileNotFoundError(f"no stored result for {experiment} with this config (looked for {path})")
        record = load_record(path)
        if record["config"] != to_jsonable(config) or record["experiment"] != experiment:
            raise ValueError(f"{path} holds a different config than its name says; rerun with --force to replace it")
        return record

    def save(self, experiment: str, config: Any, result: Any, prov: dict) -> Path:
        """Store a finished result atomically and drop the sweep's partial file."""
        record = {
            "experiment": experiment,
            "config": to_jsonable(config),
            "config_hash": config_hash(experiment, config),
            "result": to_jsonable(result),
            "provenance": prov,
        }
        path = self.path(experiment, config)
        write_json_atomic(path, record)
        partial = self.partial_path(experiment, config)
        if partial.exists():
            partial.unlink()
        return path

    def records(self, experiment: str | None = None, *, damaged: list | None = None) -> Iterator[dict]:
        """Every stored record (of one experiment, or all), skipping partial files.

        A damaged file is skipped; pass a list as ``damaged`` to collect
        ``(path, message)`` for each.
        """
        dirs = [self.root / experiment] if experiment else sorted(p for p in self.root.glob("*") if p.is_dir() and p.name != PARTIAL_DIR)
        for d in dirs:
            for path in sorted(d.glob("*.json")):
                try:
                    record = load_record(path)
                except ValueError as err:
                    if damaged is not None:
                        damaged.append((str(path), str(err)))
                    continue
                record["_path"] = str(path)
                yield record

    # -- partial sweeps
    def load_partial(self, experiment: str, config: Any) -> dict[str, Any]:
        """Finished units of an interrupted sweep: unit key to its result."""
        path = self.partial_path(experiment, config)
        done: dict[str, Any] = {}
        if not path.exists():
            return done
        skipped = 0
        with open(path, errors="replace") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    entry = json.loads(line)
                except (json.JSONDecodeError, RecursionError):  # a line cut short by a crash, or garbage
                    skipped += 1
                    continue
                if not (isinstance(entry, dict) and isinstance(entry.get("key"), str) and "value" in entry):
                    skipped += 1
                    continue
                if entry.get("version", __version__) != __version__:
                    continue  # made by another rpbook version: run that unit again
                done[entry["key"]] = entry["value"]
        if skipped:
            import warnings

            warnings.warn(f"{path}: ignored {skipped} damaged line(s); those units run again", stacklevel=2)
        return done

    def append_partial(self, experiment: str, config: Any, key: str, value: Any) -> None:
        """Record one finished unit; a crash can at worst lose the unit being written."""
        path = self.partial_path(experiment, config)
        path.parent.mkdir(parents=True, exist_ok=True)
        # a crash mid-line leaves no newline: start a fresh line, or this unit would be glued to it
        torn = path.exists() and path.stat().st_size > 0 and _last_byte(path) != b"\n"
        with open(path, "a") as fh:
            entry = {"key": key, "value": to_jsonable(value), "version": __version__}
            fh.write(("\n" if torn else "") + json.dumps(entry, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


# -- verification: regenerated vs stored, exact or within declared tolerances -------------------
TIMING_KEYS = frozenset({"wall_time_s", "wall_time"})  # wall-clock seconds: never compared


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """How far a regenerated value may lie from the stored one on another numeric environment.

    Chapter 1, *Stored results*. A value passes when
    ``|regenerated - stored| <= abs + rel * max(|regenerated|, |stored|)``. ``why``
    says where the numbers come from (the measured spread that justifies them).
    """

    abs: float = 0.0
    rel: float = 0.0
    why: str = ""
    # True for measurements that vary from run to run on one machine too (timings of kernels):
    # the tolerance then applies even where the numeric environment is the same.
    always: bool = False
    # True for fields that describe the circumstances (the machine, its load) rather than a result:
    # any value passes, on every environment.
    any_value: bool = False

    def __post_init__(self) -> None:
        for name in ("abs", "rel"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"Tolerance.{name} must be a finite number >= 0, got {value!r}")

    def allows(self, stored: Any, regenerated: Any) -> bool:
        if self.any_value:
            return True
        scale = max(abs(stored), abs(regenerated))
        bound = self.abs + self.rel * scale
        # A bound stated in examples (12 of 400 = 0.03) must admit exactly that many: the subtraction of two
        # accuracies rounds, e.g. 0.5975 - 0.5675 = 0.030000000000000027. Slack of a few ulps, never more.
        return abs(regenerated - stored) <= bound + (8 * sys.float_info.epsilon * max(scale, 1.0) if bound else 0.0)

    def describe(self) -> str:
        if self.any_value:
            return "any value (describes the machine)"
        parts = ([f"±{self.abs:g}"] if self.abs else []) + ([f"±{self.rel:.0%}"] if self.rel else [])
        return " + ".join(parts) or "exact"


def field_pattern(path: str) -> str:
    """``rows[3].test_acc`` → ``rows.#.test_acc``: the form tolerance patterns are matched against."""
    import re

    return re.sub(r"\[\d+\]", ".#", path)


def tolerance_for(path: str, tolerances: "dict[str, Tolerance]") -> "Tolerance | None":
    """The first declared tolerance whose pattern (``fnmatch``, ``*`` crosses dots) matches ``path``."""
    import fnmatch

    key = field_pattern(path)
    for pattern, tol in tolerances.items():
        if fnmatch.fnmatchcase(key, pattern):
            return tol
    return None


@dataclasses.dataclass
class FieldCheck:
    """One compared value: its path, both values, and the verdict ``exact`` / ``within`` / ``differs``."""

    path: str
    stored: Any
    regenerated: Any
    verdict: str
    tolerance: "Tolerance | None" = None

    @property
    def difference(self) -> float | None:
        if _is_number(self.stored) and _is_number(self.regenerated):
            return abs(float(self.regenerated) - float(self.stored))
        return None

    @property
    def used(self) -> float:
        """The difference as a fraction of what the tolerance allows (inf where nothing was allowed)."""
        if self.tolerance is not None and self.tolerance.any_value:
            return 0.0
        diff = self.difference
        if diff is None:
            return math.inf if self.verdict == "differs" else 0.0
        if diff == 0:
            return 0.0
        if self.tolerance is None:
            return math.inf
        allowed = self.tolerance.abs + self.tolerance.rel * max(abs(float(self.stored)), abs(float(self.regenerated)))
        return diff / allowed if allowed > 0 else math.inf


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def compare_results(stored: Any, regenerated: Any, tolerances: "dict[str, Tolerance] | None" = None, *,
                    exact: bool = True) -> list[FieldCheck]:
    """Compare two result trees leaf by leaf (chapter 1, *Stored results*).

    With ``exact=True`` (same numeric environment) every value must be equal,
    except measurements whose tolerance says ``always`` (timings). Otherwise a
    number may differ within the first matching tolerance; values
    with no tolerance (counts, names, untrained computations) must be equal.
    Wall-clock timings (:data:`TIMING_KEYS`) are never compared. Booleans
    count as 0/1 where a tolerance covers them.
    """
    tolerances = tolerances or {}
    checks: list[FieldCheck] = []

    def leaf(path: str, a: Any, b: Any) -> None:
        same = (a == b and type(a) is type(b)) or (isinstance(a, float) and isinstance(b, float)
                                                    and math.isnan(a) and math.isnan(b))
        if same:
            checks.append(FieldCheck(path, a, b, "exact"))
            return
        tol = tolerance_for(path, tolerances)
        if exact and tol is not None and not (tol.always or tol.any_value):
            tol = None
        numeric = all(_is_number(x) or isinstance(x, bool) for x in (a, b))
        if tol is not None and (tol.any_value or (numeric and tol.allows(float(a), float(b)))):
            checks.append(FieldCheck(path, a, b, "within", tol))
        else:
            checks.append(FieldCheck(path, a, b, "differs", tol))

    def walk(path: str, a: Any, b: Any) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b), key=str):
                if key in TIMING_KEYS:
                    continue
                sub = f"{path}.{key}" if path else str(key)
                if key not in a or key not in b:
                    checks.append(FieldCheck(sub, a.get(key, "<missing>"), b.get(key, "<missing>"), "differs"))
                else:
                    walk(sub, a[key], b[key])
        elif isinstance(a, list) and isinstance(b, list):
            if len(a) != len(b):
                checks.append(FieldCheck(f"{path} (length)", len(a), len(b), "differs"))
                return
            for i, (x, y) in enumerate(zip(a, b)):
                walk(f"{path}[{i}]", x, y)
        else:
            leaf(path, a, b)

    walk("", stored, regenerated)
    return checks
