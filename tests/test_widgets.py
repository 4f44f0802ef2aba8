"""rpbook.chapters.ch2_er_masks_as_graphs (the graph explorer): move the sliders in code and check that statistics and figure follow."""
from __future__ import annotations

import re

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from rpbook.graphs import network_graph  # noqa: E402
from rpbook.chapters.ch2_er_masks_as_graphs import ExplorerState, GraphExplorer, graph_explorer  # noqa: E402


def _controls(panel):
    return {w.description: w for w in panel.children if hasattr(w, "description") and w.description}


def test_update_changes_statistics_and_figure():
    explorer = GraphExplorer()
    dense = explorer.update(0.5, 64, "erk")
    png_dense = explorer.render_png()
    sparse = explorer.update(0.005, 64, "erk")
    png_sparse = explorer.render_png()
    assert sparse.density < dense.density
    assert sparse.paths < dense.paths
    assert sparse.inputs_reaching_output < dense.inputs_reaching_output
    assert png_sparse != png_dense
    # the same state gives the same picture: the drawing is deterministic
    explorer.update(0.5, 64, "erk")
    assert explorer.render_png() == png_dense


def test_live_sliders_drive_the_explorer():
    panel = graph_explorer(density=0.1, width=64)
    explorer = panel.explorer
    controls = _controls(panel)
    assert set(controls) >= {"density p", "hidden width", "rule"}
    assert explorer.state.density == 0.1 and explorer.state.width == 64
    before_topo, before_png = explorer.topology, explorer.render_png()

    controls["density p"].value = 0.01
    assert explorer.state.density == 0.01
    assert explorer.topology.density < before_topo.density
    assert explorer.topology.paths < before_topo.paths
    assert explorer.render_png() != before_png

    png = explorer.render_png()
    controls["hidden width"].value = 512
    assert explorer.state.width == 512
    assert explorer.topology.layers[0].n_out == 512
    assert explorer.render_png() != png

    controls["rule"].value = "uniform"
    assert explorer.state.rule == "uniform"
    densities = [t.density for t in explorer.topology.layers]
    assert max(densities) - min(densities) < 0.001  # uniform: every layer at p

    controls["density p"].value = 0.005
    assert explorer.state == ExplorerState(0.005, 512, "uniform")
    assert explorer.topology.isolated_units > 0


def test_html_twin_has_one_frame_per_density_and_a_slider():
    twin = graph_explorer(static=True, densities=(0.5, 0.05, 0.005))
    html = twin.data
    assert '<input' in html and 'type="range"' in html
    assert "maxcdn" not in html and "fa fa-" not in html  # no CDN icons: the twin works offline
    frames = re.findall(r"frames\[(\d+)\] = \"data:image/png;base64,", html)
    assert sorted(map(int, frames)) == [0, 1, 2]
    images = re.findall(r"data:image/png;base64,([^\"]{200})", html)
    assert len(set(images)) == 3  # the frames differ


def test_html_twin_over_width():
    twin = graph_explorer(static=True, vary="width", density=0.02, widths=(16, 256))
    assert len(re.findall(r"frames\[\d+\] = ", twin.data)) == 2


def test_bad_input_is_refused():
    explorer = GraphExplorer()
    with pytest.raises(ValueError, match="density"):
        explorer.update(1.5, 64, "erk")
    with pytest.raises(ValueError, match="rule"):
        explorer.update(0.1, 64, "magnitude")
    with pytest.raises(ValueError, match="width"):
        explorer.update(0.1, 0, "erk")
    with pytest.raises(ValueError, match="vary"):
        explorer.html_twin(vary="depth")
    with pytest.raises(ValueError, match="update"):
        GraphExplorer().draw()


def test_wide_mlp_update_counts_every_unit_but_draws_a_subsample():
    # Speed is benchmarks/widget_update.py's job; here: what keeps a width-1024 update cheap.
    explorer = GraphExplorer(max_units=14)
    topo = explorer.update(0.02, 1024, "uniform")
    assert [t.n_out for t in topo.layers][:2] == [1024, 1024]
    assert sum(int(m.sum()) for m in explorer.masks.values()) == pytest.approx(
        0.02 * sum(m.numel() for m in explorer.masks.values()), abs=len(explorer.masks))
    graph = network_graph(explorer.masks, max_units=explorer.max_units)
    per_layer = {}
    for _, data in graph.nodes(data=True):
        per_layer[data["layer"]] = per_layer.get(data["layer"], 0) + 1
    assert max(per_layer.values()) <= 14
    assert explorer.render_png()[:8] == b"\x89PNG\r\n\x1a\n"


def test_twin_under_the_book_style_raises_no_warning():
    import warnings

    from rpbook.chapters.style import book_style

    with book_style(), warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. constrained layout switched back on by savefig
        graph_explorer(static=True, densities=(0.5, 0.05))


def test_twin_shows_the_value_of_each_frame_and_fits_a_phone():
    """Issue 14: a label above the slider names the frame's value; on a phone the frame scrolls inside its box."""
    from matplotlib.figure import Figure

    from rpbook.chapters.explorer import frames_twin

    figure = Figure(figsize=(9.6, 3.4), dpi=100)
    ax = figure.add_subplot()
    html = frames_twin(figure, lambda i: ax.set_title(f"frame {i}"), 3, labels=["p = 0.1", "p = 0.05", "a</script>"]).data
    assert 'class="rpbook-twin-label"' in html and ">p = 0.1</output>" in html
    assert '["p = 0.1", "p = 0.05", "a<\\/script>"]' in html  # every frame's label, and none closes the script
    assert "overflow-x: auto" in html and "width: 900px" in html  # readable size on a phone, inside its own scroller
    assert "width: min(374px, 100%)" in html
    with pytest.raises(ValueError, match="one per frame"):
        frames_twin(figure, lambda i: None, 3, labels=["only one"])
