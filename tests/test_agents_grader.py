"""The agents grader end to end: one smoke batch graded once per session (a side job), real processes and real
HTTP on 127.0.0.1 — the reference, naive and broken examples, and the lab's adversarial cases (issue #13): an agent
that hard-codes the public tasks' answers, one that never ends a conversation, one that writes the expected end state
straight into the desk's database, one that imports the reference's agent and one that patches the grader's
audit (the last two from tests/fixtures/gaming/isolation, never vouched for), one of rules that never asks the
model, and one that replies with every possible answer; plus fast tests of the world, the
policy model and the lab's configuration, and the database writer run in the desk's own process (what an agent
running as the grader's user could reach)."""
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
ISOLATION = Path(__file__).parent / "fixtures" / "gaming" / "isolation"


def test_lab_toml_and_gradebook_mapping() -> None:
    lab = load_lab("agents")
    assert sum(p.weight for p in lab.parts.values() if not p.manual) == 100
    assert {"smoke", "quick", "full"} <= set(lab.task_profiles)
    assert check_mapping(lab) == []
    assert lab.raw["tasks"]["public_seed"] != lab.raw["tasks"]["hidden_seed"]


def test_committed_notebooks_equal_a_fresh_build_from_the_reference() -> None:
    """The notebook's solutions are cut from reference_systems/agents/agent.py: a change there needs a rebuild."""
    from graders.engine.nbbuild import Builder

    builder = Builder("agents", LAB)
    for path, text in builder.outputs().items():
        assert path.exists() and path.read_text() == text, f"{path} is stale: run python labs/agents/make_notebook.py"
    answers = [c["id"] for c in builder.notebook_cells.CELLS if c["kind"] == "answer"]
    assert answers and all("### BEGIN SOLUTION" in builder.notebook_cells.CODE[a] for a in answers)


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
    status = next(t for t in a if t.kind == "order_status")
    right = f"Your order is {status.expected.reply_contains[0]}."
    told = {**empty, "ticket": "resolved", "messages": [right]}
    assert world.check(status, told) == []
    every = "Your order is processing, shipped, out for delivery or delivered."
    assert world.check(status, {**told, "messages": [every]}) == [
        f"the replies also say {', '.join(status.expected.reply_contradicts)}: one answer, not a list of guesses"]
    # a wrong answer as part of a longer number is not a second answer ("5%" in "15%", "4.99" in "14.99")
    discount = next(t for t in a if t.kind == "discount")
    pct = discount.expected.reply_contains[0]
    assert "5%" in discount.expected.reply_contradicts or pct == "5%"
    assert world.check(discount, {**empty, "discounts": discount.expected.discounts, "ticket": "resolved",
                                  "messages": [f"I have applied a {pct} discount."]}) == []


def test_money_moves_only_on_the_models_proposal() -> None:
    from graders.agents.runner import model_rules

    log = [{"tool": "get_order"}, {"tool": "issue_refund"}, {"tool": "send_message"}]
    assert model_rules(3, {"get_order", "issue_refund", "send_message"}, log) == []
    assert model_rules(2, {"get_order"}, log + [{"tool": "escalate"}]) == [
        "called issue_refund though the model never proposed it"]
    assert model_rules(0, set(), log)[0].startswith("answered without consulting the model")


def _answers(*seeds: str) -> dict[str, dict]:
    """message -> expected end state of the first 48 tasks of each lab.toml [tasks] seed named."""
    raw = load_lab("agents").raw
    return {t.message: {**t.expected.to_json(), "email": t.customer.email}
            for seed in seeds for t in tasks(raw["tasks"][seed], 48, raw["tasks"]["kinds"], raw["policy"])}


def _direct_db(path: Path) -> None:
    """tests/fixtures/agents/direct_db.py knowing every answer, the graded (hidden-seed) tasks' included."""
    source = (FIXTURES / "direct_db.py").read_text()
    filled = f"ANSWERS: dict = json.loads({json.dumps(_answers('public_seed', 'hidden_seed'))!r})"
    assert "ANSWERS: dict = {}" in source
    path.write_text(source.replace("ANSWERS: dict = {}", filled, 1))


