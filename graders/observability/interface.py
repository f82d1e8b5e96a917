"""The observability lab's contract: what a candidate notebook (and the reference) must define.

A submission is a module with two names:

    create_handler(tracer, registry, config: ServiceConfig) -> Handler
    create_detectors(config: ServiceConfig) -> list[Detector]

The system under observation is a "support assistant": retrieve passages from the support KB,
generate an answer with the lab's tiny GPT-2, cite the passages. The lab runs the retriever and the
model server (and the fault injector) in a backend process the submission never sees; the submission
gets a `Pipeline` that calls them. Its handler answers one question — `handler(query, pipeline)` —
and is where the instrumentation goes: OpenTelemetry spans on `tracer` (request, retrieval,
generation, GenAI attribute names) and Prometheus metrics registered on `registry` (names in
REQUIRED_METRICS). The grader hosts it (`graders.observability.host`) behind POST /ask.

Detectors see only telemetry. Once a tick (a second) the grader scrapes /metrics from the
assistant and from the backend (process metrics, as a node exporter would), collects the spans
that finished since the previous tick, and calls `detector.observe(telemetry)` on each detector.
What a detector returns while a condition holds is one page: it starts on the first tick it is
returned and ends on the first tick it is not. The grader stamps the time; detectors cannot.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

# What a page may blame. The injected faults' ground truth uses the same words.
COMPONENTS: tuple[str, ...] = ("retriever", "index", "cache", "generator", "traffic", "memory")

# Metric name -> Prometheus type. The assistant's metrics; all share the prefix `assistant_`.
REQUIRED_METRICS: dict[str, str] = {
    "assistant_requests_total": "counter",                       # label `status`: "ok" | "error"
    "assistant_request_duration_seconds": "histogram",
    "assistant_retrieval_duration_seconds": "histogram",
    "assistant_time_to_first_token_seconds": "histogram",
    "assistant_time_per_output_token_seconds": "histogram",
    "assistant_tokens_total": "counter",                         # label `type`: "input" | "output"
    "assistant_retrieval_cache_requests_total": "counter",       # label `result`: "hit" | "miss"
}


@dataclass(frozen=True)
class ServiceConfig:
    """The lab.toml [service] table."""
    model: str = "tiny-gpt2"            # gen_ai.request.model
    provider: str = "ailab"             # gen_ai.provider.name
    data_source: str = "support-kb"     # the retrieval span is named "retrieval support-kb"
    top_k: int = 5
    max_tokens: int = 16
    slo_latency_s: float = 1.0          # a request is good when it succeeds within this
    slo_target: float = 0.99            # of requests good
    time_scale: float = 360.0           # SRE windows are compressed: 1 h of the workbook = 3600 / 360 = 10 s here


@dataclass(frozen=True)
class Hit:
    doc_id: str
    title: str
    text: str
    score: float  # cosine similarity of the query and the document, in [-1, 1]


@dataclass(frozen=True)
class Retrieval:
    hits: list[Hit]
    cache_hit: bool                     # the query embedding came from the retriever's cache
    query_embedding: list[float]        # all-MiniLM-L6-v2, 384 floats, L2-normalised


class UpstreamError(RuntimeError):
    """The retriever or the model server answered with an error (HTTP `status`)."""

    def __init__(self, component: str, status: int, message: str) -> None:
        super().__init__(f"{component} answered HTTP {status}: {message}")
        self.component, self.status = component, status


class Generation(Protocol):
    """Iterate it for the answer's tokens (text pieces); after the last one the usage is known."""
    input_tokens: int
    output_tokens: int
    finish_reason: str  # "stop" | "length"

    def __iter__(self) -> Iterator[str]: ...


class Pipeline(Protocol):
    config: ServiceConfig

    def retrieve(self, query: str, k: int) -> Retrieval: ...
    def prompt(self, query: str, hits: list[Hit]) -> str: ...
    def generate(self, prompt: str, max_tokens: int) -> Generation: ...


@dataclass(frozen=True)
class Answer:
    text: str
    citations: list[str]  # doc ids


Handler = Callable[[str, Pipeline], Answer]


@dataclass(frozen=True)
class SpanRecord:
    """A finished span as detectors see it; times are seconds since the run started."""
    name: str
    trace_id: str
    span_id: str
    parent_id: str | None
    kind: str                  # "INTERNAL" | "SERVER" | "CLIENT" | ...
    start: float
    end: float
    status: str                # "UNSET" | "OK" | "ERROR"
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Sample:
    """One Prometheus sample as scraped: `name` includes suffixes (`_bucket`, `_sum`, `_count`, `_total`)."""
    name: str
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class Telemetry:
    now: float                           # seconds since the run started
    spans: list[SpanRecord]              # finished since the previous tick
    metrics: dict[str, list[Sample]]     # job -> samples: "assistant" (yours) and "backend" (process_* metrics)


@dataclass(frozen=True)
class Alert:
    kind: str        # your detector's words, e.g. "latency_slo_burn"
    component: str   # one of COMPONENTS: what you suspect
    detail: str = ""


class Detector(Protocol):
    name: str

    def observe(self, telemetry: Telemetry) -> list[Alert]: ...


class Submission(Protocol):
    def create_handler(self, tracer: Any, registry: Any, config: ServiceConfig) -> Handler: ...
    def create_detectors(self, config: ServiceConfig) -> list[Detector]: ...


REQUIRED_NAMES: tuple[str, ...] = ("create_handler", "create_detectors")


def plain_handler(query: str, pipeline: Pipeline) -> Answer:
    """The same work without telemetry: what instrumentation overhead is measured against."""
    cfg = pipeline.config
    retrieval = pipeline.retrieve(query, cfg.top_k)
    text = "".join(pipeline.generate(pipeline.prompt(query, retrieval.hits), cfg.max_tokens))
    return Answer(text, [h.doc_id for h in retrieval.hits[:3]])
