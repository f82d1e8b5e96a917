"""Score Task 1's telemetry: do the spans and metrics follow the conventions, and do they tell the truth?

Pinned conventions: OpenTelemetry semantic conventions v1.37.0, Generative AI spans
(status "Development"): span names "{gen_ai.operation.name} {gen_ai.request.model}", the
attributes gen_ai.operation.name, gen_ai.provider.name, gen_ai.request.model,
gen_ai.request.max_tokens, gen_ai.usage.input_tokens, gen_ai.usage.output_tokens,
gen_ai.response.finish_reasons, and for retrieval gen_ai.data_source.id and gen_ai.request.top_k;
errors as span status ERROR plus error.type; message content only opt-in (so never recorded here).
Prometheus: the names and types in interface.REQUIRED_METRICS, one prefix, base units, counters
ending in _total, bounded labels.

Each check is a fraction in [0, 1] with a sentence for the candidate saying what was wrong and what
to do. The truth (records.Truth) is what the host saw: which span was current when the pipeline was
called, the real token counts, which requests failed and how long they took.
"""
from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from graders.observability.interface import REQUIRED_METRICS, SpanRecord, ServiceConfig
from graders.observability.records import Truth

GENERATION_OPERATIONS = ("chat", "text_completion")
CALLS = {"retrieval": "retrieve", "generation": "generate"}  # span role -> the pipeline call it wraps
LABELS = {  # required metric -> (label, allowed values)
    "assistant_requests_total": ("status", {"ok", "error"}),
    "assistant_tokens_total": ("type", {"input", "output"}),
    "assistant_retrieval_cache_requests_total": ("result", {"hit", "miss"}),
}
MAX_LABEL_VALUES = 20
NON_BASE_UNITS = ("_ms", "_millis", "_milliseconds", "_us", "_micros", "_microseconds", "_ns", "_nanoseconds",
                  "_minutes", "_hours", "_kb", "_mb", "_gb", "_kilobytes", "_megabytes", "_gigabytes", "_percent")
UNIT_FACTOR = 3.0          # histogram mean vs the host's measured mean latency
COUNT_TOLERANCE = 0.05     # relative, or COUNT_SLACK requests, whichever is larger
COUNT_SLACK = 3


@dataclass
class Check:
    name: str
    fraction: float   # in [0, 1]
    detail: str       # what was wrong and what to do; "ok" style sentence when it passes


def overall(checks: list[Check]) -> float:
    """telemetry_conformance: the mean of the checks' fractions."""
    return sum(c.fraction for c in checks) / len(checks) if checks else 0.0


def check_telemetry(spans: list[SpanRecord], metrics_text: str, truth: Truth, config: ServiceConfig,
                    before: Truth | None = None) -> list[Check]:
    """All checks, in report order. `before`: what the host recorded before the scenario (the smoke request
    and the overhead phase); its requests and tokens are in the cumulative counters of the last scrape too."""
    by_id = {s.span_id: s for s in spans}
    families, raw_types, parse_error = _parse(metrics_text)
    counted = Truth(list(truth.requests), dict(truth.generations), dict(truth.retrievals))
    if before is not None:
        counted.requests = list(before.requests) + counted.requests
        counted.generations = {**before.generations, **truth.generations}
        # A request in flight when the overhead phase was drained has its retrieve/generate truth there and
        # its spans here; span-keyed lookups only ever match spans that were exported in the scenario.
        truth = Truth(truth.requests, {**before.generations, **truth.generations},
                      {**before.retrievals, **truth.retrievals})
    return [
        check_traces(spans, truth),
        check_generation_spans(by_id, spans, truth, config),
        check_retrieval_spans(by_id, spans, truth, config),
        check_token_usage(by_id, truth),
        check_errors(spans, truth),
        check_no_content(spans, truth),
        check_metrics_present(families, parse_error),
        check_naming(families, raw_types, parse_error),
        check_units(families, counted, parse_error),
        check_counts(families, counted, parse_error),
        check_cardinality(families, parse_error),
    ]


# ---- traces ---------------------------------------------------------------------------------------

def _roots(spans: list[SpanRecord]) -> dict[str, SpanRecord]:
    return {s.trace_id: s for s in spans if s.parent_id is None}


