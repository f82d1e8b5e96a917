"""Gaming the observability lab's detection scores (issue 11, hole 5), beside tests/test_adversarial.py.

Each gaming submission asserts the score it must not get and the reason its scorecard gives:

- `always_alert.ipynb`, the shipped example whose detector pages on every other tick: it pages every fault, but
  no more precisely than chance, so recall, root cause and time to detect are worth nothing (at most 40 points,
  all of them for its instrumentation).
- `never_alert.ipynb`: pages nothing, keeps only its instrumentation points.
- a timer: the always_alert notebook with Task 2.5 replaced by tests/fixtures/gaming/observability/
  timer_detectors.py, which pages a tick after each fault of the schedule anyone can compute from the
  repository (the seed's draw, no nonce), blaming the right component. The grader draws every run's times and
  order afresh, so the guess lands where chance puts it.

Graded once per session on the smoke profile (the one `make demo` grades the examples on), each submission in a
side job of its own: two with fresh draws, the timer on one fixed draw (so the test is reproducible; the pure test
below covers every draw).
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import pytest

from graders.engine.labconfig import load_lab
from graders.engine.scorecard import KEYS, Scorecard
from graders.observability import detection
from graders.observability.grade import detect_score, grade
from graders.observability.interface import Alert
from graders.observability.records import Page
from graders.observability.scenario import ScenarioRun
from graders.observability.system import schedule

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "labs" / "observability" / "examples"
TIMER = Path(__file__).parent / "fixtures" / "gaming" / "observability" / "timer_detectors.py"
DETECTION = ("detection_recall", "detection_precision", "root_cause_accuracy", "mean_time_to_detect")
PROFILE = "smoke"


def guessed_plan(profile: str) -> dict[float, str]:
    """tick -> component: a page a tick after each fault of the schedule drawn without a nonce."""
    lab = load_lab("observability")
    faults, _ = schedule(lab, lab.scenario(profile))
    return {f.start + 1.0: f.component for f in faults}


def timer_notebook(folder: Path) -> Path:
    """always_alert.ipynb with its Task 2.5 answer cell replaced by the timer (PLAN filled in)."""
    nb = json.loads((EXAMPLES / "always_alert.ipynb").read_text())
    source = TIMER.read_text().replace("PLAN: dict[float, str] = {}", f"PLAN: dict[float, str] = {guessed_plan(PROFILE)!r}")
    [cell] = [c for c in nb["cells"] if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "obs_task_2_5_detectors"]
    cell["source"] = source.splitlines(keepends=True)
    path = folder / "timer.ipynb"
    path.write_text(json.dumps(nb))
    return path


def points(card: Scorecard) -> dict[str, float]:
    return {p.name: p.points for p in card.parts}


def detail(card: Scorecard, part: str) -> str:
    return next(p.detail for p in card.parts if p.name == part)


def graded_card(folder: Path, example: str) -> tuple[Scorecard, Path]:
    """One example graded, and the folder its scorecard and report are in: a side job (tests/_side_jobs.py), as
    each grade is a minute's scenario that leaves the CPU mostly idle."""
    (folder / "subs").mkdir()
    notebook = folder / "subs" / f"{example}.ipynb"
    notebook.write_text((EXAMPLES / f"{example}.ipynb").read_text())
    [card] = grade(str(notebook), folder / "out", profile=PROFILE)
    return card, folder / "out"


def timer_card(folder: Path) -> Scorecard:
    [card] = grade(str(timer_notebook(folder)), folder / "timer", profile=PROFILE, schedule_nonce="gaming-test")
    return card


@pytest.fixture(scope="module")
def cards(observability_always: tuple[Scorecard, Path], observability_never: tuple[Scorecard, Path],
          observability_timer: Scorecard) -> dict[str, Any]:
    return {"always_alert": observability_always[0], "never_alert": observability_never[0],
            "timer": observability_timer, "_out": observability_always[1]}


# ---- graded submissions (smoke profile) -----------------------------------------------------------

