"""Chapter 4's experiments (coverage, teacher_student_width) and their explorer.

Experiment tests are grouped one file per chapter (tests/test_experiments_chN.py)."""
import math
import pytest
import torch
from rpbook.overparam import block_link_counts, construction_probability, coverage_probability


def _fake_result():
    rows = [{"density": p, "k": k, "seed": s, "test_mse": (1.0 if p < 1 else 0.1) / k + 0.01 * s,
             "uncovered_pairs": 0, "kept_weights": 1, "weights": 1}
            for p in (1.0, 0.2, 0.05) for k in (1, 2, 4) for s in (0, 1)]
    return {"rows": rows, "teacher_widths": [4, 2, 2, 1], "teacher_weights": 14}


def test_experiment_presets_are_valid_for_every_profile():
    from rpbook.experiments import get_experiment

    for name in ("coverage", "teacher_student_width"):
        exp = get_experiment(name)
        for profile in ("quick", "standard", "full"):
            config = exp.config(profile)
            assert exp.config_from_dict(__import__("rpbook.results", fromlist=["to_jsonable"]).to_jsonable(config)) == config
def test_coverage_cell_agrees_with_the_closed_form():
    from rpbook.experiments.coverage import simulate_cell

    cell = simulate_cell(8, 8, 0.1, 8, masks=30, seed=0)
    expected = coverage_probability(0.1, 8)
    assert cell["coverage_mean"] == pytest.approx(expected, abs=0.02)
    assert cell["realized_density"] == pytest.approx(0.1, abs=1e-3)
    assert simulate_cell(8, 8, 0.1, 8, masks=3, seed=0) == simulate_cell(8, 8, 0.1, 8, masks=3, seed=0)
def test_students_have_density_p_in_every_layer_but_the_first():
    from rpbook.experiments.teacher_student_width import build_student, presets, uncovered_pairs
    from rpbook.masks import layer_densities

    config = presets("quick")
    model, masking = build_student(config, 0.25, 3, seed=5)
    dens = list(layer_densities(model).values())
    assert dens[0] == 1.0 and all(d == pytest.approx(0.25, abs=0.01) for d in dens[1:])
    assert [m.out_features for m in model if isinstance(m, torch.nn.Linear)] == [12, 12, 1]
    again, _ = build_student(config, 0.25, 3, seed=5)
    for a, b in zip(model.parameters(), again.parameters()):
        assert torch.equal(a, b)
    expected = sum(int((block_link_counts(m, 3) == 0).sum()) for name, m in masking.masks.items())
    assert uncovered_pairs(model, 3) == expected
    dense, none = build_student(config, 1.0, 2, seed=0)
    assert none is None and uncovered_pairs(dense, 2) == 0
def test_one_student_trains_inside_its_mask():
    import dataclasses

    from rpbook.experiments.teacher_student_width import load_teacher_data, presets, train_student

    config = dataclasses.replace(presets("quick"), n_train=128, n_test=64)
    data = load_teacher_data(config)
    assert data.y_train.mean().abs().item() < 1e-5  # centred targets
    row = train_student(config, data, 0.5, 2, seed=0)
    assert row["kept_weights"] < row["weights"]
    assert math.isfinite(row["test_mse"]) and row["test_mse"] > 0
    assert len(row["train_loss_curve"]) == config.train.epochs
def test_width_explorer_reads_the_grid_and_redraws():
    import matplotlib

    matplotlib.use("Agg")
    from rpbook.chapters.ch4_how_much_wider import WidthExplorer

    explorer = WidthExplorer(_fake_result())
    a = explorer.update(0.2, 2)
    png_a = explorer.render_png()
    b = explorer.update(0.05, 4)
    assert a["coverage"] == pytest.approx(coverage_probability(0.2, 2))
    assert b["construction"] == pytest.approx(construction_probability((4, 2, 2, 1), 0.05, 4))
    assert b["seed_errors"] == pytest.approx([0.25, 0.26])
    assert explorer.render_png() != png_a
    explorer.update(0.2, 2)
    assert explorer.render_png() == png_a  # same cell, same picture
    with pytest.raises(ValueError, match="not on the stored grid"):
        explorer.update(0.3, 2)
def test_width_explorer_live_and_twin():
    import matplotlib

    matplotlib.use("Agg")
    from rpbook.chapters.ch4_how_much_wider import width_explorer

    panel = width_explorer(_fake_result(), density=0.2, k=2)
    controls = {w.description: w for w in panel.children if getattr(w, "description", "")}
    controls["width factor k"].value = 4
    assert panel.explorer.k == 4 and panel.explorer.density == 0.2
    html = width_explorer(_fake_result(), static=True, vary="width", density=0.05).data
    assert "<script" in html and html.count("data:image/png") == 3
def test_masked_first_layer_scans_past_a_failing_k1():
    from rpbook.overparam import construction_probability, required_width_for_network

    widths = (1, 1, 10)
    assert construction_probability(widths, 0.9, 1, dense_first=False) < 0.7
    assert construction_probability(widths, 0.9, 2, dense_first=False) >= 0.7
    assert required_width_for_network(widths, 0.9, 0.3, dense_first=False) == 2
    with pytest.raises(ValueError, match="dense_first=True"):
        required_width_for_network((16, 8, 1), 0.5, 0.05, dense_first=False)
