"""Chapter 3's experiments: presets, validation, quick runs end to end, resumable sweeps, result helpers."""
import dataclasses
import json
import math

import pytest

from rpbook.cli import main
from rpbook.experiments import depth_sweep, get_experiment, rule_density_sweep, rule_seed_spread, run_experiment
from rpbook.experiments import width_sweep
from rpbook.experiments._sparse_sweep import UnitTrainer, seed_stats, summarize
from rpbook.masks import layer_counts, layer_shapes, layerwise_densities
from rpbook.models import scale_width
from rpbook.results import ResultStore, config_hash, to_jsonable

CH3 = ("rule_density_sweep", "width_sweep", "depth_sweep", "rule_seed_spread")
PROFILES = ("quick", "standard", "full")


def strip_timings(obj):
    if isinstance(obj, dict):
        return {k: strip_timings(v) for k, v in obj.items() if k != "wall_time_s"}
    if isinstance(obj, list):
        return [strip_timings(v) for v in obj]
    return obj


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
    """Every chapter 3 experiment run once at quick, in a private store."""
    store = ResultStore(tmp_path_factory.mktemp("results"))
    return store, {name: run_experiment(name, "quick", store=store, progress=False, device="cpu") for name in CH3}


@pytest.mark.parametrize("name", CH3)
def test_presets_round_trip_through_json(name):
    exp = get_experiment(name)
    hashes = set()
    for profile in PROFILES:
        config = exp.config(profile)
        assert all(isinstance(s, int) for s in config.seeds) and config.seeds
        data = json.loads(json.dumps(to_jsonable(config)))
        assert exp.config_from_dict(data) == config
        hashes.add(config_hash(name, config))
    assert len(hashes) == 3  # the profiles really differ
    assert exp.config("full").dataset == "cifar10" and exp.config("standard").dataset == "mnist1d"
    assert exp.config("full").train.schedule == "step" and exp.config("full").train.augment == "cifar"


@pytest.mark.parametrize("name, field, value, message", [
    ("rule_density_sweep", "rules", ("erk", "magnitude"), "unknown layer-wise density rule 'magnitude'"),
    ("rule_density_sweep", "rules", ("erk", "erk"), "rules must be distinct"),
    ("rule_density_sweep", "densities", (0.1, 1.0), "densities must be below 1"),
    ("rule_density_sweep", "densities", (), "densities must be a non-empty tuple"),
    ("rule_density_sweep", "seeds", (), "seeds must be a non-empty tuple"),
    ("rule_density_sweep", "seeds", (0, 0), "seeds must be distinct"),
    ("rule_density_sweep", "model", "resnet18", "unknown model 'resnet18'"),
    ("width_sweep", "widths", (1.0, 0.0), "width must be a finite number > 0, got 0.0"),
    ("width_sweep", "rule", "snip", "unknown layer-wise density rule 'snip'"),
    ("depth_sweep", "family", "transformer", "unknown family 'transformer'"),
    ("depth_sweep", "depths", (0, 2), "mlp depth (hidden layers) must be >= 1, got 0"),
    ("rule_seed_spread", "rules", ("erk",), "at least two rules"),
    ("rule_seed_spread", "density", 0.0, "density must be in (0, 1]"),
])
def test_bad_config_fields_are_named(name, field, value, message):
    config = get_experiment(name).config("quick")
    with pytest.raises(ValueError) as err:
        dataclasses.replace(config, **{field: value})
    assert message in str(err.value)


def test_depth_families_check_their_depths():
    config = depth_sweep.presets("full")
    assert depth_sweep.architecture(config, 32)["model"] == "resnet32"
    with pytest.raises(ValueError, match="resnet depth must be one of 20, 32, 56, got 44"):
        dataclasses.replace(config, depths=(20, 44))
    conv = dataclasses.replace(config, family="convnet", depths=(2, 4))
    assert depth_sweep.architecture(conv, 4) == {"model": "convnet", "hidden": None, "depth": 4, "width": 1.0}


