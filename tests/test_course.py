"""The course edition: every lab's autograder grades what it should, and students see no solution.

The seven labs are built ONCE per session with ``otter assign`` (a session fixture,
into a temporary directory). For every lab:

1. the reference solution gets full marks;
2. the untouched student notebook gets zero on every autograded question;
3. plausible wrong solutions (two per lab, in :data:`WRONG`) lose exactly the
   points of their question and nothing else;
4. the student notebook (as built, and as committed under ``book/assignments``
   for the HTML book and Colab) contains no solution code, no hidden test and
   no output, and the committed copy is up to date with its master.

Submissions are graded in-process with the bundle's own test files and
otter's own test classes (:func:`rpbook.course.grade` with ``in_process=True``):
an ``otter run`` starts a kernel per submission, which would cost minutes for
the ~30 submissions here. One test grades a real submission with ``otter run``
(a kernel, as an instructor would) and checks that both paths agree.
The masters themselves are not executed by nbval (``--ignore=book/labs`` in
pyproject.toml): grading the reference solution runs every one of their cells.
"""
from __future__ import annotations

import json
import re
import time
import zipfile
from pathlib import Path

import nbformat
import pytest

from rpbook import course

LABS = [p.stem for p in course.lab_masters()]

# A plausible mistake per question: (question, replacement source of the cell defining the function).
WRONG: dict[str, list[tuple[str, str]]] = {
    "lab1_masks": [
        ("q1_exact_count_mask", '''
def exact_count_mask(shape, density, seed):
    # Bernoulli draws instead of an exact count
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=generator) < density
'''),
        ("q2_erk_densities", '''
def erk_densities(shapes, density):
    # ER (channel counts only) instead of ERK: conv kernels ignored
    sizes = [math.prod(s) for s in shapes]
    scores = [(s[0] + s[1]) / (s[0] * s[1]) for s in shapes]
    eps = density * sum(sizes) / sum(r * n for r, n in zip(scores, sizes))
    return [eps * r for r in scores]
'''),
    ],
    "lab2_graphs": [
        ("q2_isolated_units", '''
def isolated_units(mask):
    # rows and columns swapped
    m = mask.bool()
    return int((m.sum(dim=0) == 0).sum()), int((m.sum(dim=1) == 0).sum())
'''),
        ("q3_count_paths", '''
import math


def count_paths(masks):
    # the expectation prod(n_l) prod(p_l) instead of the paths of these masks
    widths = [masks[0].shape[1]] + [m.shape[0] for m in masks]
    return float(math.prod(widths) * math.prod(float(m.float().mean()) for m in masks))
'''),
    ],
    "lab3_seeds": [
        ("q1_mean_ci", '''
def mean_ci(values, confidence=0.95):
    # the normal quantile (1.96) instead of Student's t with n - 1 degrees of freedom
    x = np.asarray(values, dtype=float)
    return float(x.mean()), float(stats.norm.ppf((1 + confidence) / 2) * x.std(ddof=1) / math.sqrt(len(x)))
'''),
        ("q2_welch", '''
def welch_test(a, b):
    # pooled variance (Student's t-test) instead of Welch's
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    na, nb = len(a), len(b)
    pooled = ((na - 1) * a.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / (na + nb - 2)
    t = (a.mean() - b.mean()) / math.sqrt(pooled * (1 / na + 1 / nb))
    return float(t), float(2 * stats.t.sf(abs(t), na + nb - 2))
'''),
    ],
    "lab4_width": [
        ("q1_width_factor", '''
def width_factor(density):
    # the approximation 1/p
    return 1.0 / density
'''),
        ("q3_required_width", '''
def required_width(density, delta, edges):
    # the union bound instead of the exact coverage probability
    return max(1, math.ceil(math.log(edges / delta) / -math.log1p(-density)))
'''),
    ],
    "lab5_gradient_flow": [
        ("q2_gradient_norm", '''
def masked_gradient_norm(model, x, y):
    # biases included in the norm
    params = list(model.parameters())
    grads = torch.autograd.grad(F.cross_entropy(model(x), y), params)
    return math.sqrt(sum(float(g.double().pow(2).sum()) for g in grads))
'''),
        ("q3_rigl_grow", '''
def rigl_grow(mask, grad, k):
    # the largest signed gradient instead of the largest magnitude
    scores = grad.reshape(-1).double().clone()
    flat = mask.bool().reshape(-1)
    scores[flat] = -math.inf
    new = flat.clone()
    new[torch.topk(scores, k).indices] = True
    return new.reshape(mask.shape)
'''),
    ],
    "lab6_strong_tickets": [
        ("q1_best_subset", '''
def best_subset(values, target):
    # greedy: add the largest numbers first while the sum gets closer
    v = np.asarray(values, dtype=float)
    selected = np.zeros(len(v), dtype=bool)
    total = 0.0
    for i in np.argsort(-np.abs(v)):
        if abs(target - total - v[i]) < abs(target - total):
            selected[i] = True
            total += v[i]
    return selected, float(abs(target - total))
'''),
        ("q3_edge_popup_masks", '''
def edge_popup_masks(scores, density):
    # top-k over the whole network instead of per layer
    flat = torch.cat([s.reshape(-1) for s in scores.values()])
    k = max(1, round(density * flat.numel()))
    threshold = torch.topk(flat, k).values.min()
    return {name: s >= threshold for name, s in scores.items()}
'''),
    ],
    "lab7_sparse_to_sparse": [
        ("q1_snip_in_source", '''
def snip_in_source(model, x, y, source):
    # gradient of the dense network, only restricted to the source afterwards
    layers = {name: m for name, m in model.named_modules() if name in source}
    loss = F.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, [m.weight for m in layers.values()])
    return {name: (m.weight.detach() * g).abs() * source[name] for (name, m), g in zip(layers.items(), grads)}
'''),
        ("q3_collapsed", '''
def collapsed(masks):
    # only looks for empty layers: misses layers whose kept weights do not connect
    return any(not bool(m.any()) for m in masks)
'''),
    ],
}


