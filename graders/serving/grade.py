"""`ailab grade serving`: host each submission's `create_app`, check it over HTTP, load it beside the reference.

For a batch: one reference host (the reference's `create_app` behind the same contract, in its own
sandboxed process) serves the whole batch; or, with `--reference-url`, an OpenAI-compatible server already
running, such as an interviewer's `vllm serve` of the lab's model folder (graders.serving.remote). Each
submission gets its own host and scorecard: functional checks (correctness, streaming, admission_control,
cancellation, metrics_endpoint), then open-loop Poisson load at each of the profile's rates, candidate
then reference per rate (C R C R), so both see the same machine at the same moments. goodput and latency
are ratios to the reference in that run; where the goodput ratio scores partly, the rates that cost points are
measured once more with fresh requests and each side keeps its better window (graders.serving.load, which runs
the load phase). A failing part never stops the others; a hang costs bounded seconds.

The load's prompts are drawn per run from a seeded generator (a fresh seed unless lab.toml, `--hidden` or
AILAB_SERVING_SEED fixes one; the scorecard records it), and every streamed completion of the load phase,
candidate and reference alike, is checked against the engine's greedy output computed here
(graders.serving.verify). A wrong stream is not goodput; a server whose share of wrong streams passes
lab.toml `[verification] max_failure_share` gets no performance points, with the reason. Token counts
are the verified streamed tokens; a `usage` that disagrees is reported and fails a correctness sub-check.

Metrics in the scorecard are the client-side vLLM-style figures at the profile's highest rate; the
verification figures (verified_rate, verification_failures, usage_mismatches) cover the whole load phase.
"""
from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from graders import preflight
from graders.engine.batch import Batch
from graders.engine.hidden import open_overlay
from graders.engine.labconfig import LabConfig, Limits, LoadProfile, load_lab
from graders.engine.submissions import open_submission, submissions_in
from graders.engine.sandbox import Worker, candidate_cpu_s
from graders.engine.scorecard import PartResult, Scorecard, clean_metrics, environment
from graders.engine.scoring import ramp
from graders.paths import REPO_ROOT
from graders.serving import checks, remote, verify
from graders.serving.client import Result, prompt_corpus, verification_figures
from graders.serving.host import HEALTH_PATH
from graders.serving.load import (Context, Load, LoadSkipped, goodput_band, goodput_ratio, load_one_rate, load_rounds,
                                  log, plan_load)
from graders.engine.report_serving import write_serving_report
from reference_systems.serving.model import model_dir

SERVING_METRICS = ("ttft_p50_ms", "ttft_p95_ms", "tpot_p50_ms", "itl_p95_ms", "e2e_p95_ms", "output_tokens_per_s",
                   "requests_per_s", "goodput_rps", "error_rate", "cost_per_1m_output_tokens_usd",
                   "verified_rate", "verification_failures", "usage_mismatches", "gpu_seconds", "gpu_util_mean",
                   "gpu_power_w_mean", "gpu_memory_mb_max", "energy_j", "joules_per_output_token",
                   "gpu_cost_per_1m_output_tokens_usd", "energy_cost_per_1m_output_tokens_usd")
NAIVE_SUBMISSION = "reference_systems/serving/naive_submission.py"
FUNCTIONAL = ("correctness", "streaming", "admission_control", "cancellation", "metrics_endpoint")


def reference_path(lab: LabConfig) -> Path:
    path = REPO_ROOT / str(lab.raw["lab"].get("submission", "reference_systems/serving/submission.py"))
    if not path.exists():
        raise SystemExit(f"the serving reference submission {path} is missing; it wraps the reference server in "
                         "create_app(engine, config)")
    return path


def server_sizes(lab: LabConfig, profile: LoadProfile) -> tuple[int, int]:
    """(max_batch, max_waiting): the profile's, else lab.toml [server]'s."""
    server = lab.raw.get("server", {})
    return (profile.max_batch or int(server.get("max_batch", 32)), profile.max_waiting or int(server.get("max_waiting", 64)))


