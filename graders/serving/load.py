"""The serving grader's load phase: the run's requests and the engine's greedy output for them (`plan_load`), the
open-loop windows, candidate then reference at each rate (`load_rounds`), and the second look where the goodput
ratio scores partly (`second_look`). Used by graders.serving.grade and benchmarks/serving_windows.py.
"""
from __future__ import annotations

import asyncio
import contextlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graders.engine.labconfig import LabConfig, LoadProfile
from graders.engine.sandbox import Worker
from graders.serving import checks, gpu, remote, verify
from graders.serving.client import Result, choose_seed, drive, summarize, warmup, workload

WARMUP_REQUESTS = 2

def log(message: str) -> None:
    print(f"[serving] {message}", file=sys.stderr, flush=True)


class LoadSkipped(Exception):
    """The candidate cannot take the load test (its streams fail); the reason is for people."""


@dataclass
class Load:
    """One system's load results: per rate, the summary and the raw client results of the window that counts; the
    warm-up's results; the streams of windows that do not count (a second look's worse one), still verified."""
    summaries: dict[float, dict[str, Any]] = field(default_factory=dict)
    results: dict[float, list[Result]] = field(default_factory=dict)
    warm: list[Result] = field(default_factory=list)
    spare: list[Result] = field(default_factory=list)
    again: dict[float, tuple[float, float]] = field(default_factory=dict)  # rate -> goodput of a first, second look

    def everything(self) -> list[Result]:
        return self.warm + [r for results in self.results.values() for r in results] + self.spare

    def goodput(self, rate: float) -> float:
        return float(self.summaries[rate].get("goodput_rps", 0.0))

    def keep_better(self, window: Load, rate: float) -> None:
        """Of this load's window at `rate` and `window`'s, keep the one with more goodput; spare the other."""
        self.again[rate] = (self.goodput(rate), window.goodput(rate))
        if window.goodput(rate) > self.goodput(rate):
            self.spare += self.results[rate]
            self.results[rate], self.summaries[rate] = window.results[rate], window.summaries[rate]
        else:
            self.spare += window.results[rate]


@dataclass
class Context:
    lab: LabConfig
    profile_name: str
    out: Path
    tokenizer: Any
    corpus_ids: list[int]
    usd_per_hour: float
    usd_per_kwh: float = 0.0
    private: bool = False  # the workload comes from an interviewer's --hidden lab.toml
    private_seed: bool = False  # ... and so does the load seed (then the scorecard does not show it)
    reference: Worker | remote.RemoteReference | None = None  # remote: --reference-url
    floor: Load | None = None  # the naive server's load, once per batch (profiles with floor = true)
    expected: dict[str, Any] = field(default_factory=dict)
    prompt_tokens: int = 0
    seed: int = 0
    seed_source: str = "fresh"
    warm: list[tuple[float, str, int]] = field(default_factory=list)      # the run's warm-up requests
    requests: dict[float, list[tuple[float, str, int]]] = field(default_factory=dict)  # per rate
    spec: dict[str, Any] = field(default_factory=dict)  # what the requests are drawn from (client.workload)
    second: dict[float, list[tuple[float, str, int]]] = field(default_factory=dict)  # a second look's, per rate
    greedy: verify.Greedy = field(default_factory=lambda: verify.Greedy({}, 0.0))

    @property
    def profile(self) -> LoadProfile:
        return self.lab.load_profile(self.profile_name)

    @property
    def max_failure_share(self) -> float:
        return float(self.lab.raw.get("verification", {}).get("max_failure_share", 0.02))


def plan_load(ctx: Context) -> None:
    """The run's seed, its warm-up and per-rate requests (the same for every server of the batch), and the
    engine's greedy output for each of them, computed once here in the grader's process."""
    profile = ctx.profile
    ctx.seed, source = choose_seed(profile.seed)
    ctx.seed_source = "--hidden lab.toml" if source == "lab.toml" and ctx.private_seed else source
    ctx.spec = spec = {"seed": ctx.seed, "duration_s": profile.duration_s, "prompt_tokens": profile.prompt_tokens,
                       "output_tokens": profile.output_tokens}
    ctx.warm = warmup(spec, WARMUP_REQUESTS, ctx.tokenizer, ctx.corpus_ids)
    ctx.requests = {rate: workload(spec, rate, ctx.tokenizer, ctx.corpus_ids) for rate in profile.rates}
    everything = ctx.warm + [r for rs in ctx.requests.values() for r in rs]
    log(f"load seed {ctx.seed} ({ctx.seed_source}); computing the engine's greedy output for {len(everything)} "
        "requests ...")
    ctx.greedy = greedy_outputs(ctx, everything)


def greedy_outputs(ctx: Context, requests: list[tuple[float, str, int]]) -> verify.Greedy:
    profile = ctx.profile
    return verify.greedy_texts([(prompt, n) for _, prompt, n in requests],
                               max_batch=profile.max_batch or int(ctx.lab.raw.get("verification", {}).get("max_batch", 64)),
                               device=profile.device, model=profile.model, dtype=profile.dtype)