def test_rule_density_quick_covers_the_grid(quick_results):
    _, recs = quick_results
    config = rule_density_sweep.presets("quick")
    result = recs["rule_density_sweep"]["result"]
    assert len(result["runs"]) == len(config.seeds) * (1 + len(config.rules) * len(config.densities))
    for row in result["runs"]:
        assert 0.0 <= row["test_acc"] <= 1.0
        assert len(row["layer_densities"]) == len(result["layers"])
        assert row["realized_density"] == pytest.approx(row["density"], rel=0.05, abs=2 / row["params"])
    # every run keeps exactly the per-layer counts its rule asks for, and the rules differ
    shapes = layer_shapes(UnitTrainer(config).meta_model(model="mlp", hidden=config.hidden))
    for row in (r for r in result["runs"] if r["arm"] == "sparse"):
        counts = layer_counts(shapes, layerwise_densities(shapes, row["density"], row["rule"]))
        assert row["layer_densities"] == [c / math.prod(s) for c, s in zip(counts, shapes)]
    rows = [r for r in result["runs"] if r["arm"] == "sparse" and r["density"] == config.densities[-1]]
    assert len({tuple(r["layer_densities"]) for r in rows}) == len(config.rules)
    # ER and ERK coincide without kernel dimensions, which is why MLP sweeps train only ERK
    assert layerwise_densities(shapes, 0.05, "er") == pytest.approx(layerwise_densities(shapes, 0.05, "erk"))
    assert "er" not in config.rules and "er" in rule_density_sweep.presets("full").rules
    assert rule_density_sweep.rules_of(result) == list(config.rules)
    curve = rule_density_sweep.rule_curve(result, "erk")
    assert curve["density"] == sorted(config.densities, reverse=True) and curve["n"] == [len(config.seeds)] * 2
    with pytest.raises(ValueError, match="rule 'er' is not in this result"):
        rule_density_sweep.rule_curve(result, "er")
    ranks = rule_density_sweep.ranking(result)
    assert [r["density"] for r in ranks] == sorted(config.densities, reverse=True)
    for r in ranks:
        assert sorted(r["order"]) == sorted(config.rules) and r["means"] == sorted(r["means"], reverse=True)


def test_width_quick_same_nonzero_arm_matches_weight_counts(quick_results):
    _, recs = quick_results
    result = recs["width_sweep"]["result"]
    config = width_sweep.presets("quick")
    assert {r["arm"] for r in result["runs"]} == set(width_sweep.ARMS)
    sparse = {(r["width"], r["density"], r["seed"]): r for r in result["runs"] if r["arm"] == "sparse"}
    for row in (r for r in result["runs"] if r["arm"] == "dense-same-nonzero"):
        target = sparse[(row["width"], row["density"], row["seed"])]["nonzero"]
        assert row["realized_density"] == 1.0 and row["matched_width"] < row["width"]
        # no integer hidden size gets closer to the sparse network's nonzeros
        h = scale_width(config.hidden[0], row["matched_width"])
        count = lambda k: 40 * k + k * k + 10 * k  # noqa: E731  (MLP 40-k-k-10 weights)
        assert row["nonzero"] == count(h)
        assert abs(count(h) - target) <= min(abs(count(h - 1) - target), abs(count(h + 1) - target))
    for g in result["gaps"]:
        assert g["gap"] == pytest.approx(g["dense"] - g["sparse"])
        assert g["sparse_advantage"] == pytest.approx(g["sparse"] - g["same_nonzero"])
    dense = width_sweep.curve(result, "dense")
    assert dense["width"] == sorted(config.widths) and dense["nonzero"][0] < dense["nonzero"][-1]
    assert result["hidden_units"] == {str(w): [scale_width(h, w) for h in config.hidden] for w in config.widths}


def test_width_with_weights_brute_force():
    config = width_sweep.presets("quick")
    trainer = UnitTrainer(config, "cpu")
    for target in (60, 300, 1000, 2500):
        w = trainer.width_with_weights(target, model="mlp", hidden=(64, 64), max_width=1.0)
        best = min(abs(trainer.weight_count(model="mlp", hidden=(64, 64), width=k / 64) - target) for k in range(1, 65))
        assert abs(trainer.weight_count(model="mlp", hidden=(64, 64), width=w) - target) == best


