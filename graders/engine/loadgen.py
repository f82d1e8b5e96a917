"""Drive one search endpoint with Locust (library mode) and return raw per-request samples.

Runs as its own process (`python -m graders.engine.loadgen SPEC.json OUT.json`) so gevent's
monkey-patching never touches the grader; `run_load()` is the grader-side wrapper. Samples come
from a request listener, not Locust's CSV (which drops the last partial second and rounds
percentiles). Only 127.0.0.1 is accepted as a target; every run is bounded in time.

With `workers=N` the load process is a Locust MasterRunner that starts N worker processes
(`python -m graders.engine.loadgen --worker SPEC.json PORT INDEX`, WorkerRunners connecting to the
master on 127.0.0.1). Locust's stats only carry aggregates to the master, so each worker buffers its
raw samples and sends them with a custom message ("ailab_samples") every second and when it stops.
"""
from __future__ import annotations

if __name__ == "__main__":  # the load process: gevent must patch the stdlib before anything else imports it
    import locust  # noqa: F401

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SAMPLES_MESSAGE = "ailab_samples"
WORKER_START_S = 60.0  # all workers must have connected to the master within this


class LoadError(RuntimeError):
    """The load generator itself failed (not the system under test)."""


def run_load(url: str, queries: list[str], *, seconds: float, users: int, spawn_rate: float, k: int,
             workdir: Path, label: str, workers: int = 0) -> dict[str, Any]:
    """Run one bounded Locust round against url/search; {"samples": [[t, ms, ok], ...], "seconds": ...}.

    workers=0 runs one local runner; workers=N > 0 runs Locust's distributed mode (a master plus N
    worker processes, all on 127.0.0.1) and adds "per_worker": {index: sample count} to the result.
    """
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"load tests only target 127.0.0.1; refusing {url}")
    if not queries:
        raise ValueError("a load test needs at least one query")
    if workers < 0:
        raise ValueError(f"workers must be 0 (one local runner) or more; got {workers}")
    spec = workdir / f"load-{label}.json"
    out = workdir / f"load-{label}.out.json"
    spec.write_text(json.dumps({"url": url, "queries": queries, "seconds": seconds, "users": users,
                                "spawn_rate": spawn_rate, "k": k, "label": label, "workers": workers}))
    log = workdir / f"load-{label}.log"
    with open(log, "wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "graders.engine.loadgen", str(spec), str(out)],
                                stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr, start_new_session=True)
    limit = seconds + 60 + (WORKER_START_S if workers else 0)
    deadline, shown = time.monotonic() + limit, 0
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
            shown = _echo_progress(log, shown)
        if proc.poll() is None:
            raise LoadError(f"the load generator did not stop within {limit:.0f} s")
    finally:
        if workers:  # the workers share the master's process group: none may outlive the round
            _kill_group(proc.pid)
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    _echo_progress(log, shown)
    if proc.returncode != 0 or not out.exists():
        tail = log.read_bytes()[-1500:].decode(errors="replace")
        raise LoadError(f"the load generator failed (exit code {proc.returncode}):\n{tail}")
    return dict(json.loads(out.read_text()))


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _echo_progress(log: Path, offset: int) -> int:
    """Copy the load process's progress lines to our stderr; returns how far the log was read."""
    data = log.read_bytes()[offset:]
    done = data.rfind(b"\n") + 1
    for line in data[:done].decode(errors="replace").splitlines():
        if line.startswith("  [load "):
            print(line, file=sys.stderr, flush=True)
    return offset + done


def _user_class(spec: dict[str, Any]) -> type:
    from locust import constant, task
    from locust.contrib.fasthttp import FastHttpUser

    queries, k = spec["queries"], spec["k"]
    counter = {"i": 0}

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

    return SearchUser


def _sample_listener(samples: list[list[Any]]) -> Any:
    def on_request(request_type: str, name: str, response_time: float, response_length: int,
                   exception: Exception | None = None, start_time: float = 0.0, **_: Any) -> None:
        samples.append([start_time, response_time, exception is None])

    return on_request


def _progress(spec: dict[str, Any], samples: list[list[Any]]) -> Any:
    import gevent

    started = gevent.get_hub().loop.now()

    def progress() -> None:
        while True:
            gevent.sleep(2)
            elapsed = gevent.get_hub().loop.now() - started
            print(f"  [load {spec['label']}] {elapsed:4.0f}/{spec['seconds']:.0f} s, {len(samples)} requests",
                  file=sys.stderr, flush=True)

    return gevent.spawn(progress)


