"""The serving lab's reference server: an OpenAI-compatible ASGI app over the continuous-batching engine.

    app = create_app(ServerConfig(max_batch=32))       # FastAPI app; serve it with uvicorn
    python -m reference_systems.serving.server --port 8100 [--naive]

Routes: POST /v1/completions, POST /v1/chat/completions (`stream: true` -> server-sent events,
`data: {...}` chunks, one per generated token, then `data: [DONE]`), GET /v1/models, /health,
/metrics (Prometheus). A full queue answers 429 with Retry-After; a client that disconnects
from a stream has its request aborted, which frees its batch slot at the next engine step.

Every response carries `server_timing` (in the final usage chunk when streaming with
`stream_options.include_usage`): server-side arrival, first-token and finish times
(time.monotonic) and the TTFT / e2e they imply, so a client can check its own measurements.
"""
from __future__ import annotations

import argparse
import asyncio
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from labkit.serving import Detokenizer
from reference_systems.serving.engine import Engine, StepOutput
from reference_systems.serving.openai_api import (
    ChatRequest,
    CompletionRequest,
    GenerationParams,
    Shaper,
    error_body,
    sse,
    usage,
)
from reference_systems.serving.scheduler import Handle, QueueFull, Scheduler

PREFIX = "ailab_serving_"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                   20.0, 40.0, 80.0)


@dataclass
class ServerConfig:
    model_dir: str | None = None   # None: build/reuse the tiny GPT-2 under the cache
    model_name: str = "tiny-gpt2"  # the `model` clients must send (or omit)
    max_batch: int = 32            # concurrent sequences in the running batch (KV-cache slots)
    max_waiting: int = 64          # queued requests beyond the batch before 429
    threads: int | None = 1        # torch threads; >1 collapses when cores are shared with the load generator
    request_timeout_s: float = 60.0
    default_max_tokens: int = 16   # OpenAI's default for /v1/completions
    device: str = "cpu"            # "cuda": the engine on the GPU, decode steps as CUDA graphs (docs/gpu.md)


class Backend(Protocol):
    """What the routes need from a scheduler: admit, stream tokens, release."""
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def alive(self) -> bool: ...
    def submit(self, handle: Handle) -> None: ...
    def tokens(self, handle: Handle) -> Any: ...
    def release(self, handle: Handle) -> None: ...