def test_width_sweep_sparse_nonzero_equals_mask_count(quick_results):
    _, recs = quick_results
    result = recs["width_sweep"]["result"]
    config = width_sweep.presets("quick")
    trainer = UnitTrainer(config, "cpu")
    for row in (r for r in result["runs"] if r["arm"] == "sparse"):
        shapes = layer_shapes(trainer.meta_model(model="mlp", hidden=config.hidden, width=row["width"]))
        assert row["nonzero"] == sum(layer_counts(shapes, layerwise_densities(shapes, row["density"], config.rule)))


def test_depth_quick(quick_results):
    _, recs = quick_results
    result = recs["depth_sweep"]["result"]
    config = depth_sweep.presets("quick")
    for d in config.depths:
        rows = [r for r in result["runs"] if r["depth"] == d]
        assert {len(r["layer_densities"]) for r in rows} == {d + 1}
        g = depth_sweep.gap(result, d, config.densities[0])
        assert g["gap"] == pytest.approx(g["dense"] - g["sparse"])


def test_seed_spread_helpers(quick_results):
    _, recs = quick_results
    result = recs["rule_seed_spread"]["result"]
    config = rule_seed_spread.presets("quick")
    a, b = config.rules[:2]
    assert len(rule_seed_spread.accuracies(result, a)) == len(config.seeds)
    steps = rule_seed_spread.separation_by_seeds(result, a, b)
    assert [s["n"] for s in steps] == list(range(2, len(config.seeds) + 1))
    assert steps[-1]["diff"] == pytest.approx(result["stats"][a]["mean"] - result["stats"][b]["mean"])
    # the formula: with n = seeds_needed the two-sigma test is exactly at its threshold
    n = rule_seed_spread.seeds_needed(0.02, 0.03, 0.04)
    assert 0.02 == pytest.approx(2 * math.sqrt(0.03 ** 2 / n + 0.04 ** 2 / n))
    assert rule_seed_spread.seeds_needed(0.0, 0.1, 0.1) == math.inf


def test_quick_results_are_deterministic(quick_results):
    store, recs = quick_results
    again = run_experiment("depth_sweep", "quick", store=store, progress=False, device="cpu", force=True)
    assert strip_timings(again["result"]) == strip_timings(recs["depth_sweep"]["result"])


def test_interrupted_sweep_resumes(tmp_path, monkeypatch):
    store = ResultStore(tmp_path)
    calls = []
    real = UnitTrainer.run

    def flaky(self, **kw):
        calls.append(kw)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, **kw)

    monkeypatch.setattr(UnitTrainer, "run", flaky)
    with pytest.raises(KeyboardInterrupt):
        run_experiment("depth_sweep", "quick", store=store, progress=False, device="cpu")
    config = depth_sweep.presets("quick")
    assert not store.has("depth_sweep", config) and len(store.load_partial("depth_sweep", config)) == 2
    rec = run_experiment("depth_sweep", "quick", store=store, progress=False, device="cpu")
    assert rec["provenance"]["units_reused"] == 2 and rec["provenance"]["units_run"] == 2
    assert len(calls) == 5


def test_seed_stats_and_summarize():
    s = seed_stats([0.5, 0.7, 0.6])
    assert s["mean"] == pytest.approx(0.6) and s["std"] == pytest.approx(0.1) and s["n"] == 3
    assert s["sem"] == pytest.approx(0.1 / math.sqrt(3))
    assert seed_stats([0.4])["std"] == 0.0 and seed_stats([])["mean"] is None
    rows = [{"arm": "a", "seed": i, "test_acc": 0.1 * i, "nonzero": 10} for i in range(3)]
    rows += [{"arm": "b", "seed": 0, "test_acc": 0.9, "nonzero": 4}]
    out = summarize(rows, by=("arm",))
    assert [o["arm"] for o in out] == ["a", "b"] and out[0]["seeds"] == [0, 1, 2] and out[1]["nonzero"] == 4


def test_cli_run_and_list(tmp_path, capsys):
    args = ["--results", str(tmp_path)]
    assert main(["run", "rule_seed_spread", "--profile", "quick", "--no-progress", "--device", "cpu", *args]) == 0
    assert "rule_seed_spread [quick]" in capsys.readouterr().out
    assert main(["list", *args]) == 0
    listing = capsys.readouterr().out
    lines = listing.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("rule_seed_spread"))
    block = "\n".join(lines[start + 1:start + 4])
    assert "quick     stored" in block and "standard  not stored" in block
    assert main(["run", "rule_seed_spread", "--profile", "quick", "--seeds", "-1", *args]) == 2


