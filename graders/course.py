"""nbgrader course folders built from `labs/`: `ailab course init DIR`, and release notebooks for `ailab start`.

Everything goes through nbgrader's own commands (`generate_assignment`, later `autograde`,
`generate_feedback`, formgrader), run as subprocesses with a course config this module writes.
The config adds two things nbgrader lacks:
- `TaskStubs`: the release notebook's stubs name their task
  (`raise NotImplementedError("Task 1.1: implement chunk")`) instead of a bare NotImplementedError;
- feedback that never shows hidden tests: `ClearHiddenTests` removes their source and
  `ClearHiddenTestOutputs` replaces the outputs (tracebacks print the failing hidden line).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

from nbgrader.preprocessors import ClearSolutions, NbGraderPreprocessor

from graders.engine.nbbuild import HIDDEN
from graders.paths import LABS_DIR, REPO_ROOT, lab_dir

COURSE_ID = "ailab"
HIDDEN_OUTPUT_NOTE = "Some tests in this cell failed. Hidden tests are not shown; re-read the task and its hints.\n"

CONFIG = '''\
"""nbgrader configuration written by `ailab course init`; run nbgrader commands from this folder."""
import os
import sys

REPO = {repo!r}
if REPO not in sys.path:
    sys.path.insert(0, REPO)
# Kernels started by autograde inherit this: notebooks import labkit from the repository.
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH", "")) if p)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from graders.course import feedback_preprocessors, generate_preprocessors  # noqa: E402

c = get_config()  # noqa: F821
c.CourseDirectory.course_id = {course_id!r}
c.GenerateAssignment.preprocessors = generate_preprocessors()
c.GenerateFeedback.preprocessors = feedback_preprocessors()
c.Execute.timeout = {timeout}  # seconds per cell: a first run embeds the dev corpus
'''


def _task_stub(cell: Any) -> str | None:
    task = cell.metadata.get("ailab", {})
    if "task" not in task or "name" not in task:
        return None
    return f'# YOUR CODE HERE\nraise NotImplementedError("Task {task["task"]}: implement {task["name"]}")'


class TaskStubs(ClearSolutions):
    """ClearSolutions whose code stub names the cell's task (from the cell's `ailab` metadata)."""

    def preprocess_cell(self, cell: Any, resources: Any, cell_index: int) -> Any:
        stub = _task_stub(cell) if cell.cell_type == "code" else None
        if stub is None:
            return super().preprocess_cell(cell, resources, cell_index)
        saved: dict[str, str] = dict(self.code_stub)  # type: ignore[has-type]
        self.code_stub = {**saved, resources["language"]: stub}
        try:
            return super().preprocess_cell(cell, resources, cell_index)
        finally:
            self.code_stub = saved


class ClearHiddenTestOutputs(NbGraderPreprocessor):
    """Replaces the outputs of every cell holding hidden tests: a traceback would print the hidden line."""

    def preprocess_cell(self, cell: Any, resources: Any, cell_index: int) -> Any:
        if cell.cell_type == "code" and "BEGIN HIDDEN TESTS" in cell.source:
            failed = any(out.get("output_type") == "error" for out in cell.get("outputs", []))
            cell.outputs = [{"output_type": "stream", "name": "stderr", "text": HIDDEN_OUTPUT_NOTE}] if failed else []
        return cell, resources


def generate_preprocessors() -> list[type]:
    from nbgrader.converters.generate_assignment import GenerateAssignment

    return [TaskStubs if p is ClearSolutions else p for p in GenerateAssignment.preprocessors.default()]


def feedback_preprocessors() -> list[type]:
    from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
    from nbgrader.preprocessors import ClearHiddenTests, GetGrades

    return [GetGrades, ClearHiddenTestOutputs, ClearHiddenTests, CSSHTMLHeaderPreprocessor]


def write_config(course: Path, timeout: int = 900) -> Path:
    path = course / "nbgrader_config.py"
    path.write_text(CONFIG.format(repo=str(REPO_ROOT), course_id=COURSE_ID, timeout=timeout))
    return path


def nbgrader_env() -> dict[str, str]:
    env = dict(os.environ)
    # nbgrader shells out to `alembic` and `jupyter`: they live beside this interpreter.
    env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env.get("PATH", "")))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def run_nbgrader(course: Path, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    """`nbgrader ARGS` in `course`; raises RuntimeError with nbgrader's own log when it fails."""
    cmd = [sys.executable, "-m", "nbgrader", *args, f"--CourseDirectory.root={course}"]
    proc = subprocess.run(cmd, cwd=course, env=nbgrader_env(), capture_output=True, text=True,
                          timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"`nbgrader {' '.join(args)}` failed in {course} (exit {proc.returncode}):\n"
                           f"{proc.stdout[-3000:]}{proc.stderr[-6000:]}")
    return proc


