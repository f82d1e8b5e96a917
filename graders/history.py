"""The local history of `ailab check` attempts, and the progress shown after each check.

Every check appends one JSON line to `.ailab-history.jsonl` in the notebook's folder:
`{"time", "notebook", "lab", "profile", "score", "parts": {part: [points, max_points]}, "hints":
{part: unlocked}}`, auto-graded parts only. `hints` is the state of the hint ladders
(graders.hints) after that attempt: the latest line of a notebook is where its ladders stand.
Several notebooks may share a folder; lines are told apart by notebook file name and lab.
Nothing leaves the machine; delete the file to start over.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from graders.engine.scorecard import Scorecard
from graders.hints import ladder, unlock

HISTORY_FILE = ".ailab-history.jsonl"
SPARKS = "▁▂▃▄▅▆▇█"
SHOWN_TOTALS = 8


@dataclass
class Attempt:
    time: str
    notebook: str
    lab: str
    profile: str
    score: float
    parts: dict[str, list[float]] = field(default_factory=dict)  # part -> [points, max_points]
    hints: dict[str, int] = field(default_factory=dict)          # part -> hints unlocked so far

    def misses(self) -> list[str]:
        """The parts this attempt left below full points."""
        return [name for name, (points, most) in self.parts.items() if points < most]


def history_path(notebook: Path) -> Path:
    return notebook.resolve().parent / HISTORY_FILE


def load(path: Path, notebook: str, lab: str) -> list[Attempt]:
    """The attempts at one notebook of one lab, oldest first. Lines that do not parse are skipped:
    a hand-edited or half-written line must not break `ailab check`."""
    if not path.exists():
        return []
    attempts = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
            attempt = Attempt(time=str(row["time"]), notebook=str(row["notebook"]), lab=str(row["lab"]),
                              profile=str(row.get("profile", "quick")), score=float(row["score"]),
                              parts={str(k): [float(v[0]), float(v[1])] for k, v in row["parts"].items()},
                              hints={str(k): int(v) for k, v in row.get("hints", {}).items()})
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            continue
        if attempt.notebook == notebook and attempt.lab == lab:
            attempts.append(attempt)
    return attempts


def attempt_of(card: Scorecard, notebook: str, profile: str, previous: list[Attempt],
               when: datetime | None = None) -> Attempt:
    """This check as an attempt, with one more hint unlocked for every part below full points."""
    parts = {p.name: [float(p.points), float(p.max_points)] for p in card.parts if p.max_points > 0}
    attempt = Attempt(time=(when or datetime.now(timezone.utc)).isoformat(timespec="seconds"),
                      notebook=notebook, lab=card.lab, profile=profile, score=float(card.score), parts=parts)
    attempt.hints = unlock(previous[-1].hints if previous else {}, card.lab, attempt.misses())
    return attempt


def append(path: Path, attempt: Attempt) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(asdict(attempt), separators=(",", ":")) + "\n")  # one write: lines never interleave


def record(card: Scorecard, notebook: Path, profile: str = "quick",
           when: datetime | None = None) -> tuple[list[Attempt], Attempt]:
    """Append this check to the notebook's history; (the earlier attempts, this one)."""
    path = history_path(notebook)
    previous = load(path, notebook.name, card.lab)
    current = attempt_of(card, notebook.name, profile, previous, when)
    append(path, current)
    return previous, current


def sparkline(totals: list[float], top: float = 100.0) -> str:
    """One block per total on an absolute 0..top scale, so a flat line means no progress."""
    return "".join(SPARKS[min(len(SPARKS) - 1, max(0, int(t / top * len(SPARKS))))] for t in totals)


def _delta(now: float, before: float | None, digits: int) -> str:
    if before is None:
        return ""
    change = round(now - before, digits)
    return "=" if change == 0 else f"{'↑' if change > 0 else '↓'}{abs(change):.{digits}f}"


def progress_lines(current: Attempt, previous: list[Attempt]) -> list[str]:
    """This attempt vs the previous one and the best before it, per part and in total, then the
    last few totals."""
    if not previous:
        return [f"  progress: first attempt recorded ({current.score:g}); check again to compare"]
    last = previous[-1]
    best_parts: dict[str, float] = {}
    for attempt in previous:
        for name, (points, _) in attempt.parts.items():
            best_parts[name] = max(points, best_parts.get(name, points))
    best_total = max(a.score for a in previous)
    lines = [f"  progress: attempt {len(previous) + 1}",
             f"  {'part':<24} {'now':>6} {'prev':>6}  {'Δ':<7} {'best before':>11}"]
    rows: list[tuple[str, float, float | None, float | None, int]] = [
        (name, points, last.parts[name][0] if name in last.parts else None, best_parts.get(name), 2)
        for name, (points, _) in current.parts.items()]
    rows.append(("total", current.score, last.score, best_total, 1))
    for name, now, before, best, digits in rows:
        shown = [f"{v:6.{digits}f}" if v is not None else f"{'-':>6}" for v in (now, before, best)]
        star = "  new best" if best is not None and round(now - best, digits) > 0 else ""
        lines.append(f"  {name:<24} {shown[0]} {shown[1]}  {_delta(now, before, digits):<7} {shown[2]:>11}{star}")
    totals = [a.score for a in previous + [current]][-SHOWN_TOTALS:]
    lines.append(f"  last totals: {' → '.join(f'{t:g}' for t in totals)}  {sparkline(totals)}")
    return lines


def hint_lines(current: Attempt) -> list[str]:
    """The unlocked hints of every part this attempt left below full points."""
    lines = []
    for name in current.misses():
        hints, unlocked = ladder(current.lab, name), current.hints.get(name, 0)
        if not hints or not unlocked:
            continue
        left = len(hints) - unlocked
        lines.append(f"    {name}{f' ({left} more locked)' if left else ''}:")
        lines += [f"      {i}. {text}" for i, text in enumerate(hints[:unlocked], 1)]
    return ["  hints (one more unlocks each time a check leaves the part below full points):"] + lines if lines else []
