"""The reference detectors: what pages, on which telemetry, and which component each page blames.

Every detector learns its baseline during the warm-up (the first WARMUP_S seconds of the run, which
have no faults) and then compares each tick against it. Counters and histograms are cumulative, so
everything below works on the difference between consecutive scrapes.

    SloBurnRate        errors and slow requests against the SLO's error budget, SRE-workbook multi-window
                       burn rates; blames the child span that failed, or the one that got slower
    QueryDrift         two-sample KS test per dimension of the query-embedding sketch (warm-up vs recent)
    RetrievalQuality   top-hit scores of repeated queries against the score the same query got before
    CacheEfficiency    embedding-cache hit ratio over the last lookups against the warm-up ratio
    ResourceTrend      least-squares slope of the backend's resident memory

Why RetrievalQuality pairs repeated queries instead of comparing score distributions: when 70% of the
index vanishes the top hit's cosine drops by only ~0.05 on average, against a spread of ~0.15 across
queries, so a test on the score distribution needs a minute of traffic. Retrieval is deterministic, so
the same query (recognised by its embedding sketch) must get the same score: any drop is a signal.
"""
from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np
from scipy.stats import ks_2samp

from graders.observability.interface import Alert, Detector, ServiceConfig, SpanRecord, Telemetry
from labkit.telemetry import CounterDeltas, Window, bucket_deltas, fraction_above, histogram_counts, slope, total


# @cell obs_task_2_1_slo
WARMUP_S = 12.0
SKETCH_ATTR = "ailab.query.embedding_sketch"
SCORE_ATTR = "ailab.retrieval.top_score"
GENERATION_OPS = ("chat", "text_completion", "generate_content")


def operation(span: SpanRecord) -> str:
    """"retrieval", "generation" or "" from the GenAI operation name (span name as a fallback)."""
    op = str(span.attributes.get("gen_ai.operation.name") or span.name.split(" ")[0])
    return "retrieval" if op == "retrieval" else "generation" if op in GENERATION_OPS else ""


class SloBurnRate:
    """Multi-window burn rates (SRE workbook ch. 5) for an error SLO and a latency SLO.

    burn = bad fraction in a window / error budget. A pair pages when both its long and its short
    window burn faster than the factor; windows are the workbook's divided by config.time_scale."""

    name = "slo_burn_rate"
    PAIRS = ((3600.0, 300.0, 14.4), (21600.0, 1800.0, 6.0))  # (long s, short s, factor)
    BLAME_S = 4.0                                            # spans this recent explain a page
    KEEP_FIRING_S = 3.0                                      # a page outlives its condition by this
    CLEAR_S = 0.2                                            # a step must be this much slower to be blamed

    def __init__(self, config: ServiceConfig) -> None:
        ### BEGIN SOLUTION
        self.config = config
        self.budget = 1.0 - config.slo_target
        self.pairs = [(lo / config.time_scale, sh / config.time_scale, f) for lo, sh, f in self.PAIRS]
        horizon = max(lo for lo, _, _ in self.pairs) + 1.0
        self.ok, self.err = CounterDeltas(), CounterDeltas()
        self.hist: dict[float, float] | None = None
        self.requests, self.errors = Window(horizon), Window(horizon)
        self.timed, self.slow = Window(horizon), Window(horizon)
        self.base: dict[str, list[float]] = {"retrieval": [], "generation": []}
        self.recent: deque[tuple[float, str, float, bool]] = deque(maxlen=2000)  # (end, op, duration, error)
        # One incident, one page: the blame is fixed when a page starts, and a page outlives its condition by
        # KEEP_FIRING_S (Prometheus' keep_firing_for) so that a flicker does not end it and start another.
        self.episodes: dict[str, tuple[str, float, str]] = {}  # kind -> (component, last time the condition held, why)
        ### END SOLUTION

    def burning(self, bad: Window, n: Window, now: float) -> str:
        """Which pair fires for this SLI ("" when none)."""
        ### BEGIN SOLUTION
        for long_s, short_s, factor in self.pairs:
            rates = []
            for w in (long_s, short_s):
                count = n.sum(now, max(w, 1.0))  # a window shorter than a tick is the last tick
                rates.append(bad.sum(now, max(w, 1.0)) / count / self.budget if count else 0.0)
            if min(rates) > factor:
                return f"burn {rates[0]:.0f}x over {long_s:g} s and {rates[1]:.0f}x over {max(short_s, 1.0):g} s"
        return ""
        ### END SOLUTION

    def observe(self, telemetry: Telemetry) -> list[Alert]:
        ### BEGIN SOLUTION
        now, samples = telemetry.now, telemetry.metrics.get("assistant", [])
        ok = self.ok.update(total(samples, "assistant_requests_total", status="ok"))
        err = self.err.update(total(samples, "assistant_requests_total", status="error"))
        counts = histogram_counts(samples, "assistant_request_duration_seconds")
        slow, timed = fraction_above(bucket_deltas(counts, self.hist), self.config.slo_latency_s)
        self.hist = counts
        self.requests.add(now, ok + err)
        self.errors.add(now, err)
        self.timed.add(now, timed)
        self.slow.add(now, slow)
        for s in telemetry.spans:
            op = operation(s)
            if op:
                self.recent.append((s.end, op, s.duration, s.status == "ERROR"))
                if now < WARMUP_S and s.status != "ERROR":
                    self.base[op].append(s.duration)
        if now < WARMUP_S:
            return []
        alerts = [self.episode("error_slo_burn", self.burning(self.errors, self.requests, now), now),
                  self.episode("latency_slo_burn", self.burning(self.slow, self.timed, now), now)]
        return [a for a in alerts if a is not None]
        ### END SOLUTION

    def episode(self, kind: str, why: str, now: float) -> Alert | None:
        """The alert of `kind` this tick: `why` is why it burns now ("" when not); one page per incident."""
        ### BEGIN SOLUTION
        held = self.episodes.get(kind)
        if why:
            component = held[0] if held else (self.blame_errors(now) if kind == "error_slo_burn"
                                              else self.blame_latency(now))
            if not component:  # burning, but the spans do not say where yet: wait a tick rather than guess
                return None
            self.episodes[kind] = (component, now, why)
            return Alert(kind, component, why)
        if held and now - held[1] <= self.KEEP_FIRING_S:
            return Alert(kind, held[0], f"{held[2]} (resolving)")
        self.episodes.pop(kind, None)
        return None
        ### END SOLUTION

    def blame_errors(self, now: float) -> str:
        """The component whose spans failed most in the last BLAME_S seconds."""
        ### BEGIN SOLUTION
        failed = [op for end, op, _, error in self.recent if error and end > now - self.BLAME_S]
        return "retriever" if failed.count("retrieval") > failed.count("generation") else "generator"
        ### END SOLUTION

    def blame_latency(self, now: float) -> str:
        """The component whose recent spans got slower than their warm-up baseline by the most."""
        ### BEGIN SOLUTION
        increase = {}
        for op in ("retrieval", "generation"):
            recent = [d for end, o, d, error in self.recent if o == op and not error and end > now - self.BLAME_S]
            base = float(np.mean(self.base[op])) if self.base[op] else 0.0
            increase[op] = (float(np.mean(recent)) - base) if recent else 0.0
        (slower, most), (_, other) = sorted(increase.items(), key=lambda kv: -kv[1])
        # A busy machine slows everything a little; a fault slows one step a lot. Undecided -> "".
        if most < self.CLEAR_S or most < 2 * max(other, 0.0):
            return ""
        return "retriever" if slower == "retrieval" else "generator"
        ### END SOLUTION


