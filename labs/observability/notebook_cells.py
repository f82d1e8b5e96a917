'''The observability lab notebook's cells: text, reference solutions and autograder tests (read by make_notebook.py).

Kinds as in labs/serving/notebook_cells.py: "markdown", "setup" (locked code), "answer" (solution
between BEGIN/END SOLUTION), "test" (points; hidden tests between BEGIN/END HIDDEN TESTS),
"written" (graded by hand), "explore" (tagged ailab-exclude: not part of the submission).

ONE SOURCE: every answer cell is cut from the reference (reference_systems/observability/instrumentation.py and
detectors.py) at its `# @cell` markers (graders.engine.nbbuild.reference_cells), so a fix to the reference is a fix
to the notebook's solution; `make_notebook.py --check` fails when the committed notebook is older. Grade ids
start with "obs_" so `ailab check` recognises this lab's notebooks. No test needs the backend:
Task 1 runs the handler on a `FakePipeline` with a real OpenTelemetry SDK tracer and a real
Prometheus registry, Task 2 runs detectors on a `FakeService` that builds `Telemetry` the way the
grader does; every test cell takes well under a second.
'''
from __future__ import annotations

from pathlib import Path
from typing import Any

from graders.engine.nbbuild import reference_cells

REFERENCE = Path(__file__).resolve().parents[2] / "reference_systems" / "observability"
CODE = reference_cells(REFERENCE / "instrumentation.py", REFERENCE / "detectors.py")


def stub(task: str, name: str) -> str:
    """The code a release notebook shows in place of each solution region."""
    return f'# YOUR CODE HERE\nraise NotImplementedError("Task {task}: implement {name}")'


INTRO = """
# Lab: observability for a RAG + LLM service

The system you observe is a **support assistant**: it retrieves passages from the support
knowledge base, generates an answer with the lab's tiny GPT-2 and cites the passages
(retrieve → generate with citations). The retriever (BM25 + MiniLM embeddings, fused, with an
embedding cache) and the model server (continuous batching) run in a **backend process you never
see**, together with a **fault injector**. Your code gets a `Pipeline` that calls them, and
only ever sees what your own telemetry tells it.

You write two functions (the contract is `graders/observability/interface.py`):

- `create_handler(tracer, registry, config)` → `handler(query, pipeline) -> Answer`: the assistant's
  request handler, **instrumented**: OpenTelemetry spans on `tracer`, Prometheus metrics on `registry`.
- `create_detectors(config)` → a list of detectors, each with `name` and `observe(telemetry) -> list[Alert]`:
  they watch the telemetry and **page** when something breaks, naming the component at fault.

**How it is graded.** Every code cell that is not a test cell and not tagged `ailab-exclude`
becomes your module. The grader hosts it in a sandboxed process behind `POST /ask` and then:

1. **smoke request**: one question on a healthy system must get an answer;
2. **overhead phase**: `/ask` (your handler) and `/ask_plain` (`interface.plain_handler`, the same
   work without telemetry) alternate under load; the ratio of their median latencies is your
   instrumentation overhead;
3. **fault scenario**: Locust traffic (~8 requests/s), a **warm-up** without faults (at least 12 s
   in the quick profile) in which your detectors learn their baselines, then every fault below
   once, 5 s each, with quiet gaps of at least 7 s between them; the order and the start times are
   drawn afresh for every run, so they cannot be guessed. Every second the grader builds a
   `Telemetry` (the spans that finished since the last tick, a scrape of your `/metrics` and of
   the backend's `/metrics`) and calls every detector's `observe`; a fault is switched on just
   after such a call, so its first symptoms reach your detectors on the next tick. An alert
   returned on consecutive ticks is one **page**.

| Part | Task | What is measured | Weight |
|---|---|---|---|
| Telemetry conformance | 1.1, 1.2 | spans and metrics follow the conventions below and agree with what really happened | 20 |
| Instrumentation overhead | 1.2 | median latency with ÷ without your instrumentation: full points ≤ 1.15×, none at 2× | 10 |
| Detection recall | 2 | faults with a page that **starts** in the window [start + 1 s, end + 1 s] | 30 |
| Detection precision | 2 | faults paged ÷ (faults paged + false pages): no points at chance level, full at 0.9 | 15 |
| Root cause | 2 | the first page in a fault's window blames the fault's component | 15 |
| Mean time to detect | 2 | fault start → first page: full points ≤ 4 s, none ≥ 12 s; times recall | 10 |
| Incident report | 3.1 | written, graded by hand | 10 points |

Weights are in `labs/observability/lab.toml`. An alert that is always on detects nothing (a page
counts where it starts), and a page at the very tick a fault is switched on is a false page (nothing
could have shown it yet). **Recall, root cause and time to detect count only in proportion to
precision above chance**: "chance" is what your pages, at the same times, would score against fault
schedules drawn blindly. A detector that flaps, or pages on a timer, finds faults only by chance and
earns nothing for them; full credit from a precision of 0.8.

**The faults** (lab.toml `[faults]`). The component is what a page should blame: one of
`COMPONENTS`.

| Fault | What changes | Component |
|---|---|---|
| `retriever_latency` | every retrieval takes +1.0 s | `retriever` |
| `engine_slowdown` | every decode step takes +80 ms: tokens/s drop ~10× | `generator` |
| `error_burst` | half the generations fail: `pipeline.generate` raises `UpstreamError("generator", 503, ...)` | `generator` |
| `index_degradation` | 70 % of the documents silently vanish: the top hits get worse | `index` |
| `query_drift` | the traffic switches to one narrow topic | `traffic` |
| `memory_leak` | the backend's resident memory grows ~25 MB/s (its `process_resident_memory_bytes`) | `memory` |
| `cache_miss` | the query-embedding cache stops hitting (`Retrieval.cache_hit` is False, retrieval ~15 ms slower) | `cache` |

**Conventions** (pinned; the conformance checks test them):

- OpenTelemetry semantic conventions **v1.37, GenAI spans (status "Development")**: span names
  `{gen_ai.operation.name} {gen_ai.request.model}`, e.g. `text_completion tiny-gpt2`, and
  `retrieval support-kb` for retrieval; attributes `gen_ai.operation.name`, `gen_ai.provider.name`,
  `gen_ai.request.model`, `gen_ai.request.max_tokens`, `gen_ai.usage.input_tokens`,
  `gen_ai.usage.output_tokens`, `gen_ai.response.finish_reasons`, `gen_ai.data_source.id`,
  `gen_ai.request.top_k`; errors as span status ERROR plus `error.type`. Message content
  (question, prompt, answer) is opt-in in the conventions: **never record it**.
- Prometheus naming: one prefix (`assistant_`), base units in the name (`_seconds`), counters end
  in `_total`, bounded label values (no per-request or per-user labels).
- Burn-rate windows: the SRE workbook's multi-window alerts, with hours compressed by
  `config.time_scale` = **360** (1 h of the workbook = 10 s here, 5 min = 0.83 s).

Check your work any time with `ailab check observability.ipynb` (the quick profile, ~3 minutes);
its `report.html` shows the timeline of faults and your pages.
"""

