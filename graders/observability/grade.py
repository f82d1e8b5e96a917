"""`ailab grade observability`: run a seeded fault scenario against each submission and score what it saw.

Per submission: a fresh backend (retriever, model server, fault injector) and the submission's own
sandboxed process hosting the assistant with its instrumentation and detectors. One request must
work on a healthy system; then an overhead phase (/ask and /ask_plain alternating under Locust),
then the scenario: warm-up, every fault in a seeded order under Locust traffic, detectors ticked
each second on scraped metrics and drained spans. Detection, root cause and time to detect are
scored from the pages against the schedule; conformance from the spans, the last scrape and the
ground truth the host recorded. The reference is graded by exactly this code.
"""
from __future__ import annotations

import json
import math
import secrets
import statistics
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import httpx

from graders.engine.batch import Batch
from graders.engine.hidden import open_overlay
from graders.engine.labconfig import LabConfig, Limits, ScenarioProfile, load_lab
from graders.engine.report_observability import write_observability_report
from graders.engine.scorecard import Scorecard, clean_metrics, environment
from graders.engine.submissions import open_submission, submissions_in
from graders.engine.sandbox import MAX_REPLY, OversizedReply, Worker, candidate_cpu_s, read_bounded
from graders.observability import conformance, detection
from graders.observability.host import HEALTH_PATH
from graders.observability.interface import ServiceConfig
from graders.observability.records import Page, Truth
from graders.observability.scenario import ScenarioRun, log, overhead_phase, run_scenario
from graders.observability.system import Backend, BackendError, blind_schedules
from graders.paths import REPO_ROOT

REFERENCE = REPO_ROOT / "reference_systems" / "observability" / "submission.py"
METRICS = ("detection_recall", "detection_precision", "mean_time_to_detect_s", "root_cause_accuracy",
           "telemetry_conformance", "instrumentation_overhead_ratio", "requests", "error_rate", "latency_p50_ms")
SMOKE_QUERY = "how long do I have to send back shoes I bought in Germany?"


def service_config(lab: LabConfig) -> ServiceConfig:
    return ServiceConfig(**lab.raw.get("service", {}))


def start_host(source: str, name: str, lab: LabConfig, backend_url: str) -> Worker:
    config = json.dumps(asdict(service_config(lab)))
    command = ["graders.observability.host", "--module", "candidate.py", "--port", "{port}", "--backend", backend_url,
               "--config", config]
    w = Worker(source, "", name=name, memory_mb=lab.limits.memory_mb, start_timeout_s=lab.limits.worker_start_s,
               command=command, health_path=HEALTH_PATH, cpu_s=candidate_cpu_s(name, lab))
    w.__enter__()
    return w


def smoke(w: Worker, lab: LabConfig) -> str | None:
    """None when one question gets an answer on a healthy system, else why not (for the candidate)."""
    try:
        status, body = read_bounded(w.client, "POST", "/ask", MAX_REPLY, json={"query": SMOKE_QUERY},
                                    timeout=lab.limits.check_s)
    except OversizedReply:
        return f"POST /ask answered more than {MAX_REPLY >> 20} MiB on a healthy system"
    except httpx.HTTPError as exc:
        return f"POST /ask did not answer within {lab.limits.check_s:g} s on a healthy system ({type(exc).__name__})"
    if status != 200:
        return (f"POST /ask failed on a healthy system (HTTP {status}: {body[:300].decode(errors='replace')}); "
                "the handler must return an Answer; see the assistant's output below")
    return None


def median_ms(samples: list[list[Any]], path: str) -> float:
    ok = [s[1] for s in samples if s[2] and s[3] == path]
    return statistics.median(ok) if ok else math.nan


def by_chance(d: detection.Detection, luck_quantile: float) -> str:
    """What the same page times score on schedules drawn blindly: the yardstick of the credit factor."""
    return (f"the same page times score {d.chance_precision:.2f} on average on schedules drawn blindly and "
            f"{d.luck_bar:.2f} on one in {round(1 / (1 - luck_quantile))}")


def gate_note(credit: float, d: detection.Detection, full_at: float, luck_quantile: float) -> str:
    """Why a part kept only part of its points: precision too close to what the same pages score by chance."""
    if credit >= 1.0 or d.recall == 0:
        return ""
    if credit == 0.0:
        return (f"; counted at 0 %: precision {d.precision:.2f} is no better than chance ({by_chance(d, luck_quantile)}),"
                " so the faults paged are worth nothing")
    return (f"; counted at {credit:.0%}: in proportion to precision {d.precision:.2f} above the luck bar "
            f"{d.luck_bar:.2f} (full credit at {full_at:g})")


