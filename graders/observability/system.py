"""The system under observation, from the grader's side: start the backend, switch faults, scrape, build the schedule.

The backend (`reference_systems.observability.backend`) is the grader's own process, one per graded
submission so that no fault, cache or leaked memory carries over. Its fault switch needs a token
that only the grader holds (sent on the backend's stdin), so a submission that finds the port still
cannot read or change the faults.
"""
from __future__ import annotations

import math
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from graders.engine.labconfig import LabConfig, ScenarioProfile
from graders.engine.sandbox import _die_with_parent, free_port, scrubbed_env
from graders.observability.records import TICK_S, Fault


class BackendError(RuntimeError):
    """The lab's own backend failed: a grader problem, not the submission's."""


class Backend:
    def __init__(self, lab: LabConfig, start_timeout_s: float = 180.0) -> None:
        self.lab = lab
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = secrets.token_hex(16)
        self.start_timeout_s = start_timeout_s
        self.scratch = Path(tempfile.mkdtemp(prefix="ailab-backend-"))
        self.client = httpx.Client(base_url=self.url, timeout=10)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Backend:
        """Launch without waiting; `wait_ready()` blocks until it answers."""
        self.log = open(self.scratch / "backend.log", "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "reference_systems.observability.backend", "--port",
                                      str(self.port)], cwd=self.scratch, env=scrubbed_env(self.scratch),
                                     stdin=subprocess.PIPE, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True, preexec_fn=_die_with_parent)
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{self.token}\n".encode())
        self.proc.stdin.close()
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise BackendError(f"the lab's backend exited while starting:\n{self.tail()}")
            try:
                if self.client.get("/health", timeout=2).json().get("ok"):
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.3)
        raise BackendError(f"the lab's backend did not start within {self.start_timeout_s:.0f} s:\n{self.tail()}")

    def switch(self, fault: str, active: bool) -> None:
        reply = self.client.post("/faults", json={"token": self.token, "fault": fault, "active": active})
        if reply.status_code != 200:
            raise BackendError(f"switching {fault} failed: HTTP {reply.status_code} {reply.text[:200]}")

    def metrics_text(self) -> str:
        return self.client.get("/metrics", timeout=5).text

    def tail(self, limit: int = 1500) -> str:
        path = self.scratch / "backend.log"
        return path.read_bytes()[-limit:].decode(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if hasattr(self, "log"):
            self.log.close()
        self.client.close()


def schedule(lab: LabConfig, scenario: ScenarioProfile, nonce: str = "") -> tuple[list[Fault], float]:
    """Every fault once per round after the warm-up, at drawn times in a drawn order; (faults, when the scenario ends).

    The profile fixes the run's length, `warmup_s + n * (fault_s + gap_s)` for n faults, and so the share of it
    inside fault windows (what chance precision is). What is drawn, from `seed` and `nonce`, is the order and
    the times: the n faults are laid on a circle as long as the run after the warm-up, with gaps of at least
    lab.toml `[schedule] min_gap_fraction` of `gap_s` and the rest of the quiet time spread at random (a
    uniform composition in whole seconds); the circle is cut at a random point of a gap, one piece of that gap
    lengthening the warm-up and the other ending the run. So every second after the warm-up is about as likely
    to lie in a fault window as any other (a little likelier next to the warm-up and the end: chance precision
    is measured against such draws, see blind_schedules). The grader draws a fresh nonce per run, so no start
    time can be read from this repository; an empty nonce gives the seed's own draw (tests, replays)."""
    catalogue = lab.raw["faults"]
    rng = random.Random(f"observability-schedule:{scenario.seed}:{nonce}")
    names: list[str] = []
    for _ in range(scenario.rounds):
        shuffled = sorted(catalogue)
        rng.shuffle(shuffled)
        names += shuffled
    n = len(names)
    min_gap = max(math.ceil(scenario.gap_s * float(lab.raw.get("schedule", {}).get("min_gap_fraction", 1.0))),
                  math.ceil(scenario.grace_s) + 1)
    slack = max(0, round(n * (scenario.gap_s - min_gap)))
    cuts = sorted(rng.sample(range(slack + n - 1), n - 1))  # stars and bars: n parts adding up to `slack`
    gaps = [min_gap + b - a - 1 for a, b in zip([-1, *cuts], [*cuts, slack + n - 1])]
    # the cut: a gap, and how much of it ends the run (enough for the last window's grace), uniform over all
    cut_at = [(i, tail) for i, g in enumerate(gaps) for tail in range(math.ceil(scenario.grace_s), g + 1)]
    last, tail = rng.choice(cut_at)
    faults, t = [], scenario.warmup_s + gaps[last] - tail
    for k in range(n):
        i = (last + 1 + k) % n
        faults.append(Fault(names[k], str(catalogue[names[k]]["component"]), t, t + scenario.fault_s,
                            reach_at=t + TICK_S))
        t += scenario.fault_s + gaps[i]
    return faults, scenario.warmup_s + n * (scenario.fault_s + scenario.gap_s)


def blind_schedules(lab: LabConfig, scenario: ScenarioProfile, draws: int) -> list[list[Fault]]:
    """`draws` schedules drawn as the real one is but with fixed nonces: what a detector that knows this file and
    nothing else could expect. Page times scored against them give chance precision (detection.score_detection)."""
    return [schedule(lab, scenario, f"blind:{i}")[0] for i in range(draws)]


def workload() -> tuple[list[str], list[str]]:
    """(everyday queries, the drift topic's queries) from support-kb: order-status questions are the drift topic."""
    from graders.datasets.embedded import support_kb

    ds = support_kb()
    texts = [q for split in ("dev", "test") for q in ds.splits[split].queries.values()]
    drift = [q for q in texts if q.startswith(("order status", "my order says")) or q.endswith(" meaning")]
    normal = [q for q in texts if q not in set(drift)]
    rng = random.Random("observability-workload")
    return rng.sample(normal, min(80, len(normal))), drift


def parse_metrics(text: str) -> tuple[list[list[Any]], str | None]:
    """[[name, labels, value], ...] from Prometheus text; (samples so far, why parsing stopped) on bad input."""
    from prometheus_client.parser import text_string_to_metric_families

    out: list[list[Any]] = []
    try:
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                out.append([s.name, dict(s.labels), float(s.value)])
    except Exception as exc:  # noqa: BLE001 - the candidate's exposition is input, not our bug
        return out, f"{type(exc).__name__}: {exc}"
    return out, None
