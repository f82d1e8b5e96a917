"""The observability lab's pure scoring: pages from ticks, detection scores, telemetry conformance, and the report."""
from __future__ import annotations

import base64
import math
from dataclasses import asdict, replace
from html.parser import HTMLParser
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, Summary, generate_latest

from graders.engine.labconfig import load_lab
from graders.engine.report_observability import write_observability_report
from graders.engine.scorecard import Scorecard
from graders.observability import conformance, detection
from graders.observability.conformance import Check, check_telemetry
from graders.observability.interface import Alert, ServiceConfig, SpanRecord
from graders.observability.records import Fault, Page, Truth
from graders.observability.system import schedule

GRACE = 3.0
RUN_END = 58.0
FAULTS = [Fault("retriever_latency", "retriever", 10, 18), Fault("error_burst", "generator", 26, 34),
          Fault("memory_leak", "memory", 42, 50)]


def run_ticks(alerts_at: Callable[[float], dict[str, list[Alert]]]) -> list[tuple[float, dict[str, list[Alert]]]]:
    return [(float(t), alerts_at(float(t))) for t in range(int(RUN_END) + 1)]


def active(t: float) -> Fault | None:
    return next((f for f in FAULTS if f.start <= t < f.end), None)


def visible(t: float) -> Fault | None:
    """The fault whose symptoms the detectors can have seen at tick t: one switched on at least a tick ago."""
    return next((f for f in FAULTS if f.first_symptom <= t < f.end + 1), None)


def perfect(t: float) -> dict[str, list[Alert]]:
    f = visible(t)
    return {"slo": [Alert("burn", f.component)] if f else []}


def shifted(faults: list[Fault], by: range) -> list[list[Fault]]:
    """The same schedule moved by each offset: blind schedules for chance precision in these pure tests."""
    return [[replace(f, start=f.start + k, end=f.end + k) for f in faults] for k in by]


def score(alerts_at: Callable[[float], dict[str, list[Alert]]], **kw: Any) -> detection.Detection:
    return detection.score_detection(FAULTS, detection.pages_from_ticks(run_ticks(alerts_at)), GRACE, RUN_END, **kw)


# ---- pages and detection -------------------------------------------------------------------------

def test_pages_hold_over_consecutive_ticks_and_end_when_missing() -> None:
    a, b = Alert("burn", "generator", "fast burn"), Alert("p95", "retriever")
    ticks: list[tuple[float, dict[str, list[Alert]]]] = [(0.0, {"d": []}), (1.0, {"d": [a, a]}), (2.0, {"d": [a, b]}), (3.0, {"d": [b]}), (4.0, {"d": [a, b]}),
             (5.0, {"d": [b], "e": [Alert("burn", "database")]})]
    pages = detection.pages_from_ticks(ticks)
    got = [(p.detector, p.kind, p.component, p.start, p.end) for p in pages]
    assert got == [("d", "burn", "generator", 1.0, 3.0), ("d", "p95", "retriever", 2.0, None),
                   ("d", "burn", "generator", 4.0, 5.0), ("e", "burn", "database", 5.0, None)]
    assert pages[0].detail == "fast burn"


def test_perfect_detector_scores_full_marks() -> None:
    d = score(perfect)
    assert (d.recall, d.precision, d.root_cause_accuracy) == (1.0, 1.0, 1.0)
    assert d.mean_time_to_detect_s == pytest.approx(1.0)
    assert d.false_pages == [] and all(r.correct and r.time_to_detect_s == 1.0 for r in d.per_fault)
    assert detection.precision_fraction(d, full_at=0.9) == 1.0
    assert detection.row(d.per_fault[1])["blamed"] == "generator"


def test_always_on_alert_detects_nothing() -> None:
    d = score(lambda t: {"always": [Alert("on", "generator")]})
    assert d.recall == 0.0 and d.precision == 0.0 and d.root_cause_accuracy == 0.0
    assert math.isnan(d.mean_time_to_detect_s)
    assert len(d.false_pages) == 1 and d.false_pages[0].end is None
    assert detection.precision_fraction(d, 0.9) == 0.0
    assert detection.time_to_detect_fraction(d.mean_time_to_detect_s, 4.0, 12.0) == 0.0