GIVEN = """
## What you are given

```python
pipeline.retrieve(query, k) -> Retrieval(hits: list[Hit], cache_hit: bool, query_embedding: list[float])
pipeline.prompt(query, hits) -> str            # the prompt, with the first 3 passages
pipeline.generate(prompt, max_tokens) -> Generation
for piece in generation: ...                   # text pieces as they stream; afterwards:
generation.input_tokens, generation.output_tokens, generation.finish_reason
pipeline.config                                # the ServiceConfig (model, provider, data_source, top_k, max_tokens, slo_*, time_scale)
Hit(doc_id, title, text, score)                # score: cosine of query and document
UpstreamError(component, status, message)      # the retriever or the model server answered an HTTP error
```

`interface.plain_handler` is the uninstrumented handler: retrieve `config.top_k`, generate
`config.max_tokens`, cite the first three hits. Yours must return the same answer.

A detector sees, once a second:

```python
Telemetry(now,                                  # seconds since the scenario started
          spans: list[SpanRecord],              # finished since the last tick
          metrics: {"assistant": [Sample], "backend": [Sample]})
SpanRecord(name, trace_id, span_id, parent_id, kind, start, end, status, attributes)  # .duration
Sample(name, labels, value)    # as scraped: counters and histogram buckets are CUMULATIVE since start
Alert(kind, component, detail="")              # kind: your words; component: one of COMPONENTS
```

`labkit.telemetry` has small helpers: `total(samples, name, **labels)`,
`histogram_counts(samples, name)`, `bucket_deltas(now, before)`, `fraction_above(deltas, threshold)`,
`CounterDeltas` (cumulative → per tick), `Window(seconds)` (recent points with `sum`, `rate`,
`mean`), `slope(points)` and `children_of(spans, prefix)`.
"""

SETUP = """
# Setup (locked): the libraries this lab uses. Run this cell first.
import math
import time
from collections import deque
from typing import Any

import numpy as np
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import Counter, Histogram
from scipy.stats import ks_2samp

from graders.observability.interface import (COMPONENTS, REQUIRED_METRICS, Alert, Answer, Detector, Handler, Hit,
                                             Pipeline, Retrieval, Sample, ServiceConfig, SpanRecord, Telemetry,
                                             UpstreamError)
from labkit.telemetry import (CounterDeltas, Window, bucket_deltas, children_of, fraction_above, histogram_counts,
                              slope, total)
"""

TEST_HELPERS_1 = '''
# Test helpers for Task 1 (locked): the tests below use these; they are not part of your module's API.
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

CONFIG = ServiceConfig()  # what the grader passes: lab.toml [service]


class FakeGeneration:
    """A fixed token stream; like the real one, its usage is known only once the stream is exhausted."""

    def __init__(self, pieces: list, input_tokens: int, ttft_s: float = 0.0, gap_s: float = 0.0) -> None:
        self.pieces, self._input, self.ttft_s, self.gap_s = pieces, input_tokens, ttft_s, gap_s
        self.input_tokens, self.output_tokens, self.finish_reason = 0, 0, ""

    def __iter__(self):
        for i, piece in enumerate(self.pieces):
            time.sleep(self.ttft_s if i == 0 else self.gap_s)
            yield piece
        self.input_tokens, self.output_tokens, self.finish_reason = self._input, len(self.pieces), "length"


class FakePipeline:
    """Stands in for the grader's client to the backend: fixed hits and a fixed answer, no network.

    Like the grader, it notes which span was current when retrieve and generate were called
    (`self.current`), and what they were asked for (`self.calls`). `fail` makes "retriever" or
    "generator" answer with an HTTP 503."""

    def __init__(self, fail: str = "", cache_hit: bool = True, ttft_s: float = 0.0, gap_s: float = 0.0,
                 config: ServiceConfig = CONFIG) -> None:
        self.config, self.fail, self.cache_hit, self.ttft_s, self.gap_s = config, fail, cache_hit, ttft_s, gap_s
        self.current: dict = {}
        self.calls: dict = {}

    def retrieve(self, query: str, k: int) -> Retrieval:
        self.current["retrieve"], self.calls["retrieve"] = trace.get_current_span().name, k
        if self.fail == "retriever":
            raise UpstreamError("retriever", 503, "index offline")
        emb = np.random.default_rng(len(query)).standard_normal(384)
        emb /= np.linalg.norm(emb)
        hits = [Hit(f"d{i}", f"title {i}", "passage text", round(0.8 - 0.1 * i, 2)) for i in range(k)]
        return Retrieval(hits, cache_hit=self.cache_hit, query_embedding=[float(x) for x in emb])

    def prompt(self, query: str, hits: list) -> str:
        return f"passages {len(hits)}\\nQuestion: {query}\\nAnswer:"

    def generate(self, prompt: str, max_tokens: int) -> FakeGeneration:
        self.current["generate"], self.calls["generate"] = trace.get_current_span().name, max_tokens
        if self.fail == "generator":
            raise UpstreamError("generator", 503, "model server overloaded")
        return FakeGeneration([" Ret", "urns", " take", " 30", " days"], 57, self.ttft_s, self.gap_s)


def instrumented(config: ServiceConfig = CONFIG):
    """(handler, exporter, registry): your create_handler on a real OpenTelemetry SDK tracer whose finished
    spans land in `exporter.get_finished_spans()`, and on a fresh Prometheus registry."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    registry = CollectorRegistry()
    return create_handler(provider.get_tracer("notebook-tests"), registry, config), exporter, registry
'''

