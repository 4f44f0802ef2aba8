"""Every live explorer of the book, built from the committed results, redraws when a control moves.

The chapters' live cells are not executed by the build or by nbval (a widget needs a kernel), so
this is where they are checked: each control is set to every other value it offers, and each
setting must display a new picture. Nothing is trained (the explorers read stored results).
"""
from __future__ import annotations

import json
from pathlib import Path

import IPython.display
import matplotlib
import pytest

matplotlib.use("Agg")

from rpbook.chapters import ch3_training_random_sparse_networks as ch3  # noqa: E402
from rpbook.chapters import ch5_gradient_flow as ch5  # noqa: E402
from rpbook.chapters import ch6_strong_lottery_tickets as ch6  # noqa: E402
from rpbook.chapters import ch7_sparse_to_sparse as ch7  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "book" / "_results"


def stored(name: str) -> dict:
    files = sorted((RESULTS / name).glob("*.json"))
    assert files, f"no committed result for {name}"
    return json.loads(files[0].read_text())


def build(name: str):
    if name == "rule_density_sweep":
        return ch3.training_sweep_explorer(stored(name)["result"], density=0.1, rule="erk")
    if name == "width_sweep":
        return ch3.training_sweep_explorer(stored(name)["result"], density=0.1)
    if name == "init_signal_propagation":
        return ch5.init_signal_explorer(stored(name)["result"], density=0.1)
    if name == "subset_sum":
        return ch6.subset_sum_explorer(n=8, target=0.37)
    if name == "edge_popup":
        return ch6.edge_popup_explorer(stored("edge_popup_width"), stored("edge_popup_er_source"))
    if name == "s2s":
        return ch7.s2s_explorer(stored("s2s_imp")["result"], stored("s2s_pruning_at_init")["result"],
                                rule="balanced", source_density=0.3)
    raise AssertionError(name)


@pytest.mark.parametrize("name", ["rule_density_sweep", "width_sweep", "init_signal_propagation", "subset_sum",
                                  "edge_popup", "s2s"])
def test_every_control_redraws(name, monkeypatch):
    shown: list[bytes] = []

    def record(*objects, **_):
        shown.extend(o.data for o in objects if isinstance(o, IPython.display.Image))

    monkeypatch.setattr(IPython.display, "display", record)
    panel = build(name)
    panel = getattr(panel, "widget", panel)
    controls = [w for w in panel.children if hasattr(w, "options") or hasattr(w, "max")]
    assert controls, f"{name}: no controls"
    assert shown, f"{name}: nothing displayed at start"
    for control in controls:
        values = list(control.options) if hasattr(control, "options") else [control.min, control.max]
        values = [v[1] if isinstance(v, tuple) else v for v in values]
        start = control.value
        for value in values:
            if value == start:
                continue
            before = len(shown)
            control.value = value
            assert len(shown) == before + 1, f"{name}: moving {control.description!r} to {value!r} drew nothing"
            assert shown[-1] != shown[-2], f"{name}: {control.description!r} = {value!r} shows the same picture"
            break
