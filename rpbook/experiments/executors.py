"""How a sweep's independent units run: one after another, on this machine's cores, or as SLURM jobs.

Chapter 1, *How to use this book* (paragraph *Regenerate a chapter's
results*); the README's *Sweeps on every core, or on a cluster* has the
recipes. Every experiment hands its units to ``ctx.map(units, fn)``
(:class:`~rpbook.experiments.RunContext`); an executor from
:data:`EXECUTORS` decides where ``fn(unit)`` runs:

``serial``
    in this process, one unit after another;
``local``
    this process and ``spawn``ed worker processes, each with this process's
    torch thread count: one per core, or one per GPU when there are several;
``slurm``
    one SLURM job per unit (a job array) through submitit.

Units are often closures inside an experiment's ``run`` and cannot be
pickled. So a worker never receives ``fn``: it receives a :class:`UnitTask`
(experiment, config, unit) and :func:`run_unit` rebuilds ``fn`` by running
the experiment's ``run`` with a context whose ``map`` hands back the
function instead of running it. The worker then does what the serial path
does: same code, same config, same torch thread count, so the same numbers
whatever the executor. Only the parent process writes the partial file and
the stored result.
"""
from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ..results import config_hash, to_jsonable

EXECUTOR_ENV = "RPBOOK_EXECUTOR"
# Starting a worker costs a few seconds (importing torch, loading the data again), so the default
# executor goes parallel only when the units left would keep this process busy for longer than this.
PARALLEL_WORTH_S = 20.0

SLURM_DEFAULTS = {"timeout_min": 240}
# Generic submitit parameters (any cluster) and SLURM ones that may be given without the ``slurm_`` prefix.
SUBMITIT_GENERIC = ("timeout_min", "mem_gb", "nodes", "cpus_per_task", "gpus_per_node", "tasks_per_node", "name")
SLURM_SHORT = ("partition", "array_parallelism", "account", "qos", "constraint", "exclude", "gres", "mem",
               "time", "comment")
SLURM_OWN = ("folder", "cluster", "poll_s")


class UnitFailedError(RuntimeError):
    """A unit of a sweep failed on a worker; names the unit's config. No result is stored."""


# ----------------------------------------------------------------------------- what a worker runs


@dataclass(frozen=True)
class UnitTask:
    """Everything a worker needs to run one unit; picklable by reference (no closures).

    ``sweep`` counts the ``ctx.map`` calls of the experiment's ``run`` (0 for
    the first); ``earlier`` holds the outputs of the calls before it, so an
    experiment whose second sweep depends on its first rebuilds the same
    function in the worker.
    """

    experiment: str
    module: str
    config: Any
    sweep: int
    earlier: tuple
    unit: dict
    device: str | None
    threads: int


class _FunctionFound(Exception):
    def __init__(self, fn: Callable[[dict], Any]):
        super().__init__("sweep function found")
        self.fn = fn


class _RebuildContext:
    """A stand-in for ``RunContext`` inside a worker: ``map`` hands back the sweep's function instead of running it."""

    def __init__(self, task: UnitTask, device: Any):
        from ..config import choose_device

        self.experiment, self.config = task.experiment, task.config
        self.device = choose_device(device)
        self.progress = False
        self.resume = False
        self.units_run = self.units_reused = 0
        self._task = task
        self._sweeps = 0

    def map(self, units: Sequence[dict], fn: Callable[[dict], Any], desc: str | None = None, *,
            parallel: bool = True) -> list[Any]:
        sweep, self._sweeps = self._sweeps, self._sweeps + 1
        if sweep == self._task.sweep:
            raise _FunctionFound(fn)
        return list(self._task.earlier[sweep])


_FUNCTIONS: dict[tuple, Callable[[dict], Any]] = {}  # per worker process: rebuilt once, reused for its next units
_WORKER_DEVICE: str | None = None  # set by a local worker that owns one GPU


def find_experiment(name: str, module: str):
    """The ``Experiment`` called ``name`` defined at module level in ``module`` (what a worker imports)."""
    from . import Experiment

    if not module:
        raise ValueError(f"experiment {name!r} has no importable module, so a worker cannot rebuild it; "
                         f"use --executor serial")
    mod = importlib.import_module(module)
    found = [v for v in vars(mod).values() if isinstance(v, Experiment) and v.name == name]
    if not found:
        raise ValueError(f"experiment {name!r} is not defined at module level in {module!r}, so a worker cannot "
                         f"import it; use --executor serial")
    return found[0]


