"""Chapter 7's experiments (s2s_imp, s2s_pruning_at_init, layer_collapse), their figures and explorer.

Experiment tests are grouped one file per chapter (tests/test_experiments_chN.py)."""
import pytest
from rpbook.masks import Masking, sample_masks


def test_s2s_imp_quick_never_leaves_the_source():
    from rpbook.experiments import RunContext
    from rpbook.experiments.s2s_imp import imp_schedule, presets, run
    from rpbook.results import ResultStore
    import tempfile

    assert imp_schedule(1.0, (0.1, 0.05), 0.5) == pytest.approx([0.5, 0.25, 0.125, 0.1, 0.05])
    config = presets("quick")
    with tempfile.TemporaryDirectory() as tmp:
        result = run(config, RunContext("s2s_imp", config, ResultStore(tmp), progress=False))
    er = [r for r in result["runs"] if r["rule"] != "dense"]
    assert er and all(r["realized_density"] <= config.source_densities[0] + 1e-9 for r in er)
    for row in result["runs"]:
        if row["level"] > 0:
            assert row["realized_density"] == pytest.approx(row["density"], abs=1e-3)  # one weight of ~2,600
    dense_flops = {r["density"]: r["cumulative_flops"] for r in result["runs"] if r["rule"] == "dense"}
    er_flops = {r["density"]: r["cumulative_flops"] for r in er}
    assert all(er_flops[t] < dense_flops[t] for t in config.targets)
def test_imp_from_an_er_source_never_revives_a_weight():
    from rpbook.data import load_dataset
    from rpbook.models import build_model
    from rpbook.pruning import iterative_magnitude_pruning
    from rpbook.train import TrainConfig

    data = load_dataset("digits", seed=0, n_train=300)
    model = build_model("mlp", in_shape=tuple(data.in_shape), num_classes=data.num_classes, hidden=(32,))
    source = sample_masks(model, 0.5, "balanced", seed=0)
    masking = Masking(model, source)
    levels = iterative_magnitude_pruning(model, data, TrainConfig(epochs=1, amp=False), [0.3, 0.1], masking=masking)
    total = sum(m.numel() for m in source.values())
    for level in levels[1:]:
        assert all(not (level.masks[n] & ~source[n]).any() for n in source)
        assert sum(int(m.sum()) for m in level.masks.values()) == round(level.density * total)
def test_chapter7_figures_and_explorer_draw_quick_results():
    import tempfile

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    from rpbook.chapters import ch7_sparse_to_sparse as ch7
    from rpbook.experiments import RunContext
    from rpbook.experiments import layer_collapse as lc, s2s_imp, s2s_pruning_at_init as pai
    from rpbook.results import ResultStore

    with tempfile.TemporaryDirectory() as tmp:
        store = ResultStore(tmp)
        imp = s2s_imp.run(s2s_imp.presets("quick"), RunContext("s2s_imp", s2s_imp.presets("quick"), store, progress=False))
        pres = pai.run(pai.presets("quick"), RunContext("s2s_pruning_at_init", pai.presets("quick"), store, progress=False))
        col = lc.run(lc.presets("quick"), RunContext("layer_collapse", lc.presets("quick"), store, progress=False))
    assert any(r["collapsed"] for r in col["runs"] if r["method"] == "magnitude" and r["density"] == 0.005)
    ch7.plot_s2s_imp(imp)
    ch7.plot_imp_flops(imp)
    ch7.plot_pruning_at_init(pres)
    ch7.plot_layer_collapse(col)
    plt.close("all")
    figure = Figure(layout="none")
    ch7.draw_s2s_explorer(figure, imp, pres, rule="balanced", source_density=0.3, method="synflow")
    assert len(figure.axes) == 2
    with pytest.raises(ValueError, match="not stored"):
        ch7.s2s_explorer(imp, pres, rule="pyramidal")


def test_s2s_str_granet_quick_stays_in_the_source_and_draws():
    import tempfile

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rpbook.chapters import ch7_sparse_to_sparse as ch7
    from rpbook.experiments import RunContext, s2s_str_granet as sg
    from rpbook.results import ResultStore

    config = sg.presets("quick")
    with tempfile.TemporaryDirectory() as tmp:
        result = sg.run(config, RunContext("s2s_str_granet", config, ResultStore(tmp), progress=False))
    n_weights = sum(result["layer_sizes"])
    for row in result["runs"]:
        assert 0.0 <= row["test_acc"] <= 1.0
        assert len(row["density_trace"]) == config.train.epochs + 1
        assert row["density_trace"][0] == pytest.approx(row["source_density"], abs=len(result["layers"]) / n_weights)
        assert row["density"] <= row["source_density"] + 1e-9       # never leaves (or grows beyond) the source
        if row["method"] == "granet":
            assert row["density"] == pytest.approx(row["setting"], abs=1 / n_weights)  # GraNet hits its target
        else:
            assert len(row["thresholds"]) == len(result["layers"]) and all(0 < t < 0.5 for t in row["thresholds"])
    # a sparse source trains with fewer FLOPs than the dense network, for each method
    flops = {(r["rule"], r["method"]): r["train_flops"] for r in result["runs"]}
    assert flops[("balanced", "granet")] < flops[("dense", "granet")]
    assert flops[("balanced", "str")] < flops[("dense", "str")]
    entry = result["str_layers"][0]
    assert set(entry["rules"]) == set(sg.COMPARED_RULES)
    for dens in entry["rules"].values():  # every rule spends the same budget as STR's reached density
        assert sum(p * n for p, n in zip(dens, result["layer_sizes"])) == pytest.approx(entry["density"] * n_weights)
    rule, dist = sg.closest_rule(entry)
    assert rule in sg.COMPARED_RULES and dist >= 0
    assert sg.log_distance([0.1, 1.0], [0.01, 1.0]) == pytest.approx(0.5)
    ch7.plot_str_granet(result)
    ch7.plot_str_layer_densities(result)
    plt.close("all")
    numbers = ch7.numbers(sg=result)
    assert numbers["sg_str_lo_closest"] in sg.COMPARED_RULES and ch7.str_figure_decays(result) == [0.06]
    with pytest.raises(ValueError, match="unknown method"):
        sg.method_points(result, "dense", "imp")


@pytest.mark.parametrize("field, value, match", [
    ("str_decays", (0.0,), "str_decays"), ("str_decays", (0.1, 0.1), "str_decays"), ("s_init", 1.0, "s_init"),
    ("update_every", 0, "update_every"), ("drop_fraction", 1.0, "drop_fraction"), ("prune_end", 0.0, "prune_end"),
    ("targets", (0.6,), "densest target"), ("source_rules", ("nope",), "nope"),
])
def test_s2s_str_granet_refuses_bad_configs(field, value, match):
    import dataclasses

    from rpbook.experiments import s2s_str_granet as sg

    with pytest.raises(ValueError, match=match):
        dataclasses.replace(sg.presets("quick"), **{field: value})
