"""`ailab check`'s self-study side: the attempt history beside the notebook, the progress table and
the hint ladders, driven with hand-built scorecards (no grader runs)."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from graders import history
from graders.check import show
from graders.engine.labconfig import load_lab
from graders.engine.scorecard import PartResult, Scorecard
from graders.hints import HINTS, ladder


def _card(chunking: float, dense: float, quality: float, lab: str = "rag") -> Scorecard:
    card = Scorecard(lab, "rag")
    card.add("chunking", chunking, 6, "Task 1.1")
    card.add("dense_index", dense, 10, "Task 2.1, 2.2")
    card.add("retrieval_quality", quality, 36, "Task 5.1")
    card.parts.append(PartResult("written", 0.0, 0.0, "graded by hand"))
    card.total()
    return card


@pytest.mark.parametrize("lab", ["rag", "serving", "observability"])
def test_every_auto_graded_part_of_every_lab_has_a_ladder_of_hints(lab: str) -> None:
    auto = {name for name, part in load_lab(lab).parts.items() if not part.manual}
    assert set(HINTS[lab]) == auto
    assert all(len(ladder(lab, name)) >= 2 for name in auto)
    assert ladder(lab, "written") == () and ladder("nope", "chunking") == ()


def test_history_lives_beside_the_notebook_and_round_trips(tmp_path: Path) -> None:
    nb = tmp_path / "rag.ipynb"
    when = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    previous, current = history.record(_card(1.0, 0.5, 0.5), nb, when=when)
    assert previous == [] and history.history_path(nb) == tmp_path / ".ailab-history.jsonl"
    row = json.loads((tmp_path / ".ailab-history.jsonl").read_text())
    assert row["time"] == "2025-01-02T03:04:05+00:00" and row["lab"] == "rag" and row["notebook"] == "rag.ipynb"
    assert row["score"] == 29.0 and row["parts"]["dense_index"] == [5.0, 10.0] and "written" not in row["parts"]
    assert history.load(history.history_path(nb), "rag.ipynb", "rag") == [current]


def test_hints_unlock_one_per_miss_in_order_and_stop_at_the_end_of_the_ladder(tmp_path: Path) -> None:
    nb = tmp_path / "rag.ipynb"
    _, first = history.record(_card(1.0, 0.5, 0.0), nb)
    assert first.hints == {"dense_index": 1, "retrieval_quality": 1}
    _, second = history.record(_card(1.0, 1.0, 0.5), nb)
    assert second.hints == {"dense_index": 1, "retrieval_quality": 2}  # a fixed part keeps what it had
    shown = "\n".join(history.hint_lines(second))
    assert ladder("rag", "retrieval_quality")[1] in shown and ladder("rag", "retrieval_quality")[2] not in shown
    assert "dense_index" not in shown and "(2 more locked)" in shown  # full points: no hints shown for it
    for _ in range(10):
        _, last = history.record(_card(1.0, 1.0, 0.5), nb)
    assert last.hints["retrieval_quality"] == len(ladder("rag", "retrieval_quality"))
    assert "more locked" not in "\n".join(history.hint_lines(last))


def test_progress_compares_with_the_previous_attempt_and_the_best_so_far(tmp_path: Path) -> None:
    nb = tmp_path / "rag.ipynb"
    _, first = history.record(_card(1.0, 1.0, 0.25), nb)
    assert history.progress_lines(first, []) == [
        "  progress: first attempt recorded (25); check again to compare"]
    history.record(_card(0.5, 0.5, 0.5), nb)
    previous, current = history.record(_card(1.0, 0.5, 0.75), nb)
    lines = history.progress_lines(current, previous)
    rows = {line.split()[0]: line for line in lines[2:-1]}
    assert lines[0] == "  progress: attempt 3"
    assert rows["chunking"].split() == ["chunking", "6.00", "3.00", "↑3.00", "6.00"]
    assert rows["dense_index"].split() == ["dense_index", "5.00", "5.00", "=", "10.00"]
    assert rows["retrieval_quality"].split() == ["retrieval_quality", "27.00", "18.00", "↑9.00", "18.00",
                                                 "new", "best"]
    assert rows["total"].split() == ["total", "38.0", "26.0", "↑12.0", "26.0", "new", "best"]
    assert lines[-1] == "  last totals: 25 → 26 → 38  ▃▃▄"


def test_sparkline_uses_an_absolute_scale() -> None:
    assert history.sparkline([0, 50, 100]) == "▁▅█"
    assert history.sparkline([60, 60]) == "▅▅"


def test_other_notebooks_labs_and_broken_lines_do_not_mix_in(tmp_path: Path) -> None:
    history.record(_card(1.0, 1.0, 1.0), tmp_path / "a.ipynb")
    history.record(_card(0.0, 0.0, 0.0, lab="serving"), tmp_path / "b.ipynb")
    with open(tmp_path / history.HISTORY_FILE, "a") as f:
        f.write('{"half a line\n{"time": 1}\n')
    previous, current = history.record(_card(0.5, 0.5, 0.5), tmp_path / "b.ipynb")
    assert previous == [] and current.hints == {"chunking": 1, "dense_index": 1, "retrieval_quality": 1}
    assert [a.score for a in history.load(tmp_path / history.HISTORY_FILE, "a.ipynb", "rag")] == [52.0]


def test_check_prints_the_table_then_progress_and_hints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nb = tmp_path / "rag.ipynb"
    show(_card(1.0, 0.5, 0.5), nb, "on the public dev split", tmp_path / "report.html")
    first = capsys.readouterr().out
    assert "rag.ipynb: 29 / 100 on the public dev split" in first and "first attempt recorded" in first
    assert ladder("rag", "dense_index")[0] in first and ladder("rag", "chunking")[0] not in first
    show(_card(1.0, 1.0, 0.5), nb, "on the public dev split", tmp_path / "report.html")
    second = capsys.readouterr().out
    table, progress = second.split("  progress: attempt 2")
    assert "ok dense_index" in table and "-- retrieval_quality" in table and "full report:" in table
    assert "↑5.00" in progress and ladder("rag", "retrieval_quality")[1] in progress
    assert ladder("rag", "dense_index")[0] not in progress
    assert f"history: {tmp_path / history.HISTORY_FILE}" in progress
    assert len((tmp_path / history.HISTORY_FILE).read_text().splitlines()) == 2
