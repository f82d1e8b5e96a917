'''Answer-cell code of the observability lab's example submissions (read by make_notebook.py), keyed by grade_id.

They mirror tests/fixtures/observability/*.py as notebooks:

- always_alert: the reference instrumentation; `create_detectors` returns one detector that pages
  on every other tick, always blaming the retriever: high recall, chance precision, few right causes.
- never_alert: the reference instrumentation; detectors that never page: conformance and overhead
  only.
- broken: `create_handler` reads `retrieval.documents`, which `Retrieval` does not have: every
  request fails with AttributeError (a 500), so the smoke request fails on a healthy system.

"_default": "solution" fills every answer cell not listed with the reference solution.
'''
from __future__ import annotations

ALWAYS_ALERT_DETECTORS = '''
class Flapping:
    """Alerts on odd ticks, quiet on even ones, always blaming the retriever."""

    name = "flapping"

    def __init__(self) -> None:
        self.ticks = 0

    def observe(self, telemetry: Telemetry) -> list[Alert]:
        self.ticks += 1
        return [Alert("anything_unusual", "retriever")] if self.ticks % 2 else []


def create_detectors(config: ServiceConfig) -> list[Detector]:
    return [Flapping()]
'''

NEVER_ALERT_DETECTORS = '''
class Silent:
    name = "silent"

    def observe(self, telemetry: Telemetry) -> list[Alert]:
        return []


def create_detectors(config: ServiceConfig) -> list[Detector]:
    return [Silent()]
'''

BROKEN_HANDLER = '''
SKETCH_DIMS = 16
EMBEDDING_DIM = 384


def sketch_directions(dim: int = EMBEDDING_DIM, k: int = SKETCH_DIMS, seed: int = 20260401) -> np.ndarray:
    """k fixed random unit vectors (rows): the same in every process, so sketches are comparable across runs."""
    d = np.random.default_rng(seed).standard_normal((k, dim))
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def create_handler(tracer: Any, registry: Any, config: ServiceConfig) -> Handler:
    m = Metrics(registry, config)

    def handler(query: str, pipeline: Pipeline) -> Answer:
        t0 = time.perf_counter()
        with tracer.start_as_current_span("POST /ask", kind=SpanKind.SERVER):
            with tracer.start_as_current_span(f"retrieval {config.data_source}", kind=SpanKind.CLIENT) as span:
                retrieval = pipeline.retrieve(query, config.top_k)
                docs = retrieval.documents  # Retrieval has `hits`: AttributeError on every request
                span.set_attribute("ailab.retrieval.top_score", docs[0].score)
            with tracer.start_as_current_span(f"text_completion {config.model}", kind=SpanKind.CLIENT):
                text = "".join(pipeline.generate(pipeline.prompt(query, docs), config.max_tokens))
        m.ok.inc()
        m.duration.observe(time.perf_counter() - t0)
        return Answer(text, [d.doc_id for d in docs[:3]])

    return handler
'''

EXAMPLES: dict[str, dict[str, str]] = {
    "always_alert": {"_default": "solution", "obs_task_2_5_detectors": ALWAYS_ALERT_DETECTORS},
    "never_alert": {"_default": "solution", "obs_task_2_5_detectors": NEVER_ALERT_DETECTORS},
    "broken": {"_default": "solution", "obs_task_1_2_handler": BROKEN_HANDLER},
}
