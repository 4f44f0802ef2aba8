"""Colab-ready notebooks from the book's chapters: MyST rendered to plain Markdown/HTML.

Chapter 1 (*How to use this book*) sends Colab users here. Colab and plain
Jupyter do not understand MyST: opened as they are, the chapters would show
``{exercise}`` fences, ``{cite}`` roles, ``{glue:text}`` placeholders and
every solution right under its exercise. This module writes, for every
notebook listed in ``_toc.yml``, a twin under ``book/_colab/`` in which

- exercises are headed blocks and solutions collapsed ``<details>`` (a gated
  solution's code cells are folded: ``cellView: form`` on Colab,
  ``source_hidden`` in JupyterLab);
- admonitions and theorem-like blocks (sphinx-proof) are quotes with a bold title;
- citations are author–year text, and the chapter's reference list is written
  out from ``book/references.bib``;
- glued numbers are substituted from the executed chapter's glue outputs;
- ``{numref}``/``{ref}``/``{prf:ref}``/``{doc}`` become the numbers and titles
  the HTML book shows; figure captions (cell metadata) follow their figure;
- code cells are the chapter's own, without outputs.

An unknown directive or role is an error, so a new MyST construct cannot slip
through unconverted. ``python -m rpbook.colab_export`` writes the notebooks
(``make book`` runs it first); ``--check`` only reports stale ones (exit 1).

The book build (``rpbook.sphinx_ext``) points every chapter's Colab launch
button at its twin and warns when a twin is out of date.
"""
from __future__ import annotations

import argparse
import codecs
import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import nbformat
import yaml

COLAB_DIR = "book/_colab"
GLUE_PREFIX = "application/papermill.record/"
GENERATED_NOTE = ("*This notebook is generated from `{source}` by `python -m rpbook.colab_export` for Colab "
                  "and plain Jupyter; edit the chapter, not this file.*")

