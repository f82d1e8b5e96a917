"""ailab grades in nbgrader's gradebook, so formgrader shows them and `nbgrader generate_feedback` prints them.

`ailab grade LAB --course DIR` grades every notebook in `DIR/submitted/<student>/<assignment>/` and
then writes, for each student:
- the auto score of each nbgrader test cell, from the ailab parts mapped to it in lab.toml
  (`[parts.X] cells = [...]`): a part's points spread over its cells in proportion to their nbgrader
  points, so formgrader's total is the ailab score (`check_mapping` proves the mapping adds up);
- an auto comment on the answer cell above those test cells, with the parts' details (the measured
  figures vs the reference): the feedback shows them under the candidate's code.

Manual scores and comments (the written answer, any override an interviewer made in formgrader) are
never written, only read back for the report: re-grading cannot overwrite a person's judgement.
nbgrader's own autograde may run before; ailab's scores replace its auto scores of the test cells.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graders.course import COURSE_ID, assignment_of
from graders.engine.labconfig import LabConfig
from graders.engine.notebook import read_notebook
from graders.engine.scorecard import Scorecard

COMMENT_HEAD = "ailab grader"


@dataclass(frozen=True)
class NotebookCells:
    """The nbgrader cells of a lab's source notebook that grades touch."""

    name: str                     # notebook name without .ipynb, as nbgrader keys it
    tests: dict[str, float]       # test cell grade_id -> points
    answer_of: dict[str, str]     # test cell grade_id -> the answer (solution) cell above it
    written: dict[str, float]     # manually graded answer cell grade_id -> points


def notebook_cells(lab: LabConfig) -> NotebookCells:
    nb, error = read_notebook(lab.notebook)
    if nb is None:
        raise ValueError(f"the {lab.name} lab's source notebook cannot be read: {error}")
    tests: dict[str, float] = {}
    answer_of: dict[str, str] = {}
    written: dict[str, float] = {}
    last_answer = ""
    for cell in nb["cells"]:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        gid = meta.get("grade_id", "")
        if meta.get("solution") and meta.get("grade"):
            written[gid] = float(meta.get("points", 0))
        elif meta.get("solution") and cell.get("cell_type") == "code":
            last_answer = gid
        elif meta.get("grade"):
            tests[gid] = float(meta.get("points", 0))
            answer_of[gid] = last_answer
    return NotebookCells(name=lab.notebook.stem, tests=tests, answer_of=answer_of, written=written)


def part_cells(lab: LabConfig) -> dict[str, list[str]]:
    """Auto-graded part -> the nbgrader test cells its points go to (lab.toml `cells`)."""
    return {name: list(lab.raw["parts"][name].get("cells", [])) for name, part in lab.parts.items() if not part.manual}


def _shares(lab: LabConfig, cells: NotebookCells) -> dict[str, dict[str, float]]:
    """part -> {cell: share of the part's weight}, in proportion to the cells' nbgrader points."""
    shares = {}
    for part, ids in part_cells(lab).items():
        total = sum(cells.tests.get(c, 0.0) for c in ids)
        shares[part] = {c: cells.tests.get(c, 0.0) / total for c in ids} if total else {}
    return shares


def _spread(values: dict[str, float], lab: LabConfig, cells: NotebookCells) -> dict[str, float]:
    """Each test cell's sum of the parts' `values` (weights or points) times its share of each part."""
    total = {c: 0.0 for c in cells.tests}
    for part, share in _shares(lab, cells).items():
        for c, s in share.items():
            if c in total:  # a cell the notebook lacks has no share; check_mapping names it
                total[c] += values.get(part, 0.0) * s
    return total


def check_mapping(lab: LabConfig) -> list[str]:
    """What is wrong with the lab's part -> cell mapping (empty when formgrader's total equals the ailab score)."""
    cells = notebook_cells(lab)
    problems = []
    for part, ids in part_cells(lab).items():
        if not ids:
            problems.append(f"part {part!r} names no nbgrader cells (lab.toml [parts.{part}] cells = [...])")
        for c in ids:
            if c not in cells.tests:
                problems.append(f"part {part!r} names {c!r}, which is not a test cell of {lab.notebook.name}")
    mapped = _spread({part: lab.parts[part].weight for part in part_cells(lab)}, lab, cells)
    for c, points in cells.tests.items():
        if abs(mapped[c] - points) > 1e-6:
            problems.append(f"test cell {c!r} is worth {points:g} points in the notebook but receives {mapped[c]:g} "
                            "from the parts mapped to it")
    return problems


