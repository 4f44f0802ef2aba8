"""Experiments: one module per experiment a chapter shows, shared by notebooks and the CLI.

Chapter 1 (*How to run this book*) explains the pattern. Each experiment
module defines ``EXPERIMENT = Experiment(...)``: a config dataclass with a
preset per profile (``quick``, ``standard``, ``full``) and ``run(config, ctx)``
returning a JSON-able result. :func:`run_experiment` loads a stored result for
exactly that config, or runs the experiment and stores it. ``run`` hands its
independent units to ``ctx.map``, which runs them on an executor (serial, local
processes, SLURM; :mod:`rpbook.experiments.executors`).
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import pkgutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from ..config import check_seeds, choose_device, get_profile, progress_enabled
from ..config import same_numeric_environment
from ..results import FieldCheck, ResultStore, Tolerance, compare_results, provenance, to_jsonable


@dataclass(frozen=True)
class Experiment:
    """An experiment: its name, the chapter that shows it, presets per profile, and ``run``."""

    name: str
    chapter: str
    description: str
    presets: Callable[[str], Any]
    run: Callable[[Any, "RunContext"], Any]
    # How far each result field may move on another numeric environment (CPU, BLAS, threads):
    # pattern (``rows.#.test_acc``, ``*`` crosses dots) -> Tolerance. Unlisted fields must be equal.
    tolerances: Mapping[str, Tolerance] = field(default_factory=dict)

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
    """What a running experiment gets: the device, a progress switch, and resumable sweeps on an executor."""

    def __init__(self, experiment: str, config: Any, store: ResultStore, *, device: Any = None,
                 progress: bool = True, resume: bool = True, executor: str | None = None,
                 executor_options: dict[str, str] | None = None, workers: int | None = None):
        from .executors import make_executor

        self.experiment = experiment
        self.config = config
        self.store = store
        self.requested_device = device
        self.device = choose_device(device)
        self.progress = progress
        self.resume = resume
        self.units_run = 0
        self.units_reused = 0
        # checked here, before any work: a bad executor name or option is a one-line ValueError
        self.executor = make_executor(executor, executor_options, workers)
        self.workers = workers
        self.executors_used: list[dict] = []
        self._outputs: list[list[Any]] = []

    def map(self, units: Sequence[dict], fn: Callable[[dict], Any], desc: str | None = None, *,
            parallel: bool = True) -> list[Any]:
        """Run ``fn(unit)`` for every unit of a sweep on the context's executor, keeping finished units.

        Chapter 1, *How to use this book* (*Regenerate a chapter's results*). Each finished unit
        is appended to the store's partial file at once (in the order units
        finish, by this process only); a rerun of the same config reuses them
        instead of training again. The values come back in the order of ``units``.
        Units that measure time must not share the machine with each other:
        ``parallel=False`` runs them here, one after another, whatever the executor.
        """
        from tqdm.auto import tqdm

        from .executors import Sweep, SerialExecutor, UnitTask, experiment_module, find_experiment, run_sweep

        units = list(units)
        sweep_index = len(self._outputs)
        keys = [json.dumps(to_jsonable(unit), sort_keys=True) for unit in units]
        done = self.store.load_partial(self.experiment, self.config) if self.resume else {}
        out: list[Any] = [None] * len(units)
        pending = []
        for i, key in enumerate(keys):
            if key in done:
                out[i] = done[key]
                self.units_reused += 1
            else:
                pending.append(i)
        bar = tqdm(total=len(units), initial=len(units) - len(pending), desc=desc or self.experiment,
                   disable=not progress_enabled(self.progress), unit="run")

        def finish(i: int, value: Any) -> None:
            self.store.append_partial(self.experiment, self.config, keys[i], value)
            out[i] = value
            self.units_run += 1
            bar.update(1)

        exp = _registered_experiment(self.experiment)
        module = experiment_module(exp) if exp is not None else ""
        earlier = tuple(self._outputs)
        threads = torch.get_num_threads()
        device = None if self.requested_device in (None, "auto") else str(self.requested_device)

        def make_task(i: int) -> UnitTask:
            return UnitTask(experiment=self.experiment, module=module, config=self.config, sweep=sweep_index,
                            earlier=earlier, unit=units[i], device=device, threads=threads)

        executor = self.executor if parallel else SerialExecutor()
        if executor is not None and not isinstance(executor, SerialExecutor) and pending:
            find_experiment(self.experiment, module)  # a worker must be able to import it: fail here, not there
        sweep = Sweep(units=units, pending=pending, fn=fn, make_task=make_task, finish=finish, device=self.device,
                      requested_device=self.requested_device, threads=threads, experiment=self.experiment,
                      config=self.config, write=bar.write if not bar.disable else print)
        try:
            used = run_sweep(sweep, executor, self.workers)
        finally:
            bar.close()
        self.executors_used.append({**used.describe(), "units": len(pending)})
        self._outputs.append(out)
        return out


def _registered_experiment(name: str) -> "Experiment | None":
    """The registered experiment called ``name``, or ``None`` (a test's own experiment)."""
    try:
        return get_experiment(name)
    except ValueError:
        return None


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
    executor: str | None = None,
    executor_options: dict[str, str] | None = None,
    workers: int | None = None,
) -> dict:
    """Load the stored result of an experiment for its config, or run it and store it.

    Chapter 1, *Stored results*. ``force`` reruns from scratch even when a
    result is stored (a failed rerun leaves the stored file untouched).
    ``seeds`` replaces the config's ``seeds`` field. ``executor`` (``serial``,
    ``local``, ``slurm``; default ``$RPBOOK_EXECUTOR`` or auto), its
    ``executor_options`` and ``workers`` choose where the sweep's units run
    (:mod:`rpbook.experiments.executors`); the numbers do not depend on it.

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
    ctx = RunContext(name, config, store, device=device, progress=progress, resume=not force, executor=executor,
                     executor_options=executor_options, workers=workers)
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
    prov["torch_threads"] = torch.get_num_threads()  # every executor's workers use this count too
    prov["executors"] = ctx.executors_used
    store.save(name, config, result, prov)
    return store.load(name, config)


@dataclass
class Verification:
    """The outcome of regenerating one stored result (``rpbook verify``, chapter 1 *Stored results*)."""

    experiment: str
    path: str
    exact_expected: bool
    stored_env: dict | None
    regenerated_env: dict
    checks: list[FieldCheck]
    wall_time_s: float

    @property
    def ok(self) -> bool:
        return all(c.verdict != "differs" for c in self.checks)

    def counts(self) -> dict[str, int]:
        return {v: sum(c.verdict == v for c in self.checks) for v in ("exact", "within", "differs")}

    def worst(self, n: int = 3) -> list[FieldCheck]:
        ranked = sorted((c for c in self.checks if c.verdict != "exact"), key=lambda c: (c.verdict != "differs", -c.used))
        return ranked[:n]


def verify_stored(path: str | Path, *, device: str = "cpu", progress: bool = False,
                  record_if_exact: bool = False) -> Verification:
    """Regenerate the stored result at ``path`` from its own config and compare it field by field.

    Chapter 1, *Stored results*. Where the numeric environment is the one the
    result recorded, every value must be equal; elsewhere each value must lie
    within the experiment's declared tolerances. The regeneration runs with
    the recorded thread count, in a temporary store: the stored file is never
    touched, except that ``record_if_exact`` adds the numeric environment to
    its provenance when every value came out exactly equal and it recorded
    none (results made before rpbook recorded it).
    """
    import tempfile

    from ..results import load_record

    path = Path(path)
    stored = load_record(path)
    name = stored["experiment"]
    exp = get_experiment(name)
    config = exp.config_from_dict(stored["config"])
    prov = stored["provenance"]
    threads = int(prov.get("torch_threads") or (prov.get("numeric_env") or {}).get("torch_threads") or 1)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with tempfile.TemporaryDirectory(prefix="rpbook-verify-") as tmp:
            fresh = run_experiment(name, prov.get("profile") or "standard", config=config, store=ResultStore(tmp),
                                   progress=progress, device=device, force=True)
    finally:
        torch.set_num_threads(before)
    stored_env = prov.get("numeric_env")
    fresh_env = fresh["provenance"]["numeric_env"]
    exact = same_numeric_environment(stored_env, fresh_env)
    checks = compare_results(stored["result"], fresh["result"], dict(exp.tolerances), exact=exact)
    verification = Verification(name, str(path), exact, stored_env, fresh_env, checks,
                                fresh["provenance"]["wall_time_s"])
    if record_if_exact and not stored_env and all(c.verdict == "exact" for c in checks):
        from ..results import write_json_atomic

        stored["provenance"]["numeric_env"] = fresh_env
        stored["provenance"]["numeric_env_recorded"] = (
            f"{fresh['provenance']['date']}: from a bit-identical regeneration (rpbook verify --record-if-exact)")
        write_json_atomic(path, stored)
    return verification