# ---------------------------------------------------------------- Task 1.1
T11 = """
## Task 1.1 — Prometheus metrics

Write `Metrics(registry, config)`: create the metrics of `REQUIRED_METRICS` **on `registry`**
(`registry=registry`; never the global default registry: the grader may build several
handlers in one process):

| Metric | Type | Labels | Observes |
|---|---|---|---|
| `assistant_requests_total` | counter | `status`: `ok` / `error` | requests answered |
| `assistant_request_duration_seconds` | histogram | | whole request, seconds |
| `assistant_retrieval_duration_seconds` | histogram | | `pipeline.retrieve`, seconds |
| `assistant_time_to_first_token_seconds` | histogram | | `pipeline.generate` called → first text piece |
| `assistant_time_per_output_token_seconds` | histogram | | mean gap between output tokens |
| `assistant_tokens_total` | counter | `type`: `input` / `output` | tokens of the generation |
| `assistant_retrieval_cache_requests_total` | counter | `result`: `hit` / `miss` | `Retrieval.cache_hit` |

Keep each metric (and each label child, below) as an attribute for `create_handler` to use,
e.g. `self.requests`, `self.duration`, `self.ok`, `self.error`.

<details><summary>Hints</summary>

- `prometheus_client` appends `_total` to a counter's name: `Counter("assistant_requests", ...)`
  is exposed as `assistant_requests_total`.
- Give the request-duration histogram a bucket boundary **at `config.slo_latency_s`**: then a
  detector can count the requests slower than the SLO exactly (`fraction_above`). The bucket
  tuples below are given; add the SLO to them.
- Resolve label children once (`self.ok = self.requests.labels(status="ok")`): `.labels()` on
  every request costs time, and a resolved child is exposed (as 0) from the first scrape on, so a
  detector sees both series before the first error.
</details>
"""

TEST11 = """
# Task 1.1 tests
registry = CollectorRegistry()
metrics = Metrics(registry, CONFIG)
types = {family.name: family.type for family in registry.collect()}
for name, kind in REQUIRED_METRICS.items():
    family = name.removesuffix("_total")  # prometheus_client names a counter's family without `_total`
    assert types.get(family) == kind, f"{name}: expected a {kind} on the registry, found {types.get(family)}"
value = registry.get_sample_value
assert value("assistant_requests_total", {"status": "ok"}) == 0, "resolve the status='ok' child in __init__"
assert value("assistant_requests_total", {"status": "error"}) == 0, "resolve the status='error' child in __init__"
assert value("assistant_request_duration_seconds_bucket", {"le": str(CONFIG.slo_latency_s)}) == 0, \\
    "the request-duration histogram needs a bucket at config.slo_latency_s (1.0)"
### BEGIN HIDDEN TESTS
for labels in ({"type": "input"}, {"type": "output"}):
    assert value("assistant_tokens_total", labels) == 0, labels
for labels in ({"result": "hit"}, {"result": "miss"}):
    assert value("assistant_retrieval_cache_requests_total", labels) == 0, labels
assert all(name.startswith("assistant_") for name in types), sorted(types)
other = CollectorRegistry()
Metrics(other, ServiceConfig(slo_latency_s=0.8))  # a second registry: nothing on a global one
assert other.get_sample_value("assistant_request_duration_seconds_bucket", {"le": "0.8"}) == 0
import prometheus_client
assert not any(f.name.startswith("assistant_") for f in prometheus_client.REGISTRY.collect()), \\
    "metrics must go on the registry passed in, not the global one"
### END HIDDEN TESTS
"""

# ---------------------------------------------------------------- Task 1.2
T12 = """
## Task 1.2 — The instrumented handler: spans, metrics, TTFT and TPOT

Write `create_handler(tracer, registry, config)`. It returns `handler(query, pipeline) -> Answer`
that does what `plain_handler` does (retrieve `config.top_k`, prompt, generate
`config.max_tokens`, answer with the text and the first three hits' `doc_id`s) and records:

```
POST /ask                      SERVER   http.request.method="POST", http.route="/ask", http.response.status_code
├── retrieval support-kb       CLIENT   gen_ai.operation.name="retrieval", gen_ai.data_source.id, gen_ai.request.top_k
└── text_completion tiny-gpt2  CLIENT   gen_ai.operation.name="text_completion", gen_ai.provider.name,
                                        gen_ai.request.model, gen_ai.request.max_tokens, and after the stream:
                                        gen_ai.usage.input_tokens, gen_ai.usage.output_tokens,
                                        gen_ai.response.finish_reasons = [generation.finish_reason]
```

- Names and values come from `config` (`config.model`, `config.provider`, `config.data_source`).
- Each child span must be the **current span** while its pipeline call runs
  (`tracer.start_as_current_span`); the grader checks which span was current at each call, and the
  generation span must stay open while you iterate the stream.
- **Errors**: when a call raises, set status ERROR and `error.type` (the HTTP status of an
  `UpstreamError` as a string, else the exception's class name) on the failing child **and** on
  the root, count the request as `status="error"`, observe its duration, and **re-raise**: the
  grader answers 502 for an `UpstreamError` and 500 for anything else.
- **Metrics** (Task 1.1): every request's duration and outcome, retrieval duration, cache hit or
  miss, tokens; **TTFT** = from calling `pipeline.generate` to the first text piece; **TPOT** =
  (last piece − first piece) / (output tokens − 1), observed once per generation.
- For your detectors (Task 2), three content-free attributes on the retrieval span:
  `ailab.retrieval.top_score` (the first hit's score), `ailab.retrieval.cache_hit`, and
  `ailab.query.embedding_sketch`: the query embedding projected on 16 fixed random directions
  (`sketch_directions()`, given), rounded to 4 decimals: enough to test for drift, far too little
  to recover the question.
- Never record the question, the prompt or the answer.

Overhead counts (10 points): a request takes tens of milliseconds, so keep the per-request work
small.

<details><summary>Hints</summary>

- `tracer.start_as_current_span(name, kind=SpanKind.CLIENT, attributes={...})` is a context
  manager. By default it records the exception and sets an ERROR status *without* `error.type`;
  pass `record_exception=False, set_status_on_exception=False` and do it yourself:
  `span.set_status(Status(StatusCode.ERROR, ...))`, `span.set_attribute("error.type", ...)`.
- Build the constant attribute dicts and span names once, in `create_handler`, not per request.
- `time.perf_counter()` for durations. The usage (`generation.input_tokens`, ...) is known only
  after the stream is exhausted.
- Test on the `FakePipeline` above: `handler, exporter, registry = instrumented()`, then
  `exporter.get_finished_spans()`.
</details>
"""

