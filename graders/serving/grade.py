"""`ailab grade serving`: host each submission's `create_app`, check it over HTTP, load it beside the reference.

For a batch: one reference host (the reference's `create_app` behind the same contract, in its own
sandboxed process) serves the whole batch. Each submission gets its own host and scorecard:
functional checks (correctness, streaming, admission_control, cancellation, metrics_endpoint),
then open-loop Poisson load at each of the profile's rates, candidate then reference per rate
(C R C R), so both see the same machine at the same moments. goodput and latency are ratios to
the reference in that run. A failing part never stops the others; a hang costs bounded seconds.

Metrics in the scorecard are the client-side vLLM-style figures at the profile's highest rate.
"""
from __future__ import annotations

import asyncio
import math
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from graders.engine.batch import Batch
from graders.engine.hidden import open_overlay
from graders.engine.labconfig import LabConfig, Limits, load_lab
from graders.engine.submissions import open_submission, submissions_in
from graders.engine.sandbox import Worker, candidate_cpu_s
from graders.engine.scorecard import Scorecard, clean_metrics, environment
from graders.engine.scoring import ramp
from graders.paths import REPO_ROOT
from graders.serving import checks
from graders.serving.client import Result, drive, prompt_corpus, summarize, workload
from graders.serving.host import HEALTH_PATH
from graders.engine.report_serving import write_serving_report
from reference_systems.serving.model import model_dir

SERVING_METRICS = ("ttft_p50_ms", "ttft_p95_ms", "tpot_p50_ms", "itl_p95_ms", "e2e_p95_ms", "output_tokens_per_s",
                   "requests_per_s", "goodput_rps", "error_rate", "cost_per_1m_output_tokens_usd")
FUNCTIONAL = ("correctness", "streaming", "admission_control", "cancellation", "metrics_endpoint")


def log(message: str) -> None:
    print(f"[serving] {message}", file=sys.stderr, flush=True)


class LoadSkipped(Exception):
    """The candidate cannot take the load test (its streams fail); the reason is for people."""


@dataclass
class Load:
    """One system's load results: per rate, the summary and the raw client results."""
    summaries: dict[float, dict[str, Any]] = field(default_factory=dict)
    results: dict[float, list[Result]] = field(default_factory=dict)


@dataclass
class Context:
    lab: LabConfig
    profile_name: str
    out: Path
    tokenizer: Any
    corpus_ids: list[int]
    usd_per_hour: float
    private: bool = False  # the workload comes from an interviewer's --hidden lab.toml
    reference: Worker | None = None
    expected: dict[str, Any] = field(default_factory=dict)
    prompt_tokens: int = 0


def reference_path(lab: LabConfig) -> Path:
    path = REPO_ROOT / str(lab.raw["lab"].get("submission", "reference_systems/serving/submission.py"))
    if not path.exists():
        raise SystemExit(f"the serving reference submission {path} is missing; it wraps the reference server in "
                         "create_app(engine, config)")
    return path


def start_host(source: str, name: str, lab: LabConfig) -> Worker:
    model_dir()  # built here, by the grader: a sandboxed host may read the model cache but never write it
    server = lab.raw.get("server", {})
    command = ["graders.serving.host", "--module", "candidate.py", "--port", "{port}",
               "--max-batch", str(server.get("max_batch", 32)), "--max-waiting", str(server.get("max_waiting", 64)),
               "--request-timeout", str(server.get("request_timeout_s", 30)), "--threads", str(server.get("threads", 1))]
    worker = Worker(source, "", name=name, memory_mb=lab.limits.memory_mb, start_timeout_s=lab.limits.worker_start_s,
                    command=command, health_path=HEALTH_PATH, cpu_s=candidate_cpu_s(name, lab))
    return worker.__enter__()  # started, or cleaned up and raised


def alive(w: Worker | None) -> bool:
    return w is not None and w.proc is not None and w.proc.poll() is None


