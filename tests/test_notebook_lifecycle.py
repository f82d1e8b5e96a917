"""The RAG lab notebook through nbgrader's real lifecycle: generate, submit, autograde, feedback.

The committed notebooks must equal a fresh build of labs/rag/make_notebook.py. Submissions are
graded with their `ailab-exclude` exploration cells removed: those embed the whole dev corpus
(a minute on a cold cache) and nbgrader gives them no points.
"""
from __future__ import annotations

import ast
import html
import importlib.util
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import nbformat
import numpy as np
import pytest

from graders.course import HIDDEN_OUTPUT_NOTE, init_course, run_nbgrader
from graders.paths import LABS_DIR
from graders.rag.interface import REQUIRED_NAMES

LAB = LABS_DIR / "rag"
SOURCE = LAB / "source" / "rag" / "rag.ipynb"
STUDENTS = {"solution": SOURCE, "naive": LAB / "examples" / "naive.ipynb",
            "broken": LAB / "examples" / "broken.ipynb", "syntax": LAB / "examples" / "syntax_error.ipynb"}


def _make_notebook():
    spec = importlib.util.spec_from_file_location("rag_make_notebook", LAB / "make_notebook.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cells(path: Path) -> list:
    return nbformat.read(path, as_version=4).cells


def _meta(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def _hidden_lines() -> list[str]:
    """Distinctive lines of the source's hidden tests, to look for where they must not be."""
    lines = []
    for cell in _cells(SOURCE):
        for block in re.findall(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", cell.source, re.DOTALL):
            lines += [ln.strip() for ln in block.splitlines() if len(ln.strip()) > 30 and not ln.strip().startswith("#")]
    return lines


def test_committed_notebooks_equal_a_fresh_build():
    built = _make_notebook().outputs()
    assert set(built) >= {SOURCE, *STUDENTS.values()}
    for path, text in built.items():
        assert path.exists(), f"{path} missing: run python labs/rag/make_notebook.py"
        assert path.read_text() == text, f"{path} is stale: run python labs/rag/make_notebook.py"


def test_source_notebook_cells():
    cells = _cells(SOURCE)
    answers = [c for c in cells if _meta(c).get("solution") and c.cell_type == "code"]
    tests = [c for c in cells if _meta(c).get("grade") and not _meta(c).get("solution")]
    written = [c for c in cells if _meta(c).get("grade") and _meta(c).get("solution")]
    assert all("### BEGIN SOLUTION" in c.source and "### END SOLUTION" in c.source for c in answers)
    assert all("### BEGIN HIDDEN TESTS" in c.source and c.source.index("assert") < c.source.index("### BEGIN HIDDEN")
               for c in tests), "every test cell has visible asserts, then hidden tests"
    assert sum(_meta(c)["points"] for c in tests) == 100
    assert [c.cell_type for c in written] == ["markdown"] and _meta(written[0])["points"] == 5
    defined = {node.name for c in answers for node in ast.parse(c.source).body
               if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    assert set(REQUIRED_NAMES) <= defined, f"answer cells miss {set(REQUIRED_NAMES) - defined}"
    explore = [c for c in cells if "ailab-exclude" in c.metadata.get("tags", [])]
    assert len(explore) == 2 and all(not _meta(c) for c in explore)
    assert all(re.fullmatch(r"[a-z0-9-]+", c.id) for c in cells) and len({c.id for c in cells}) == len(cells)


def test_examples_are_release_notebooks():
    hidden = _hidden_lines()
    assert hidden, "the source notebook has hidden tests"
    for name, path in STUDENTS.items():
        if name == "solution":
            continue
        text = path.read_text()
        assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text, name
        assert not any(line in text for line in hidden), f"{name} leaks a hidden test"
    syntax = [c for c in _cells(STUDENTS["syntax"]) if _meta(c).get("solution") and c.cell_type == "code"]
    with pytest.raises(SyntaxError):
        for cell in syntax:
            ast.parse(cell.source)


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    root = init_course(tmp_path_factory.mktemp("course") / "course", ["rag"])
    for student, path in STUDENTS.items():
        nb = nbformat.read(path, as_version=4)
        nb.cells = [c for c in nb.cells if "ailab-exclude" not in c.metadata.get("tags", [])]
        target = root / "submitted" / student / "rag" / "rag.ipynb"
        target.parent.mkdir(parents=True)
        nbformat.write(nb, target)
    print("[test] nbgrader autograde rag ...", file=sys.stderr)
    run_nbgrader(root, "autograde", "rag", timeout=900)
    run_nbgrader(root, "generate_feedback", "rag", timeout=300)
    return root


@pytest.mark.slow
def test_release_has_no_solutions_and_names_each_task(course: Path):
    release = course / "release" / "rag" / "rag.ipynb"
    text = release.read_text()
    assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text
    assert not any(line in text for line in _hidden_lines()), "a hidden test reached the release notebook"
    answers = [c for c in _cells(release) if _meta(c).get("solution") and c.cell_type == "code"]
    assert len(answers) == 7
    for cell in answers:
        task = cell.metadata["ailab"]["task"]
        stubs = re.findall(r'raise NotImplementedError\("Task ([0-9./]+): ', cell.source)
        assert stubs and set(stubs) == {task}, f"{_meta(cell)['grade_id']}: {cell.source}"
        with pytest.raises(NotImplementedError, match=f"Task {re.escape(task)}"):
            namespace = {"np": np, "Sequence": Sequence}
            exec(cell.source, namespace)  # noqa: S102 -- defines the stubs; now call the cell's first definition
            name = cell.metadata["ailab"]["name"]
            target = namespace[name]
            target(8) if isinstance(target, type) else target(*([None] * target.__code__.co_argcount))


@pytest.mark.slow
def test_autograde_scores_solution_full_and_examples_lower(course: Path):
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", course_id="ailab") as gb:
        scores = {s: gb.find_submission("rag", s) for s in STUDENTS}
        auto = {s: (sub.code_score, sub.max_code_score) for s, sub in scores.items()}
    assert auto["solution"] == (100.0, 100.0), auto
    assert 20 <= auto["naive"][0] <= 80, auto
    assert auto["broken"][0] < 10 and auto["syntax"][0] < auto["naive"][0], auto


@pytest.mark.slow
def test_feedback_hides_hidden_tests(course: Path):
    hidden = _hidden_lines()
    for student in ("solution", "naive"):
        page = course / "feedback" / student / "rag" / "rag.html"
        text = html.unescape(re.sub(r"<[^>]+>", "", page.read_text()))
        assert "chunk must return a list of str" in text, "visible tests stay in the feedback"
        leaked = [line for line in hidden if line in text]
        assert not leaked, f"feedback for {student} shows hidden tests: {leaked[:3]}"
    naive = html.unescape(re.sub(r"<[^>]+>", "", (course / "feedback" / "naive" / "rag" / "rag.html").read_text()))
    assert HIDDEN_OUTPUT_NOTE.strip() in naive, "a failed hidden test says so without showing it"

