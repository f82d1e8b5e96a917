"""A real OpenAI-compatible model behind the desk's /v1, in place of the scripted one (`--model-url URL --model NAME`).

    up = connect("https://api.openai.com/v1", "gpt-4o-mini")   # GET URL/models: reachable, the key taken, NAME served
    model = UpstreamModel(up, max_calls=40, timeout_s=12.0)     # what the desk serves under /v1 (`create_app`)

The agent still talks only to the desk on 127.0.0.1, with its conversation's session token: the desk checks the
token (401 unknown, 410 once the conversation is over), keeps the per-conversation completion budget (lab.toml
[model] max_calls, then 429), sets `model` to NAME, adds the API key and forwards the body to URL/chat/completions
(non-streaming, as the lab's `Model.chat` asks; `stream: true` is refused). It counts each conversation's tokens from
the reply's `usage` (priced with lab.toml [prices], or `--model-prices`); a reply without `usage` is counted with
the scripted model's word counter and the counted `usage` is added to it, so the agent's spans and the desk agree.

The API key comes from $AILAB_MODEL_API_KEY in the grader's environment and goes only into the Authorization header
of these forwarded requests: the agent's sandboxed process gets a scrubbed environment and never sees it, the
session token is not forwarded, and neither is written into a scorecard (its environment names the URL and NAME).

URL is the base URL an `openai.OpenAI(base_url=...)` client takes (usually ending in /v1). Reaching it is the one
network access of a grading run besides 127.0.0.1: as root the grader runs in a loopback-only network namespace,
where no other server (not even one on the host's own 127.0.0.1) can be reached, so `--allow-network` is required
(graders.preflight.reference_url has the same rule for the serving lab's --reference-url).
"""
from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from reference_systems.agents.policy_model import SESSION_HEADER, Usage, count_tokens

API_KEY_ENV = "AILAB_MODEL_API_KEY"
CONNECT_S = 10.0  # GET URL/models at start
EXAMPLE = ("e.g. `vllm serve <model> --enable-auto-tool-choice --tool-call-parser hermes --port 8000`, then "
           "--model-url http://127.0.0.1:8000/v1")


def parse(url: str) -> str:
    """`url` as http(s)://HOST[:PORT][/PATH] without a trailing slash; one line saying what to pass otherwise."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        parts = None
    if (parts is None or parts.scheme not in ("http", "https") or not parts.hostname or parts.query
            or parts.fragment or parts.username or parts.password):
        raise SystemExit(f"--model-url {url!r} is not http(s)://HOST[:PORT]/PATH; pass the base URL an "
                         "`openai.OpenAI(base_url=...)` client takes, e.g. http://127.0.0.1:8000/v1 or "
                         f"https://api.openai.com/v1 (the API key goes in ${API_KEY_ENV}, never in the URL)")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def parse_prices(text: str) -> dict[str, float]:
    """`--model-prices INPUT,OUTPUT` (USD per million tokens) as lab.toml [prices]; one line otherwise."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 2 or any(v < 0 or v != v for v in values):
        raise SystemExit(f"--model-prices {text!r} is not INPUT,OUTPUT; pass the model's USD per million input and "
                         "output tokens, e.g. --model-prices 0.15,0.60")
    return {"input_usd_per_1m": values[0], "output_usd_per_1m": values[1]}


@dataclass(frozen=True)
class Upstream:
    """The model server an interviewer named: where, which model, and the key from the environment."""
    url: str    # base URL, checked by `parse` (no user, password or query in it)
    model: str
    api_key: str = ""

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def describe(self) -> dict[str, Any]:
        """What the scorecard's environment records: never the key."""
        return {"model": self.model, "model_url": self.url, "model_host": urlsplit(self.url).netloc,
                "model_kind": "external OpenAI-compatible server (--model-url); not deterministic",
                "model_api_key": f"from ${API_KEY_ENV}" if self.api_key else "none"}

    def __repr__(self) -> str:  # a traceback or a log line must not carry the key
        return f"Upstream(url={self.url!r}, model={self.model!r})"


def connect(url: str, model: str | None) -> Upstream:
    """The server at `url` and the model to ask for; one line when it cannot be used. `model` may be left out when
    the server lists exactly one (as vLLM does)."""
    url = parse(url)
    key = os.environ.get(API_KEY_ENV, "")
    probe = Upstream(url, model or "", key)
    try:
        reply = httpx.get(url + "/models", headers=probe.headers, timeout=CONNECT_S)
    except httpx.HTTPError as exc:
        raise SystemExit(f"--model-url: nothing answers at {url}/models ({type(exc).__name__}: {exc}); start the "
                         f"model server first or check the address ({EXAMPLE})") from None
    if reply.status_code in (401, 403):
        raise SystemExit(f"--model-url: GET {url}/models answered HTTP {reply.status_code}: "
                         + (f"the server refused the key in ${API_KEY_ENV}" if key else
                            f"the server wants an API key; export {API_KEY_ENV}=<key> (it is never written down)"))
    if reply.status_code != 200:
        raise SystemExit(f"--model-url: GET {url}/models answered HTTP {reply.status_code}; pass the base URL that "
                         f"/chat/completions follows, usually ending in /v1 ({EXAMPLE})")
    try:
        ids = [m["id"] for m in reply.json()["data"] if isinstance(m.get("id"), str)]
    except (ValueError, TypeError, KeyError, AttributeError):
        ids = []
    listed = ", ".join(ids[:5]) + (f" ({len(ids)} in all)" if len(ids) > 5 else "")
    if not model:
        if len(ids) != 1:
            raise SystemExit(f"--model-url {url} needs --model NAME: the server lists "
                             + (f"{len(ids)} models ({listed})" if ids else "no model"))
        model = ids[0]
    elif ids and model not in ids:
        raise SystemExit(f"--model {model!r}: the server at {url} does not list it; it serves {listed}")
    return Upstream(url, model, key)