def run_checks(w: Worker, ctx: Context, card: Scorecard) -> dict[str, tuple[float, str]]:
    """Each functional part's (fraction, detail); a hang or crash in one costs bounded time and the rest still run."""
    t, server = ctx.lab.limits.check_s, ctx.lab.raw.get("server", {})
    max_batch, max_waiting = int(server.get("max_batch", 32)), int(server.get("max_waiting", 64))
    why = checks.probe(w.url, t)
    if why:
        card.errors.append(why)
        return {name: (0.0, f"not checked: {why}") for name in FUNCTIONAL}
    order = {
        "correctness": lambda: checks.correctness(w.url, t, ctx.expected, ctx.prompt_tokens),
        "streaming": lambda: checks.streaming(w.url, t, ctx.expected),
        "metrics_endpoint": lambda: checks.metrics_endpoint(w.url, t),
        "admission_control": lambda: checks.admission_control(w.url, 2 * t, max_batch, max_waiting),
        "cancellation": lambda: checks.cancellation(w.url, 2 * t, max_batch),
    }
    out: dict[str, tuple[float, str]] = {}
    for name, fn in order.items():
        if not alive(w):
            out[name] = (0.0, "not checked: the submission's process is no longer running")
            continue
        log(f"{card.submission}: checking {name} ...")
        try:
            out[name] = fn()
        except Exception as exc:  # noqa: BLE001 - timeouts, broken connections, odd bodies: all are findings
            kind = "did not answer in time" if "Timeout" in type(exc).__name__ else "failed"
            out[name] = (0.0, f"the server {kind} ({type(exc).__name__}: {str(exc)[:200]})")
            card.errors.append(f"{name}: {out[name][1]}")
        checks.wait_idle(w.url, t, limit_s=15)
    return out


def load_rounds(cand: Worker, ctx: Context, name: str) -> tuple[Load, Load]:
    """Candidate then reference at each rate; each run is bounded by duration + client timeout."""
    assert ctx.reference is not None
    profile = ctx.lab.load_profile(ctx.profile_name)
    spec = {"seed": profile.seed, "duration_s": profile.duration_s, "prompt_tokens": profile.prompt_tokens,
            "output_tokens": profile.output_tokens}
    loads = Load(), Load()
    for w in (cand, ctx.reference):  # first-request effects (allocations, lazy imports) are not measured
        warm = asyncio.run(drive(w.url, workload(spec, 2.0, ctx.tokenizer, ctx.corpus_ids)[:2],
                                 profile.client_timeout_s))
        if w is cand and not any(r.ok for r in warm):
            raise LoadSkipped(f"a streamed completion as the load test sends it failed ({warm[0].error})")
    for rate in profile.rates:
        requests = workload(spec, rate, ctx.tokenizer, ctx.corpus_ids)
        for who, w, load in (("candidate", cand, loads[0]), ("reference", ctx.reference, loads[1])):
            checks.wait_idle(w.url, ctx.lab.limits.check_s, limit_s=20)
            log(f"{name}: {len(requests)} requests at {rate:g}/s for {profile.duration_s:g} s on the {who} ...")
            results = asyncio.run(drive(w.url, requests, profile.client_timeout_s))
            load.results[rate] = results
            load.summaries[rate] = summarize(results, profile.warmup_s, ctx.lab.slo, ctx.usd_per_hour)
    return loads


def penalised_ttft_p95(results: list[Result], warmup_s: float, timeout_s: float) -> float:
    """TTFT p95 over every measured request, a failed one counting as the client timeout: a server
    cannot improve its latency by failing requests."""
    import numpy as np

    values = [r.ttft if r.ok else timeout_s for r in results if r.arrival >= warmup_s]
    return float(np.percentile(values, 95)) * 1e3 if values else timeout_s * 1e3