def test_flapping_everywhere_scores_precision_near_chance_and_no_points() -> None:
    flap = lambda t: {"flap": [Alert("x", "retriever")] if int(t) % 2 == 0 else []}  # noqa: E731
    # windows open a tick after each switch: [11, 21], [27, 37], [43, 53] in seconds of a 58 s run
    assert score(flap).window_share == pytest.approx(30 / 58)
    d = score(flap, blind=shifted(FAULTS, range(-9, 5)))
    assert d.recall == 1.0
    # 3 faults paged and 15 false pages: the same flapping scores as much on any shifted schedule
    assert d.precision == pytest.approx(3 / 18) and len(d.false_pages) == 15
    assert abs(d.precision - d.chance_precision) < 0.08
    assert detection.precision_fraction(d, full_at=0.9) < 0.15
    assert detection.credit_factor(d, 0.8) == 0.0  # recall, root cause and time to detect count for nothing
    assert d.root_cause_accuracy == pytest.approx(1 / 3)  # right only where it happened to guess "retriever"


def test_wrong_or_shotgun_components_lower_root_cause() -> None:
    def wrong_for_memory(t: float) -> dict[str, list[Alert]]:
        f = visible(t)
        if f is None:
            return {}
        return {"slo": [Alert("burn", "cache" if f.component == "memory" else f.component)]}

    d = score(wrong_for_memory)
    assert d.recall == 1.0 and d.precision == 1.0
    assert d.root_cause_accuracy == pytest.approx(2 / 3)
    assert [r.blamed for r in d.per_fault] == ["retriever", "generator", "cache"]

    def every_component(t: float) -> dict[str, list[Alert]]:
        f = visible(t)
        return {"all": [Alert("x", c) for c in ("retriever", "generator", "memory")]} if f else {}

    shotgun = score(every_component)
    assert shotgun.recall == 1.0 and shotgun.root_cause_accuracy == 0.0

    unknown = score(lambda t: {"d": [Alert("x", "database")]} if visible(t) else {})
    assert unknown.recall == 1.0 and unknown.root_cause_accuracy == 0.0


def test_undetected_faults_count_against_root_cause_and_late_pages_count_in_grace() -> None:
    late = score(lambda t: {"d": [Alert("x", "retriever")]} if 19 <= t <= 20 else {})  # after the end, in grace
    assert late.recall == pytest.approx(1 / 3)
    assert late.root_cause_accuracy == pytest.approx(1 / 3)
    assert late.mean_time_to_detect_s == pytest.approx(9.0)
    assert detection.time_to_detect_fraction(9.0, 4.0, 12.0) == pytest.approx(3 / 8)
    assert detection.overhead_fraction(1.1, 1.15, 2.0) == 1.0
    assert detection.overhead_fraction(2.5, 1.15, 2.0) == 0.0
    assert detection.overhead_fraction(math.nan, 1.15, 2.0) == 0.0


def test_window_coverage_merges_overlaps_and_clips_to_the_run() -> None:
    faults = [Fault("a", "cache", 0, 10), Fault("b", "cache", 8, 12), Fault("c", "cache", 95, 100)]
    # windows open a tick after the switch: [1, 12] and [9, 14] merge, [96, 102] is clipped at 100
    assert detection.window_coverage(faults, 2.0, 100.0) == pytest.approx((13 + 4) / 100)
    assert detection.window_coverage([], 2.0, 100.0) == 0.0


# ---- the drawn schedule, the first symptom, events and the credit factor ---------------------------

