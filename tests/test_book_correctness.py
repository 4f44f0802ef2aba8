"""The checks of the correctness pass (issue 16): each would have caught one of the errors it fixed.

- every figure of a chapter has a caption; every chapter keeps its reference apparatus;
- no number the prose quotes is typed by hand where a glue for it exists;
- chapter 1's map draws the three sparse families at the density the caption names, and its FLOPs legend
  shows the colour of the bars; the acronyms are spelled out;
- chapter 3's ranking ties rules that draw identical masks and tests with a t quantile, not a normal 2;
- chapter 5's checklist does not call a barrier of 0.46 ± 0.31 "no barrier";
- the coverage table names only figures and theorems that exist, with one of three statuses.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import nbformat  # noqa: E402
import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "book").glob("0[1-9]_*.ipynb"))
GLUE_ROLE = re.compile(r"\{glue:[a-z]*\}`([A-Za-z0-9_]+)(?::([^`]*))?`")


def notebook(path: Path):
    return nbformat.read(path, as_version=4)


def markdown(nb) -> str:
    return "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_figure_has_a_caption(path):
    for i, cell in enumerate(notebook(path).cells):
        if cell.cell_type != "code":
            continue
        pngs = [o for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
        if pngs:
            caption = cell.metadata.get("mystnb", {}).get("figure", {}).get("caption", "")
            assert caption.strip(), f"{path.name}, cell {i} draws a figure without a caption"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_chapter_has_its_apparatus(path):
    text = markdown(notebook(path))
    for heading in ("About this chapter", "Where this book differs from the papers' code", "## Further reading",
                    "## Discussion questions", "**Prerequisites:**", "**Reading time:**", "```{index}"):
        assert heading in text, f"{path.name} lacks {heading!r}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_solutions_open_and_close_in_order(path):
    """sphinx-exercise's gated solutions may span cells but never nest or dangle (the build stops on either)."""
    open_at = None
    for i, cell in enumerate(notebook(path).cells):
        if cell.cell_type != "markdown":
            continue
        for line in cell.source.splitlines():
            if line.startswith(":::") and "{solution-start}" in line:
                assert open_at is None, f"{path.name}: cell {i} opens a solution inside the one opened in cell {open_at}"
                open_at = i
            elif line.startswith(":::") and "{solution-end}" in line:
                assert open_at is not None, f"{path.name}: cell {i} closes a solution that was never opened"
                open_at = None
    assert open_at is None, f"{path.name}: the solution opened in cell {open_at} is never closed"


def _glued_values(nb) -> dict:
    """The values a notebook glued, from its stored outputs (myst-nb writes them with scrapbook metadata)."""
    out = {}
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            book = o.get("metadata", {}).get("scrapbook", {})
            key = book.get("mime_prefix", "") + "text/plain"
            if book.get("name") and key in o.get("data", {}):
                out[book["name"]] = o["data"][key]
    return out


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_no_hand_typed_copy_of_a_glued_number(path):
    """A number rendered by a glue role must not also appear typed out in the prose (it would go stale)."""
    nb = notebook(path)
    values = _glued_values(nb)
    prose = markdown(nb)
    typed = GLUE_ROLE.sub(" ", prose)
    for name, fmt in GLUE_ROLE.findall(prose):
        if name not in values:
            continue
        try:
            value = ast.literal_eval(values[name])  # a repr of a number or a str; never run as code
        except (ValueError, SyntaxError):
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if float(value).is_integer() and value >= 64 and int(value) & (int(value) - 1) == 0:
            continue  # 64, 128, 256, ...: layer widths and batch sizes recur in the prose; text cannot tell them apart
        rendered = format(value, fmt) if fmt else str(value)
        significant = sum(ch.isdigit() for ch in rendered.lstrip("-0.,"))
        if sum(ch.isdigit() for ch in rendered) < 3 or significant < 2:
            continue  # round numbers such as 0.01, 0.1 or 24 occur for many reasons
        # not inside a hyphenated architecture name such as 40-256-256-10
        pattern = r"(?<![\d.,-])" + re.escape(rendered) + r"(?![\d-])"
        assert not re.search(pattern, typed), f"{path.name}: {rendered} ({name}) is typed by hand beside its glue"


def test_chapter1_spells_out_its_acronyms():
    text = markdown(notebook(ROOT / "book" / "01_start_sparse.ipynb"))
    for expansion in ("iterative magnitude pruning (IMP)", "Erdős–Rényi-Kernel", "Sparse Evolutionary Training",
                      "Rigging the Lottery"):
        assert expansion in text


