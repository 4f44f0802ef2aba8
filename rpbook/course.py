"""The course edition: graded labs, their autograders, and student editions of the chapters.

The book's instructor guide (``book/instructor_guide.md``) teaches how to use it. One
master notebook per lab (``book/labs/labN_*.ipynb``, otter-grader's assign format)
is the single source of a lab: ``otter assign`` turns it into

- the student notebook (no solutions, no hidden tests) and its public tests,
  which are committed under ``book/assignments/`` so that the HTML book and its
  Colab button show exactly what students get (:func:`sync_assignments`, and a
  test checks they are up to date: :func:`stale_assignments`);
- the autograder bundle (a zip for ``otter run`` / ``otter grade`` / Gradescope);
- the reference solutions, executed, as HTML.

It also writes a student edition of every chapter (:func:`student_edition`):
the chapter with its exercise solutions and their outputs removed.

Command line (the Makefile's ``make course`` calls the first)::

    python -m rpbook.course build [--out _build/course] [--no-check]
    python -m rpbook.course sync      # refresh book/assignments/ from the masters
    python -m rpbook.course check     # exit 1 if book/assignments/ is stale
    python -m rpbook.course grade AUTOGRADER.zip SUBMISSION_OR_FOLDER... [--output scores.csv]
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import io
import os
import re
import shutil
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import nbformat

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
LABS_DIR = BOOK / "labs"
ASSIGNMENTS_DIR = BOOK / "assignments"
DEFAULT_OUT = ROOT / "_build" / "course"
CHAPTER_GLOB = "0*.ipynb"


def lab_masters(labs_dir: Path = LABS_DIR) -> list[Path]:
    """The master notebooks of the labs, in order (instructor guide, *Building the course*)."""
    masters = sorted(labs_dir.glob("lab*.ipynb"))
    if not masters:
        raise ValueError(f"no lab master notebooks (lab*.ipynb) in {labs_dir}")
    return masters


def _repository_url() -> str:
    """The repository URL of ``_config.yml`` (the one place it is set)."""
    import yaml

    return yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]


@dataclass
class LabBuild:
    """What :func:`assign_lab` wrote for one lab."""

    name: str
    master: Path
    student_notebook: Path
    student_tests: Path
    autograder_zip: Path
    solution_notebook: Path
    points: dict[str, float] = field(default_factory=dict)


@contextlib.contextmanager
def _quiet():
    """otter prints banners and per-test logs; keep them out of the build log unless it fails."""
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            yield buffer
    except BaseException:
        sys.stderr.write(buffer.getvalue()[-4000:])
        raise


def assign_lab(master: Path, out: Path) -> LabBuild:
    """Run ``otter assign`` on one master notebook into ``out/<lab>/`` (instructor guide, *Building*).

    The master is copied next to a ``requirements.txt`` naming rpbook (from the
    repository URL of ``_config.yml``), so the autograder bundle installs it on
    Gradescope; locally ``otter run`` uses the current environment. Otter's own
    check of the solutions is not run here: :func:`grade` does it.
    """
    from otter.assign import main as otter_assign

    master = Path(master).resolve()
    if not master.is_file():
        raise ValueError(f"lab master notebook {master} does not exist")
    name = master.stem
    lab_out = Path(out).resolve() / name
    shutil.rmtree(lab_out, ignore_errors=True)
    source = lab_out / "source"
    source.mkdir(parents=True)
    shutil.copy(master, source / master.name)
    (source / "requirements.txt").write_text(f"rpbook[course] @ git+{_repository_url()}\n")
    dist = lab_out / "dist"
    cwd = os.getcwd()
    try:
        os.chdir(source)  # otter resolves requirements and files next to the master
        with _quiet():
            otter_assign(str(source / master.name), str(dist), no_pdfs=True, no_run_tests=True)
    finally:
        os.chdir(cwd)
    zips = sorted((dist / "autograder").glob("*-autograder_*.zip"))
    if len(zips) != 1:
        raise RuntimeError(f"otter assign wrote {len(zips)} autograder zips for {name}")
    autograder = lab_out / f"{name}-autograder.zip"
    shutil.move(zips[0], autograder)
    return LabBuild(
        name=name, master=master, student_notebook=dist / "student" / master.name,
        student_tests=dist / "student" / "tests", autograder_zip=autograder,
        solution_notebook=dist / "autograder" / master.name, points=autograded_points(autograder),
    )


def autograded_points(autograder_zip: Path) -> dict[str, float]:
    """Points of every autograded question in an autograder bundle (its ``tests/*.py``)."""
    points: dict[str, float] = {}
    with zipfile.ZipFile(autograder_zip) as z:
        for member in sorted(z.namelist()):
            if member.startswith("tests/") and member.endswith(".py"):
                env: dict[str, Any] = {}
                exec(z.read(member).decode(), env)  # an OK-format test file defines `test`
                points[env["test"]["name"]] = float(env["test"]["points"])
    return points


@dataclass
class Grade:
    """The autograder's verdict on one submission: per question ``(score, possible)``."""

    scores: dict[str, tuple[float, float]]
    seconds: float

    @property
    def total(self) -> float:
        return sum(s for s, _ in self.scores.values())

    @property
    def possible(self) -> float:
        return sum(p for _, p in self.scores.values())


def grade(submission: Path, autograder_zip: Path, *, in_process: bool = False) -> Grade:
    """Grade one submitted notebook with its lab's autograder, without Docker (``otter run``).

    Instructor guide, *Collecting and grading*. The submission runs in a fresh
    kernel of the current environment (which must have rpbook and otter-grader).
    ``in_process`` runs the same test files in this process instead (see
    :func:`_grade_in_process`): the course tests grade many submissions that way.
    """
    import time

    from otter.api import grade_submission

    submission, autograder_zip = Path(submission), Path(autograder_zip)
    for path in (submission, autograder_zip):
        if not path.is_file():
            raise ValueError(f"{path} does not exist")
    start = time.perf_counter()
    if in_process:
        scores = _grade_in_process(submission, autograder_zip)
    else:
        with _quiet():
            results = grade_submission(str(submission), str(autograder_zip), quiet=True)
        scores = {name: (float(r.score), float(r.possible)) for name, r in results.results.items()}
    return Grade(scores=scores, seconds=time.perf_counter() - start)


def _grade_in_process(submission: Path, autograder_zip: Path) -> dict[str, tuple[float, float]]:
    """otter's test files run against the submission's code, executed in this process.

    The same tests and scoring as ``otter run`` (otter's own test-file classes),
    without the kernel it starts per submission: cells run one by one in a fresh
    namespace, a failing cell is skipped as otter does, and the notebook's own
    ``grader.check`` cells (the public tests) are left out, since every test
    file of the bundle runs afterwards anyway.
    """
    from IPython.core.inputtransformer2 import TransformerManager
    from otter.nbmeta_config import NBMetadataConfig
    from otter.test_files import create_test_file

    import random

    import numpy as np
    import torch

    nb = nbformat.read(submission, as_version=4)
    namespace: dict[str, Any] = {"__name__": "__main__"}
    transform = TransformerManager().transform_cell
    cwd = os.getcwd()
    # Submissions and tests seed the global generators; leave this process's as they were.
    rng_states = random.getstate(), np.random.get_state()
    with tempfile.TemporaryDirectory() as tmp, _quiet(), torch.random.fork_rng():
        with zipfile.ZipFile(autograder_zip) as z:
            z.extractall(tmp)
        os.chdir(tmp)  # whatever the submission writes (otter's .OTTER_LOG, say) goes to the temporary folder
        try:
            for cell in nb.cells:
                if cell.cell_type != "code" or cell.source.lstrip().startswith("grader.check"):
                    continue
                try:
                    exec(compile(transform(cell.source), "<submission>", "exec"), namespace)
                except Exception:  # noqa: BLE001 - a broken cell costs its questions, as in otter run
                    pass
            scores = {}
            for path in sorted(Path(tmp, "tests").glob("*.py")):
                test = create_test_file(str(path), NBMetadataConfig())
                test.run(namespace)
                scores[test.name] = (float(test.score), float(test.possible))
        finally:
            os.chdir(cwd)
            random.setstate(rng_states[0])
            np.random.set_state(rng_states[1])
    return scores


# ----------------------------------------------------------------------------- student editions


_SOLUTION_DIRECTIVE = re.compile(r"^(:{3,})\{solution\}.*?^\1\s*$\n?", re.M | re.S)


def student_edition(chapter: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A chapter without its exercise solutions (instructor guide, *Student editions of the chapters*).

    Removes every ``{solution}`` directive from Markdown cells and everything
    from a ``{solution-start}`` line to its ``{solution-end}`` fence, within or
    across cells: the prose and code of a gated solution and the code's outputs.
    Everything else, outputs included, stays.
    """
    out = nbformat.from_dict(chapter)
    cells = []
    inside = False
    for cell in out.cells:
        if cell.cell_type != "markdown":
            if not inside:
                cells.append(cell)
            continue
        kept: list[str] = []
        lines = _SOLUTION_DIRECTIVE.sub("", cell.source).split("\n")
        skip_fence = False
        for line in lines:
            if skip_fence:
                skip_fence = False
                if re.fullmatch(r":{3,}\s*", line):
                    continue
            if "{solution-start}" in line:
                inside = True
            elif "{solution-end}" in line:
                if not inside:
                    raise ValueError("a {solution-end} without its {solution-start}")
                inside, skip_fence = False, True
            elif not inside:
                kept.append(line)
        text = "\n".join(kept).strip("\n")
        if text.strip():
            cell.source = text
            cells.append(cell)
    if inside:
        raise ValueError("a {solution-start} block has no {solution-end}")
    out.cells = cells
    return out


def write_student_chapters(out: Path, book: Path = BOOK) -> list[Path]:
    """Write the student edition of every chapter into ``out`` (see :func:`student_edition`)."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(book.glob(CHAPTER_GLOB)):
        target = out / path.name
        _write_atomic(student_edition(nbformat.read(path, as_version=4)), target)
        written.append(target)
    return written


def _write_atomic(nb: nbformat.NotebookNode, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(handle)
    try:
        nbformat.write(nb, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


# ----------------------------------------------------------------------------- committed student notebooks


def _comparable(nb: nbformat.NotebookNode) -> list[tuple[str, str, Any]]:
    """What a student sees of a notebook: cell types, sources, tags (otter's random cell ids aside)."""
    return [(c.cell_type, c.source, sorted(c.metadata.get("tags", []))) for c in nb.cells]


def _published(build: LabBuild) -> nbformat.NotebookNode:
    nb = nbformat.read(build.student_notebook, as_version=4)
    for cell in nb.cells:
        cell.pop("id", None)
    nb.nbformat_minor = 4  # no cell ids: the committed file does not change on every build
    return nb


def sync_assignments(builds: Sequence[LabBuild], target: Path = ASSIGNMENTS_DIR) -> None:
    """Copy the student notebooks and public tests of ``builds`` into the book (``book/assignments/``)."""
    for build in builds:
        _write_atomic(_published(build), target / build.student_notebook.name)
        tests = target / "tests" / build.name
        shutil.rmtree(tests, ignore_errors=True)
        shutil.copytree(build.student_tests, tests)


def stale_assignments(builds: Sequence[LabBuild], target: Path = ASSIGNMENTS_DIR) -> list[str]:
    """Files of ``book/assignments/`` that differ from a fresh ``otter assign`` (empty: up to date)."""
    stale = []
    for build in builds:
        committed = target / build.student_notebook.name
        if not committed.is_file() or _comparable(nbformat.read(committed, as_version=4)) != _comparable(_published(build)):
            stale.append(str(committed.relative_to(ROOT)))
        tests = target / "tests" / build.name
        fresh = {p.name: p.read_text() for p in build.student_tests.glob("*.py")}
        have = {p.name: p.read_text() for p in tests.glob("*.py")} if tests.is_dir() else {}
        if fresh != have:
            stale.append(str(tests.relative_to(ROOT)))
    return stale


# ----------------------------------------------------------------------------- the whole build


def _solutions_html(build: LabBuild, out: Path) -> Path:
    """Execute the reference solution and export it, with its outputs, as HTML."""
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import ExecutePreprocessor

    nb = nbformat.read(build.solution_notebook, as_version=4)
    with tempfile.TemporaryDirectory() as tmp:
        # laid out as students have it (tests/<lab>/), so its grader.check cells run the public tests
        shutil.copytree(build.student_tests, Path(tmp, "tests", build.name))
        ExecutePreprocessor(timeout=600, kernel_name="python3").preprocess(nb, {"metadata": {"path": tmp}})
    html, _ = HTMLExporter().from_notebook_node(nb)
    target = out / f"{build.name}-solutions.html"
    target.write_text(html)
    return target


def build_course(out: Path = DEFAULT_OUT, *, check: bool = True) -> list[LabBuild]:
    """``make course``: labs, autograders, solutions HTML and student chapters into ``out``.

    With ``check``, each reference solution is graded by its autograder and must
    get full marks, and ``book/assignments/`` must be up to date; otherwise the
    build fails with the reason.
    """
    out = Path(out).resolve()
    builds = [assign_lab(master, out / "labs") for master in lab_masters()]
    students = out / "student"
    solutions = out / "solutions"
    autograders = out / "autograders"
    for folder in (students, solutions, autograders):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    for build in builds:
        shutil.copy(build.student_notebook, students / build.student_notebook.name)
        shutil.copytree(build.student_tests, students / "tests" / build.name)
        shutil.copy(build.autograder_zip, autograders / build.autograder_zip.name)
        _solutions_html(build, solutions)
        if check:
            result = grade(build.solution_notebook, build.autograder_zip)
            if result.total != result.possible:
                raise RuntimeError(f"{build.name}: the reference solution gets {result.total}/{result.possible}: "
                                   f"{result.scores}")
            print(f"{build.name}: reference solution {result.total:g}/{result.possible:g} points, "
                  f"graded in {result.seconds:.1f} s")
    write_student_chapters(out / "chapters")
    if check:
        stale = stale_assignments(builds)
        if stale:
            raise RuntimeError("book/assignments/ is out of date with book/labs/ (run `python -m rpbook.course "
                               f"sync` and commit): {', '.join(stale)}")
    return builds


def grade_many(autograder_zip: Path, paths: Sequence[Path], output: Path) -> list[tuple[str, Grade]]:
    """Grade every ``.ipynb`` among ``paths`` (files or folders) and write one CSV row per submission.

    Instructor guide, *Collecting and grading*: ``otter grade`` needs Docker; this
    runs ``otter run`` (a local kernel) per submission instead. Columns: the
    file, every question's score, the total and the points possible.
    """
    autograder_zip = Path(autograder_zip)
    if not autograder_zip.is_file() or autograder_zip.suffix != ".zip":
        raise ValueError(f"autograder {autograder_zip} is not an existing .zip (see _build/course/autograders/)")
    submissions: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            submissions += sorted(path.glob("*.ipynb"))
        elif path.is_file() and path.suffix == ".ipynb":
            submissions.append(path)
        else:
            raise ValueError(f"{path} is neither a folder nor an .ipynb file")
    if not submissions:
        raise ValueError("no .ipynb submissions found in " + ", ".join(map(str, paths)))
    questions = sorted(autograded_points(autograder_zip))
    graded = [(str(p), grade(p, autograder_zip)) for p in submissions]
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["submission", *questions, "total", "possible"])
        for name, g in graded:
            writer.writerow([name, *(g.scores.get(q, (0.0, 0.0))[0] for q in questions), g.total, g.possible])
    os.replace(tmp, output)
    return graded


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m rpbook.course build|sync|check`` (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m rpbook.course", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="student notebooks, autograders, solutions and student chapters")
    b.add_argument("--out", type=Path, default=DEFAULT_OUT)
    b.add_argument("--no-check", action="store_true", help="skip grading the reference solutions")
    sub.add_parser("sync", help="refresh book/assignments/ from book/labs/")
    sub.add_parser("check", help="exit 1 if book/assignments/ is stale")
    g = sub.add_parser("grade", help="grade submissions without Docker; write a CSV of scores")
    g.add_argument("autograder", type=Path, help="a lab's autograder zip (_build/course/autograders/)")
    g.add_argument("submissions", type=Path, nargs="+", help=".ipynb files or folders of them")
    g.add_argument("--output", type=Path, default=Path("scores.csv"))
    args = parser.parse_args(argv)
    try:
        if args.command == "grade":
            for name, result in grade_many(args.autograder, args.submissions, args.output):
                print(f"{name}: {result.total:g}/{result.possible:g} ({result.seconds:.1f} s)")
            print(f"wrote {args.output}")
            return 0
        if args.command == "build":
            builds = build_course(args.out, check=not args.no_check)
            print(f"wrote {len(builds)} labs into {args.out}")
            return 0
        with tempfile.TemporaryDirectory() as tmp:
            builds = [assign_lab(master, Path(tmp)) for master in lab_masters()]
            if args.command == "sync":
                sync_assignments(builds)
                print(f"updated {ASSIGNMENTS_DIR.relative_to(ROOT)} for {len(builds)} labs")
                return 0
            stale = stale_assignments(builds)
            for path in stale:
                print(f"stale: {path}")
            return 1 if stale else 0
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
