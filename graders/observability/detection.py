"""Score Task 2 from what a scenario left behind: alerts per tick -> pages -> recall, precision, root cause, time to detect.

Pure functions, no I/O. A page is an alert held over consecutive ticks. A fault counts as detected
when a page STARTS inside its window [start, end + grace_s]; a page that was already firing when the
fault began does not count, so an alert that is always on detects nothing. Precision is the share of
pages that start inside some window, and is worth points only above chance: pages started at random
times would land in a window as often as the windows cover the run. The root cause of a fault is
what its first page(s) blame.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from graders.engine.scoring import ramp
from graders.observability.interface import Alert
from graders.observability.records import Fault, Page


def pages_from_ticks(ticks: list[tuple[float, dict[str, list[Alert]]]]) -> list[Page]:
    """Pages from (now, {detector: alerts returned at that tick}) in time order.

    The same (detector, kind, component) on consecutive ticks is one page: it starts at the first
    tick and ends at the first tick it is missing (None when still firing at the last tick). A
    component outside interface.COMPONENTS still makes a page; it simply never names a right cause.
    """
    open_pages: dict[tuple[str, str, str], Page] = {}
    pages: list[Page] = []
    for now, alerts in ticks:
        current: dict[tuple[str, str, str], Alert] = {}
        for detector, raised in alerts.items():
            for alert in raised:
                current.setdefault((detector, alert.kind, alert.component), alert)
        for key in [k for k in open_pages if k not in current]:
            open_pages.pop(key).end = now
        for key, alert in current.items():
            if key not in open_pages:
                page = Page(detector=key[0], kind=key[1], component=key[2], start=now, detail=alert.detail)
                open_pages[key] = page
                pages.append(page)
    return sorted(pages, key=lambda p: (p.start, p.detector, p.kind, p.component))


@dataclass
class FaultResult:
    fault: Fault
    detected: bool
    first_page: Page | None          # the earliest page that started inside the fault's window
    time_to_detect_s: float | None   # first_page.start - fault.start
    blamed: str                      # the component(s) the earliest page(s) named, "" when undetected
    correct: bool                    # the earliest page(s) blamed exactly the fault's component


@dataclass
class Detection:
    recall: float
    precision: float
    chance_precision: float
    mean_time_to_detect_s: float
    root_cause_accuracy: float
    per_fault: list[FaultResult] = field(default_factory=list)
    false_pages: list[Page] = field(default_factory=list)


def in_window(t: float, fault: Fault, grace_s: float) -> bool:
    return fault.start <= t <= fault.end + grace_s


def window_coverage(faults: list[Fault], grace_s: float, run_end: float) -> float:
    """The fraction of [0, run_end] covered by the union of the windows [start, end + grace_s]."""
    if run_end <= 0:
        return 0.0
    spans = sorted((max(0.0, f.start), min(run_end, f.end + grace_s)) for f in faults)
    covered, reach = 0.0, 0.0
    for lo, hi in spans:
        lo = max(lo, reach)
        if hi > lo:
            covered += hi - lo
            reach = hi
    return covered / run_end


def tick_coverage(faults: list[Fault], grace_s: float, ticks: list[float]) -> float:
    """The share of ticks inside some window: the chance precision when pages can only start on ticks.

    Window ends are inclusive, so on whole-second ticks a window covers one tick more than its
    length suggests; counting ticks keeps a random pager at exactly zero precision points.
    """
    if not ticks:
        return 0.0
    return sum(any(in_window(t, f, grace_s) for f in faults) for t in ticks) / len(ticks)


def score_detection(faults: list[Fault], pages: list[Page], grace_s: float, run_end: float,
                    ticks: list[float] | None = None) -> Detection:
    """`ticks`: the times detectors were asked; chance precision is then counted in ticks, else in seconds."""
    results = []
    for fault in faults:
        inside = sorted((p for p in pages if in_window(p.start, fault, grace_s)), key=lambda p: p.start)
        if not inside:
            results.append(FaultResult(fault, False, None, None, "", False))
            continue
        first = inside[0]
        # Pages that start on the same tick are equally "first". Blaming every component at once is no
        # diagnosis, so the root cause is right only when all of them name the fault's component.
        blamed = sorted({p.component for p in inside if p.start == first.start})
        results.append(FaultResult(fault, True, first, first.start - fault.start, ", ".join(blamed),
                                   blamed == [fault.component]))
    false_pages = [p for p in pages if not any(in_window(p.start, f, grace_s) for f in faults)]
    detected = [r for r in results if r.detected]
    n = len(faults)
    return Detection(
        recall=len(detected) / n if n else 0.0,
        precision=(len(pages) - len(false_pages)) / len(pages) if pages else 0.0,
        chance_precision=tick_coverage(faults, grace_s, ticks) if ticks else window_coverage(faults, grace_s, run_end),
        mean_time_to_detect_s=(sum(r.time_to_detect_s or 0.0 for r in detected) / len(detected)
                               if detected else math.nan),
        root_cause_accuracy=sum(r.correct for r in results) / n if n else 0.0,
        per_fault=results,
        false_pages=false_pages,
    )


def row(r: FaultResult) -> dict[str, Any]:
    """One per-fault row for the report (plain values)."""
    p = r.first_page
    return {"fault": r.fault.name, "component": r.fault.component, "start": r.fault.start, "end": r.fault.end,
            "detected": r.detected, "time_to_detect_s": r.time_to_detect_s, "blamed": r.blamed, "correct": r.correct,
            "detector": p.detector if p else "", "kind": p.kind if p else ""}


# Points, as fractions of a part's weight, from the lab.toml part settings.

def precision_fraction(d: Detection, full_at: float) -> float:
    """0 at chance precision (or with no pages), 1 at `full_at`, linear between."""
    if d.precision == 0.0:
        return 0.0
    if d.chance_precision >= full_at:  # windows cover nearly the whole run: only full precision shows skill
        return 1.0 if d.precision >= full_at else 0.0
    return ramp(d.precision, d.chance_precision, full_at)


def time_to_detect_fraction(mean_s: float, full_at_s: float, zero_at_s: float) -> float:
    """1 at or below `full_at_s`, 0 at or beyond `zero_at_s`; 0 when nothing was detected (NaN)."""
    return 0.0 if math.isnan(mean_s) else ramp(mean_s, zero_at_s, full_at_s)


def overhead_fraction(ratio: float, full_at_ratio: float, zero_at_ratio: float) -> float:
    """1 at or below `full_at_ratio` (latency with / without instrumentation), 0 at or beyond `zero_at_ratio`."""
    return 0.0 if math.isnan(ratio) else ramp(ratio, zero_at_ratio, full_at_ratio)
