"""Score Task 2 from what a scenario left behind: alerts per tick -> pages -> recall, precision, root cause, time to detect.

Pure functions, no I/O. A page is an alert held over consecutive ticks. A fault counts as detected when
a page STARTS inside its window [reach_at, end + grace_s]. `reach_at` is the first tick whose telemetry
was collected after the fault was switched on (records.Fault): a page before it cannot come from the
data the detectors were handed and is a false page. A page already firing when the fault began does
not count either, so an alert that is always on detects nothing. The root cause of a fault is what its
first page(s) blame.

Precision is counted in events, as the Numenta Anomaly Benchmark counts detections: each detected fault
is one true positive however many pages it drew, each page starting outside every window one false
positive. Chance is what the same page times score against schedules drawn blindly (`blind`: the
grader's draws from the same distribution as the real schedule), so a pager that guesses where faults
are likeliest is measured against its own guesses. Luck is the `luck_quantile` of those blind scores:
a few pages land in windows by accident more often than the mean says.

Recall, root cause and time to detect are worth points only in proportion to precision above that bar
(`credit_factor`): a pager no better than chance earns nothing for the faults it happened to page,
the way NAB charges false positives in the same sum as detections.
"""
from __future__ import annotations

import math
from collections import Counter
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
    precision: float                 # detected faults / (detected faults + false pages)
    chance_precision: float          # the mean precision of the same page times on blindly drawn schedules
    mean_time_to_detect_s: float     # over detected faults; NaN when none
    root_cause_accuracy: float
    luck_bar: float = 0.0            # precision that earns nothing: `luck_quantile` of the blind precisions
    window_share: float = 0.0        # the share of ticks (after the warm-up) inside a window: a random pager's hit rate
    per_fault: list[FaultResult] = field(default_factory=list)
    false_pages: list[Page] = field(default_factory=list)
    early_pages: list[Page] = field(default_factory=list)  # false pages that started while a fault was being
                                                          # switched on, before a symptom could reach the detectors


def in_window(t: float, fault: Fault, grace_s: float) -> bool:
    return fault.first_symptom <= t <= fault.end + grace_s


def too_early(t: float, fault: Fault) -> bool:
    """The fault was on (or being switched on) at `t`, but nothing it did could have been seen yet."""
    return fault.start <= t < fault.first_symptom


def window_coverage(faults: list[Fault], grace_s: float, run_end: float) -> float:
    """The fraction of [0, run_end] covered by the union of the windows [reach_at, end + grace_s]."""
    if run_end <= 0:
        return 0.0
    spans = sorted((max(0.0, f.first_symptom), min(run_end, f.end + grace_s)) for f in faults)
    covered, reach = 0.0, 0.0
    for lo, hi in spans:
        lo = max(lo, reach)
        if hi > lo:
            covered += hi - lo
            reach = hi
    return covered / run_end


def tick_coverage(faults: list[Fault], grace_s: float, ticks: list[float]) -> float:
    """The share of ticks inside some window: how often a page started at a random tick lands in one.

    Window ends are inclusive, so on whole-second ticks a window covers one tick more than its
    length suggests; counting ticks keeps a random pager at exactly zero precision points.
    """
    if not ticks:
        return 0.0
    return sum(any(in_window(t, f, grace_s) for f in faults) for t in ticks) / len(ticks)


def event_precision(faults: list[Fault], starts: Counter[float], grace_s: float) -> float:
    """Detected faults / (detected faults + pages starting outside every window), from how many pages started at
    each time; 0 with no pages. More pages inside a window add nothing: a burst of pages is one detection."""
    hits = sum(any(in_window(t, f, grace_s) for t in starts) for f in faults)
    false = sum(n for t, n in starts.items() if not any(in_window(t, f, grace_s) for f in faults))
    return hits / (hits + false) if hits + false else 0.0


def score_detection(faults: list[Fault], pages: list[Page], grace_s: float, run_end: float,
                    ticks: list[float] | None = None, blind: list[list[Fault]] | None = None,
                    luck_quantile: float = 0.9) -> Detection:
    """`ticks`: the ticks at which a page could start by chance (the grader passes those after the warm-up, which
    everyone knows to be quiet), for `window_share`; without them it is counted in seconds of [0, run_end].
    `blind`: schedules drawn like the real one without its nonce (system.blind_schedules); chance precision and
    the luck bar are the mean and the `luck_quantile` of the pages' precision against them. Without `blind`
    both are `window_share` (what a page at a random tick would hit)."""
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
    share = tick_coverage(faults, grace_s, ticks) if ticks else window_coverage(faults, grace_s, run_end)
    starts = Counter(p.start for p in pages)  # a flood of pages starts on at most one time per tick
    by_chance = sorted(event_precision(b, starts, grace_s) for b in blind) if blind and pages else [share]
    return Detection(
        recall=len(detected) / n if n else 0.0,
        precision=event_precision(faults, starts, grace_s),
        chance_precision=sum(by_chance) / len(by_chance),
        mean_time_to_detect_s=(sum(r.time_to_detect_s or 0.0 for r in detected) / len(detected)
                               if detected else math.nan),
        root_cause_accuracy=sum(r.correct for r in results) / n if n else 0.0,
        luck_bar=by_chance[max(0, math.ceil(luck_quantile * len(by_chance)) - 1)],
        window_share=share,
        per_fault=results,
        false_pages=false_pages,
        early_pages=[p for p in false_pages if any(too_early(p.start, f) for f in faults)],
    )


def row(r: FaultResult) -> dict[str, Any]:
    """One per-fault row for the report (plain values)."""
    p = r.first_page
    return {"fault": r.fault.name, "component": r.fault.component, "start": r.fault.start, "end": r.fault.end,
            "reach_at": r.fault.first_symptom, "detected": r.detected, "time_to_detect_s": r.time_to_detect_s,
            "blamed": r.blamed, "correct": r.correct, "detector": p.detector if p else "", "kind": p.kind if p else ""}


# Points, as fractions of a part's weight, from the lab.toml part settings.

def precision_fraction(d: Detection, full_at: float) -> float:
    """0 at or below the luck bar (or with no pages), 1 at `full_at`, linear between."""
    if d.precision == 0.0:
        return 0.0
    if d.luck_bar >= full_at:  # windows cover nearly the whole run: only full precision shows skill
        return 1.0 if d.precision >= full_at else 0.0
    return ramp(d.precision, d.luck_bar, full_at)


def credit_factor(d: Detection, full_at: float) -> float:
    """The share of their points that recall, root cause and time to detect keep: precision above chance and
    luck, 0 at or below the luck bar, 1 at `full_at` (lab.toml [detection] credit_full_at), linear between."""
    return precision_fraction(d, full_at)


def time_to_detect_fraction(mean_s: float, full_at_s: float, zero_at_s: float, recall: float = 1.0) -> float:
    """1 at or below `full_at_s`, 0 at or beyond `zero_at_s`, times `recall` (one quick detection is not a quick
    detector); 0 when nothing was detected (NaN)."""
    return 0.0 if math.isnan(mean_s) else ramp(mean_s, zero_at_s, full_at_s) * recall


def overhead_fraction(ratio: float, full_at_ratio: float, zero_at_ratio: float) -> float:
    """1 at or below `full_at_ratio` (latency with / without instrumentation), 0 at or beyond `zero_at_ratio`."""
    return 0.0 if math.isnan(ratio) else ramp(ratio, zero_at_ratio, full_at_ratio)
