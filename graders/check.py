"""`ailab check NOTEBOOK`: the interviewer's pipeline, run on the public dev split, with a compact table."""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from graders.engine.scorecard import Scorecard


def check(notebook: Path, lab: str = "rag", profile: str = "quick") -> Scorecard:
    """Grade `notebook` on the public dev split (quick profile) and print a compact per-part table."""
    if lab != "rag":
        raise SystemExit(f"ailab check knows the rag lab only for now, not {lab!r}")
    from graders.rag.grade import grade

    if not notebook.exists():
        raise SystemExit(f"{notebook} does not exist; pass the notebook you are working on")
    out = Path(tempfile.mkdtemp(prefix="ailab-check-"))
    card = grade(str(notebook), out, profile=profile, split="dev")[0]
    print(f"\n{notebook.name}: {card.score:g} / 100 on the public dev split (the graded score uses hidden queries)")
    for part in card.parts:
        mark = "   " if part.max_points == 0 else "ok " if part.points >= part.max_points else "-- "
        print(f"  {mark}{part.name:<18} {part.points:6.2f} / {part.max_points:<4g} {part.detail[:110]}")
    for error in card.errors:
        print(f"  error: {error[:400]}", file=sys.stderr)
    return card
