"""One place per extension: a toy rule and a toy DST method, registered here, reach every consumer.

A new layer-wise rule is one ``@register_rule`` in ``rpbook/masks.py`` and a new DST method one
``@register_dst`` class in ``rpbook/dst.py`` (CONTRIBUTING.md). Nothing else is edited: the CLI, the
explorers, the figures and the experiments read the registries. Both toys are removed after each test.
"""
from __future__ import annotations

import dataclasses

import matplotlib
import pytest
import torch
from matplotlib.colors import to_hex

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from rpbook import cli, dst, masks  # noqa: E402
from rpbook.chapters import ch2_er_masks_as_graphs as ch2  # noqa: E402
from rpbook.chapters import ch5_gradient_flow as ch5  # noqa: E402
from rpbook.experiments import evci_pipeline  # noqa: E402
from rpbook.train import TrainConfig, fit  # noqa: E402

TOY_RULE, TOY_RULE_LABEL, TOY_RULE_COLOR = "toy", "Toy rule", "#123456"
TOY_DST, TOY_DST_LABEL, TOY_DST_COLOR = "toy-dst", "Toy DST", "#654321"


@pytest.fixture
def toy_rule():
    @masks.register_rule(TOY_RULE, label=TOY_RULE_LABEL, color=TOY_RULE_COLOR)
    @masks.proportional_rule
    def _fan_in(shape, erk_power):
        """Density proportional to 1 / fan-in."""
        return 1.0 / shape[1]

    yield TOY_RULE
    masks.unregister_rule(TOY_RULE)
    plt.close("all")


@pytest.fixture
def toy_dst():
    @dst.register_dst
    class ToyDST(dst.SET):
        """Grows where the weight's position index is highest: a deterministic toy."""

        name, label, color = TOY_DST, TOY_DST_LABEL, TOY_DST_COLOR

        def grow_scores(self, state, masking):
            return {n: torch.arange(m.numel(), dtype=torch.float32).reshape(m.shape)
                    for n, m in masking.masks.items()}

    yield ToyDST
    dst.unregister_dst(TOY_DST)
    plt.close("all")


def test_toy_rule_reaches_sampling_cli_explorer_and_figures(toy_rule, capsys):
    shapes = [(64, 40), (10, 64)]
    dens = masks.layerwise_densities(shapes, 0.2, toy_rule)
    assert sum(p * a * b for p, (a, b) in zip(dens, shapes)) == pytest.approx(0.2 * sum(a * b for a, b in shapes))
    assert dens[0] / dens[1] == pytest.approx(64 / 40)  # p_l ∝ 1 / fan-in: not uniform
    # CLI: the rule is listed and accepted.
    train_help = cli.make_parser()._subparsers._group_actions[0].choices["train"].format_help()
    assert toy_rule in train_help
    assert cli.main(["list", "--results", "/nonexistent-results"]) == 0
    assert f"{toy_rule} ({TOY_RULE_LABEL})" in capsys.readouterr().out
    # Explorer: the rule dropdown offers it, and a frame with it is titled with its label.
    explorer = ch2.GraphExplorer(max_units=6)
    panel = explorer.live(density=0.1, width=16, rule="erk")
    options = [w for w in panel.children if getattr(w, "description", "") == "rule"][0].options
    assert (TOY_RULE_LABEL, toy_rule) in list(options)
    explorer.update(density=0.1, width=16, rule=toy_rule)
    assert TOY_RULE_LABEL in explorer.figure.axes[0].get_title()
    # Figures: its label and colour.
    ax = ch2.plot_layer_densities(["fc1", "fc2"], {"erk": [0.1, 0.3], toy_rule: dens})
    bars = [p for p in ax.patches if to_hex(p.get_facecolor()) == TOY_RULE_COLOR]
    assert len(bars) == 2
    assert TOY_RULE_LABEL in [t.get_text() for t in ax.get_legend().get_texts()]


def test_toy_dst_reaches_training_cli_experiment_and_figures(toy_dst, capsys):
    # Training: the registered class is a working callback.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 8, generator=g)
    y = (x[:, 0] > 0).long()
    data = type("Data", (), dict(name="toy", x_train=x[:64], y_train=y[:64], x_val=x[64:80], y_val=y[64:80],
                                 x_test=x[80:], y_test=y[80:], task="classification", in_shape=(8,), num_classes=2))
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    masking = masks.Masking(model, masks.sample_masks(model, 0.3, "uniform", seed=0))
    method = dst.DST_METHODS[TOY_DST](update_every=2, drop_fraction=0.3)
    fit(model, data, TrainConfig(epochs=1, batch_size=16, lr=0.05, seed=0), masking=masking, callbacks=[method],
        progress=False)
    assert method.events and all(e["swapped"] > 0 for e in method.events)
    # CLI: listed.
    assert cli.main(["list", "--results", "/nonexistent-results"]) == 0
    assert f"{TOY_DST} ({TOY_DST_LABEL})" in capsys.readouterr().out
    # Experiment: a config may run it, and its label is the one the result stores.
    config = evci_pipeline.presets("quick")
    dataclasses.replace(config, methods=(*config.methods, TOY_DST))
    assert evci_pipeline.method_labels()[TOY_DST] == TOY_DST_LABEL
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        dataclasses.replace(config, methods=(*config.methods, "nope"))
    # Figures: chapter 5's mask-update figure draws it with its label and colour.
    events = [{"step": s, "grad_norm_before": 1.0, "grad_norm_after": 2.0} for s in (10, 20)]
    result = {"units": [{"setup": "toy", "methods": {TOY_DST: {"mask_updates": events}}}]}
    ax = ch5.plot_mask_update_gradnorm(result, "toy")
    assert f"{TOY_DST_LABEL}: just before" in [line.get_label() for line in ax.get_lines()]
    assert {to_hex(line.get_color()) for line in ax.get_lines()} == {TOY_DST_COLOR}
    assert ch5.method_color(TOY_DST) == TOY_DST_COLOR