# @cell obs_task_2_2_drift
class QueryDrift:
    """KS test per sketch dimension, warm-up sample vs the last `window` queries, Bonferroni-corrected."""

    name = "query_drift"

    def __init__(self, window: int = 24, alpha: float = 3e-5) -> None:
        ### BEGIN SOLUTION
        self.alpha, self.window = alpha, window
        self.reference: list[list[float]] = []
        self.recent: deque[list[float]] = deque(maxlen=window)
        self.p = 1.0
        self.firing = False
        ### END SOLUTION

    def observe(self, telemetry: Telemetry) -> list[Alert]:
        ### BEGIN SOLUTION
        for s in telemetry.spans:
            sketch = s.attributes.get(SKETCH_ATTR)
            if sketch:
                (self.reference if telemetry.now < WARMUP_S else self.recent).append(list(sketch))
        self.firing = False
        if telemetry.now < WARMUP_S or len(self.reference) < 30 or len(self.recent) < self.window // 2:
            return []
        ref, cur = np.asarray(self.reference), np.asarray(self.recent)
        dims = min(ref.shape[1], cur.shape[1])
        pvalues = [ks_2samp(ref[:, j], cur[:, j]).pvalue for j in range(dims)]
        self.p = min(1.0, float(min(pvalues)) * dims)
        self.firing = self.p < self.alpha
        return [Alert("query_drift", "traffic", f"KS p={self.p:.1e} (Bonferroni over {dims} dims)")] if self.firing else []
        ### END SOLUTION


