"""Drive one search endpoint with Locust (library mode) and return raw per-request samples.

Runs as its own process (`python -m graders.engine.loadgen SPEC.json OUT.json`) so gevent's
monkey-patching never touches the grader; `run_load()` is the grader-side wrapper. Samples come
from a request listener, not Locust's CSV (which drops the last partial second and rounds
percentiles). Only 127.0.0.1 is accepted as a target; every run is bounded in time.

With `workers=N` the load process is a Locust MasterRunner that starts N worker processes
(`python -m graders.engine.loadgen --worker SPEC.json PORT INDEX`, WorkerRunners connecting to the
master on 127.0.0.1). Locust's stats only carry aggregates to the master, so each worker buffers its
raw samples and sends them with a custom message ("ailab_samples") every second and when it stops.

With `stream=True` the queries are a stream, not a pool: each text is sent at most once (no cycling; a user
stops when the stream runs out), each sample grows to [t, ms, ok, index, top_ids] (the query's index in the
list and the doc ids the reply ranked, so a grader can check what came back under load), and the result
says how far the stream was consumed ("next"), so the next round can go on from there. Distributed workers
take every N-th query (worker i: i, i + N, ...), so no text is sent twice across workers either.
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
MAX_ID_CHARS = 200     # a doc id recorded from a reply (stream mode) is cut to this: replies are untrusted


class LoadError(RuntimeError):
    """The load generator itself failed (not the system under test)."""


def run_load(url: str, queries: list[str], *, seconds: float, users: int, spawn_rate: float, k: int,
             workdir: Path, label: str, workers: int = 0, stream: bool = False) -> dict[str, Any]:
    """Run one bounded Locust round against url/search; {"samples": [[t, ms, ok], ...], "seconds": ...}.

    workers=0 runs one local runner; workers=N > 0 runs Locust's distributed mode (a master plus N
    worker processes, all on 127.0.0.1) and adds "per_worker": {index: sample count} to the result.
    stream=True sends each query at most once, in order; samples are then [t, ms, ok, index, top_ids]
    and "next" is the index the next round should start from (every query before it was sent or skipped).
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
                                "spawn_rate": spawn_rate, "k": k, "label": label, "workers": workers,
                                "stream": stream}))
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


class Cursor:
    """Which query a user sends next: cycling through a pool, or once each through a stream (this process
    takes indices first, first + step, ...); `next` is the stream index after the last one handed out."""

    def __init__(self, n: int, stream: bool, first: int = 0, step: int = 1) -> None:
        self.n, self.stream, self.i, self.step = n, stream, first, step

    def take(self) -> int | None:
        if self.stream and self.i >= self.n:
            return None
        i, self.i = self.i, self.i + self.step
        return i if self.stream else i % self.n

    @property
    def next(self) -> int:
        return min(self.i, self.n)


def _top_ids(body: Any) -> list[str]:
    """The doc ids of a /search reply, best first; [] for anything that is not a ranked list."""
    hits = body.get("result") if isinstance(body, dict) else None
    if not isinstance(hits, list):
        return []
    return [str(h[0])[:MAX_ID_CHARS] for h in hits if isinstance(h, list) and h]


def _user_class(spec: dict[str, Any], cursor: Cursor) -> type:
    from locust import constant, task
    from locust.contrib.fasthttp import FastHttpUser
    from locust.exception import StopUser

    queries, k, stream = spec["queries"], spec["k"], bool(spec.get("stream"))

    class SearchUser(FastHttpUser):
        host = spec["url"]
        wait_time = constant(0)

        @task
        def search(self) -> None:
            i = cursor.take()
            if i is None:
                raise StopUser()
            request = {"i": i, "ids": []}  # the request listener reads it back through Locust's context
            with self.client.post("/search", json={"query": queries[i], "k": k}, catch_response=True,
                                  context={"ailab": request}) as r:
                try:
                    body = r.json() if r.status_code == 200 else None
                except ValueError:  # not JSON: a failed search, not a crashed user
                    body = None
                if not isinstance(body, dict) or not body.get("ok"):
                    r.failure(f"search failed: {(r.text or '')[:200]}")
                elif stream:
                    request["ids"] = _top_ids(body)[:k]

    return SearchUser


def _sample_listener(samples: list[list[Any]], stream: bool = False) -> Any:
    def on_request(request_type: str, name: str, response_time: float, response_length: int,
                   exception: Exception | None = None, start_time: float = 0.0, context: Any = None,
                   **_: Any) -> None:
        sample = [start_time, response_time, exception is None]
        if stream:
            request = (context or {}).get("ailab", {})
            sample += [request.get("i", -1), request.get("ids", [])]
        samples.append(sample)

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
    cursor = Cursor(len(spec["queries"]), bool(spec.get("stream")))
    env = Environment(user_classes=[_user_class(spec, cursor)], events=events)
    env.events.request.add_listener(_sample_listener(samples, bool(spec.get("stream"))))
    runner = env.create_local_runner()
    runner.start(spec["users"], spawn_rate=spec["spawn_rate"])
    ticker = _progress(spec, samples)
    gevent.spawn_later(spec["seconds"], runner.quit)
    runner.greenlet.join()
    ticker.kill()
    Path(out_path).write_text(json.dumps({"samples": samples, "seconds": spec["seconds"], "next": cursor.next}))


def _master(spec_path: str, spec: dict[str, Any], out_path: str) -> None:
    """The distributed round: start the workers, run them for spec["seconds"], merge their samples."""
    import gevent
    from locust import events
    from locust.env import Environment

    samples: list[list[Any]] = []
    per_worker: dict[str, int] = {}
    next_of: dict[str, int] = {}

    def on_samples(environment: Any, msg: Any, **_: Any) -> None:
        index = str(msg.data["worker"])
        per_worker[index] = per_worker.get(index, 0) + len(msg.data["samples"])
        next_of[index] = max(next_of.get(index, 0), int(msg.data.get("next", 0)))
        samples.extend(msg.data["samples"])

    # the master runs no users; its user class only has to exist
    env = Environment(user_classes=[_user_class(spec, Cursor(len(spec["queries"]), False))], events=events)
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
    # a slower worker's unsent queries below the furthest one are skipped, never sent later
    Path(out_path).write_text(json.dumps({"samples": samples, "seconds": spec["seconds"],
                                          "next": max(next_of.values(), default=0),
                                          "workers": spec["workers"], "per_worker": per_worker}))


def _worker(spec_path: str, port: int, index: int) -> None:
    """One load-generating WorkerRunner; ships its raw samples to the master in batches."""
    import gevent
    from locust import events
    from locust.env import Environment

    spec = _read_spec(spec_path)
    samples: list[list[Any]] = []
    stream = bool(spec.get("stream"))
    cursor = Cursor(len(spec["queries"]), stream, first=index if stream else 0, step=spec["workers"] if stream else 1)
    env = Environment(user_classes=[_user_class(spec, cursor)], events=events)
    env.events.request.add_listener(_sample_listener(samples, stream))
    runner = env.create_worker_runner(master_host="127.0.0.1", master_port=port)

    def flush(**_: Any) -> None:
        if samples or stream:
            batch = samples[:]
            del samples[:len(batch)]
            runner.send_message(SAMPLES_MESSAGE, {"worker": index, "samples": batch, "next": cursor.next})

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
