"""The observability reference: the instrumented handler against real OpenTelemetry / Prometheus objects, and
each detector against a synthetic service whose telemetry is built from the lab's own interface types.

The synthetic service mimics what the grader's scenario produces each tick (spans finished since the last
tick, cumulative counters and histogram buckets, the backend's RSS), with each lab fault switchable.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import CollectorRegistry

from graders.observability.interface import (REQUIRED_METRICS, Alert, Hit, Retrieval, Sample, ServiceConfig, SpanRecord,
                                             Telemetry, UpstreamError)
from labkit.telemetry import (CounterDeltas, Window, bucket_deltas, fraction_above, histogram_counts, slope, total)
from reference_systems.observability import submission
from reference_systems.observability.detectors import create_detectors
from reference_systems.observability.instrumentation import LATENCY_BUCKETS, sketch_directions

CONFIG = ServiceConfig()
FAULTS = {"retriever_latency": "retriever", "engine_slowdown": "generator", "error_burst": "generator",
          "index_degradation": "index", "query_drift": "traffic", "memory_leak": "memory", "cache_miss": "cache"}


# --------------------------------------------------------------------------- telemetry helpers

def test_total_and_histogram_helpers() -> None:
    samples = [Sample("x_total", {"status": "ok"}, 5), Sample("x_total", {"status": "error"}, 2),
               Sample("x_created", {"status": "ok"}, 1e9),
               Sample("h_bucket", {"le": "0.5"}, 3), Sample("h_bucket", {"le": "1.0"}, 4),
               Sample("h_bucket", {"le": "+Inf"}, 6), Sample("h_count", {}, 6)]
    assert total(samples, "x_total") == 7 and total(samples, "x_total", status="error") == 2
    assert total(samples, "missing") == 0
    counts = histogram_counts(samples, "h")
    assert counts == {0.5: 3, 1.0: 4, math.inf: 6}
    later = {0.5: 4, 1.0: 7, math.inf: 10}
    deltas = bucket_deltas(later, counts)
    assert deltas == {0.5: 1, 1.0: 3, math.inf: 4}
    assert bucket_deltas(later, None) == {}
    assert fraction_above(deltas, 0.5) == (3, 4)
    assert fraction_above(deltas, 1.0) == (1, 4)


def test_counter_deltas_window_and_slope() -> None:
    c = CounterDeltas()
    assert [c.update(v) for v in (10, 12, 15, 3)] == [0, 2, 3, 3]  # the first is a baseline; 3 after a reset
    w = Window(seconds=5)
    for t in range(10):
        w.add(float(t), 1.0)
    assert len(w) == 6 and w.sum(9.0, 2.0) == 2 and w.rate(9.0, 4.0) == 1.0
    assert slope([(0, 1.0), (1, 3.0), (2, 5.0)]) == pytest.approx(2.0)
    assert math.isnan(slope([(0, 1.0)]))


# --------------------------------------------------------------------------- the instrumented handler

class FakeGeneration:
    def __init__(self, pieces: list[str], input_tokens: int) -> None:
        self.pieces, self.input_tokens, self.output_tokens, self.finish_reason = pieces, 0, 0, ""
        self._input = input_tokens

    def __iter__(self) -> Any:
        yield from self.pieces
        self.input_tokens, self.output_tokens, self.finish_reason = self._input, len(self.pieces), "length"


class FakePipeline:
    """Stands in for the host's HTTP client to the backend; records which span was current, as the host does."""

    def __init__(self, fail: str = "") -> None:
        self.config, self.fail = CONFIG, fail
        self.current: dict[str, str] = {}

    def retrieve(self, query: str, k: int) -> Retrieval:
        self.current["retrieve"] = trace.get_current_span().name  # type: ignore[attr-defined]
        if self.fail == "retriever":
            raise UpstreamError("retriever", 503, "index offline")
        emb = np.random.default_rng(1).standard_normal(384)
        emb /= np.linalg.norm(emb)
        hits = [Hit(f"d{i}", f"title {i}", "passage text", 0.8 - 0.1 * i) for i in range(k)]
        return Retrieval(hits, cache_hit=True, query_embedding=[float(x) for x in emb])

    def prompt(self, query: str, hits: list[Hit]) -> str:
        return f"passages {len(hits)}\nQuestion: {query}\nAnswer:"

    def generate(self, prompt: str, max_tokens: int) -> FakeGeneration:
        self.current["generate"] = trace.get_current_span().name  # type: ignore[attr-defined]
        if self.fail == "generator":
            raise UpstreamError("generator", 503, "model server overloaded")
        return FakeGeneration([" Ret", "urns", " take", " 30", " days"], input_tokens=57)


def instrumented() -> tuple[Any, InMemorySpanExporter, CollectorRegistry]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    registry = CollectorRegistry()
    handler = submission.create_handler(provider.get_tracer("test"), registry, CONFIG)
    return handler, exporter, registry