class Metrics:
    """Prometheus series named after vLLM's (`vllm:x` -> `ailab_serving_x`), in a registry per app."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.ttft = Histogram(PREFIX + "time_to_first_token_seconds", "Arrival to first token handed to the HTTP layer.",
                              buckets=LATENCY_BUCKETS, registry=r)
        self.e2e = Histogram(PREFIX + "e2e_request_latency_seconds", "Arrival to last token.",
                             buckets=LATENCY_BUCKETS, registry=r)
        self.tpot = Histogram(PREFIX + "time_per_output_token_seconds", "Mean time per output token after the first.",
                              buckets=LATENCY_BUCKETS, registry=r)
        self.prompt_tokens = Counter(PREFIX + "prompt_tokens", "Prompt tokens admitted.", registry=r)
        self.generation_tokens = Counter(PREFIX + "generation_tokens", "Tokens generated.", registry=r)
        self.requests = Counter(PREFIX + "requests", "Requests by outcome.", ["outcome"], registry=r)
        self.running = Gauge(PREFIX + "num_requests_running", "Requests in the running batch.", registry=r)
        self.waiting = Gauge(PREFIX + "num_requests_waiting", "Requests queued for a batch slot.", registry=r)

    def on_step(self, running: int, waiting: int) -> None:
        self.running.set(running)
        self.waiting.set(waiting)


def create_app(engine_cfg: ServerConfig | None = None, *, engine: Engine | None = None,
               backend_factory: Any = None) -> FastAPI:
    """The reference app. `engine` reuses a loaded engine; `backend_factory(engine, cfg, on_step)` swaps the scheduler."""
    cfg = engine_cfg or ServerConfig()
    engine = engine or Engine(cfg.model_dir, max_batch=cfg.max_batch, threads=cfg.threads, device=cfg.device)
    metrics = Metrics()
    if backend_factory is None:
        backend: Backend = Scheduler(engine, max_waiting=cfg.max_waiting, on_step=metrics.on_step)
    else:
        backend = backend_factory(engine, cfg, metrics.on_step)
    tok = engine.tokenizer

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        backend.start()
        yield
        backend.stop()

    app = FastAPI(title="ailab serving reference", lifespan=lifespan)
    app.add_middleware(StampArrival)
    app.state.engine, app.state.backend, app.state.metrics, app.state.config = engine, backend, metrics, cfg

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        msg = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return JSONResponse(error_body(f"invalid request: {msg}"), status_code=400)

    @app.get("/health")
    async def health() -> Response:
        if backend.alive():
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "engine thread not running"}, status_code=503)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": cfg.model_name, "object": "model", "created": 0,
                                            "owned_by": "ailab", "max_model_len": engine.max_len}]}

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request) -> Response:
        arrival = request.scope["ailab_arrival"]
        ids = body.prompt if isinstance(body.prompt, list) else tok(body.prompt).input_ids
        return await serve(body, ids, chat=False, arrival=arrival, max_tokens=body.max_tokens)

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest, request: Request) -> Response:
        arrival = request.scope["ailab_arrival"]
        text = tok.apply_chat_template([m.model_dump() for m in body.messages], add_generation_prompt=True,
                                       tokenize=False)
        ids = tok(text).input_ids
        return await serve(body, ids, chat=True, arrival=arrival, max_tokens=body.max_completion_tokens or body.max_tokens)

    async def serve(body: GenerationParams, ids: list[int], chat: bool, arrival: float, max_tokens: int | None) -> Response:
        if body.model is not None and body.model != cfg.model_name:
            return JSONResponse(error_body(f"model {body.model!r} does not exist; this server serves "
                                           f"{cfg.model_name!r}", "NotFoundError", 404), status_code=404)
        if body.n != 1:
            return JSONResponse(error_body("only n=1 is supported"), status_code=400)
        if not ids:
            return JSONResponse(error_body("the prompt is empty"), status_code=400)
        if max_tokens is None:
            max_tokens = cfg.default_max_tokens if not chat else max(1, min(256, engine.max_len - len(ids)))
        if len(ids) + max_tokens > engine.max_len:
            return JSONResponse(error_body(
                f"this model's maximum context length is {engine.max_len} tokens; the prompt has {len(ids)} and "
                f"max_tokens asks for {max_tokens}: shorten the prompt or lower max_tokens"), status_code=400)
        if any(not 0 <= t < engine.vocab_size for t in ids):
            return JSONResponse(error_body(f"prompt token ids must be in [0, {engine.vocab_size})"), status_code=400)
        stop = set(body.stop_token_ids) | (set() if body.ignore_eos else {engine.eos_id})
        shaper = Shaper(chat, cfg.model_name)
        handle = Handle(shaper.id, list(ids), max_tokens, frozenset(stop), asyncio.get_running_loop(), arrival=arrival)
        try:
            backend.submit(handle)
        except QueueFull as e:
            metrics.requests.labels("rejected").inc()
            return JSONResponse(error_body(f"server busy ({e}); retry later", "RateLimitError", 429),
                                status_code=429, headers={"Retry-After": "1"})
        metrics.prompt_tokens.inc(len(ids))
        run = Run(handle, backend, metrics, Detokenizer(tok), cfg.request_timeout_s)
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(run.stream(shaper, include_usage), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        return await run.whole(shaper)

    return app


class StampArrival:
    """ASGI middleware: a request's arrival is when the server first sees it, before body parsing and validation."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        scope["ailab_arrival"] = time.monotonic()
        await self.app(scope, receive, send)