def test_connectivity_resamples_the_trained_masks(monkeypatch):
    """The masks connectivity() measures are the ones train_sparse trained with, bit for bit."""
    import torch

    from rpbook.experiments import sparse_run
    from rpbook.masks import maskable_layers, sample_masks

    config = rule_density_sweep.presets("quick")
    kept = {}
    real = sparse_run.mask_model

    def spy(model, *args, **kwargs):
        masking = real(model, *args, **kwargs)
        kept.update({name: m.weight_mask.clone() for name, m in maskable_layers(model)})
        return masking

    monkeypatch.setattr(sparse_run, "mask_model", spy)
    run = sparse_run.SparseRun(hidden=config.hidden, density=0.01, rule="uniform", n_train=config.n_train, seed=3,
                               train=config.train)
    sparse_run.train_sparse(run, device="cpu", progress=False)
    again = sample_masks(UnitTrainer(config).meta_model(model="mlp", hidden=config.hidden), 0.01, "uniform", seed=3)
    assert kept.keys() == again.keys() and all(torch.equal(kept[k], again[k]) for k in kept)
    conn = rule_density_sweep.connectivity(config, "uniform", 0.01, 3)
    hidden = [again["fc1"], again["fc2"]]
    isolated = sum(int((m.sum(1) == 0).sum()) for m in hidden) / sum(m.shape[0] for m in hidden)
    assert conn["hidden_without_input"] == isolated > 0.5  # 13 weights for 32 units in fc1
    assert 0.0 <= conn["effective_density"] <= 0.01 + 1e-9


def test_sweep_explorers_draw_stored_points_only(quick_results):
    """Chapter 3's explorers redraw stored sweeps; frames keep their axes in place across savefig calls."""
    import io


    from rpbook.chapters.style import use_book_style
    from rpbook.chapters.ch3_training_random_sparse_networks import draw_rule_density, draw_width_gap, training_sweep_explorer
    from rpbook.chapters.explorer import fixed_layout_figure

    use_book_style()  # the book's rc turns constrained layout on, which savefig would re-apply between frames
    _, recs = quick_results
    rd, ws = recs["rule_density_sweep"]["result"], recs["width_sweep"]["result"]
    fig = fixed_layout_figure((8, 3), dpi=40)  # the figure every explorer draws on
    boxes = []
    for density in (0.1, 0.01, 0.1):
        draw_rule_density(fig, rd, density, "erk")
        fig.savefig(io.BytesIO(), format="png")
        boxes.append([tuple(ax.get_position().bounds) for ax in fig.axes])
    assert boxes[0] == boxes[1] == boxes[2]
    with pytest.raises(ValueError, match="density 0.3 is not in the stored sweep; stored: 0.1, 0.01"):
        draw_rule_density(fig, rd, 0.3)
    with pytest.raises(ValueError, match="rule 'er' is not in the stored sweep"):
        draw_rule_density(fig, rd, 0.1, "er")
    draw_width_gap(fig, ws, 4.0, 0.1)
    with pytest.raises(ValueError, match="width 3.0 is not in the stored sweep"):
        draw_width_gap(fig, ws, 3.0, 0.1)
    twin = training_sweep_explorer(ws, static=True, density=0.1, dpi=30)
    assert twin.data.count("data:image/png;base64") == len(width_sweep.presets("quick").widths)


# ----------------------------------------------------------------------------- does repair matter? (repair_ablation)


