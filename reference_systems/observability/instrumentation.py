"""The reference instrumentation: `interface.plain_handler` with OpenTelemetry spans and Prometheus metrics.

Spans follow the OpenTelemetry GenAI semantic conventions (v1.37, "Development"):

    POST /ask                    SERVER    http.request.method, http.route, http.response.status_code
    ├── retrieval support-kb     CLIENT    gen_ai.operation.name=retrieval, gen_ai.data_source.id, gen_ai.request.top_k
    └── text_completion tiny-gpt2 CLIENT   gen_ai.operation.name, gen_ai.provider.name, gen_ai.request.model,
                                            gen_ai.request.max_tokens, gen_ai.usage.*, gen_ai.response.finish_reasons

Message content (query, prompt, answer) is never recorded. The retrieval span carries three bounded,
content-free signals for the detectors: the top hit's cosine score, whether the query embedding came
from the cache, and a 16-number sketch of the query embedding (projections onto fixed random unit
directions: enough to test for drift, far too little to recover the query).

A failure sets status ERROR and `error.type` on the failing child and on the root, then re-raises, so
the host still answers 502 (backend) or 500 (bug).
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import Counter, Histogram

from graders.observability.interface import Answer, Handler, Pipeline, ServiceConfig, UpstreamError


# @cell obs_task_1_1_metrics
# Request latency in seconds; the SLO threshold is added so the burn-rate detector can count slow requests exactly.
LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
RETRIEVAL_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
TPOT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.1, 0.25, 0.5, 1.0)


class Metrics:
    """The REQUIRED_METRICS of the interface, registered on `registry`."""

    def __init__(self, registry: Any, config: ServiceConfig) -> None:
        ### BEGIN SOLUTION
        latency = tuple(sorted({*LATENCY_BUCKETS, config.slo_latency_s}))
        self.requests = Counter("assistant_requests", "Requests answered, by outcome", ["status"], registry=registry)
        self.duration = Histogram("assistant_request_duration_seconds", "End-to-end /ask latency",
                                  registry=registry, buckets=latency)
        self.retrieval = Histogram("assistant_retrieval_duration_seconds", "Retrieval call latency",
                                   registry=registry, buckets=RETRIEVAL_BUCKETS)
        self.ttft = Histogram("assistant_time_to_first_token_seconds", "Generation requested -> first token",
                              registry=registry, buckets=latency)
        self.tpot = Histogram("assistant_time_per_output_token_seconds", "Mean gap between output tokens",
                              registry=registry, buckets=TPOT_BUCKETS)
        self.tokens = Counter("assistant_tokens", "Tokens processed by the model", ["type"], registry=registry)
        self.cache = Counter("assistant_retrieval_cache_requests", "Query-embedding cache lookups", ["result"],
                             registry=registry)
        # Resolve label children once: .labels() on every request is measurable overhead.
        self.ok, self.error = self.requests.labels(status="ok"), self.requests.labels(status="error")
        self.input_tokens, self.output_tokens = self.tokens.labels(type="input"), self.tokens.labels(type="output")
        self.hit, self.miss = self.cache.labels(result="hit"), self.cache.labels(result="miss")
        ### END SOLUTION


# @cell obs_task_1_2_handler
SKETCH_DIMS = 16
EMBEDDING_DIM = 384


def sketch_directions(dim: int = EMBEDDING_DIM, k: int = SKETCH_DIMS, seed: int = 20260401) -> np.ndarray:
    """k fixed random unit vectors (rows): the same in every process, so sketches are comparable across runs."""
    d = np.random.default_rng(seed).standard_normal((k, dim))
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def error_type(exc: BaseException) -> str:
    """A low-cardinality `error.type`: the HTTP status for a backend error, else the exception's class."""
    ### BEGIN SOLUTION
    return str(exc.status) if isinstance(exc, UpstreamError) else type(exc).__qualname__
    ### END SOLUTION


def _fail(span: Any, exc: BaseException, record: bool = True) -> None:
    """Mark `span` failed by `exc`: status ERROR and error.type (and the exception event when `record`)."""
    ### BEGIN SOLUTION
    if record:  # the exception event once, on the span where it happened
        span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
    span.set_attribute("error.type", error_type(exc))
    ### END SOLUTION


