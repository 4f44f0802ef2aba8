"""Chapter 5's experiments (init_signal_propagation, evci_pipeline) at the quick profile.

Experiment tests are grouped one file per chapter (tests/test_experiments_chN.py)."""
import pytest


def test_init_signal_propagation_experiment_at_quick(tmp_path):
    from rpbook.experiments import run_experiment
    from rpbook.experiments.init_signal_propagation import curve, grad_norms
    from rpbook.results import ResultStore

    record = run_experiment("init_signal_propagation", "quick", store=ResultStore(tmp_path), progress=False)
    result, config = record["result"], record["config"]
    assert len(result["runs"]) == len(config["densities"]) * len(config["inits"]) * len(config["seeds"])
    # (a ratio is None when the dense init's gradient underflows to exactly zero)
    ratios = {e["density"]: e["unit-scaled"]["mean"] for e in result["grad_norm_ratio"] if e["unit-scaled"]}
    assert ratios[1.0] == pytest.approx(1.0)  # no mask: the three inits coincide
    assert all(ratios[p] > 1 for p in ratios if p < 1)
    dense = grad_norms(result, "dense")
    assert dense["mean"] == sorted(dense["mean"], reverse=True)  # sparser, smaller gradient
    assert len(curve(result, "unit-scaled", 0.1)) == len(result["layers"])
    with pytest.raises(ValueError, match="init"):
        grad_norms(result, "orthogonal")


def test_evci_pipeline_experiment_at_quick(tmp_path):
    from rpbook.experiments import run_experiment
    from rpbook.experiments.evci_pipeline import METHODS, accuracy_table, curves_of, setup_names
    from rpbook.results import ResultStore

    record = run_experiment("evci_pipeline", "quick", store=ResultStore(tmp_path), progress=False)
    result = record["result"]
    (setup,) = setup_names(result)
    unit = result["units"][0]
    target = record["config"]["setups"][0]["density"]
    assert abs(unit["density"] - target) < 0.01
    assert set(unit["methods"]) == {"prune", *METHODS}
    for method in ("set", "rigl"):
        updates = unit["methods"][method]["mask_updates"]
        assert updates and all(u["swapped"] > 0 for u in updates[:1])
    # Lottery starts from the pruning run's own weights, so it starts closer to its solution than Scratch.
    assert unit["methods"]["lottery"]["start_distance"] < unit["methods"]["scratch"]["start_distance"]
    assert curves_of(result, setup, "rigl")["steps"][0] == 0
    assert len(accuracy_table(result)) == 1 + len(METHODS)
    for m in ("lottery", "scratch"):
        assert len(unit["interpolation"][m]["train_loss"]) == len(unit["interpolation"]["alphas"])