TEST12 = """
# Task 1.2 tests: your handler on the FakePipeline, a real OpenTelemetry SDK tracer and a Prometheus registry
QUESTION = "how long do I have to send back shoes?"
handler, exporter, registry = instrumented()
pipeline = FakePipeline()
answer = handler(QUESTION, pipeline)
assert answer == Answer(" Returns take 30 days", ["d0", "d1", "d2"]), answer
spans = {s.name: s for s in exporter.get_finished_spans()}
GENERATION_NAMES = ("text_completion tiny-gpt2", "chat tiny-gpt2")
assert "POST /ask" in spans and "retrieval support-kb" in spans, f"span names: {sorted(spans)}"
gen_name = next((n for n in GENERATION_NAMES if n in spans), None)
assert gen_name is not None and len(spans) == 3, f"expected 3 spans incl. 'text_completion tiny-gpt2', got {sorted(spans)}"
root, ret, gen = spans["POST /ask"], spans["retrieval support-kb"], spans[gen_name]
assert root.kind == SpanKind.SERVER and root.parent is None, "the request span is the root, kind SERVER"
assert ret.kind == SpanKind.CLIENT and gen.kind == SpanKind.CLIENT, "calls to the backend are CLIENT spans"
assert ret.parent.span_id == root.context.span_id and gen.parent.span_id == root.context.span_id, "children of the root"
assert pipeline.current == {"retrieve": "retrieval support-kb", "generate": gen_name}, \\
    f"the span current at each pipeline call: {pipeline.current}"
assert gen.attributes["gen_ai.operation.name"] == gen_name.split()[0]
assert gen.attributes["gen_ai.provider.name"] == "ailab" and gen.attributes["gen_ai.request.model"] == "tiny-gpt2"
assert gen.attributes["gen_ai.request.max_tokens"] == 16
assert gen.attributes["gen_ai.usage.input_tokens"] == 57 and gen.attributes["gen_ai.usage.output_tokens"] == 5
assert list(gen.attributes["gen_ai.response.finish_reasons"]) == ["length"]
assert ret.attributes["gen_ai.operation.name"] == "retrieval"
assert ret.attributes["gen_ai.data_source.id"] == "support-kb" and ret.attributes["gen_ai.request.top_k"] == 5
value = registry.get_sample_value
assert value("assistant_requests_total", {"status": "ok"}) == 1
assert value("assistant_tokens_total", {"type": "input"}) == 57 and value("assistant_tokens_total", {"type": "output"}) == 5
### BEGIN HIDDEN TESTS
for s in spans.values():
    assert s.status.status_code != StatusCode.ERROR, s.name
    for key, v in s.attributes.items():
        assert "send back shoes" not in str(v) and "Returns" not in str(v), f"{s.name} records content in {key}"
assert ret.attributes["ailab.retrieval.top_score"] == 0.8
assert ret.attributes["ailab.retrieval.cache_hit"] is True
assert len(ret.attributes["ailab.query.embedding_sketch"]) == 16
assert root.attributes["http.response.status_code"] == 200
assert value("assistant_retrieval_cache_requests_total", {"result": "hit"}) == 1
for name in ("request_duration", "retrieval_duration", "time_to_first_token", "time_per_output_token"):
    assert value(f"assistant_{name}_seconds_count") == 1, name

# TTFT and TPOT in seconds: 50 ms to the first piece, then 10 ms between pieces
handler, exporter, registry = instrumented()
handler(QUESTION, FakePipeline(ttft_s=0.05, gap_s=0.01, cache_hit=False))
value = registry.get_sample_value
assert 0.045 <= value("assistant_time_to_first_token_seconds_sum") < 0.2
assert 0.008 <= value("assistant_time_per_output_token_seconds_sum") < 0.03
assert value("assistant_retrieval_cache_requests_total", {"result": "miss"}) == 1
assert 0.085 <= value("assistant_request_duration_seconds_sum") < 0.5
spans = {s.name: s for s in exporter.get_finished_spans()}
assert spans["retrieval support-kb"].attributes["ailab.retrieval.cache_hit"] is False

# failures: ERROR + error.type on the failing child and the root, counted, re-raised
for component, child in (("generator", gen_name), ("retriever", "retrieval support-kb")):
    handler, exporter, registry = instrumented()
    try:
        handler(QUESTION, FakePipeline(fail=component))
        raise AssertionError("the handler must re-raise the pipeline's UpstreamError")
    except UpstreamError:
        pass
    spans = {s.name: s for s in exporter.get_finished_spans()}
    for s in (spans[child], spans["POST /ask"]):
        assert s.status.status_code == StatusCode.ERROR and s.attributes.get("error.type"), (component, s.name)
    assert registry.get_sample_value("assistant_requests_total", {"status": "error"}) == 1
    assert registry.get_sample_value("assistant_requests_total", {"status": "ok"}) == 0
    assert registry.get_sample_value("assistant_request_duration_seconds_count") == 1

# names and values come from the config
config = ServiceConfig(model="other-model", data_source="kb2", top_k=3, max_tokens=8)
handler, exporter, registry = instrumented(config)
pipeline = FakePipeline(config=config)
answer = handler(QUESTION, pipeline)
assert pipeline.calls == {"retrieve": 3, "generate": 8} and answer.citations == ["d0", "d1", "d2"]
spans = {s.name: s for s in exporter.get_finished_spans()}
assert "retrieval kb2" in spans and ("text_completion other-model" in spans or "chat other-model" in spans), sorted(spans)
assert spans["retrieval kb2"].attributes["gen_ai.request.top_k"] == 3
### END HIDDEN TESTS
"""

EXPLORE1 = """
# Exploration (not graded, not part of your module): one request's trace as a tree, and your /metrics.
from prometheus_client import generate_latest

handler, exporter, registry = instrumented()
handler("how do I reset my password?", FakePipeline(ttft_s=0.02, gap_s=0.005))
finished = exporter.get_finished_spans()


def show(parent_id, depth: int = 0) -> None:
    for s in finished:
        if (s.parent.span_id if s.parent else None) == parent_id:
            attrs = {k: v for k, v in s.attributes.items() if k != "ailab.query.embedding_sketch"}
            print(f"{'    ' * depth}{s.name}  [{s.kind.name}, {(s.end_time - s.start_time) / 1e6:.1f} ms, "
                  f"{s.status.status_code.name}]  {attrs}")
            show(s.context.span_id, depth + 1)


show(None)
print()
print("\\n".join(line for line in generate_latest(registry).decode().splitlines()
                if line.startswith("assistant_") and "_bucket" not in line and "_created" not in line))
"""

