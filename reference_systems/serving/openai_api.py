"""OpenAI wire format for the serving lab: request models, response/chunk builders, SSE.

Only what a greedy single-choice server needs: `/v1/completions` and `/v1/chat/completions`,
with `stream`, `stream_options.include_usage`, `max_tokens`, and vLLM's extras `ignore_eos`
and `stop_token_ids`. Sampling knobs (`temperature`, `top_p`, `seed`) are accepted and ignored:
decoding is always greedy, so outputs are deterministic.
"""
from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class StreamOptions(BaseModel):
    include_usage: bool = False


class GenerationParams(BaseModel):
    model_config = ConfigDict(extra="allow")  # unknown OpenAI fields are accepted, not errors

    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = 1
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    ignore_eos: bool = False
    stop_token_ids: list[int] = Field(default_factory=list)


class CompletionRequest(GenerationParams):
    prompt: str | list[int]


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str


class ChatRequest(GenerationParams):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)


def error_body(message: str, type_: str = "invalid_request_error", code: int = 400) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


# @cell task_1_1_sse
def sse(obj: dict[str, Any] | str) -> bytes:
    """One server-sent event: `data: {json}` or `data: [DONE]`, then a blank line."""
    ### BEGIN SOLUTION
    data = obj if isinstance(obj, str) else json.dumps(obj, separators=(",", ":"))
    return f"data: {data}\n\n".encode()
    ### END SOLUTION
# @end


def new_id(chat: bool) -> str:
    return ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


class Shaper:
    """Builds the response objects of one request, completion or chat flavoured."""

    def __init__(self, chat: bool, model: str) -> None:
        self.chat, self.model = chat, model
        self.id = new_id(chat)
        self.created = int(time.time())
        self._role_sent = False

    def _head(self, obj: str) -> dict[str, Any]:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model}

    def chunk(self, text: str, finish_reason: str | None) -> dict[str, Any]:
        if not self.chat:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
            return {**self._head("text_completion"), "choices": [choice]}
        delta: dict[str, Any] = {"content": text}
        if not self._role_sent:
            delta = {"role": "assistant", **delta}
            self._role_sent = True
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {**self._head("chat.completion.chunk"), "choices": [choice]}

    def usage_chunk(self, u: dict[str, int], timing: dict[str, float]) -> dict[str, Any]:
        obj = "chat.completion.chunk" if self.chat else "text_completion"
        return {**self._head(obj), "choices": [], "usage": u, "server_timing": timing}

    def full(self, text: str, finish_reason: str | None, u: dict[str, int], timing: dict[str, float]) -> dict[str, Any]:
        if self.chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                      "finish_reason": finish_reason}
            return {**self._head("chat.completion"), "choices": [choice], "usage": u, "server_timing": timing}
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
        return {**self._head("text_completion"), "choices": [choice], "usage": u, "server_timing": timing}
