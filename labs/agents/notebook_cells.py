'''The agents lab notebook's cells: text, tests and hints here; the solutions come from the reference itself.

Kinds as in labs/serving/notebook_cells.py: "markdown", "setup" (locked code), "answer" (solution between BEGIN/END
SOLUTION), "test" (points; hidden tests between BEGIN/END HIDDEN TESTS), "written" (graded by hand), "explore"
(tagged ailab-exclude: not part of the submission).

ONE SOURCE: the setup cell and every answer cell are cut from reference_systems/agents/agent.py at its `# @cell`
markers (graders.engine.nbbuild.reference_cells), so a fix to the reference is a fix to the notebook's solution;
`make_notebook.py --check` fails when the committed notebook is older than the reference. The tests run in well
under a second each, except Task 3.2's, which runs the agent on eight public tasks against a local desk
(`labkit.agents.run_local`, a few seconds).
'''
from __future__ import annotations

from pathlib import Path
from typing import Any

from graders.engine.nbbuild import reference_cells

REFERENCE = Path(__file__).resolve().parents[2] / "reference_systems" / "agents" / "agent.py"


def stub(task: str, name: str) -> str:
    """The code a release notebook shows in place of each solution region."""
    return f'# YOUR CODE HERE\nraise NotImplementedError("Task {task}: implement {name}")'


CODE = reference_cells(REFERENCE)
# the setup cell starts after the module docstring; a notebook cell does not need the `from __future__` line
CODE["setup"] = CODE["setup"].replace("from __future__ import annotations\n\n", "", 1)

INTRO = """
# Lab: a support agent that acts on real systems

You will build the orchestration layer of an e-commerce **support agent**: the code between a language model and
the shop's systems. A customer writes in; your agent asks the model what to do, checks what the model proposes,
calls the desk's tools (look up a customer or an order, search the knowledge base, issue a refund, apply a
discount, escalate to a human, message the customer) and makes sure that whatever the model says, the shop's rules
hold:

- never a discount that sells below cost, nor above the policy's maximum;
- refunds above the limit go to a **human** (escalate, with the reason), never `issue_refund`;
- never act on, or reveal, another customer's order or data;
- no product claim the knowledge base does not support.

**The model misbehaves on purpose.** The lab's policy model is a scripted, seeded stand-in for an LLM (it is not a
language model; see `reference_systems/agents/policy_model.py`). On the first proposal of each step it may send
malformed JSON arguments, a wrong-typed argument, a tool that does not exist, the same call again, obey an
instruction injected in the customer's message or in a knowledge-base document, propose a discount below cost or a
refund above the limit, or add a product claim nobody documented. After an error or a refusal from your agent it
behaves: **refuse with a reason and ask again** is the repair. **The tools fail too**: some time out (they hang for
2 s), some answer 503, some are slow.

| Part | Task | What is measured | Weight |
|---|---|---|---|
| Task success | 3.2 | pass^k: every one of a task's k runs (different faults) ends with the right database state, vs the reference | 30 |
| Policy | 2.1, 2.2 | violations the desk's audit finds in every write and message; each costs a quarter of the part | 25 |
| Escalation | 2.1, 3.2 | precision and recall of escalations to the human queue (F1) | 10 |
| Cost | 3.2 | USD per resolved task (tokens priced from lab.toml), vs the reference | 10 |
| Latency, throughput | 1.2 | p95 turn latency and conversations/s with many conversations at once, vs the reference | 15 |
| Recovery | 1.1, 1.2 | share of the conversations that met a tool fault and still ended right | 5 |
| Traces | 3.1 | OpenTelemetry GenAI spans: `invoke_agent`, `chat` (with token usage), `execute_tool` | 5 |
| Written | 4.1 | a design question, graded by hand | 5 points |

**How it is graded.** Every code cell that is not a test cell and not tagged `ailab-exclude` becomes your module;
the contract is `graders/agents/interface.py`. The grader calls `create_agent(config)` once, then
`agent.handle(conversation, tools, model)` for each conversation, **several at once from different threads** (keep
per-conversation state in local variables). The desk (a SQLite database per conversation, the tools, the audit) and
the model server run in the grader's process; your code reaches them only over HTTP. The tasks are generated from a
seed you do not know, each run k times under different fault seeds, beside the reference agent in the same run.

Check your work any time with `ailab check agents.ipynb`.
"""

