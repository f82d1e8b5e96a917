"""Run one scenario against a hosted submission: the overhead phase, then faults under load, ticking the detectors.

Each tick (1 s): scrape the assistant's and the backend's /metrics, drain the spans that finished,
hand all of it to the submission's detectors and keep their alerts with the tick's time; then switch
the faults the schedule says. Switching after the detectors' call means the telemetry of tick `start`
predates the fault: the first tick that can carry a symptom is the next one, and the grader records
when each fault was really switched on and when each tick's collection began, so a page counts only
from the first tick collected after the switch (records.Fault.reach_at). The detectors never see the
schedule, which is drawn afresh for every run (system.schedule): only telemetry.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from graders.engine.labconfig import LabConfig, ScenarioProfile
from graders.engine.sandbox import MAX_REPLY, OversizedReply, Worker, WorkerError, read_bounded
from graders.observability.host import HEALTH_PATH
from graders.observability.interface import Alert, SpanRecord
from graders.observability.records import TICK_S, Fault, Truth
from graders.observability.system import Backend, parse_metrics, schedule, workload
from graders.observability.traffic import Traffic, TrafficSpec

MAX_SPANS_PER_TICK = 20_000  # far above what ~8 requests/s make; a flood is cut, not stored
MAX_DETECTORS, MAX_ALERTS = 50, 50  # per tick: detectors read back, alerts per detector
SETTLE_S = 15.0  # at most this long for requests still being handled when a phase's load stops
# Query drift lives in the load generator, which switches on its own clock: half a tick after tick `start`,
# so the drain and the detectors' call of that tick (milliseconds) come before the first drifted question.
DRIFT_LAG_S = TICK_S / 2


def log(message: str) -> None:
    print(f"[observability] {message}", file=sys.stderr, flush=True)


@dataclass
class ScenarioRun:
    faults: list[Fault]
    run_end: float
    nonce: str = ""                                                  # the schedule's per-run draw (system.schedule)
    ticks: list[tuple[float, dict[str, list[Alert]]]] = field(default_factory=list)
    spans: list[SpanRecord] = field(default_factory=list)
    truth: Truth = field(default_factory=Truth)
    metrics_text: str = ""
    samples: list[list[Any]] = field(default_factory=list)           # [t, ms, ok, path, status]
    overhead_samples: list[list[Any]] = field(default_factory=list)
    detector_errors: dict[str, str] = field(default_factory=dict)    # first error per detector
    detector_seconds: dict[str, float] = field(default_factory=dict) # total observe() time per detector
    problems: list[str] = field(default_factory=list)


def _records(spans: Any, t0: float) -> list[SpanRecord]:
    """SpanRecords of drained spans; WorkerError when the submission's process sent something else."""
    if not isinstance(spans, list):
        raise WorkerError("the assistant's telemetry drain did not return a list of spans")
    out = []
    try:
        for s in spans[:MAX_SPANS_PER_TICK]:
            start, end = s.pop("start_ns"), s.pop("end_ns")
            out.append(SpanRecord(start=start / 1e9 - t0, end=(end or start) / 1e9 - t0, **s))
    except (AttributeError, KeyError, TypeError) as exc:
        raise WorkerError(f"the assistant's telemetry drain sent a malformed span ({type(exc).__name__}: {exc})") from None
    return out


def _get(worker: Worker, method: str, path: str, timeout_s: float) -> tuple[int, bytes]:
    """One bounded request to the submission's process (it could answer with gigabytes)."""
    try:
        return read_bounded(worker.client, method, path, MAX_REPLY, timeout=timeout_s)
    except OversizedReply:
        raise WorkerError(f"{method} {path} answered more than {MAX_REPLY >> 20} MiB") from None
    except httpx.TimeoutException:
        raise WorkerError(f"{method} {path} did not answer within {timeout_s:g} s") from None
    except httpx.HTTPError as exc:
        raise WorkerError(f"{method} {path} failed ({type(exc).__name__})") from None


