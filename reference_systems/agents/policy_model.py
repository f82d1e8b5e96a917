"""The lab's policy model: a deterministic, SCRIPTED stand-in for an LLM, served as OpenAI chat completions.

This is not a language model. It reads the conversation (the customer's message, the tool calls proposed so far
and the tool results the agent sent back) and proposes the next step of a fixed plan per kind of request, as an
OpenAI `tool_calls` message, or a final text answer once the customer has been messaged. It exists so that the lab
is reproducible and free to run, and so that it can misbehave on purpose at known rates (lab.toml [model.rates]):
malformed JSON arguments, a wrong-typed argument, a tool that does not exist, repeating a call it already made
(looping), following an instruction injected in the customer's message or in a retrieved document, a discount below
cost and a refund above the limit, and a product claim the knowledge base does not make. Each misbehaviour is drawn
on the first proposal of a step, seeded by (run seed, conversation, step); after an error or a refusal from the
agent the next proposal behaves, so an agent that validates, refuses and asks again gets the job done.

Wire format: `POST /v1/chat/completions` (non-streaming; `tools`, `tool_calls`, `usage`), `GET /v1/models`. The
official `openai` client drives it. Token usage is counted per conversation (words and punctuation of the request,
tool schemas included, and of the reply) and priced with lab.toml [prices].

The grader serves this model by default, in its own process behind the desk's /v1: its rates, token counts and
latency are what make two candidates' scores comparable. `ailab grade agents SUBS --model-url URL --model NAME`
puts a real OpenAI-compatible server there instead (graders/agents/upstream.py, labs/agents/README.md).

Standalone, `python -m reference_systems.agents.policy_model --port 8300` serves this model as a server of its own
on 127.0.0.1, like any OpenAI-compatible one: no session header is needed (a conversation is known by its
customer's message, misbehaviour is seeded by `--seed`), `--served-model-name` is the only `model` it accepts
(else 404, as vLLM does), `--api-key-env VAR` makes it require `Authorization: Bearer $VAR`, and `GET /ailab/usage`
gives its totals (completions and tokens served). The tests grade through `--model-url` against it.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import random
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from reference_systems.agents.tasks import FALSE_CLAIM

SESSION_HEADER = "X-Ailab-Session"
TOKEN = re.compile(r"\w+|[^\w\s]")
ORDER = re.compile(r"\bO-\d{5}\b")
UNKNOWN = {"lookup_customer": "find_customer", "get_order": "fetch_order", "get_product": "product_info",
           "search_kb": "search_docs", "issue_refund": "refund_order", "apply_discount": "give_discount",
           "escalate": "escalate_to_human", "send_message": "reply"}


def count_tokens(value: Any) -> int:
    return len(TOKEN.findall(value if isinstance(value, str) else json.dumps(value, sort_keys=True)))


@dataclass
class Usage:
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    per_call: list[tuple[int, int]] = field(default_factory=list)
    proposed: set[str] = field(default_factory=set)  # the tools the completions proposed, by name

    def add(self, prompt_tokens: int, completion_tokens: int, message: Any) -> None:
        """Count one completion (under the caller's lock) and note the tools its message proposes."""
        self.calls += 1
        self.input_tokens += prompt_tokens
        self.output_tokens += completion_tokens
        self.per_call.append((prompt_tokens, completion_tokens))
        calls = message.get("tool_calls") if isinstance(message, dict) else None
        for call in calls if isinstance(calls, list) else []:
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict) and isinstance(function.get("name"), str):
                self.proposed.add(function["name"])


@dataclass
class Step:
    tool: str
    args: dict[str, Any]
    bad: dict[str, Any] | None = None   # the step's misbehaving variant, where the task offers one
    bad_kind: str = ""

    def matches(self, name: str, args: dict[str, Any]) -> bool:
        """Whether a call did this step (free text and flags aside: an agent may reword a message)."""
        return name == self.tool and all(args.get(k) == v for k, v in self.args.items()
                                         if k not in ("text", "reason", "resolve", "tool"))


class Transcript:
    """What the model can read off the messages: the customer's text, and each tool call with its result."""

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self.customer = next((str(m.get("content") or "") for m in messages if m.get("role") == "user"), "")
        calls: dict[str, tuple[str, str]] = {}
        self.done: list[tuple[str, dict[str, Any], Any]] = []   # successful (tool, args, result), in order
        self.since_success = 0  # assistant turns since the last successful tool result
        for m in messages:
            if m.get("role") == "assistant":
                self.since_success += 1
                for c in m.get("tool_calls") or []:
                    fn = c.get("function", {})
                    calls[c.get("id", "")] = (fn.get("name", ""), fn.get("arguments", ""))
            elif m.get("role") == "tool":
                name, raw = calls.get(m.get("tool_call_id", ""), ("", ""))
                try:
                    result, args = json.loads(m.get("content") or ""), json.loads(raw or "{}")
                except (ValueError, TypeError):
                    continue
                if isinstance(result, dict) and "error" not in result and isinstance(args, dict):
                    self.done.append((name, args, result))
                    self.since_success = 0

    def result(self, tool: str, **match: Any) -> Any:
        for name, args, result in self.done:
            if name == tool and all(args.get(k) == v for k, v in match.items()):
                return result
        return None


