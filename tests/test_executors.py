"""Executors for sweeps: same numbers on serial, local and submitit; failed units, resume, Ctrl-C, the default."""
import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rpbook.experiments import Experiment, RunContext, executors, run_experiment
from rpbook.experiments.executors import UnitFailedError, make_executor, parse_executor_options
from rpbook.results import ResultStore

FAIL_ENV = "RPBOOK_TEST_FAIL_UNIT"
SLEEP_ENV = "RPBOOK_TEST_UNIT_SLEEP"


@dataclasses.dataclass(frozen=True)
class SquaresConfig:
    n: int = 4
    seeds: tuple = (0,)


def _squares_run(config: SquaresConfig, ctx: RunContext) -> dict:
    def unit(u: dict) -> dict:
        marker = os.environ.get(SLEEP_ENV)
        if marker:  # the Ctrl-C test: say which process runs this unit, then take long
            Path(marker, f"{u['i']}-{os.getpid()}").touch()
            time.sleep(60)
        if os.environ.get(FAIL_ENV) == str(u["i"]):
            raise ValueError(f"unit {u['i']} is bad")
        return {"square": u["i"] ** 2, "pid": os.getpid()}

    rows = ctx.map([{"i": i} for i in range(config.n)], unit)
    return {"rows": rows}


# Module level, so that a worker process can import it by name (as it imports rpbook's own experiments).
SQUARES = Experiment(name="squares", chapter="test", description="squares on workers",
                     presets=lambda profile: SquaresConfig(), run=_squares_run)


def strip_timings(obj):
    if isinstance(obj, dict):
        return {k: strip_timings(v) for k, v in obj.items() if k != "wall_time_s"}
    if isinstance(obj, list):
        return [strip_timings(v) for v in obj]
    return obj


@pytest.fixture
def squares(monkeypatch):
    from rpbook import experiments

    monkeypatch.setattr(experiments, "get_experiment", lambda name: SQUARES)
    return SQUARES


def test_same_numbers_serial_local_and_submitit(tmp_path):
    """One cheap training sweep (2 units) gives bit-identical results on all three executors."""
    results = {}
    for name, options in [("serial", None), ("local", None),
                          ("slurm", {"cluster": "local", "folder": str(tmp_path / "jobs"), "poll_s": "0.2"})]:
        rec = run_experiment("rule_seed_spread", "quick", seeds=[0], store=ResultStore(tmp_path / name),
                             progress=False, device="cpu", force=True, executor=name, executor_options=options,
                             workers=2)
        used = rec["provenance"]["executors"]
        assert [u["name"] for u in used] == [name] and used[0]["units"] == 2
        results[name] = strip_timings(rec["result"])
        if name == "slurm":  # the jobs say where they trained and where their logs are
            assert used[0]["devices"] == ["cpu"] and used[0]["jobs"] == 2
            assert [env["torch_threads"] for env in used[0]["numeric_envs"]] == [rec["provenance"]["torch_threads"]]
            assert Path(used[0]["logs"]).parent == tmp_path / "jobs"
    assert results["local"] == results["serial"]
    assert results["slurm"] == results["serial"]
    assert len(results["serial"]["runs"]) == 2
    assert list((tmp_path / "jobs").glob("rule_seed_spread-*/*/*_log.out"))  # the jobs' logs are kept


def test_failed_unit_names_its_config_and_the_sweep_resumes(squares, tmp_path, monkeypatch):
    store = ResultStore(tmp_path)
    monkeypatch.setenv(FAIL_ENV, "0")  # the first units go to the spawned worker; this process trains units 2 and 3
    with pytest.raises(UnitFailedError, match=r'unit \{"i": 0\} failed on the local executor: ValueError: unit 0 is bad'):
        run_experiment("squares", "quick", store=store, progress=False, executor="local", workers=2)
    config = SquaresConfig()
    assert not store.has("squares", config)
    finished = store.load_partial("squares", config)
    assert '{"i": 0}' not in finished and {'{"i": 2}', '{"i": 3}'} <= set(finished)
    monkeypatch.delenv(FAIL_ENV)
    rec = run_experiment("squares", "quick", store=store, progress=False, executor="serial")
    assert rec["provenance"]["units_reused"] == len(finished)
    assert rec["provenance"]["units_run"] == 4 - len(finished)
    assert [r["square"] for r in rec["result"]["rows"]] == [0, 1, 4, 9]


