"""Stored results that verify anywhere: tolerances, field-by-field comparison, damaged files, `rpbook verify`."""
import dataclasses
import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rpbook import experiments
from rpbook.cli import main
from rpbook.config import numeric_environment, same_numeric_environment
from rpbook.experiments import Experiment, RunContext, run_experiment, verify_stored
from rpbook.results import ResultStore, Tolerance, compare_results, field_pattern, load_record, tolerance_for


@dataclasses.dataclass(frozen=True)
class NoisyConfig:
    n: int = 3
    seeds: tuple = (0,)


STATE = {"offset": 0.0}


def _run(config, ctx: RunContext):
    rows = ctx.map([{"i": i} for i in range(config.n)], lambda u: {"i": u["i"], "acc": 0.5 + STATE["offset"]})
    return {"rows": rows, "count": config.n, "wall_time_s": 1.0 + STATE["offset"]}


NOISY = Experiment(name="noisy", chapter="test", description="a result whose accuracy we can move",
                   presets=lambda profile: NoisyConfig(), run=_run,
                   tolerances={"rows.#.acc": Tolerance(abs=0.01, why="test")})


@pytest.fixture
def noisy(monkeypatch, tmp_path):
    monkeypatch.setattr(experiments, "get_experiment", lambda name: NOISY)
    monkeypatch.setattr(experiments, "experiment_names", lambda: ["noisy"])
    STATE["offset"] = 0.0
    store = ResultStore(tmp_path / "results")
    record = run_experiment("noisy", "standard", store=store, progress=False, device="cpu")
    return store, store.path("noisy", NoisyConfig()), record


def test_tolerance_checks_its_numbers():
    assert Tolerance(abs=0.01).allows(0.5, 0.509) and not Tolerance(abs=0.01).allows(0.5, 0.52)
    assert Tolerance(rel=0.1).allows(100.0, 109.0) and not Tolerance(rel=0.1).allows(100.0, 112.0)
    # A bound of 12 of 400 validation examples admits 12 examples, although 0.5975 - 0.5675 rounds above 0.03;
    # one more example fails, and a zero tolerance stays exact.
    assert Tolerance(abs=0.03).allows(0.5675, 0.5975) and not Tolerance(abs=0.03).allows(0.5675, 0.6)
    assert not Tolerance().allows(0.5, 0.5 + 1e-16) and Tolerance().allows(0.5, 0.5)
    for bad in (-1, math.nan, math.inf, "0.1", True):
        with pytest.raises(ValueError, match="Tolerance.abs must be a finite number >= 0"):
            Tolerance(abs=bad)


def test_patterns_match_list_items_and_first_match_wins():
    assert field_pattern("rows[3].layers[0].kept") == "rows.#.layers.#.kept"
    tols = {"rows.#.acc": Tolerance(abs=1), "*acc*": Tolerance(abs=2)}
    assert tolerance_for("rows[2].acc", tols).abs == 1
    assert tolerance_for("summary[0].test_acc.mean", tols).abs == 2
    assert tolerance_for("rows[2].n", tols) is None


def test_compare_exact_vs_tolerant():
    stored = {"rows": [{"acc": 0.5, "n": 3, "wall_time_s": 1.0}], "name": "a"}
    moved = {"rows": [{"acc": 0.505, "n": 3, "wall_time_s": 9.0}], "name": "a"}
    tols = {"rows.#.acc": Tolerance(abs=0.01)}
    exact = compare_results(stored, moved, tols, exact=True)
    assert [c.verdict for c in exact if c.path == "rows[0].acc"] == ["differs"]  # same environment: bits must match
    tolerant = compare_results(stored, moved, tols, exact=False)
    assert {c.path: c.verdict for c in tolerant} == {"rows[0].acc": "within", "rows[0].n": "exact", "name": "exact"}
    # counts, names and structure are never within tolerance
    assert any(c.verdict == "differs" for c in compare_results(stored, {**moved, "name": "b"}, tols, exact=False))
    assert any(c.verdict == "differs" for c in compare_results(stored, {"rows": [], "name": "a"}, tols, exact=False))
    assert any(c.verdict == "differs" for c in compare_results({"x": 1}, {"x": 1.0}, {}, exact=False))


def test_timings_get_their_tolerance_on_the_same_environment_too():
    tols = {"ms": Tolerance(rel=0.5, always=True), "acc": Tolerance(abs=0.1)}
    checks = compare_results({"ms": 1.0, "acc": 0.5}, {"ms": 1.3, "acc": 0.51}, tols, exact=True)
    assert {c.path: c.verdict for c in checks} == {"ms": "within", "acc": "differs"}
    tols = {"machine.*": Tolerance(any_value=True)}
    checks = compare_results({"machine": {"cpu": "A", "load": 1.0}}, {"machine": {"cpu": "B", "load": 9.0}}, tols)
    assert {c.verdict for c in checks} == {"within"}