@pytest.fixture(scope="session")
def builds(tmp_path_factory) -> dict[str, course.LabBuild]:
    out = tmp_path_factory.mktemp("course")
    return {b.name: b for b in (course.assign_lab(m, out) for m in course.lab_masters())}


def _function_name(source: str) -> str | None:
    match = re.search(r"^def (\w+)\(", source, re.M)
    return match.group(1) if match else None


def _submission(build: course.LabBuild, tmp: Path, replace: dict[str, str] | None = None,
                solved: bool = True) -> Path:
    """The student notebook with every answer cell filled from the reference (or left as is)."""
    student = nbformat.read(build.student_notebook, as_version=4)
    reference = nbformat.read(build.solution_notebook, as_version=4)
    solutions = {_function_name(c.source): c.source for c in reference.cells
                 if c.cell_type == "code" and _function_name(c.source)}
    for cell in student.cells:
        name = _function_name(cell.source) if cell.cell_type == "code" else None
        if name and solved:
            cell.source = solutions[name]
        if name and replace and name in replace:
            cell.source = replace[name]
    path = tmp / f"{build.name}.ipynb"
    nbformat.write(student, path)
    return path


@pytest.mark.parametrize("lab", LABS)
def test_reference_solution_gets_full_marks(builds, tmp_path, lab):
    build = builds[lab]
    assert len(build.points) >= 3, "a lab has at least three autograded questions"
    result = course.grade(_submission(build, tmp_path), build.autograder_zip, in_process=True)
    assert result.scores and result.total == result.possible == sum(build.points.values()), result.scores


@pytest.mark.parametrize("lab", LABS)
def test_untouched_student_notebook_gets_zero_everywhere(builds, lab):
    build = builds[lab]
    result = course.grade(build.student_notebook, build.autograder_zip, in_process=True)
    assert set(result.scores) == set(build.points)
    assert all(score == 0 for score, _ in result.scores.values()), result.scores


@pytest.mark.parametrize("lab, question, wrong", [(lab, q, src) for lab, cases in WRONG.items() for q, src in cases],
                         ids=lambda v: v if isinstance(v, str) and not v.startswith("\n") else "")