SETUP_TEXT = """
The setup cell below is locked: the imports, `CallRejected` (raise it to refuse a proposed call; its message goes
back to the model), `Facts` (what one conversation has learnt from the tools) and `span` (a current OpenTelemetry
span when there is a tracer). What you are given:

```python
tools.schemas            # the OpenAI `tools` list: name, description, JSON-schema parameters
tools.names, tools.schema(name)
tools.call(name, arguments, timeout_s)   # the JSON result, or ToolError(.status, .message, .retryable)
model.chat(messages, tools=schemas, timeout_s=...)   # an openai ChatCompletionMessage; model.last_usage
config.policy.refund_limit, config.policy.max_discount_percent, config.tool_timeout_s,
config.max_model_calls, config.max_tool_calls, config.deadline_s, config.tracer
```
"""

TEST_HELPERS = '''
# Test helpers (locked): the tests below use these; they are not part of your module's API.
from types import SimpleNamespace

from graders.agents.interface import Policy


def fake_call(name, arguments, call_id="call_1"):
    """A tool call as the openai client returns it."""
    return SimpleNamespace(id=call_id, function=SimpleNamespace(name=name, arguments=arguments))


SCHEMAS = [
    {"type": "function", "function": {"name": "get_order", "parameters": {
        "type": "object", "properties": {"order_id": {"type": "string", "pattern": "^O-[0-9]{5}$"}},
        "required": ["order_id"]}}},
    {"type": "function", "function": {"name": "apply_discount", "parameters": {
        "type": "object", "properties": {"order_id": {"type": "string"}, "product_id": {"type": "string"},
                                         "percent": {"type": "integer", "minimum": 1, "maximum": 100}},
        "required": ["order_id", "product_id", "percent"]}}},
]


class FlakyTools:
    """Tools whose first `failures` calls fail with `status` (0: a timeout), then answer {"ok": True}."""

    def __init__(self, failures=1, status=503):
        self.schemas, self.names, self.failures, self.status, self.calls = SCHEMAS, {"get_order"}, failures, status, 0

    def call(self, name, arguments, timeout_s=5.0):
        self.calls += 1
        if self.calls <= self.failures:
            raise ToolError(name, self.status, "flaky")
        return {"ok": True}


def test_config(**kw):
    return AgentConfig(policy=Policy(refund_limit=100.0, max_discount_percent=20), **kw)
'''

# ---------------------------------------------------------------- Task 1.1
T11 = """
## Task 1.1 — Validate and repair tool calls

A model's tool call is text until you check it. Write `check_args(schema, args)`: why `args` does not fit a JSON
schema (required names, no unknown names, `type` string/integer/number/boolean — a bool is not an integer —,
`pattern`, `minLength`, `minimum`/`maximum`), or `None`. Then `parse_call(call, tools)`: `(name, arguments)` of one
of the model's `tool_calls`, or `CallRejected` saying what is wrong — a tool that does not exist, arguments that are
not JSON, or that do not fit the tool's schema. The loop (Task 3.2) sends the reason back to the model as the tool's
result; the model then proposes again. That is the repair.

<details><summary>Hints</summary>

- `call.function.name` and `call.function.arguments` (a JSON **string**).
- `isinstance(True, int)` is `True` in Python: check bools first.
- Say in the message what the model should change: it reads it.
</details>
"""

