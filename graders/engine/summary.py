"""The batch summary: one line per graded submission (score and first error, or "ok"), printed and in summary.csv."""
from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from graders.engine.scorecard import Scorecard

COLUMNS = ("submission", "score", "outcome", "report")
OUTCOME_CHARS = 160


def outcome(card: Scorecard) -> str:
    """'ok', or the first error on one line (cut short: the report has the whole of it)."""
    if not card.errors:
        return "ok"
    first = " ".join(card.errors[0].split())
    return first if len(first) <= OUTCOME_CHARS else first[: OUTCOME_CHARS - 3] + "..."


def rows(cards: Sequence[Scorecard], out: Path) -> list[dict[str, str]]:
    return [{"submission": c.submission, "score": f"{c.score:.1f}", "outcome": outcome(c),
             "report": str(out / c.slug / "report.html")} for c in cards]


def write_summary(cards: Sequence[Scorecard], out: Path) -> Path:
    """OUT/summary.csv with COLUMNS, one row per submission in grading order."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "summary.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows(cards, out))
    return path


def format_table(cards: Sequence[Scorecard], out: Path) -> str:
    """The summary as a plain-text table for the terminal."""
    table = rows(cards, out)
    width = max([len("submission"), *(len(r["submission"]) for r in table)])
    lines = [f"{'submission':<{width}}  {'score':>6}  outcome"]
    lines += [f"{r['submission']:<{width}}  {r['score']:>6}  {r['outcome']}" for r in table]
    return "\n".join(lines)