def test_a_plausible_mistake_loses_exactly_its_question(builds, tmp_path, lab, question, wrong):
    build = builds[lab]
    name = _function_name(wrong)
    result = course.grade(_submission(build, tmp_path, {name: wrong}), build.autograder_zip, in_process=True)
    expected = {q: (0.0 if q == question else p, p) for q, p in build.points.items()}
    assert result.scores == expected


def test_every_lab_has_wrong_solutions_to_test():
    assert set(WRONG) == set(LABS)


def _hidden_test_code(autograder_zip: Path) -> list[str]:
    hidden = []
    with zipfile.ZipFile(autograder_zip) as z:
        for member in z.namelist():
            if member.startswith("tests/") and member.endswith(".py"):
                env: dict = {}
                exec(z.read(member).decode(), env)
                for suite in env["test"]["suites"]:
                    hidden += [case["code"] for case in suite["cases"] if case["hidden"]]
    return hidden


def _solution_lines(master: Path) -> list[str]:
    """Every non-trivial line between otter's solution markers, and every written reference answer."""
    nb = nbformat.read(master, as_version=4)
    lines, inside_block = [], False
    for cell in nb.cells:
        if cell.cell_type == "raw":
            if cell.source.strip() == "# BEGIN SOLUTION":
                inside_block = True
            elif cell.source.strip() == "# END SOLUTION":
                inside_block = False
            continue
        if cell.cell_type == "markdown" and inside_block:
            lines += [line.strip() for line in cell.source.splitlines() if len(line.strip()) > 20]
        if cell.cell_type == "code":
            inside = False
            for line in cell.source.splitlines():
                if line.strip() == "# BEGIN SOLUTION":
                    inside = True
                elif line.strip() == "# END SOLUTION":
                    inside = False
                elif inside and len(line.strip()) > 12:
                    lines.append(line.strip())
    return lines


@pytest.mark.parametrize("lab", LABS)
def test_student_notebook_has_no_solution_hidden_test_or_output(builds, lab):
    build = builds[lab]
    committed = course.ASSIGNMENTS_DIR / build.student_notebook.name
    hidden = _hidden_test_code(build.autograder_zip)
    assert hidden, "every lab has hidden tests"
    solution = _solution_lines(build.master)
    assert len(solution) >= 3
    for path in (build.student_notebook, committed):
        nb = nbformat.read(path, as_version=4)
        text = "\n".join(c.source for c in nb.cells) + json.dumps(nb.metadata)
        leaked = [line for line in solution if line in text]
        assert not leaked, f"{path.name} shows solution lines: {leaked[:3]}"
        assert "BEGIN SOLUTION" not in text and "BEGIN TEST CONFIG" not in text and "hidden: true" not in text
        for code in hidden:
            body = [line[4:] for line in code.splitlines() if line.startswith(">>> ") and len(line) > 40]
            assert not any(line in text for line in body), f"{path.name} shows a hidden test"
        assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")
        answers = [c for c in nb.cells if c.cell_type == "code" and _function_name(c.source)]
        assert len(answers) == len(build.points) and all(c.source.rstrip().endswith("...") for c in answers)
    public_dir = course.ASSIGNMENTS_DIR / "tests" / lab
    for test_file in public_dir.glob("*.py"):
        assert "'hidden': True" not in test_file.read_text(), f"{test_file} holds a hidden test"


def test_committed_student_notebooks_are_up_to_date(builds):
    stale = course.stale_assignments(list(builds.values()))
    assert not stale, f"run `python -m rpbook.course sync` and commit: {stale}"
    committed = sorted(p.stem for p in course.ASSIGNMENTS_DIR.glob("*.ipynb"))
    assert committed == LABS, "book/assignments/ holds a notebook without a master in book/labs/"


