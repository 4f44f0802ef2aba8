"""Experiments: one module per experiment a chapter shows, shared by notebooks and the CLI.

Chapter 1 (*How to run this book*) explains the pattern. Each experiment
module defines ``EXPERIMENT = Experiment(...)``: a config dataclass with a
preset per profile (``quick``, ``standard``, ``full``) and ``run(config, ctx)``
returning a JSON-able result. :func:`run_experiment` loads a stored result for
exactly that config, or runs the experiment and stores it.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import pkgutil
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from ..config import check_seeds, choose_device, get_profile, progress_enabled
from ..results import ResultStore, provenance, to_jsonable


@dataclass(frozen=True)
class Experiment:
    """An experiment: its name, the chapter that shows it, presets per profile, and ``run``."""

    name: str
    chapter: str
    description: str
    presets: Callable[[str], Any]
    run: Callable[[Any, "RunContext"], Any]

    def config(self, profile: str | None = None, **overrides: Any) -> Any:
        """The preset config for a profile, with fields replaced by ``overrides``."""
        config = self.presets(get_profile(profile))
        if overrides:
            fields = {f.name for f in dataclasses.fields(config)}
            unknown = sorted(set(overrides) - fields)
            if unknown:
                raise ValueError(f"{self.name} has no config field(s) {', '.join(unknown)}; fields: {', '.join(sorted(fields))}")
            config = dataclasses.replace(config, **overrides)
        return config


    def config_from_dict(self, data: dict) -> Any:
        """Rebuild this experiment's config from a stored result; ``ValueError`` if it no longer fits."""
        from ..results import from_jsonable

        return from_jsonable(type(self.presets("quick")), data)


class RunContext:
    """What a running experiment gets: the device, a progress switch, and resumable sweeps."""

    def __init__(self, experiment: str, config: Any, store: ResultStore, *, device: Any = None,
                 progress: bool = True, resume: bool = True):
        self.experiment = experiment
        self.config = config
        self.store = store
        self.device = choose_device(device)
        self.progress = progress
        self.resume = resume
        self.units_run = 0
        self.units_reused = 0

    def map(self, units: Sequence[dict], fn: Callable[[dict], Any], desc: str | None = None) -> list[Any]:
        """Run ``fn(unit)`` for every unit of a sweep, keeping finished units across interruptions.

        Each finished unit is appended to the store's partial file at once; a
        rerun of the same config reuses them instead of training again.
        """
        from tqdm.auto import tqdm

        done = self.store.load_partial(self.experiment, self.config) if self.resume else {}
        out = []
        for unit in tqdm(list(units), desc=desc or self.experiment, disable=not progress_enabled(self.progress), unit="run"):
            key = json.dumps(to_jsonable(unit), sort_keys=True)
            if key in done:
                out.append(done[key])
                self.units_reused += 1
                continue
            value = to_jsonable(fn(unit))
            self.store.append_partial(self.experiment, self.config, key, value)
            out.append(value)
            self.units_run += 1
        return out


def experiment_names() -> list[str]:
    """Names of all experiments (the modules of this package that define ``EXPERIMENT``)."""
    names = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if isinstance(getattr(module, "EXPERIMENT", None), Experiment):
            names.append(info.name)
    return sorted(names)


def get_experiment(name: str) -> Experiment:
    """The experiment called ``name``; ``ValueError`` listing the known ones otherwise."""
    names = experiment_names()
    if name not in names:
        raise ValueError(f"unknown experiment {name!r}; allowed: {', '.join(names) or 'none'}")
    return importlib.import_module(f"{__name__}.{name}").EXPERIMENT


def run_experiment(
    name: str,
    profile: str | None = None,
    *,
    config: Any = None,
    force: bool = False,
    store: ResultStore | None = None,
    progress: bool = True,
    device: Any = None,
    seeds: Sequence[int] | None = None,
) -> dict:
    """Load the stored result of an experiment for its config, or run it and store it.

    Chapter 1, *Stored results*. ``force`` reruns from scratch even when a
    result is stored (a failed rerun leaves the stored file untouched).
    ``seeds`` replaces the config's ``seeds`` field.

    Returns
    -------
    dict
        The stored record: ``experiment``, ``config``, ``config_hash``,
        ``result``, ``provenance``.
    """
    profile = get_profile(profile)
    exp = get_experiment(name)
    if config is None:
        config = exp.config(profile)
    if seeds is not None:
        config = dataclasses.replace(config, seeds=check_seeds(seeds))
    if hasattr(config, "seeds"):  # every experiment: a repeated seed would count one run twice
        check_seeds(config.seeds)
    store = store or ResultStore()
    if not force and store.has(name, config):
        return store.load(name, config)
    ctx = RunContext(name, config, store, device=device, progress=progress, resume=not force)
    if force:
        partial = store.partial_path(name, config)
        if partial.exists():
            partial.unlink()
    started = time.perf_counter()
    result = exp.run(config, ctx)
    prov = provenance(device=str(ctx.device), wall_time=time.perf_counter() - started, profile=profile,
                      seeds=getattr(config, "seeds", None))
    prov["units_run"], prov["units_reused"] = ctx.units_run, ctx.units_reused
    # CPU float results are bit-reproducible only at the same thread count (BLAS splits reductions by thread)
    prov["torch_threads"] = torch.get_num_threads()
    store.save(name, config, result, prov)
    return store.load(name, config)