def load_rounds(cand: Worker, ctx: Context, name: str) -> tuple[Load, Load]:
    """Candidate then reference at each rate; each run is bounded by duration + client timeout. Every stream is
    verified against the engine's greedy output."""
    assert ctx.reference is not None
    profile = ctx.profile
    loads = Load(), Load()
    for w, load in ((cand, loads[0]), (ctx.reference, loads[1])):  # first-request effects are not measured
        load.warm = asyncio.run(drive(w.url, ctx.warm, profile.client_timeout_s, **remote.drive_options(w)))
        verify.mark(load.warm, ctx.greedy)
        if w is cand and not any(r.verified is not None for r in load.warm):
            raise LoadSkipped(f"a streamed completion as the load test sends it failed ({load.warm[0].error})")
    for rate in ctx.requests:
        measure_both(cand, ctx, rate, loads, f"{name}: {len(ctx.requests[rate])} requests at {rate:g}/s for "
                                             f"{profile.duration_s:g} s")
    second_look(cand, ctx, name, loads)
    return loads


def measure_both(cand: Worker, ctx: Context, rate: float, into: tuple[Load, Load], what: str,
                 requests: list[tuple[float, str, int]] | None = None) -> None:
    """One window at `rate` on the candidate, then one on the reference (ctx.reference), into `into`'s two loads."""
    assert ctx.reference is not None
    for who, w, load in (("candidate", cand, into[0]), ("reference", ctx.reference, into[1])):
        log(f"{what} on the {who} ...")
        with cand.paused() if w is not cand else contextlib.nullcontext():  # its background work cannot load the reference
            load_one_rate(w.url, ctx, rate, load, remote.drive_options(w), requests)


def goodput_band(ctx: Context) -> tuple[float, float]:
    """(zero_at, full_at) of the goodput part: the ratio at and under which it scores nothing, and from which all."""
    g = ctx.lab.parts["goodput"]
    return g.zero_at_ratio or 0.3, g.full_at_ratio or 0.8


def goodput_ratio(cand: Load, ref: Load) -> float:
    """The candidate's goodput over the reference's, each summed over the rates measured (the profile's)."""
    c, r = (sum(load.goodput(rate) for rate in ref.summaries) for load in (cand, ref))
    return c / r if r > 0 else 0.0


def rates_to_look_again(ctx: Context, cand: Load, ref: Load) -> list[float]:
    """The rates a second look measures: none unless the goodput ratio scores partly, else those at which the
    candidate's goodput fell short of full credit."""
    zero, full = goodput_band(ctx)
    if not zero <= goodput_ratio(cand, ref) < full:
        return []
    return [r for r in ref.summaries if cand.goodput(r) < full * ref.goodput(r)]


def second_look(cand: Worker, ctx: Context, name: str, loads: tuple[Load, Load]) -> None:
    """One window at a saturating rate is a noisy measure on a shared machine: goodput falls off a cliff there, and
    the reference graded against itself has scored 0.59 of itself. So when the ratio lands where the part scores
    partly, each rate at which the candidate fell short of full credit is measured again, candidate then reference,
    with requests drawn afresh (answers cached from the first window are no help), and each side keeps its better
    window at that rate: interference only ever slows a server down."""
    for rate in rates_to_look_again(ctx, *loads):
        if rate not in ctx.second:
            ctx.second[rate] = workload(ctx.spec, rate, ctx.tokenizer, ctx.corpus_ids, draw=1)
            ctx.greedy = ctx.greedy.merged(greedy_outputs(ctx, ctx.second[rate]))
        windows = Load(), Load()
        measure_both(cand, ctx, rate, windows, f"{name}: a second look at {rate:g}/s, with fresh requests",
                     ctx.second[rate])
        for load, window in zip(loads, windows):
            load.keep_better(window, rate)


def load_one_rate(url: str, ctx: Context, rate: float, load: Load, options: dict[str, Any] | None = None,
                  requests: list[tuple[float, str, int]] | None = None) -> None:
    """One open-loop run at `rate` (of the run's requests at that rate, or `requests`), verified and summarised into
    `load`; on a GPU profile with the GPU's measured seconds, energy and utilisation (graders.serving.gpu) beside the
    client-side figures. `options`: drive's, for an external reference (graders.serving.remote.drive_options)."""
    profile = ctx.profile
    checks.wait_idle(url, ctx.lab.limits.check_s, limit_s=20)
    meter = gpu.GpuMeter() if profile.device.startswith("cuda") else None  # no NVML there: no figures
    with meter or contextlib.nullcontext():
        results = asyncio.run(drive(url, requests or ctx.requests[rate], profile.client_timeout_s, **(options or {})))
    verify.mark(results, ctx.greedy)
    load.results[rate] = results
    load.summaries[rate] = summarize(results, profile.warmup_s, ctx.lab.slo, ctx.usd_per_hour)
    if meter is not None:
        tokens = sum(r.output_tokens for r in results if r.ok)
        load.summaries[rate].update(meter.figures(tokens, ctx.usd_per_hour, ctx.usd_per_kwh))
