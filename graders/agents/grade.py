"""`ailab grade agents`: host each submission's agent, run the seeded tasks beside the reference, audit, score.

For a batch: one desk (the world's tools and the scripted policy model, graders.agents.desk) in the grader's process
and one reference host serve the whole batch; each submission gets its own sandboxed host and scorecard. The tasks
come from lab.toml [tasks] hidden_seed (an interviewer's --hidden lab.toml replaces it); each is run k times, each
repetition under its own fault seed (fresh per grading run unless the profile fixes `seed`), candidate then
reference per repetition, `concurrency` conversations at once, so both meet the same faults and the same machine.

Parts (lab.toml [parts]): task_success is pass^k on the database end state, as a ratio to the reference's; policy
loses `per_violation` of its points per violation the audit found (the report lists each with its conversation);
escalation is the F1 of escalation precision and recall; cost is USD per resolved task, latency the p95 of a turn
(one customer message to the agent's return) and throughput conversations per second, all three as ratios to the
reference; recovery the share of conversations that met a tool fault and still ended right, over the reference's;
traces the share of GenAI span checks passed. policy, cost, latency, throughput and traces are scaled by the
candidate's resolved share over the reference's: doing nothing is safe and fast, and earns nothing.

`--model-url URL --model NAME` (graders.agents.upstream): the desk's /v1 forwards to that real OpenAI-compatible
model instead of the scripted one, for the candidates and the reference alike; tokens come from its `usage`,
priced with lab.toml [prices] or `--model-prices`, and the scorecard's environment names the URL and NAME.
"""
from __future__ import annotations

import json
import secrets
import sys
import time
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from graders.agents import runner, upstream
from graders.agents.desk import Desk
from graders.agents.host import HEALTH_PATH
from graders.agents.report import write_agents_report
from graders.engine.batch import Batch
from graders.engine.hidden import open_overlay
from graders.engine.labconfig import LabConfig, Limits, load_lab
from graders.engine.sandbox import Worker, candidate_cpu_s
from graders.engine.scorecard import Scorecard, clean_metrics, environment
from graders.engine.scoring import ramp
from graders.engine.submissions import open_submission, submissions_in
from graders.paths import REPO_ROOT
from reference_systems.agents.tasks import Task, tasks as make_tasks

METRICS = ("pass_k", "success_rate", "violations", "escalation_precision", "escalation_recall", "cost_per_resolved_usd",
           "turn_p50_ms", "turn_p95_ms", "conversations_per_s", "recovery_rate", "trace_conformance",
           "tokens_per_conversation", "cut_off")


def log(message: str) -> None:
    print(f"[agents] {message}", file=sys.stderr, flush=True)


@dataclass
class Context:
    lab: LabConfig
    profile: str
    tasks: list[Task]
    seeds: list[int]
    seed_source: str
    private: bool
    desk: Desk | None = None
    reference: Worker | None = None
    upstream: upstream.Upstream | None = None   # --model-url: a real model in place of the scripted one

    @property
    def run(self) -> dict[str, Any]:
        return self.lab.task_profiles[self.profile]

    @property
    def conversation(self) -> dict[str, Any]:
        return dict(self.lab.raw.get("conversation", {}))