def score_load(card: Scorecard, ctx: Context, cand: Load | None, ref: Load | None, why_not: str) -> None:
    parts, profile = ctx.lab.parts, ctx.lab.load_profile(ctx.profile_name)
    g, lat = parts["goodput"], parts["latency"]
    if cand is None or ref is None:
        card.add(g.name, 0, g.weight, f"Task {g.task}: not measured: {why_not}")
        card.add(lat.name, 0, lat.weight, f"Task {lat.task}: not measured: {why_not}")
        return
    rates = profile.rates
    c_good = [cand.summaries[r].get("goodput_rps", 0.0) for r in rates]
    r_good = [ref.summaries[r].get("goodput_rps", 0.0) for r in rates]
    ratio = sum(c_good) / sum(r_good) if sum(r_good) > 0 else 0.0
    per_rate = ", ".join(f"{r:g}/s: {c:.2f} vs {x:.2f}" for r, c, x in zip(rates, c_good, r_good))
    detail = (f"Task {g.task}: goodput (requests/s meeting TTFT <= {ctx.lab.slo.get('ttft_ms', 0):g} ms and TPOT <= "
              f"{ctx.lab.slo.get('tpot_ms', 0):g} ms) vs the reference: {per_rate}; ratio of sums {ratio:.2f} "
              f"(full credit at >= {g.full_at_ratio}, none at <= {g.zero_at_ratio})")
    errors = sorted({e for r in rates for e in cand.summaries[r].get("errors", [])})
    if errors:
        detail += f"; request errors, e.g. {errors[0][:160]}"
    card.add(g.name, ramp(ratio, g.zero_at_ratio or 0.3, g.full_at_ratio or 0.8), g.weight, detail)

    c_p95 = [penalised_ttft_p95(cand.results[r], profile.warmup_s, profile.client_timeout_s) for r in rates]
    r_p95 = [penalised_ttft_p95(ref.results[r], profile.warmup_s, profile.client_timeout_s) for r in rates]
    slowdown = math.exp(sum(math.log(max(c, 1e-3) / max(x, 1e-3)) for c, x in zip(c_p95, r_p95)) / len(rates))
    per_rate = ", ".join(f"{r:g}/s: {c:.0f} vs {x:.0f} ms" for r, c, x in zip(rates, c_p95, r_p95))
    card.add(lat.name, ramp(slowdown, lat.zero_at_ratio or 10.0, lat.full_at_ratio or 2.5), lat.weight,
             f"Task {lat.task}: TTFT p95 (failed requests count as the {profile.client_timeout_s:g} s timeout) vs the "
             f"reference: {per_rate}; slowdown {slowdown:.2f} (geometric mean; full credit at <= {lat.full_at_ratio}, "
             f"none at >= {lat.zero_at_ratio})")


def grade_one(name: str, path: Path, ctx: Context, batch: Batch) -> Scorecard:
    started = time.perf_counter()
    card = Scorecard(lab="serving", submission=name)
    parts = ctx.lab.parts
    cand_load = ref_load = None
    w, why_not, _ = open_submission(path, card, lambda src: start_host(src, name, ctx.lab), log, ctx.lab.notebook)
    try:
        results = run_checks(w, ctx, card) if w is not None else {n: (0.0, f"not checked: {why_not}") for n in FUNCTIONAL}
        for pname in FUNCTIONAL:
            fraction, detail = results[pname]
            card.add(pname, fraction, parts[pname].weight, f"Task {parts[pname].task}: {detail}")
        if w is not None and alive(w) and not results["correctness"][1].startswith("not checked"):
            try:
                cand_load, ref_load = load_rounds(w, ctx, name)
            except LoadSkipped as exc:
                why_not = str(exc)
                card.errors.append(f"load test skipped: {exc}")
        elif w is not None:
            why_not = ("the server's process stopped during the checks" if not alive(w) else
                       "the server did not answer the functional checks")
        score_load(card, ctx, cand_load, ref_load, why_not)
    except Exception as exc:  # noqa: BLE001 - a grader bug must not cost the rest of the batch its grades
        card.errors.append(f"internal grader error while grading this submission ({type(exc).__name__}: {exc}); "
                           "parts not yet scored get 0 — please report this with the submission attached")
    finally:
        if w is not None:
            if not alive(w) and w.proc is not None:
                card.errors.append(f"the submission's server exited (code {w.proc.returncode}); last output:\n"
                                   f"{w.output_tail(600)}")
            w.cleanup()
    batch.complete(card, why_not)
    finish(card, ctx, cand_load, ref_load, time.perf_counter() - started)
    batch.publish(card, path, write_serving_report)
    return card


