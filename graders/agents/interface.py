"""The agents lab's contract: what a candidate notebook (and the reference) defines, and what it is given.

A submission is a module with one required name:

    create_agent(config: AgentConfig) -> agent      # called once per process
    agent.handle(conversation: Conversation, tools: Tools, model: Model) -> dict   # once per conversation

`handle` is called from several threads at once (one per conversation in flight), so an agent keeps per-conversation
state in local variables, not on `self`. It talks to the desk only through `tools.call(name, arguments,
timeout_s)` (HTTP to the grader's world on 127.0.0.1; every write and message is audited there) and to the policy
model only through `model.chat(messages, tools=...)` (the official `openai` client, chat completions with tool
calls). It returns {"status": "resolved" | "escalated" | "failed", ...}; what counts is what the database holds when
it returns, which the grader reads itself. `config.tracer` is an OpenTelemetry tracer whose spans the grader
collects per conversation (GenAI semantic conventions: `invoke_agent`, `chat`, `execute_tool`).

The grader hosts the agent in the submission's sandboxed process (graders.agents.host) and cuts off a conversation
that outlives `[conversation] deadline_s`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

SESSION_HEADER = "X-Ailab-Session"


@dataclass(frozen=True)
class Policy:
    refund_limit: float = 100.0
    max_discount_percent: int = 20


@dataclass
class AgentConfig:
    policy: Policy = field(default_factory=Policy)
    tool_timeout_s: float = 1.0         # a good per-call timeout: the world's hangs last longer
    max_model_calls: int = 30           # the model server refuses more (429) a little later
    max_tool_calls: int = 30
    deadline_s: float = 12.0            # the grader cuts a conversation off after this
    tracer: Any = None                  # an opentelemetry.trace.Tracer (None: no tracing)


@dataclass(frozen=True)
class Conversation:
    id: str
    customer_email: str                 # the signed-in customer: the only one whose data may be shown
    customer_name: str
    message: str


class ToolError(Exception):
    """A tool call that failed: `status` is the HTTP status (0: no answer in time); `retryable` when trying the same
    call again may work (timeouts, 5xx)."""

    def __init__(self, name: str, status: int, message: str) -> None:
        super().__init__(f"{name}: {status or 'timeout'} {message}")
        self.name, self.status, self.message = name, status, message

    @property
    def retryable(self) -> bool:
        return self.status == 0 or self.status >= 500


class Tools:
    """The desk's tools for one conversation. `schemas` is the OpenAI `tools` list (JSON-schema parameters)."""

    def __init__(self, url: str, token: str, schemas: list[dict[str, Any]], client: httpx.Client) -> None:
        self.url, self.schemas, self._client = url.rstrip("/"), schemas, client
        self._headers = {SESSION_HEADER: token}
        self.names = frozenset(s["function"]["name"] for s in schemas)

    def schema(self, name: str) -> dict[str, Any]:
        return next(s["function"]["parameters"] for s in self.schemas if s["function"]["name"] == name)

    def call(self, name: str, arguments: dict[str, Any] | str, timeout_s: float = 5.0) -> Any:
        """The tool's JSON result, or ToolError. `arguments` may be the raw JSON text a model produced."""
        body = arguments if isinstance(arguments, str) else json.dumps(arguments)
        try:
            reply = self._client.post(f"{self.url}/tools/{name}", content=body, headers=self._headers,
                                      timeout=timeout_s)
        except httpx.TimeoutException:
            raise ToolError(name, 0, f"no answer within {timeout_s:g} s") from None
        except httpx.HTTPError as exc:
            raise ToolError(name, 502, f"connection failed ({type(exc).__name__})") from None
        try:
            payload = reply.json()
        except ValueError:
            payload = {"error": reply.text[:200]}
        if reply.status_code != 200:
            raise ToolError(name, reply.status_code, str(payload.get("error", payload)) if isinstance(payload, dict)
                            else str(payload))
        return payload


class Model:
    """The policy model for one conversation: `chat(messages, tools)` returns the assistant message (an openai
    ChatCompletionMessage: `.content`, `.tool_calls`) and `last_usage`; `client` is the openai.OpenAI client."""

    def __init__(self, client: Any, name: str) -> None:
        self.client, self.name = client, name
        self.last_usage: Any = None

    def chat(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None,
             timeout_s: float = 10.0) -> Any:
        reply = self.client.chat.completions.create(model=self.name, messages=messages, timeout=timeout_s,
                                                    **({"tools": tools} if tools else {}))
        self.last_usage = reply.usage
        return reply.choices[0].message


class Agent(Protocol):
    def handle(self, conversation: Conversation, tools: Tools, model: Model) -> dict[str, Any]: ...


class Submission(Protocol):
    def create_agent(self, config: AgentConfig) -> Agent: ...


REQUIRED_NAMES: tuple[str, ...] = ("create_agent",)