def start_host(source: str, name: str, lab: LabConfig, profile: LoadProfile | None = None) -> Worker:
    """Host `source`'s create_app in a sandboxed worker, sized and placed (cpu/cuda, model) by `profile`
    (default: the lab's quick profile, on CPU)."""
    profile = profile or lab.load_profile("quick")
    model_dir(profile.model)  # built here, by the grader: a sandboxed host may read the model cache but never write it
    server = lab.raw.get("server", {})
    max_batch, max_waiting = server_sizes(lab, profile)
    command = ["graders.serving.host", "--module", "candidate.py", "--port", "{port}",
               "--max-batch", str(max_batch), "--max-waiting", str(max_waiting),
               "--request-timeout", str(server.get("request_timeout_s", 30)), "--threads", str(server.get("threads", 1)),
               "--device", profile.device, "--model", profile.model] + (["--dtype", profile.dtype] if profile.dtype else [])
    # CUDA reserves address space far beyond any RLIMIT_AS that leaves room for the host: no such limit on a GPU
    memory_mb = 0 if profile.device.startswith("cuda") else lab.limits.memory_mb
    worker = Worker(source, "", name=name, memory_mb=memory_mb, start_timeout_s=lab.limits.worker_start_s,
                    command=command, health_path=HEALTH_PATH, cpu_s=candidate_cpu_s(name, lab))
    return worker.__enter__()  # started, or cleaned up and raised


def alive(w: Worker | remote.RemoteReference | None) -> bool:
    if isinstance(w, remote.RemoteReference):
        return w.alive()
    return w is not None and w.proc is not None and w.proc.poll() is None


