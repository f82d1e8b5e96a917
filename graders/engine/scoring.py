"""Turn measurements into points: ratios to the reference, clipped linear ramps, latency statistics."""
from __future__ import annotations

import numpy as np


def ramp(value: float, zero_at: float, full_at: float) -> float:
    """0..1: 0 at or beyond `zero_at`, 1 at or beyond `full_at`, linear between (either direction).

    The full-credit band is wide on purpose: the reference graded against itself sits at ratio
    ~1.0 with a few percent of machine noise, far inside the band, so re-grading does not move points.
    """
    if full_at == zero_at:
        return 1.0 if value >= full_at else 0.0
    fraction = (value - zero_at) / (full_at - zero_at)
    return float(min(1.0, max(0.0, fraction)))


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else float("nan")


def latency_summary(samples: list[list[float]], seconds: float) -> dict[str, float]:
    """p50/p95 latency of successful requests, throughput and error rate from raw [t, ms, ok] samples."""
    ok = [s[1] for s in samples if s[2]]
    return {
        "latency_p50_ms": percentile(ok, 50),
        "latency_p95_ms": percentile(ok, 95),
        "throughput_qps": len(ok) / seconds if seconds > 0 else 0.0,
        "error_rate": (len(samples) - len(ok)) / len(samples) if samples else 1.0,
    }