TEST11 = """
# Task 1.1 tests
tools = SimpleNamespace(names={"get_order", "apply_discount"}, schema=lambda n: next(
    s["function"]["parameters"] for s in SCHEMAS if s["function"]["name"] == n))
assert check_args(SCHEMAS[0]["function"]["parameters"], {"order_id": "O-12345"}) is None
assert check_args(SCHEMAS[0]["function"]["parameters"], {}) is not None, "a required argument is missing"
assert check_args(SCHEMAS[1]["function"]["parameters"], {"order_id": "O-1", "product_id": "P-1", "percent": "15"})
assert parse_call(fake_call("get_order", '{"order_id": "O-12345"}'), tools) == ("get_order", {"order_id": "O-12345"})
for bad in (fake_call("fetch_order", '{"order_id": "O-12345"}'), fake_call("get_order", '{"order_id": "O-12345",}'),
            fake_call("get_order", '{"order_id": 12345}')):
    try:
        parse_call(bad, tools)
    except CallRejected as exc:
        assert str(exc), "say why"
    else:
        raise AssertionError(f"{bad.function.name}({bad.function.arguments}) must be rejected")
### BEGIN HIDDEN TESTS
schema = SCHEMAS[1]["function"]["parameters"]
assert check_args(schema, {"order_id": "O-1", "product_id": "P-1", "percent": True}), "a bool is not an integer"
assert check_args(schema, {"order_id": "O-1", "product_id": "P-1", "percent": 0}), "below the minimum"
assert check_args(schema, {"order_id": "O-1", "product_id": "P-1", "percent": 5, "x": 1}), "an unknown argument"
assert check_args(SCHEMAS[0]["function"]["parameters"], {"order_id": "12345"}), "the pattern"
### END HIDDEN TESTS
"""

# ---------------------------------------------------------------- Task 1.2
T12 = """
## Task 1.2 — Tool calls with timeouts, retries and a budget

Write `call_tool(tools, name, args, config, budget, tracer, call_id)`: one tool call with `config.tool_timeout_s`,
retried on timeouts and 5xx (`ToolError.retryable`) at most 3 tries with a short backoff, never past
`config.max_tool_calls` for the conversation (`budget["tool_calls"]` counts every try). A 4xx is not retried: the
call itself is wrong. Every try is one `execute_tool {name}` span (`gen_ai.operation.name = "execute_tool"`,
`gen_ai.tool.name`) with an error status when it failed.

Latency and throughput are measured with many conversations at once: a timeout of 5 s where the tools hang for 2 s
costs every p95.

<details><summary>Hints</summary>

- A hanging tool does not answer within `tool_timeout_s` (1 s); the same call again usually does.
- The desk hangs *before* acting, so retrying a write that timed out does not do it twice.
- `with span(tracer, f"execute_tool {name}", {...}) as s:` — `s` is None without a tracer.
</details>
"""

TEST12 = """
# Task 1.2 tests
budget = {"tool_calls": 0}
assert call_tool(FlakyTools(failures=2), "get_order", {"order_id": "O-12345"}, test_config(), budget) == {"ok": True}
assert budget["tool_calls"] == 3, "every try counts against the budget"
try:
    call_tool(FlakyTools(failures=1, status=400), "get_order", {}, test_config(), {"tool_calls": 0})
except ToolError as exc:
    assert exc.status == 400
else:
    raise AssertionError("a 400 is the call's fault: do not retry it, raise it")
### BEGIN HIDDEN TESTS
flaky = FlakyTools(failures=10, status=0)
try:
    call_tool(flaky, "get_order", {}, test_config(), {"tool_calls": 0})
except ToolError:
    assert flaky.calls == 3, f"at most 3 tries, made {flaky.calls}"
else:
    raise AssertionError("a tool that keeps timing out must raise in the end")
try:
    call_tool(FlakyTools(failures=0), "get_order", {}, test_config(max_tool_calls=2), {"tool_calls": 2})
except ToolError:
    pass
else:
    raise AssertionError("a spent budget must stop the call")
### END HIDDEN TESTS
"""