@dataclass
class Outcome:
    """All of one system's runs in one grading, and the figures scored from them."""
    runs: list[runner.Run] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)   # wall time of each round

    def figures(self, lab: LabConfig, k: int) -> dict[str, float]:
        runs = [r for r in self.runs if not r.skipped] or self.runs
        prices = lab.raw.get("prices", {})
        by_task: dict[str, list[bool]] = {}
        for r in self.runs:
            by_task.setdefault(r.task, []).append(r.ok)
        resolved = [r for r in runs if r.ok]
        cost = sum(r.input_tokens * float(prices.get("input_usd_per_1m", 0)) +
                   r.output_tokens * float(prices.get("output_usd_per_1m", 0)) for r in runs) / 1e6
        # an escalation counts where the agent consulted the model (graders.agents.runner.model_rules)
        made = [r for r in runs if r.escalated and r.model_calls]
        expected = [r for r in runs if r.expected_escalation]
        faulted = [r for r in runs if r.faults]
        turns = [r.seconds * 1e3 for r in resolved]
        traced = [r for r in resolved if r.trace_checks]
        return {
            "pass_k": float(np.mean([all(v) and len(v) >= k for v in by_task.values()])) if by_task else 0.0,
            "success_rate": len(resolved) / len(self.runs) if self.runs else 0.0,
            "violations": float(sum(len(r.violations) for r in runs)),
            "escalation_precision": sum(r.expected_escalation for r in made) / len(made) if made else 1.0,
            "escalation_recall": sum(bool(r.escalated and r.model_calls) for r in expected) / len(expected)
                                 if expected else 1.0,
            "escalations_made": float(len(made)),
            "cost_usd": cost,
            "cost_per_resolved_usd": cost / len(resolved) if resolved else float("inf"),
            "turn_p50_ms": float(np.percentile(turns, 50)) if turns else float("inf"),
            "turn_p95_ms": float(np.percentile(turns, 95)) if turns else float("inf"),
            "conversations_per_s": len(resolved) / sum(self.seconds) if sum(self.seconds) > 0 else 0.0,
            "recovery_rate": sum(r.ok for r in faulted) / len(faulted) if faulted else 1.0,
            "trace_conformance": float(np.mean([np.mean(list(r.trace_checks.values())) for r in traced]))
                                 if traced else 0.0,
            "tokens_per_conversation": float(np.mean([r.input_tokens + r.output_tokens for r in runs])) if runs else 0.0,
            "cut_off": float(sum(r.cut_off for r in self.runs)),
        }


def reference_path(lab: LabConfig) -> Path:
    return REPO_ROOT / str(lab.raw["lab"].get("submission", "reference_systems/agents/submission.py"))


def agent_config(lab: LabConfig) -> str:
    conv = lab.raw.get("conversation", {})
    return json.dumps({"policy": dict(lab.raw["policy"]), "tool_timeout_s": float(conv.get("tool_timeout_s", 1.0)),
                       "deadline_s": float(conv.get("deadline_s", 12.0)),
                       "max_model_calls": int(lab.raw.get("model", {}).get("max_calls", 40)) - 10,
                       "max_tool_calls": int(lab.raw.get("faults", {}).get("max_tool_calls", 40)) - 10})


def start_host(source: str, name: str, lab: LabConfig) -> Worker:
    command = ["graders.agents.host", "--module", "candidate.py", "--port", "{port}", "--config", agent_config(lab)]
    worker = Worker(source, "", name=name, memory_mb=lab.limits.memory_mb, start_timeout_s=lab.limits.worker_start_s,
                    command=command, health_path=HEALTH_PATH, cpu_s=candidate_cpu_s(name, lab))
    return worker.__enter__()


def alive(w: Worker | None) -> bool:
    return w is not None and w.proc is not None and w.proc.poll() is None


def run_all(cand: Worker, ctx: Context, name: str) -> tuple[Outcome, Outcome]:
    """k repetitions; in each, every task on the candidate then on the reference, under the repetition's seed."""
    assert ctx.desk is not None and ctx.reference is not None
    conv = ctx.conversation
    deadline, model_name = float(conv.get("deadline_s", 12.0)), ctx.desk.model_name
    cutoffs = runner.Cutoffs(int(conv.get("max_cutoffs", 3)))
    outcomes = Outcome(), Outcome()
    for rep, seed in enumerate(ctx.seeds):
        for who, w, out in (("candidate", cand, outcomes[0]), ("reference", ctx.reference, outcomes[1])):
            log(f"{name}: round {rep + 1}/{len(ctx.seeds)}: {len(ctx.tasks)} conversations on the {who}, "
                f"{ctx.run['concurrency']} at once ...")
            with cand.paused() if w is not cand else nullcontext():  # its background work cannot load the reference
                rnd = runner.run_round(w, ctx.desk, ctx.tasks, rep, seed, int(ctx.run["concurrency"]), deadline,
                                       model_name, cutoffs if w is cand else None)
            out.runs += rnd.runs
            out.seconds.append(rnd.seconds)
    return outcomes


