"""Small helpers for reading the observability lab's telemetry (`graders.observability.interface` types).

A detector sees one `Telemetry` per tick: the spans that finished since the last tick and a scrape of
every Prometheus sample. Counters and histogram buckets in a scrape are cumulative since the process
started, so what happened during a tick is the difference between two scrapes:

    from labkit.telemetry import CounterDeltas, Window, total

    errors = CounterDeltas()
    recent = Window(seconds=10)
    def observe(tel):
        d = errors.update(total(tel.metrics["assistant"], "assistant_requests_total", status="error"))
        recent.add(tel.now, d)
        if recent.sum(tel.now) > 5: ...

`histogram_counts` reads a histogram's cumulative buckets, `bucket_deltas` subtracts two of them,
and `fraction_above` says what share of the observations in between were slower than a threshold.
"""
from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Iterator, Mapping

import numpy as np

from graders.observability.interface import Sample, SpanRecord

__all__ = ["CounterDeltas", "Window", "bucket_deltas", "children_of", "fraction_above", "histogram_counts",
           "slope", "total"]


def total(samples: Iterable[Sample], name: str, **labels: str) -> float:
    """Sum of the samples called exactly `name` whose labels include every `labels` item (0 when none match)."""
    return sum(s.value for s in samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def _le(text: str) -> float:
    return math.inf if text in ("+Inf", "Inf", "inf") else float(text)


def histogram_counts(samples: Iterable[Sample], name: str, **labels: str) -> dict[float, float]:
    """{upper bound `le`: cumulative count} of histogram `name` (without `_bucket`), summed over other labels."""
    out: dict[float, float] = {}
    for s in samples:
        if s.name == f"{name}_bucket" and "le" in s.labels and all(s.labels.get(k) == v for k, v in labels.items()):
            le = _le(s.labels["le"])
            out[le] = out.get(le, 0.0) + s.value
    return dict(sorted(out.items()))


def bucket_deltas(now: Mapping[float, float], before: Mapping[float, float] | None) -> dict[float, float]:
    """Per-bucket observations between two cumulative scrapes (a counter reset counts from zero)."""
    if not before:
        return {}
    return {le: (c - before.get(le, 0.0)) if c >= before.get(le, 0.0) else c for le, c in now.items()}


def fraction_above(deltas: Mapping[float, float], threshold: float) -> tuple[float, float]:
    """(observations above `threshold`, all observations) from cumulative bucket deltas.

    Uses the largest bucket bound <= threshold, so give the histogram a boundary at the threshold."""
    n = deltas.get(math.inf, 0.0)
    below = max((c for le, c in deltas.items() if le <= threshold + 1e-12), default=0.0)
    return max(n - below, 0.0), n


class CounterDeltas:
    """Turns a cumulative counter into per-tick increments; the first update and resets are handled."""

    def __init__(self) -> None:
        self.last: float | None = None

    def update(self, value: float) -> float:
        delta = 0.0 if self.last is None else (value - self.last if value >= self.last else value)
        self.last = value
        return delta


class Window:
    """(t, value) points kept for the last `seconds` (or at most `maxlen` points), with a few summaries."""

    def __init__(self, seconds: float = math.inf, maxlen: int | None = None) -> None:
        self.seconds = seconds
        self.points: deque[tuple[float, float]] = deque(maxlen=maxlen)

    def add(self, t: float, value: float) -> None:
        self.points.append((t, value))
        while self.points and self.points[0][0] < t - self.seconds:
            self.points.popleft()

    def __len__(self) -> int:
        return len(self.points)

    def __iter__(self) -> Iterator[tuple[float, float]]:
        return iter(self.points)

    def since(self, t: float) -> list[float]:
        """Values of the points at or after time `t`."""
        return [v for ts, v in self.points if ts >= t]

    def values(self) -> list[float]:
        return [v for _, v in self.points]

    def sum(self, now: float, seconds: float | None = None) -> float:
        """Sum of the values in (now - seconds, now]; the whole window when `seconds` is None."""
        lo = now - (self.seconds if seconds is None else seconds)
        return sum(v for t, v in self.points if t > lo + 1e-9)

    def rate(self, now: float, seconds: float) -> float:
        """Sum per second over the last `seconds`."""
        return self.sum(now, seconds) / seconds if seconds > 0 else math.nan

    def mean(self) -> float:
        return float(np.mean(self.values())) if self.points else math.nan


def slope(points: Iterable[tuple[float, float]]) -> float:
    """Least-squares slope of value over time (value units per second); nan with fewer than 2 distinct times."""
    pts = list(points)
    if len(pts) < 2:
        return math.nan
    t = np.array([p[0] for p in pts], dtype=float)
    y = np.array([p[1] for p in pts], dtype=float)
    var = float(((t - t.mean()) ** 2).sum())
    return float(((t - t.mean()) * (y - y.mean())).sum() / var) if var > 0 else math.nan


def children_of(spans: Iterable[SpanRecord], name_prefix: str) -> list[SpanRecord]:
    """The spans whose name starts with `name_prefix` (e.g. "retrieval", "text_completion")."""
    return [s for s in spans if s.name.startswith(name_prefix)]
