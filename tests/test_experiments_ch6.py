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
