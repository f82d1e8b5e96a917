"""The reference support agent: intent -> context -> risk -> act -> answer, with tool-call repair, retries,
guardrails in code, escalation and OpenTelemetry GenAI traces.

This file is also the agents notebook's solution: labs/agents/notebook_cells.py cuts it at the `# @cell` markers
into answer cells (the code between `### BEGIN SOLUTION` and `### END SOLUTION` is what the release notebook
replaces with a stub), so the notebook and the reference cannot drift apart. It may import only what a candidate's
notebook may: the standard library, opentelemetry and graders.agents.interface.

- Intent (code, not the model): which tools the conversation may need; the model is shown only those, which keeps
  every completion's prompt short (tool schemas are input tokens).
- Context: reads (customer, order, product, knowledge base) are cached per conversation; a repeated read is
  answered from the cache and a repeated write is refused, which breaks the model's loops.
- Risk: every write is checked in code before it runs (the order is the signed-in customer's; a refund at most the
  item's price and at most the refund limit, else escalate; a discount never below cost nor above the policy's
  maximum); every outgoing message loses other customers' email addresses and product claims that nothing the
  tools returned supports.
- Act: a malformed call (unknown tool, JSON that does not parse, arguments that do not fit the schema) is not run;
  the model gets the reason and proposes again. Tool calls time out and are retried on 5xx and timeouts within a
  budget.
- Answer: the model's message to the customer goes out through send_message; if the conversation cannot finish
  within its budgets, a human gets it with the reason.
"""
# @cell setup
from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import Status, StatusCode

from graders.agents.interface import AgentConfig, Conversation, Model, ToolError, Tools

WRITES = frozenset({"issue_refund", "apply_discount", "escalate", "send_message"})
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
CLAIM = re.compile(r"\bThe ([A-Z][\w-]*(?: [\w-]+){0,3}) ((?:is|has|have|comes|come|supports|support|uses|weighs|weigh|"
                   r"lasts|last|boils|switches|packs|works|fold|tracks)\b[^.!?]*)[.!?]")


class CallRejected(Exception):
    """A proposed tool call that is not run; the message goes back to the model."""


@dataclass
class Facts:
    """What this conversation has learnt from the tools (the context the guardrails decide on)."""
    email: str
    customer_id: str | None = None
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    products: dict[str, dict[str, Any]] = field(default_factory=dict)
    texts: list[str] = field(default_factory=list)        # knowledge-base text and product facts seen
    reads: dict[str, Any] = field(default_factory=dict)   # (tool, args) -> result
    writes: set[str] = field(default_factory=set)
    refused: int = 0
    sent: bool = False
    escalated: bool = False


class span:  # noqa: N801 - used like a function: `with span(tracer, name, attributes) as s:`
    """A current span when there is a tracer, else nothing (s is None)."""

    def __init__(self, tracer: Any, name: str, attributes: dict[str, Any]) -> None:
        self.cm = tracer.start_as_current_span(name, attributes=attributes) if tracer is not None else None

    def __enter__(self) -> Any:
        return self.cm.__enter__() if self.cm is not None else None

    def __exit__(self, *exc: Any) -> Any:
        return self.cm.__exit__(*exc) if self.cm is not None else None


# @cell task_1_1_parse
def check_args(schema: dict[str, Any], args: Any) -> str | None:
    """Why `args` does not fit the JSON schema `schema` (types, required, enums, ranges, patterns), or None."""
    ### BEGIN SOLUTION
    if not isinstance(args, dict):
        return "the arguments must be a JSON object"
    props = schema.get("properties", {})
    for name in schema.get("required", []):
        if name not in args:
            return f"missing required argument {name!r}"
    types = {"string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,), "object": (dict,),
             "array": (list,)}
    for name, value in args.items():
        spec = props.get(name)
        if spec is None:
            return f"unknown argument {name!r}"
        kind = spec.get("type", "string")
        if not isinstance(value, types[kind]) or (kind != "boolean" and isinstance(value, bool)):
            return f"{name!r} must be a {kind}, not {type(value).__name__}"
        if isinstance(value, str) and "pattern" in spec and not re.fullmatch(spec["pattern"], value):
            return f"{name!r} must match {spec['pattern']}"
        if isinstance(value, str) and len(value) < spec.get("minLength", 0):
            return f"{name!r} is too short"
        if kind in ("integer", "number") and not spec.get("minimum", -math.inf) <= value <= spec.get("maximum", math.inf):
            return f"{name!r} is out of range"
    return None
    ### END SOLUTION