def test_ctrl_c_stops_every_worker(tmp_path):
    """SIGINT to a process running a parallel sweep ends it (a worker itself) and its spawned worker at once."""
    markers = tmp_path / "markers"
    markers.mkdir()
    env = {**os.environ, SLEEP_ENV: str(markers), "TQDM_DISABLE": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    code = ("import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"  # even if started ignoring it
            "import test_executors as t, rpbook.experiments as e\n"
            "from rpbook.results import ResultStore\n"
            "e.get_experiment = lambda name: t.SQUARES\n"
            f"e.run_experiment('squares', 'quick', store=ResultStore({str(tmp_path / 'store')!r}), progress=False, "
            "executor='local', workers=2)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 60
    while len(list(markers.iterdir())) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    started = list(markers.iterdir())
    assert len(started) == 2, proc.communicate()[1] if proc.poll() is not None else "workers did not start"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    for marker in started:
        pid = int(marker.name.split("-")[1])
        for _ in range(50):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"worker {pid} still runs after Ctrl-C")


def test_default_runs_short_sweeps_here_and_long_ones_on_a_pool(squares, tmp_path, monkeypatch):
    rec = run_experiment("squares", "quick", store=ResultStore(tmp_path / "a"), progress=False)
    assert rec["provenance"]["executors"] == [{"name": "serial", "workers": 1, "units": 4}]
    # units that would keep this process busy long enough go to a pool when cores are free
    ran = []
    monkeypatch.setattr(executors, "PARALLEL_WORTH_S", 0.0)
    monkeypatch.setattr(executors, "free_cores", lambda: 4)
    monkeypatch.setattr(executors.LocalExecutor, "run",
                        lambda self, sweep, indices=None: ran.extend(indices) or executors.SerialExecutor().run(sweep, indices))
    rec = run_experiment("squares", "quick", store=ResultStore(tmp_path / "b"), progress=False)
    assert ran == [1, 2, 3] and rec["provenance"]["executors"][0]["name"] == "local"
    monkeypatch.setattr(executors, "free_cores", lambda: 1)  # a busy machine: stay serial
    rec = run_experiment("squares", "quick", store=ResultStore(tmp_path / "c"), progress=False)
    assert rec["provenance"]["executors"][0]["name"] == "serial"
    monkeypatch.setenv(executors.EXECUTOR_ENV, "serial")
    assert isinstance(make_executor(), executors.SerialExecutor)


@pytest.mark.parametrize("name, options, workers, message", [
    ("threads", None, None, "unknown executor 'threads'; allowed: auto, serial, local, slurm"),
    ("local", {"partition": "gpu"}, None, "the local executor takes no --executor-option"),
    ("local", None, 0, "workers must be an integer >= 1, got 0"),
    ("slurm", {"partion": "gpu"}, None, "unknown slurm executor option 'partion'; allowed:"),
    ("slurm", {"timeout_min": "soon"}, None, "timeout_min must be an integer >= 1, got 'soon'"),
    ("slurm", {"cluster": "pbs"}, None, "cluster must be slurm, local or debug, got 'pbs'"),
    (None, {"partition": "gpu"}, None, "executor options need an explicit --executor"),
])
def test_bad_executor_input_is_one_clear_error(name, options, workers, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_executor(name, options, workers)


def test_executor_options_and_slurm_parameters():
    assert parse_executor_options(["partition=gpu", "timeout_min=600"]) == {"partition": "gpu", "timeout_min": "600"}
    with pytest.raises(ValueError, match="must be key=value, got 'gpu'"):
        parse_executor_options(["gpu"])
    ex = make_executor("slurm", {"partition": "gpu", "timeout_min": "600", "gpus_per_node": "1"}, workers=16)
    assert ex.params == {"timeout_min": 600, "slurm_partition": "gpu", "gpus_per_node": 1,
                         "slurm_array_parallelism": 16}


def test_cli_run_documents_executors(capsys):
    from rpbook.cli import main

    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for word in ("--executor {auto,serial,local,slurm}", "--executor-option KEY=VALUE", "--workers", "partition=gpu",
                 "timeout_min", "gpus_per_node", "--threads"):
        assert word in text
    assert main(["run", "rule_seed_spread", "--executor", "slurm", "--executor-option", "partition"]) == 2
    assert "--executor-option must be key=value, got 'partition'" in capsys.readouterr().err


def test_sweep_units_lists_a_full_sweep_without_training():
    from rpbook.experiments import get_experiment
    from rpbook.experiments.executors import sweep_units

    config = get_experiment("rule_seed_spread").config("full")  # CIFAR-10: never loaded here
    units = sweep_units("rule_seed_spread", config)
    assert units == [{"rule": r, "seed": s} for r in config.rules for s in config.seeds] and len(units) == 10


def _timed_run(config: SquaresConfig, ctx: RunContext) -> dict:
    return {"rows": ctx.map([{"i": i} for i in range(config.n)], lambda u: {"pid": os.getpid()}, parallel=False)}


TIMED = Experiment(name="timed", chapter="test", description="units that measure time",
                   presets=lambda profile: SquaresConfig(), run=_timed_run)


def test_units_that_measure_time_never_run_in_parallel(tmp_path, monkeypatch):
    from rpbook import experiments

    monkeypatch.setattr(experiments, "get_experiment", lambda name: TIMED)
    rec = run_experiment("timed", "quick", store=ResultStore(tmp_path), progress=False, executor="local", workers=2)
    assert rec["provenance"]["executors"][0]["name"] == "serial"
    assert {row["pid"] for row in rec["result"]["rows"]} == {os.getpid()}


def _two_sweeps_run(config: SquaresConfig, ctx: RunContext) -> dict:
    first = ctx.map([{"i": i} for i in range(config.n)], lambda u: u["i"] ** 2)
    total = sum(first)  # the second sweep depends on the first one's results
    second = ctx.map([{"j": j} for j in range(2)], lambda u: total + u["j"])
    return {"first": first, "second": second}


TWO_SWEEPS = Experiment(name="two_sweeps", chapter="test", description="a sweep that needs an earlier one",
                        presets=lambda profile: SquaresConfig(), run=_two_sweeps_run)


def test_a_worker_rebuilds_a_later_sweep_from_the_earlier_results():
    import torch

    from rpbook.experiments.executors import UnitTask, run_unit

    task = UnitTask(experiment="two_sweeps", module=__name__, config=SquaresConfig(n=3), sweep=1,
                    earlier=([0, 1, 4],), unit={"j": 1}, device="cpu", threads=torch.get_num_threads())
    assert run_unit(task) == 0 + 1 + 4 + 1
    with pytest.raises(ValueError, match="not defined at module level"):
        run_unit(dataclasses.replace(task, experiment="nowhere"))