def _descends(span: SpanRecord, root: SpanRecord, by_id: dict[str, SpanRecord]) -> bool:
    seen: set[str] = set()
    parent = span.parent_id
    while parent is not None and parent not in seen:
        if parent == root.span_id:
            return True
        seen.add(parent)
        parent = by_id[parent].parent_id if parent in by_id else None
    return False


def check_traces(spans: list[SpanRecord], truth: Truth) -> Check:
    name = "traces"
    if not truth.requests:
        return Check(name, 0.0, "no request was handled during the scenario, so no trace could be checked")
    traced = [r for r in truth.requests if r.get("trace_id")]
    if not traced:
        return Check(name, 0.0, "no request called the pipeline inside a span: start a SERVER span for the request "
                                "(tracer.start_as_current_span) before calling pipeline.retrieve and pipeline.generate")
    by_id = {s.span_id: s for s in spans}
    roots = _roots(spans)
    inner: dict[str, dict[str, SpanRecord]] = defaultdict(dict)  # trace -> role -> span current at the call
    for role, table in (("retrieval", truth.retrievals), ("generation", truth.generations)):
        for span_id, t in table.items():
            if span_id in by_id:
                inner[t.get("trace_id") or ""][role] = by_id[span_id]
    problems: dict[str, int] = defaultdict(int)
    good = 0
    for r in traced:
        root = roots.get(r["trace_id"])
        if root is None:
            problems["no root span (parent None) was exported for the trace"] += 1
            continue
        if root.kind != "SERVER":
            problems[f"the root span '{root.name}' has kind {root.kind}, not SERVER (pass kind=SpanKind.SERVER)"] += 1
            continue
        roles = inner.get(r["trace_id"], {})
        missing = [role for role in ("retrieval", "generation")
                   if role not in roles or not _descends(roles[role], root, by_id)]
        failed_before_generating = r.get("ok") is False and not any(
            t.get("trace_id") == r["trace_id"] for t in truth.generations.values())
        if failed_before_generating and "generation" in missing:
            missing.remove("generation")
        elif not missing and roles["retrieval"].span_id == roles["generation"].span_id:
            missing = ["generation"]  # one span around both calls is not a generation span
        if missing:
            problems[f"no {' or '.join(missing)} child span was current when the pipeline's "
                     f"{' / '.join(CALLS[m] for m in missing)} "
                     "was called (use tracer.start_as_current_span around each call, inside the request span)"] += 1
            continue
        good += 1
    return Check(name, good / len(traced), _summary(good, len(traced), "traces", problems))


# ---- GenAI spans --------------------------------------------------------------------------------

def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


Requirement = tuple[Callable[[SpanRecord], str], Callable[[SpanRecord], "bool | None"]]


def _requirements_fraction(name: str, what: str, spans: list[SpanRecord], requirements: list[Requirement]) -> Check:
    """Each requirement is (what to do, given a failing span; its test: True, False, or None when not applicable)."""
    fractions, failing = [], []
    for advice, ok in requirements:
        results = [ok(s) for s in spans]
        applicable = [x for x in results if x is not None]
        if not applicable:
            continue
        passed = sum(bool(x) for x in applicable)
        fractions.append(passed / len(applicable))
        if passed < len(applicable):
            example = next(s for s, x in zip(spans, results) if x is False)
            failing.append(f"{len(applicable) - passed}/{len(applicable)} {what} spans: {advice(example)}")
    fraction = sum(fractions) / len(fractions) if fractions else 0.0
    if not failing:
        return Check(name, fraction, f"all {len(spans)} {what} spans follow the conventions")
    return Check(name, fraction, "; ".join(failing[:4]) + (f"; and {len(failing) - 4} more" if len(failing) > 4 else ""))


def _show(span: SpanRecord, key: str) -> str:
    return f"'{span.name}' has {key}={span.attributes[key]!r}" if key in span.attributes else f"'{span.name}' has no {key}"