def run_unit(task: UnitTask) -> Any:
    """Run one unit of a sweep in a worker and return its JSON-able value (chapter 1, *How to use this book*).

    Sets torch's thread count to the parent's (CPU results depend on it),
    rebuilds the sweep's function once per worker process by running the
    experiment up to its ``ctx.map`` call, and applies it to the unit.
    """
    if torch.get_num_threads() != task.threads:
        torch.set_num_threads(task.threads)
    device = _WORKER_DEVICE or task.device
    key = (task.module, task.experiment, config_hash(task.experiment, task.config), task.sweep, device)
    fn = _FUNCTIONS.get(key)
    if fn is None:
        exp = find_experiment(task.experiment, task.module)
        try:
            exp.run(task.config, _RebuildContext(task, device))
        except _FunctionFound as found:
            fn = found.fn
        else:
            raise RuntimeError(f"{task.experiment}.run finished without reaching sweep {task.sweep}")
        _FUNCTIONS[key] = fn
    return to_jsonable(fn(task.unit))


def sweep_units(name: str, config: Any) -> list[dict]:
    """The units of an experiment's first sweep for ``config``, without training any (chapter 1, *How to use this book*).

    Runs the experiment's ``run`` up to its ``ctx.map`` call and stops there:
    what a cluster would be asked to run, e.g. to estimate a sweep's cost.
    """
    from . import get_experiment

    exp = get_experiment(name)
    task = UnitTask(experiment=name, module=experiment_module(exp), config=config, sweep=0, earlier=(), unit={},
                    device="cpu", threads=torch.get_num_threads())
    ctx = _RebuildContext(task, "cpu")
    seen: list[dict] = []
    rebuild_map = ctx.map

    def map_and_keep(units: Sequence[dict], fn: Callable[[dict], Any], desc: str | None = None, *,
                     parallel: bool = True) -> list[Any]:
        seen.extend(units)
        return rebuild_map(units, fn, desc)

    ctx.map = map_and_keep  # type: ignore[method-assign]
    try:
        exp.run(config, ctx)
    except _FunctionFound:
        return [dict(u) for u in seen]
    raise RuntimeError(f"{name}.run finished without calling ctx.map")


def _start_local_worker(threads: int, devices: Any) -> None:
    """Initializer of a ``local`` worker: Ctrl-C is the parent's to handle; one thread count; its own GPU."""
    global _WORKER_DEVICE
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)
    if devices is not None:
        _WORKER_DEVICE = devices.get()


def _run_indexed(index: int, task: UnitTask) -> tuple[int, Any]:
    return index, run_unit(task)


def run_job(task: UnitTask) -> dict:
    """What a SLURM job runs: :func:`run_unit`, plus where it ran (device, numeric environment) for the provenance."""
    from ..config import choose_device, numeric_environment

    value = run_unit(task)
    device = choose_device(_WORKER_DEVICE or task.device)
    return {"value": value, "device": str(device), "numeric_env": numeric_environment(device)}


# ----------------------------------------------------------------------------- the sweep seen from the parent


@dataclass
class Sweep:
    """One ``ctx.map`` call as the parent sees it: units, which are left, and what to do with a finished one."""

    units: list[dict]
    pending: list[int]
    fn: Callable[[dict], Any]
    make_task: Callable[[int], UnitTask]
    finish: Callable[[int, Any], None]
    device: torch.device
    requested_device: Any
    threads: int
    experiment: str
    config: Any
    write: Callable[[str], None] = print


def _failed(sweep: Sweep, index: int, executor: str, detail: str) -> UnitFailedError:
    unit = json.dumps(to_jsonable(sweep.units[index]), sort_keys=True)
    return UnitFailedError(f"{sweep.experiment}: unit {unit} failed on the {executor} executor: {detail}")


class SerialExecutor:
    """Every unit in this process, in order: today's behaviour and the reference for the others."""

    name = "serial"

    def __init__(self, options: dict[str, str] | None = None, workers: int | None = None):
        if options:
            raise ValueError(f"the serial executor takes no --executor-option, got {', '.join(sorted(options))}")
        self.workers = 1

    def run(self, sweep: Sweep, indices: Sequence[int] | None = None) -> None:
        for i in (sweep.pending if indices is None else indices):
            try:
                value = to_jsonable(sweep.fn(sweep.units[i]))
            except Exception as err:  # the original exception, with the unit it came from
                if hasattr(err, "add_note"):
                    err.add_note(f"in unit {json.dumps(to_jsonable(sweep.units[i]), sort_keys=True)} of {sweep.experiment}")
                raise
            sweep.finish(i, value)

    def describe(self) -> dict:
        return {"name": self.name, "workers": 1}


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def free_cores() -> int:
    """Usable cores minus those other processes keep busy (1-minute load average, this process not counted)."""
    usable = usable_cores()
    try:
        busy = max(0.0, os.getloadavg()[0] - 1.0)
    except (AttributeError, OSError):
        busy = 0.0
    return max(1, usable - int(round(busy)))


