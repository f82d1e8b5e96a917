"""Host one observability submission: the support assistant with the candidate's instrumentation and detectors.

Runs inside the sandboxed worker process (`graders.engine.sandbox.Worker` with a command):

    python -m graders.observability.host --module candidate.py --port N --backend http://127.0.0.1:M

The lab owns the tracer provider (an in-memory exporter the grader drains), the Prometheus registry
and the `Pipeline` (an HTTP client to the backend that also records ground truth: which span was
current when the model or the retriever was called, and what they really returned). Routes:

POST /ask {"query"}          the candidate's handler; 502 when the backend failed, 500 on a bug
POST /ask_plain {"query"}    `interface.plain_handler`: the same work with no telemetry (overhead baseline)
GET  /metrics                the candidate's registry
POST /__ailab__/telemetry    drain finished spans and ground truth since the last call
POST /__ailab__/detect       {"now", "spans", "metrics"} -> every detector's alerts for this tick
GET  /__ailab__/health       {"ok", "error", "in_flight"}: did the submission load; requests being handled
"""
from __future__ import annotations

import argparse
import contextvars
import json
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
from fastapi import Request  # module level: FastAPI resolves string annotations in module globals

from graders.observability import interface as api

HEALTH_PATH = "/__ailab__/health"
_request: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("ailab_request", default=None)


def _current_ids() -> tuple[str | None, str | None]:
    from opentelemetry import trace

    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None, None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


class GroundTruth:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self.generations: dict[str, dict[str, Any]] = {}
        self.retrievals: dict[str, dict[str, Any]] = {}

    def note(self, table: str, span_id: str | None, trace_id: str | None, **values: Any) -> None:
        req = _request.get()
        if req is not None and req.get("trace_id") is None:
            req["trace_id"] = trace_id
        if span_id is not None:
            with self.lock:
                getattr(self, table)[span_id] = {"trace_id": trace_id, **values}

    def drain(self) -> dict[str, Any]:
        with self.lock:
            out = {"requests": self.requests, "generations": self.generations, "retrievals": self.retrievals}
            self.requests, self.generations, self.retrievals = [], {}, {}
        return out


class BackendGeneration:
    """A streamed generation from the backend's model server; usage is known once the stream ends."""

    def __init__(self, client: httpx.Client, truth: GroundTruth, prompt: str, max_tokens: int) -> None:
        self.input_tokens = self.output_tokens = 0
        self.finish_reason = ""
        self._truth = truth
        self._trace_id, self._span_id = _current_ids()
        request = client.build_request("POST", "/generate", json={"prompt": prompt, "max_tokens": max_tokens})
        self._response = client.send(request, stream=True)
        if self._response.status_code != 200:
            message = self._response.read().decode(errors="replace")[:200]
            self._response.close()
            truth.note("generations", self._span_id, self._trace_id, error=self._response.status_code)
            raise api.UpstreamError("generator", self._response.status_code, message)

    def __iter__(self) -> Iterator[str]:
        try:
            for line in self._response.iter_lines():
                if not line:
                    continue
                msg = json.loads(line)
                if msg.get("done"):
                    self.input_tokens, self.output_tokens = msg["input_tokens"], msg["output_tokens"]
                    self.finish_reason = msg["finish_reason"]
                    self._truth.note("generations", self._span_id, self._trace_id, input_tokens=self.input_tokens,
                                     output_tokens=self.output_tokens, finish_reason=self.finish_reason)
                    return
                yield msg["text"]
            raise api.UpstreamError("generator", 502, "the model server's stream ended early")
        finally:
            self._response.close()


class BackendPipeline:
    """`interface.Pipeline` over HTTP to the backend process."""

    def __init__(self, backend_url: str, config: api.ServiceConfig) -> None:
        self.config = config
        self.truth = GroundTruth()
        self.client = httpx.Client(base_url=backend_url, timeout=30,
                                   limits=httpx.Limits(max_connections=64, max_keepalive_connections=64))

    def retrieve(self, query: str, k: int) -> api.Retrieval:
        trace_id, span_id = _current_ids()
        reply = self.client.post("/retrieve", json={"query": query, "k": k})
        if reply.status_code != 200:
            self.truth.note("retrievals", span_id, trace_id, k=k, error=reply.status_code)
            raise api.UpstreamError("retriever", reply.status_code, reply.text[:200])
        body = reply.json()
        self.truth.note("retrievals", span_id, trace_id, k=k, cache_hit=body["cache_hit"])
        hits = [api.Hit(h["doc_id"], h["title"], h["text"], h["score"]) for h in body["hits"]]
        return api.Retrieval(hits, body["cache_hit"], body["query_embedding"])

    def prompt(self, query: str, hits: list[api.Hit]) -> str:
        passages = "\n".join(f"[{i + 1}] {h.title}: {h.text[:160]}" for i, h in enumerate(hits[:3]))
        return f"Answer the customer's question from the passages.\n{passages}\nQuestion: {query}\nAnswer:"

    def generate(self, prompt: str, max_tokens: int) -> api.Generation:
        return BackendGeneration(self.client, self.truth, prompt, max_tokens)