class UpstreamModel:
    """Sessions, budgets and token counts per conversation, the completions themselves from the upstream server.
    Has the surface of reference_systems.agents.policy_model.PolicyModel that the desk and the runner use."""

    def __init__(self, upstream: Upstream, max_calls: int, timeout_s: float) -> None:
        self.upstream, self.max_calls, self.timeout_s = upstream, max_calls, timeout_s
        self.config = {"name": upstream.model}
        self.sessions: dict[str, tuple[str, int]] = {}
        self.usage: dict[str, Usage] = {}
        self.estimated: dict[str, int] = {}   # completions whose `usage` the server did not send
        self.closed: set[str] = set()
        self.lock = threading.Lock()
        self.http = httpx.Client(limits=httpx.Limits(max_connections=64, max_keepalive_connections=32))

    def open(self, token: str, conversation_id: str, seed: int) -> None:
        with self.lock:
            self.sessions[token] = (conversation_id, seed)
            self.usage[token] = Usage()
            self.estimated[token] = 0

    def close(self, token: str) -> None:
        with self.lock:
            self.closed.add(token)

    def drop(self, token: str) -> None:
        with self.lock:
            self.sessions.pop(token, None)
            self.usage.pop(token, None)
            self.estimated.pop(token, None)
            self.closed.discard(token)

    def shutdown(self) -> None:
        self.http.close()

    def complete(self, token: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """One forwarded completion (blocking: the desk runs it in a thread); (HTTP status, JSON body)."""
        if token not in self.sessions:
            return 401, {"error": {"message": f"unknown session; send the {SESSION_HEADER} header the lab gave you"}}
        if token in self.closed:
            return 410, {"error": {"message": "this conversation is over"}}
        if self.usage[token].calls >= self.max_calls:
            return 429, {"error": {"message": "completion budget of this conversation exhausted"}}
        if body.get("stream"):
            return 400, {"error": {"message": "this desk answers non-streaming chat completions only"}}
        if not isinstance(body.get("messages"), list):
            return 400, {"error": {"message": "messages must be a list of objects"}}
        up = self.upstream
        try:
            reply = self.http.post(up.url + "/chat/completions", json={**body, "model": up.model},
                                   headers=up.headers, timeout=self.timeout_s)
        except httpx.TimeoutException:
            return 504, {"error": {"message": f"the model server did not answer within {self.timeout_s:g} s"}}
        except httpx.HTTPError as exc:
            return 502, {"error": {"message": f"the model server could not be reached ({type(exc).__name__})"}}
        try:
            payload = reply.json()
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            return 502, {"error": {"message": f"the model server answered HTTP {reply.status_code} without JSON"}}
        if reply.status_code != 200:
            return reply.status_code, payload  # its own error (rate limit, bad request): the agent may retry
        usage: Any = payload.get("usage")
        estimated = not (isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int)
                         and isinstance(usage.get("completion_tokens"), int))
        try:
            message = payload["choices"][0]["message"]
        except (KeyError, IndexError, TypeError):
            message = None
        if estimated:
            try:
                out = message.get("content") or message.get("tool_calls") or ""  # type: ignore[union-attr]
            except AttributeError:
                out = ""
            prompt = count_tokens(body["messages"]) + count_tokens(body.get("tools") or [])
            usage = payload["usage"] = {"prompt_tokens": prompt, "completion_tokens": count_tokens(out),
                                        "total_tokens": prompt + count_tokens(out)}
        with self.lock:
            if token in self.closed or token not in self.usage:
                return 410, {"error": {"message": "this conversation is over"}}
            self.usage[token].add(int(usage["prompt_tokens"]), int(usage["completion_tokens"]), message)
            self.estimated[token] += estimated
        return 200, payload


def create_app(model: UpstreamModel) -> Any:
    """The desk's /v1 with an upstream model: POST /v1/chat/completions (forwarded), GET /v1/models (NAME only)."""
    app = FastAPI()

    @app.get("/v1/models")
    async def models() -> Any:
        return {"object": "list", "data": [{"id": model.upstream.model, "object": "model", "owned_by": "upstream"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        try:
            body = json.loads(await request.body())
        except ValueError:
            return JSONResponse({"error": {"message": "the body is not JSON"}}, status_code=400)
        if not isinstance(body, dict):
            return JSONResponse({"error": {"message": "the body must be a JSON object"}}, status_code=400)
        status, payload = await run_in_threadpool(model.complete, request.headers.get(SESSION_HEADER, ""), body)
        return JSONResponse(payload, status_code=status)

    return app


def preflight(lab: str, url: str | None, model: str | None, prices: str | None, network_open: bool,
              cluster: bool) -> None:
    """`ailab grade`'s checks of --model-url, --model and --model-prices before anything starts: one line each."""
    from graders.engine import netns

    if lab != "agents":
        raise SystemExit(f"--model-url, --model and --model-prices are for the agents lab (its policy model); lab "
                         f"{lab!r} has none, so leave them out")
    if not url:
        raise SystemExit("--model and --model-prices go with --model-url URL (the real model's base URL)")
    if cluster:
        raise SystemExit("--model-url is not supported with --workers or --scheduler yet; grade on this machine")
    url = parse(url)
    if prices:
        parse_prices(prices)
    if not network_open and not netns.isolated() and netns.unavailable() is None:
        raise SystemExit(f"--model-url {url}: as root the grader runs in a loopback-only network namespace, where "
                         "that server cannot be reached (even on this host's 127.0.0.1); add --allow-network "
                         "(submissions can then reach the network too: see docs/threat-model.md)")
    connect(url, model)