def check_generation_spans(by_id: dict[str, SpanRecord], spans: list[SpanRecord], truth: Truth,
                           config: ServiceConfig) -> Check:
    name = "genai generation spans"
    ids = [i for i in truth.generations if i in by_id]
    ids += [s.span_id for s in spans if s.attributes.get("gen_ai.operation.name") in GENERATION_OPERATIONS
            and s.span_id not in truth.generations]
    gens = [by_id[i] for i in dict.fromkeys(ids)]
    if not gens:
        return Check(name, 0.0, "no generation span was found: wrap pipeline.generate and the stream in "
                                f"tracer.start_as_current_span('text_completion {config.model}', kind=SpanKind.CLIENT)")
    errored = {i for i, t in truth.generations.items() if "error" in t}
    op = "gen_ai.operation.name"

    def finished(s: SpanRecord) -> bool | None:
        return None if s.span_id in errored else True

    reqs: list[Requirement] = [
        (lambda s: f"{_show(s, op)}; set it to 'text_completion' (or 'chat')",
         lambda s: s.attributes.get(op) in GENERATION_OPERATIONS),
        (lambda s: f"the span is named '{s.name}'; name it '{{gen_ai.operation.name}} {{gen_ai.request.model}}', "
                   f"e.g. 'text_completion {config.model}'",
         lambda s: s.name == f"{s.attributes.get(op)} {config.model}"),
        (lambda s: f"'{s.name}' has kind {s.kind}; a call to a model server is a CLIENT span",
         lambda s: s.kind == "CLIENT"),
        (lambda s: f"{_show(s, 'gen_ai.request.model')}; set it to config.model ({config.model!r})",
         lambda s: s.attributes.get("gen_ai.request.model") == config.model),
        (lambda s: f"{_show(s, 'gen_ai.provider.name')}; set it to config.provider ({config.provider!r})",
         lambda s: s.attributes.get("gen_ai.provider.name") == config.provider),
        (lambda s: f"{_show(s, 'gen_ai.request.max_tokens')}; set it to the max_tokens you pass (an int)",
         lambda s: _is_int(s.attributes.get("gen_ai.request.max_tokens"))),
        (lambda s: f"{_show(s, 'gen_ai.usage.input_tokens')}; set it (an int) from generation.input_tokens "
                   "after the stream ends",
         lambda s: finished(s) and _is_int(s.attributes.get("gen_ai.usage.input_tokens"))),
        (lambda s: f"{_show(s, 'gen_ai.usage.output_tokens')}; set it (an int) from generation.output_tokens "
                   "after the stream ends",
         lambda s: finished(s) and _is_int(s.attributes.get("gen_ai.usage.output_tokens"))),
        (lambda s: f"{_show(s, 'gen_ai.response.finish_reasons')}; set it to a list of strings, "
                   "[generation.finish_reason], after the stream ends",
         lambda s: finished(s) and _str_list(s.attributes.get("gen_ai.response.finish_reasons"))),
    ]
    return _requirements_fraction(name, "generation", gens, reqs)


