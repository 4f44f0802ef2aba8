"""Chapter 8's display module: its numbers come from the stored measurements, its figures draw, its explorer redraws."""
from __future__ import annotations

import json
from pathlib import Path

import IPython.display
import matplotlib
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from rpbook.chapters import ch8_what_sparsity_buys as ch8  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "book" / "_results"


def stored(name: str) -> dict:
    files = sorted((RESULTS / name).glob("*.json"))
    assert files, f"no committed result for {name}"
    return json.loads(files[0].read_text())["result"]


@pytest.fixture(scope="module")
def timings():
    return stored("kernel_timings")


@pytest.fixture(scope="module")
def accuracy():
    return stored("structure_accuracy")


def test_numbers_are_computed_from_the_stored_rows(timings, accuracy):
    nums = ch8.numbers(timings, accuracy)
    row = next(r for r in timings["mlp"] if r["width"] == nums["widest"] and r["batch"] == 64 and r["density"] == 0.05)
    key = f"infer_w{nums['widest']}_b64_p005"
    assert nums[key] == pytest.approx(row["infer_dense_s"] / row["infer_sparse_s"])
    assert nums[key + "_gap"] == pytest.approx(20 / nums[key])
    assert nums["mem_break_even"] == pytest.approx(0.5, abs=0.01)  # float32 values, int32 indices
    er = [r["test_acc"] for r in accuracy["runs"] if r["pattern"] == "er" and r["density"] == 0.5]
    assert nums["acc_er_p05"] == pytest.approx(100 * sum(er) / len(er))


def test_figures_draw(timings, accuracy):
    width = ch8.numbers(timings)["widest"]
    for draw in (lambda: ch8.plot_speedups(timings, width), lambda: ch8.plot_speedup_by_width(timings, 64),
                 lambda: ch8.plot_memory(timings, width), lambda: ch8.plot_structure_speed(timings),
                 lambda: ch8.plot_structure_accuracy(accuracy)):
        draw()
        plt.close("all")
    with pytest.raises(ValueError, match="width 3 is not stored"):
        ch8.plot_speedup_vs_density(timings, 3)


def test_explorer_redraws_when_a_slider_moves(timings, monkeypatch):
    shown: list[bytes] = []
    monkeypatch.setattr(IPython.display, "display",
                        lambda *objs, **_: shown.extend(o.data for o in objs if isinstance(o, IPython.display.Image)))
    panel = ch8.speedup_explorer(timings, density=0.05, batch=64)
    controls = [w for w in panel.children if hasattr(w, "options")]
    assert len(controls) == 2 and shown
    for control in controls:
        before = len(shown)
        control.value = [v[1] if isinstance(v, tuple) else v for v in control.options][0]
        assert len(shown) == before + 1 and shown[-1] != shown[-2], f"{control.description} drew nothing new"
    html = ch8.speedup_explorer(timings, static=True, vary="batch", density=0.05)
    assert "<img" in html.data or "animation" in html.data.lower()
    with pytest.raises(ValueError, match="no stored measurement"):
        ch8.draw_speedup_frame(plt.figure(), timings, 0.3, 64)
