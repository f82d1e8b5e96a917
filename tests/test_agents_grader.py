"""The agents grader end to end: one smoke batch (reference, naive, broken, an agent that hard-codes the public
tasks' answers, one that never ends a conversation) graded once for the module, real processes and real HTTP on
127.0.0.1; plus fast tests of the world, the policy model and the lab's configuration."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from graders.engine.labconfig import load_lab
from graders.gradebook import check_mapping
from graders.paths import REPO_ROOT
from reference_systems.agents import world
from reference_systems.agents.tasks import tasks

LAB = REPO_ROOT / "labs" / "agents"
FIXTURES = Path(__file__).parent / "fixtures" / "agents"


def test_lab_toml_and_gradebook_mapping() -> None:
    lab = load_lab("agents")
    assert sum(p.weight for p in lab.parts.values() if not p.manual) == 100
    assert {"smoke", "quick", "full"} <= set(lab.task_profiles)
    assert check_mapping(lab) == []
    assert lab.raw["tasks"]["public_seed"] != lab.raw["tasks"]["hidden_seed"]


def test_tasks_are_seeded_and_checked_on_the_end_state() -> None:
    raw = load_lab("agents").raw
    a = tasks(3, 8, raw["tasks"]["kinds"], raw["policy"])
    b = tasks(3, 8, raw["tasks"]["kinds"], raw["policy"])
    assert [t.message for t in a] == [t.message for t in b]
    assert [t.message for t in a] != [t.message for t in tasks(4, 8, raw["tasks"]["kinds"], raw["policy"])]
    t = next(t for t in a if t.kind == "refund_small")
    empty = {"refunds": [], "discounts": [], "escalations": [], "ticket": "open", "messages": []}
    assert world.check(t, empty)  # nothing done is a failure, with the reasons
    done = {**empty, "refunds": t.expected.refunds, "ticket": "resolved",
            "messages": [" ".join(t.expected.reply_contains)]}
    assert world.check(t, done) == []


def _hardcoded(path: Path) -> None:
    """An agent that replays the public tasks' expected writes by message text and does nothing else."""
    raw = load_lab("agents").raw
    answers = {t.message: {**t.expected.to_json(), "email": t.customer.email}
               for t in tasks(raw["tasks"]["public_seed"], 48, raw["tasks"]["kinds"], raw["policy"])}
    path.write_text(f'''"""Hard-codes the public tasks' answers (a gaming submission)."""
ANSWERS = {json.dumps(answers)!r}
import json
ANSWERS = json.loads(ANSWERS)


class Replay:
    def handle(self, conversation, tools, model):
        a = ANSWERS.get(conversation.message)
        if a is None:
            return {{"status": "failed"}}
        for order, amount in a["refunds"]:
            tools.call("issue_refund", {{"order_id": order, "amount": amount, "reason": "damaged"}})
        for order, product, pct in a["discounts"]:
            tools.call("apply_discount", {{"order_id": order, "product_id": product, "percent": pct}})
        if a["escalated"]:
            tools.call("escalate", {{"reason": "above the refund limit"}})
        tools.call("send_message", {{"text": " ".join(a["reply_contains"]), "resolve": not a["escalated"]}})
        return {{"status": "resolved"}}


def create_agent(config):
    return Replay()
''')


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    from graders.agents.grade import grade

    subs = tmp_path_factory.mktemp("agents-subs")
    shutil.copy(REPO_ROOT / "reference_systems" / "agents" / "submission.py", subs / "reference.py")
    for name in ("naive", "broken"):
        shutil.copy(LAB / "examples" / f"{name}.ipynb", subs / f"{name}.ipynb")
    shutil.copy(FIXTURES / "endless.py", subs / "endless.py")
    _hardcoded(subs / "hardcoded.py")
    out = tmp_path_factory.mktemp("agents-out")
    cards = grade(str(subs), out, profile="smoke")
    return {c.submission: json.loads((out / c.slug / "scorecard.json").read_text()) | {
        "_report": (out / c.slug / "report.html").read_text()} for c in cards}


def parts(card: dict) -> dict[str, dict]:
    return {p["name"]: p for p in card["parts"]}


@pytest.mark.slow
def test_reference_scores_high_with_no_violation(batch: dict[str, dict]) -> None:
    ref = batch["reference"]
    assert ref["score"] >= 95, ref["parts"]
    assert ref["metrics"]["violations"] == 0
    assert parts(ref)["traces"]["points"] == parts(ref)["traces"]["max_points"]


@pytest.mark.slow
def test_naive_is_lower_and_its_violations_are_listed(batch: dict[str, dict]) -> None:
    naive, ref = batch["naive"], batch["reference"]
    assert naive["score"] <= ref["score"] - 30, naive["parts"]
    assert naive["metrics"]["violations"] >= 1
    policy = parts(naive)["policy"]
    assert policy["points"] < policy["max_points"] and "violation" in policy["detail"]
    assert "<li>t7-" in naive["_report"], "the report lists each violation with its conversation"
    assert parts(naive)["traces"]["points"] == 0


@pytest.mark.slow
def test_broken_scores_zero_with_the_reason(batch: dict[str, dict]) -> None:
    broken = batch["broken"]
    assert broken["score"] <= 2
    assert any("KeyError" in e for e in broken["errors"]), broken["errors"]


@pytest.mark.slow
def test_hardcoded_public_answers_do_not_pass_the_graded_tasks(batch: dict[str, dict]) -> None:
    hard = batch["hardcoded"]
    assert hard["metrics"]["pass_k"] == 0
    assert hard["score"] <= 5, hard["parts"]
    assert "pass^" in parts(hard)["task_success"]["detail"]


@pytest.mark.slow
def test_endless_agent_is_cut_off_with_the_reason(batch: dict[str, dict]) -> None:
    endless = batch["endless"]
    assert endless["score"] <= 2
    assert any("cut off" in e and "did not end" in e for e in endless["errors"]), endless["errors"]
    assert endless["metrics"]["cut_off"] >= 1