def create_handler(tracer: Any, registry: Any, config: ServiceConfig) -> Handler:
    """The instrumented handler: same work as `plain_handler`, plus spans on `tracer` and metrics on `registry`."""
    ### BEGIN SOLUTION
    m = Metrics(registry, config)
    directions = sketch_directions()
    retrieval_name = f"retrieval {config.data_source}"
    generation_name = f"text_completion {config.model}"
    generation_attrs = {"gen_ai.operation.name": "text_completion", "gen_ai.provider.name": config.provider,
                        "gen_ai.request.model": config.model, "gen_ai.request.max_tokens": config.max_tokens}
    retrieval_attrs = {"gen_ai.operation.name": "retrieval", "gen_ai.data_source.id": config.data_source,
                       "gen_ai.request.top_k": config.top_k}
    root_attrs = {"http.request.method": "POST", "http.route": "/ask"}

    def retrieve(query: str, pipeline: Pipeline) -> Any:
        with tracer.start_as_current_span(retrieval_name, kind=SpanKind.CLIENT, attributes=retrieval_attrs,
                                          record_exception=False, set_status_on_exception=False) as span:
            t0 = time.perf_counter()
            try:
                retrieval = pipeline.retrieve(query, config.top_k)
            except BaseException as exc:
                _fail(span, exc)
                raise
            m.retrieval.observe(time.perf_counter() - t0)
            (m.hit if retrieval.cache_hit else m.miss).inc()
            sketch = directions @ np.asarray(retrieval.query_embedding, dtype=np.float32)
            span.set_attributes({
                "ailab.retrieval.cache_hit": bool(retrieval.cache_hit),
                "ailab.retrieval.hits": len(retrieval.hits),
                "ailab.retrieval.top_score": float(retrieval.hits[0].score) if retrieval.hits else 0.0,
                "ailab.query.embedding_sketch": [round(float(x), 4) for x in sketch],
            })
            return retrieval

    def generate(prompt: str, pipeline: Pipeline) -> str:
        with tracer.start_as_current_span(generation_name, kind=SpanKind.CLIENT, attributes=generation_attrs,
                                          record_exception=False, set_status_on_exception=False) as span:
            try:
                t0 = time.perf_counter()
                generation = pipeline.generate(prompt, config.max_tokens)
                pieces: list[str] = []
                first = 0.0
                for piece in generation:
                    if not pieces:
                        first = time.perf_counter()
                        m.ttft.observe(first - t0)
                    pieces.append(piece)
                last = time.perf_counter()
            except BaseException as exc:
                _fail(span, exc)
                raise
            n_in, n_out = generation.input_tokens, generation.output_tokens
            if n_out > 1:
                m.tpot.observe((last - first) / (n_out - 1))
            m.input_tokens.inc(n_in)
            m.output_tokens.inc(n_out)
            span.set_attributes({"gen_ai.usage.input_tokens": n_in, "gen_ai.usage.output_tokens": n_out,
                                 "gen_ai.response.finish_reasons": [generation.finish_reason]})
            return "".join(pieces)

    def handler(query: str, pipeline: Pipeline) -> Answer:
        t0 = time.perf_counter()
        with tracer.start_as_current_span("POST /ask", kind=SpanKind.SERVER, attributes=root_attrs,
                                          record_exception=False, set_status_on_exception=False) as root:
            try:
                retrieval = retrieve(query, pipeline)
                text = generate(pipeline.prompt(query, retrieval.hits), pipeline)
            except BaseException as exc:
                _fail(root, exc, record=False)
                root.set_attribute("http.response.status_code", 502 if isinstance(exc, UpstreamError) else 500)
                m.error.inc()
                m.duration.observe(time.perf_counter() - t0)
                raise
            root.set_attribute("http.response.status_code", 200)
            m.ok.inc()
            m.duration.observe(time.perf_counter() - t0)
        return Answer(text, [h.doc_id for h in retrieval.hits[:3]])

    return handler
    ### END SOLUTION
