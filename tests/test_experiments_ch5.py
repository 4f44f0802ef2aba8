"""Chapter 5's experiments (init_signal_propagation, evci_pipeline, ticket_ensembles) at the quick profile.

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
    # The random ERK arms: the pruned mask's global density, another mask (ERK layer densities).
    for m in ("random", "random+"):
        entry = unit["methods"][m]
        assert abs(entry["density"] - unit["density"]) < 0.01
        assert entry["layer_densities"] != unit["layer_densities"]
        assert 0 <= entry["mask_overlap"] < 0.5
        assert len(unit["interpolation"][m]["train_loss"]) == len(unit["interpolation"]["alphas"])
    # Same masks, two inits: the sparsity-aware one starts with the larger gradient.
    assert unit["methods"]["random+"]["grad_norm"][0] > unit["methods"]["random"]["grad_norm"][0]


def test_evci_sparse_start_names_bad_methods():
    from rpbook.experiments.evci_pipeline import EvciConfig, EvciSetup, sparse_start

    with pytest.raises(ValueError, match="no static start for method 'rigl'; allowed: lottery, scratch"):
        sparse_start(None, "rigl", None, 0)
    with pytest.raises(ValueError, match="unknown method 'random-erk'"):
        EvciConfig(setups=(EvciSetup(name="s"),), methods=("random-erk",))


def test_ticket_ensembles_experiment_at_quick(tmp_path):
    from rpbook.experiments import run_experiment
    from rpbook.experiments.ticket_ensembles import ensemble_table, group_names, per_seed
    from rpbook.results import ResultStore

    store = ResultStore(tmp_path)
    record = run_experiment("ticket_ensembles", "quick", store=store, progress=False)
    result, config = record["result"], record["config"]
    assert group_names(result) == list(config["groups"])
    (unit,) = result["units"]
    for g in config["groups"]:
        e = unit["groups"][g]
        assert len(e["members"]) == config["members"]
        assert all(abs(m["density"] - unit["density"]) < 0.01 for m in e["members"])
        assert e["ensemble_gain"] == pytest.approx(e["ensemble_accuracy"] - e["member_accuracy"])
        assert 0 <= e["pairwise_disagreement"] <= 1
        # Where all members agree the ensemble says the same; an example with any disagreement has at least K-1
        # disagreeing pairs, so at most K/2 times the mean pairwise disagreement of the examples are such.
        k = config["members"]
        bound = min(m["test_accuracy"] for m in e["members"]) + k / 2 * e["pairwise_disagreement"]
        assert e["ensemble_accuracy"] <= bound + 1e-12
    assert per_seed(result, "lottery", "ensemble_gain") == [unit["groups"]["lottery"]["ensemble_gain"]]
    assert len(ensemble_table(result)) == len(config["groups"])
    with pytest.raises(ValueError, match="not in this result"):
        per_seed(result, "rigl", "ensemble_gain")
    # Resume: a second call reuses the stored result instead of training again.
    again = run_experiment("ticket_ensembles", "quick", store=store, progress=False)
    assert again["result"] == result


@pytest.mark.parametrize("field, value, message", [
    ("groups", ("lottery", "rigl"), "unknown group 'rigl'; allowed: lottery, scratch"),
    ("groups", (), "groups must be a non-empty tuple"),
    ("members", 1, "members must be an integer >= 2"),
    ("prune_end", 0.1, "need 0 <= prune_start < prune_end <= 1"),
    ("seeds", (0, 0), "seeds"),
])
def test_ticket_ensembles_bad_config_is_named(field, value, message):
    import dataclasses

    from rpbook.experiments.ticket_ensembles import presets

    with pytest.raises(ValueError, match=message):
        dataclasses.replace(presets("quick"), **{field: value})
