"""The Colab/Jupyter twins of the chapters (rpbook.colab_export, issue 14).

Every notebook of ``_toc.yml`` converts; no MyST directive, role, target or
glue placeholder is left; solutions are collapsed; the code cells are the
chapter's own; the committed twins in ``book/_colab/`` are up to date; and a
construct the converter does not know is refused with a clear error.
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from rpbook.colab_export import Bibliography, colab_path, convert_notebook, export_book, main, toc_notebooks, uses_myst

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = [(p, n) for p, n in toc_notebooks(ROOT) if uses_myst(p)]   # the chapters; plain labs need no twin
MYST_LEFT = {
    "directive": re.compile(r"^\s*(:{3,}|`{3,})\{[\w:-]+\}", re.M),
    "role": re.compile(r"\{[\w:-]+\}`"),
    "glue": re.compile(r"\{glue"),
    "target": re.compile(r"^\([^)\s]+\)=\s*$", re.M),
    "option line": re.compile(r"^:(label|class|filter|keyprefix|labelprefix):", re.M),
}


@pytest.fixture(scope="module")
def bib() -> Bibliography:
    import yaml

    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    return Bibliography([ROOT / b for b in config["bibtex_bibfiles"]])


def test_the_toc_has_notebooks_numbered_in_order():
    numbers = [n for _, n in NOTEBOOKS if n]
    assert numbers and numbers[0] == "1"
    assert all(colab_path(ROOT, p).parent == ROOT / "book" / "_colab" for p, _ in NOTEBOOKS if p.parent == ROOT / "book")


@pytest.mark.parametrize("path, number", NOTEBOOKS, ids=[p.stem for p, _ in NOTEBOOKS])
def test_chapter_converts_with_no_myst_left(path, number, bib):
    chapter = nbformat.read(path, as_version=4)
    twin = convert_notebook(path, number=number, bib=bib, root=ROOT)
    markdown = "\n\n".join(c.source for c in twin.cells if c.cell_type == "markdown")
    for what, pattern in MYST_LEFT.items():
        left = pattern.findall(markdown)
        assert not left, f"{path.name}: MyST {what} left in the Colab notebook: {left[:3]}"
    # the same code cells, in the same order, without outputs
    assert [c.source for c in twin.cells if c.cell_type == "code"] == \
           [c.source for c in chapter.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in twin.cells if c.cell_type == "code")
    source = "\n".join(c.source for c in chapter.cells if c.cell_type == "markdown")
    # every exercise is a headed block, every solution folded
    exercises = len(re.findall(r"\{exercise\}", source))
    solutions = len(re.findall(r"\{solution(?:-start)?\}", source))
    assert markdown.count("**Exercise ") == exercises
    assert markdown.count("<summary><b>Solution to Exercise") >= solutions
    assert markdown.count("<details>") == markdown.count("</details>")
    # citations became author-year text, with the chapter's reference list
    if re.search(r"\{cite", source):
        author_year = r"\(\w[\w\- ]+(?: et al\.| and \w+)?, (19|20)\d\d[a-z]?[;)]"   # (Liu et al., 2022)
        author_then_year = r"\w+(?: et al\.| and \w+)? \((19|20)\d\d[a-z]?\)"         # Liu et al. (2022)
        assert re.search(author_year, markdown) or re.search(author_then_year, markdown)
        assert "**References**" in markdown
    # every figure caption follows its figure
    figures = sum(1 for c in chapter.cells if c.metadata.get("mystnb", {}).get("figure", {}).get("caption"))
    assert len(re.findall(r"^\*\*Fig\. [\d.]+\.\*\*", markdown, re.M)) == figures
    if number:
        assert re.search(rf"^# {re.escape(number)}\. ", markdown, re.M), "the chapter title carries its number"


def test_glued_numbers_are_substituted():
    path = next(p for p, _ in NOTEBOOKS if p.name.startswith("01_"))
    twin = nbformat.read(colab_path(ROOT, path), as_version=4)
    text = "\n".join(c.source for c in twin.cells if c.cell_type == "markdown")
    glue = {}
    for cell in nbformat.read(path, as_version=4).cells:
        for out in cell.get("outputs", []):
            name = out.get("metadata", {}).get("scrapbook", {}).get("name")
            if name:
                glue[name] = out["data"]["application/papermill.record/text/plain"]
    assert f"with {int(glue['params_dense']):,} parameters" in text
    assert f"accuracy of {float(glue['acc_dense']):.3f}" in text


def test_plain_markdown_notebooks_get_no_twin():
    plain = [p for p, _ in toc_notebooks(ROOT) if not uses_myst(p)]
    for path in plain:  # e.g. the course's student labs: Colab opens them as they are
        assert not colab_path(ROOT, path).exists(), path
    assert len(NOTEBOOKS) >= 7


def test_committed_twins_are_up_to_date():
    stale = export_book(ROOT, check=True)
    assert not stale, f"run `python -m rpbook.colab_export`: out of date: {[p.name for p in stale]}"
    assert main(["--root", str(ROOT), "--check"]) == 0


def _tiny_book(tmp_path: Path, markdown: str) -> Path:
    (tmp_path / "book").mkdir()
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/intro\noptions:\n  numbered: true\n"
                                       "chapters:\n  - file: book/01_one\n")
    (tmp_path / "_config.yml").write_text("bibtex_bibfiles: []\n")
    (tmp_path / "book" / "intro.md").write_text("# Intro\n")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(markdown), nbformat.v4.new_code_cell("1 + 1")])
    nbformat.write(nb, tmp_path / "book" / "01_one.ipynb")
    return tmp_path


def test_a_tiny_book_converts_and_writes_its_twin(tmp_path):
    root = _tiny_book(tmp_path, "# One\n\n:::{note}\nA *note*.\n:::\n\nTerm\n: its meaning\n")
    assert main(["--root", str(root)]) == 0
    twin = nbformat.read(root / "book" / "_colab" / "01_one.ipynb", as_version=4)
    text = twin.cells[1].source
    assert text.startswith("# 1. One") and "> **Note**" in text and "> A *note*." in text
    assert "- **Term**: its meaning" in text
    assert main(["--root", str(root), "--check"]) == 0
    (root / "book" / "_colab" / "01_one.ipynb").write_text("{}")
    assert main(["--root", str(root), "--check"]) == 1  # a stale twin is reported


@pytest.mark.parametrize("markdown, message", [
    (":::{mystery} x\nbody\n:::\n", "unknown MyST directive {mystery}"),
    ("text {mystery}`x`\n", "unknown MyST role {mystery}"),
    ("{glue:text}`nowhere:.2f`\n", "glue key 'nowhere' is not in the executed notebook"),
    ("{numref}`fig-none`\n", "target 'fig-none' is not a label of this chapter"),
])
def test_unknown_constructs_are_refused(tmp_path, capsys, markdown, message):
    root = _tiny_book(tmp_path, markdown)
    assert main(["--root", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err, err
    assert not (root / "book" / "_colab" / "01_one.ipynb").exists()


def test_bad_root_exits_2(tmp_path, capsys):
    assert main(["--root", str(tmp_path)]) == 2
    assert "has no _toc.yml" in capsys.readouterr().err
