"""Run conversations against one hosted agent, many at once, and record what the desk saw of each.

A round is every task once under one fault seed, `concurrency` conversations in flight (threads in the grader;
the host runs each in its own thread). Each conversation gets a fresh database, a session token, and
`[conversation] deadline_s` of wall time; past that it is cut off (its session is closed, so nothing more it does
reaches the desk). After it ends the grader reads the end state, audits every write and message, and takes the
model server's token count and the agent's spans.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from graders.agents.desk import Desk
from graders.engine.sandbox import MAX_REPLY, OversizedReply, Worker, read_bounded
from reference_systems.agents import world
from reference_systems.agents.tasks import Task


@dataclass
class Run:
    """One conversation of one system: outcome, audit findings, cost and time."""
    task: str
    kind: str
    rep: int
    ok: bool = False
    why: list[str] = field(default_factory=list)           # how the end state differs from the expected one
    violations: list[str] = field(default_factory=list)
    escalated: bool = False
    expected_escalation: bool = False
    seconds: float = 0.0
    cut_off: bool = False
    skipped: bool = False
    error: str = ""                                        # the agent's exception, or the host's failure
    model_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    usage_estimated: int = 0                               # completions an upstream model sent without `usage`
    tool_calls: int = 0
    faults: int = 0
    trace_checks: dict[str, bool] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Round:
    runs: list[Run]
    seconds: float


class Cutoffs:
    """Conversations cut off so far for one submission; past the limit the rest are not started."""

    def __init__(self, limit: int) -> None:
        self.limit, self.count, self.lock = limit, 0, threading.Lock()

    def add(self) -> None:
        with self.lock:
            self.count += 1

    @property
    def exhausted(self) -> bool:
        return self.limit > 0 and self.count >= self.limit


def trace_checks(spans: list[dict[str, Any]], calls: int, tokens: tuple[int, int], tool_log: list[dict[str, Any]]
                 ) -> dict[str, bool]:
    """The GenAI conventions the agent's spans must follow, checked against what the desk itself counted."""
    def op(s: dict[str, Any]) -> str:
        return str(s["attributes"].get("gen_ai.operation.name", ""))

    ids = {s["span_id"] for s in spans}
    agents = [s for s in spans if op(s) == "invoke_agent"]
    chats = [s for s in spans if op(s) == "chat"]
    tools = [s for s in spans if op(s) == "execute_tool"]
    parent = {s["span_id"]: s["parent_id"] for s in spans}

    def under(s: dict[str, Any], root: int) -> bool:
        node, hops = s["parent_id"], 0
        while node is not None and node in ids and hops < 50:
            if node == root:
                return True
            node, hops = parent[node], hops + 1
        return False

    root = agents[0]["span_id"] if len(agents) == 1 else None
    used = {e["tool"] for e in tool_log}
    return {
        "one invoke_agent span at the root": len(agents) == 1 and agents[0]["parent_id"] not in ids
                                             and agents[0]["name"].startswith("invoke_agent"),
        "a chat span per completion": len(chats) == calls and all(s["name"].startswith("chat") for s in chats),
        "token usage equal to the model server's": (
            sum(int(s["attributes"].get("gen_ai.usage.input_tokens", 0)) for s in chats) == tokens[0]
            and sum(int(s["attributes"].get("gen_ai.usage.output_tokens", 0)) for s in chats) == tokens[1]),
        "an execute_tool span per tool call, named": len(tools) == len(tool_log)
                                                     and used <= {s["attributes"].get("gen_ai.tool.name") for s in tools},
        "chat and tool spans inside the agent's span": root is not None and all(under(s, root) for s in chats + tools),
    }


# Money moves only on the model's proposal: the agent's code validates, repairs and guards what the model proposes
# (it may look things up, escalate and word the reply itself), but an agent that refunds or discounts on rules of
# its own, or answers without the model at all, shows none of the orchestration the lab grades.
MODEL_DECIDES = ("issue_refund", "apply_discount")


def model_rules(calls: int, proposed: set[str], tool_log: list[dict[str, Any]]) -> list[str]:
    """Why a conversation's outcome is not the agent's orchestration of the model (empty: it is)."""
    why = []
    if calls == 0:
        why.append("answered without consulting the model (the lab grades orchestrating the model's proposals)")
    unproposed = sorted({e["tool"] for e in tool_log if e["tool"] in MODEL_DECIDES} - proposed)
    if unproposed:
        why.append(f"called {', '.join(unproposed)} though the model never proposed it")
    return why


def converse(worker: Worker, desk: Desk, task: Task, rep: int, seed: int, deadline_s: float, model_name: str,
             cutoffs: Cutoffs | None) -> Run:
    run = Run(task.id, task.kind, rep, expected_escalation=task.expected.escalated)
    if cutoffs is not None and cutoffs.exhausted:
        run.skipped, run.error = True, "not run: too many conversations of this agent never ended"
        run.why = ["not run"]
        return run
    opened = desk.open(task, seed)
    request = {"conversation": task.conversation(), "tools_url": desk.url, "model_url": f"{desk.url}/v1",
               "model": model_name, "token": opened.token, "schemas": desk.schemas}
    started = time.perf_counter()
    reply: dict[str, Any] = {}
    try:
        status, body = read_bounded(worker.client, "POST", "/conversation", MAX_REPLY, json=request,
                                    timeout=deadline_s)
        import json

        reply = json.loads(body)
        if not reply.get("ok"):
            run.error = str(reply.get("error", f"the host answered {status}"))[:600]
    except httpx.TimeoutException:
        run.cut_off = True
        run.error = f"cut off: the conversation did not end within {deadline_s:g} s"
        if cutoffs is not None:
            cutoffs.add()
    except (httpx.HTTPError, OversizedReply, ValueError) as exc:
        run.error = f"the agent's process did not answer ({type(exc).__name__}: {str(exc)[:200]})"
    run.seconds = time.perf_counter() - started
    desk.close(opened)
    try:
        state = desk.world.end_state(opened.token)
        run.violations = desk.world.audit(opened.token)
        run.escalated = bool(state["escalations"])
        stats = desk.world.stats(opened.token)
        run.tool_calls, run.faults = stats["tool_calls"], stats["faults"]
        usage = desk.model.usage[opened.token]
        run.why = world.check(task, state) + model_rules(usage.calls, usage.proposed, stats["log"])
        run.model_calls, run.input_tokens, run.output_tokens = usage.calls, usage.input_tokens, usage.output_tokens
        run.usage_estimated = getattr(desk.model, "estimated", {}).get(opened.token, 0)
        if reply.get("ok") and isinstance(reply.get("spans"), list):
            run.trace_checks = trace_checks(reply["spans"], usage.calls, (usage.input_tokens, usage.output_tokens),
                                            stats["log"])
        run.ok = not run.why and not run.violations and not run.cut_off
    finally:
        desk.drop(opened)
    return run


def run_round(worker: Worker, desk: Desk, tasks: list[Task], rep: int, seed: int, concurrency: int,
              deadline_s: float, model_name: str, cutoffs: Cutoffs | None = None) -> Round:
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        runs = list(pool.map(lambda t: converse(worker, desk, t, rep, seed, deadline_s, model_name, cutoffs), tasks))
    return Round(runs, time.perf_counter() - started)
