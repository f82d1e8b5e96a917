"""The serving lab's contract: what a candidate notebook (and the reference) must define.

A submission is a module with one required name:

    create_app(engine: Engine, config: ServerSettings) -> ASGI application

`engine` is the lab-provided `reference_systems.serving.engine.Engine` (candidates import it as
`labkit.serving.Engine`), already built on the lab's deterministic tiny GPT-2; the app must drive
it through its step API (`add`, `step`, `abort`, `has_work`) — continuous batching is the point.
`config` carries the lab.toml [server] settings (max_batch, max_waiting, request_timeout_s).

The grader hosts the app with uvicorn in the submission's own sandboxed process
(`graders.serving.host`) on 127.0.0.1 and talks to it only over HTTP, like any client:
- POST /v1/completions and /v1/chat/completions, OpenAI wire format; `stream: true` gives
  server-sent events `data: {json}\\n\\n`, one chunk per token, ending with `data: [DONE]\\n\\n`;
  `stream_options: {"include_usage": true}` adds a final chunk with `usage`; non-stream
  responses carry `usage` {prompt_tokens, completion_tokens, total_tokens};
  `max_tokens` is honoured exactly when `ignore_eos: true` is sent;
- HTTP 429 with a `Retry-After` header when the waiting queue is full;
- a client that disconnects from a stream frees its batch slot (the request is aborted);
- GET /health -> 200; GET /metrics -> Prometheus text format including a time-to-first-token
  histogram (`*_time_to_first_token_seconds`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class ServerSettings:
    max_batch: int = 32
    max_waiting: int = 64
    request_timeout_s: float = 30.0


class Submission(Protocol):
    def create_app(self, engine: Any, config: ServerSettings) -> Any: ...


REQUIRED_NAMES: tuple[str, ...] = ("create_app",)