def test_numeric_environment_is_recorded_and_compared():
    env = numeric_environment("cpu")
    assert env["device"] == "cpu" and env["cpu_capability"] and env["blas"] and env["torch_threads"] >= 1
    assert same_numeric_environment(env, dict(env))
    assert not same_numeric_environment(env, {**env, "cpu_capability": "OTHER"})
    assert not same_numeric_environment(env, None)


def test_verify_exact_on_same_environment_and_refuses_a_change(noisy):
    store, path, record = noisy
    assert record["provenance"]["numeric_env"]["device"] == "cpu"
    v = verify_stored(path)
    assert v.exact_expected and v.ok and v.counts()["differs"] == 0
    STATE["offset"] = 0.001  # a last-bits change on the same environment is a failure
    v = verify_stored(path)
    assert not v.ok and v.worst(1)[0].path == "rows[0].acc"


def test_verify_within_tolerance_on_another_environment(noisy):
    store, path, record = noisy
    record["provenance"]["numeric_env"]["cpu_capability"] = "SOME-OTHER-CPU"
    path.write_text(json.dumps(record))
    STATE["offset"] = 0.004
    v = verify_stored(path)
    assert not v.exact_expected and v.ok and v.counts()["within"] == 3
    STATE["offset"] = 0.05  # beyond the declared tolerance
    v = verify_stored(path)
    assert not v.ok and v.counts()["differs"] == 3
    assert json.loads(path.read_text()) == record  # verify never touches the stored file


def test_verify_cli_prints_verdicts_and_exit_code(noisy, capsys, tmp_path):
    store, path, record = noisy
    assert main(["verify", "noisy", "--results", str(store.root), "--no-progress", "--json", str(tmp_path / "v.json")]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "exact expected" in out and "7 exact" in out  # rows i (3), acc (3), count
    rows = json.loads((tmp_path / "v.json").read_text())
    assert rows[0]["ok"] and rows[0]["counts"]["differs"] == 0
    STATE["offset"] = 0.5
    assert main(["verify", "noisy", "--results", str(store.root), "--no-progress"]) == 1
    assert "DIFFERS" in capsys.readouterr().out
    assert main(["verify", "nope", "--results", str(store.root)]) == 2
    assert "unknown experiment 'nope'; allowed: noisy" in capsys.readouterr().err


@pytest.mark.parametrize("content, message", [
    ("[1, 2]", "expected a JSON object, got a list"),
    ('{"experiment": "noisy", "config": {}, "config_hash": "x", "result": 1}', "'provenance' is missing"),
    ("[" * 100000 + "]" * 100000, "not valid JSON"),
    ("{not json", "not valid JSON"),
    (b"\xff\xfe\x00garbage", "not valid JSON"),
])
def test_damaged_result_files_give_one_line_errors(tmp_path, content, message):
    path = tmp_path / "r.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ValueError, match=message) as err:
        load_record(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_list_reports_a_damaged_result_and_goes_on(noisy, capsys):
    store, path, record = noisy
    path.write_text("[]")
    assert main(["list", "--results", str(store.root)]) == 0
    out = capsys.readouterr().out
    assert "DAMAGED" in out and str(path) in out and "--force" in out
    with pytest.raises(ValueError, match="damaged result file"):
        run_experiment("noisy", "standard", store=store, progress=False)
    fresh = run_experiment("noisy", "standard", store=store, progress=False, force=True)  # --force replaces it
    assert load_record(path)["result"] == fresh["result"]


def test_damaged_partial_lines_are_skipped_with_a_warning(tmp_path):
    store = ResultStore(tmp_path)
    store.append_partial("noisy", NoisyConfig(), "k1", {"v": 1})
    with open(store.partial_path("noisy", NoisyConfig()), "a") as fh:
        fh.write('[1, 2]\n{"key": 3, "value": 1}\n' + "[" * 50000 + "\n")
    with pytest.warns(UserWarning, match="ignored 3 damaged line"):
        done = store.load_partial("noisy", NoisyConfig())
    assert done == {"k1": {"v": 1}}


json_values = st.recursive(st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=5),
                           lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
                           max_leaves=20)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.one_of(st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode())))
def test_fuzz_result_and_partial_loaders_never_trace_back(tmp_path_factory, payload):
    root = tmp_path_factory.mktemp("fuzz")
    path = root / "r.json"
    path.write_bytes(payload)
    try:
        record = load_record(path)
        assert isinstance(record, dict) and isinstance(record["provenance"], dict)
    except ValueError as err:
        assert str(path) in str(err)
    store = ResultStore(root)
    partial = store.partial_path("noisy", NoisyConfig())
    partial.parent.mkdir(parents=True, exist_ok=True)
    partial.write_bytes(payload + b"\n" + payload)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        done = store.load_partial("noisy", NoisyConfig())
    assert isinstance(done, dict) and all(isinstance(k, str) for k in done)