def test_repair_ablation_quick_arms_share_the_mask(tmp_path):
    from rpbook.experiments import repair_ablation

    store = ResultStore(tmp_path)
    config = get_experiment("repair_ablation").config("quick", hiddens=((48, 48),), densities=(0.05,))
    result = run_experiment("repair_ablation", "quick", config=config, store=store, progress=False,
                            device="cpu")["result"]
    rows = {r["arm"]: r for r in result["runs"]}
    assert set(rows) == set(repair_ablation.ARMS)
    # the three arms start from the same unrepaired mask: the same isolated units, the same seed
    assert len({json.dumps(r["isolated"], sort_keys=True) for r in rows.values()}) == 1
    assert rows["none"]["isolated"]["without_input"] > 0  # the quick cell does have units to repair
    # add only adds; swap pays for its edges where it can, so it never keeps more than add
    assert rows["add"]["nonzero"] > rows["none"]["nonzero"]
    assert rows["none"]["nonzero"] <= rows["swap"]["nonzero"] <= rows["add"]["nonzero"]
    gain = result["gains"][0]
    assert gain["gain_add"] == pytest.approx(rows["add"]["test_acc"] - rows["none"]["test_acc"])
    assert repair_ablation.mean_gain(result, "swap")["cells"] == 1


@pytest.mark.parametrize("field, value, message", [
    ("hiddens", (), "hiddens must be"), ("model", "lenet5", "trains MLPs"), ("densities", (1.0,), "below 1"),
    ("rules", ("nope",), "unknown layer-wise density rule"),
])
def test_repair_ablation_bad_fields_are_named(field, value, message):
    with pytest.raises(ValueError, match=message):
        get_experiment("repair_ablation").config("quick", **{field: value})


def test_score_rule_trains_with_scores_of_a_dense_copy():
    from rpbook.experiments.sparse_run import SparseRun, train_sparse
    from rpbook.train import TrainConfig

    run = SparseRun(model="mlp", hidden=(32, 32), density=0.1, rule="snip-ratio", n_train=256, seed=0,
                    train=TrainConfig(epochs=1, batch_size=64))
    a, b = train_sparse(run, progress=False), train_sparse(run, progress=False)
    assert a["density"] == pytest.approx(0.1, abs=0.01)
    assert [layer["density"] for layer in a["layers"]] == [layer["density"] for layer in b["layers"]]
    with pytest.raises(ValueError, match="repair must be"):
        SparseRun(repair="grow")


# ----------------------------------------------------------------------------- more than accuracy (beyond_accuracy)


@pytest.fixture(scope="module")
def beyond_quick(tmp_path_factory):
    store = ResultStore(tmp_path_factory.mktemp("beyond"))
    return run_experiment("beyond_accuracy", "quick", store=store, progress=False, device="cpu")


def test_beyond_accuracy_quick_measures_every_network(beyond_quick):
    from rpbook.experiments import beyond_accuracy as bya

    config = get_experiment("beyond_accuracy").config_from_dict(beyond_quick["config"])
    result = beyond_quick["result"]
    runs = result["runs"]
    # dense and sparse per width and seed, plus each rule not already in the grid
    grid = len(config.widths) * (1 + len(config.densities)) * len(config.seeds)
    extra = sum(1 for r in config.rules if not (r == config.rule and config.rules_width in config.widths
                                                  and config.rules_density in config.densities))
    assert len(runs) == grid + extra * len(config.seeds)
    for row in runs:
        assert 0 <= row["ece"] <= 1 and 0 <= row["auroc_noise"] <= 1 and 0 <= row["auroc_shuffled"] <= 1
        assert sum(row["reliability"]["count"]) == 1000  # every MNIST-1D test input lands in one bin
        # eps = 0 leaves accuracy unchanged, for both attacks
        assert row[bya.eps_key("fgsm", 0.0)] == row[bya.eps_key("pgd", 0.0)] == row["test_acc"]
        assert row[bya.eps_key("pgd", 0.1)] <= row["test_acc"]
    assert {r["rule"] for r in runs if r["arm"] == "rule"} == {"uniform", "erk+"}
    assert [r["density"] for r in runs if r["arm"] == "dense"] == [1.0] * len(config.widths)
    # accessors
    c = bya.curve(result, "ece", config.densities[0])
    assert c["width"] == sorted(config.widths) and all(n == 1 for n in c["n"])
    assert len(bya.rule_table(result, config.rules_width, config.rules_density)) == 3  # erk (grid) + 2 rule arms
    pooled = bya.pooled_reliability(result, width=config.widths[0])
    assert sum(pooled["count"]) == 1000 * len(config.seeds)
    with pytest.raises(ValueError, match="unknown metric 'auroc_svhn'"):
        bya.curve(result, "auroc_svhn")