class Run:
    """Drives one admitted request to its HTTP response and always releases it."""

    def __init__(self, handle: Handle, backend: Backend, metrics: Metrics, detok: Detokenizer, timeout_s: float):
        self.h, self.backend, self.metrics, self.detok = handle, backend, metrics, detok
        self.deadline = handle.arrival + timeout_s
        self.n = 0
        self.finish_reason: str | None = None

    def _text(self, out: StepOutput) -> str:
        self.n += 1
        self.finish_reason = out.finish_reason
        if self.h.first_token is None:
            self.h.first_token = time.monotonic()
        if out.finish_reason == "stop":  # stop tokens count as generated but are not shown
            return self.detok.flush()
        return self.detok.push(out.token_id, last=out.finished)

    def _done(self) -> tuple[dict[str, int], dict[str, float]]:
        h, m = self.h, self.metrics
        h.finish = time.monotonic()
        first = h.first_token or h.finish
        m.ttft.observe(first - h.arrival)
        m.e2e.observe(h.finish - h.arrival)
        if self.n > 1:
            m.tpot.observe((h.finish - first) / (self.n - 1))
        m.generation_tokens.inc(self.n)
        timing = {"arrival": h.arrival, "first_token": first, "finish": h.finish,
                  "ttft_s": first - h.arrival, "e2e_s": h.finish - h.arrival}
        return usage(len(h.prompt_ids), self.n), timing

    async def stream(self, shaper: Shaper, include_usage: bool):
        outcome = "abort"  # unless we get to the end: the client went away mid-stream
        try:
            async with asyncio.timeout_at(self._loop_deadline()):
                async for out in self.backend.tokens(self.h):
                    text = self._text(out)
                    yield sse(shaper.chunk(text, out.finish_reason))
            u, timing = self._done()
            if include_usage:
                yield sse(shaper.usage_chunk(u, timing))
            yield sse("[DONE]")
            outcome = self.finish_reason or "stop"
        except TimeoutError:
            outcome = "timeout"
            yield sse(error_body("request timed out", "Timeout", 504))
            yield sse("[DONE]")
        except (ValueError, RuntimeError) as e:
            outcome = "error"
            yield sse(error_body(str(e), "InternalServerError", 500))
            yield sse("[DONE]")
        finally:
            self.backend.release(self.h)
            self.metrics.requests.labels(outcome).inc()

    async def whole(self, shaper: Shaper) -> Response:
        outcome, parts = "error", []
        try:
            async with asyncio.timeout_at(self._loop_deadline()):
                async for out in self.backend.tokens(self.h):
                    parts.append(self._text(out))
            u, timing = self._done()
            outcome = self.finish_reason or "stop"
            return JSONResponse(shaper.full("".join(parts), self.finish_reason, u, timing))
        except TimeoutError:
            outcome = "timeout"
            return JSONResponse(error_body("request timed out", "Timeout", 504), status_code=504)
        except (ValueError, RuntimeError) as e:
            return JSONResponse(error_body(str(e), "InternalServerError", 500), status_code=500)
        finally:
            self.backend.release(self.h)
            self.metrics.requests.labels(outcome).inc()

    def _loop_deadline(self) -> float:
        # handle times are time.monotonic(); asyncio's clock is the loop's own
        loop = asyncio.get_running_loop()
        return loop.time() + (self.deadline - time.monotonic())


def main(argv: list[str] | None = None) -> None:
    import sys

    import uvicorn
    # The engine thread's Python bits hold the GIL; a shorter switch interval lets the event loop
    # answer sockets sooner (lower TTFT/ITL seen by clients) for a little throughput.
    sys.setswitchinterval(0.001)
    ap = argparse.ArgumentParser(description="Serve the tiny GPT-2 with an OpenAI-compatible API on 127.0.0.1.")
    ap.add_argument("--port", type=int, default=8100)
    ap.add_argument("--naive", action="store_true", help="one request at a time (the baseline) instead of batching")
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--max-waiting", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--request-timeout", type=float, default=60.0)
    ap.add_argument("--served-model-name", default=ServerConfig.model_name,
                    help="the `model` requests must name (as vLLM's flag; vLLM's default is the model folder's path)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    ap.add_argument("--model", default="tiny-gpt2", help="a name in reference_systems.serving.model.MODELS")
    args = ap.parse_args(argv)
    from reference_systems.serving.model import model_dir

    cfg = ServerConfig(model_dir=str(model_dir(args.model)), max_batch=args.max_batch, max_waiting=args.max_waiting,
                       threads=args.threads, request_timeout_s=args.request_timeout,
                       model_name=args.served_model_name, device=args.device)
    if args.naive:
        from reference_systems.serving.naive_server import create_naive_app
        app = create_naive_app(cfg)
    else:
        app = create_app(cfg)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