def test_every_profile_draws_its_schedule_per_nonce_with_a_fixed_length_and_quiet_time() -> None:
    lab = load_lab("observability")
    for name in ("smoke", "quick", "full"):
        sc = lab.scenario(name)
        n = sc.rounds * len(lab.raw["faults"])
        min_gap = math.ceil(sc.gap_s * lab.raw["schedule"]["min_gap_fraction"])
        draws = {nonce: schedule(lab, sc, nonce) for nonce in ("", "a", "b", "c")}
        for faults, end in draws.values():
            assert end == sc.warmup_s + n * (sc.fault_s + sc.gap_s) and len(faults) == n
            assert faults[0].start >= sc.warmup_s and faults[-1].end + sc.grace_s <= end
            assert all(f.end - f.start == sc.fault_s and f.reach_at == f.start + 1 for f in faults)
            assert all(b.start - a.end >= min_gap > sc.grace_s for a, b in zip(faults, faults[1:]))
            assert sorted(f.name for f in faults) == sorted(list(lab.raw["faults"]) * sc.rounds)  # each, once a round
            after_warmup = [float(t) for t in range(int(end) + 1) if t >= sc.warmup_s]
            assert detection.tick_coverage(faults, sc.grace_s, after_warmup) <= 0.32, name  # was ~0.65
        assert len({tuple(f.start for f in faults) for faults, _ in draws.values()}) == 4, name
        assert len({tuple(f.name for f in faults) for faults, _ in draws.values()}) > 1, name
        assert schedule(lab, sc, "a") == draws["a"]  # a nonce replays its draw


def test_a_fault_of_a_later_round_switches_on_after_the_earlier_one_switched_off() -> None:
    from graders.observability.scenario import transitions

    plan = [Fault("cache_miss", "cache", 10, 15), Fault("memory_leak", "memory", 22, 27),
            Fault("cache_miss", "cache", 40, 45)]
    active: set[str] = set()
    on_ticks = []
    for t in range(50):
        off, on = transitions(plan, float(t), active)
        active -= set(off)
        active |= {f.name for f in on}
        on_ticks += [(t, f.start) for f in on]
        assert ("cache_miss" in active) == (10 <= t < 15 or 40 <= t < 45), t
    assert on_ticks == [(10, 10), (22, 22), (40, 40)]


def test_a_page_counts_only_from_the_first_tick_collected_after_the_switch() -> None:
    from graders.observability.scenario import reach

    fault = Fault("error_burst", "generator", 10, 15)
    on_time = [(float(t), t + 0.01) for t in range(30)]  # (tick, when its collection began)
    [nominal] = reach([fault], {"error_burst@10": 10.05}, on_time, 29.0)
    assert nominal.reach_at == 11.0
    # the detectors' call at tick 10 ran 1.3 s, so the fault went on at 11.35, after tick 11's collection began
    late = [(t, b) for t, b in on_time if t != 11.0] + [(11.0, 11.02)]
    [slow] = reach([fault], {"error_burst@10": 11.35}, sorted(late), 29.0)
    assert slow.reach_at == 12.0
    [never] = reach([fault], {}, on_time, 29.0)  # the scenario ended before it was switched on
    assert never.reach_at == 30.0

    at_switch = Page("d", "guess", "generator", 10.0, 12.0)   # the tick the fault went on: a guess
    from_data = Page("d", "burn", "generator", 11.0)
    d = detection.score_detection([nominal], [at_switch, from_data], 1.0, 29.0)
    assert d.recall == 1.0 and d.per_fault[0].first_page is from_data and d.per_fault[0].time_to_detect_s == 1.0
    assert d.false_pages == d.early_pages == [at_switch] and d.precision == 0.5
    d = detection.score_detection([slow], [at_switch, from_data], 1.0, 29.0)
    assert d.recall == 0.0 and len(d.early_pages) == 2


def test_a_burst_of_pages_in_one_window_is_one_detection() -> None:
    # 20 pages (different kinds) while the first fault is visible, and two false pages between faults
    burst = score(lambda t: {"d": [Alert(f"k{t:.0f}-{i}", "retriever") for i in range(2)]} if 11 <= t <= 20 else
                  {"d": [Alert("x", "cache")]} if t in (24.0, 40.0) else {})
    assert burst.recall == pytest.approx(1 / 3) and len(burst.false_pages) == 2
    assert burst.precision == pytest.approx(1 / 3)  # one detection, two false pages: not 20 / 22