class SpanBuffer:
    """An OpenTelemetry span exporter that keeps finished spans until the grader drains them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spans: list[dict[str, Any]] = []

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        records = [span_record(s) for s in spans]
        with self.lock:
            self.spans.extend(records)
            del self.spans[:-50_000]  # never grow without bound if nobody drains
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True

    def drain(self) -> list[dict[str, Any]]:
        with self.lock:
            out, self.spans = self.spans, []
        return out


def span_record(span: Any) -> dict[str, Any]:
    ctx, parent = span.get_span_context(), span.parent
    return {"name": span.name, "trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x"),
            "parent_id": format(parent.span_id, "016x") if parent is not None else None,
            "kind": span.kind.name, "start_ns": span.start_time, "end_ns": span.end_time,
            "status": span.status.status_code.name,
            "attributes": {k: list(v) if isinstance(v, tuple) else v for k, v in (span.attributes or {}).items()}}


class Assistant:
    def __init__(self, module_path: str, backend_url: str, config: api.ServiceConfig) -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from prometheus_client import CollectorRegistry

        self.config = config
        self.pipeline = BackendPipeline(backend_url, config)
        self.spans = SpanBuffer()
        provider = TracerProvider(resource=Resource.create({"service.name": "support-assistant"}))
        provider.add_span_processor(SimpleSpanProcessor(self.spans))  # type: ignore[arg-type]
        # Not installed as the global provider: FastAPI would then add its own spans to the candidate's telemetry.
        self.registry = CollectorRegistry()
        self.handler: api.Handler | None = None
        self.detectors: list[tuple[str, Any]] = []
        self.in_flight = 0  # /ask and /ask_plain requests being handled, so the grader can drain between phases
        self._in_flight_lock = threading.Lock()
        self.error = self._load(module_path, provider.get_tracer("support-assistant"))

    def _load(self, module_path: str, tracer: Any) -> str | None:
        from graders.engine.worker import describe, load_submission, where

        try:
            module = load_submission(module_path)
        except BaseException as exc:  # noqa: BLE001 - SyntaxError, ImportError, SystemExit: all become a reason
            return f"the submission failed while loading: {describe(exc)}{where(exc, module_path)}"
        for name in api.REQUIRED_NAMES:
            if not callable(getattr(module, name, None)):
                return f"the submission defines no function `{name}` (see the lab's interface)"
        try:
            handler = module.create_handler(tracer, self.registry, self.config)
        except BaseException as exc:  # noqa: BLE001
            traceback.print_exc()
            return f"create_handler(tracer, registry, config) raised {describe(exc)}{where(exc, module_path)}"
        if not callable(handler):
            return f"create_handler returned a {type(handler).__name__}, not a function handler(query, pipeline)"
        try:
            detectors = list(module.create_detectors(self.config))
        except BaseException as exc:  # noqa: BLE001
            traceback.print_exc()
            return f"create_detectors(config) raised {describe(exc)}{where(exc, module_path)}"
        names: set[str] = set()
        for i, det in enumerate(detectors):
            if not callable(getattr(det, "observe", None)):
                return f"create_detectors returned a {type(det).__name__} (item {i}) with no observe(telemetry) method"
            name = str(getattr(det, "name", "") or type(det).__name__)
            name = name if name not in names else f"{name}-{i}"
            names.add(name)
            self.detectors.append((name, det))
        self.handler = handler
        return None

    def ask(self, query: str, plain: bool) -> tuple[int, dict[str, Any]]:
        with self._in_flight_lock:
            self.in_flight += 1
        try:
            return self._ask(query, plain)
        finally:  # after the request's record: at 0, every request's spans and truth are drainable
            with self._in_flight_lock:
                self.in_flight -= 1

    def _ask(self, query: str, plain: bool) -> tuple[int, dict[str, Any]]:
        record: dict[str, Any] = {"query": query, "trace_id": None, "plain": plain}
        token = _request.set(record)
        started = time.perf_counter()
        try:
            handler = api.plain_handler if plain else self.handler
            assert handler is not None
            answer = handler(query, self.pipeline)
            status, body = 200, {"answer": str(getattr(answer, "text", "")),
                                 "citations": list(getattr(answer, "citations", []))}
        except api.UpstreamError as exc:
            status, body = 502, {"error": str(exc)}
        except Exception as exc:  # noqa: BLE001 - the candidate's bug is a 500, never a dead server
            status, body = 500, {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            _request.reset(token)
        record.update(ok=status == 200, status=status, latency_s=time.perf_counter() - started)
        if not plain:
            with self.pipeline.truth.lock:
                self.pipeline.truth.requests.append(record)
        return status, body

    def detect(self, payload: dict[str, Any]) -> dict[str, Any]:
        telemetry = api.Telemetry(
            now=float(payload["now"]),
            spans=[api.SpanRecord(**s) for s in payload["spans"]],
            metrics={job: [api.Sample(n, lbl, v) for n, lbl, v in samples] for job, samples in payload["metrics"].items()})
        alerts: dict[str, list[list[str]]] = {}
        errors: dict[str, str] = {}
        cost: dict[str, float] = {}
        for name, det in self.detectors:
            t = time.perf_counter()
            try:
                raised = det.observe(telemetry) or []
                alerts[name] = [[str(a.kind), str(a.component), str(getattr(a, "detail", ""))[:200]] for a in raised]
            except Exception as exc:  # noqa: BLE001 - one detector's bug must not silence the others
                errors[name] = f"{type(exc).__name__}: {exc}"
            cost[name] = time.perf_counter() - t
        return {"alerts": alerts, "errors": errors, "seconds": cost}


def create_app(assistant: Assistant) -> Any:
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, Response
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    app = FastAPI(title="support assistant (submission)")

    @app.get(HEALTH_PATH)
    def health() -> dict[str, Any]:
        return {"ok": assistant.error is None, "error": assistant.error, "in_flight": assistant.in_flight}

    def ask_route(plain: bool) -> Any:
        def route(body: dict[str, Any]) -> JSONResponse:
            query = body.get("query")
            if assistant.handler is None:
                return JSONResponse({"error": "the submission did not load"}, status_code=503)
            if not isinstance(query, str) or not query.strip():
                return JSONResponse({"error": "send {'query': a non-empty string}"}, status_code=400)
            status, reply = assistant.ask(query, plain)
            return JSONResponse(reply, status_code=status)
        return route

    app.post("/ask")(ask_route(plain=False))
    app.post("/ask_plain")(ask_route(plain=True))

    @app.get("/metrics")
    def metrics() -> Response:
        try:
            return Response(generate_latest(assistant.registry), media_type=CONTENT_TYPE_LATEST)
        except Exception as exc:  # noqa: BLE001 - a broken custom collector
            return Response(f"# metrics collection failed: {type(exc).__name__}: {exc}\n", status_code=500)

    @app.post("/__ailab__/telemetry")
    def telemetry() -> dict[str, Any]:
        truth = assistant.pipeline.truth.drain()  # first: a request is recorded only after its spans ended
        return {"spans": assistant.spans.drain(), "truth": truth}

    @app.post("/__ailab__/detect")
    async def detect(request: Request) -> dict[str, Any]:
        import anyio

        payload = await request.json()
        return await anyio.to_thread.run_sync(assistant.detect, payload)

    return app


def main(argv: list[str] | None = None) -> None:
    from graders.engine import guard  # before the submission loads: the reference is not its to use
    guard.install()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--module", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--backend", required=True)
    ap.add_argument("--config", default="{}", help="ServiceConfig fields as JSON")
    args = ap.parse_args(argv)
    if not args.backend.startswith("http://127.0.0.1:"):
        raise SystemExit("the backend must be on 127.0.0.1")
    import uvicorn

    assistant = Assistant(args.module, args.backend, api.ServiceConfig(**json.loads(args.config)))
    if assistant.error:
        print(assistant.error, file=sys.stderr, flush=True)
    print(f"assistant ready on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
    uvicorn.run(create_app(assistant), host="127.0.0.1", port=args.port, log_level="warning", access_log=False,
                timeout_graceful_shutdown=2)


if __name__ == "__main__":
    main()