@pytest.mark.slow
def test_always_paging_scores_at_most_40_because_its_precision_is_at_chance(cards: dict[str, Any]) -> None:
    card = cards["always_alert"]
    got = points(card)
    assert card.score <= 40, card.parts
    # it pages every fault ...
    assert card.metrics["detection_recall"] >= 0.85
    # ... no more precisely than chance, so the faults it paged are worth nothing
    assert card.extras["chance"]["credit"] == 0.0
    assert got["detection_recall"] == got["root_cause_accuracy"] == got["mean_time_to_detect"] == 0.0
    assert got["detection_precision"] <= 0.25 * 15
    assert "no better than chance" in detail(card, "detection_recall")
    assert "false pages" in detail(card, "detection_precision")
    saved = json.loads((cards["_out"] / "always_alert" / "scorecard.json").read_text())
    assert set(KEYS) <= set(saved) and saved["score"] == card.score
    report = (cards["_out"] / "always_alert" / "report.html").read_text()
    assert "counted at <b>0%</b>" in report and "Precision against chance" in report
    assert got["telemetry_conformance"] >= 18  # the reference instrumentation keeps its points


@pytest.mark.slow
def test_never_paging_keeps_only_its_instrumentation_points(cards: dict[str, Any]) -> None:
    card = cards["never_alert"]
    got = points(card)
    assert card.metrics["detection_recall"] == 0.0
    assert all(got[part] == 0 for part in DETECTION)
    assert got["telemetry_conformance"] >= 18
    assert card.score <= 40


@pytest.mark.slow
def test_every_run_draws_its_own_fault_times(cards: dict[str, Any]) -> None:
    always, never = cards["always_alert"], cards["never_alert"]
    nonces = {c.environment["schedule_nonce"] for c in (always, never)}
    assert len(nonces) == 2 and "" not in nonces
    starts = [[f["start"] for f in c.extras["faults"]] for c in (always, never)]
    assert starts[0] != starts[1]
    for card in (always, never):  # each fault's window opens at the first tick collected after its switch
        assert all(f["start"] < f["reach_at"] <= f["start"] + 1 for f in card.extras["faults"])


@pytest.mark.slow
def test_a_timer_guessing_the_schedule_gains_nothing(cards: dict[str, Any]) -> None:
    card = cards["timer"]
    plan = guessed_plan(PROFILE)
    assert card.environment["schedule_nonce"] == "gaming-test"
    assert sorted(p["start"] for p in card.extras["pages"]) == sorted(plan)  # it paged exactly where it guessed
    assert card.score <= 40, card.parts
    assert sum(points(card)[part] for part in DETECTION) <= 10
    assert "false pages" in detail(card, "detection_precision")
    # on the draw it guessed, the same pages would have been a perfect detector
    lab = load_lab("observability")
    guessed, end = schedule(lab, lab.scenario(PROFILE))
    pages = [Page("timer", "scheduled_guess", c, t, t + 1) for t, c in plan.items()]
    perfect = detection.score_detection(guessed, pages, lab.scenario(PROFILE).grace_s, end)
    assert (perfect.recall, perfect.precision, perfect.root_cause_accuracy) == (1.0, 1.0, 1.0)


# ---- the timer over many draws (pure scoring, the grader's own code) ---------------------------------

@pytest.mark.parametrize("profile", ["smoke", "quick"])
def test_a_timer_gains_nothing_on_average_over_drawn_schedules(profile: str) -> None:
    lab = load_lab("observability")
    scenario = lab.scenario(profile)
    plan = guessed_plan(profile)
    totals = []
    for i in range(60):
        faults, end = schedule(lab, scenario, f"draw:{i}")
        ticks = [(float(t), {"timer": [Alert("scheduled_guess", plan[t])] if t in plan else []})
                 for t in range(int(end) + 1)]
        card = Scorecard(lab="observability", submission="timer")
        detect_score(card, lab, scenario, ScenarioRun(faults, end, ticks=ticks))
        totals.append(sum(points(card)[part] for part in DETECTION))
    on_its_guess = Scorecard(lab="observability", submission="timer")
    guessed, end = schedule(lab, scenario)
    detect_score(on_its_guess, lab, scenario, ScenarioRun(guessed, end, ticks=[
        (float(t), {"timer": [Alert("scheduled_guess", plan[t])] if t in plan else []}) for t in range(int(end) + 1)]))
    assert sum(points(on_its_guess).values()) == 70  # every detection point, had the schedule been the seed's own
    assert statistics.mean(totals) <= 3.0, totals
    assert sum(t > 10 for t in totals) <= 0.1 * len(totals), totals