def _read_spec(spec_path: str) -> dict[str, Any]:
    spec = dict(json.loads(Path(spec_path).read_text()))
    if not spec["url"].startswith("http://127.0.0.1:"):
        raise SystemExit("load tests only target 127.0.0.1")
    return spec


def _main(spec_path: str, out_path: str) -> None:
    import gevent
    from locust import events
    from locust.env import Environment

    spec = _read_spec(spec_path)
    if spec.get("workers"):
        _master(spec_path, spec, out_path)
        return
    samples: list[list[Any]] = []
    env = Environment(user_classes=[_user_class(spec)], events=events)
    env.events.request.add_listener(_sample_listener(samples))
    runner = env.create_local_runner()
    runner.start(spec["users"], spawn_rate=spec["spawn_rate"])
    ticker = _progress(spec, samples)
    gevent.spawn_later(spec["seconds"], runner.quit)
    runner.greenlet.join()
    ticker.kill()
    Path(out_path).write_text(json.dumps({"samples": samples, "seconds": spec["seconds"]}))


def _master(spec_path: str, spec: dict[str, Any], out_path: str) -> None:
    """The distributed round: start the workers, run them for spec["seconds"], merge their samples."""
    import gevent
    from locust import events
    from locust.env import Environment

    samples: list[list[Any]] = []
    per_worker: dict[str, int] = {}

    def on_samples(environment: Any, msg: Any, **_: Any) -> None:
        index = str(msg.data["worker"])
        per_worker[index] = per_worker.get(index, 0) + len(msg.data["samples"])
        samples.extend(msg.data["samples"])

    env = Environment(user_classes=[_user_class(spec)], events=events)
    runner = env.create_master_runner(master_bind_host="127.0.0.1", master_bind_port=0)
    runner.register_message(SAMPLES_MESSAGE, on_samples)
    # Same process group as this master (no new session): run_load kills the whole group at the end.
    children = [subprocess.Popen([sys.executable, "-m", "graders.engine.loadgen", "--worker", spec_path,
                                  str(runner.server.port), str(index)], stdin=subprocess.DEVNULL)
                for index in range(spec["workers"])]
    try:
        waited = 0.0
        while runner.worker_count < spec["workers"]:
            if waited > WORKER_START_S or any(c.poll() is not None for c in children):
                raise SystemExit(f"only {runner.worker_count} of {spec['workers']} Locust workers connected")
            gevent.sleep(0.1)
            waited += 0.1
        runner.start(spec["users"], spawn_rate=spec["spawn_rate"])
        ticker = _progress(spec, samples)
        gevent.sleep(spec["seconds"])
        runner.stop()  # returns once every worker reported stopped; its final samples arrive before that
        ticker.kill()
        runner.quit()
        for child in children:
            child.wait(timeout=10)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    Path(out_path).write_text(json.dumps({"samples": samples, "seconds": spec["seconds"],
                                          "workers": spec["workers"], "per_worker": per_worker}))


def _worker(spec_path: str, port: int, index: int) -> None:
    """One load-generating WorkerRunner; ships its raw samples to the master in batches."""
    import gevent
    from locust import events
    from locust.env import Environment

    spec = _read_spec(spec_path)
    samples: list[list[Any]] = []
    env = Environment(user_classes=[_user_class(spec)], events=events)
    env.events.request.add_listener(_sample_listener(samples))
    runner = env.create_worker_runner(master_host="127.0.0.1", master_port=port)

    def flush(**_: Any) -> None:
        if samples:
            batch = samples[:]
            del samples[:len(batch)]
            runner.send_message(SAMPLES_MESSAGE, {"worker": index, "samples": batch})

    def flusher() -> None:
        while True:
            gevent.sleep(1)
            flush()

    # test_stop fires inside the worker's stop(), before it reports "client_stopped" on the same socket.
    env.events.test_stop.add_listener(flush)
    gevent.spawn(flusher)
    # A bound of its own, should the master vanish without a quit message.
    gevent.spawn_later(spec["seconds"] + WORKER_START_S + 60, lambda: os._exit(3))
    runner.greenlet.join()


if __name__ == "__main__":
    if sys.argv[1] == "--worker":
        _worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        _main(sys.argv[1], sys.argv[2])
