"""End-to-end grading of real submissions: the reference, the naive and broken examples, hostile fixtures.

One batch shares one reference worker, as a workshop batch would. Quick profile, default dataset.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from graders.engine.labconfig import Limits
from graders.engine.scorecard import Scorecard
from graders.rag.grade import grade

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "labs" / "rag" / "examples"
FIXTURES = ROOT / "tests" / "fixtures" / "rag"
TEST_LIMITS = Limits(worker_start_s=90, index_s=300, call_s=5, memory_mb=6144)
KEYS = {"schema", "lab", "submission", "score", "parts", "metrics", "reference", "environment", "errors",
        "warnings", "duration_s"}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Scorecard], Path]:
    subs = tmp_path_factory.mktemp("submissions")
    shutil.copy(ROOT / "reference_systems" / "rag" / "submission.py", subs / "ref_copy.py")
    for name in ("naive", "broken", "syntax_error"):
        shutil.copy(EXAMPLES / f"{name}.ipynb", subs / f"{name}.ipynb")
    for fixture in FIXTURES.glob("*.py"):
        shutil.copy(fixture, subs / fixture.name)
    (subs / "not_json.ipynb").write_text("this is not a notebook")
    out = tmp_path_factory.mktemp("graded")
    cards = grade(str(subs), out, profile="quick", limits=TEST_LIMITS)
    return {c.submission: c for c in cards}, out


def test_every_submission_gets_a_scorecard_and_a_report(batch: tuple[dict[str, Scorecard], Path]) -> None:
    cards, out = batch
    assert set(cards) == {"ref_copy", "naive", "broken", "syntax_error", "hang_in_search", "wrong_types", "not_json"}
    for name in cards:
        card = json.loads((out / name / "scorecard.json").read_text())
        assert set(card) == KEYS and card["schema"] == 1 and card["lab"] == "rag"
        assert 0 <= card["score"] <= 100
        assert abs(sum(p["points"] for p in card["parts"]) - card["score"]) < 0.11
        assert (out / name / "report.html").read_text().startswith("<!doctype html>")
    ref = json.loads((out / "ref_copy" / "scorecard.json").read_text())
    for metric in ("ndcg@10", "recall@100", "mrr@10", "latency_p50_ms", "latency_p95_ms", "throughput_qps",
                   "index_build_s", "index_bytes"):
        assert metric in ref["metrics"] and metric in ref["reference"]["metrics"]
    assert (out / "ref_copy" / "report.html").read_text().count("<img") == 2, "recall@k and latency plots"


def test_reference_scores_high_and_naive_clearly_lower(batch: tuple[dict[str, Scorecard], Path]) -> None:
    cards, _ = batch
    assert cards["ref_copy"].score >= 95, cards["ref_copy"].parts
    assert 40 <= cards["naive"].score <= cards["ref_copy"].score - 10


def test_broken_submissions_score_near_zero_with_reasons(batch: tuple[dict[str, Scorecard], Path]) -> None:
    cards, _ = batch
    assert cards["broken"].score <= 10 and any("index raised" in e for e in cards["broken"].errors)
    assert cards["syntax_error"].score == 0
    assert any("SyntaxError" in e and "notebook cell" in e for e in cards["syntax_error"].errors)
    assert cards["not_json"].score == 0 and "not a valid notebook" in cards["not_json"].errors[0]
    wrong = cards["wrong_types"]
    assert wrong.score <= 10
    assert any("list of (doc_id, score) pairs" in e for e in wrong.errors), wrong.errors


def test_a_hanging_search_is_cut_off_and_reported(batch: tuple[dict[str, Scorecard], Path]) -> None:
    card = batch[0]["hang_in_search"]
    assert any("did not return within 5 s" in e for e in card.errors), card.errors
    assert card.score < 40  # unit parts pass, nothing measured on retrieval
    assert batch[0]["ref_copy"].score >= 95, "a hostile neighbour must not spoil other submissions' grades"


def test_grading_twice_lands_within_one_point(batch: tuple[dict[str, Scorecard], Path], tmp_path: Path) -> None:
    again = grade(str(EXAMPLES / "naive.ipynb"), tmp_path, profile="quick", limits=TEST_LIMITS)[0]
    assert abs(again.score - batch[0]["naive"].score) <= 1.0
    first = {p.name: p.points for p in batch[0]["naive"].parts}
    assert {p.name: p.points for p in again.parts}.keys() == first.keys()