def _example_failure(outcome: Outcome) -> str:
    """The commonest error with its count, else the first conversation's reasons for failing ("" if none):
    the commonest, not the first, because which conversation ends first depends on the machine's load."""
    errors = Counter(x.error for x in outcome.runs if x.error)
    if errors:
        [(error, count)] = errors.most_common(1)
        return f"{error} ({count} of {len(outcome.runs)} conversations)"
    return next((f"{x.task}: {'; '.join(x.why)}" for x in outcome.runs if x.why and not x.skipped), "")


def score(card: Scorecard, ctx: Context, cand: Outcome | None, ref: Outcome | None, why_not: str) -> None:
    parts = ctx.lab.parts
    if cand is None or ref is None:
        return  # Batch.complete zeroes every part with why_not
    k = len(ctx.seeds)
    c, r = cand.figures(ctx.lab, k), ref.figures(ctx.lab, k)
    card.metrics = clean_metrics(c, METRICS)
    card.reference = {"metrics": clean_metrics(r, METRICS)}
    share = min(1.0, c["success_rate"] / r["success_rate"]) if r["success_rate"] > 0 else 0.0
    example = _example_failure(cand)
    if share == 0 and example:
        card.errors.insert(0, f"no conversation ended right; e.g. {example}")
    if ctx.upstream is not None and r["success_rate"] < 0.5:  # a model that cannot do the job fails both sides
        completions = sum(x.model_calls for x in ref.runs)
        example = _example_failure(ref)
        card.errors.insert(0, f"the reference agent ended only {r['success_rate']:.0%} of its conversations right with "
                              f"the model {ctx.upstream.model!r} at {ctx.upstream.url} ({completions} completions "
                              "answered), so the ratios to it say little: the model (its tool calls, speed, errors) "
                              f"is the likely cause, not this submission; e.g. {example}")

    p = parts["task_success"]
    ratio = c["pass_k"] / r["pass_k"] if r["pass_k"] > 0 else 0.0
    failed = sorted({x.task for x in cand.runs if not x.ok})
    card.add(p.name, ramp(ratio, p.zero_at_ratio or 0.2, p.full_at_ratio or 0.95), p.weight,
             f"Task {p.task}: pass^{k} {c['pass_k']:.2f} vs the reference's {r['pass_k']:.2f} ({len(ctx.tasks)} tasks, "
             f"each {k} times under different faults; ratio {ratio:.2f}); conversations ended right "
             f"{c['success_rate']:.0%}" + (f"; failed tasks, e.g. {', '.join(failed[:4])}" if failed else ""))

    p = parts["policy"]
    per = float(ctx.lab.raw["parts"]["policy"].get("per_violation", 0.25))
    n = int(c["violations"])
    listed = [f"{x.task} (run {x.rep + 1}): {v}" for x in cand.runs for v in x.violations]
    card.extras["violations"] = listed
    card.add(p.name, max(0.0, 1 - per * n) * share, p.weight,
             f"Task {p.task}: {n} policy violation(s) found by the desk's audit of every write and message"
             + (f", e.g. {listed[0]}" if listed else "") + f"; each costs {per:.0%} of this part"
             + (f"; scaled by the resolved share {share:.2f}" if share < 1 else ""))

    p = parts["escalation"]
    prec, rec = c["escalation_precision"], c["escalation_recall"]
    f1 = 2 * prec * rec / (prec + rec) if prec + rec > 0 else 0.0
    if not c["escalations_made"] and not any(x.expected_escalation for x in cand.runs):
        f1 = share
    card.add(p.name, f1, p.weight, f"Task {p.task}: escalation precision {prec:.2f}, recall {rec:.2f} "
                                   f"({int(c['escalations_made'])} made); F1 {f1:.2f}")

    def ratio_part(name: str, value: float, detail: str) -> None:
        q = parts[name]
        frac = ramp(value, q.zero_at_ratio or 4.0, q.full_at_ratio or 1.5) * share
        card.add(q.name, frac, q.weight, f"Task {q.task}: {detail}; ratio {value:.2f} (full credit at <= "
                                         f"{q.full_at_ratio}, none at >= {q.zero_at_ratio})"
                 + (f"; scaled by the resolved share {share:.2f}" if share < 1 else ""))

    def over(a: float, b: float) -> float:
        return a / b if b > 0 and np.isfinite(a) else float("inf")

    ratio_part("cost", over(c["cost_per_resolved_usd"], r["cost_per_resolved_usd"]),
               f"USD per resolved task {c['cost_per_resolved_usd']:.6f} vs {r['cost_per_resolved_usd']:.6f} "
               f"({c['tokens_per_conversation']:.0f} vs {r['tokens_per_conversation']:.0f} tokens per conversation)")
    ratio_part("latency", over(c["turn_p95_ms"], r["turn_p95_ms"]),
               f"p95 turn latency {c['turn_p95_ms']:.0f} vs {r['turn_p95_ms']:.0f} ms with "
               f"{ctx.run['concurrency']} conversations at once")
    ratio_part("throughput", over(r["conversations_per_s"], c["conversations_per_s"]),
               f"resolved conversations/s {c['conversations_per_s']:.2f} vs {r['conversations_per_s']:.2f}")

    p = parts["recovery"]
    rec_ratio = c["recovery_rate"] / r["recovery_rate"] if r["recovery_rate"] > 0 else 0.0
    faulted = sum(1 for x in cand.runs if x.faults)
    card.add(p.name, ramp(rec_ratio, p.zero_at_ratio or 0.3, p.full_at_ratio or 0.9) * (share if faulted else 0),
             p.weight, f"Task {p.task}: {c['recovery_rate']:.0%} of the {faulted} conversations that met a tool fault "
                       f"ended right (reference {r['recovery_rate']:.0%})")

    p = parts["traces"]
    failing: dict[str, int] = {}
    for x in cand.runs:
        for check, passed in x.trace_checks.items():
            failing[check] = failing.get(check, 0) + (not passed)
    worst = [f"{name} ({n} conversations)" for name, n in sorted(failing.items(), key=lambda kv: -kv[1]) if n]
    card.add(p.name, c["trace_conformance"] * share, p.weight,
             f"Task {p.task}: GenAI span checks passed {c['trace_conformance']:.0%}"
             + (f"; failing: {'; '.join(worst[:3])}" if worst else ""))