def _str_list(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and len(v) > 0 and all(isinstance(x, str) for x in v)


def check_retrieval_spans(by_id: dict[str, SpanRecord], spans: list[SpanRecord], truth: Truth,
                          config: ServiceConfig) -> Check:
    name = "genai retrieval spans"
    ks = {i: t.get("k") for i, t in truth.retrievals.items() if i in by_id}
    ids = list(ks) + [s.span_id for s in spans if s.attributes.get("gen_ai.operation.name") == "retrieval"
                      and s.span_id not in ks]
    rets = [by_id[i] for i in dict.fromkeys(ids)]
    if not rets:
        return Check(name, 0.0, "no retrieval span was found: wrap pipeline.retrieve in "
                                f"tracer.start_as_current_span('retrieval {config.data_source}')")
    op, top_k = "gen_ai.operation.name", "gen_ai.request.top_k"

    def k_ok(s: SpanRecord) -> bool | None:
        if s.span_id not in ks:
            return None
        v = s.attributes.get(top_k)
        return isinstance(v, (int, float)) and not isinstance(v, bool) and v == ks[s.span_id]

    reqs: list[Requirement] = [
        (lambda s: f"{_show(s, op)}; set it to 'retrieval'", lambda s: s.attributes.get(op) == "retrieval"),
        (lambda s: f"the span is named '{s.name}'; name it 'retrieval {config.data_source}'",
         lambda s: s.name == f"retrieval {config.data_source}"),
        (lambda s: f"{_show(s, 'gen_ai.data_source.id')}; set it to config.data_source ({config.data_source!r})",
         lambda s: s.attributes.get("gen_ai.data_source.id") == config.data_source),
        (lambda s: f"{_show(s, top_k)} but the pipeline was asked for k={ks.get(s.span_id)}; set it to the k you pass",
         k_ok),
    ]
    return _requirements_fraction(name, "retrieval", rets, reqs)


def check_token_usage(by_id: dict[str, SpanRecord], truth: Truth) -> Check:
    name = "token usage"
    rows = [(by_id[i], t) for i, t in truth.generations.items() if i in by_id and "output_tokens" in t]
    if not rows:
        return Check(name, 0.0, "no span that was current when a generation finished was exported, so no token "
                                "counts could be compared: record the generation in its own span")
    bad = [(s, t) for s, t in rows if s.attributes.get("gen_ai.usage.input_tokens") != t["input_tokens"]
           or s.attributes.get("gen_ai.usage.output_tokens") != t["output_tokens"]]
    if not bad:
        return Check(name, 1.0, f"token counts match the model server's on all {len(rows)} generation spans")
    s, t = bad[0]
    got = (s.attributes.get("gen_ai.usage.input_tokens"), s.attributes.get("gen_ai.usage.output_tokens"))
    return Check(name, 1 - len(bad) / len(rows),
                 f"{len(bad)}/{len(rows)} generation spans report other token counts than the model server, e.g. "
                 f"'{s.name}' has input/output {got[0]}/{got[1]}, truth {t['input_tokens']}/{t['output_tokens']}; "
                 "set gen_ai.usage.* from generation.input_tokens / output_tokens after the stream is exhausted")


def check_errors(spans: list[SpanRecord], truth: Truth) -> Check:
    name = "errors"
    failed = [r for r in truth.requests if r.get("ok") is False]
    if not failed:
        return Check(name, 1.0, "no failed requests to check")
    roots = _roots(spans)
    no_status = no_type = 0
    for r in failed:
        root = roots.get(r.get("trace_id") or "")
        if root is None or root.status != "ERROR":
            no_status += 1
        elif "error.type" not in root.attributes:
            no_type += 1
    good = len(failed) - no_status - no_type
    if not no_status and not no_type:
        return Check(name, 1.0, f"all {len(failed)} failed requests have an ERROR root span with error.type")
    why = []
    if no_status:
        why.append(f"{no_status} have no root span with status ERROR (call span.set_status(StatusCode.ERROR) "
                   "when the request fails, e.g. on UpstreamError)")
    if no_type:
        why.append(f"{no_type} have ERROR status but no error.type attribute (set it, e.g. to the exception's class "
                   "name)")
    return Check(name, good / len(failed), f"of {len(failed)} failed requests, " + "; ".join(why))


def check_no_content(spans: list[SpanRecord], truth: Truth) -> Check:
    name = "no content"
    queries = {r["query"] for r in truth.requests if isinstance(r.get("query"), str) and len(r["query"]) >= 8}
    traces = {s.trace_id for s in spans}
    if not traces:
        return Check(name, 0.0, "no spans were exported, so nothing shows that content is kept out of them")
    leaks: dict[str, str] = {}
    for s in spans:
        if s.trace_id in leaks:
            continue
        for key, value in [("span name", s.name), *s.attributes.items()]:
            texts = value if isinstance(value, (list, tuple)) else [value]
            if any(isinstance(x, str) and len(x) >= 8 and any(q in x for q in queries) for x in texts):
                leaks[s.trace_id] = f"'{s.name}' {key}"
                break
    if not leaks:
        return Check(name, 1.0, "no span records the user's question")
    return Check(name, 1 - len(leaks) / len(traces),
                 f"{len(leaks)}/{len(traces)} traces record the user's question (e.g. {next(iter(leaks.values()))}); "
                 "message content is opt-in in the GenAI conventions and may hold personal data: leave it out")


# ---- metrics -----------------------------------------------------------------------------------

@dataclass
class Family:
    name: str                            # as the parser names it (counters without _total)
    type: str
    samples: list[tuple[str, dict[str, str], float]]


def _parse(text: str) -> tuple[dict[str, Family], dict[str, str], str | None]:
    """(families by parsed name, the raw TYPE line of every sample name, why parsing failed or None)."""
    from prometheus_client.parser import text_string_to_metric_families

    families: dict[str, Family] = {}
    try:
        for f in text_string_to_metric_families(text):
            families[f.name] = Family(f.name, f.type, [(s.name, dict(s.labels), float(s.value)) for s in f.samples])
        # prometheus_client adds a <name>_created gauge per counter and histogram: an artefact, not a metric
        for created in [n for n in families if n.endswith("_created") and n[: -len("_created")] in families]:
            del families[created]
    except Exception as exc:  # noqa: BLE001 - any parse failure is the candidate's to fix
        return families, {}, f"/metrics is not valid Prometheus text ({type(exc).__name__}: {exc})"
    # The parser renames counter samples to end in _total; the raw text says what was really exposed.
    raw_types: dict[str, str] = {}
    declared: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            parts = line.split()
            if len(parts) >= 4:
                declared[parts[2]] = parts[3]
        elif line and not line.startswith("#"):
            sample = re.split(r"[{\s]", line, maxsplit=1)[0]
            family = next((n for n in (sample, re.sub(r"_(total|created|bucket|sum|count)$", "", sample))
                           if n in declared), None)
            raw_types[sample] = declared[family] if family else "untyped"
    if not families and text.strip():
        return families, raw_types, "/metrics parsed to no metric families"
    return families, raw_types, None


def _no_metrics(name: str, parse_error: str | None) -> Check:
    return Check(name, 0.0, (parse_error or "the last scrape of /metrics was empty") +
                 "; register the metrics on the `registry` passed to create_handler")


def _family_of(required: str) -> str:
    return required[: -len("_total")] if REQUIRED_METRICS[required] == "counter" else required


def check_metrics_present(families: dict[str, Family], parse_error: str | None) -> Check:
    name = "metrics present"
    if parse_error or not families:
        return _no_metrics(name, parse_error)
    problems = []
    for metric, kind in REQUIRED_METRICS.items():
        f = families.get(_family_of(metric))
        if f is None:
            problems.append(f"{metric} is missing (a {kind})")
        elif f.type != kind:
            problems.append(f"{metric} is a {f.type}, not a {kind}")
        elif metric in LABELS:
            label, allowed = LABELS[metric]
            values = {lbl.get(label) for _, lbl, _ in f.samples}
            if None in values or not values or not values <= allowed:
                problems.append(f"{metric} needs the label {label} with values {'|'.join(sorted(allowed))} "
                                f"(found {sorted(str(v) for v in values)})")
    n = len(REQUIRED_METRICS)
    if not problems:
        return Check(name, 1.0, f"all {n} required metrics are exposed with the right types and labels")
    return Check(name, 1 - len(problems) / n, "; ".join(problems))


def check_naming(families: dict[str, Family], raw_types: dict[str, str], parse_error: str | None) -> Check:
    name = "metric naming"
    if parse_error or not families:
        return _no_metrics(name, parse_error)
    problems: dict[str, list[str]] = defaultdict(list)  # family -> what is wrong with its name
    for f in families.values():
        if not f.name.startswith("assistant_"):
            problems[f.name].append(f"{f.name} lacks the assistant_ prefix")
        if ":" in f.name:
            problems[f.name].append(f"{f.name} has a ':' (reserved for recording rules)")
        unit = next((u for u in NON_BASE_UNITS if f"{u}_" in f.name + "_"), None)
        if unit:
            problems[f.name].append(f"{f.name} is in {unit[1:]}; use base units (_seconds, _bytes, a 0-1 _ratio)")
    for sample, kind in raw_types.items():
        if kind == "counter" and not sample.endswith(("_total", "_created")):
            problems[sample].append(f"the counter {sample} does not end in _total in /metrics")
    if not problems:
        return Check(name, 1.0, f"all {len(families)} metric families are named by the conventions")
    said = [p for ps in problems.values() for p in ps]
    return Check(name, max(0.0, 1 - len(problems) / len(families)),
                 "; ".join(said[:5]) + (f"; and {len(said) - 5} more" if len(said) > 5 else ""))


def _sample(families: dict[str, Family], family: str, sample: str, **labels: str) -> float | None:
    f = families.get(family)
    if f is None:
        return None
    values = [v for n, lbl, v in f.samples if n == sample and all(lbl.get(k) == x for k, x in labels.items())]
    return sum(values) if values else None


def check_units(families: dict[str, Family], truth: Truth, parse_error: str | None) -> Check:
    name = "units"
    metric = "assistant_request_duration_seconds"
    if parse_error or not families:
        return _no_metrics(name, parse_error)
    total, count = _sample(families, metric, metric + "_sum"), _sample(families, metric, metric + "_count")
    latencies = [float(r["latency_s"]) for r in truth.requests if isinstance(r.get("latency_s"), (int, float))]
    if total is None or not count:
        return Check(name, 0.0, f"{metric} has no observations (_sum/_count); observe every request's duration "
                                "in seconds")
    if not latencies:
        return Check(name, 0.0, "no request was handled, so the units could not be compared")
    mean, truth_mean = total / count, sum(latencies) / len(latencies)
    if truth_mean > 0 and 1 / UNIT_FACTOR <= mean / truth_mean <= UNIT_FACTOR:
        return Check(name, 1.0, f"{metric} averages {mean:.3g} s; requests took {truth_mean:.3g} s on average")
    return Check(name, 0.0, f"{metric} averages {mean:.4g} but requests took {truth_mean:.3g} s on average; "
                            "observe seconds (time.perf_counter() differences), not milliseconds")


def _close(got: float, want: float) -> bool:
    return abs(got - want) <= max(COUNT_SLACK, COUNT_TOLERANCE * want)


def check_counts(families: dict[str, Family], truth: Truth, parse_error: str | None) -> Check:
    name = "counts"
    if parse_error or not families:
        return _no_metrics(name, parse_error)
    problems = []
    requests = _sample(families, "assistant_requests", "assistant_requests_total")
    if requests is None or not _close(requests, len(truth.requests)):
        problems.append(f"assistant_requests_total sums to {requests} but {len(truth.requests)} requests were "
                        "handled; increment it once per request, failed ones included (status=\"error\")")
    want = sum(int(t["output_tokens"]) for t in truth.generations.values() if "output_tokens" in t)
    tokens = _sample(families, "assistant_tokens", "assistant_tokens_total", type="output")
    if tokens is None or not _close(tokens, want):
        problems.append(f"assistant_tokens_total{{type=\"output\"}} is {tokens} but the model server generated "
                        f"{want} tokens; add generation.output_tokens after each stream ends")
    if not problems:
        return Check(name, 1.0, "request and output-token counters agree with what was served")
    return Check(name, 1 - len(problems) / 2, "; ".join(problems))


def check_cardinality(families: dict[str, Family], parse_error: str | None) -> Check:
    name = "cardinality"
    if parse_error or not families:
        return _no_metrics(name, parse_error)
    values: dict[tuple[str, str], set[str]] = defaultdict(set)
    for f in families.values():
        if f.name.startswith("assistant_"):
            for _, labels, _ in f.samples:
                for k, v in labels.items():
                    if k not in ("le", "quantile"):
                        values[f.name, k].add(v)
    wide = sorted((len(v), f, k) for (f, k), v in values.items() if len(v) > MAX_LABEL_VALUES)
    assistant = [f for f in families if f.startswith("assistant_")]
    if not wide:
        return Check(name, 1.0, f"every label has at most {MAX_LABEL_VALUES} values")
    n, family, label = wide[-1]
    bad = {f for _, f, _ in wide}
    return Check(name, max(0.0, 1 - len(bad) / max(1, len(assistant))),
                 f"{family} has {n} values of the label {label}" +
                 (f" (and {len(bad) - 1} more families are unbounded)" if len(bad) > 1 else "") +
                 "; labels must come from a small fixed set (status, type, result), never the query, a user or a "
                 "request id: each value is a new time series")


def _summary(good: int, total: int, what: str, problems: dict[str, int]) -> str:
    if not problems:
        return f"all {total} {what} are complete"
    worst = sorted(problems.items(), key=lambda kv: -kv[1])
    return f"{good}/{total} {what} are complete; " + "; ".join(f"{n}: {p}" for p, n in worst[:3])