# ---------------------------------------------------------------- Task 2
T2 = """
## Task 2 — Detectors

A detector is an object with a `name` and `observe(telemetry) -> list[Alert]`, called once a
second. Return an `Alert(kind, component, detail)` on every tick a condition holds, and nothing
once it is over: an alert held over consecutive ticks is one page, so a detector that keeps
returning the same alert pages once. The grader scores where pages **start**: early in a fault,
never between faults, blaming the right component.

Everything a detector knows comes from telemetry: the spans your handler recorded and the
scrapes of `/metrics`. Counters and histograms are cumulative since the process started: what
happened during a tick is the difference between two scrapes (`CounterDeltas`,
`bucket_deltas`). The first `WARMUP_S` seconds of a run have no faults: learn baselines there and
do not alert. The grader's warm-up is at least 12 s (quick profile) or 20 s (full), as long as
`WARMUP_S` below.

The tests run your detectors on a `FakeService` (the next cell): a synthetic assistant that
serves 8 requests a tick from a pool of repeated questions and builds each tick's `Telemetry` the
way the grader does, with the lab's faults as switches. `inject(fault, detectors)` runs 16
healthy ticks, 8 with the fault, then 20 healthy ones, and returns the alerts of each tick of the
three phases.
"""

TEST_HELPERS_2 = '''
# Test helpers for Task 2 (locked): synthetic telemetry for the detector tests; not part of your module's API.
class FakeService:
    """A synthetic support assistant: telemetry as the grader builds it, with the lab's faults as switches.

    Each `tick()` serves 8 requests from a pool of repeated questions (so the cache hits ~70 %) and
    returns a Telemetry: the spans your handler would record, cumulative counters and histogram
    buckets as scraped from /metrics, and the backend's resident memory."""

    BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, math.inf)

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        directions = np.random.default_rng(7).standard_normal((16, 384))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
        centre = self.rng.standard_normal(384)
        pools = {"normal": self.rng.standard_normal((80, 384)), "drift": centre + 0.4 * self.rng.standard_normal((12, 384))}
        self.sketch = {p: np.round(unit(e) @ directions.T, 4) for p, e in pools.items()}
        self.score = {"normal": self.rng.uniform(0.3, 0.8, 80), "drift": self.rng.uniform(0.5, 0.9, 12)}
        self.cached = {("normal", i) for i in range(60)}
        self.counts = {"ok": 0, "error": 0, "hit": 0, "miss": 0}
        self.buckets = dict.fromkeys(self.BUCKETS, 0)
        self.rss, self.now, self.ids = 300e6, 0.0, 0
        self.faults: set = set()

    def _span(self, name, kind, start, end, parent, trace_id, status="UNSET", **attributes) -> SpanRecord:
        self.ids += 1
        return SpanRecord(name, trace_id, f"{self.ids:016x}", parent, kind, start, end, status, attributes)

    def request(self, start: float) -> list:
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
        status = "ERROR" if failed else "UNSET"
        root = self._span("POST /ask", "SERVER", start, end, None, trace_id, status)
        retrieval = self._span("retrieval support-kb", "CLIENT", start, start + t_ret, root.span_id, trace_id, **{
            "gen_ai.operation.name": "retrieval", "ailab.retrieval.top_score": float(score),
            "ailab.retrieval.cache_hit": hit, "ailab.query.embedding_sketch": list(self.sketch[pool][q])})
        generation = self._span("text_completion tiny-gpt2", "CLIENT", start + t_ret, end - 0.003, root.span_id,
                                trace_id, status, **{"gen_ai.operation.name": "text_completion"})
        self.counts["error" if failed else "ok"] += 1
        self.counts["hit" if hit else "miss"] += 1
        for le in self.buckets:
            self.buckets[le] += end - start <= le
        return [root, retrieval, generation]

    def tick(self) -> Telemetry:
        spans = [s for i in range(8) for s in self.request(self.now - 1 + i / 8)]
        self.rss += (25e6 if "memory_leak" in self.faults else 0.0) + self.rng.normal(0, 0.3e6)
        c = self.counts
        assistant = [Sample("assistant_requests_total", {"status": "ok"}, c["ok"]),
                     Sample("assistant_requests_total", {"status": "error"}, c["error"]),
                     Sample("assistant_retrieval_cache_requests_total", {"result": "hit"}, c["hit"]),
                     Sample("assistant_retrieval_cache_requests_total", {"result": "miss"}, c["miss"])]
        assistant += [Sample("assistant_request_duration_seconds_bucket", {"le": "+Inf" if le == math.inf else str(le)}, n)
                      for le, n in self.buckets.items()]
        telemetry = Telemetry(self.now, spans, {"assistant": assistant,
                                                "backend": [Sample("process_resident_memory_bytes", {}, self.rss)]})
        self.now += 1.0
        return telemetry


def run_ticks(service: FakeService, detectors: list, ticks: int) -> list:
    """Tick every detector on the service's telemetry `ticks` times: the alerts of each tick."""
    return [[a for d in detectors for a in d.observe(tel)] for tel in (service.tick() for _ in range(ticks))]


def inject(fault: str, detectors: list, seed: int = 1) -> tuple:
    """(before, during, after): alerts per tick over 16 healthy ticks, 8 with `fault`, then 20 healthy ones."""
    service = FakeService(seed)
    before = run_ticks(service, detectors, 16)
    service.faults = {fault}
    during = run_ticks(service, detectors, 8)
    service.faults = set()
    return before, during, run_ticks(service, detectors, 20)


def first_alert(ticks: list):
    """Index of the first tick with an alert, or None."""
    return next((i for i, alerts in enumerate(ticks) if alerts), None)


def check_pages(fault: str, component: str, detectors: list, within: int = 3) -> None:
    """Quiet while healthy, an alert blaming `component` within `within` ticks of the fault, quiet again 8 ticks after."""
    before, during, after = inject(fault, detectors)
    assert not any(before), f"{fault}: alerts on the healthy service before the fault: {[a for t in before for a in t]}"
    first = first_alert(during)
    assert first is not None and first <= within, f"{fault}: first alert at tick {first} of the fault (want <= {within})"
    assert {a.component for a in during[first]} == {component}, f"{fault}: the first alerts blame {during[first]}"
    assert not any(after[8:]), f"{fault}: still alerting long after the fault ended: {[a for t in after[8:] for a in t]}"
'''

