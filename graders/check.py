"""`ailab check NOTEBOOK`: the interviewer's pipeline on public data, with a compact per-part table.

The lab is recognised from the notebook's nbgrader cell ids (each lab's cells carry its own),
so a candidate types only the notebook's path. Every check is also recorded in
`.ailab-history.jsonl` beside the notebook (graders.history): after the table come this attempt vs
the previous one and the best so far, the last few totals, and the hints (graders.hints) unlocked
for the parts still below full points, one more per part each time a check leaves it there.
"""
from __future__ import annotations

import importlib
import sys
import tempfile
from pathlib import Path

from graders import history
from graders.engine.notebook import read_notebook
from graders.engine.scorecard import Scorecard
from graders.paths import LABS_DIR


def _grade_ids(path: Path) -> set[str]:
    nb, _ = read_notebook(path)
    if nb is None:
        return set()
    return {str(c.get("metadata", {}).get("nbgrader", {}).get("grade_id", "")) for c in nb["cells"]
            if isinstance(c, dict)} - {""}


def detect_lab(notebook: Path) -> str:
    """The lab whose source notebook shares the most nbgrader cell ids with `notebook` (rag if none do)."""
    overlap = {}
    for source in LABS_DIR.glob("*/source/*/*.ipynb"):
        overlap[source.parent.parent.parent.name] = len(_grade_ids(source) & _grade_ids(notebook))
    best = max(overlap, key=lambda lab: overlap[lab], default="rag")
    return best if overlap.get(best) else "rag"


def check(notebook: Path, lab: str | None = None, profile: str = "quick") -> Scorecard:
    """Grade `notebook` with its lab's quick profile on public data and print a compact table."""
    if not notebook.exists():
        raise SystemExit(f"{notebook} does not exist; pass the notebook you are working on")
    lab = lab or detect_lab(notebook)
    grade = importlib.import_module(f"graders.{lab}.grade").grade
    out = Path(tempfile.mkdtemp(prefix="ailab-check-"))
    if lab == "rag":
        card = grade(str(notebook), out, profile=profile, split="dev")[0]
        where = "on the public dev split (the graded score uses hidden queries)"
    else:
        card = grade(str(notebook), out, profile=profile)[0]
        where = f"in the {lab} lab's {profile} profile"
    show(card, notebook, where, out / card.slug / "report.html", profile)
    return card


def show(card: Scorecard, notebook: Path, where: str, report: Path, profile: str = "quick") -> None:
    """Print the per-part table of a graded `card`, record it in the notebook's history, then print
    the progress since earlier checks and the unlocked hints."""
    print(f"\n{notebook.name}: {card.score:g} / 100 {where}")
    for part in card.parts:
        mark = "   " if part.max_points == 0 else "ok " if part.points >= part.max_points else "-- "
        print(f"  {mark}{part.name:<18} {part.points:6.2f} / {part.max_points:<4g} {part.detail[:110]}")
    for error in card.errors:
        print(f"  error: {error[:400]}", file=sys.stderr)
    print(f"  full report: {report}")
    try:
        previous, current = history.record(card, notebook, profile)
    except OSError as exc:  # a read-only folder costs the history, not the check
        print(f"  (history not kept: {exc})", file=sys.stderr)
        return
    for line in history.progress_lines(current, previous) + history.hint_lines(current):
        print(line)
    print(f"  history: {history.history_path(notebook)}")