def detect_score(card: Scorecard, lab: LabConfig, scenario: ScenarioProfile,
                 run: ScenarioRun) -> tuple[list[Page], detection.Detection]:
    """The four detection parts. Recall, root cause and time to detect are multiplied by the credit factor:
    precision above chance (docs/scoring.md), chance being what the same page times score on blindly drawn schedules."""
    parts, knobs = lab.raw["parts"], lab.raw["detection"]
    pages = detection.pages_from_ticks(run.ticks)
    d = detection.score_detection(run.faults, pages, scenario.grace_s, run.run_end,
                                  ticks=[t for t, _ in run.ticks if t >= scenario.warmup_s],
                                  blind=blind_schedules(lab, scenario, int(knobs["blind_draws"])),
                                  luck_quantile=float(knobs["luck_quantile"]))
    full_at, luck = float(knobs["credit_full_at"]), float(knobs["luck_quantile"])
    credit = detection.credit_factor(d, full_at)
    n = len(run.faults)
    missed = [r.fault.name for r in d.per_fault if not r.detected]
    card.add("detection_recall", d.recall * credit, parts["detection_recall"]["weight"],
             f"Task 2: {n - len(missed)}/{n} faults paged" + (f"; missed {', '.join(missed)}" if missed else "") +
             gate_note(credit, d, full_at, luck))
    p = parts["detection_precision"]
    early = (f" ({len(d.early_pages)} too early: before the fault's first symptom could reach the detectors)"
             if d.early_pages else "")
    card.add("detection_precision", detection.precision_fraction(d, p["full_at"]), p["weight"],
             "Task 2: no pages" if not pages else
             f"Task 2: {n - len(missed)} faults paged, {len(d.false_pages)} false pages{early}: precision "
             f"{d.precision:.2f}; {by_chance(d, luck)} (the luck bar: 0 points there), full points at {p['full_at']}")
    wrong = [f"{r.fault.name} blamed {r.blamed}" for r in d.per_fault if r.detected and not r.correct]
    card.add("root_cause_accuracy", d.root_cause_accuracy * credit, parts["root_cause_accuracy"]["weight"],
             f"Task 2: first page blamed the right component for {sum(r.correct for r in d.per_fault)}/{n} faults" +
             (f"; {', '.join(wrong)}" if wrong else "") + gate_note(credit, d, full_at, luck))
    p = parts["mean_time_to_detect"]
    mttd = d.mean_time_to_detect_s
    card.add("mean_time_to_detect",
             detection.time_to_detect_fraction(mttd, p["full_at_s"], p["zero_at_s"], d.recall) * credit, p["weight"],
             "Task 2: nothing detected" if math.isnan(mttd) else
             f"Task 2: {mttd:.1f} s from fault start to page on average over the {n - len(missed)}/{n} faults paged "
             f"(full points at <= {p['full_at_s']} s, times recall)" + gate_note(credit, d, full_at, luck))
    return pages, d


def score(card: Scorecard, lab: LabConfig, scenario: ScenarioProfile, run: ScenarioRun | None,
          overhead: list[list[Any]], before: Truth) -> dict[str, Any]:
    parts = lab.raw["parts"]
    extras: dict[str, Any] = {}
    if run is None:
        return extras
    checks = conformance.check_telemetry(run.spans, run.metrics_text, run.truth, service_config(lab), before=before)
    fraction = conformance.overall(checks)
    failed = [c for c in checks if c.fraction < 1]
    card.add("telemetry_conformance", fraction, parts["telemetry_conformance"]["weight"],
             f"Task 1: {sum(c.fraction == 1 for c in checks)}/{len(checks)} checks pass" +
             ("; " + "; ".join(f"{c.name}: {c.detail}" for c in failed[:4]) if failed else ""))
    pages, d = detect_score(card, lab, scenario, run)
    mttd = d.mean_time_to_detect_s
    p = parts["instrumentation_overhead"]
    ratio = median_ms(overhead, "/ask") / median_ms(overhead, "/ask_plain")
    card.add("instrumentation_overhead", detection.overhead_fraction(ratio, p["full_at_ratio"], p["zero_at_ratio"]),
             p["weight"], "Task 1: not measured (no successful requests)" if math.isnan(ratio) else
             f"Task 1: median latency {ratio:.3f}x with your instrumentation (full points at <= {p['full_at_ratio']}x)")
    scen = [s for s in run.samples if s[3] == "/ask"]
    ok = [s[1] for s in scen if s[2]]
    card.metrics = clean_metrics({
        "detection_recall": d.recall, "detection_precision": d.precision, "mean_time_to_detect_s": mttd,
        "root_cause_accuracy": d.root_cause_accuracy, "telemetry_conformance": fraction,
        "instrumentation_overhead_ratio": ratio, "requests": len(scen),
        "error_rate": (len(scen) - len(ok)) / len(scen) if scen else math.nan,
        "latency_p50_ms": statistics.median(ok) if ok else math.nan}, METRICS)
    for name, err in run.detector_errors.items():
        card.errors.append(f"detector {name} raised {err}")
    card.errors.extend(run.problems)
    extras.update(faults=[asdict(f) for f in run.faults], pages=[asdict(pg) for pg in pages], run_end=run.run_end,
                  grace_s=scenario.grace_s, latency=[s[:3] for s in scen], checks=[asdict(c) for c in checks],
                  per_fault=[detection.row(r) for r in d.per_fault], detector_seconds=run.detector_seconds,
                  chance={"precision": d.chance_precision, "luck_bar": d.luck_bar, "window_share": d.window_share,
                          "credit": detection.credit_factor(d, float(lab.raw["detection"]["credit_full_at"]))},
                  schedule_nonce=run.nonce)
    return extras


