"""The batch summary: one row per graded submission — score, points per part, integrity flags and the
first error (or "ok") — as a pandas table printed at the end of `ailab grade` and in OUT/summary.csv."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from graders.engine.scorecard import Scorecard

OUTCOME_CHARS = 160
SHOWN_OUTCOME_CHARS = 70


def outcome(card: Scorecard) -> str:
    """'ok', or the first error on one line (cut short: the report has the whole of it)."""
    if not card.errors:
        return "ok"
    first = " ".join(card.errors[0].split())
    return first if len(first) <= OUTCOME_CHARS else first[: OUTCOME_CHARS - 3] + "..."


def flags(card: Scorecard) -> str:
    """Integrity signals worth a look, in a few words ('' when there are none)."""
    integrity = card.integrity
    review = float(integrity.get("review_at", 0.8))
    found = []
    if integrity.get("reference_access"):
        found.append("reached for the reference (zeroed)")
    if integrity.get("tampered_cells"):
        found.append(f"{len(integrity['tampered_cells'])} read-only cell(s) changed")
    ref = integrity.get("similarity_to_reference")
    if ref is not None and ref >= review:
        found.append(f"{ref:.0%} like the reference")
    found += [f"{m['similarity']:.0%} like {m['submission']}" for m in integrity.get("most_similar", [])
              if m["similarity"] >= review]
    return "; ".join(found)


def frame(cards: Sequence[Scorecard], out: Path) -> pd.DataFrame:
    """The summary table: submission, score, the auto-graded parts' points, integrity, outcome, report."""
    rows = []
    for card in cards:
        row: dict[str, object] = {"submission": card.submission, "score": f"{card.score:.1f}"}
        row.update({p.name: f"{p.points:g}" for p in card.parts if p.max_points > 0})
        row.update({"integrity": flags(card), "outcome": outcome(card), "report": str(out / card.slug / "report.html")})
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    parts = [c for c in table.columns if c not in ("submission", "score", "integrity", "outcome", "report")]
    return table[["submission", "score", *parts, "integrity", "outcome", "report"]].fillna("")


def write_summary(cards: Sequence[Scorecard], out: Path) -> Path:
    """OUT/summary.csv, one row per submission in grading order."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "summary.csv"
    frame(cards, out).to_csv(path, index=False)
    return path


def format_table(cards: Sequence[Scorecard], out: Path) -> str:
    """The summary for the terminal: everything but the report paths, long outcomes cut short."""
    table = frame(cards, out)
    if table.empty:
        return "(no submissions graded)"
    shown = table.drop(columns=["report"])
    shown["outcome"] = [o if len(o) <= SHOWN_OUTCOME_CHARS else o[: SHOWN_OUTCOME_CHARS - 3] + "..."
                        for o in shown["outcome"]]
    with pd.option_context("display.width", 250, "display.max_columns", None, "display.max_colwidth", None):
        return shown.to_string(index=False)
