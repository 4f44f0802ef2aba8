"""The result store and the experiment runner: hashing, provenance, no lost results, resumable sweeps."""
import dataclasses
import json

import pytest

from rpbook import experiments
from rpbook.experiments import Experiment, RunContext, run_experiment
from rpbook.results import ResultStore, config_hash, to_jsonable


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    n: int = 3
    seeds: tuple = (0,)


class Boom(RuntimeError):
    pass


def make_experiment(calls, fail_at=None):
    def run(config, ctx: RunContext):
        def unit(u):
            calls.append(u["i"])
            if fail_at is not None and u["i"] == fail_at:
                raise Boom(f"unit {u['i']}")
            return {"square": u["i"] ** 2}

        rows = ctx.map([{"i": i} for i in range(config.n)], unit)
        return {"rows": rows, "total": sum(r["square"] for r in rows)}

    return Experiment(name="toy", chapter="test", description="squares",
                      presets=lambda profile: ToyConfig(n={"quick": 3, "standard": 5, "full": 9}[profile]), run=run)


@pytest.fixture
def toy(monkeypatch):
    calls = []
    state = {"exp": make_experiment(calls)}
    monkeypatch.setattr(experiments, "get_experiment", lambda name: state["exp"])
    return calls, state


def test_hash_is_stable_and_config_sensitive():
    assert config_hash("a", ToyConfig()) == config_hash("a", ToyConfig())
    assert config_hash("a", ToyConfig()) != config_hash("a", ToyConfig(n=4))
    assert config_hash("a", ToyConfig()) != config_hash("b", ToyConfig())
    assert len(config_hash("a", ToyConfig())) == 16


def test_run_stores_with_provenance_then_loads(toy, tmp_path):
    calls, _ = toy
    store = ResultStore(tmp_path)
    rec = run_experiment("toy", "quick", store=store, progress=False, device="cpu")
    assert rec["result"]["total"] == 0 + 1 + 4
    prov = rec["provenance"]
    for key in ("rpbook_version", "torch_version", "device", "date", "wall_time_s", "profile", "seeds"):
        assert key in prov
    assert prov["profile"] == "quick" and prov["device"] == "cpu"
    assert calls == [0, 1, 2]
    again = run_experiment("toy", "quick", store=store, progress=False)
    assert calls == [0, 1, 2]  # loaded, not rerun
    assert again == rec


def test_failed_rerun_never_overwrites_and_sweep_resumes(toy, tmp_path):
    calls, state = toy
    store = ResultStore(tmp_path)
    rec = run_experiment("toy", "standard", store=store, progress=False)
    path = store.path("toy", ToyConfig(n=5))
    stored = path.read_text()
    # a forced rerun that dies midway leaves the stored file untouched ...
    state["exp"] = make_experiment(calls, fail_at=3)
    with pytest.raises(Boom):
        run_experiment("toy", "standard", store=store, progress=False, force=True)
    assert path.read_text() == stored
    # ... and a fresh config that dies keeps its finished units
    calls.clear()
    with pytest.raises(Boom):
        run_experiment("toy", "full", store=store, progress=False)
    assert calls == [0, 1, 2, 3]
    assert not store.has("toy", ToyConfig(n=9))
    state["exp"] = make_experiment(calls)
    calls.clear()
    rec = run_experiment("toy", "full", store=store, progress=False)
    assert calls == [3, 4, 5, 6, 7, 8]  # units 0-2 reused
    assert rec["result"]["total"] == sum(i * i for i in range(9))
    assert rec["provenance"]["units_reused"] == 3
    assert not store.partial_path("toy", ToyConfig(n=9)).exists()


def test_seeds_override_and_bad_seeds(toy, tmp_path):
    store = ResultStore(tmp_path)
    rec = run_experiment("toy", "quick", store=store, progress=False, seeds=[4, 5])
    assert rec["config"]["seeds"] == [4, 5]
    with pytest.raises(ValueError, match="seed must be a non-negative integer, got -1"):
        run_experiment("toy", "quick", store=store, progress=False, seeds=[-1])


def test_load_refuses_a_file_whose_config_differs(tmp_path):
    store = ResultStore(tmp_path)
    store.save("toy", ToyConfig(), {"x": 1}, {"device": "cpu"})
    path = store.path("toy", ToyConfig())
    record = json.loads(path.read_text())
    record["config"]["n"] = 99
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match="does not match its config"):
        store.load("toy", ToyConfig())
    record["config_hash"] = config_hash("toy", record["config"])  # consistent in itself, but filed under another name
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match="different config"):
        store.load("toy", ToyConfig())


def test_unknown_experiment_and_profile():
    with pytest.raises(ValueError, match="unknown experiment 'nope'; allowed:"):
        experiments.get_experiment("nope")
    with pytest.raises(ValueError, match="unknown profile 'fast'"):
        run_experiment("nope", "fast")


def test_to_jsonable_handles_tensors_tuples_and_nan():
    import torch

    assert to_jsonable({"a": (1, 2), "b": torch.tensor([1.5]), "c": float("nan")}) == {"a": [1, 2], "b": [1.5], "c": None}
    with pytest.raises(TypeError, match="cannot store"):
        to_jsonable(object())


def test_config_round_trips_through_json_including_nested_dataclasses():
    from rpbook.results import from_jsonable
    from rpbook.train import TrainConfig

    @dataclasses.dataclass(frozen=True)
    class Outer:
        name: str = "x"
        widths: tuple[float, ...] = (0.5, 1.0)
        hidden: tuple[int, ...] | None = None
        train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    cfg = Outer(widths=(1.0, 2.0), hidden=(3, 4), train=TrainConfig(epochs=3, milestones=(0.3,)))
    back = from_jsonable(Outer, json.loads(json.dumps(to_jsonable(cfg))))
    assert back == cfg and config_hash("e", back) == config_hash("e", cfg)
    with pytest.raises(ValueError, match="has no field"):
        from_jsonable(Outer, {"name": "x", "colour": "red"})
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        from_jsonable(Outer, {"train": {"epochs": 0}})


def test_run_experiment_refuses_repeated_seeds(tmp_path):
    import dataclasses

    from rpbook.experiments import get_experiment, run_experiment
    from rpbook.results import ResultStore

    with pytest.raises(ValueError, match="distinct"):
        run_experiment("subset_sum_error", "quick", seeds=(0, 0), store=ResultStore(tmp_path), progress=False)
    config = dataclasses.replace(get_experiment("coverage").config("quick"), seeds=(1, 1))
    with pytest.raises(ValueError, match="distinct"):
        run_experiment("coverage", "quick", config=config, store=ResultStore(tmp_path), progress=False)


def test_a_torn_partial_line_loses_only_its_own_unit(tmp_path):
    from rpbook.results import ResultStore

    store = ResultStore(tmp_path)
    config = {"a": 1}
    store.append_partial("exp", config, "k1", 1.0)
    with open(store.partial_path("exp", config), "a") as fh:
        fh.write('{"key": "k2", "val')  # a crash in the middle of writing unit k2
    store.append_partial("exp", config, "k3", 3.0)
    with pytest.warns(UserWarning, match="ignored 1 damaged line"):
        assert store.load_partial("exp", config) == {"k1": 1.0, "k3": 3.0}