# @cell obs_task_2_3_retrieval
class RetrievalQuality:
    """Top-hit score of each repeated query against the best score that query got before.

    Retrieval is deterministic, so on a healthy index the difference is 0; a shrinking index can only
    lose the best documents. Pages when many of the last `window` repeats lost score."""

    name = "retrieval_quality"

    def __init__(self, drift: QueryDrift | None = None, window: int = 12, drop: float = 0.01,
                 min_fraction: float = 0.3) -> None:
        ### BEGIN SOLUTION
        self.drift, self.drop, self.min_fraction, self.window = drift, drop, min_fraction, window
        self.best: dict[tuple[float, ...], float] = {}
        self.deltas: deque[float] = deque(maxlen=window)
        ### END SOLUTION

    def observe(self, telemetry: Telemetry) -> list[Alert]:
        ### BEGIN SOLUTION
        for s in sorted(telemetry.spans, key=lambda s: s.end):
            sketch, score = s.attributes.get(SKETCH_ATTR), s.attributes.get(SCORE_ATTR)
            if not sketch or score is None:
                continue
            key = tuple(round(float(x), 3) for x in sketch)
            if key in self.best:
                self.deltas.append(float(score) - self.best[key])
            self.best[key] = max(float(score), self.best.get(key, -math.inf))
        if telemetry.now < WARMUP_S or len(self.deltas) < self.window // 2:
            return []
        lost = sum(d < -self.drop for d in self.deltas) / len(self.deltas)
        if lost >= self.min_fraction and not (self.drift and self.drift.firing):
            return [Alert("retrieval_quality_drop", "index",
                          f"{lost:.0%} of repeated queries lost top-hit score (mean {np.mean(self.deltas):+.3f})")]
        return []
        ### END SOLUTION


# @cell obs_task_2_4_resources
class CacheEfficiency:
    """Embedding-cache hit ratio over the last >= `lookups` lookups, against the warm-up ratio."""

    name = "cache_efficiency"

    def __init__(self, drift: QueryDrift | None = None, lookups: int = 12, floor: float = 0.1,
                 min_baseline: float = 0.3) -> None:
        ### BEGIN SOLUTION
        self.drift, self.lookups, self.floor, self.min_baseline = drift, lookups, floor, min_baseline
        self.hit, self.miss = CounterDeltas(), CounterDeltas()
        self.ticks: deque[tuple[float, float]] = deque(maxlen=60)  # (hits, misses) per tick
        self.base_hits = self.base_all = 0.0
        ### END SOLUTION

    def observe(self, telemetry: Telemetry) -> list[Alert]:
        ### BEGIN SOLUTION
        samples = telemetry.metrics.get("assistant", [])
        h = self.hit.update(total(samples, "assistant_retrieval_cache_requests_total", result="hit"))
        m = self.miss.update(total(samples, "assistant_retrieval_cache_requests_total", result="miss"))
        self.ticks.append((h, m))
        if telemetry.now < WARMUP_S:
            self.base_hits, self.base_all = self.base_hits + h, self.base_all + h + m
            return []
        hits = seen = 0.0
        for h, m in reversed(self.ticks):
            hits, seen = hits + h, seen + h + m
            if seen >= self.lookups:
                break
        base = self.base_hits / self.base_all if self.base_all else 0.0
        if seen >= self.lookups and base >= self.min_baseline and hits / seen < self.floor \
                and not (self.drift and self.drift.p < 1e-2):
            return [Alert("cache_hit_ratio_drop", "cache", f"hit ratio {hits / seen:.2f} over {seen:.0f} lookups "
                                                           f"(warm-up {base:.2f})")]
        return []
        ### END SOLUTION


class ResourceTrend:
    """Least-squares slope of the backend's resident memory over the last `points` scrapes.

    RSS jumps by +-10 MB between scrapes on a busy backend, so one jump is not a trend: the slope must
    be steep and most steps (and the median step) must be real increases. Right after the warm-up a
    healthy backend still grew by 10.5 MB/s (a false page at 10 MB/s), so the bar is 15 MB/s: the
    leak fault's 25 MB/s clears it."""

    name = "resource_trend"

    def __init__(self, points: int = 5, bytes_per_s: float = 15e6) -> None:
        ### BEGIN SOLUTION
        self.bytes_per_s, self.points = bytes_per_s, points
        self.rss: deque[tuple[float, float]] = deque(maxlen=points)
        ### END SOLUTION

    def observe(self, telemetry: Telemetry) -> list[Alert]:
        ### BEGIN SOLUTION
        rss = total(telemetry.metrics.get("backend", []), "process_resident_memory_bytes")
        if rss <= 0:
            return []
        self.rss.append((telemetry.now, rss))
        if telemetry.now < WARMUP_S or len(self.rss) < self.points:
            return []
        steps = np.diff([v for _, v in self.rss])
        rate = slope(self.rss)
        if rate > self.bytes_per_s and (steps > 0.2 * self.bytes_per_s).sum() >= len(steps) - 1 \
                and np.median(steps) > 0.4 * self.bytes_per_s:
            return [Alert("memory_growth", "memory", f"backend RSS +{rate / 1e6:.1f} MB/s")]
        return []
        ### END SOLUTION


# @cell obs_task_2_5_detectors
def create_detectors(config: ServiceConfig) -> list[Detector]:
    """Drift runs first each tick: the cache and retrieval-quality detectors defer to it (a new topic
    misses the cache and changes scores without anything being broken)."""
    ### BEGIN SOLUTION
    drift = QueryDrift()
    detectors: list[Any] = [drift, SloBurnRate(config), RetrievalQuality(drift), CacheEfficiency(drift),
                            ResourceTrend()]
    return detectors
    ### END SOLUTION
