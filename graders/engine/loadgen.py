"""Drive one search endpoint with Locust (library mode) and return raw per-request samples.

Runs as its own process (`python -m graders.engine.loadgen SPEC.json OUT.json`) so gevent's
monkey-patching never touches the grader; `run_load()` is the grader-side wrapper. Samples come
from a request listener, not Locust's CSV (which drops the last partial second and rounds
percentiles). Only 127.0.0.1 is accepted as a target; every run is bounded in time.
"""
from __future__ import annotations

if __name__ == "__main__":  # the load process: gevent must patch the stdlib before anything else imports it
    import locust  # noqa: F401

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


class LoadError(RuntimeError):
    """The load generator itself failed (not the system under test)."""


def run_load(url: str, queries: list[str], *, seconds: float, users: int, spawn_rate: float, k: int,
             workdir: Path, label: str) -> dict[str, Any]:
    """Run one bounded Locust round against url/search; {"samples": [[t, ms, ok], ...], "seconds": ...}."""
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"load tests only target 127.0.0.1; refusing {url}")
    if not queries:
        raise ValueError("a load test needs at least one query")
    spec = workdir / f"load-{label}.json"
    out = workdir / f"load-{label}.out.json"
    spec.write_text(json.dumps({"url": url, "queries": queries, "seconds": seconds, "users": users,
                                "spawn_rate": spawn_rate, "k": k, "label": label}))
    log = workdir / f"load-{label}.log"
    with open(log, "wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "graders.engine.loadgen", str(spec), str(out)],
                                stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr, start_new_session=True)
    deadline, shown = time.monotonic() + seconds + 60, 0
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
        shown = _echo_progress(log, shown)
    if proc.poll() is None:
        proc.kill()
        proc.wait()
        raise LoadError(f"the load generator did not stop within {seconds + 60:.0f} s")
    _echo_progress(log, shown)
    if proc.returncode != 0 or not out.exists():
        tail = log.read_bytes()[-1500:].decode(errors="replace")
        raise LoadError(f"the load generator failed (exit code {proc.returncode}):\n{tail}")
    return dict(json.loads(out.read_text()))


def _echo_progress(log: Path, offset: int) -> int:
    """Copy the load process's progress lines to our stderr; returns how far the log was read."""
    data = log.read_bytes()[offset:]
    done = data.rfind(b"\n") + 1
    for line in data[:done].decode(errors="replace").splitlines():
        if line.startswith("  [load "):
            print(line, file=sys.stderr, flush=True)
    return offset + done


def _main(spec_path: str, out_path: str) -> None:
    import gevent
    from locust import constant, events, task
    from locust.contrib.fasthttp import FastHttpUser
    from locust.env import Environment

    spec = json.loads(Path(spec_path).read_text())
    if not spec["url"].startswith("http://127.0.0.1:"):
        raise SystemExit("load tests only target 127.0.0.1")
    queries, k = spec["queries"], spec["k"]
    counter = {"i": 0}
    samples: list[list[Any]] = []

    class SearchUser(FastHttpUser):
        host = spec["url"]
        wait_time = constant(0)

        @task
        def search(self) -> None:
            query = queries[counter["i"] % len(queries)]
            counter["i"] += 1
            with self.client.post("/search", json={"query": query, "k": k}, catch_response=True) as r:
                if r.status_code != 200 or not r.json().get("ok"):
                    r.failure(f"search failed: {r.text[:200]}")

    def on_request(request_type: str, name: str, response_time: float, response_length: int,
                   exception: Exception | None = None, start_time: float = 0.0, **_: Any) -> None:
        samples.append([start_time, response_time, exception is None])

    env = Environment(user_classes=[SearchUser], events=events)
    env.events.request.add_listener(on_request)
    runner = env.create_local_runner()
    runner.start(spec["users"], spawn_rate=spec["spawn_rate"])
    started = gevent.get_hub().loop.now()

    def progress() -> None:
        while True:
            gevent.sleep(2)
            elapsed = gevent.get_hub().loop.now() - started
            print(f"  [load {spec['label']}] {elapsed:4.0f}/{spec['seconds']:.0f} s, {len(samples)} requests",
                  file=sys.stderr, flush=True)

    ticker = gevent.spawn(progress)
    gevent.spawn_later(spec["seconds"], runner.quit)
    runner.greenlet.join()
    ticker.kill()
    Path(out_path).write_text(json.dumps({"samples": samples, "seconds": spec["seconds"]}))


if __name__ == "__main__":
    _main(sys.argv[1], sys.argv[2])
