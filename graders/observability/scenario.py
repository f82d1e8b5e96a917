"""Run one scenario against a hosted submission: the overhead phase, then faults under load, ticking the detectors.

Each tick (1 s): switch the faults the schedule says, scrape the assistant's and the backend's
/metrics, drain the spans that finished, hand all of it to the submission's detectors, and keep
their alerts with the tick's time. The detectors never see the schedule: only telemetry.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from graders.engine.labconfig import LabConfig, ScenarioProfile
from graders.engine.sandbox import Worker, WorkerError
from graders.observability.interface import Alert, SpanRecord
from graders.observability.records import Fault, Truth
from graders.observability.system import Backend, parse_metrics, schedule, workload
from graders.observability.traffic import Traffic, TrafficSpec

TICK_S = 1.0


def log(message: str) -> None:
    print(f"[observability] {message}", file=sys.stderr, flush=True)


@dataclass
class ScenarioRun:
    faults: list[Fault]
    run_end: float
    ticks: list[tuple[float, dict[str, list[Alert]]]] = field(default_factory=list)
    spans: list[SpanRecord] = field(default_factory=list)
    truth: Truth = field(default_factory=Truth)
    metrics_text: str = ""
    samples: list[list[Any]] = field(default_factory=list)           # [t, ms, ok, path, status]
    overhead_samples: list[list[Any]] = field(default_factory=list)
    detector_errors: dict[str, str] = field(default_factory=dict)    # first error per detector
    detector_seconds: dict[str, float] = field(default_factory=dict) # total observe() time per detector
    problems: list[str] = field(default_factory=list)


def _records(spans: list[dict[str, Any]], t0: float) -> list[SpanRecord]:
    out = []
    for s in spans:
        start, end = s.pop("start_ns"), s.pop("end_ns")
        out.append(SpanRecord(start=start / 1e9 - t0, end=(end or start) / 1e9 - t0, **s))
    return out


def detect(worker: Worker, payload: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """One tick of every detector; WorkerError when they hang, crash the process or answer nonsense."""
    try:
        reply = worker.client.post("/__ailab__/detect", json=payload, timeout=timeout_s)
        body = reply.json()
    except httpx.TimeoutException:
        raise WorkerError(f"observe() did not return within {timeout_s:g} s (limits.call_s in lab.toml); "
                          "keep each tick's work small") from None
    except (httpx.HTTPError, ValueError) as exc:
        raise WorkerError(f"the assistant's process did not answer ({type(exc).__name__})") from None
    if reply.status_code != 200 or not isinstance(body, dict) or "alerts" not in body:
        raise WorkerError(f"the detect call failed with HTTP {reply.status_code}")
    return body


def overhead_phase(worker: Worker, scenario: ScenarioProfile, workdir: Path) -> tuple[list[list[Any]], Truth]:
    """Latency samples of /ask and /ask_plain alternating, and the ground truth of every request so far
    (the scenario's scrape of cumulative counters includes these)."""
    queries, _ = workload()
    spec = TrafficSpec(url=worker.url, queries=queries, seconds=scenario.overhead_s, rate=scenario.rate,
                       users=scenario.users, t0=time.time(), label="overhead", alternate=True, seed=scenario.seed + 1)
    samples = Traffic(spec, workdir).start().wait()
    before = Truth()
    before.extend(worker.client.post("/__ailab__/telemetry", timeout=10).json()["truth"])  # the scenario starts empty
    return samples, before


def run_scenario(worker: Worker, backend: Backend, lab: LabConfig, scenario: ScenarioProfile,
                 workdir: Path) -> ScenarioRun:
    faults, run_end = schedule(lab, scenario)
    run = ScenarioRun(faults, run_end)
    queries, drift_queries = workload()
    t0 = time.time() + 0.5
    spec = TrafficSpec(url=worker.url, queries=queries, seconds=run_end + 0.5, rate=scenario.rate, users=scenario.users,
                       t0=t0, label="scenario", drift_queries=drift_queries, seed=scenario.seed,
                       drift=[[f.start, f.end] for f in faults if f.name == "query_drift"])
    traffic = Traffic(spec, workdir).start()
    detectors_alive = True
    active: set[str] = set()
    try:
        tick = 0
        while tick * TICK_S <= run_end:
            now = tick * TICK_S
            time.sleep(max(0.0, t0 + now - time.time()))
            tick += 1
            for f in faults:  # the drift fault lives in the load generator; the others in the backend
                should = f.start <= now < f.end
                if should != (f.name in active) and f.name != "query_drift":
                    backend.switch(f.name, should)
                (active.add if should else active.discard)(f.name)
            try:
                drained = worker.client.post("/__ailab__/telemetry", timeout=10).json()
                text = worker.client.get("/metrics", timeout=5).text
            except Exception as exc:  # noqa: BLE001 - the submission's process is gone or wedged
                run.problems.append(f"at t={now:.0f} s the assistant stopped answering ({type(exc).__name__}); "
                                    "the scenario ended early")
                break
            spans = _records(drained["spans"], t0)
            run.spans.extend(spans)
            run.truth.extend(drained["truth"])
            run.metrics_text = text
            assistant, bad = parse_metrics(text)
            if bad and not any("/metrics" in p for p in run.problems):
                run.problems.append(f"/metrics is not valid Prometheus text ({bad}); detectors got what parsed")
            backend_samples, _ = parse_metrics(backend.metrics_text())
            alerts: dict[str, list[Alert]] = {}
            if detectors_alive:
                payload = {"now": now, "metrics": {"assistant": assistant, "backend": backend_samples},
                           "spans": [s.__dict__ for s in spans]}
                try:
                    reply = detect(worker, payload, lab.limits.call_s)
                except WorkerError as exc:
                    run.problems.append(f"at t={now:.0f} s the detectors stopped: {exc}")
                    detectors_alive = False
                    reply = {"alerts": {}, "errors": {}, "seconds": {}}
                for name, raised in reply["alerts"].items():
                    alerts[name] = [Alert(k, c, d) for k, c, d in raised]
                for name, err in reply["errors"].items():
                    run.detector_errors.setdefault(name, f"at t={now:.0f} s: {err}")
                for name, secs in reply["seconds"].items():
                    run.detector_seconds[name] = run.detector_seconds.get(name, 0.0) + secs
            run.ticks.append((now, alerts))
            if tick % 10 == 0:
                firing = sorted({f"{n}:{a.component}" for n, al in alerts.items() for a in al})
                log(f"t={now:4.0f}/{run_end:.0f} s  faults on: {sorted(active) or '-'}  pages: {firing or '-'}")
    finally:
        for name in sorted(active - {"query_drift"}):
            try:
                backend.switch(name, False)
            except Exception:  # noqa: BLE001 - best effort; the backend is stopped next anyway
                pass
        try:
            run.samples = traffic.wait()
        except Exception as exc:  # noqa: BLE001
            traffic.stop()
            run.problems.append(f"the load generator failed: {exc}")
        try:  # requests that finished after the last tick
            drained = worker.client.post("/__ailab__/telemetry", timeout=10).json()
            run.spans.extend(_records(drained["spans"], t0))
            run.truth.extend(drained["truth"])
            run.metrics_text = worker.client.get("/metrics", timeout=5).text
        except Exception:  # noqa: BLE001 - the process is gone: conformance uses what was collected
            pass
    return run