def test_beyond_accuracy_matches_the_width_sweep_training(beyond_quick, quick_results):
    # same trainer, split and seeds: the dense and sparse networks are the width sweep's, bit for bit
    _, ws = quick_results
    wsr = ws["width_sweep"]["result"]
    ba = beyond_quick["result"]
    ws_cfg = get_experiment("width_sweep").config_from_dict(ws["width_sweep"]["config"])
    ba_cfg = get_experiment("beyond_accuracy").config_from_dict(beyond_quick["config"])
    assert (ws_cfg.hidden, ws_cfg.widths, ws_cfg.densities) == (ba_cfg.hidden, ba_cfg.widths, ba_cfg.densities)
    for row in (r for r in ba["runs"] if r["arm"] != "rule"):
        twin = next(r for r in wsr["runs"] if r["arm"] == row["arm"] and r["width"] == row["width"]
                    and r["density"] == row["density"] and r["seed"] == row["seed"])
        assert row["test_acc"] == twin["test_acc"] and row["nonzero"] == twin["nonzero"]


@pytest.mark.parametrize("field, value, message", [
    ("epsilons", (), "epsilons must be a non-empty tuple"), ("epsilons", (-0.1,), "epsilons must be"),
    ("pgd_steps", 0, "pgd_steps must be an integer >= 1"), ("n_bins", 0, "n_bins must be an integer >= 1"),
    ("ood", ("svhn",), "ood must be a tuple of distinct OOD kinds"), ("rules", ("erk", "magnitude"),
                                                                       "unknown layer-wise density rule"),
    ("densities", (1.0,), "below 1"), ("widths", (0.0,), "width must be"),
])
def test_beyond_accuracy_bad_fields_are_named(field, value, message):
    with pytest.raises(ValueError, match=message):
        get_experiment("beyond_accuracy").config("quick", **{field: value})


def test_beyond_accuracy_presets():
    exp = get_experiment("beyond_accuracy")
    hashes = set()
    for profile in PROFILES:
        config = exp.config(profile)
        assert exp.config_from_dict(json.loads(json.dumps(to_jsonable(config)))) == config
        hashes.add(config_hash("beyond_accuracy", config))
    assert len(hashes) == 3
    standard, full = exp.config("standard"), exp.config("full")
    assert len(standard.seeds) >= 3 and standard.train == get_experiment("width_sweep").config("standard").train
    assert full.dataset == "cifar10" and full.model == "resnet20" and full.train.schedule == "step"


def test_beyond_accuracy_full_path_on_tiny_cifar(tmp_path, monkeypatch):
    # the full preset's code path (ResNet-20 on CIFAR-10 files in the official format, attacks on images,
    # OOD sets made from the images) on a handful of images the test writes itself
    from rpbook import data as rpdata
    from test_full_profile_cifar import write_tiny_cifar

    root = tmp_path / "data"
    md5 = write_tiny_cifar(root / "cifar10")
    monkeypatch.setenv("RPBOOK_DATA", str(root))
    monkeypatch.setitem(rpdata.CHECKSUMS, "cifar10", {"cifar-10-python.tar.gz": md5})
    full = get_experiment("beyond_accuracy").config("full")
    config = dataclasses.replace(full, widths=(0.25,), densities=(0.1,), seeds=(0,), rules=("uniform",),
                                 rules_width=0.25, rules_density=0.1, pgd_steps=2,
                                 train=dataclasses.replace(full.train, epochs=1, batch_size=8))
    rec = run_experiment("beyond_accuracy", "full", config=config, store=ResultStore(tmp_path / "store"),
                         progress=False, device="cpu")
    runs = rec["result"]["runs"]
    assert [r["arm"] for r in runs] == ["dense", "sparse", "rule"]
    for row in runs:
        assert 0 <= row["test_acc"] <= 1 and 0 <= row["ece"] <= 1 and 0 <= row["auroc_noise"] <= 1
        assert sum(row["reliability"]["count"]) == 10  # the tiny file's test images
        assert all(0 <= row[f"pgd@{e:g}"] <= 1 for e in config.epsilons)