def test_chapter1_map_draws_the_sparse_families_at_the_captioned_density():
    import numpy as np

    from rpbook.chapters import ch1_start_sparse as ch1

    ax = ch1.plot_sparse_training_map()
    sparse = [line for line in ax.get_lines()
              if any(w in (line.get_label() or "") for w in ("initialisation", "static", "dynamic"))]
    assert len(sparse) == 3
    for line in sparse:
        assert np.allclose(line.get_ydata(), 0.1), line.get_label()
    caption = notebook(ROOT / "book" / "01_start_sparse.ipynb").cells
    assert any("p = 0.1" in c.metadata.get("mystnb", {}).get("figure", {}).get("caption", "") for c in caption)


def test_chapter1_flops_legend_matches_its_bars():
    from matplotlib.colors import to_rgba

    from rpbook.chapters import ch1_start_sparse as ch1

    ax = ch1.plot_parameters_and_flops(["uniform", "erk"], [0.1, 0.1], [0.1, 0.4], global_density=0.1)
    legend = ax.get_legend()
    for handle, container in zip(legend.legend_handles, ax.containers):
        assert {to_rgba(p.get_facecolor()) for p in container.patches} == {to_rgba(handle.get_facecolor())}


def test_ranking_ties_identical_rules_and_uses_a_t_quantile():
    from rpbook.experiments import rule_density_sweep as rds
    from rpbook.experiments._sparse_sweep import seed_stats, welch_cutoff

    def run(rule, acc):
        return [{"arm": "sparse", "rule": rule, "density": 0.5, "seed": s, "test_acc": a} for s, a in enumerate(acc)]

    rows = run("erk", [0.70, 0.72, 0.71]) + run("balanced", [0.70, 0.72, 0.71]) + run("uniform", [0.69, 0.70, 0.71])
    summary = [{"arm": "sparse", "rule": r, "density": 0.5, "test_acc": seed_stats([x["test_acc"] for x in rows
                                                                                     if x["rule"] == r])}
               for r in ("erk", "balanced", "uniform")]
    (rank,) = rds.ranking({"summary": summary, "runs": rows})
    assert rank["order_text"] in ("erk = balanced > uniform", "balanced = erk > uniform")
    assert rank["tied"] and rank["lead"] > 0
    three = seed_stats([0.1, 0.2, 0.3])
    assert welch_cutoff(three, three) > 2.7  # t with 4 degrees of freedom, not the normal 2


def test_evci_checklist_needs_a_small_barrier():
    from rpbook.experiments import evci_pipeline

    def summary(lottery, scratch):
        return {"setup": "s", "grad_norm_ratio_init": {"mean": 2.0},
                "barrier": {"lottery": lottery, "scratch": scratch},
                "methods": {m: {"test_accuracy": {"mean": 0.5, "std": 0.01}, "final_distance": {"mean": 1.0},
                                "update_gain": {"mean": 1.0}}
                            for m in ("lottery", "scratch", "scratch+", "set", "rigl", "small-dense")}}

    units = [{"setup": "s", "methods": {"scratch": {"test_loss": loss}}} for loss in (0.5, 2.30)]
    found = evci_pipeline.checks({"summary": [summary({"mean": 0.455, "std": 0.310}, {"mean": 1.13, "std": 0.39})],
                                  "units": units})["s"]
    assert not found["no barrier Lottery → Prune, a barrier Scratch → Prune"]
    assert not found["every Scratch run trained (test loss below chance level ln 10 - 0.1)"]
    found = evci_pipeline.checks({"summary": [summary({"mean": 0.046, "std": 0.005}, {"mean": 0.94, "std": 0.23})],
                                  "units": units[:1]})["s"]
    assert found["no barrier Lottery → Prune, a barrier Scratch → Prune"]


def test_coverage_table_points_at_existing_figures_and_theorems():
    text = (ROOT / "book" / "appendix_coverage.md").read_text()
    labels = set()
    for path in CHAPTERS:
        for cell in notebook(path).cells:
            name = cell.metadata.get("mystnb", {}).get("figure", {}).get("name")
            if name:
                labels.add(name)
            labels.update(re.findall(r":label: ([A-Za-z0-9-]+)", cell.source))
    refs = re.findall(r"\{(?:numref|prf:ref)\}`([^`]+)`", text)
    assert refs and set(refs) <= labels, set(refs) - labels
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| claim")
            and not line.startswith("| ---")]
    assert len(rows) >= 20
    for row in rows:
        status = row.split("|")[3].strip()
        assert re.match(r"(reproduced|partly|not)\b", status), row