def test_otter_run_in_a_kernel_agrees_with_in_process_grading(builds, tmp_path):
    """One submission graded the way an instructor does (a kernel per notebook); prints its time."""
    build = builds["lab1_masks"]
    wrong = dict(WRONG["lab1_masks"])["q1_exact_count_mask"]
    submission = _submission(build, tmp_path, {_function_name(wrong): wrong})
    in_process = course.grade(submission, build.autograder_zip, in_process=True)
    start = time.perf_counter()
    kernel = course.grade(submission, build.autograder_zip)
    print(f"otter run of one lab-1 submission: {time.perf_counter() - start:.1f} s; in process: {in_process.seconds:.2f} s")
    assert kernel.scores == in_process.scores
    assert kernel.scores["q1_exact_count_mask"][0] == 0 and kernel.total == kernel.possible - 3


@pytest.mark.parametrize("chapter", sorted(course.BOOK.glob(course.CHAPTER_GLOB)), ids=lambda p: p.stem[:2])
def test_student_edition_of_a_chapter_drops_solutions_and_their_outputs(chapter):
    nb = nbformat.read(chapter, as_version=4)
    student = course.student_edition(nb)
    original = "\n".join(c.source for c in nb.cells)
    text = "\n".join(c.source for c in student.cells)
    assert "{solution" in original and "{solution" not in text
    assert text.count("{exercise}") == original.count("{exercise}") >= 3, "every exercise stays, every chapter has 3+"
    assert text.count("::::") == 2 * text.count("{exercise}"), "a solution fence was left behind"
    gated = "{solution-start}" in original
    kept_code = [c for c in student.cells if c.cell_type == "code"]
    assert len(kept_code) < len([c for c in nb.cells if c.cell_type == "code"]) or not gated
    # everything before the exercises is untouched, outputs included
    first = next(i for i, c in enumerate(nb.cells) if "{exercise}" in c.source)
    assert [c.get("outputs") for c in student.cells[:first]] == [c.get("outputs") for c in nb.cells[:first]]


def test_student_edition_rejects_an_unclosed_solution_block():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("::::{solution-start} ex\n::::"),
                                         nbformat.v4.new_code_cell("x = 1")])
    with pytest.raises(ValueError, match="solution-end"):
        course.student_edition(nb)
    nb.cells[0].source = "::::{solution-end}\n::::"
    with pytest.raises(ValueError, match="without its"):
        course.student_edition(nb)


def test_cli_rejects_an_unknown_command(capsys):
    with pytest.raises(SystemExit) as exc:
        course.main(["publish"])
    assert exc.value.code == 2


def test_instructor_guide_table_agrees_with_the_labs(builds):
    """The guide repeats each lab's autograded points and time; they must match the masters."""
    guide = (course.BOOK / "instructor_guide.md").read_text()
    rows = re.findall(r"^\| (\d) [^|]+\| \d \| [^|]+\| (\d+) \| (\d+) \| (\d+) min \|$", guide, re.M)
    assert [int(r[0]) for r in rows] == list(range(1, len(LABS) + 1))
    for (number, auto, written, minutes), lab in zip(rows, LABS):
        build = builds[lab]
        assert float(auto) == sum(build.points.values()), lab
        master = nbformat.read(build.master, as_version=4)
        text = "\n".join(c.source for c in master.cells)
        manual = re.findall(r"^points: (\d+)\nmanual: true", text, re.M)
        assert [int(written)] == [int(m) for m in manual], lab
        assert f"About {minutes} minutes." in text, lab
        assert f"Lab {number}:" in text
        # the lab's own header table: one row per question, autograded ones first, in order
        header = [float(p) for p in re.findall(r"^\| \d\.\d \| [^|]+\| (\d+) \|$", master.cells[1].source, re.M)]
        assert header == [*build.points.values(), float(written)], lab


def test_grading_a_folder_refuses_bad_input(tmp_path):
    with pytest.raises(ValueError, match="not an existing .zip"):
        course.grade_many(tmp_path / "missing.zip", [tmp_path], tmp_path / "scores.csv")
    fake_zip = tmp_path / "lab.zip"
    zipfile.ZipFile(fake_zip, "w").close()
    with pytest.raises(ValueError, match="no .ipynb submissions"):
        course.grade_many(fake_zip, [tmp_path], tmp_path / "scores.csv")
    assert course.main(["grade", str(tmp_path / "missing.zip"), str(tmp_path)]) == 2
