"""User traffic for the support assistant: Locust (library mode) in its own process, 127.0.0.1 only.

`Traffic(...).start()` launches `python -m graders.observability.traffic SPEC OUT` and returns at
once, so the grader can switch faults and tick detectors while the load runs; `wait()` returns the
raw per-request samples `[t, ms, ok, path, status]` (t in seconds since `t0`). Users pace themselves
(`constant_pacing`) so the offered rate stays near `rate` while the service is healthy. During a
`drift` window every user asks from the drift pool instead: that is the query-drift fault. In
`alternate` mode each user alternates /ask and /ask_plain (the instrumentation-overhead phase).
"""
from __future__ import annotations

if __name__ == "__main__":  # the load process: gevent must patch the stdlib before anything else imports it
    import locust  # noqa: F401

import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from graders.engine.loadgen import LoadError, _echo_progress


@dataclass
class TrafficSpec:
    url: str
    queries: list[str]
    seconds: float
    rate: float
    users: int
    t0: float                                   # time.time() that sample times and drift windows count from
    label: str = "scenario"
    drift_queries: list[str] = field(default_factory=list)
    drift: list[list[float]] = field(default_factory=list)   # [[start, end], ...] seconds since t0
    alternate: bool = False
    seed: int = 0


class Traffic:
    def __init__(self, spec: TrafficSpec, workdir: Path) -> None:
        if not spec.url.startswith("http://127.0.0.1:"):
            raise ValueError(f"load tests only target 127.0.0.1; refusing {spec.url}")
        if not spec.queries or spec.rate <= 0 or spec.users < 1:
            raise ValueError("traffic needs queries, a positive rate and at least one user")
        self.spec, self.workdir = spec, workdir
        self.out = workdir / f"traffic-{spec.label}.json"
        self.log = workdir / f"traffic-{spec.label}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.shown = 0

    def start(self) -> Traffic:
        spec_path = self.workdir / f"traffic-{self.spec.label}.spec.json"
        spec_path.write_text(json.dumps(asdict(self.spec)))
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "graders.observability.traffic", str(spec_path),
                                          str(self.out)], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         start_new_session=True)
        return self

    def echo(self) -> None:
        self.shown = _echo_progress(self.log, self.shown)

    def wait(self) -> list[list[Any]]:
        assert self.proc is not None, "start() first"
        deadline = time.monotonic() + self.spec.seconds + 60
        while self.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
            self.echo()
        if self.proc.poll() is None:
            self.stop()
            raise LoadError(f"the load generator did not stop within {self.spec.seconds + 60:.0f} s")
        self.echo()
        if self.proc.returncode != 0 or not self.out.exists():
            tail = self.log.read_bytes()[-1500:].decode(errors="replace")
            raise LoadError(f"the load generator failed (exit code {self.proc.returncode}):\n{tail}")
        return list(json.loads(self.out.read_text())["samples"])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _main(spec_path: str, out_path: str) -> None:
    import random

    import gevent
    from locust import constant_pacing, events, task
    from locust.contrib.fasthttp import FastHttpUser
    from locust.env import Environment

    spec = TrafficSpec(**json.loads(Path(spec_path).read_text()))
    if not spec.url.startswith("http://127.0.0.1:"):
        raise SystemExit("load tests only target 127.0.0.1")
    rng = random.Random(spec.seed)
    samples: list[list[Any]] = []

    def drifting(t: float) -> bool:
        return bool(spec.drift_queries) and any(a <= t < b for a, b in spec.drift)

    class AssistantUser(FastHttpUser):
        host = spec.url
        wait_time = constant_pacing(spec.users / spec.rate)
        network_timeout = 30.0
        connection_timeout = 5.0

        def on_start(self) -> None:
            self.turn = 0

        @task
        def ask(self) -> None:
            t = time.time() - spec.t0
            pool = spec.drift_queries if drifting(t) else spec.queries
            path = "/ask_plain" if spec.alternate and self.turn % 2 else "/ask"
            self.turn += 1
            started = time.perf_counter()
            with self.client.post(path, json={"query": rng.choice(pool)}, catch_response=True) as r:
                ms = (time.perf_counter() - started) * 1e3
                samples.append([round(t, 4), round(ms, 3), r.status_code == 200, path, r.status_code])
                if r.status_code != 200:
                    r.failure(f"HTTP {r.status_code}")

    env = Environment(user_classes=[AssistantUser], events=events)
    runner = env.create_local_runner()
    runner.start(spec.users, spawn_rate=spec.users * 4)
    started = gevent.get_hub().loop.now()

    def progress() -> None:
        while True:
            gevent.sleep(4)
            elapsed = gevent.get_hub().loop.now() - started
            errors = sum(1 for s in samples if not s[2])
            print(f"  [load {spec.label}] {elapsed:4.0f}/{spec.seconds:.0f} s, {len(samples)} requests, "
                  f"{errors} failed", file=sys.stderr, flush=True)

    ticker = gevent.spawn(progress)
    gevent.spawn_later(spec.seconds, runner.quit)
    runner.greenlet.join()
    ticker.kill()
    Path(out_path).write_text(json.dumps({"samples": samples}))


if __name__ == "__main__":
    _main(sys.argv[1], sys.argv[2])