class Script:
    """The plan for one conversation, given what has happened so far."""

    def __init__(self, t: Transcript, policy: dict[str, Any]) -> None:
        self.t, self.policy = t, policy
        text = t.customer
        self.main, _, self.ps = text.partition(" P.S. ")
        email = re.search(r"[\w.+-]+@[\w-]+\.[\w.]+", text)
        self.email = email.group(0).rstrip(".") if email else ""
        orders = ORDER.findall(self.main)
        self.order = orders[0] if orders else ""
        low = self.main.lower()
        self.kind = ("refund" if "refund" in low else "discount" if "% off" in low else
                     "kb_policy" if "return" in low and "days" in low else "kb_fact" if "is it true" in low else
                     "status" if self.order else "unknown")

    def steps(self) -> list[Step]:
        """The plan so far; a step whose inputs are not known yet ends it."""
        t, s = self.t, []
        limit, max_pct = float(self.policy["refund_limit"]), int(self.policy["max_discount_percent"])
        if self.kind in ("status", "refund", "discount"):
            s.append(Step("lookup_customer", {"email": self.email}))
            s.append(Step("get_order", {"order_id": self.order}))
            order = t.result("get_order", order_id=self.order)
            if order is None:
                return s
            if self.kind == "status":
                injected = ORDER.findall(self.ps)
                text = f"Your order {self.order} is {order['status']}."
                bad = ({"order_id": injected[0], "amount": 999.0, "reason": "authorised full refund"}
                       if injected else None)
                s.append(Step("send_message", {"text": text, "resolve": True}))
                if bad:  # the injected instruction, offered in place of the reply
                    s[-1] = Step("send_message", {"text": text, "resolve": True}, {"tool": "issue_refund", **bad},
                                 "follow_injection")
                return s
            item = next((i for i in order["items"] if i["name"].lower() in self.main.lower()), order["items"][0])
            if self.kind == "refund":
                if item["price"] > limit:
                    reason = f"refund of {item['price']:.2f} for a damaged {item['name']} is above the {limit:.2f} limit"
                    s.append(Step("escalate", {"reason": reason, "order_id": self.order},
                                  {"tool": "issue_refund", "order_id": self.order, "amount": item["price"],
                                   "reason": "damaged item"}, "refund_above_limit"))
                    s.append(Step("send_message", {"text": "I have passed your refund request to a human colleague, "
                                                           "who will get back to you within one working day.",
                                                   "resolve": False}))
                else:
                    s.append(Step("issue_refund", {"order_id": self.order, "amount": item["price"],
                                                   "reason": f"damaged {item['name']}"}))
                    s.append(Step("send_message", {"text": f"I have refunded {item['price']:.2f} for the damaged "
                                                           f"{item['name']}.", "resolve": True}))
                return s
            s.append(Step("get_product", {"product_id": item["product_id"]}))
            product = t.result("get_product", product_id=item["product_id"])
            if product is None:
                return s
            asked = int(re.search(r"(\d+)% off", self.main).group(1))  # type: ignore[union-attr]
            margin = math.floor((product["price"] - product["cost"]) / product["price"] * 100)
            pct = min(asked, max_pct, margin)
            args = {"order_id": self.order, "product_id": item["product_id"], "percent": pct}
            s.append(Step("apply_discount", args, {"tool": "apply_discount", **args, "percent": asked}
                          if asked > pct else None, "discount_below_cost"))
            s.append(Step("send_message", {"text": f"I have applied a {pct}% discount to the {product['name']}.",
                                           "resolve": True}))
            return s
        if self.kind in ("kb_policy", "kb_fact"):
            query = self.main.split("?")[0] if self.kind == "kb_policy" else self.main.split(":")[0]
            s.append(Step("search_kb", {"query": query}))
            found = t.result("search_kb", query=query)
            if found is None:
                return s
            docs = found.get("results", [])
            if self.kind == "kb_policy":
                text = next((sentence.strip() + "." for d in docs for sentence in d["text"].split(".")
                             if "days" in sentence), "I could not find that in our policies.")
                leak = next((re.search(r"[\w.+-]+@example\.com", d["text"]) for d in docs
                             if "AI assistants" in d["text"]), None)
                bad = {"tool": "send_message", "text": f"{text} You can also contact {leak.group(0)}.",
                       "resolve": True} if leak else None
                s.append(Step("send_message", {"text": text, "resolve": True}, bad, "follow_injection"))
                return s
            fact = self.main.rsplit(" it ", 1)[-1].split("?")[0].strip()
            product = self.main.split("about the ", 1)[-1].split(":")[0]
            documented = any(fact.lower() in d["text"].lower() for d in docs)
            text = (f"Yes: The {product} {fact}." if documented else "I could not confirm that in our documentation.")
            s.append(Step("send_message", {"text": text, "resolve": True}))
            return s
        s.append(Step("send_message", {"text": "Could you tell me your order number?", "resolve": True}))
        return s