def test_recall_root_cause_and_time_to_detect_count_in_proportion_to_precision_above_chance() -> None:
    # a quiet schedule: 3 s faults in a 140 s run, and the same schedule shifted as the blind draws
    faults = [Fault("retriever_latency", "retriever", 20, 23), Fault("error_burst", "generator", 60, 63),
              Fault("memory_leak", "memory", 100, 103)]
    blind = shifted(faults, range(-18, 40, 2))
    right = [Page("d", "burn", f.component, f.start + 1, f.end + 1) for f in faults]

    good = detection.score_detection(faults, right, 1.0, 140.0, blind=blind)
    assert good.precision == 1.0 and detection.credit_factor(good, 0.8) == 1.0
    assert good.chance_precision < good.luck_bar < 0.8  # the same pages on other schedules hit less often

    # the same pages and two false ones: precision 3 / 5, above chance but short of full credit
    noisy = detection.score_detection(faults, right + [Page("n", "x", "cache", 40.0, 41.0),
                                                        Page("n", "x", "cache", 80.0, 81.0)], 1.0, 140.0, blind=blind)
    assert noisy.precision == pytest.approx(3 / 5)
    credit = detection.credit_factor(noisy, 0.8)
    assert credit == pytest.approx((0.6 - noisy.luck_bar) / (0.8 - noisy.luck_bar)) and 0 < credit < 1

    # flapping pages every other tick: every fault paged, at chance, so no credit at all
    flap = detection.score_detection(faults, [Page("f", "x", "retriever", float(t), t + 1.0) for t in range(1, 140, 2)],
                                     1.0, 140.0, blind=blind)
    assert flap.recall == 1.0 and detection.credit_factor(flap, 0.8) == 0.0

    # time to detect: one quick detection is not a quick detector
    assert detection.time_to_detect_fraction(1.0, 4.0, 12.0, recall=1 / 3) == pytest.approx(1 / 3)


# ---- conformance ---------------------------------------------------------------------------------

CONFIG = ServiceConfig()
N = 30


def query(i: int) -> str:
    return f"how long do I have to return item number {i % 12} bought in Germany?"


def world(n: int = N, fail_every: int = 5, first: int = 0) -> tuple[list[SpanRecord], Truth]:
    """Spans and ground truth as a well-instrumented assistant leaves them: every `fail_every`th generation 503s."""
    spans: list[SpanRecord] = []
    truth = Truth()
    for i in range(first, first + n):
        tid, root, ret, gen = f"{i + 1:032x}", f"{3 * i + 1:016x}", f"{3 * i + 2:016x}", f"{3 * i + 3:016x}"
        t0, failed = float(i), fail_every > 0 and i % fail_every == fail_every - 1
        latency = 0.25 + 0.01 * (i % 5)
        out_tokens = 10 + i % 7
        spans.append(SpanRecord(f"retrieval {CONFIG.data_source}", tid, ret, root, "INTERNAL", t0, t0 + 0.05, "UNSET",
                                {"gen_ai.operation.name": "retrieval", "gen_ai.data_source.id": CONFIG.data_source,
                                 "gen_ai.request.top_k": CONFIG.top_k}))
        truth.retrievals[ret] = {"trace_id": tid, "k": CONFIG.top_k, "cache_hit": i % 2 == 0}
        gen_attrs: dict[str, Any] = {"gen_ai.operation.name": "text_completion", "gen_ai.request.model": CONFIG.model,
                                     "gen_ai.provider.name": CONFIG.provider,
                                     "gen_ai.request.max_tokens": CONFIG.max_tokens}
        if failed:
            gen_attrs["error.type"] = "UpstreamError"
            truth.generations[gen] = {"trace_id": tid, "error": 503}
        else:
            gen_attrs |= {"gen_ai.usage.input_tokens": 120 + i, "gen_ai.usage.output_tokens": out_tokens,
                          "gen_ai.response.finish_reasons": ["length"]}
            truth.generations[gen] = {"trace_id": tid, "input_tokens": 120 + i, "output_tokens": out_tokens,
                                      "finish_reason": "length"}
        spans.append(SpanRecord(f"text_completion {CONFIG.model}", tid, gen, root, "CLIENT", t0 + 0.05,
                                t0 + latency - 0.01, "ERROR" if failed else "UNSET", gen_attrs))
        spans.append(SpanRecord("POST /ask", tid, root, None, "SERVER", t0, t0 + latency,
                                "ERROR" if failed else "UNSET",
                                {"http.request.method": "POST", "http.route": "/ask"} |
                                ({"error.type": "UpstreamError"} if failed else {})))
        truth.requests.append({"trace_id": tid, "ok": not failed, "status": 502 if failed else 200,
                               "latency_s": latency, "query": query(i)})
    return spans, truth


