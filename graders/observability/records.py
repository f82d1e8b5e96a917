"""What one graded scenario leaves behind: the fault schedule, the pages raised, and the ground truth
the host recorded about each request. Produced by `graders.observability.grade`, read by
`detection`, `conformance` and the report. Times are seconds since the scenario started.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


TICK_S = 1.0  # the detectors are asked once a tick; page times are tick times


@dataclass(frozen=True)
class Fault:
    """A fault is on during [start, end). `reach_at` is the first tick whose telemetry the grader began to collect
    after the fault was switched on: the earliest a symptom could reach the detectors, so the earliest a page
    counts for the fault. Faults are switched on just after the detectors' call at tick `start`, so it is
    normally `start + TICK_S` (None stands for that)."""
    name: str          # a key of lab.toml [faults], e.g. "retriever_latency"
    component: str     # ground truth, one of interface.COMPONENTS
    start: float
    end: float
    reach_at: float | None = None

    @property
    def first_symptom(self) -> float:
        return self.start + TICK_S if self.reach_at is None else self.reach_at


@dataclass
class Page:
    """An alert held over consecutive ticks: it starts on the first tick it is returned, ends on the first it is not."""
    detector: str
    kind: str
    component: str
    start: float
    end: float | None = None   # None: still firing when the scenario ended
    detail: str = ""


@dataclass
class Truth:
    """What the host saw happen, keyed the way spans are (hex ids as in SpanRecord)."""
    # one per /ask handled: {"trace_id": str | None, "ok": bool, "status": int, "latency_s": float, "query": str}
    requests: list[dict[str, Any]] = field(default_factory=list)
    # span id current when pipeline.generate was called -> {"trace_id", "input_tokens", "output_tokens", "finish_reason"}
    generations: dict[str, dict[str, Any]] = field(default_factory=dict)
    # span id current when pipeline.retrieve was called -> {"trace_id", "k", "cache_hit"}
    retrievals: dict[str, dict[str, Any]] = field(default_factory=dict)

    def extend(self, other: dict[str, Any]) -> None:
        self.requests.extend(other.get("requests", []))
        self.generations.update(other.get("generations", {}))
        self.retrievals.update(other.get("retrievals", {}))