def assignment_of(lab: str) -> tuple[str, Path]:
    """(nbgrader assignment id, its source folder) of a lab, from lab.toml."""
    folder = lab_dir(lab)
    meta = tomllib.loads((folder / "lab.toml").read_text())["lab"]
    return meta.get("assignment", lab), (folder / notebook_of(lab, meta)).parent


def notebook_of(lab: str, meta: dict[str, Any]) -> str:
    """The lab's source notebook relative to its folder: lab.toml's `notebook`, else source/LAB/LAB.ipynb."""
    return str(meta.get("notebook", f"source/{lab}/{lab}.ipynb"))


def _labs() -> list[str]:
    return sorted(p.name for p in LABS_DIR.iterdir() if (p / "lab.toml").exists() and (p / "source").is_dir())


def init_course(dest: Path, labs: list[str] | None = None, hidden: Path | None = None) -> Path:
    """An nbgrader course in `dest`: config, `source/<assignment>/` per lab, and each assignment generated.
    With `hidden` (an interviewer's overlay folder), its nbgrader/<grade_id>.py files replace the hidden
    tests of those cells in the course's source notebooks (the shipped ones stay in labs/)."""
    from graders.engine.hidden import open_overlay
    from graders.engine.labconfig import load_lab

    dest = Path(dest).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    write_config(dest)
    for lab in labs or _labs():
        assignment, source = assignment_of(lab)
        target = dest / "source" / assignment
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(source, target, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
        overlay = open_overlay(hidden, lab) if hidden is not None and (Path(hidden) / lab).is_dir() else None
        if overlay is not None and (tests := overlay.nbgrader_tests()):
            replace_hidden_tests(target / load_lab(lab).notebook.name, tests)
            print(f"[course] {lab}: the hidden tests of {', '.join(sorted(tests))} are yours (--hidden)",
                  file=sys.stderr, flush=True)
        print(f"[course] nbgrader generate_assignment {assignment} ...", file=sys.stderr, flush=True)
        run_nbgrader(dest, "generate_assignment", assignment, "--force")
    return dest


def replace_hidden_tests(notebook: Path, tests: dict[str, str]) -> None:
    """Put `tests[grade_id]` between the BEGIN/END HIDDEN TESTS lines of each named test cell
    (appending such a block where a cell has none)."""
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    cells = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in nb.cells}
    for gid, code in tests.items():
        cell = cells.get(gid)
        meta = cell.metadata.get("nbgrader", {}) if cell is not None else {}
        if cell is None or not meta.get("grade") or meta.get("solution"):
            known = sorted(g for g, c in cells.items() if g and c.metadata["nbgrader"].get("grade")
                           and not c.metadata["nbgrader"].get("solution"))
            raise SystemExit(f"--hidden: {gid}.py names no test cell of {notebook.name}; test cells: {known}")
        block = f"### BEGIN HIDDEN TESTS\n{code.rstrip()}\n### END HIDDEN TESTS\n"
        found = HIDDEN.search(cell.source)
        if found:
            cell.source = cell.source[:found.start()] + block + cell.source[found.end():]
        else:
            cell.source = f"{cell.source.rstrip()}\n{block}"
        cell.source = cell.source.rstrip("\n")
    nbformat.write(nb, notebook)


def generate_release(lab: str, work: Path) -> Path:
    """Run nbgrader's generate_assignment for one lab in a throwaway course `work`; returns the release folder."""
    init_course(work, [lab])
    return work / "release" / assignment_of(lab)[0]