def grade_one(name: str, path: Path, ctx: Context, batch: Batch) -> Scorecard:
    started = time.perf_counter()
    card = Scorecard(lab="agents", submission=name)
    cand = ref = None
    w, why_not, _ = open_submission(path, card, lambda src: start_host(src, name, ctx.lab), log, ctx.lab.notebook)
    try:
        if w is not None:
            cand, ref = run_all(w, ctx, name)
            cut = [x for x in cand.runs if x.cut_off]
            skipped = sum(x.skipped for x in cand.runs)
            if cut:
                card.errors.append(f"{len(cut)} conversation(s) did not end within "
                                   f"{ctx.conversation.get('deadline_s', 12):g} s and were cut off (e.g. {cut[0].task})"
                                   + (f"; the other {skipped} were not run" if skipped else ""))
        score(card, ctx, cand, ref, why_not)
    except Exception as exc:  # noqa: BLE001 - a grader bug must not cost the rest of the batch its grades
        card.errors.append(f"internal grader error while grading this submission ({type(exc).__name__}: {exc}); "
                           "parts not yet scored get 0 — please report this with the submission attached")
    finally:
        if w is not None:
            if not alive(w) and w.proc is not None:
                card.errors.append(f"the agent's process exited (code {w.proc.returncode}); last output:\n"
                                   f"{w.output_tail(600)}")
            w.cleanup()
    batch.complete(card, why_not)
    card.duration_s = time.perf_counter() - started
    card.environment = environment(profile=ctx.profile, tasks=len(ctx.tasks), k=len(ctx.seeds),
                                   concurrency=ctx.run["concurrency"],
                                   task_seed="private (--hidden)" if ctx.private else
                                   ctx.lab.raw["tasks"]["hidden_seed"], fault_seeds=ctx.seeds,
                                   fault_seed_source=ctx.seed_source, **model_environment(ctx, cand, ref),
                                   prices=ctx.lab.raw.get("prices", {}), policy=ctx.lab.raw.get("policy", {}))
    card.extras.update({"runs": [x.to_json() for x in cand.runs] if cand else [],
                        "ref_runs": [x.to_json() for x in ref.runs] if ref else []})
    batch.publish(card, path, write_agents_report)
    return card