def grade_one(name: str, path: Path, lab: LabConfig, scenario: ScenarioProfile, batch: Batch,
              nonce: str | None = None) -> Scorecard:
    started = time.perf_counter()
    card = Scorecard(lab="observability", submission=name)
    backend = Backend(lab).start()
    workdir = Path(tempfile.mkdtemp(prefix="ailab-obs-"))
    w: Worker | None = None
    run: ScenarioRun | None = None
    overhead: list[list[Any]] = []
    before = Truth()
    extras: dict[str, Any] = {}
    try:
        w, why_not, _ = open_submission(path, card, lambda src: start_host(src, name, lab, backend.url), log,
                                        lab.notebook)
        if w is not None:
            log("waiting for the lab's backend (retriever + model server) ...")
            backend.wait_ready()
            why_not = smoke(w, lab) or ""
            if why_not:
                card.errors.append(why_not + "\n" + w.output_tail(800))
            else:
                log(f"{name}: overhead phase ({scenario.overhead_s:g} s) ...")
                overhead, before = overhead_phase(w, scenario, workdir)
                log(f"{name}: scenario ({scenario.rounds} round(s) of {len(lab.raw['faults'])} faults) ...")
                run = run_scenario(w, backend, lab, scenario, workdir, secrets.token_hex(8) if nonce is None else nonce)
        extras = score(card, lab, scenario, run, overhead, before)
    except BackendError as exc:
        card.errors.append(f"internal grader error: {exc} — the lab's own backend failed; grade again, and report "
                           "it if it repeats")
    except Exception as exc:  # noqa: BLE001 - a grader bug must not cost the rest of the batch its grades
        card.errors.append(f"internal grader error while grading this submission ({type(exc).__name__}: {exc}); "
                           "parts not yet scored get 0 — please report this with the submission attached")
    finally:
        if w is not None:
            if w.proc is not None and w.proc.poll() is not None:
                card.errors.append(f"the assistant's process exited (code {w.proc.returncode}); last output:\n"
                                   f"{w.output_tail(600)}")
            w.cleanup()
        backend.stop()
    batch.complete(card, why_not)
    card.duration_s = time.perf_counter() - started
    card.reference = {"metrics": {}, "note": "scores are absolute; the reference is graded by this same code"}
    card.environment = environment(profile=scenario.name, scenario=asdict(scenario), slo=asdict(service_config(lab)),
                                   schedule="private (--hidden)" if batch.private else "shipped",
                                   schedule_nonce=extras.get("schedule_nonce", ""))
    card.extras = extras
    batch.publish(card, path, write_observability_report)
    if "faults" in extras:  # the timeline behind the report, for interviewers who want to look closer
        timeline = {k: extras[k] for k in ("faults", "pages", "per_fault", "run_end", "grace_s", "checks")}
        (batch.out / card.slug / "timeline.json").write_text(json.dumps(timeline, indent=1, default=str))
    return card


def grade(submission: str | list[tuple[str, Path]], out_dir: Path, dataset: str | None = None,
          profile: str = "quick", limits: Limits | None = None, hidden: Path | None = None,
          course: Path | None = None, schedule_nonce: str | None = None) -> list[Scorecard]:
    """Grade a .ipynb, a .py, a folder of them, `reference`, or (name, path) pairs; scorecard.json +
    report.html in `out_dir/<name>/`. `dataset` is accepted for the CLI's sake (this lab's workload is
    built in; `hidden`'s lab.toml can give the fault schedule a private seed); `course` as in graders.rag.grade.
    Each submission's fault times and order are drawn with a fresh nonce (recorded in its scorecard's
    `environment.schedule_nonce`); `schedule_nonce` replays one draw instead, for every submission."""
    overlay = open_overlay(hidden, "observability")
    lab = load_lab("observability", overlay.lab_toml() if overlay else None)
    if limits is not None:
        lab = replace(lab, limits=limits)
    scenario = lab.scenario(profile)
    batch = Batch.open(lab, submissions_in(submission, REFERENCE), Path(out_dir), course)
    batch.private = bool(overlay and overlay.lab_toml())
    return [grade_one(name, path, lab, scenario, batch, schedule_nonce) for name, path in batch]