# ---------------------------------------------------------------- Task 2.1
T21 = """
## Task 2.1 — An SLO burn-rate detector (errors and latency)

The SLO: `config.slo_target` (99 %) of requests succeed within `config.slo_latency_s` (1.0 s).
The error budget is `1 − slo_target`; the **burn rate** over a window is the bad fraction of
requests in it divided by the budget (burn 1 = spending the budget exactly as fast as allowed).
The SRE workbook (ch. 5) pages when **both** a long and a short window burn faster than a factor:

| long window | short window | factor |
|---|---|---|
| 1 h | 5 min | 14.4 |
| 6 h | 30 min | 6 |

Divide the windows by `config.time_scale` (1 h → 10 s, 5 min → 0.83 s: a window shorter than a
tick is the last tick). Track two SLIs: **errors** (`assistant_requests_total{status="error"}`
out of all) and **latency** (requests slower than the SLO, from the bucket deltas of
`assistant_request_duration_seconds`). Page `Alert("error_slo_burn", ...)` and
`Alert("latency_slo_burn", ...)` (the kinds are your words; the components are not).

**Root cause.** An SLO page must still blame a component: use the spans. For errors, blame the
child span (retrieval or generation) that failed most in the last few seconds; for latency, the
one whose mean duration grew most over its warm-up baseline (`retriever` or `generator`).

**One incident, one page.** A burn rate near its threshold flickers: each time it dips for a tick
the page ends, and the next tick starts a new one (after the fault, outside its window: a false
page). Fix the blame when a page starts and keep firing for `KEEP_FIRING_S` after the condition
last held, as Prometheus' `keep_firing_for` does (`episode`).

<details><summary>Hints</summary>

- `CounterDeltas().update(cumulative)` gives a tick's increment; a `Window(seconds)` of per-tick
  values gives `sum(now, seconds)` over the last `seconds`.
- `fraction_above(bucket_deltas(counts, previous), config.slo_latency_s)` → (slow, all) for the
  tick. It is exact only with a bucket boundary at the SLO (Task 1.1).
- `operation(span)` (given) says whether a span is a retrieval or a generation.
</details>
"""

TEST21 = """
# Task 2.1 tests
EMPTY = Telemetry(0.0, [], {"assistant": [], "backend": []})  # a scrape that failed, during the warm-up
assert SloBurnRate(CONFIG).observe(EMPTY) == [], "no alerts during the warm-up"
check_pages("error_burst", "generator", [SloBurnRate(CONFIG)])
check_pages("retriever_latency", "retriever", [SloBurnRate(CONFIG)])
### BEGIN HIDDEN TESTS
check_pages("engine_slowdown", "generator", [SloBurnRate(CONFIG)])
for fault in ("cache_miss", "query_drift", "index_degradation", "memory_leak"):
    before, during, after = inject(fault, [SloBurnRate(CONFIG)])
    assert not any(before + during + after), f"the SLO is met during {fault}: no SLO page"
quiet = run_ticks(FakeService(seed=5), [SloBurnRate(CONFIG)], 60)
assert not any(quiet), [a for t in quiet for a in t]
### END HIDDEN TESTS
"""

# ---------------------------------------------------------------- Task 2.2
T22 = """
## Task 2.2 — Query drift

When the traffic changes (a new product, a campaign, a bot), nothing is broken, but answers may
get worse and caches colder: an on-call wants to know, and the other detectors should not blame
the index or the cache for it. Write `QueryDrift`: keep the embedding sketches
(`ailab.query.embedding_sketch` on the retrieval spans) of the warm-up as the **reference**
sample and the last `window` queries as the **recent** one; test each of the 16 dimensions with
a two-sample Kolmogorov–Smirnov test (`ks_2samp`), correct for the 16 tests (Bonferroni:
p × 16), and page `Alert("query_drift", "traffic", ...)` while the corrected p-value is below
`alpha`. Expose `self.p` (the last corrected p-value) and `self.firing` (alerting this tick): the
detectors of Tasks 2.3 and 2.4 read them.

<details><summary>Hints</summary>

- KS on small samples, as Evidently's defaults do; Wasserstein or Jensen–Shannon distances suit
  large ones, and MMD with a permutation test compares whole embeddings.
- With ~8 queries a second, 24 recent queries is three ticks. With 16 tests a strict `alpha` (3e-5)
  is what keeps a healthy run quiet; stricter still (1e-6) misses a 5-second drift. A shorter window
  has too little power for that `alpha`: with 16 queries, a healthy stretch of a real run reached
  p = 2e-5 (a false page) while a 5-second drift reached only 5e-5 (missed); with 24, 6e-4 and 4e-6.
- Wait for enough data: at least ~30 reference queries and half a window of recent ones.
</details>
"""

TEST22 = """
# Task 2.2 tests
check_pages("query_drift", "traffic", [QueryDrift()])
drift = QueryDrift()
run_ticks(FakeService(seed=2), [drift], 20)
assert not drift.firing and 0 < drift.p <= 1, (drift.firing, drift.p)
### BEGIN HIDDEN TESTS
for fault in ("index_degradation", "cache_miss", "error_burst", "retriever_latency"):
    before, during, after = inject(fault, [QueryDrift()])
    assert not any(before + during + after), f"the queries do not change during {fault}: no drift page"
drift = QueryDrift()
service = FakeService(seed=3)
run_ticks(service, [drift], 16)
service.faults = {"query_drift"}
run_ticks(service, [drift], 3)
assert drift.firing and drift.p < 1e-3, (drift.firing, drift.p)
### END HIDDEN TESTS
"""

# ---------------------------------------------------------------- Task 2.3
T23 = """
## Task 2.3 — Retrieval quality

When 70 % of the index silently vanishes, nothing fails and nothing gets slower: the answers
just get worse. The top hit's score (`ailab.retrieval.top_score`) drops by ~0.05 on average,
against a spread of ~0.15 across questions, so a test on the score *distribution* needs a minute
of traffic. But retrieval is deterministic and questions repeat: **the same question must get the
same score**. Write `RetrievalQuality`: remember the best top score each question got
(recognise a question by its embedding sketch, rounded), and for every repeat record
`score − best`. Page `Alert("retrieval_quality_drop", "index", ...)` when at least
`min_fraction` of the last `window` repeats lost more than `drop`, unless the drift detector is
firing (new questions are not the index's fault).

<details><summary>Hints</summary>

- A dict from `tuple(round(x, 3) for x in sketch)` to the best score is enough; a shrinking
  index can only lose the best documents, so `best` never needs to go down.
- Spans arrive per tick in any order: sort them by `end` before comparing.
</details>
"""