def run_checks(w: Worker, ctx: Context, card: Scorecard, correctness: checks.Tally) -> dict[str, tuple[float, str]]:
    """Each functional part's (fraction, detail); a hang or crash in one costs bounded time and the rest still run.
    `correctness` collects that part's sub-checks, to which the load phase adds one (usage under load)."""
    t = ctx.lab.limits.check_s
    max_batch, max_waiting = server_sizes(ctx.lab, ctx.profile)
    why = checks.probe(w.url, t)
    if why:
        card.errors.append(why)
        return {name: (0.0, f"not checked: {why}") for name in FUNCTIONAL}
    order = {
        "correctness": lambda: checks.correctness(w.url, t, ctx.expected, ctx.prompt_tokens, correctness),
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


def penalised_ttft_p95(results: list[Result], warmup_s: float, timeout_s: float) -> float:
    """TTFT p95 over every measured request, a failed one counting as the client timeout: a server
    cannot improve its latency by failing requests."""
    import numpy as np

    values = [r.ttft if r.ok else timeout_s for r in results if r.arrival >= warmup_s]
    return float(np.percentile(values, 95)) * 1e3 if values else timeout_s * 1e3


def judge_outputs(card: Scorecard, ctx: Context, cand: Load, ref: Load) -> str | None:
    """Verification findings into the card's errors; the reason performance points are withheld, or None."""
    vc, vr = verify.verdict(cand.everything(), ctx.greedy), verify.verdict(ref.everything(), ctx.greedy)
    limit = ctx.max_failure_share
    card.extras["verification"] = {"candidate": vc.to_json(), "reference": vr.to_json(), "max_failure_share": limit}
    if vr.share > limit and isinstance(ctx.reference, remote.RemoteReference):
        card.errors.append(remote.not_greedy(ctx.reference, vr.failed, vr.compared, ctx.profile))
    elif vr.share > limit:
        card.errors.append(f"grader problem: the reference's own streams failed output verification ({vr.failed} of "
                           f"{vr.compared}); please report this with the scorecard attached")
    top = max(cand.results)
    fast, ref_tpot = verify.stream_tpot_p50_ms(cand.results[top]), ref.summaries[top].get("tpot_p50_ms")
    ratio = float(ctx.lab.raw.get("verification", {}).get("implausible_tpot_ratio", 0.05))
    if fast is not None and ref_tpot and fast < ratio * ref_tpot:
        card.errors.append(f"implausible timing: at {top:g}/s tokens arrived {fast:.2f} ms apart (median), under "
                           f"{ratio:.0%} of the {ref_tpot:.1f} ms per token the reference's engine needs in the same "
                           "run; they were not decoded as they were streamed")
    usage = vc.usage_finding()
    if usage:
        card.errors.append(usage)
    withheld = vc.withheld(limit)
    if withheld:
        card.errors.insert(0, withheld)
    return withheld


def score_load(card: Scorecard, ctx: Context, cand: Load | None, ref: Load | None, why_not: str) -> None:
    parts, profile = ctx.lab.parts, ctx.profile
    g, lat = parts["goodput"], parts["latency"]
    if cand is None or ref is None:
        card.add(g.name, 0, g.weight, f"Task {g.task}: not measured: {why_not}")
        card.add(lat.name, 0, lat.weight, f"Task {lat.task}: not measured: {why_not}")
        return
    withheld = judge_outputs(card, ctx, cand, ref)
    if withheld:
        card.add(g.name, 0, g.weight, f"Task {g.task}: no performance points: {withheld}")
        card.add(lat.name, 0, lat.weight, f"Task {lat.task}: no performance points: {withheld}")
        return
    rates = profile.rates
    ratio = goodput_ratio(cand, ref)
    per_rate = ", ".join(f"{r:g}/s: {cand.goodput(r):.2f} vs {ref.goodput(r):.2f}" for r in rates)
    detail = (f"Task {g.task}: goodput (requests/s meeting TTFT <= {ctx.lab.slo.get('ttft_ms', 0):g} ms and TPOT <= "
              f"{ctx.lab.slo.get('tpot_ms', 0):g} ms) vs the reference: {per_rate}; ratio of sums {ratio:.2f} "
              f"(full credit at >= {g.full_at_ratio}, none at <= {g.zero_at_ratio})")
    wrong = card.extras["verification"]["candidate"]["failed"]
    if wrong:
        detail += f"; {wrong} streams were not the engine's greedy output and count as failed"
    errors = sorted({e for r in rates for e in cand.summaries[r].get("errors", [])})
    if errors:
        detail += f"; request errors, e.g. {errors[0][:160]}"
    if cand.again:
        looks = ", ".join(f"{r:g}/s: {c[0]:.2f} then {c[1]:.2f} vs {x[0]:.2f} then {x[1]:.2f}"
                          for (r, c), x in zip(cand.again.items(), ref.again.values()))
        detail += f"; measured twice with fresh requests, each side's better window counting: {looks}"
    card.add(g.name, ramp(ratio, *goodput_band(ctx)), g.weight, detail)

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
    correctness = checks.Tally()
    w, why_not, _ = open_submission(path, card, lambda src: start_host(src, name, ctx.lab, ctx.profile), log, ctx.lab.notebook)
    try:
        results = (run_checks(w, ctx, card, correctness) if w is not None else
                   {n: (0.0, f"not checked: {why_not}") for n in FUNCTIONAL})
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
        if cand_load is not None and correctness.total:
            usage_under_load(card, ctx, correctness)
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


def usage_under_load(card: Scorecard, ctx: Context, correctness: checks.Tally) -> None:
    """One more correctness sub-check: every verified stream's usage.completion_tokens equals its streamed tokens."""
    mismatches = card.extras.get("verification", {}).get("candidate", {}).get("usage_mismatches", 0)
    correctness.check(mismatches == 0, f"usage.completion_tokens disagreed with the streamed tokens on {mismatches} "
                                       "requests under load")
    fraction, detail = correctness.result(checks.CORRECTNESS)
    part = ctx.lab.parts["correctness"]
    i = next(i for i, p in enumerate(card.parts) if p.name == part.name)
    card.parts[i] = PartResult(part.name, round(fraction * part.weight, 2), part.weight, f"Task {part.task}: {detail}")


def load_metrics(load: Load, top: float) -> dict[str, float]:
    """The metrics at the top rate, with the verification figures of the whole load phase."""
    return clean_metrics({**load.summaries[top], **verification_figures(load.everything())}, SERVING_METRICS)


def finish(card: Scorecard, ctx: Context, cand: Load | None, ref: Load | None, seconds: float) -> None:
    """The card's metrics (at the profile's top rate), environment with the seed and price table, and plot data."""
    profile = ctx.profile
    top = max(profile.rates)
    card.metrics = load_metrics(cand, top) if cand else {}
    card.reference = {"metrics": load_metrics(ref, top) if ref else {}}
    card.duration_s = seconds
    prices = ctx.lab.raw.get("prices", {})
    hidden_seed = ctx.seed_source == "--hidden lab.toml"
    card.environment = environment(profile=ctx.profile_name, rates=profile.rates, metrics_rate=top,
                                   duration_s=profile.duration_s, slo=ctx.lab.slo, price_device=price_device(ctx.lab, profile),
                                   usd_per_hour=ctx.usd_per_hour, price_table=prices.get("usd_per_hour", {}),
                                   workload="private (--hidden)" if ctx.private else "shipped",
                                   device=profile.device, model=profile.model, dtype=profile.dtype or "default",
                                   load_seed="private (--hidden)" if hidden_seed else ctx.seed,
                                   load_seed_source=ctx.seed_source, greedy_outputs_s=round(ctx.greedy.seconds, 2),
                                   max_failure_share=ctx.max_failure_share, **reference_environment(ctx))
    systems = (("candidate", cand), ("reference", ref), ("floor", ctx.floor))
    card.by_rate = {who: {f"{rate:g}": clean_metrics(s, SERVING_METRICS) for rate, s in load.summaries.items()}
                    for who, load in systems if load is not None}
    verification = card.extras.get("verification", {})
    card.extras = {"rates": profile.rates, "prices": prices.get("usd_per_hour", {}), "verification": verification,
                   "second_look": {who: {f"{r:g}": list(g) for r, g in load.again.items()}
                                   for who, load in systems[:2] if load is not None},
                   "candidate": {r: s for r, s in cand.summaries.items()} if cand else {},
                   "reference": {r: s for r, s in ref.summaries.items()} if ref else {},
                   "floor": {r: s for r, s in ctx.floor.summaries.items()} if ctx.floor else {},
                   "ttft": [r.ttft * 1e3 for r in (cand.results[top] if cand else []) if r.ok],
                   "ref_ttft": [r.ttft * 1e3 for r in (ref.results[top] if ref else []) if r.ok]}


def reference_environment(ctx: Context) -> dict[str, str]:
    """What the scorecard's environment says the candidates were compared with."""
    if isinstance(ctx.reference, remote.RemoteReference):
        return {"reference": ctx.reference.describe(), "reference_model": ctx.reference.model}
    return {"reference": f"built-in: {ctx.lab.raw['lab'].get('submission', 'reference')} (sandboxed worker)"}


def prepare_reference(ctx: Context, url: str | None = None) -> None:
    """Start the batch's reference host, or use the external server at `url` (--reference-url), and record its
    greedy answers (what candidates must match)."""
    if url:
        ctx.reference = remote.connect(url, ctx.profile)
        log(f"reference: the external server at {ctx.reference.url} (model {ctx.reference.model!r})")
    else:
        log("starting the reference server ...")
        ctx.reference = start_host(reference_path(ctx.lab).read_text(), "reference", ctx.lab, ctx.profile)
    t, fields = ctx.lab.limits.check_s * 3, remote.request_fields(ctx.reference)
    _, body = checks.completion(ctx.reference.url, t, prompt=checks.PROMPT, max_tokens=12, ignore_eos=True, **fields)
    _, chat = checks.chat(ctx.reference.url, t, messages=checks.CHAT, max_tokens=8, ignore_eos=True, **fields)
    try:
        ctx.expected = {"text": body["choices"][0]["text"], "chat": chat["choices"][0]["message"]["content"]}
    except (TypeError, KeyError, IndexError):
        why = f"the reference server answered unexpectedly: {str(body)[:300]} {str(chat)[:300]}"
        if url:  # the user's server: say so in one line, as for any other input that cannot be used
            raise SystemExit(f"--reference-url: {why}; it must serve OpenAI completions and chat completions") from None
        raise RuntimeError(why) from None


def price_device(lab: LabConfig, profile: LoadProfile) -> str | None:
    """The price table's row for the device the profile runs on: [prices] gpu_device on a GPU, else device."""
    return lab.raw.get("prices", {}).get("gpu_device" if profile.device.startswith("cuda") else "device")


def device_price(lab: LabConfig, profile: LoadProfile) -> float:
    """USD per device-hour of the device the profile runs on."""
    table = lab.raw.get("prices", {}).get("usd_per_hour", {})
    return float(table.get(price_device(lab, profile) or "", 0.0))


def measure_floor(ctx: Context) -> None:
    """The naive server (one request at a time) under the same load, once per batch: the floor every report
    plots beside the candidate and the reference. Not scored."""
    source = (REPO_ROOT / NAIVE_SUBMISSION).read_text()
    log("starting the naive server (the floor) ...")
    floor = start_host(source, "naive-floor", ctx.lab, ctx.profile)
    try:
        ctx.floor = Load()
        for rate in ctx.requests:
            log(f"floor: {len(ctx.requests[rate])} requests at {rate:g}/s on the naive server ...")
            load_one_rate(floor.url, ctx, rate, ctx.floor)
    finally:
        floor.cleanup()


def grade(submission: str | list[tuple[str, Path]], out_dir: Path, dataset: str | None = None,
          profile: str = "quick", limits: Limits | None = None, hidden: Path | None = None,
          course: Path | None = None, reference_url: str | None = None) -> list[Scorecard]:
    """Grade a .ipynb, a .py, a folder of them, `reference`, or (name, path) pairs; scorecard.json +
    report.html each in `out_dir/<name>/`. `dataset` is accepted for the CLI's sake (this lab's workload
    is built in; `hidden`'s lab.toml can give it a private seed); `course` as in graders.rag.grade.
    `reference_url`: compare with this running OpenAI-compatible server (graders.serving.remote), not a
    reference host started here."""
    overlay = open_overlay(hidden, "serving")
    lab = load_lab("serving", overlay.lab_toml() if overlay else None)
    if limits is not None:
        lab = replace(lab, limits=limits)
    preflight.gpu(lab.load_profile(profile))
    subs = submissions_in(submission, reference_path(lab))
    usd = device_price(lab, lab.load_profile(profile))
    tok, corpus_ids = prompt_corpus()
    private = overlay.lab_toml() if overlay else {}
    ctx = Context(lab=lab, profile_name=profile, out=Path(out_dir), tokenizer=tok, corpus_ids=corpus_ids,
                  usd_per_hour=usd, usd_per_kwh=float(lab.raw.get("prices", {}).get("usd_per_kwh", 0.0)),
                  private=bool(private),
                  private_seed="seed" in private.get("profiles", {}).get(profile, {}))
    ctx.prompt_tokens = len(tok(checks.PROMPT).input_ids)
    batch = Batch.open(lab, subs, Path(out_dir), course)
    try:
        with ThreadPoolExecutor(1) as pool:  # the greedy outputs are computed while the reference host starts
            planned = pool.submit(plan_load, ctx)
            prepare_reference(ctx, reference_url)
            planned.result()
        if isinstance(ctx.reference, remote.RemoteReference):
            remote.check_greedy(ctx.reference, ctx.warm, ctx.greedy, ctx.lab.limits.check_s * 3, ctx.profile)
        if ctx.profile.floor:
            measure_floor(ctx)
        return [grade_one(name, path, ctx, batch) for name, path in batch]
    finally:
        if ctx.reference is not None:
            ctx.reference.cleanup()