class LocalExecutor:
    """Worker processes on this machine (CPU cores, or one per GPU), this process being one of them.

    ``workers`` counts the processes that train: this one, which starts on
    the first unit at once, and ``workers - 1`` spawned ones, which join when
    they have imported torch and rebuilt the sweep (a few seconds). So a pool
    of two on two cores loses only one worker's start-up to the serial run.
    """

    name = "local"

    def __init__(self, options: dict[str, str] | None = None, workers: int | None = None):
        if options:
            raise ValueError(f"the local executor takes no --executor-option (use --workers), got "
                             f"{', '.join(sorted(options))}")
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
        self.requested_workers = workers
        self.workers = workers or 0
        self.devices: list[str] | None = None

    def plan(self, sweep: Sweep, units_left: int) -> None:
        """Choose the number of workers and, on a multi-GPU machine, the spawned workers' devices."""
        gpus = torch.cuda.device_count() if sweep.device.type == "cuda" else 0
        pinned = sweep.requested_device not in (None, "auto", "cuda")
        if gpus > 1 and not pinned:
            default = gpus
        else:
            default = max(1, usable_cores() // max(1, sweep.threads))
        self.workers = max(1, min(self.requested_workers or default, units_left))
        if gpus > 1 and not pinned:  # this process keeps its own GPU; each spawned worker takes another
            mine = sweep.device.index if sweep.device.index is not None else torch.cuda.current_device()
            self.devices = [f"cuda:{k}" for k in range(gpus) if k != mine][: self.workers - 1]

    def run(self, sweep: Sweep, indices: Sequence[int] | None = None) -> None:
        import multiprocessing
        from collections import deque
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        indices = list(sweep.pending if indices is None else indices)
        if not indices:
            return
        self.plan(sweep, len(indices))
        spawned = self.workers - 1
        if spawned == 0:
            SerialExecutor().run(sweep, indices)
            return
        ctx = multiprocessing.get_context("spawn")
        devices = None
        if self.devices:  # each spawned worker takes one GPU from this queue when it starts
            devices = ctx.Queue()
            for d in self.devices:
                devices.put(d)
        pool = ProcessPoolExecutor(max_workers=spawned, mp_context=ctx, initializer=_start_local_worker,
                                   initargs=(sweep.threads, devices))
        waiting = deque(indices)
        inflight: dict[Any, int] = {}

        def top_up() -> None:  # two units queued per worker, so none idles while this process trains one
            while waiting and len(inflight) < 2 * spawned:
                i = waiting.popleft()
                inflight[pool.submit(_run_indexed, i, sweep.make_task(i))] = i

        def harvest(block: bool) -> None:
            if not inflight:
                return
            finished, _ = wait(list(inflight), timeout=None if block else 0, return_when=FIRST_COMPLETED)
            failed = sorted((inflight[f], f) for f in finished if f.exception() is not None)
            for fut in finished:  # keep every unit that did finish before reporting one that failed
                i = inflight.pop(fut)
                if fut.exception() is None:
                    sweep.finish(*fut.result())
            if failed:
                i, fut = failed[0]
                err = fut.exception()
                cause = getattr(err, "__cause__", None)
                remote = str(cause).strip() if cause is not None else ""
                raise _failed(sweep, i, self.name,
                              f"{type(err).__name__}: {err}" + (f"\n{remote}" if remote else "")) from err

        ok = False
        restore = _stop_on_sigterm()
        try:
            top_up()
            while waiting or inflight:
                harvest(block=False)
                top_up()
                if waiting:  # this process trains a unit too, with the original function
                    i = waiting.popleft()
                    try:
                        value = to_jsonable(sweep.fn(sweep.units[i]))
                    except Exception as err:
                        raise _failed(sweep, i, self.name, f"{type(err).__name__}: {err} (in the parent process)") from err
                    sweep.finish(i, value)
                else:
                    harvest(block=True)
            ok = True
        finally:
            if not ok:  # a failed unit or Ctrl-C: keep what finished, then stop every worker now
                for fut, i in list(inflight.items()):
                    if fut.done() and not fut.cancelled() and fut.exception() is None:
                        sweep.finish(*fut.result())
                _stop_pool(pool)
            else:
                pool.shutdown(wait=True)
            restore()

    def describe(self) -> dict:
        return {"name": self.name, "workers": self.workers, **({"devices": self.devices} if self.devices else {})}


def _stop_on_sigterm() -> Callable[[], None]:
    """Turn SIGTERM (``kill``, a cancelled job) into ``SystemExit`` while a pool runs, so its workers are stopped too."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def terminate(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    return lambda: signal.signal(signal.SIGTERM, previous)


def _stop_pool(pool: Any) -> None:
    terminate = getattr(pool, "terminate_workers", None)  # Python 3.14+
    if terminate is not None:
        terminate()
        return
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        if proc.is_alive():
            proc.terminate()
    for proc in processes:
        proc.join(timeout=5)


def _parse_option_value(value: str) -> Any:
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


class SlurmExecutor:
    """One SLURM job per unit (a job array) through submitit; ``cluster=local`` tries it on this machine."""

    name = "slurm"

    def __init__(self, options: dict[str, str] | None = None, workers: int | None = None):
        options = dict(options or {})
        self.folder = Path(options.pop("folder", "rpbook-slurm"))
        self.cluster = options.pop("cluster", "slurm")
        if self.cluster not in ("slurm", "local", "debug"):
            raise ValueError(f"executor option cluster must be slurm, local or debug, got {self.cluster!r}")
        poll = options.pop("poll_s", 10.0 if self.cluster == "slurm" else 0.5)
        try:
            self.poll_s = float(poll)
        except ValueError:
            raise ValueError(f"executor option poll_s must be a number of seconds, got {poll!r}") from None
        params: dict[str, Any] = {**SLURM_DEFAULTS}
        if workers is not None:  # at most this many jobs of the array at once
            options.setdefault("array_parallelism", str(workers))
        for key, value in options.items():
            key = key.replace("-", "_")
            if key in SUBMITIT_GENERIC:
                params[key] = _parse_option_value(value) if key != "name" else value
            elif key in SLURM_SHORT:
                params[f"slurm_{key}"] = _parse_option_value(value)
            elif key.startswith("slurm_") and key[6:] in SLURM_SHORT:
                params[key] = _parse_option_value(value)
            else:
                allowed = ", ".join(SLURM_OWN + SUBMITIT_GENERIC + SLURM_SHORT)
                raise ValueError(f"unknown slurm executor option {key!r}; allowed: {allowed}")
        for key in ("timeout_min", "nodes", "cpus_per_task", "gpus_per_node", "tasks_per_node"):
            if key in params and (not isinstance(params[key], int) or params[key] < 1):
                raise ValueError(f"executor option {key} must be an integer >= 1, got {params[key]!r}")
        self.params = params
        self.job_ids: list[str] = []
        self.job_devices: set[str] = set()
        self.job_envs: dict[str, dict] = {}
        self.folder_used: Path | None = None
        self.workers = 0

    def run(self, sweep: Sweep, indices: Sequence[int] | None = None) -> None:
        try:
            import submitit
        except ImportError:
            raise ValueError("the slurm executor needs submitit: pip install 'rpbook[cluster]'") from None
        indices = list(sweep.pending if indices is None else indices)
        if not indices:
            return
        folder = self.folder / f"{sweep.experiment}-{config_hash(sweep.experiment, sweep.config)}"
        self.folder_used = folder.resolve()
        executor = submitit.AutoExecutor(folder=folder / "%j", cluster=self.cluster)
        params = dict(self.params)
        if self.cluster != "slurm":  # the slurm_ options mean nothing to the local/debug executors
            params = {k: v for k, v in params.items() if not k.startswith("slurm_")}
        executor.update_parameters(name=params.pop("name", f"rpbook-{sweep.experiment}"), **params)
        try:
            jobs = executor.map_array(run_job, [sweep.make_task(i) for i in indices])
        except FileNotFoundError as err:  # no sbatch here
            raise ValueError(f"cannot submit to SLURM ({err.filename or err}): run on a SLURM login node, or try "
                             f"the job path here with --executor-option cluster=local") from None
        self.job_ids = [job.job_id for job in jobs]
        self.workers = len(jobs)
        shown = self.job_ids if len(self.job_ids) <= 4 else self.job_ids[:2] + ["…"] + self.job_ids[-1:]
        sweep.write(f"{sweep.experiment}: submitted {len(jobs)} {self.cluster} job(s) {', '.join(shown)}; "
                    f"logs in {folder.resolve()}")
        running = dict(zip(jobs, indices))
        try:
            while running:
                progressed = False
                for job, i in list(running.items()):
                    if not job.done():
                        continue
                    del running[job]
                    progressed = True
                    try:
                        done = job.result()
                    except Exception as err:
                        raise _failed(sweep, i, self.name, f"job {job.job_id} (log {job.paths.stderr}): "
                                      f"{str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__}") from err
                    self.job_devices.add(done["device"])
                    self.job_envs[json.dumps(done["numeric_env"], sort_keys=True)] = done["numeric_env"]
                    sweep.finish(i, done["value"])
                if running and not progressed:
                    time.sleep(self.poll_s)
        finally:
            for job in running:  # a failed unit or Ctrl-C: cancel what is still queued or running
                try:
                    job.cancel(check=False)
                except Exception:  # already gone; nothing to cancel
                    pass

    def describe(self) -> dict:
        return {"name": self.name, "cluster": self.cluster, "jobs": len(self.job_ids),
                "devices": sorted(self.job_devices), "numeric_envs": list(self.job_envs.values()),
                "logs": str(self.folder_used) if self.folder_used else None}


EXECUTORS: dict[str, type] = {"serial": SerialExecutor, "local": LocalExecutor, "slurm": SlurmExecutor}


def make_executor(name: str | None = None, options: dict[str, str] | None = None, workers: int | None = None):
    """The executor called ``name`` (chapter 1, *How to use this book*).

    ``None`` means ``$RPBOOK_EXECUTOR``, else ``auto`` (returned as ``None``):
    the first unit runs here, and the rest go to a ``local`` pool when more
    than one core (or GPU) is free and they would take over
    ``PARALLEL_WORTH_S`` seconds here. ``ValueError`` names a bad name or option.
    """
    if name is None:
        name = os.environ.get(EXECUTOR_ENV, "auto")
    name = str(name).strip().lower()
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    if name == "auto":
        if options:
            raise ValueError(f"executor options need an explicit --executor, got {', '.join(sorted(options))}")
        return None
    if name not in EXECUTORS:
        raise ValueError(f"unknown executor {name!r}; allowed: auto, {', '.join(EXECUTORS)}")
    return EXECUTORS[name](options, workers)


def parse_executor_options(pairs: Sequence[str] | None) -> dict[str, str]:
    """``["partition=gpu", "timeout_min=600"]`` as a dict; ``ValueError`` for an item without ``=``."""
    out: dict[str, str] = {}
    for pair in pairs or ():
        key, sep, value = str(pair).partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--executor-option must be key=value, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def run_sweep(sweep: Sweep, executor: Any, workers: int | None = None) -> Any:
    """Run the sweep's pending units on ``executor`` (or choose one: ``None`` is auto); return the one used."""
    if executor is not None:
        executor.run(sweep)
        return executor
    serial = SerialExecutor()
    if len(sweep.pending) < 2:
        serial.run(sweep)
        return serial
    # auto: time the first unit here, then decide whether the rest are worth a pool of workers
    started = time.perf_counter()
    serial.run(sweep, sweep.pending[:1])
    seconds = time.perf_counter() - started
    rest = sweep.pending[1:]
    gpus = torch.cuda.device_count() if sweep.device.type == "cuda" else 0
    slots = gpus if gpus > 1 else (free_cores() // max(1, sweep.threads) if sweep.device.type == "cpu" else 1)
    if workers is not None:
        slots = workers
    if slots > 1 and seconds * len(rest) > PARALLEL_WORTH_S and _importable(sweep):
        local = LocalExecutor(workers=slots)
        local.run(sweep, rest)
        return local
    serial.run(sweep, rest)
    return serial


def _importable(sweep: Sweep) -> bool:
    """Whether a worker can rebuild this sweep's experiment (a test's own experiment may not be)."""
    task = sweep.make_task(sweep.pending[0])
    try:
        find_experiment(task.experiment, task.module)
    except (ValueError, ImportError):
        return False
    return True


def experiment_module(exp: Any) -> str:
    """The module a worker imports to find ``exp`` again (where its ``run`` is defined)."""
    return getattr(exp.run, "__module__", None) or sys.modules[__name__].__name__


__all__ = ["EXECUTORS", "UnitFailedError", "UnitTask", "make_executor", "parse_executor_options", "run_sweep",
           "run_unit", "run_job", "find_experiment", "free_cores", "usable_cores", "sweep_units"]