def parse_call(call: Any, tools: Tools) -> tuple[str, dict[str, Any]]:
    """(name, arguments) of one of the model's tool calls, or CallRejected saying what is wrong with it."""
    ### BEGIN SOLUTION
    name = call.function.name
    if name not in tools.names:
        raise CallRejected(f"there is no tool {name!r}; the tools are {', '.join(sorted(tools.names))}")
    try:
        args = json.loads(call.function.arguments or "{}")
    except ValueError as exc:
        raise CallRejected(f"the arguments of {name} are not valid JSON ({exc}); send them again") from None
    why = check_args(tools.schema(name), args)
    if why:
        raise CallRejected(f"{name}: {why}")
    return name, args
    ### END SOLUTION


# @cell task_1_2_calls
def call_tool(tools: Tools, name: str, args: dict[str, Any], config: AgentConfig, budget: dict[str, int],
              tracer: Any = None, call_id: str = "") -> Any:
    """Run one tool call with a timeout, retrying timeouts and 5xx (at most 3 tries, short backoff) while the
    conversation's tool budget lasts; every try is an `execute_tool` span. The result, or the last ToolError."""
    ### BEGIN SOLUTION
    last: ToolError | None = None
    for attempt in range(3):
        if budget["tool_calls"] >= config.max_tool_calls:
            raise ToolError(name, 429, "this conversation's tool budget is spent")
        budget["tool_calls"] += 1
        with span(tracer, f"execute_tool {name}", {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name,
                                                  "gen_ai.tool.call.id": call_id}) as s:
            try:
                return tools.call(name, args, timeout_s=config.tool_timeout_s)
            except ToolError as exc:
                last = exc
                if s is not None:
                    s.set_status(Status(StatusCode.ERROR, str(exc)[:200]))
                    s.set_attribute("error.type", str(exc.status or "timeout"))
                if not exc.retryable:
                    raise
        time.sleep(0.05 * (attempt + 1))
    assert last is not None
    raise last
    ### END SOLUTION


# @cell task_2_1_guardrails
def check_action(name: str, args: dict[str, Any], facts: Facts, config: AgentConfig, lookup: Any) -> None:
    """Refuse (CallRejected) a write the desk's policy forbids. `lookup(tool, args)` reads what the decision needs
    (the customer, the order, the product) through the same cached, retried path as the model's reads."""
    ### BEGIN SOLUTION
    key = json.dumps([name, args], sort_keys=True)
    if name in WRITES and name != "send_message" and key in facts.writes:
        raise CallRejected(f"{name} with these arguments was already done; do not repeat it")
    if name not in ("issue_refund", "apply_discount"):
        return
    if facts.customer_id is None:
        facts.customer_id = lookup("lookup_customer", {"email": facts.email})["customer_id"]
    order = facts.orders.get(args["order_id"]) or lookup("get_order", {"order_id": args["order_id"]})
    if order["customer_id"] != facts.customer_id:
        raise CallRejected(f"order {args['order_id']} does not belong to this customer; never act on it")
    policy = config.policy
    if name == "issue_refund":
        paid = max((i["price"] for i in order["items"]), default=0.0)
        if args["amount"] > policy.refund_limit:
            raise CallRejected(f"a refund of {args['amount']:.2f} is above the {policy.refund_limit:.2f} limit: "
                               "escalate it to a human with the reason instead")
        if args["amount"] > paid + 1e-9:
            raise CallRejected(f"a refund of {args['amount']:.2f} is more than the item's price ({paid:.2f})")
        return
    product = facts.products.get(args["product_id"]) or lookup("get_product", {"product_id": args["product_id"]})
    margin = math.floor((product["price"] - product["cost"]) / product["price"] * 100)
    allowed = min(policy.max_discount_percent, margin)
    if args["percent"] > allowed:
        raise CallRejected(f"a {args['percent']}% discount is not allowed on {product['name']}: at most "
                           f"{allowed}% (policy maximum {policy.max_discount_percent}%, never below cost)")
    ### END SOLUTION