# ---------------------------------------------------------------- Task 2.1
T21 = """
## Task 2.1 — Guardrails in code

Prompts are requests; code is policy. Write `check_action(name, args, facts, config, lookup)`: raise `CallRejected`
with the reason for a write the shop's rules forbid, before it runs:

- the same write twice (the model loops) — `facts.writes` holds the writes done so far;
- a refund or a discount on an order that is not the signed-in customer's (an injected instruction may ask);
- a refund above `config.policy.refund_limit` (the model then escalates: say so in the reason) or above the item's
  price;
- a discount above `config.policy.max_discount_percent`, or one that sells below the product's `cost`.

`lookup(tool, args)` reads what the decision needs (the customer by `facts.email`, the order, the product) through
the conversation's cache and retries.

<details><summary>Hints</summary>

- The highest allowed percentage is `min(policy max, floor((price - cost) / price * 100))`.
- Tell the model the allowed figure in the refusal; its next proposal uses it.
</details>
"""

TEST21 = """
# Task 2.1 tests
ORDERS = {"O-11111": {"order_id": "O-11111", "customer_id": "C-1", "items": [{"product_id": "P-100", "price": 50.0}]},
          "O-22222": {"order_id": "O-22222", "customer_id": "C-2", "items": [{"product_id": "P-100", "price": 250.0}]}}
PRODUCT = {"product_id": "P-100", "name": "Lamp", "price": 100.0, "cost": 88.0}


def lookup(tool, args):
    return {"lookup_customer": {"customer_id": "C-1"}, "get_product": PRODUCT}.get(tool) or ORDERS[args["order_id"]]


def refused(name, args, facts=None):
    try:
        check_action(name, args, facts or Facts(email="a@example.com"), test_config(), lookup)
    except CallRejected as exc:
        return str(exc)
    return None


assert refused("issue_refund", {"order_id": "O-11111", "amount": 50.0, "reason": "damaged"}) is None
assert refused("issue_refund", {"order_id": "O-22222", "amount": 20.0, "reason": "damaged"}), "another customer's order"
assert refused("issue_refund", {"order_id": "O-11111", "amount": 150.0, "reason": "damaged"}), "above the limit"
assert refused("apply_discount", {"order_id": "O-11111", "product_id": "P-100", "percent": 10}) is None
assert refused("apply_discount", {"order_id": "O-11111", "product_id": "P-100", "percent": 15}), "below cost"
### BEGIN HIDDEN TESTS
assert refused("issue_refund", {"order_id": "O-11111", "amount": 60.0, "reason": "x"}), "more than the item's price"
PRODUCT.update(cost=50.0)
assert refused("apply_discount", {"order_id": "O-11111", "product_id": "P-100", "percent": 25}), "above the policy max"
assert refused("apply_discount", {"order_id": "O-11111", "product_id": "P-100", "percent": 20}) is None
done = Facts(email="a@example.com")
done.writes.add(json.dumps(["escalate", {"reason": "too big"}], sort_keys=True))
assert refused("escalate", {"reason": "too big"}, done), "the same write twice"
### END HIDDEN TESTS
"""

# ---------------------------------------------------------------- Task 2.2
T22 = """
## Task 2.2 — What may go out

Every message to the customer goes through the desk's audit. Write `clean_message(text, facts)`: the message as it
may be sent — without any email address but the customer's own (`facts.email`; drop the sentence that held it),
and without any sentence of the form "The <Product> <claim>." whose claim is not found in what the tools returned
in this conversation (`facts.texts`: knowledge-base documents and product facts). `CLAIM` (setup) matches such
sentences.

<details><summary>Hints</summary>

- `EMAIL.sub(...)` with a function keeps the customer's own address.
- A claim is supported when its words appear, lower-cased, in `" ".join(facts.texts).lower()`.
</details>
"""

TEST22 = """
# Task 2.2 tests
facts = Facts(email="me@example.com", texts=["The Nimbus kettle boils 1.7 litres."])
out = clean_message("Your order is shipped. Contact bob@example.com for more.", facts)
assert "bob@example.com" not in out and "shipped" in out, out
out = clean_message("Yes: The Nimbus kettle boils 1.7 litres. The Nimbus kettle comes with a lifetime warranty.", facts)
assert "boils 1.7 litres" in out and "lifetime" not in out, out
### BEGIN HIDDEN TESTS
assert "me@example.com" in clean_message("We wrote to me@example.com.", facts), "the customer's own address stays"
assert clean_message("Hello.", facts) == "Hello."
### END HIDDEN TESTS
"""

