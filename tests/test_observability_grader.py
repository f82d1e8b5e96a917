"""The observability grader end to end: a real backend with a real fault injector, the submission in its own
sandboxed process, Locust traffic on 127.0.0.1, detectors ticked on scraped telemetry.

The reference is graded on the quick profile (the figure the lab promises), the broken submissions on the
one-minute smoke profile; the always-paging and never-paging examples are in tests/test_gaming_observability.py."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from graders.engine.labconfig import load_lab
from graders.engine.scorecard import KEYS, Scorecard
from graders.observability.grade import grade
from graders.observability.interface import COMPONENTS
from graders.observability.system import schedule, workload

FIXTURES = Path(__file__).parent / "fixtures" / "observability"


def test_lab_toml_parts_faults_and_schedule() -> None:
    lab = load_lab("observability")
    auto = {n: p.weight for n, p in lab.parts.items() if not p.manual}
    assert sum(auto.values()) == 100
    assert {"telemetry_conformance", "detection_recall", "detection_precision", "root_cause_accuracy",
            "mean_time_to_detect", "instrumentation_overhead"} == set(auto)
    faults = lab.raw["faults"]
    assert {"retriever_latency", "engine_slowdown", "error_burst", "index_degradation", "query_drift",
            "memory_leak", "cache_miss"} == set(faults)
    assert all(f["component"] in COMPONENTS for f in faults.values())
    quick = lab.scenario("quick")
    plan, end = schedule(lab, quick)
    assert plan == schedule(lab, quick)[0]  # seeded: the same draw for the same nonce (the grader's is fresh per run)
    assert sorted(f.name for f in plan) == sorted(faults) and plan[0].start >= quick.warmup_s
    min_gap = math.ceil(quick.gap_s * lab.raw["schedule"]["min_gap_fraction"])
    assert all(b.start - a.end >= min_gap > quick.grace_s for a, b in zip(plan, plan[1:]))
    assert end == quick.warmup_s + len(plan) * (quick.fault_s + quick.gap_s) >= plan[-1].end + quick.grace_s
    normal, drift = workload()
    assert len(drift) >= 8 and not set(drift) & set(normal)


def _card(out: Path, name: str) -> dict:
    card = json.loads((out / name / "scorecard.json").read_text())
    assert set(KEYS) <= set(card)
    assert (out / name / "report.html").exists()
    return card


@pytest.mark.slow
@pytest.mark.timing
def test_reference_scores_high_on_the_quick_profile(tmp_path: Path) -> None:
    [card] = grade("reference", tmp_path, profile="quick")
    saved = _card(tmp_path, "reference")
    assert saved["score"] == card.score >= 95, card.parts
    m = saved["metrics"]
    assert m["detection_recall"] == 1.0 and m["root_cause_accuracy"] >= 6 / 7
    # quiet enough that chance is low, and precise enough that recall, root cause and time to detect count in full
    assert card.extras["chance"]["window_share"] < 0.35 and card.extras["chance"]["credit"] == 1.0
    assert m["telemetry_conformance"] == 1.0, [c for c in card.extras["checks"] if c["fraction"] < 1]
    assert m["instrumentation_overhead_ratio"] < 1.15
    page = (tmp_path / "reference" / "report.html").read_text()
    assert "data:image/png;base64" in page and "retriever_latency" in page


# Paging everything and paging nothing: tests/test_gaming_observability.py grades the examples (smoke profile).


def broken_batch(folder: Path) -> dict[str, Scorecard]:
    """Three broken submissions in one batch on the smoke profile: a side job (tests/_side_jobs.py), as is each
    smoke grade below (a minute's scenario that leaves the CPU idle)."""
    subs = folder / "subs"
    subs.mkdir()
    for name in ("crash_at_import", "broken_handler"):
        (subs / f"{name}.py").write_text((FIXTURES / f"{name}.py").read_text())
    (subs / "not_python.py").write_text("def create_handler(:\n")
    return {c.submission: c for c in grade(str(subs), folder / "out", profile="smoke")}


def smoke_card(folder: Path, fixture: str) -> Scorecard:
    [card] = grade(str(FIXTURES / f"{fixture}.py"), folder, profile="smoke")
    return card


@pytest.mark.slow
def test_broken_submissions_get_zero_with_a_reason(observability_broken: dict[str, Scorecard]) -> None:
    cards = observability_broken
    assert set(cards) == {"crash_at_import", "broken_handler", "not_python"}
    for card in cards.values():
        assert card.score == 0 and card.errors
    assert "this_module_does_not_exist" in " ".join(cards["crash_at_import"].errors)
    assert "KeyError" in " ".join(cards["broken_handler"].errors)
    assert "SyntaxError" in " ".join(cards["not_python"].errors) or "syntax" in " ".join(cards["not_python"].errors).lower()


@pytest.mark.slow
def test_requests_still_running_when_a_phase_ends_are_scored_whole(observability_slow_handler: Scorecard) -> None:
    card = observability_slow_handler
    checks = {c["name"]: c for c in card.extras["checks"]}
    assert checks["traces"]["fraction"] == 1.0, checks["traces"]["detail"]
    assert card.metrics["telemetry_conformance"] == 1.0, [c for c in checks.values() if c["fraction"] < 1]


@pytest.mark.slow
def test_a_raising_and_a_hanging_detector_do_not_stop_grading(observability_bad_detectors: Scorecard) -> None:
    card = observability_bad_detectors
    errors = " ".join(card.errors)
    assert "raises" in errors and "ValueError" in errors
    assert "the detectors stopped" in errors and "did not return within" in errors
    assert card.metrics["telemetry_conformance"] == 1.0, [c for c in card.extras["checks"] if c["fraction"] < 1]
    assert {p.name for p in card.parts} >= {"detection_recall", "detection_precision", "root_cause_accuracy"}