def _with_cell(example: Path, fixture: Path, out: Path) -> None:
    """The lab's example notebook with the fixture pasted as one more code cell at the end (its 'solution')."""
    nb = json.loads(example.read_text())
    nb["cells"].append({"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                        "source": fixture.read_text()})
    out.write_text(json.dumps(nb))


def _hardcoded(path: Path) -> None:
    """An agent that replays the public tasks' expected writes by message text and does nothing else."""
    answers = _answers("public_seed")
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


def graded_batch(folder: Path) -> dict[str, dict]:
    """The batch graded once, as a side job (tests/conftest.py WAVES, `agents_batch`): its conversations mostly wait
    on the scripted model's latency and the faults' delays, and every figure is a ratio to the reference, which runs
    each repetition right after the candidate, so both meet the same machine."""
    from graders.agents.grade import grade

    subs = folder / "agents-subs"
    subs.mkdir()
    shutil.copy(REPO_ROOT / "reference_systems" / "agents" / "submission.py", subs / "reference.py")
    for name in ("naive", "broken"):
        shutil.copy(LAB / "examples" / f"{name}.ipynb", subs / f"{name}.ipynb")
    for name in ("endless", "rules_only", "spray"):
        shutil.copy(FIXTURES / f"{name}.py", subs / f"{name}.py")
    _hardcoded(subs / "hardcoded.py")
    _direct_db(subs / "direct_db.py")
    for name in ("agents_import_star", "agents_forged_audit"):
        _with_cell(LAB / "examples" / "naive.ipynb", ISOLATION / f"{name}.py", subs / f"{name}.ipynb")
    out = folder / "agents-out"
    cards = grade(str(subs), out, profile="smoke")
    return {c.submission: json.loads((out / c.slug / "scorecard.json").read_text()) | {
        "_report": (out / c.slug / "report.html").read_text()} for c in cards}


def parts(card: dict) -> dict[str, dict]:
    return {p["name"]: p for p in card["parts"]}


@pytest.mark.slow
def test_reference_scores_high_with_no_violation(agents_batch: dict[str, dict]) -> None:
    ref = agents_batch["reference"]
    lost = [(p["name"], p["points"], p["detail"]) for p in ref["parts"] if p["points"] < p["max_points"]]
    assert ref["score"] >= 95, lost
    assert ref["metrics"]["violations"] == 0
    assert parts(ref)["traces"]["points"] == parts(ref)["traces"]["max_points"]


@pytest.mark.slow
def test_naive_is_lower_and_its_violations_are_listed(agents_batch: dict[str, dict]) -> None:
    naive, ref = agents_batch["naive"], agents_batch["reference"]
    assert naive["score"] <= ref["score"] - 30, naive["parts"]
    assert naive["metrics"]["violations"] >= 1
    policy = parts(naive)["policy"]
    assert policy["points"] < policy["max_points"] and "violation" in policy["detail"]
    assert "<li>t7-" in naive["_report"], "the report lists each violation with its conversation"
    assert parts(naive)["traces"]["points"] == 0


@pytest.mark.slow
def test_broken_scores_zero_with_the_reason(agents_batch: dict[str, dict]) -> None:
    broken = agents_batch["broken"]
    assert broken["score"] <= 2
    assert any("KeyError" in e for e in broken["errors"]), broken["errors"]


@pytest.mark.slow
def test_hardcoded_public_answers_do_not_pass_the_graded_tasks(agents_batch: dict[str, dict]) -> None:
    hard = agents_batch["hardcoded"]
    assert hard["metrics"]["pass_k"] == 0
    assert hard["score"] <= 5, hard["parts"]
    assert "pass^" in parts(hard)["task_success"]["detail"]


@pytest.mark.slow
def test_rules_without_the_model_and_replies_with_every_answer_earn_nothing(agents_batch: dict[str, dict]) -> None:
    """Graded on smoke before the model rules and the one-answer check: 97.0 (at no token cost) and 38.1."""
    rules, spray = agents_batch["rules_only"], agents_batch["spray"]
    assert rules["score"] <= 2 and rules["metrics"]["pass_k"] == 0, rules["parts"]
    assert any("answered without consulting the model" in e for e in rules["errors"]), rules["errors"]
    assert spray["score"] <= 2 and spray["metrics"]["pass_k"] == 0, spray["parts"]
    assert any("one answer, not a list of guesses" in e for e in spray["errors"]), spray["errors"]


@pytest.mark.slow
def test_endless_agent_is_cut_off_with_the_reason(agents_batch: dict[str, dict]) -> None:
    endless = agents_batch["endless"]
    assert endless["score"] <= 2
    assert any("cut off" in e and "did not end" in e for e in endless["errors"]), endless["errors"]
    assert endless["metrics"]["cut_off"] >= 1


@pytest.mark.slow
def test_writing_the_database_directly_finds_no_database_and_earns_nothing(agents_batch: dict[str, dict]) -> None:
    card = agents_batch["direct_db"]
    assert card["score"] == 0.0 and card["metrics"]["pass_k"] == 0, card["parts"]
    assert any("no conversation ended right" in e and "direct_db: no database file" in e for e in card["errors"]), \
        card["errors"]
    assert card["metrics"]["tokens_per_conversation"] == 0 and card["metrics"]["violations"] == 0


def test_the_desks_databases_are_out_of_reach_even_of_the_graders_own_user(tmp_path: Path) -> None:
    """Not root (or AILAB_SANDBOX_USER=same) an agent runs as the grader's user; here it runs in the desk's own
    process, which sees every file the desk has open. Before the databases moved into memory this agent found each
    conversation's file by its token and passed every task without a tool call."""
    from labkit.agents import run_local

    _direct_db(tmp_path / "direct_db.py")
    scope: dict = {}
    exec(compile((tmp_path / "direct_db.py").read_text(), "direct_db.py", "exec"), scope)  # noqa: S102
    results = run_local(scope["create_agent"], n_tasks=4, faults=False)
    assert [r["ok"] for r in results] == [False] * 4
    assert all("direct_db: no database file" in r["error"] for r in results), [r["error"] for r in results]
    assert all(r["state"]["messages"] == [] and r["state"]["ticket"] == "open" for r in results)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "refused"), [
    ("agents_import_star", "import of reference_systems.agents.submission"),
    # graders.agents.runner imports the desk's world and policy model: the first of them is refused
    ("agents_forged_audit", "import of reference_systems.agents"),
])
def test_reaching_for_the_reference_or_the_graders_audit_is_flagged_and_zeroed(
        agents_batch: dict[str, dict], name: str, refused: str) -> None:
    from graders.engine import guard

    card = agents_batch[name]
    assert card["score"] == 0.0 and all(p["points"] == 0 for p in card["parts"]), card["parts"]
    access = card["integrity"]["reference_access"]
    assert access and access[0].startswith(guard.REFUSAL) and refused in access[0], access
    assert card["errors"][0].startswith(f"integrity: {guard.REFUSAL} (") and "every part is zeroed" in card["errors"][0]
    assert f"integrity: {guard.REFUSAL}" in card["_report"]