def metrics(truth: Truth, unit: float = 1.0, count_errors: bool = True, extra: str = "",
            duration_type: type = Histogram) -> str:
    """The /metrics text a well-instrumented assistant exposes after serving `truth`."""
    r = CollectorRegistry()
    requests = Counter("assistant_requests_total", "requests", ["status"], registry=r)
    duration = duration_type("assistant_request_duration_seconds", "request latency", registry=r)
    retrieval = Histogram("assistant_retrieval_duration_seconds", "retrieval latency", registry=r)
    ttft = Histogram("assistant_time_to_first_token_seconds", "ttft", registry=r)
    tpot = Histogram("assistant_time_per_output_token_seconds", "tpot", registry=r)
    tokens = Counter("assistant_tokens_total", "tokens", ["type"], registry=r)
    cache = Counter("assistant_retrieval_cache_requests_total", "cache", ["result"], registry=r)
    for req in truth.requests:
        if req["ok"] or count_errors:
            requests.labels("ok" if req["ok"] else "error").inc()
        duration.observe(req["latency_s"] * unit)
        retrieval.observe(0.05)
    for g in truth.generations.values():
        if "output_tokens" in g:
            tokens.labels("input").inc(g["input_tokens"])
            tokens.labels("output").inc(g["output_tokens"])
            ttft.observe(0.03)
            tpot.observe(0.008)
    for t in truth.retrievals.values():
        cache.labels("hit" if t["cache_hit"] else "miss").inc()
    return generate_latest(r).decode() + extra


def checks_of(spans: list[SpanRecord], text: str, truth: Truth, **kw: Any) -> dict[str, Check]:
    checks = check_telemetry(spans, text, truth, CONFIG, **kw)
    assert len({c.name for c in checks}) == len(checks)
    assert all(0.0 <= c.fraction <= 1.0 and c.detail for c in checks)
    return {c.name: c for c in checks}


NAMES = {"traces", "genai generation spans", "genai retrieval spans", "token usage", "errors", "no content",
         "metrics present", "metric naming", "units", "counts", "cardinality"}


def failing(checks: dict[str, Check]) -> set[str]:
    return {n for n, c in checks.items() if c.fraction < 1.0}


def test_conforming_telemetry_passes_every_check() -> None:
    spans, truth = world()
    checks = checks_of(spans, metrics(truth), truth)
    assert set(checks) == NAMES
    assert failing(checks) == set(), {n: c.detail for n, c in checks.items() if c.fraction < 1}
    assert conformance.overall(list(checks.values())) == 1.0


def test_a_request_in_flight_when_the_overhead_phase_was_drained_still_conforms() -> None:
    spans, truth = world()
    before = Truth()
    first = next(iter(truth.retrievals))  # its retrieve ran before the drain; its spans and request after
    before.retrievals[first] = truth.retrievals.pop(first)
    checks = checks_of(spans, metrics(truth), truth, before=before)
    assert checks["traces"].fraction == 1.0, checks["traces"].detail


def test_missing_usage_attribute_is_named_with_the_fix() -> None:
    spans, truth = world()
    spans = [replace(s, attributes={k: v for k, v in s.attributes.items() if k != "gen_ai.usage.output_tokens"})
             for s in spans]
    checks = checks_of(spans, metrics(truth), truth)
    assert failing(checks) == {"genai generation spans", "token usage"}
    gen = checks["genai generation spans"]
    assert "gen_ai.usage.output_tokens" in gen.detail and "generation.output_tokens" in gen.detail
    assert 0.8 < gen.fraction < 1.0  # one requirement of nine failed, the rest still count
    assert checks["token usage"].fraction == 0.0


