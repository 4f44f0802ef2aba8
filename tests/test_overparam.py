"""Coverage, required width and the replication construction (chapter 4, appendix *Formulas and notation*, how much wider)."""
import math

import numpy as np
import pytest
import torch

from rpbook.data import make_teacher
from rpbook.masks import sample_er_mask
from rpbook.overparam import (
    all_covered_probability,
    block_link_counts,
    construction_conditions,
    construction_probability,
    coverage_probability,
    fit_width_constant,
    replica_coverage,
    replicate_into_masks,
    required_width,
    required_width_for_network,
    smallest_width,
    union_bound_width,
    width_factor,
)


# ----------------------------------------------------------------------------- closed forms


@pytest.mark.parametrize("p", [0.5, 0.1, 0.01, 0.001])
def test_width_factor_is_just_below_one_over_p(p):
    w = width_factor(p)
    # log(1/(1-p)) = p + p^2/2 + ... > p, so the factor is below 1/p, by about 1/2 in absolute terms
    assert w < 1 / p
    assert 1 / p - w == pytest.approx(0.5, abs=0.5 * p + 0.1)
    assert width_factor(1.0) == 0.0


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, float("nan"), "0.1", True])
def test_bad_density_is_rejected_with_its_value(bad):
    with pytest.raises(ValueError, match="density"):
        coverage_probability(bad, 3)
    with pytest.raises(ValueError, match="density"):
        width_factor(bad)


def test_coverage_probability_of_real_masks():
    """The fraction of covered (unit, input) pairs of exact-count ER masks matches 1 - (1-p)^k."""
    g = torch.Generator().manual_seed(0)
    for p, k in [(0.3, 2), (0.1, 8), (0.05, 16)]:
        fractions = [replica_coverage(sample_er_mask((8 * k, 8 * k), p, generator=g), k) for _ in range(40)]
        expected = coverage_probability(p, k)
        # 40 masks x 64k pairs: the standard error of the mean is below 0.01 here
        se = math.sqrt(expected * (1 - expected) / (40 * 64 * k))
        assert np.mean(fractions) == pytest.approx(expected, abs=5 * se + 1e-3)


def test_all_covered_probability_matches_bernoulli_simulation():
    """With independent entries the events of disjoint link sets multiply."""
    g = torch.Generator().manual_seed(1)
    p, k, n = 0.3, 12, 3
    edges = k * n * n  # every replica of every unit needs each input block
    draws = 4000
    masks = torch.rand((draws, k * n, k * n), generator=g) < p
    covered = masks.reshape(draws, k * n, n, k).any(dim=3).reshape(draws, -1).all(dim=1)
    expected = all_covered_probability(p, k, edges)
    se = math.sqrt(expected * (1 - expected) / draws)
    assert 0.05 < expected < 0.95  # the test is informative only away from 0 and 1
    assert covered.double().mean().item() == pytest.approx(expected, abs=4 * se)


@pytest.mark.parametrize("p,delta,edges", [(0.5, 0.05, 136), (0.1, 0.01, 1000), (0.01, 0.1, 64), (0.3, 0.5, 1)])
def test_required_width_is_the_smallest_sufficient_k(p, delta, edges):
    k = required_width(p, delta, edges)
    assert all_covered_probability(p, k, edges) >= 1 - delta - 1e-12
    if k > 1:
        assert all_covered_probability(p, k - 1, edges) < 1 - delta
    # the union bound is sufficient, so it never asks for less than the exact answer
    assert union_bound_width(p, delta, edges) >= k - 1


def test_required_width_grows_like_the_width_factor():
    ks = np.array([required_width(p, 0.05, 1000) for p in (0.1, 0.01, 0.001)])
    ratio = ks / np.asarray(width_factor(np.array([0.1, 0.01, 0.001])))
    # k / w(p) tends to log(E / delta) = log(20000) ~ 9.9 as p -> 0
    assert ratio == pytest.approx(math.log(1000 / 0.05), rel=0.02)


def test_required_width_rejects_bad_delta_and_edges():
    with pytest.raises(ValueError, match="delta"):
        required_width(0.1, 1.0, 10)
    with pytest.raises(ValueError, match="edges"):
        required_width(0.1, 0.05, 0)


def test_network_requirement_counts_every_replica():
    widths = (16, 8, 8, 1)
    conds = construction_conditions(widths, 5)
    assert [(c.layer, c.pairs, c.links) for c in conds] == [(2, 5 * 8 * 8, 5), (3, 1 * 8, 5)]
    masked_first = construction_conditions(widths, 5, dense_first=False)
    assert masked_first[0].links == 1 and masked_first[0].pairs == 5 * 8 * 16
    for p in (0.5, 0.1):
        k = required_width_for_network(widths, p, 0.05)
        assert construction_probability(widths, p, k) >= 0.95
        assert construction_probability(widths, p, k - 1) < 0.95
        # more conditions than the per-edge count at the same k: never a smaller width
        assert k >= required_width(p, 0.05, 8 * 8 + 8)
    with pytest.raises(ValueError, match="dense_first"):
        required_width_for_network(widths, 0.5, 0.05, dense_first=False)


