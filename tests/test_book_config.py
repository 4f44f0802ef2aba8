"""The book's configuration and the shape of every chapter, checked without building anything.

- `_config.yml` has the settings the build relies on (warnings as errors need
  raise_on_error, a timeout that fits the standard profile, only toc files, ...);
- `_toc.yml` lists existing files, and every chapter notebook is listed;
- every chapter's first code cell installs rpbook on Colab from the repository
  URL set once in `_config.yml`, picks the profile and prints the device, and is
  folded in the HTML;
- chapters are committed executed top to bottom (increasing execution counts);
- no widget metadata without state (it breaks rendering);
- every citation key exists in `book/references.bib`.
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
FOLDED = {"hide-input", "hide-cell", "remove-input"}
NOT_EXECUTED = {"skip-execution"}


def _toc_files() -> list[str]:
    files = [TOC["root"]]
    stack = list(TOC.get("chapters", [])) + [c for part in TOC.get("parts", []) for c in part.get("chapters", [])]
    while stack:
        entry = stack.pop(0)
        files.append(entry["file"])
        stack.extend(entry.get("sections", []))
    return files


def _source(stem: str) -> Path:
    for suffix in (".ipynb", ".md"):
        if (ROOT / f"{stem}{suffix}").exists():
            return ROOT / f"{stem}{suffix}"
    raise AssertionError(f"{stem} from _toc.yml has no .ipynb or .md file")


NOTEBOOKS = [p for p in map(_source, _toc_files()) if p.suffix == ".ipynb"]
# The chapters are the notebooks directly under book/; book/assignments/ holds the labs' student
# versions (no outputs, their own install cell), checked by tests/test_course.py.
CHAPTERS = [p for p in NOTEBOOKS if p.parent == ROOT / "book"]
ASSIGNMENTS = [p for p in NOTEBOOKS if p.parent == ROOT / "book" / "assignments"]


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


# ----------------------------------------------------------------------------- _config.yml and _toc.yml


def test_config_has_the_settings_the_build_relies_on():
    execute = CONFIG["execute"]
    assert CONFIG["only_build_toc_files"] is True
    assert execute["execute_notebooks"] == "cache"
    assert execute["raise_on_error"] is True and execute.get("allow_errors", False) is False
    assert 60 <= execute["timeout"] <= 600
    assert execute.get("show_tb") is True
    assert {"_build", ".venv", "README.md"} <= set(CONFIG["exclude_patterns"])
    assert str(CONFIG["copyright"]) == "2026"
    extensions = set(CONFIG["sphinx"]["extra_extensions"])
    assert {"sphinx_exercise", "sphinx_proof", "sphinx_togglebutton", "sphinx_design"} <= extensions
    assert CONFIG["sphinx"]["config"]["nb_merge_streams"] is True
    for bib in CONFIG["bibtex_bibfiles"]:
        assert (ROOT / bib).is_file(), bib
    repo = CONFIG["repository"]
    assert repo["url"].startswith("https://github.com/") and repo["branch"] == "main" and repo["path_to_book"] == ""
    assert CONFIG["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert CONFIG["html"]["use_download_button"] is True


def test_mathjax_is_served_by_the_book():
    path = CONFIG["sphinx"]["config"]["mathjax_path"]
    static = CONFIG["sphinx"]["config"]["html_static_path"]
    assert not path.startswith(("http:", "https:")), "math must render without a CDN"
    assert any((ROOT / s / path).is_file() for s in static), f"{path} not found under {static}"


def test_toc_lists_existing_files_and_every_chapter():
    files = _toc_files()
    for stem in files:
        _source(stem)
    assert len(files) == len(set(files)), "a file is listed twice"
    listed = {str(_source(s).relative_to(ROOT)) for s in files}
    for notebook in sorted((ROOT / "book").glob("*.ipynb")):
        assert str(notebook.relative_to(ROOT)) in listed, f"{notebook.name} is not in _toc.yml"
    assert CHAPTERS, "no chapters in _toc.yml"
    for notebook in sorted((ROOT / "book" / "assignments").glob("*.ipynb")):
        assert notebook in ASSIGNMENTS, f"{notebook.name} is not in the Assignments part of _toc.yml"


def test_assignments_are_not_executed_by_the_build():
    """A student notebook holds stubs (`...`): executing it in the build would fail; its page shows no outputs."""
    assert "book/assignments/*" in CONFIG["execute"]["exclude_patterns"]
    assert "book/labs" in CONFIG["exclude_patterns"], "the masters hold the solutions: never render them"
    parts = {part["caption"]: part for part in TOC["parts"]}
    assert parts["Assignments"].get("numbered") is False and parts["Chapters"].get("numbered") is True


# ----------------------------------------------------------------------------- every chapter


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_first_code_cell_installs_on_colab_picks_profile_and_prints_device(path):
    nb = _read(path)
    cells = nb.cells
    first = next(i for i, c in enumerate(cells) if c.cell_type == "code")
    cell = cells[first]
    url = CONFIG["repository"]["url"]
    src = cell.source
    assert 'if "google.colab" in sys.modules:' in src
    # Colab gets the repository itself, not only the package: the stored results live in book/_results,
    # and without them every experiment would run from scratch.
    assert re.search(r'^\s+!git clone -q --depth 1 ' + re.escape(url) + r' /content/rpbook\s*$', src, re.M), (
        f"{path.name}: the Colab install cell must clone the repository URL of _config.yml ({url})")
    assert re.search(r'^\s+%pip install -q /content/rpbook\s*$', src, re.M)
    assert 'os.environ.setdefault("RPBOOK_RESULTS", "/content/rpbook/book/_results")' in src
    assert "RPBOOK_PROFILE" in src and "get_profile()" in src
    assert "print(describe_runtime())" in src
    tags = set(cell.metadata.get("tags", []))
    assert tags & FOLDED, f"{path.name}: fold the install cell (hide-input or hide-cell)"
    assert "nbval-ignore-output" in tags
    before = " ".join(c.source for c in cells[:first] if c.cell_type == "markdown")
    assert "Change runtime type" in before and "GPU" in before, f"{path.name}: tell Colab users how to get a GPU"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_is_committed_executed_top_to_bottom(path):
    nb = _read(path)
    counts = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tags = set(cell.metadata.get("tags", []))
        if tags & NOT_EXECUTED:
            continue
        assert cell.execution_count is not None, f"{path.name}: a code cell has no output (not executed?)"
        counts.append(cell.execution_count)
    assert counts == list(range(1, len(counts) + 1)), f"{path.name}: not run top to bottom in a fresh kernel"
    assert not any(o.output_type == "error" for c in nb.cells if c.cell_type == "code" for o in c.outputs
                   if "raises-exception" not in c.metadata.get("tags", []))


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_no_widget_metadata_without_state(path):
    nb = _read(path)
    widgets = nb.metadata.get("widgets", {}).get(WIDGET_STATE)
    state = (widgets or {}).get("state", {})
    if widgets is not None:
        assert state, f"{path.name}: widget metadata without state (strip it)"
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            view = out.get("data", {}).get(WIDGET_VIEW)
            if view is not None:
                assert view["model_id"] in state, f"{path.name}: a widget output whose state is not saved"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_live_widget_cells_are_not_executed_by_the_build(path):
    """An `interact` cell needs a kernel: skip it in the build (and in nbval), show its HTML twin instead."""
    for cell in _read(path).cells:
        if cell.cell_type == "code" and re.search(r"\b\w+_explorer\(\)", cell.source):
            tags = set(cell.metadata.get("tags", []))
            assert {"skip-execution", "nbval-skip"} <= tags, f"{path.name}: {cell.source[:60]!r}"


def test_figure_names_are_unique():
    names = []
    for path in CHAPTERS:
        for cell in _read(path).cells:
            fig = cell.metadata.get("mystnb", {}).get("figure", {})
            if "name" in fig:
                names.append(fig["name"])
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


# ----------------------------------------------------------------------------- citations


def _bib_keys() -> set[str]:
    keys = set()
    for bib in CONFIG["bibtex_bibfiles"]:
        keys |= set(re.findall(r"^@\w+\{([^,\s]+),", (ROOT / bib).read_text(), re.M))
    return keys


def test_every_citation_is_in_the_bibliography():
    keys = _bib_keys()
    texts = [(ROOT / "book" / "intro.md").read_text()]
    texts += ["\n".join(c.source for c in _read(p).cells if c.cell_type == "markdown") for p in CHAPTERS]
    cited = set()
    for text in texts:
        # a page whose bibliography has a :keyprefix: cites its keys with that prefix
        prefixes = re.findall(r"^:keyprefix:\s*(\S+)", text, re.M)
        for group in re.findall(r"\{(?:foot)?cite(?::\w+)?\}`([^`]+)`", text):
            for key in (k.strip() for k in group.split(",")):
                cited.add(next((key[len(p):] for p in prefixes if key.startswith(p)), key))
    assert cited, "no citations found"
    assert not cited - keys, f"cited but not in references.bib: {sorted(cited - keys)}"