def test_handler_spans_attributes_and_metrics() -> None:
    handler, exporter, registry = instrumented()
    pipeline = FakePipeline()
    query = "how long do I have to send back shoes"
    answer = handler(query, pipeline)
    assert answer.text == " Returns take 30 days" and answer.citations == ["d0", "d1", "d2"]
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"POST /ask", "retrieval support-kb", "text_completion tiny-gpt2"}
    root, ret_span, gen_span = spans["POST /ask"], spans["retrieval support-kb"], spans["text_completion tiny-gpt2"]
    assert root.kind == SpanKind.SERVER and root.parent is None and gen_span.kind == SpanKind.CLIENT
    for child in (ret_span, gen_span):
        assert child.parent is not None and root.context is not None and child.parent.span_id == root.context.span_id
    ret: dict[str, Any] = dict(ret_span.attributes or {})
    gen: dict[str, Any] = dict(gen_span.attributes or {})
    assert pipeline.current == {"retrieve": "retrieval support-kb", "generate": "text_completion tiny-gpt2"}
    assert gen["gen_ai.operation.name"] == "text_completion"
    assert gen["gen_ai.provider.name"] == "ailab" and gen["gen_ai.request.model"] == "tiny-gpt2"
    assert gen["gen_ai.request.max_tokens"] == CONFIG.max_tokens
    assert gen["gen_ai.usage.input_tokens"] == 57 and gen["gen_ai.usage.output_tokens"] == 5
    assert list(gen["gen_ai.response.finish_reasons"]) == ["length"]
    assert ret["gen_ai.operation.name"] == "retrieval"
    assert ret["gen_ai.data_source.id"] == "support-kb" and ret["gen_ai.request.top_k"] == 5
    assert ret["ailab.retrieval.top_score"] == pytest.approx(0.8)
    assert ret["ailab.retrieval.cache_hit"] is True
    assert len(ret["ailab.query.embedding_sketch"]) == len(sketch_directions())
    for s in spans.values():
        assert s.status.status_code != StatusCode.ERROR
        assert not any(query in str(v) or "Returns" in str(v) for v in (s.attributes or {}).values())

    value = registry.get_sample_value
    assert value("assistant_requests_total", {"status": "ok"}) == 1
    assert value("assistant_tokens_total", {"type": "input"}) == 57
    assert value("assistant_tokens_total", {"type": "output"}) == 5
    assert value("assistant_retrieval_cache_requests_total", {"result": "hit"}) == 1
    for name in ("request_duration", "retrieval_duration", "time_to_first_token", "time_per_output_token"):
        assert value(f"assistant_{name}_seconds_count") == 1, name
    assert value("assistant_request_duration_seconds_bucket", {"le": str(CONFIG.slo_latency_s)}) == 1
    kinds = {m.name: m.type for m in registry.collect()}
    for name, kind in REQUIRED_METRICS.items():
        assert kinds.get(name.removesuffix("_total")) == kind, name


@pytest.mark.parametrize("component", ["generator", "retriever"])
def test_handler_marks_errors_and_reraises(component: str) -> None:
    handler, exporter, registry = instrumented()
    with pytest.raises(UpstreamError):
        handler("q", FakePipeline(fail=component))
    spans = {s.name: s for s in exporter.get_finished_spans()}
    failing = spans["text_completion tiny-gpt2" if component == "generator" else "retrieval support-kb"]
    for s in (failing, spans["POST /ask"]):
        assert s.status.status_code == StatusCode.ERROR and dict(s.attributes or {})["error.type"] == "503"
    assert dict(spans["POST /ask"].attributes or {})["http.response.status_code"] == 502
    assert registry.get_sample_value("assistant_requests_total", {"status": "error"}) == 1
    assert registry.get_sample_value("assistant_request_duration_seconds_count") == 1


# --------------------------------------------------------------------------- detectors on a synthetic service