# ----------------------------------------------------------------------------- the construction


def _inputs(n=256, d=6, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_construction_is_exact_when_every_pair_is_covered():
    teacher = make_teacher(6, (5, 4), 2, seed=3).double()
    k, p = 12, 0.5
    g = torch.Generator().manual_seed(0)
    masks = [None, sample_er_mask((k * 4, k * 5), p, generator=g), sample_er_mask((2, k * 4), p, generator=g)]
    built = replicate_into_masks(teacher, k, masks)
    assert built.exact, "p = 0.5 with k = 12 leaves a pair uncovered only with probability ~1e-2"
    x = _inputs()
    with torch.no_grad():
        assert torch.allclose(built.model(x), teacher(x), atol=1e-10)
    # the source only uses links its mask allows
    assert not (built.model[2].weight[~masks[1]] != 0).any()


def test_construction_loses_exactly_the_uncovered_terms():
    teacher = make_teacher(6, (5, 4), 1, seed=4).double()
    k = 3
    dense = torch.ones(k * 4, k * 5, dtype=torch.bool)
    cut = dense.clone()
    cut[0, 0:k] = False  # replica 0 of hidden unit 0 (layer 2) sees no replica of input unit 0
    built = replicate_into_masks(teacher, k, [None, cut, None])
    assert built.uncovered == 1
    assert built.pairs == k * 5 * 6 + k * 4 * 5 + 4
    assert int((block_link_counts(cut, k) == 0).sum()) == 1
    x = _inputs()
    with torch.no_grad():
        assert not torch.allclose(built.model(x), teacher(x), atol=1e-6)
        built_dense = replicate_into_masks(teacher, k, [None, dense, None])
        assert torch.allclose(built_dense.model(x), teacher(x), atol=1e-10)


def test_construction_rejects_wrong_mask_shapes():
    teacher = make_teacher(6, (5,), 1, seed=0)
    with pytest.raises(ValueError, match="shape"):
        replicate_into_masks(teacher, 2, [None, torch.ones(1, 5, dtype=torch.bool)])
    with pytest.raises(ValueError, match="one mask"):
        replicate_into_masks(teacher, 2, [None])


# ----------------------------------------------------------------------------- reading the grid


def test_smallest_width_interpolates_a_power_law_exactly():
    ks = np.array([1, 2, 4, 8, 16], dtype=float)
    errors = 0.8 * ks ** -1.0  # log-linear, so interpolation is exact
    k, status = smallest_width(ks, errors, 0.8 / 5.0)
    assert status == "reached" and k == pytest.approx(5.0)
    assert smallest_width(ks, errors, 0.9) == (1.0, "first")
    k, status = smallest_width(ks, errors, 0.01)
    assert status == "never" and math.isnan(k)
    with pytest.raises(ValueError, match="increasing"):
        smallest_width([2, 1], [0.5, 0.4], 0.1)


def test_fit_recovers_the_constant_and_flags_a_wrong_shape():
    p = np.array([0.5, 0.2, 0.1, 0.05, 0.02])
    fit = fit_width_constant(p, 0.7 * np.asarray(width_factor(p)))
    assert fit.c == pytest.approx(0.7) and fit.r2 == pytest.approx(1.0) and fit.slope == pytest.approx(1.0)
    assert fit.rms_log == pytest.approx(0.0, abs=1e-12)
    sqrt_law = fit_width_constant(p, 2.0 * np.asarray(width_factor(p)) ** 0.5)
    assert sqrt_law.slope == pytest.approx(0.5, abs=1e-9) and sqrt_law.r2 < 0.9
    with_missing = fit_width_constant(np.append(p, 0.01), np.append(0.7 * width_factor(p), np.nan))
    assert with_missing.n == len(p)
    with pytest.raises(ValueError, match="p = 1"):
        fit_width_constant([1.0, 0.5], [1.0, 2.0])


# ----------------------------------------------------------------------------- the chapter's experiments


# ----------------------------------------------------------------------------- the chapter's explorer


def _fake_result():
    rows = [{"density": p, "k": k, "seed": s, "test_mse": (1.0 if p < 1 else 0.1) / k + 0.01 * s,
             "uncovered_pairs": 0, "kept_weights": 1, "weights": 1}
            for p in (1.0, 0.2, 0.05) for k in (1, 2, 4) for s in (0, 1)]
    return {"rows": rows, "teacher_widths": [4, 2, 2, 1], "teacher_weights": 14}


