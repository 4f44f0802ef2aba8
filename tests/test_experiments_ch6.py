"""Chapter 6's experiments (subset_sum_error, slt_construction, edge_popup_*).

Experiment tests are grouped one file per chapter (tests/test_experiments_chN.py)."""
from __future__ import annotations


def test_subset_sum_experiment_draws_targets_apart_from_the_numbers():
    import numpy as np

    from rpbook.experiments.subset_sum_error import _unit_seed
    from rpbook.slt import random_numbers

    numbers = random_numbers(10, seed=_unit_seed(0, 10, "uniform"), distribution="uniform", size=1)[0]
    targets = np.random.default_rng(_unit_seed(0, 10, "uniform", purpose=1)).uniform(-1.0, 1.0, size=10)
    assert not np.intersect1d(numbers, targets).size


# ----------------------------------------------------------------------------- redundant structure vs plain width


def test_edge_popup_structure_quick_arms_have_equal_edges_and_keep_kappa(tmp_path):
    import pytest

    from rpbook.experiments import get_experiment, run_experiment
    from rpbook.experiments.edge_popup_structure import ARMS, accuracy_table
    from rpbook.results import ResultStore
    from rpbook.slt import mlp_params, subset_sum_architecture_params

    config = get_experiment("edge_popup_structure").config("quick")
    result = run_experiment("edge_popup_structure", "quick", config=config, store=ResultStore(tmp_path),
                            progress=False, device="cpu")["result"]
    rows = [r for r in result["rows"] if r["arm"] != "dense_target"]
    assert {r["arm"] for r in rows} == set(ARMS) and len(rows) == len(ARMS) * len(config.ns) * len(config.densities)
    assert result["target_params"] == mlp_params(64, config.target_hidden, 10)
    for n in config.ns:
        budget = subset_sum_architecture_params(64, config.target_hidden, 10, n)
        cell = {r["arm"]: r for r in rows if r["n"] == n}
        assert cell["subset_sum"]["edges"] == budget
        for arm in ("wide", "wide_deep"):  # a plain MLP widened to the same edge count, within one unit of width
            w, layers = cell[arm]["hidden"][0], len(cell[arm]["hidden"])
            step = mlp_params(64, (w + 1,) * layers, 10) - mlp_params(64, (w,) * layers, 10)
            assert abs(cell[arm]["edges"] - budget) <= step / 2
        target_depth = len(config.target_hidden) + 1
        assert cell["subset_sum"]["depth"] == cell["wide_deep"]["depth"] == 2 * target_depth
        assert cell["wide"]["depth"] == target_depth
    for r in rows:  # every search kept exactly κ of the edges, inside the structure, and moved no weight
        assert r["exact_counts"] and r["inside_source"] and r["weights_unchanged"]
        assert r["kept"] == pytest.approx(r["density"] * r["edges"], abs=r["depth"])
        assert 0.0 <= r["test_accuracy"] <= 1.0
    table = accuracy_table(result)
    assert len(table) == len(rows) and all(t["min"] <= t["mean"] <= t["max"] for t in table)


def test_edge_popup_structure_bad_fields_are_named():
    import pytest

    from rpbook.experiments import get_experiment

    for field, value, message in [("ns", (1,), "copies per input"), ("arms", ("narrow",), "unknown arms"),
                                  ("densities", (0.0,), "densit"), ("target_hidden", (), "target_hidden"),
                                  ("weight_init", "uniform", "weight_init")]:
        with pytest.raises(ValueError, match=message):
            get_experiment("edge_popup_structure").config("quick", **{field: value})