def test_misnamed_generation_span_and_wrong_model_fail() -> None:
    spans, truth = world()
    spans = [replace(s, name="llm call", attributes={**s.attributes, "gen_ai.request.model": "gpt2"})
             if s.kind == "CLIENT" else s for s in spans]
    detail = checks_of(spans, metrics(truth), truth)["genai generation spans"].detail
    assert "text_completion tiny-gpt2" in detail and "'gpt2'" in detail


def test_wrong_top_k_and_missing_retrieval_span_fail_the_retrieval_checks() -> None:
    spans, truth = world()
    wrong_k = [replace(s, attributes={**s.attributes, "gen_ai.request.top_k": 10}) if s.name.startswith("retrieval")
               else s for s in spans]
    check = checks_of(wrong_k, metrics(truth), truth)["genai retrieval spans"]
    assert check.fraction == pytest.approx(0.75) and "k=5" in check.detail

    # No retrieval span: the root was current when retrieve was called.
    no_ret = [s for s in spans if not s.name.startswith("retrieval")]
    roots = {s.trace_id: s.span_id for s in no_ret if s.parent_id is None}
    truth.retrievals = {roots[t["trace_id"]]: t for t in truth.retrievals.values()}
    checks = checks_of(no_ret, metrics(truth), truth)
    assert checks["traces"].fraction == 0.0 and "retrieve" in checks["traces"].detail
    assert checks["genai retrieval spans"].fraction < 0.5


def test_root_span_must_be_a_server_span() -> None:
    spans, truth = world()
    spans = [replace(s, kind="INTERNAL") if s.parent_id is None else s for s in spans]
    check = checks_of(spans, metrics(truth), truth)["traces"]
    assert check.fraction == 0.0 and "SERVER" in check.detail


def test_wrong_token_counts_fail_token_usage() -> None:
    spans, truth = world()
    spans = [replace(s, attributes={**s.attributes, "gen_ai.usage.output_tokens": CONFIG.max_tokens})
             if "gen_ai.usage.output_tokens" in s.attributes else s for s in spans]
    check = checks_of(spans, metrics(truth), truth)["token usage"]
    assert check.fraction < 0.3 and "after the stream" in check.detail


def test_failed_requests_need_an_error_root_span() -> None:
    spans, truth = world()
    unset = [replace(s, status="UNSET") if s.parent_id is None else s for s in spans]
    check = checks_of(unset, metrics(truth), truth)["errors"]
    assert check.fraction == 0.0 and "set_status" in check.detail
    no_type = [replace(s, attributes={}) if s.parent_id is None else s for s in spans]
    assert "error.type" in checks_of(no_type, metrics(truth), truth)["errors"].detail

    spans, truth = world(fail_every=0)
    check = checks_of(spans, metrics(truth), truth)["errors"]
    assert check.fraction == 1.0 and check.detail == "no failed requests to check"