def finish(card: Scorecard, ctx: Context, cand: Load | None, ref: Load | None, seconds: float) -> None:
    """The card's metrics (at the profile's top rate), environment with the price table, and plot data."""
    profile = ctx.lab.load_profile(ctx.profile_name)
    top = max(profile.rates)
    card.metrics = clean_metrics(cand.summaries[top], SERVING_METRICS) if cand else {}
    card.reference = {"metrics": clean_metrics(ref.summaries[top], SERVING_METRICS) if ref else {}}
    card.duration_s = seconds
    prices = ctx.lab.raw.get("prices", {})
    card.environment = environment(profile=ctx.profile_name, rates=profile.rates, metrics_rate=top,
                                   duration_s=profile.duration_s, slo=ctx.lab.slo, price_device=prices.get("device"),
                                   usd_per_hour=ctx.usd_per_hour, price_table=prices.get("usd_per_hour", {}),
                                   workload="private (--hidden)" if ctx.private else "shipped")
    card.extras = {"rates": profile.rates, "prices": prices.get("usd_per_hour", {}),
                   "candidate": {r: s for r, s in cand.summaries.items()} if cand else {},
                   "reference": {r: s for r, s in ref.summaries.items()} if ref else {},
                   "ttft": [r.ttft * 1e3 for r in (cand.results[top] if cand else []) if r.ok],
                   "ref_ttft": [r.ttft * 1e3 for r in (ref.results[top] if ref else []) if r.ok]}


def prepare_reference(ctx: Context) -> None:
    """Start the batch's reference host and record its greedy answers (what candidates must match)."""
    ref_source = reference_path(ctx.lab).read_text()
    log("starting the reference server ...")
    ctx.reference = start_host(ref_source, "reference", ctx.lab)
    t = ctx.lab.limits.check_s * 3
    _, body = checks.completion(ctx.reference.url, t, prompt=checks.PROMPT, max_tokens=12, ignore_eos=True)
    _, chat = checks.chat(ctx.reference.url, t, messages=checks.CHAT, max_tokens=8, ignore_eos=True)
    try:
        ctx.expected = {"text": body["choices"][0]["text"], "chat": chat["choices"][0]["message"]["content"]}
    except (TypeError, KeyError, IndexError):
        raise RuntimeError(f"the reference server answered unexpectedly: {body!r} {chat!r}") from None
    ctx.prompt_tokens = len(ctx.tokenizer(checks.PROMPT).input_ids)


def grade(submission: str | list[tuple[str, Path]], out_dir: Path, dataset: str | None = None,
          profile: str = "quick", limits: Limits | None = None, hidden: Path | None = None,
          course: Path | None = None) -> list[Scorecard]:
    """Grade a .ipynb, a .py, a folder of them, `reference`, or (name, path) pairs; scorecard.json +
    report.html each in `out_dir/<name>/`. `dataset` is accepted for the CLI's sake (this lab's workload
    is built in; `hidden`'s lab.toml can give it a private seed); `course` as in graders.rag.grade."""
    overlay = open_overlay(hidden, "serving")
    lab = load_lab("serving", overlay.lab_toml() if overlay else None)
    if limits is not None:
        lab = replace(lab, limits=limits)
    lab.load_profile(profile)
    subs = submissions_in(submission, reference_path(lab))
    prices = lab.raw.get("prices", {})
    usd = float(prices.get("usd_per_hour", {}).get(prices.get("device", ""), 0.0))
    tok, corpus_ids = prompt_corpus()
    ctx = Context(lab=lab, profile_name=profile, out=Path(out_dir), tokenizer=tok, corpus_ids=corpus_ids,
                  usd_per_hour=usd, private=bool(overlay and overlay.lab_toml()))
    batch = Batch.open(lab, subs, Path(out_dir), course)
    try:
        prepare_reference(ctx)
        return [grade_one(name, path, ctx, batch) for name, path in batch]
    finally:
        if ctx.reference is not None:
            ctx.reference.cleanup()