# ---------------------------------------------------------------- Task 3.1
T31 = """
## Task 3.1 — The model call, traced

Write `chat(model, messages, schemas, tracer)`: one completion inside a `chat {model.name}` span with the
OpenTelemetry GenAI attributes `gen_ai.operation.name = "chat"`, `gen_ai.request.model`, `gen_ai.usage.input_tokens`
and `gen_ai.usage.output_tokens` (from `model.last_usage`: the grader compares them with the model server's own
count) and `gen_ai.response.finish_reasons`. A failed completion (5xx, timeout, a spent budget) returns `None` with
the span's status set to error; the loop decides what to do.

<details><summary>Hints</summary>

- [GenAI spans](https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-spans/): `invoke_agent` for the whole
  conversation (Task 3.2), `chat` per completion, `execute_tool` per tool call.
- `model.last_usage.prompt_tokens`, `.completion_tokens`.
</details>
"""

TEST31 = """
# Task 3.1 tests
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


class FakeModel:
    name, last_usage = "fake", None

    def chat(self, messages, tools=None, timeout_s=10.0):
        self.last_usage = SimpleNamespace(prompt_tokens=12, completion_tokens=3)
        return SimpleNamespace(content="hi", tool_calls=None)


exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
reply = chat(FakeModel(), [{"role": "user", "content": "hello"}], [], provider.get_tracer("test"))
assert reply.content == "hi"
(s,) = exporter.get_finished_spans()
assert s.name == "chat fake" and s.attributes["gen_ai.operation.name"] == "chat", s.name
assert s.attributes["gen_ai.usage.input_tokens"] == 12 and s.attributes["gen_ai.usage.output_tokens"] == 3
### BEGIN HIDDEN TESTS
class DownModel(FakeModel):
    def chat(self, messages, tools=None, timeout_s=10.0):
        raise RuntimeError("503")


exporter.clear()
assert chat(DownModel(), [], [], provider.get_tracer("test")) is None
assert exporter.get_finished_spans()[0].status.status_code.name == "ERROR"
### END HIDDEN TESTS
"""

# ---------------------------------------------------------------- Task 3.2
T32 = """
## Task 3.2 — The orchestration loop

Put it together in `SupportAgent.handle(conversation, tools, model)`, inside one `invoke_agent` span:

1. **intent** — what kind of request this is, decided in code (`intent`); show the model only the tools it may
   need (tool schemas are input tokens: cost is a part);
2. **context** — reads go through a per-conversation cache (`lookup`), so a repeated read costs nothing;
3. **risk** — every proposed call is validated (Task 1.1) and every write guarded (Task 2.1); a refusal goes back to
   the model as the tool's result;
4. **act** — run it (Task 1.2);
5. **answer** — the message to the customer goes out cleaned (Task 2.2). When the conversation cannot finish within
   its budgets, or the model keeps proposing what the rules forbid, hand it to a human (`hand_over`: escalate with
   the reason, tell the customer) rather than loop.

The test runs your agent on eight public tasks against a local desk (`labkit.agents.run_local`): every one must end
with the right database state and no policy violation. A conversation counts only as the model's, orchestrated:
one answered without asking the model, or a refund or discount the model never proposed, does not count (your code
may look things up, escalate and word the reply itself). A reply gives one answer: one that also names the other
order statuses, return windows or discounts fails.

<details><summary>Hints</summary>

- The assistant message with its `tool_calls` goes into `messages` before the tool results
  (`{"role": "tool", "tool_call_id": ..., "content": json.dumps(result)}`).
- A final answer without `tool_calls` ends the conversation only once the customer has been messaged.
- Print `run_local(create_agent, faults=False)` first; then with faults.
</details>
"""