TEST23 = """
# Task 2.3 tests
assert RetrievalQuality().observe(Telemetry(0.0, [], {"assistant": [], "backend": []})) == []
check_pages("index_degradation", "index", [RetrievalQuality()])
### BEGIN HIDDEN TESTS
for fault in ("retriever_latency", "cache_miss", "error_burst"):
    before, during, after = inject(fault, [RetrievalQuality()])
    assert not any(before + during + after), f"scores do not change during {fault}: no retrieval-quality page"
drift = QueryDrift()
before, during, after = inject("query_drift", [drift, RetrievalQuality(drift)])
assert not any(a.component == "index" for t in before + during + after for a in t), "new questions are not the index's fault"
check_pages("index_degradation", "index", [RetrievalQuality(QueryDrift())])
### END HIDDEN TESTS
"""

# ---------------------------------------------------------------- Task 2.4
T24 = """
## Task 2.4 — Cache efficiency and resource trends

- `CacheEfficiency`: the query-embedding cache's hit ratio over the last `lookups` or more
  lookups (from `assistant_retrieval_cache_requests_total`, per tick), against the warm-up ratio.
  Page `Alert("cache_hit_ratio_drop", "cache", ...)` when it falls below `floor` while the
  warm-up ratio was at least `min_baseline`, unless the queries are drifting (new questions miss
  any cache: check the drift detector's `p`, more loosely than it pages, e.g. `p < 1e-2`).
- `ResourceTrend`: the least-squares `slope` of the backend's `process_resident_memory_bytes`
  over the last `points` scrapes. Page `Alert("memory_growth", "memory", ...)` when it grows
  faster than `bytes_per_s` **and** rises on almost every scrape (and the median step is a real
  increase): one step up (a cache filling, a model loading) is not a leak.

<details><summary>Hints</summary>

- `telemetry.metrics.get("backend", [])`: a scrape can fail and come back empty; skip such a tick.
- A busy backend's RSS moves by ±10 MB between scrapes, and right after the warm-up it can still climb
  by ~10 MB/s on its own: over 5 scrapes, a 15 MB/s slope with at least 3 of 4 steps up pages a
  25 MB/s leak within ~3 s and not the noise.
</details>
"""

TEST24 = """
# Task 2.4 tests
assert ResourceTrend().observe(Telemetry(20.0, [], {"assistant": [], "backend": []})) == [], "a failed scrape is no data"
check_pages("cache_miss", "cache", [CacheEfficiency()])
check_pages("memory_leak", "memory", [ResourceTrend()])
### BEGIN HIDDEN TESTS
for fault in ("retriever_latency", "error_burst", "index_degradation"):
    before, during, after = inject(fault, [CacheEfficiency(), ResourceTrend()])
    assert not any(before + during + after), f"neither the cache nor memory changes during {fault}"
drift = QueryDrift()
before, during, after = inject("query_drift", [drift, CacheEfficiency(drift)])
assert not any(a.component == "cache" for t in before + during + after for a in t), "a new topic misses any cache"
trend = ResourceTrend()
rss = [300e6] * 15 + [350e6] * 10  # one step up, then flat: a cache filling, not a leak
alerts = [trend.observe(Telemetry(float(t), [], {"backend": [Sample("process_resident_memory_bytes", {}, v)]}))
          for t, v in enumerate(rss)]
assert not any(alerts), alerts
### END HIDDEN TESTS
"""

# ---------------------------------------------------------------- Task 2.5
T25 = """
## Task 2.5 — `create_detectors`

Return your detectors, wired together: the grader calls `observe` on each in list order every
tick, so put the drift detector **first** when others read its state. Every detector needs a
`name` (unique in the list). Several detectors may page for one fault (a slow retriever burns the
latency SLO and may also look like a cache problem): a fault's root cause is what the **first**
page in its window blames, and pages starting on the same tick must all blame the same component.

<details><summary>Hints</summary>

- Run `inject(fault, create_detectors(CONFIG))` for each fault and look at what fires, when, and
  what it blames; then `run_ticks(FakeService(seed), ..., 60)` for false pages.
- In the real scenario the warm-up is the only time you can be sure has no faults: a fault may
  begin as soon as 7 s after the previous one ended.
</details>
"""

TEST25 = """
# Task 2.5 tests
detectors = create_detectors(CONFIG)
names = [d.name for d in detectors]
assert detectors and len(set(names)) == len(names), f"every detector needs a unique name: {names}"
assert all(callable(getattr(d, "observe", None)) for d in detectors)
quiet = run_ticks(FakeService(seed=3), detectors, 60)
assert not any(quiet), f"false pages on a healthy service: {[a for t in quiet for a in t]}"
check_pages("error_burst", "generator", create_detectors(CONFIG))
check_pages("index_degradation", "index", create_detectors(CONFIG))
### BEGIN HIDDEN TESTS
for fault, component in (("retriever_latency", "retriever"), ("engine_slowdown", "generator"),
                         ("query_drift", "traffic"), ("memory_leak", "memory"), ("cache_miss", "cache")):
    check_pages(fault, component, create_detectors(CONFIG))
### END HIDDEN TESTS
"""

EXPLORE2 = """
# Exploration (not graded, not part of your module): a small scenario on the FakeService, page by page.
service, detectors = FakeService(seed=4), create_detectors(CONFIG)
run_ticks(service, detectors, 16)
open_pages: dict = {}
for fault in ("retriever_latency", "engine_slowdown", "error_burst", "index_degradation", "query_drift",
              "memory_leak", "cache_miss"):
    for phase, faults in ((fault, {fault}), ("healthy", set())):
        service.faults = faults
        for _ in range(8):
            telemetry = service.tick()
            current = {(d.name, a.kind, a.component): a for d in detectors for a in d.observe(telemetry)}
            for key in current.keys() - open_pages.keys():
                print(f"t={telemetry.now:4.0f} s  during {phase:<18} page  {key[0]:<18} {key[1]:<24} blames {key[2]:<10} "
                      f"{current[key].detail}")
            open_pages = current
"""

