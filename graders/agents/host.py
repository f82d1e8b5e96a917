"""Host one agents-lab submission: load it, call `create_agent(config)` once, serve conversations over HTTP.

Runs inside the sandboxed worker process (`graders.engine.sandbox.Worker` with a command):

    python -m graders.agents.host --module candidate.py --port N --config JSON

- GET /__ailab__/health -> {"ok": bool, "error": str | None} (the submission loaded, or why not);
- POST /conversation {"conversation", "tools_url", "model_url", "model", "token", "schemas"} runs
  `agent.handle(conversation, tools, model)` in the request's own thread (conversations run concurrently) and
  answers {"ok", "result" | "error", "seconds", "spans"}: the spans the agent's tracer finished during it.

The world and the model server live in the grader's process; the token only opens this conversation's session.
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from http.server import ThreadingHTTPServer
from typing import Any

from graders.engine.worker import JsonHandler

HEALTH_PATH = "/__ailab__/health"
MAX_BODY = 1 << 20


class BucketExporter:
    """An OpenTelemetry span exporter that keeps finished spans per trace id, for the host to take per conversation."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spans: dict[int, list[dict[str, Any]]] = {}

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        with self.lock:
            for s in spans:
                self.spans.setdefault(s.context.trace_id, []).append({
                    "name": s.name, "span_id": s.context.span_id, "parent_id": s.parent.span_id if s.parent else None,
                    "attributes": {k: v if isinstance(v, (str, int, float, bool)) else list(v)
                                   for k, v in (s.attributes or {}).items()},
                    "status": s.status.status_code.name, "start": s.start_time, "end": s.end_time})
                if len(self.spans[s.context.trace_id]) > 2000:  # a runaway agent: keep the first ones only
                    self.spans[s.context.trace_id].pop()
        return SpanExportResult.SUCCESS

    def take(self, trace_id: int) -> list[dict[str, Any]]:
        with self.lock:
            return self.spans.pop(trace_id, [])

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 0) -> bool:
        return True


class State:
    agent: Any = None
    error: str | None = None
    tracer: Any = None
    exporter: BucketExporter | None = None
    http: Any = None
    module_path: str = ""


def load(module_path: str, config_json: str) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from graders.agents.interface import AgentConfig, Policy
    from graders.engine.worker import describe, load_submission, where

    State.exporter = BucketExporter()
    provider = TracerProvider()  # not the global one: only the agent's own spans
    provider.add_span_processor(SimpleSpanProcessor(State.exporter))  # type: ignore[arg-type]
    State.tracer = provider.get_tracer("ailab.agents")
    raw = json.loads(config_json)
    config = AgentConfig(policy=Policy(**raw.pop("policy")), tracer=State.tracer, **raw)
    try:
        module = load_submission(module_path)
    except BaseException as exc:  # noqa: BLE001 - SyntaxError, ImportError, SystemExit: all become a reason
        State.error = f"the submission failed while loading: {describe(exc)}{where(exc, module_path)}"
        return
    create_agent = getattr(module, "create_agent", None)
    if not callable(create_agent):
        State.error = "the submission defines no function `create_agent(config)` (see graders/agents/interface.py)"
        return
    try:
        State.agent = create_agent(config)
    except BaseException as exc:  # noqa: BLE001
        State.error = f"create_agent(config) raised {describe(exc)}{where(exc, module_path)}"
        return
    if not callable(getattr(State.agent, "handle", None)):
        State.error = f"create_agent returned a {type(State.agent).__name__} without a handle(conversation, tools, model)"


def converse(request: dict[str, Any]) -> dict[str, Any]:
    import openai

    from graders.agents.interface import SESSION_HEADER, Conversation, Model, Tools
    from graders.engine.worker import describe, where

    token = str(request["token"])
    conversation = Conversation(**request["conversation"])
    tools = Tools(request["tools_url"], token, request["schemas"], State.http)
    client = openai.OpenAI(base_url=request["model_url"], api_key="ailab", max_retries=0,
                           default_headers={SESSION_HEADER: token}, http_client=State.http)
    model = Model(client, request["model"])
    started = time.perf_counter()
    with State.tracer.start_as_current_span("ailab.conversation") as root:
        trace_id = root.get_span_context().trace_id
        try:
            result = State.agent.handle(conversation, tools, model)
            json.dumps(result)
            reply: dict[str, Any] = {"ok": True, "result": result}
        except BaseException as exc:  # noqa: BLE001 - every candidate failure becomes a reply
            reply = {"ok": False, "error": describe(exc) + where(exc, State.module_path),
                     "traceback": traceback.format_exc()[-3000:]}
    reply["seconds"] = time.perf_counter() - started
    reply["spans"] = [s for s in State.exporter.take(trace_id) if s["name"] != "ailab.conversation"]  # type: ignore[union-attr]
    return reply


class Handler(JsonHandler):
    health_path = HEALTH_PATH
    @staticmethod
    def json_default(value: Any) -> Any:
        return str(value)  # spans and tool results may carry any object: never refuse a reply over one

    def load_error(self) -> str | None:
        return State.error

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        if self.path != "/conversation" or length > MAX_BODY:
            self._reply(404, {"ok": False, "error": "POST /conversation only"})
            return
        if State.error is not None:
            self._reply(200, {"ok": False, "error": State.error, "spans": [], "seconds": 0.0})
            return
        try:
            self._reply(200, converse(json.loads(self.rfile.read(length))))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the grader cut this conversation off


def main(argv: list[str] | None = None) -> None:
    from graders.engine import guard  # before the submission loads: the reference is not its to use
    guard.install()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--module", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--config", required=True, help="AgentConfig fields as JSON (policy as a table)")
    args = ap.parse_args(argv)
    import httpx

    State.module_path = args.module
    State.http = httpx.Client(limits=httpx.Limits(max_connections=64, max_keepalive_connections=32))
    load(args.module, args.config)
    if State.error:
        print(State.error, file=sys.stderr, flush=True)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"host ready on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