def settle(worker: Worker, timeout_s: float = SETTLE_S) -> None:
    """Wait (bounded) until the assistant handles no request: the load generator has stopped, but requests it
    sent may still be running, with some of their spans and truth drained and the rest not. A phase drained
    after this holds whole requests. A request that never ends is the submission's; grading goes on."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            _, body = _get(worker, "GET", HEALTH_PATH, 5)
            if json.loads(body).get("in_flight", 0) <= 0:
                return
        except (WorkerError, ValueError, AttributeError, TypeError):
            return  # drain() says what is wrong with the process
        time.sleep(0.1)


def drain(worker: Worker, t0: float) -> tuple[list[SpanRecord], dict[str, Any], str]:
    """(the spans finished since the last drain, the host's ground truth, the /metrics text)."""
    _, body = _get(worker, "POST", "/__ailab__/telemetry", 10)
    try:
        drained = json.loads(body)
        truth = drained["truth"]
        spans = _records(drained["spans"], t0)
    except (ValueError, KeyError, TypeError):
        raise WorkerError("the assistant's telemetry drain did not answer {\"spans\": [...], \"truth\": {...}}") from None
    if not isinstance(truth, dict):
        raise WorkerError("the assistant's telemetry drain sent truth that is not an object")
    _, text = _get(worker, "GET", "/metrics", 5)
    return spans, truth, text.decode(errors="replace")


def _alerts(raw: Any) -> dict[str, list[Alert]]:
    """Every detector's alerts of one tick, as strings of bounded length and count."""
    if not isinstance(raw, dict):
        raise WorkerError("the detect call's alerts are not an object")
    alerts = {}
    for name, raised in list(raw.items())[:MAX_DETECTORS]:
        if not isinstance(raised, list):
            raise WorkerError(f"detector {str(name)[:80]!r}'s alerts are not a list")
        alerts[str(name)[:80]] = [Alert(str(a[0])[:80], str(a[1])[:80], str(a[2])[:200])
                                  for a in raised[:MAX_ALERTS] if isinstance(a, list) and len(a) == 3]
    return alerts


def detect(worker: Worker, payload: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """One tick of every detector; WorkerError when they hang, crash the process or answer nonsense."""
    try:
        status, raw = read_bounded(worker.client, "POST", "/__ailab__/detect", MAX_REPLY, json=payload,
                                   timeout=timeout_s)
        body = json.loads(raw)
    except httpx.TimeoutException:
        raise WorkerError(f"observe() did not return within {timeout_s:g} s (limits.call_s in lab.toml); "
                          "keep each tick's work small") from None
    except OversizedReply:
        raise WorkerError(f"the detectors answered more than {MAX_REPLY >> 20} MiB in one tick") from None
    except (httpx.HTTPError, ValueError) as exc:
        raise WorkerError(f"the assistant's process did not answer ({type(exc).__name__})") from None
    if status != 200 or not isinstance(body, dict) or "alerts" not in body:
        raise WorkerError(f"the detect call failed with HTTP {status}")
    body["alerts"] = _alerts(body["alerts"])
    for key in ("errors", "seconds"):
        if not isinstance(body.get(key), dict):
            body[key] = {}
    return body


def overhead_phase(worker: Worker, scenario: ScenarioProfile, workdir: Path) -> tuple[list[list[Any]], Truth]:
    """Latency samples of /ask and /ask_plain alternating, and the ground truth of every request so far
    (the scenario's scrape of cumulative counters includes these)."""
    queries, _ = workload()
    spec = TrafficSpec(url=worker.url, queries=queries, seconds=scenario.overhead_s, rate=scenario.rate,
                       users=scenario.users, t0=time.time(), label="overhead", alternate=True, seed=scenario.seed + 1)
    samples = Traffic(spec, workdir).start().wait()
    settle(worker)
    before = Truth()
    _, truth, _ = drain(worker, time.time())  # the scenario starts empty; these requests' spans are not scored
    before.extend(truth)
    return samples, before


def reach(faults: list[Fault], switched_at: dict[str, float], collected_at: list[tuple[float, float]],
          run_end: float) -> list[Fault]:
    """Each fault with `reach_at`: the first tick whose collection began after the fault was switched on
    (after the run when it never was: the scenario ended early, and no page can count for it)."""
    out = []
    for f in faults:
        on = switched_at.get(f"{f.name}@{f.start:g}")
        first = next((tick for tick, began in collected_at if on is not None and began >= on), run_end + TICK_S)
        out.append(replace(f, reach_at=first))
    return out


def transitions(faults: list[Fault], now: float, active: set[str]) -> tuple[list[str], list[Fault]]:
    """(names to switch off, faults to switch on) for the tick [now, now + 1) given the names now on. A fault of
    a later round is a new occurrence of the same name: its earlier one ends before it starts."""
    due = {f.name: f for f in faults if f.start <= now < f.end}
    return sorted(active - set(due)), [due[name] for name in sorted(set(due) - active)]


def switch(backend: Backend, faults: list[Fault], now: float, active: set[str], t0: float,
           switched_at: dict[str, float]) -> None:
    """Put the faults in the state the schedule says for [now, now + 1 tick), noting when each went on. The drift
    fault is the load generator's, which turns it on DRIFT_LAG_S after tick `start` by its own clock."""
    off, on = transitions(faults, now, active)
    for name in off:
        if name != "query_drift":
            backend.switch(name, False)
        active.discard(name)
    for f in on:
        if f.name != "query_drift":
            backend.switch(f.name, True)
        switched_at[f"{f.name}@{f.start:g}"] = f.start + DRIFT_LAG_S if f.name == "query_drift" else time.time() - t0
        active.add(f.name)


def run_scenario(worker: Worker, backend: Backend, lab: LabConfig, scenario: ScenarioProfile,
                 workdir: Path, nonce: str = "") -> ScenarioRun:
    faults, run_end = schedule(lab, scenario, nonce)
    run = ScenarioRun(faults, run_end, nonce)
    queries, drift_queries = workload()
    t0 = time.time() + 0.5
    spec = TrafficSpec(url=worker.url, queries=queries, seconds=run_end + 0.5, rate=scenario.rate, users=scenario.users,
                       t0=t0, label="scenario", drift_queries=drift_queries, seed=scenario.seed,
                       drift=[[f.start + DRIFT_LAG_S, f.end + DRIFT_LAG_S] for f in faults if f.name == "query_drift"])
    traffic = Traffic(spec, workdir).start()
    detectors_alive = True
    active: set[str] = set()
    switched_at: dict[str, float] = {}
    collected_at: list[tuple[float, float]] = []  # (tick, when its collection began), seconds since t0
    try:
        tick = 0
        while tick * TICK_S <= run_end:
            now = tick * TICK_S
            time.sleep(max(0.0, t0 + now - time.time()))
            tick += 1
            collected_at.append((now, time.time() - t0))
            try:
                spans, truth, text = drain(worker, t0)
            except WorkerError as exc:  # the submission's process is gone, wedged or answering nonsense
                run.problems.append(f"at t={now:.0f} s the assistant stopped answering ({exc}); "
                                    "the scenario ended early")
                break
            run.spans.extend(spans)
            run.truth.extend(truth)
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
                alerts = reply["alerts"]
                for name, err in list(reply["errors"].items())[:MAX_DETECTORS]:
                    run.detector_errors.setdefault(str(name)[:80], f"at t={now:.0f} s: {str(err)[:500]}")
                for name, secs in list(reply["seconds"].items())[:MAX_DETECTORS]:
                    if isinstance(secs, (int, float)):
                        run.detector_seconds[str(name)[:80]] = run.detector_seconds.get(str(name)[:80], 0.0) + secs
            run.ticks.append((now, alerts))
            switch(backend, faults, now, active, t0, switched_at)
            if tick % 10 == 0:
                firing = sorted({f"{n}:{a.component}" for n, al in alerts.items() for a in al})
                log(f"t={now:4.0f}/{run_end:.0f} s  faults on: {sorted(active) or '-'}  pages: {firing or '-'}")
    finally:
        run.faults = reach(faults, switched_at, collected_at, run_end)
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
            settle(worker)
            spans, truth, run.metrics_text = drain(worker, t0)
            run.spans.extend(spans)
            run.truth.extend(truth)
        except WorkerError:  # the process is gone: conformance uses what was collected
            pass
    return run