# A fenced directive (``:::{name} argument`` or ```` ```{name} argument ````), a plain code fence,
# an inline role (``{name}`content` ``), a target line ``(label)=``.
DIRECTIVE_OPEN = re.compile(r"^(?P<indent> {0,3})(?P<fence>:{3,}|`{3,})\{(?P<name>[A-Za-z][\w:-]*)\}[ \t]*(?P<arg>.*?)\s*$")
CODE_FENCE = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})[^`{]*$")
OPTION = re.compile(r"^:(?P<key>[\w-]+):[ \t]*(?P<value>.*?)\s*$")
ROLE = re.compile(r"\{(?P<name>[A-Za-z][\w:-]*)\}`(?P<content>[^`]+)`")
TARGET = re.compile(r"^\((?P<label>[^)\s]+)\)=\s*$")
EXPLICIT_TITLE = re.compile(r"^(?P<title>.*?)\s*<(?P<target>[^<>]+)>$", re.S)

ADMONITION_KINDS = {"note", "tip", "hint", "important", "warning", "caution", "attention", "danger", "error", "seealso"}
PROOF_KINDS = {  # sphinx-proof directive -> title word (numbered per chapter, one counter per kind)
    "prf:theorem": "Theorem", "prf:lemma": "Lemma", "prf:proposition": "Proposition", "prf:corollary": "Corollary",
    "prf:definition": "Definition", "prf:algorithm": "Algorithm", "prf:example": "Example", "prf:remark": "Remark",
    "prf:conjecture": "Conjecture", "prf:axiom": "Axiom", "prf:criterion": "Criterion", "prf:observation": "Observation",
    "prf:property": "Property", "prf:assumption": "Assumption", "prf:notation": "Notation",
}


@dataclass
class Chapter:
    """What one chapter's conversion needs to know about the chapter (numbers, labels, glue, citations)."""

    path: Path
    number: str                                   # "3", or "" for an unnumbered page
    glue: dict[str, dict]                         # glue key -> its mime bundle (text/plain, ...)
    labels: dict[str, str] = field(default_factory=dict)   # label -> the text {ref}/{numref} shows
    exercise_numbers: dict[str, str] = field(default_factory=dict)
    cited: list[str] = field(default_factory=list)          # bib keys in order of first citation
    keyprefix: str = ""

    def numbered(self, counter: int) -> str:
        return f"{self.number}.{counter}" if self.number else str(counter)


# ----------------------------------------------------------------------------- the book: _toc.yml


def toc_notebooks(root: str | os.PathLike) -> list[tuple[Path, str]]:
    """Every notebook of ``_toc.yml`` in reading order, with its chapter number ("" when unnumbered).

    Entries are numbered 1, 2, ... where the toc (``options``) or their part
    says ``numbered``, continuing across numbered parts; nested ``sections``
    get ``n.k``, as Jupyter Book numbers them.
    """
    root = Path(root)
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    default = bool(toc.get("options", {}).get("numbered", False))
    found: list[tuple[Path, str]] = []
    counter = 0

    def visit(entries: Sequence[dict], prefix: str, numbered: bool, top: bool) -> None:
        nonlocal counter
        for i, entry in enumerate(entries, start=1):
            number = ""
            if numbered:
                if top:
                    counter += 1
                number = f"{counter}" if top else f"{prefix}{i}"
            if "file" in entry:
                path = root / f"{entry['file']}.ipynb"
                if path.exists():
                    found.append((path, number))
            visit(entry.get("sections", []), f"{number}.", numbered and bool(number), False)

    root_nb = root / f"{toc['root']}.ipynb"
    if root_nb.exists():
        found.append((root_nb, ""))
    visit(toc.get("chapters", []), "", default, True)
    for part in toc.get("parts", []):
        visit(part.get("chapters", []), "", bool(part.get("numbered", default)), True)
    return found


def uses_myst(path: str | os.PathLike) -> bool:
    """Whether a notebook's Markdown uses MyST (a directive, role, target or glue): only then it needs a twin.

    Plain-Markdown notebooks (the course's student labs) open in Colab as they are.
    """
    nb = nbformat.read(path, as_version=4)
    pattern = re.compile(r"^ {0,3}(:{3,}|`{3,})\{[\w:-]+\}|\{[A-Za-z][\w:-]*\}`|^\([^)\s]+\)=\s*$", re.M)
    return any(cell.cell_type == "markdown" and pattern.search(cell.source) for cell in nb.cells)


def colab_path(root: str | os.PathLike, chapter: str | os.PathLike) -> Path:
    """Where the Colab twin of ``chapter`` lives: ``book/_colab/`` + its path below ``book/``."""
    rel = Path(chapter).resolve().relative_to(Path(root).resolve())
    parts = rel.parts[1:] if rel.parts and rel.parts[0] == "book" else rel.parts
    return Path(root) / COLAB_DIR / Path(*parts)


# ----------------------------------------------------------------------------- bibliography


def _latex_to_text(text: str) -> str:
    try:
        text = codecs.decode(text, "ulatex")
    except (LookupError, ValueError):
        pass
    return text.replace("{", "").replace("}", "")


class Bibliography:
    """``book/references.bib``: author–year labels and formatted entries (via pybtex, as the HTML book)."""

    def __init__(self, paths: Iterable[str | os.PathLike]):
        from pybtex.database import BibliographyData, parse_file

        self.data = BibliographyData()
        self._style = None
        for path in paths:
            for key, entry in parse_file(str(path)).entries.items():
                self.data.add_entry(key, entry)

    def _entry(self, key: str):
        if key not in self.data.entries:
            raise ValueError(f"citation key {key!r} is not in the bibliography")
        return self.data.entries[key]

    def authors(self, key: str) -> str:
        entry = self._entry(key)
        people = entry.persons.get("author") or entry.persons.get("editor") or []
        names = [_latex_to_text(" ".join(p.last_names)) for p in people]
        if not names:
            return _latex_to_text(entry.fields.get("title", key))
        if len(names) == 1:
            return names[0]
        if len(names) == 2:
            return f"{names[0]} and {names[1]}"
        return f"{names[0]} et al."

    def year(self, key: str) -> str:
        return self._entry(key).fields.get("year", "n.d.")

    def reference(self, key: str) -> str:
        if self._style is None:
            from pybtex.plugin import find_plugin

            self._style = find_plugin("pybtex.style.formatting", "plain")()
        formatted = next(iter(self._style.format_entries([self._entry(key)])))
        return " ".join(formatted.text.render_as("markdown").split())


# ----------------------------------------------------------------------------- first pass: numbers and labels


def _glue_outputs(nb: nbformat.NotebookNode) -> dict[str, dict]:
    glue = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            meta = out.get("metadata", {}).get("scrapbook")
            if meta:
                prefix = meta.get("mime_prefix", GLUE_PREFIX)
                glue[meta["name"]] = {k[len(prefix):]: v for k, v in out.get("data", {}).items() if k.startswith(prefix)}
    return glue


def _scan_labels(chapter: Chapter, nb: nbformat.NotebookNode) -> None:
    """Number figures, exercises and theorem-like blocks in order, as the HTML book does."""
    figures, exercises, proofs = 0, 0, {}
    pending_target = None
    for cell in nb.cells:
        if cell.cell_type == "code":
            name = cell.metadata.get("mystnb", {}).get("figure", {}).get("name")
            if name:
                figures += 1
                chapter.labels[name] = f"Fig. {chapter.numbered(figures)}"
            continue
        if cell.cell_type != "markdown":
            continue
        lines = cell.source.splitlines()
        for i, line in enumerate(lines):
            target = TARGET.match(line)
            if target:
                pending_target = target.group("label")
                continue
            heading = re.match(r"^#{1,6}\s+(.*)$", line)
            if heading and pending_target:
                chapter.labels[pending_target] = heading.group(1).strip()
                pending_target = None
            opened = DIRECTIVE_OPEN.match(line)
            if not opened:
                continue
            name, arg = opened.group("name"), opened.group("arg")
            label = next((m.group("value") for m in map(OPTION.match, lines[i + 1:i + 8]) if m and m.group("key") == "label"), None)
            if name == "exercise":
                exercises += 1
                number = chapter.numbered(exercises)
                if label:
                    chapter.labels[label] = f"Exercise {number}"
                    chapter.exercise_numbers[label] = number
            elif name in PROOF_KINDS:
                proofs[name] = proofs.get(name, 0) + 1
                if label:
                    chapter.labels[label] = f"{PROOF_KINDS[name]} {chapter.numbered(proofs[name])}"
            elif name == "bibliography":
                prefix = next((m.group("value") for m in map(OPTION.match, lines[i + 1:i + 8]) if m and m.group("key") == "keyprefix"), "")
                chapter.keyprefix = prefix
        # citations in order of first appearance
        for role in ROLE.finditer(cell.source):
            if role.group("name").startswith(("cite", "footcite")):
                for key in (k.strip() for k in role.group("content").split(",")):
                    if key not in chapter.cited:
                        chapter.cited.append(key)


# ----------------------------------------------------------------------------- inline roles


def _split_title(content: str) -> tuple[str | None, str]:
    m = EXPLICIT_TITLE.match(content.strip())
    return (m.group("title"), m.group("target").strip()) if m else (None, content.strip())


class Converter:
    """Renders one chapter's MyST to plain Markdown; refuses what it does not know."""

    def __init__(self, chapter: Chapter, bib: Bibliography, titles: dict[str, str],
                 glue_of: Callable[[str], dict[str, dict]]):
        self.chapter = chapter
        self.bib = bib
        self.titles = titles          # docname (no suffix, relative to the root) -> page title
        self.glue_of = glue_of        # another notebook's glue, for {glue:text}`doc::key`

    # roles ----------------------------------------------------------------
    def _bibkey(self, key: str) -> str:
        prefix = self.chapter.keyprefix
        return key[len(prefix):] if prefix and key.startswith(prefix) else key

    def cite(self, name: str, content: str) -> str:
        keys = [self._bibkey(k.strip()) for k in content.split(",") if k.strip()]
        if name in ("cite:t", "cite:ts", "cite:ct"):
            return ", ".join(f"{self.bib.authors(k)} ({self.bib.year(k)})" for k in keys)
        if name in ("cite:author", "cite:authors"):
            return ", ".join(self.bib.authors(k) for k in keys)
        if name in ("cite:year", "cite:yearpar"):
            return ", ".join(self.bib.year(k) for k in keys)
        inner = "; ".join(f"{self.bib.authors(k)}, {self.bib.year(k)}" for k in keys)
        return f"({inner})"

    def glue_text(self, name: str, content: str) -> str:
        from myst_nb.core.variables import format_plain_text

        key, fmt = content, "s"
        if name == "glue:text" and ":" in content.split("::")[-1]:
            key, fmt = content.rsplit(":", 1)
        doc, _, bare = key.rpartition("::")
        glue = self.glue_of(doc) if doc else self.chapter.glue
        if bare not in glue:
            raise ValueError(f"{self.chapter.path.name}: glue key {bare!r} is not in the executed notebook "
                             f"(execute the chapter, then export)")
        bundle = glue[bare]
        if name == "glue:md":
            return bundle.get("text/markdown", bundle.get("text/plain", ""))
        if "text/plain" not in bundle:
            raise ValueError(f"{self.chapter.path.name}: glue key {bare!r} has no text/plain value")
        return format_plain_text(bundle["text/plain"], fmt) if name == "glue:text" else bundle["text/plain"]

    def reference(self, name: str, content: str) -> str:
        title, target = _split_title(content)
        if name == "doc":
            doc = (self.chapter.path.parent / target).resolve()
            return title or self.titles.get(str(doc), target)
        text = self.chapter.labels.get(target)
        if text is None:  # a label of another chapter: its number says which ("Theorem 4.1")
            text = getattr(self, "other_labels", {}).get(target)
        if text is None:
            raise ValueError(f"{self.chapter.path.name}: {{{name}}} target {target!r} is not a label of this chapter")
        if title is None:
            return text
        if name == "numref":  # "Figure %s" / "{number}" templates name the number only
            number = text.split(" ", 1)[-1]
            return title.replace("%s", number).replace("{number}", number)
        return title

    def roles(self, text: str) -> str:
        def one(m: re.Match) -> str:
            name, content = m.group("name"), m.group("content")
            if name.startswith("cite") or name.startswith("footcite"):
                return self.cite(name, content)
            if name in ("glue", "glue:text", "glue:md"):
                return self.glue_text(name, content)
            if name in ("numref", "ref", "prf:ref", "doc", "eq", "numref:"):
                return self.reference(name, content)
            if name == "math":
                return f"${content}$"
            if name == "index":  # {index}`term` shows the term; the entry itself is for the HTML index
                return _split_title(content)[0] or content
            if name in ("sub", "sup"):
                return f"<{name}>{content}</{name}>"
            if name in ("abbr", "term", "kbd", "code", "samp", "file", "command"):
                return f"`{_split_title(content)[0] or content}`" if name != "abbr" else content
            raise ValueError(f"{self.chapter.path.name}: unknown MyST role {{{name}}}; "
                             f"teach rpbook/colab_export.py how to render it")
        return ROLE.sub(one, text)

    # blocks ---------------------------------------------------------------
    def _directive_end(self, lines: list[str], start: int, fence: str) -> int:
        char, n = fence[0], len(fence)
        closing = re.compile(rf"^ {{0,3}}{re.escape(char)}{{{n},}}\s*$")
        for j in range(start, len(lines)):
            if closing.match(lines[j]):
                return j
        raise ValueError(f"{self.chapter.path.name}: directive fence {fence} is never closed")

    def render(self, text: str) -> str:
        """Markdown of one cell (or a directive's body), MyST removed."""
        lines = text.splitlines()
        out: list[str] = []
        i = 0
        while i < len(lines):
            line = lines[i]
            opened = DIRECTIVE_OPEN.match(line)
            if opened:
                end = self._directive_end(lines, i + 1, opened.group("fence"))
                body = lines[i + 1:end]
                options = {}
                while body and OPTION.match(body[0]):
                    m = OPTION.match(body[0])
                    options[m.group("key")] = m.group("value")
                    body = body[1:]
                out.extend(self.directive(opened.group("name"), opened.group("arg"), options, "\n".join(body)).splitlines())
                i = end + 1
                continue
            fenced = CODE_FENCE.match(line)
            if fenced:  # a plain code block: copied verbatim
                fence = fenced.group("fence")
                end = next((j for j in range(i + 1, len(lines)) if lines[j].strip().startswith(fence)
                            and set(lines[j].strip()) == {fence[0]}), len(lines) - 1)
                out.extend(lines[i:end + 1])
                i = end + 1
                continue
            if TARGET.match(line) or line.startswith("% ") or line.strip() == "+++":
                i += 1  # a label target, a MyST comment or a block break: nothing to show
                continue
            if i + 1 < len(lines) and lines[i + 1].startswith(": ") and line.strip() and not line.startswith((" ", "-", "*", "#", ">", "|")):
                out.append(f"- **{self.roles(line.strip())}**: {self.roles(lines[i + 1][2:].strip())}")  # deflist
                i += 2
                continue
            out.append(self.roles(line))
            i += 1
        return "\n".join(out).strip("\n")

    def directive(self, name: str, arg: str, options: dict, body: str) -> str:
        chapter = self.chapter
        arg = self.roles(arg)
        if name == "admonition" or name in ADMONITION_KINDS:
            title = arg or name.capitalize()
            return _quote(f"**{title}**\n\n{self.render(body)}")
        if name == "exercise":
            number = chapter.exercise_numbers.get(options.get("label", ""), "")
            title = f"Exercise {number}".strip() + (f" ({arg})" if arg else "")
            return _quote(f"**{title}**\n\n{self.render(body)}")
        if name == "solution":
            return _details(self._solution_title(arg), self.render(body))
        if name in PROOF_KINDS:
            label = chapter.labels.get(options.get("label", ""), PROOF_KINDS[name])
            title = f"{label} ({arg})" if arg else label
            return _quote(f"**{title}.** {self.render(body)}")
        if name == "prf:proof":
            return _quote(f"*Proof.* {self.render(body)} ∎")
        if name == "bibliography":
            return self.bibliography()
        if name in ("math", "prf:math"):
            return f"$$\n{body.strip()}\n$$"
        if name in ("epigraph", "pull-quote", "highlights"):
            return _quote(self.render(body))
        if name == "index":  # index entries serve the HTML book's index page; a notebook has none
            return ""
        raise ValueError(f"{chapter.path.name}: unknown MyST directive {{{name}}}; "
                         f"teach rpbook/colab_export.py how to render it")

    def _solution_title(self, label: str) -> str:
        number = self.chapter.exercise_numbers.get(label.strip())
        return f"Solution to Exercise {number}" if number else "Solution"

    def bibliography(self) -> str:
        keys = sorted({self._bibkey(k) for k in self.chapter.cited},
                      key=lambda k: (self.bib.authors(k).lower(), self.bib.year(k), k))
        if not keys:
            return ""
        items = [f"- **{self.bib.authors(k)}, {self.bib.year(k)}.** {self.bib.reference(k)}" for k in keys]
        return "**References**\n\n" + "\n".join(items)


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" if line.strip() else ">" for line in text.strip("\n").splitlines())


def _details(summary: str, body: str) -> str:
    # blank lines around the body: Jupyter and Colab render Markdown inside an HTML block only then
    return f"<details>\n<summary><b>{summary}</b></summary>\n\n{body}\n\n</details>"


# ----------------------------------------------------------------------------- one notebook


def _page_title(nb: nbformat.NotebookNode) -> str | None:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            m = re.search(r"^#\s+(.+)$", cell.source, re.M)
            if m:
                return m.group(1).strip()
    return None


def book_labels(root: str | os.PathLike) -> dict[str, str]:
    """Every numbered label of every chapter in ``_toc.yml`` ("Theorem 4.1", "Fig. 6.2"), for cross-chapter references."""
    labels: dict[str, str] = {}
    for path, number in toc_notebooks(Path(root)):
        if uses_myst(path):
            other = Chapter(path=path, number=number, glue={})
            _scan_labels(other, nbformat.read(path, as_version=4))
            labels.update(other.labels)
    return labels


def convert_notebook(path: str | os.PathLike, *, number: str, bib: Bibliography, root: str | os.PathLike,
                     titles: dict[str, str] | None = None,
                     other_labels: dict[str, str] | None = None) -> nbformat.NotebookNode:
    """The Colab twin of one executed chapter (chapter 1, *How to use this book*; the module docstring lists what changes).

    Raises ``ValueError`` naming the chapter and the construct when a directive,
    role, label or glue key cannot be rendered.
    """
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    chapter = Chapter(path=path, number=number, glue=_glue_outputs(nb))
    _scan_labels(chapter, nb)
    glue_cache: dict[str, dict] = {}

    def glue_of(doc: str) -> dict:
        other = (path.parent / doc).with_suffix(".ipynb")
        if str(other) not in glue_cache:
            glue_cache[str(other)] = _glue_outputs(nbformat.read(other, as_version=4))
        return glue_cache[str(other)]

    conv = Converter(chapter, bib, titles or {}, glue_of)
    conv.other_labels = book_labels(root) if other_labels is None else other_labels
    source = Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    cells = [nbformat.v4.new_markdown_cell(GENERATED_NOTE.format(source=source))]
    in_gated_solution: str | None = None
    gated_parts = 0
    titled = False
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            text = cell.source
            # A gated solution (solution-start ... solution-end) spans cells: its Markdown parts
            # are collapsed blocks, its code cells are folded (see below).
            pieces = re.split(r"^(:{3,}|`{3,})\{(solution-start|solution-end)\}[ \t]*(.*)\n(?:(?::[\w-]+:.*\n)*)\1[ \t]*$",
                              text, flags=re.M)
            md_parts: list[str] = []
            k = 0
            while k < len(pieces):
                chunk = pieces[k]
                if chunk.strip():
                    rendered = conv.render(chunk)
                    if in_gated_solution is not None and rendered.strip():
                        gated_parts += 1
                        more = " (continued)" if gated_parts > 1 else ""
                        rendered = _details(f"{in_gated_solution}{more}", rendered)
                    md_parts.append(rendered)
                if k + 3 < len(pieces):
                    kind, label = pieces[k + 2], pieces[k + 3]
                    if kind == "solution-start":
                        in_gated_solution, gated_parts = conv._solution_title(label), 0
                        md_parts.append(f"*{in_gated_solution}: try the exercise first. Its text is folded below, "
                                        "its code cells are folded too (click to show them).*")
                    else:
                        in_gated_solution = None
                        md_parts.append("*End of the solution.*")
                k += 4
            rendered = "\n\n".join(p for p in md_parts if p.strip())
            if not titled and number:
                rendered, n = re.subn(r"^#\s+", f"# {number}. ", rendered, count=1, flags=re.M)
                titled = bool(n)
            if rendered.strip():
                cells.append(nbformat.v4.new_markdown_cell(rendered))
        elif cell.cell_type == "code":
            meta = {k: v for k, v in cell.metadata.items() if k not in ("execution", "scrolled", "collapsed")}
            if in_gated_solution is not None:
                meta["cellView"] = "form"
                meta.setdefault("jupyter", {})["source_hidden"] = True
            cells.append(nbformat.v4.new_code_cell(cell.source, metadata=meta))
            figure = cell.metadata.get("mystnb", {}).get("figure", {})
            if figure.get("caption"):
                caption = conv.roles(" ".join(figure["caption"].split()))
                label = chapter.labels.get(figure.get("name", ""), "Figure")
                cells.append(nbformat.v4.new_markdown_cell(f"**{label}.** {caption}"))
        else:
            cells.append(nbformat.v4.new_raw_cell(cell.source))
    for i, cell in enumerate(cells):
        cell["id"] = f"c{i:03d}"  # deterministic ids: an unchanged chapter gives a byte-identical twin
    out = nbformat.v4.new_notebook(cells=cells)
    out.metadata = {k: v for k, v in nb.metadata.items() if k in ("kernelspec", "language_info")}
    out.metadata["colab"] = {"provenance": [], "toc_visible": True}
    return out


# ----------------------------------------------------------------------------- the whole book


def _bibfiles(root: Path) -> list[Path]:
    config = yaml.safe_load((root / "_config.yml").read_text())
    return [root / b for b in config.get("bibtex_bibfiles", [])]


def export_book(root: str | os.PathLike = ".", *, check: bool = False) -> list[Path]:
    """Write (or with ``check`` only compare) the Colab twin of every notebook in ``_toc.yml`` (chapter 1).

    Returns the twins that were (or, with ``check``, would be) rewritten.
    Notebooks without MyST get no twin (``uses_myst``). Twins of notebooks no
    longer in the toc are removed (reported as stale).
    """
    root = Path(root)
    notebooks = [(path, number) for path, number in toc_notebooks(root) if uses_myst(path)]
    if not notebooks:
        raise ValueError(f"{root / '_toc.yml'} lists no notebook written in MyST")
    bib = Bibliography(_bibfiles(root))
    titles = {}
    for path, _ in notebooks:
        title = _page_title(nbformat.read(path, as_version=4))
        if title:
            titles[str(path.with_suffix("").resolve())] = title
    changed: list[Path] = []
    wanted = set()
    other_labels = book_labels(root)
    for path, number in notebooks:
        target = colab_path(root, path)
        wanted.add(target.resolve())
        text = nbformat.writes(convert_notebook(path, number=number, bib=bib, root=root, titles=titles,
                                                other_labels=other_labels)) + "\n"
        if target.exists() and target.read_text() == text:
            continue
        changed.append(target)
        if not check:
            _write_atomic(target, text)
    colab_root = root / COLAB_DIR
    for orphan in sorted(colab_root.rglob("*.ipynb")) if colab_root.exists() else []:
        if orphan.resolve() not in wanted and ".ipynb_checkpoints" not in orphan.parts:
            changed.append(orphan)
            if not check:
                orphan.unlink()
    return changed


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a committed file should be readable by all
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m rpbook.colab_export [--root DIR] [--check]``: write or check the Colab notebooks."""
    parser = argparse.ArgumentParser(prog="python -m rpbook.colab_export",
                                     description="Write the Colab/Jupyter twins of the chapters into book/_colab/.")
    parser.add_argument("--root", default=".", help="the book's root (the folder with _toc.yml)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a twin is out of date")
    args = parser.parse_args(argv)
    if not (Path(args.root) / "_toc.yml").is_file():
        print(f"colab_export: error: --root {args.root!r} has no _toc.yml", file=sys.stderr)
        return 2
    try:
        changed = export_book(args.root, check=args.check)
    except ValueError as err:
        print(f"colab_export: error: {err}", file=sys.stderr)
        return 2
    for path in changed:
        print(f"{'stale' if args.check else 'wrote'} {path}")
    if args.check and changed:
        print("run `python -m rpbook.colab_export` to update them", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