# @cell task_2_2_outgoing
def clean_message(text: str, facts: Facts) -> str:
    """The message as it may go out: no email address but the customer's own, and no sentence claiming something
    about a product that no knowledge-base document or product record this conversation read supports."""
    ### BEGIN SOLUTION
    text = EMAIL.sub(lambda m: m.group(0) if m.group(0).lower() == facts.email.lower() else "[removed]", text)
    text = re.sub(r"[^.!?]*\[removed\][^.!?]*[.!?]\s*", "", text)
    seen = " ".join(facts.texts).lower()

    def supported(m: re.Match[str]) -> str:
        return m.group(0) if m.group(2).lower() in seen else ""

    return re.sub(r"\s{2,}", " ", CLAIM.sub(supported, text)).strip()
    ### END SOLUTION


# @cell task_3_1_chat
def chat(model: Model, messages: list[dict[str, Any]], schemas: list[dict[str, Any]], tracer: Any) -> Any:
    """One completion inside a `chat` span with the GenAI attributes (model, token usage, finish reason); None when
    the model server failed (the loop asks again while its budget lasts)."""
    ### BEGIN SOLUTION
    with span(tracer, f"chat {model.name}", {"gen_ai.operation.name": "chat", "gen_ai.request.model": model.name,
                                              "gen_ai.provider.name": "openai"}) as s:
        try:
            reply = model.chat(messages, tools=schemas, timeout_s=5.0)
        except Exception as exc:  # noqa: BLE001 - a failed completion is retried by the loop
            if s is not None:
                s.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                s.set_attribute("error.type", type(exc).__name__)
            time.sleep(0.05)
            return None
        if s is not None and model.last_usage is not None:
            s.set_attribute("gen_ai.usage.input_tokens", model.last_usage.prompt_tokens)
            s.set_attribute("gen_ai.usage.output_tokens", model.last_usage.completion_tokens)
            s.set_attribute("gen_ai.response.finish_reasons", ["tool_calls" if reply.tool_calls else "stop"])
        return reply
    ### END SOLUTION


# @cell task_3_2_loop
INTENT_TOOLS = {
    "refund": ["lookup_customer", "get_order", "issue_refund", "escalate", "send_message"],
    "discount": ["lookup_customer", "get_order", "get_product", "apply_discount", "escalate", "send_message"],
    "knowledge": ["search_kb", "send_message", "escalate"],
    "status": ["lookup_customer", "get_order", "send_message", "escalate"],
}
SYSTEM = ("You are a support agent for an online shop. Use the tools; never act on another customer's order; "
          "refunds above {limit:.2f} go to a human (escalate); never discount below cost or above {pct}%. "
          "Finish by sending the customer one message.")


def intent(message: str) -> str:
    """Which kind of request this is, from the customer's own words (code, not the model)."""
    ### BEGIN SOLUTION
    low = message.split(" P.S. ")[0].lower()
    if "refund" in low or "damaged" in low:
        return "refund"
    if "% off" in low or "discount" in low:
        return "discount"
    if "return" in low and "days" in low or "is it true" in low:
        return "knowledge"
    return "status"
    ### END SOLUTION