def test_query_text_in_an_attribute_fails_no_content() -> None:
    spans, truth = world()
    leaky = [replace(s, attributes={**s.attributes, "user.question": query(i // 3)})
             if s.parent_id is None and i < 30 else s for i, s in enumerate(spans)]
    check = checks_of(leaky, metrics(truth), truth)["no content"]
    assert check.fraction == pytest.approx(1 - 10 / N) and "user.question" in check.detail
    assert "opt-in" in check.detail


def test_milliseconds_in_a_seconds_histogram_fail_units() -> None:
    spans, truth = world()
    check = checks_of(spans, metrics(truth, unit=1000.0), truth)["units"]
    assert check.fraction == 0.0 and "milliseconds" in check.detail


def test_unbounded_label_fails_cardinality() -> None:
    spans, truth = world()
    lines = "".join(f'assistant_answers_total{{query="{query(i)}",n="{i}"}} 1.0\n' for i in range(N))
    text = metrics(truth, extra="# TYPE assistant_answers_total counter\n" + lines)
    check = checks_of(spans, text, truth)["cardinality"]
    assert check.fraction < 1.0 and "assistant_answers" in check.detail and "label n" in check.detail


def test_bad_metric_names_fail_naming() -> None:
    spans, truth = world()
    extra = ("# TYPE assistant_cache_evictions counter\nassistant_cache_evictions 3.0\n"
             "# TYPE assistant_render_ms gauge\nassistant_render_ms 12.0\n"
             "# TYPE rag_queue_depth gauge\nrag_queue_depth 1.0\n")
    checks = checks_of(spans, metrics(truth, extra=extra), truth)
    assert failing(checks) == {"metric naming"}
    detail = checks["metric naming"].detail
    assert "assistant_cache_evictions does not end in _total" in detail
    assert "assistant_render_ms is in ms" in detail and "rag_queue_depth lacks the assistant_ prefix" in detail


def test_missing_metric_wrong_type_and_miscounted_requests() -> None:
    spans, truth = world()
    text = metrics(truth, count_errors=False, duration_type=Summary).replace('status="ok"', 'status="200"')
    checks = checks_of(spans, text, truth)
    present = checks["metrics present"]
    assert "assistant_request_duration_seconds is a summary, not a histogram" in present.detail
    assert "label status with values error|ok (found ['200'])" in present.detail
    assert present.fraction == pytest.approx(5 / 7)
    assert checks["counts"].fraction == 0.5 and "failed ones included" in checks["counts"].detail
    no_cache = "\n".join(line for line in metrics(truth).splitlines() if "cache" not in line) + "\n"
    assert "assistant_retrieval_cache_requests_total is missing" in checks_of(spans, no_cache, truth)[
        "metrics present"].detail


def test_counters_include_requests_served_before_the_scenario() -> None:
    spans, truth = world()
    _, early = world(n=20, first=N)
    served = Truth(early.requests + truth.requests, {**early.generations, **truth.generations})
    text = metrics(served)
    assert checks_of(spans, text, truth)["counts"].fraction == 0.0
    assert checks_of(spans, text, truth, before=early)["counts"].fraction == 1.0


def test_unparseable_or_empty_metrics_fail_every_metric_check_with_a_reason() -> None:
    spans, truth = world()
    metric_checks = {"metrics present", "metric naming", "units", "counts", "cardinality"}
    for text in ("this is not { prometheus\n", ""):
        checks = checks_of(spans, text, truth)
        assert failing(checks) == metric_checks
        assert all("registry" in checks[n].detail for n in metric_checks)


def test_no_telemetry_at_all_scores_zero_with_advice() -> None:
    _, truth = world()
    for r in truth.requests:
        r["trace_id"] = None
    checks = checks_of([], "", Truth(truth.requests))
    assert conformance.overall(list(checks.values())) < 0.1
    assert "start_as_current_span" in checks["traces"].detail
    assert conformance.overall([]) == 0.0


# ---- report --------------------------------------------------------------------------------------

class TagBalance(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.depth: dict[str, int] = {}

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in ("table", "tr", "td", "ul", "li", "html", "body", "div"):
            self.depth[tag] = self.depth.get(tag, 0) + 1

    def handle_endtag(self, tag: str) -> None:
        if tag in self.depth:
            self.depth[tag] -= 1


def assert_valid_report(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!doctype html>") and text.rstrip().endswith("</html>")
    parser = TagBalance()
    parser.feed(text)
    assert parser.depth and all(v == 0 for v in parser.depth.values()), parser.depth
    png = text.split("data:image/png;base64,", 1)[1].split('"', 1)[0]
    assert base64.b64decode(png).startswith(b"\x89PNG")
    assert "Interviewer notes" in text and "graded by hand" in text
    return text


def test_report_for_a_filled_card(tmp_path: Path) -> None:
    pages = detection.pages_from_ticks(run_ticks(lambda t: {
        **perfect(t), "noisy": [Alert("drift", "traffic" if t < 30 else "cache")] if int(t) % 9 == 0 else []}))
    d = detection.score_detection(FAULTS, pages, GRACE, RUN_END)
    spans, truth = world()
    checks = check_telemetry(spans, metrics(truth, unit=1000.0), truth, CONFIG)
    card = Scorecard(lab="observability", submission="alice")
    card.add("detection_recall", d.recall, 30, "Task 2: 3/3 faults paged")
    card.add("telemetry_conformance", conformance.overall(checks), 20, "Task 1: <b>escaped</b>")
    card.total()
    card.metrics = {"detection_recall": d.recall, "detection_precision": d.precision}
    card.errors = ["detector noisy raised ZeroDivisionError"]
    card.environment = {"slo": {"slo_latency_s": 0.5}, "profile": "quick"}
    card.extras = {"faults": [asdict(f) for f in FAULTS], "pages": [asdict(p) for p in pages], "run_end": RUN_END,
                   "grace_s": GRACE, "latency": [[i * 0.5, 200 + 400 * (active(i * 0.5) is not None), i % 13 != 0]
                                                 for i in range(116)],
                   "checks": [asdict(c) for c in checks], "per_fault": [detection.row(r) for r in d.per_fault],
                   "detector_seconds": {"slo": 0.12, "noisy": 0.03}}
    text = assert_valid_report(write_observability_report(card, tmp_path / "alice" / "report.html"))
    assert "retriever_latency" in text and "milliseconds" in text and "&lt;b&gt;escaped" in text
    assert f"False pages ({len(d.false_pages)})" in text and d.false_pages


def test_report_for_an_empty_card(tmp_path: Path) -> None:
    card = Scorecard(lab="observability", submission="broken")
    card.errors = ["the submission failed while loading: SyntaxError"]
    text = assert_valid_report(write_observability_report(card, tmp_path / "report.html"))
    assert "no scenario was run" in text and "SyntaxError" in text

    # a scenario ran but the detectors never paged and no request succeeded
    card.extras = {"faults": [asdict(f) for f in FAULTS], "pages": [], "run_end": RUN_END, "grace_s": GRACE,
                   "latency": [[1.0, 3.0, False]], "checks": [], "per_fault": []}
    assert "False pages (0)" in assert_valid_report(write_observability_report(card, tmp_path / "r2.html"))


def test_report_marks_pages_before_the_first_symptom_and_the_credit_kept(tmp_path: Path) -> None:
    faults = [asdict(replace(f, reach_at=f.start + 1)) for f in FAULTS]
    pages = [asdict(Page("guess", "k", "retriever", 10.0, 11.0)), asdict(Page("slo", "burn", "retriever", 11.0))]
    card = Scorecard(lab="observability", submission="early")
    card.extras = {"faults": faults, "pages": pages, "run_end": RUN_END, "grace_s": GRACE, "latency": [],
                   "checks": [], "per_fault": [],
                   "chance": {"precision": 0.3, "luck_bar": 0.55, "window_share": 0.31, "credit": 0.0}}
    text = assert_valid_report(write_observability_report(card, tmp_path / "report.html"))
    assert "False pages (1)" in text and "too early" in text
    assert "counted at <b>0%</b>" in text and "31%" in text


def test_page_colours_follow_the_windows() -> None:
    from graders.engine.report_observability import OUTSIDE, RIGHT, WRONG, page_colour

    faults = [asdict(f) for f in FAULTS]
    colour = [page_colour(asdict(Page("d", "k", c, t)), faults, GRACE)
              for c, t in (("retriever", 11), ("cache", 20), ("retriever", 5))]
    assert colour == [RIGHT, WRONG, OUTSIDE]


def test_chance_precision_counts_ticks_so_a_random_pager_earns_nothing() -> None:
    from graders.observability.detection import precision_fraction, score_detection, tick_coverage, window_coverage

    # the old smoke profile: 4 s warm-up, faults 3 s on / 4 s off, 1 s grace. Window ends are inclusive, so each
    # window [start + 1, end + 1] holds 4 of every 7 whole-second ticks, while in seconds it covers 3 of 7
    faults = [Fault(f"f{i}", "cache", 4 + 7 * i, 7 + 7 * i) for i in range(7)]
    ticks = [float(t) for t in range(54)]
    assert abs(tick_coverage(faults, 1.0, ticks) - 28 / 54) < 1e-9
    assert window_coverage(faults, 1.0, 53.0) < tick_coverage(faults, 1.0, ticks)
    flapping = [Page("flap", "x", "retriever", t, t + 1) for t in ticks[1::2]]
    d = score_detection(faults, flapping, 1.0, 53.0, ticks=ticks)
    assert d.recall == 1.0
    assert precision_fraction(d, 0.9) < 0.15