class FakeService:
    """Eight requests a tick from a pool of repeated queries, with the lab's faults as switches."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        dirs = sketch_directions()
        normal = self.rng.standard_normal((80, 384))
        centre = self.rng.standard_normal(384)
        drift = centre + 0.4 * self.rng.standard_normal((12, 384))
        unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
        self.sketch = {"normal": np.round(unit(normal) @ dirs.T, 4), "drift": np.round(unit(drift) @ dirs.T, 4)}
        self.score = {"normal": self.rng.uniform(0.3, 0.8, 80), "drift": self.rng.uniform(0.5, 0.9, 12)}
        self.cached = {("normal", i) for i in range(60)}  # the overhead phase warmed the cache
        self.counts = {"ok": 0, "error": 0, "hit": 0, "miss": 0}
        self.buckets = dict.fromkeys(sorted({*LATENCY_BUCKETS, CONFIG.slo_latency_s, math.inf}), 0)
        self.rss, self.now, self.ids = 300e6, 0.0, 0
        self.faults: set[str] = set()

    def span(self, name: str, kind: str, start: float, end: float, parent: str | None, trace_id: str,
             status: str = "UNSET", attrs: dict[str, Any] | None = None) -> SpanRecord:
        self.ids += 1
        return SpanRecord(name, trace_id, f"{self.ids:016x}", parent, kind, start, end, status, attrs or {})

    def request(self, start: float) -> list[SpanRecord]:
        f, rng = self.faults, self.rng
        pool = "drift" if "query_drift" in f else "normal"
        q = int(rng.integers(len(self.score[pool])))
        hit = (pool, q) in self.cached and "cache_miss" not in f
        self.cached.add((pool, q))
        score = self.score[pool][q] - (0.08 if "index_degradation" in f and q % 3 else 0.0)
        t_ret = rng.uniform(0.02, 0.05) + (0.0 if hit else 0.015) + (1.0 if "retriever_latency" in f else 0.0)
        failed = "error_burst" in f and rng.random() < 0.5
        t_gen = 0.005 if failed else rng.uniform(0.15, 0.3) + (1.28 if "engine_slowdown" in f else 0.0)
        end = start + t_ret + t_gen + 0.003
        trace_id = f"{self.ids:032x}"
        root = self.span("POST /ask", "SERVER", start, end, None, trace_id, "ERROR" if failed else "UNSET")
        spans = [root, self.span("retrieval support-kb", "CLIENT", start, start + t_ret, root.span_id, trace_id,
                                 attrs={"gen_ai.operation.name": "retrieval", "ailab.retrieval.top_score": float(score),
                                    "ailab.retrieval.cache_hit": hit,
                                    "ailab.query.embedding_sketch": list(self.sketch[pool][q])}),
                 self.span("text_completion tiny-gpt2", "CLIENT", start + t_ret, end - 0.003, root.span_id, trace_id,
                           "ERROR" if failed else "UNSET", {"gen_ai.operation.name": "text_completion"})]
        self.counts["error" if failed else "ok"] += 1
        self.counts["hit" if hit else "miss"] += 1
        for le in self.buckets:
            self.buckets[le] += end - start <= le
        return spans

    def tick(self) -> Telemetry:
        spans = [s for i in range(8) for s in self.request(self.now - 1 + i / 8)]
        # a busy backend's RSS jumps by several MB between scrapes and comes back: noise, not a trend
        self.rss += 25e6 if "memory_leak" in self.faults else 0.0
        rss = self.rss + (20e6 if int(self.now) % 7 == 0 else 0.0) + self.rng.normal(0, 3e6)
        c = self.counts
        assistant = [Sample("assistant_requests_total", {"status": "ok"}, c["ok"]),
                     Sample("assistant_requests_total", {"status": "error"}, c["error"]),
                     Sample("assistant_retrieval_cache_requests_total", {"result": "hit"}, c["hit"]),
                     Sample("assistant_retrieval_cache_requests_total", {"result": "miss"}, c["miss"])]
        assistant += [Sample("assistant_request_duration_seconds_bucket", {"le": "+Inf" if le == math.inf else str(le)},
                             n) for le, n in self.buckets.items()]
        tel = Telemetry(self.now, spans, {"assistant": assistant,
                                          "backend": [Sample("process_resident_memory_bytes", {}, rss)]})
        self.now += 1.0
        return tel


def run(service: FakeService, detectors: list[Any], ticks: int) -> list[list[tuple[str, Alert]]]:
    return [[(d.name, a) for d in detectors for a in d.observe(tel)] for tel in (service.tick() for _ in range(ticks))]


def test_quiet_service_raises_no_alerts() -> None:
    service, detectors = FakeService(seed=3), create_detectors(CONFIG)
    assert {d.name for d in detectors} == {"slo_burn_rate", "query_drift", "retrieval_quality", "cache_efficiency",
                                           "resource_trend"}
    alerts = run(service, detectors, 60)
    assert not any(alerts), [a for tick in alerts for a in tick]


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_each_fault_is_paged_fast_and_blamed_right(fault: str) -> None:
    service, detectors = FakeService(seed=1), create_detectors(CONFIG)
    quiet = run(service, detectors, 16)
    assert not any(quiet), quiet
    service.faults = {fault}
    during = run(service, detectors, 8)
    first = next((i for i, tick in enumerate(during) if tick), None)
    assert first is not None and first <= 3, f"{fault}: first alert at tick {first}"
    assert {a.component for _, a in during[first]} == {FAULTS[fault]}, during[first]
    service.faults = set()
    after = run(service, detectors, 20)
    assert not any(after[8:]), f"{fault}: still alerting long after the fault ended: {after[8:]}"