TEST32 = """
# Task 3.2 tests
from labkit.agents import run_local

results = run_local(create_agent, n_tasks=8, fault_seed=3)
bad = [(r["task"], r["why"], r["violations"], r["error"]) for r in results if not r["ok"]]
assert not bad, f"tasks that did not end right: {bad}"
assert all(all(r["trace_checks"].values()) for r in results), [r["trace_checks"] for r in results]
### BEGIN HIDDEN TESTS
results = run_local(create_agent, n_tasks=16, fault_seed=11)
assert not [r for r in results if r["violations"]], "no policy violation, whatever the model proposes"
assert sum(r["ok"] for r in results) >= 15
### END HIDDEN TESTS
"""

EXPLORE32 = """
# Explore (not graded): one conversation's outcome, tokens and time.
for r in run_local(create_agent, n_tasks=8, fault_seed=5):
    print(f"{r['task']:<28} ok={r['ok']!s:<5} {r['seconds'] * 1e3:6.0f} ms {r['input_tokens']:6d} in "
          f"{r['output_tokens']:4d} out  {r['why'] or ''} {r['violations'] or ''}")
"""

# ---------------------------------------------------------------- Task 4.1
T41 = """
## Task 4.1 — Written: a real model

The scripted model misbehaves at known rates and then behaves. A real model does neither. Which of your
guardrails would you keep in code, and which would you move into an evaluation of the model before it ships? How
would you measure, before launch, that refusals above the refund limit really reach a human, and what would you
alert on in production? (150–300 words)
"""

A41 = """
YOUR ANSWER HERE
"""


def answer(cell_id: str, task: str, name: str) -> dict[str, Any]:
    return {"kind": "answer", "id": cell_id, "source": CODE[cell_id], "task": task, "name": name}


CELLS: list[dict[str, Any]] = [
    {"kind": "markdown", "id": "intro", "source": INTRO},
    {"kind": "markdown", "id": "setup_text", "source": SETUP_TEXT},
    {"kind": "setup", "id": "setup", "source": CODE["setup"]},
    {"kind": "setup", "id": "test_helpers", "source": TEST_HELPERS},
    {"kind": "markdown", "id": "task_1_1_text", "source": T11},
    answer("task_1_1_parse", "1.1", "check_args and parse_call"),
    {"kind": "test", "id": "test_1_1_parse", "source": TEST11, "task": "1.1", "points": 5},
    {"kind": "markdown", "id": "task_1_2_text", "source": T12},
    answer("task_1_2_calls", "1.2", "call_tool"),
    {"kind": "test", "id": "test_1_2_calls", "source": TEST12, "task": "1.2", "points": 15},
    {"kind": "markdown", "id": "task_2_1_text", "source": T21},
    answer("task_2_1_guardrails", "2.1", "check_action"),
    {"kind": "test", "id": "test_2_1_guardrails", "source": TEST21, "task": "2.1", "points": 15},
    {"kind": "markdown", "id": "task_2_2_text", "source": T22},
    answer("task_2_2_outgoing", "2.2", "clean_message"),
    {"kind": "test", "id": "test_2_2_outgoing", "source": TEST22, "task": "2.2", "points": 10},
    {"kind": "markdown", "id": "task_3_1_text", "source": T31},
    answer("task_3_1_chat", "3.1", "chat"),
    {"kind": "test", "id": "test_3_1_chat", "source": TEST31, "task": "3.1", "points": 5},
    {"kind": "markdown", "id": "task_3_2_text", "source": T32},
    answer("task_3_2_loop", "3.2", "the orchestration loop"),
    {"kind": "test", "id": "test_3_2_loop", "source": TEST32, "task": "3.2", "points": 50},
    {"kind": "explore", "id": "explore_3_2_runs", "source": EXPLORE32},
    {"kind": "markdown", "id": "task_4_1_text", "source": T41},
    {"kind": "written", "id": "task_4_1_written", "source": A41, "task": "4.1", "points": 5},
]