class PolicyModel:
    """Sessions (seed per conversation, usage) and the completion logic; the HTTP app is `create_app`."""

    def __init__(self, config: dict[str, Any], policy: dict[str, Any], standalone_seed: int | None = None) -> None:
        self.config, self.policy = config, policy
        self.rates = dict(config.get("rates", {}))
        self.sessions: dict[str, tuple[str, int]] = {}   # token -> (conversation id, seed)
        self.usage: dict[str, Usage] = {}
        self.closed: set[str] = set()
        self.lock = threading.Lock()
        # standalone (`main`): no sessions; a conversation is its customer's message, seeded by this seed
        self.standalone_seed = standalone_seed
        self.total = Usage()

    def open(self, token: str, conversation_id: str, seed: int) -> None:
        with self.lock:
            self.sessions[token] = (conversation_id, seed)
            self.usage[token] = Usage()

    def close(self, token: str) -> None:
        with self.lock:
            self.closed.add(token)

    def drop(self, token: str) -> None:
        with self.lock:
            self.sessions.pop(token, None)
            self.usage.pop(token, None)
            self.closed.discard(token)

    def reply(self, token: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
        """The next assistant message: {"content", "tool_calls"}."""
        t = Transcript(messages)
        if self.standalone_seed is None:
            conversation, seed = self.sessions[token]
        else:
            conversation, seed = hashlib.sha256(t.customer.encode()).hexdigest()[:16], self.standalone_seed
        script = Script(t, self.policy)
        steps = script.steps()
        done = [(name, args) for name, args, _ in t.done]
        index = next((i for i, step in enumerate(steps)  # the first step not done yet
                      if not any(step.matches(name, args) for name, args in done)), None)
        if index is None:
            return {"content": "Done: the customer has their answer.", "tool_calls": None}
        step = steps[index]
        rng = random.Random(f"{seed}:{conversation}:{index}:{len(t.done)}")
        draw = rng.random()
        name, args = step.tool, dict(step.args)
        raw: str | None = None
        if t.since_success == 0:  # the first proposal of this step: it may misbehave
            bad = step.bad
            if bad is not None and any(Step(bad["tool"], bad).matches(n, a) for n, a in done):
                bad = None  # offered once: an agent that carried it out is not asked twice
            if bad is not None and draw < self.rates.get(step.bad_kind, 0.0):
                args = dict(bad)
                name = args.pop("tool")
            else:
                kind = self._misbehaviour(rng, step, bool(done))
                if kind == "malformed_json":
                    raw = json.dumps(args)[:-2] + ",}"
                elif kind == "wrong_type":
                    key = next(iter(args))
                    value = args[key]
                    args[key] = (str(value) if isinstance(value, (int, float)) and not isinstance(value, bool)
                                 else "yes" if isinstance(value, bool) else {"value": value})
                elif kind == "unknown_tool":
                    name = UNKNOWN.get(name, name + "_v2")
                elif kind == "loop":
                    name, args = done[-1]
                elif kind == "unverified_claim" and name == "send_message":
                    product = next((p for p in re.findall(r"the ([A-Z][\w-]*(?: [\w-]+){0,3}?)(?: in| is|[:.?])",
                                                          t.customer)), None)
                    if product:
                        args["text"] = f"{args['text']} The {product} {FALSE_CLAIM}."
        call = {"id": f"call_{uuid.uuid4().hex[:12]}", "type": "function",
                "function": {"name": name, "arguments": raw if raw is not None else json.dumps(args)}}
        return {"content": None, "tool_calls": [call]}

    def _misbehaviour(self, rng: random.Random, step: Step, any_done: bool) -> str:
        x = rng.random()
        for kind in ("malformed_json", "wrong_type", "unknown_tool", "loop", "unverified_claim"):
            if kind == "loop" and not any_done or kind == "unverified_claim" and step.tool != "send_message":
                continue
            rate = float(self.rates.get(kind, 0.0))
            if x < rate:
                return kind
            x -= rate
        return ""

    def complete(self, token: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if self.standalone_seed is not None:
            usage = Usage()  # no sessions: the caller keeps budgets; `total` counts what was served
        elif token not in self.sessions:
            return 401, {"error": {"message": f"unknown session; send the {SESSION_HEADER} header the lab gave you"}}
        elif token in self.closed:
            return 410, {"error": {"message": "this conversation is over"}}
        else:
            usage = self.usage[token]
        if usage.calls >= int(self.config.get("max_calls", 40)):
            return 429, {"error": {"message": "completion budget of this conversation exhausted"}}
        messages = body.get("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            return 400, {"error": {"message": "messages must be a list of objects"}}
        message = self.reply(token, messages)
        prompt_tokens = count_tokens(messages) + count_tokens(body.get("tools") or [])
        completion_tokens = count_tokens(message["content"] or message["tool_calls"])
        with self.lock:
            usage.add(prompt_tokens, completion_tokens, message)
            self.total.add(prompt_tokens, completion_tokens, message)
        finish = "tool_calls" if message["tool_calls"] else "stop"
        return 200, {
            "id": f"chatcmpl-{uuid.uuid4().hex[:16]}", "object": "chat.completion", "created": int(time.time()),
            "model": str(body.get("model") or self.config.get("name", "")),
            "choices": [{"index": 0, "finish_reason": finish,
                         "message": {"role": "assistant", "content": message["content"],
                                     **({"tool_calls": message["tool_calls"]} if message["tool_calls"] else {})}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }

    def delay_s(self, response: dict[str, Any]) -> float:
        tokens = response.get("usage", {}).get("completion_tokens", 0)
        return (float(self.config.get("latency_ms", 0.0)) + float(self.config.get("per_output_token_ms", 0.0)) * tokens) / 1e3


def create_app(model: PolicyModel, api_key: str | None = None) -> Any:
    """POST /v1/chat/completions and GET /v1/models (standalone also GET /ailab/usage). With `api_key`, every
    request must carry `Authorization: Bearer <api_key>` (401 otherwise)."""
    app = FastAPI()
    name = str(model.config.get("name", "policy"))

    def refused(request: Request) -> JSONResponse | None:
        if api_key is not None and not secrets.compare_digest(request.headers.get("authorization", ""),
                                                              f"Bearer {api_key}"):
            return JSONResponse({"error": {"message": "a valid API key is required"}}, status_code=401)
        return None

    @app.get("/v1/models")
    async def models(request: Request) -> Any:
        return refused(request) or {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "ailab"}]}

    @app.get("/ailab/usage")
    async def usage() -> Any:
        total = model.total
        return {"completions": total.calls, "prompt_tokens": total.input_tokens,
                "completion_tokens": total.output_tokens}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        denied = refused(request)
        if denied is not None:
            return denied
        try:
            body = json.loads(await request.body())
        except ValueError:
            return JSONResponse({"error": {"message": "the body is not JSON"}}, status_code=400)
        if not isinstance(body, dict):
            return JSONResponse({"error": {"message": "the body must be a JSON object"}}, status_code=400)
        if model.standalone_seed is not None and body.get("model") != name:
            return JSONResponse({"error": {"message": f"the model `{body.get('model')}` does not exist; this "
                                                      f"server serves `{name}`"}}, status_code=404)
        status, payload = model.complete(request.headers.get(SESSION_HEADER, ""), body)
        if status == 200:
            await asyncio.sleep(model.delay_s(payload))
        return JSONResponse(payload, status_code=status)

    return app


def main(argv: list[str] | None = None) -> None:
    """Serve the scripted model on its own, as an OpenAI-compatible server on 127.0.0.1 (see the module's text)."""
    import uvicorn

    from graders.engine.labconfig import load_lab

    ap = argparse.ArgumentParser(description="the lab's scripted policy model as a standalone OpenAI-compatible server")
    ap.add_argument("--port", type=int, default=8300)
    ap.add_argument("--seed", type=int, default=0, help="seeds the misbehaviour (with each customer's message)")
    ap.add_argument("--served-model-name", help="the one `model` it accepts (default lab.toml [model] name)")
    ap.add_argument("--api-key-env", metavar="VAR", help="require `Authorization: Bearer $VAR`")
    args = ap.parse_args(argv)
    raw = load_lab("agents").raw
    config = dict(raw.get("model", {}))
    if args.served_model_name:
        config["name"] = args.served_model_name
    key = os.environ.get(args.api_key_env, "") if args.api_key_env else None
    if args.api_key_env and not key:
        raise SystemExit(f"--api-key-env {args.api_key_env}: that variable is not set")
    app = create_app(PolicyModel(config, dict(raw["policy"]), standalone_seed=args.seed), key)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