class SupportAgent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config

    def handle(self, conversation: Conversation, tools: Tools, model: Model) -> dict[str, Any]:
        """One conversation: the model proposes, the code validates, guards, runs and answers."""
        ### BEGIN SOLUTION
        cfg, tracer = self.config, self.config.tracer
        with span(tracer, "invoke_agent support-agent", {"gen_ai.operation.name": "invoke_agent",
                                                         "gen_ai.agent.name": "support-agent",
                                                         "gen_ai.conversation.id": conversation.id}):
            facts = Facts(email=conversation.customer_email)
            budget = {"tool_calls": 0, "model_calls": 0}
            kind = intent(conversation.message)
            schemas = [s for s in tools.schemas if s["function"]["name"] in INTENT_TOOLS[kind]]
            messages: list[dict[str, Any]] = [
                {"role": "system", "content": SYSTEM.format(limit=cfg.policy.refund_limit,
                                                           pct=cfg.policy.max_discount_percent)},
                {"role": "user", "content": conversation.message}]
            deadline = time.monotonic() + cfg.deadline_s * 0.75

            def lookup(name: str, args: dict[str, Any]) -> Any:
                key = json.dumps([name, args], sort_keys=True)
                if key not in facts.reads:
                    facts.reads[key] = call_tool(tools, name, args, cfg, budget, tracer)
                    learn(facts, name, args, facts.reads[key])
                return facts.reads[key]

            while time.monotonic() < deadline and budget["model_calls"] < cfg.max_model_calls:
                budget["model_calls"] += 1
                reply = chat(model, messages, schemas, tracer)
                if reply is None:
                    continue
                calls = reply.tool_calls or []
                messages.append({"role": "assistant", "content": reply.content,
                                 **({"tool_calls": [c.model_dump() for c in calls]} if calls else {})})
                if not calls:
                    if facts.sent:
                        return {"status": "escalated" if facts.escalated else "resolved"}
                    messages.append({"role": "user", "content": "Send the customer your answer with send_message."})
                    continue
                for c in calls:
                    messages.append({"role": "tool", "tool_call_id": c.id,
                                     "content": json.dumps(self.act(c, tools, facts, lookup, budget))})
                if facts.refused >= 3:
                    break
            return self.hand_over(tools, facts, budget, "the agent could not finish this conversation safely")
        ### END SOLUTION

    def act(self, call: Any, tools: Tools, facts: Facts, lookup: Any, budget: dict[str, int]) -> Any:
        """Validate, guard and run one proposed call; the tool's result, or {"error": why} for the model."""
        ### BEGIN SOLUTION
        try:
            name, args = parse_call(call, tools)
        except CallRejected as exc:  # a malformed call: the model repairs it
            return {"error": str(exc)}
        try:
            if name not in WRITES:
                return lookup(name, args)
            check_action(name, args, facts, self.config, lookup)
            if name == "send_message":
                args = {**args, "text": clean_message(args["text"], facts)}
                if not args["text"]:
                    raise CallRejected("nothing of that message may be sent; answer only with verified facts")
            result = call_tool(tools, name, args, self.config, budget, self.config.tracer, call.id)
        except CallRejected as exc:  # a guardrail said no: after a few, a human takes over
            facts.refused += 1
            return {"error": str(exc)}
        except ToolError as exc:
            return {"error": f"the tool failed: {exc.message}"}
        facts.writes.add(json.dumps([name, call_args(call)], sort_keys=True))
        facts.sent |= name == "send_message"
        facts.escalated |= name == "escalate"
        return result
        ### END SOLUTION

    def hand_over(self, tools: Tools, facts: Facts, budget: dict[str, int], reason: str) -> dict[str, Any]:
        """Escalate to the human queue with the reason, tell the customer, and stop."""
        ### BEGIN SOLUTION
        if facts.sent:
            return {"status": "escalated" if facts.escalated else "resolved"}
        try:
            if not facts.escalated:
                call_tool(tools, "escalate", {"reason": reason}, self.config, budget, self.config.tracer)
            call_tool(tools, "send_message", {"text": "A human colleague will follow up on your request.",
                                              "resolve": False}, self.config, budget, self.config.tracer)
        except ToolError:
            return {"status": "failed", "reason": reason}
        return {"status": "escalated", "reason": reason}
        ### END SOLUTION


def call_args(call: Any) -> Any:
    try:
        return json.loads(call.function.arguments or "{}")
    except ValueError:
        return None


def learn(facts: Facts, name: str, args: dict[str, Any], result: Any) -> None:
    """Keep what a read returned where the guardrails look for it."""
    if name == "lookup_customer" and result.get("email", "").lower() == facts.email.lower():
        facts.customer_id = result["customer_id"]
    elif name == "get_order":
        facts.orders[result["order_id"]] = result
    elif name == "get_product":
        facts.products[result["product_id"]] = result
        facts.texts += [f"{f}" for f in result.get("facts", [])]
    elif name == "search_kb":
        facts.texts += [d["text"] for d in result.get("results", [])]


def create_agent(config: AgentConfig) -> SupportAgent:
    return SupportAgent(config)