# ---------------------------------------------------------------- Task 3.1
T31 = """
## Task 3.1 — Written: an incident report (10 points, graded by hand)

Grade your notebook (`ailab check observability.ipynb`, or
`ailab grade observability observability.ipynb --out out`) and open `report.html`: its timeline
shows every injected fault, your pages and the request latency. **Pick one fault** and write the
incident report an on-call engineer would file, 200–400 words:

1. **Summary and impact**: what users saw (errors, latency, worse answers), for how long.
2. **Timeline**: fault start, first page (which detector, what it blamed), time to detect.
3. **Root cause**: what broke, in which component.
4. **Evidence**: which telemetry shows it — name the spans, attributes and metrics, with the
   numbers you saw (and what stayed normal, which rules other causes out).
5. **Fix and prevention**: what you would do now, and what would catch it sooner or prevent it
   (an alert, a dashboard panel, a test, a limit).

If your detectors missed a fault or blamed the wrong component, writing about that one is
welcome: say what the telemetry showed and what would have caught it.
"""

A31 = """
### BEGIN SOLUTION
**Incident: retrieval quality dropped (index_degradation), run of the quick profile, seed 0.**

**Summary and impact.** For 8 s, 70 % of the support-KB documents stopped being retrievable.
Nothing failed and latency stayed normal (p50 ~0.3 s, all requests within the 1.0 s SLO), so
users got answers, but worse ones: the passages cited were often not the relevant article.

**Timeline.** Fault start t=62 s. At t=64 s `retrieval_quality` paged
`retrieval_quality_drop`, blaming `index` ("45 % of repeated queries lost top-hit score, mean
-0.04"): time to detect 2 s. The page ended at t=71 s, 1 s after the fault ended. No other
detector paged in the window.

**Root cause.** A shard of the index dropped out: the retriever searched only 30 % of the
documents. The query embeddings and the retriever itself were fine.

**Evidence.** The retrieval spans' `ailab.retrieval.top_score`: repeated questions (same
`ailab.query.embedding_sketch`) that had scored e.g. 0.71 before scored 0.58-0.64 during the
fault; outside it, repeats score exactly the same, because retrieval is deterministic. What stayed
normal rules out the other causes: `assistant_retrieval_duration_seconds` unchanged (not the
retriever being slow), cache hit ratio ~0.6 as in the warm-up (not the cache), query-drift KS
p-value ~1 (the questions had not changed), no ERROR spans and no `status="error"` requests
(not the generator), backend RSS flat.

**Fix and prevention.** Now: restore the missing shard or roll back to the last good index
snapshot, then re-run the canary questions. Prevention: (1) keep this detector, and add a canary
of ~20 fixed questions with known best documents every minute, alerting on recall@5 (it catches
an empty shard even without repeated user traffic); (2) export the index's document count as a
gauge and alert when it drops by more than 5 % between scrapes; (3) make index deployment check
the document count and a golden-set recall before switching traffic.
### END SOLUTION
"""

CELLS: list[dict[str, Any]] = [
    {"kind": "markdown", "id": "obs_intro", "source": INTRO},
    {"kind": "markdown", "id": "obs_given", "source": GIVEN},
    {"kind": "setup", "id": "obs_setup", "source": SETUP},
    {"kind": "setup", "id": "obs_test_helpers_1", "source": TEST_HELPERS_1},
    {"kind": "markdown", "id": "obs_task_1_1_text", "source": T11},
    {"kind": "answer", "id": "obs_task_1_1_metrics", "source": CODE["obs_task_1_1_metrics"], "task": "1.1", "name": "Metrics"},
    {"kind": "test", "id": "obs_test_1_1_metrics", "source": TEST11, "task": "1.1", "points": 9},
    {"kind": "markdown", "id": "obs_task_1_2_text", "source": T12},
    {"kind": "answer", "id": "obs_task_1_2_handler", "source": CODE["obs_task_1_2_handler"], "task": "1.2", "name": "create_handler"},
    {"kind": "test", "id": "obs_test_1_2_handler", "source": TEST12, "task": "1.2", "points": 21},
    {"kind": "explore", "id": "obs_explore_1_trace", "source": EXPLORE1},
    {"kind": "markdown", "id": "obs_task_2_text", "source": T2},
    {"kind": "setup", "id": "obs_test_helpers_2", "source": TEST_HELPERS_2},
    {"kind": "markdown", "id": "obs_task_2_1_text", "source": T21},
    {"kind": "answer", "id": "obs_task_2_1_slo", "source": CODE["obs_task_2_1_slo"], "task": "2.1", "name": "SloBurnRate"},
    {"kind": "test", "id": "obs_test_2_1_slo", "source": TEST21, "task": "2.1", "points": 20},
    {"kind": "markdown", "id": "obs_task_2_2_text", "source": T22},
    {"kind": "answer", "id": "obs_task_2_2_drift", "source": CODE["obs_task_2_2_drift"], "task": "2.2", "name": "QueryDrift"},
    {"kind": "test", "id": "obs_test_2_2_drift", "source": TEST22, "task": "2.2", "points": 12},
    {"kind": "markdown", "id": "obs_task_2_3_text", "source": T23},
    {"kind": "answer", "id": "obs_task_2_3_retrieval", "source": CODE["obs_task_2_3_retrieval"], "task": "2.3", "name": "RetrievalQuality"},
    {"kind": "test", "id": "obs_test_2_3_retrieval", "source": TEST23, "task": "2.3", "points": 12},
    {"kind": "markdown", "id": "obs_task_2_4_text", "source": T24},
    {"kind": "answer", "id": "obs_task_2_4_resources", "source": CODE["obs_task_2_4_resources"], "task": "2.4",
     "name": "CacheEfficiency and ResourceTrend"},
    {"kind": "test", "id": "obs_test_2_4_resources", "source": TEST24, "task": "2.4", "points": 13},
    {"kind": "markdown", "id": "obs_task_2_5_text", "source": T25},
    {"kind": "answer", "id": "obs_task_2_5_detectors", "source": CODE["obs_task_2_5_detectors"], "task": "2.5", "name": "create_detectors"},
    {"kind": "test", "id": "obs_test_2_5_detectors", "source": TEST25, "task": "2.5", "points": 13},
    {"kind": "explore", "id": "obs_explore_2_scenario", "source": EXPLORE2},
    {"kind": "markdown", "id": "obs_task_3_1_text", "source": T31},
    {"kind": "written", "id": "obs_task_3_1_written", "source": A31, "task": "3.1", "points": 10},
]