def cell_scores(card: Scorecard, lab: LabConfig, cells: NotebookCells) -> dict[str, float]:
    """The auto score of each test cell, from the card's part points."""
    points = {p.name: p.points for p in card.parts}
    scores = _spread({part: points.get(part, 0.0) for part in part_cells(lab)}, lab, cells)
    return {c: round(v, 2) for c, v in scores.items()}


def cell_comments(card: Scorecard, lab: LabConfig, cells: NotebookCells) -> dict[str, str]:
    """answer cell -> the comment naming each part graded under it, its points and its detail."""
    by_name = {p.name: p for p in card.parts}
    lines: dict[str, list[str]] = {}
    for part, ids in part_cells(lab).items():
        result = by_name.get(part)
        if result is None:
            continue
        for answer in dict.fromkeys(cells.answer_of[c] for c in ids if c in cells.answer_of):
            lines.setdefault(answer, []).append(f"- {part}: {result.points:g} / {result.max_points:g} — {result.detail}")
    head = f"{COMMENT_HEAD}: {card.score:g} / 100 in the {lab.name} lab's {card.environment.get('profile', '')} profile"
    return {answer: "\n".join([head, *body]) for answer, body in lines.items() if answer}


def _gradebook(course: Path) -> Any:
    from nbgrader.api import Gradebook

    db = course / "gradebook.db"
    if not db.exists():
        raise FileNotFoundError(f"{course} has no gradebook.db; run `ailab course init {course}` first")
    return Gradebook(f"sqlite:///{db}", course_id=COURSE_ID)


def push(course: Path, lab: LabConfig, student: str, card: Scorecard) -> dict[str, float]:
    """Write one student's ailab grade into the course's gradebook; returns the cell scores written."""
    from nbgrader.api import MissingEntry

    assignment, _ = assignment_of(lab.name)
    cells = notebook_cells(lab)
    scores, comments = cell_scores(card, lab, cells), cell_comments(card, lab, cells)
    with _gradebook(course) as gb:
        gb.update_or_create_student(student)
        try:
            gb.find_submission(assignment, student)
        except MissingEntry:  # graded before (or without) nbgrader's autograde: make the record
            with warnings.catch_warnings():  # nbgrader 0.9's add_submission trips SQLAlchemy 2's autoflush warning
                warnings.filterwarnings("ignore", message=r"Object of type <Submitted\w+> not in session")
                gb.add_submission(assignment, student)
        for cell, score in scores.items():
            grade = gb.find_grade(cell, cells.name, assignment, student)
            grade.auto_score = score
        for cell, text in comments.items():
            gb.find_comment(cell, cells.name, assignment, student).auto_comment = text
        gb.db.commit()
    return scores


def manual_grades(course: Path, lab: LabConfig, student: str) -> dict[str, dict[str, Any]]:
    """The written cells' manual scores and comments from formgrader ({} where none was given yet)."""
    from nbgrader.api import MissingEntry

    assignment, _ = assignment_of(lab.name)
    cells = notebook_cells(lab)
    found: dict[str, dict[str, Any]] = {}
    with _gradebook(course) as gb:
        for cell, points in cells.written.items():
            try:
                grade = gb.find_grade(cell, cells.name, assignment, student)
                comment = gb.find_comment(cell, cells.name, assignment, student)
            except MissingEntry:
                continue
            found[cell] = {"score": grade.manual_score, "max_points": points, "comment": comment.manual_comment}
    return found


def course_submissions(course: Path, lab: LabConfig) -> list[tuple[str, Path]]:
    """(student id, notebook) for every submission of the lab's assignment in `course/submitted/`."""
    assignment, _ = assignment_of(lab.name)
    root = course / "submitted"
    found = sorted((p.parent.parent.name, p) for p in root.glob(f"*/{assignment}/{lab.notebook.name}"))
    if not found:
        raise SystemExit(f"no submissions of {assignment!r} in {root} (expected {root}/<student>/{assignment}/"
                         f"{lab.notebook.name}; `nbgrader collect` or the exchange puts them there)")
    return found
