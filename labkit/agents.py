"""The agents lab's support desk on your own machine: run your agent on the public tasks and see what the grader sees.

    from labkit.agents import run_local
    results = run_local(create_agent, n_tasks=8)          # the public tasks (lab.toml [tasks] public_seed)
    for r in results: print(r["task"], r["ok"], r["why"], r["violations"])

Each task is one conversation over a fresh database, with the lab's scripted policy model misbehaving at its
lab.toml rates and the tools failing on the fault seed you pass. The result of each lists how the end state differs
from the expected one (`why`), the audit's policy violations, the tokens used and the GenAI span checks the grader
runs (`trace_checks`). Grading uses other tasks and fresh fault seeds.

`run_local(create_agent, model_url="http://127.0.0.1:8000/v1", model="NAME")` puts a real OpenAI-compatible model
with tool calls behind the desk instead (key in $AILAB_MODEL_API_KEY; graders/agents/upstream.py): the same tasks,
tools, faults and audit, but the model's misbehaviour is then its own and nothing is deterministic.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from graders.agents.interface import SESSION_HEADER, AgentConfig, Conversation, Model, Policy, Tools

__all__ = ["AgentConfig", "Conversation", "Model", "Policy", "Tools", "public_tasks", "run_local"]


def _lab() -> dict[str, Any]:
    from graders.engine.labconfig import load_lab

    return load_lab("agents").raw


def public_tasks(n_tasks: int = 8) -> list[Any]:
    """The first `n_tasks` public tasks (each has .conversation(), .kind and .expected)."""
    from reference_systems.agents.tasks import tasks

    raw = _lab()
    return tasks(int(raw["tasks"]["public_seed"]), n_tasks, list(raw["tasks"]["kinds"]), raw["policy"])


def config(tracer: Any = None) -> AgentConfig:
    raw = _lab()
    conv = raw.get("conversation", {})
    return AgentConfig(policy=Policy(**raw["policy"]), tool_timeout_s=float(conv.get("tool_timeout_s", 1.0)),
                       deadline_s=float(conv.get("deadline_s", 12.0)), tracer=tracer)


def run_local(create_agent: Callable[[AgentConfig], Any], n_tasks: int = 8, fault_seed: int = 0,
              faults: bool = True, model_url: str | None = None, model: str | None = None) -> list[dict[str, Any]]:
    """Run `create_agent(config)`'s agent on the public tasks, one at a time; one dict per conversation.
    `model_url`/`model`: a real OpenAI-compatible model in place of the scripted one."""
    import httpx
    import openai
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from graders.agents import upstream
    from graders.agents.desk import Desk
    from graders.agents.host import BucketExporter
    from graders.agents.runner import model_rules, trace_checks
    from reference_systems.agents import world

    raw = _lab()
    if not faults:
        raw = {**raw, "faults": {**raw.get("faults", {}), "timeout": 0.0, "error": 0.0, "slow": 0.0}}
    exporter = BucketExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))  # type: ignore[arg-type]
    tracer = provider.get_tracer("ailab.agents")
    agent = create_agent(config(tracer))
    out = []
    up = upstream.connect(model_url, model) if model_url else None
    with Desk(raw, up) as desk, httpx.Client() as http:
        for task in public_tasks(n_tasks):
            opened = desk.open(task, fault_seed)
            tools = Tools(desk.url, opened.token, desk.schemas, http)
            client = openai.OpenAI(base_url=f"{desk.url}/v1", api_key="local", max_retries=0,
                                   default_headers={SESSION_HEADER: opened.token},
                                   http_client=http)
            started, error = time.perf_counter(), ""
            with tracer.start_as_current_span("ailab.conversation") as root:
                try:
                    result = agent.handle(Conversation(**task.conversation()), tools, Model(client, desk.model_name))
                except Exception as exc:  # noqa: BLE001 - shown, not raised: the other tasks still run
                    result, error = None, f"{type(exc).__name__}: {exc}"
            spans = [s for s in exporter.take(root.get_span_context().trace_id) if s["name"] != "ailab.conversation"]
            desk.close(opened)
            state = desk.world.end_state(opened.token)
            usage, stats = desk.model.usage[opened.token], desk.world.stats(opened.token)
            why = world.check(task, state) + model_rules(usage.calls, usage.proposed, stats["log"])
            violations = desk.world.audit(opened.token)
            out.append({"task": task.id, "kind": task.kind, "ok": not why and not violations and not error,
                        "why": why, "violations": violations, "error": error, "result": result, "state": state,
                        "seconds": time.perf_counter() - started, "input_tokens": usage.input_tokens,
                        "output_tokens": usage.output_tokens, "faults": stats["faults"],
                        "trace_checks": trace_checks(spans, usage.calls, (usage.input_tokens, usage.output_tokens),
                                                     stats["log"])})
            desk.drop(opened)
    return out