def model_environment(ctx: Context, cand: Outcome | None, ref: Outcome | None) -> dict[str, Any]:
    """Which model served this grading (never its API key), and where its token counts came from."""
    if ctx.upstream is None:
        return {"model": ctx.lab.raw["model"].get("name"),
                "model_kind": "scripted stand-in (reference_systems/agents/policy_model.py)"}
    runs = [*(cand.runs if cand else []), *(ref.runs if ref else [])]
    estimated = sum(x.usage_estimated for x in runs)
    return {**ctx.upstream.describe(),
            "model_usage": "the server's `usage`" + (f", except {estimated} of {sum(x.model_calls for x in runs)} "
                                                     "completions without it, counted by the lab's word counter"
                                                     if estimated else "")}


def fault_seeds(profile: dict[str, Any], k: int) -> tuple[list[int], str]:
    if "seed" in profile:
        return [int(profile["seed"]) * 1000 + i for i in range(k)], "lab.toml"
    return [secrets.randbelow(2**31) for _ in range(k)], "fresh"


def grade(submission: str | list[tuple[str, Path]], out_dir: Path, dataset: str | None = None,
          profile: str = "quick", limits: Limits | None = None, hidden: Path | None = None,
          course: Path | None = None, model_url: str | None = None, model: str | None = None,
          model_prices: str | None = None) -> list[Scorecard]:
    """Grade a .ipynb, a .py, a folder of them, `reference`, or (name, path) pairs; scorecard.json + report.html
    each in `out_dir/<name>/`. `dataset` is accepted for the CLI's sake (the tasks are generated).
    `model_url`/`model`: a real OpenAI-compatible model in place of the scripted one (graders.agents.upstream);
    `model_prices`: "INPUT,OUTPUT" USD per million tokens over lab.toml [prices]."""
    overlay = open_overlay(hidden, "agents")
    private = overlay.lab_toml() if overlay else {}
    lab = load_lab("agents", private or None)
    if limits is not None:
        lab = replace(lab, limits=limits)
    if model_prices:
        lab = replace(lab, raw={**lab.raw, "prices": upstream.parse_prices(model_prices)})
    up = upstream.connect(model_url, model) if model_url else None
    if profile not in lab.task_profiles:
        raise SystemExit(f"lab 'agents' has no profile {profile!r}; choose one of {sorted(lab.task_profiles)}")
    run = lab.task_profiles[profile]
    spec = lab.raw["tasks"]
    task_list = make_tasks(int(spec["hidden_seed"]), int(run["n_tasks"]), list(spec["kinds"]), lab.raw["policy"])
    seeds, source = fault_seeds(run, int(run["k"]))
    ctx = Context(lab=lab, profile=profile, tasks=task_list, seeds=seeds, private="hidden_seed" in private.get("tasks", {}),
                  seed_source="--hidden lab.toml" if "seed" in private.get("profiles", {}).get(profile, {}) else source,
                  upstream=up)
    subs = submissions_in(submission, reference_path(lab))
    batch = Batch.open(lab, subs, Path(out_dir), course)
    log(f"{len(task_list)} tasks x {len(seeds)} fault seeds ({source}), {run['concurrency']} conversations at once")
    if up is not None:
        log(f"model: {up.model!r} at {up.url} (--model-url), not the scripted stand-in: scores are not deterministic")
    with Desk(lab.raw, up) as desk:
        ctx.desk = desk
        log("starting the reference agent ...")
        ctx.reference = start_host(reference_path(lab).read_text(), "reference", lab)
        try:
            return [grade_one(name, path, ctx, batch) for name, path in batch]
        finally:
            ctx.reference.cleanup()
