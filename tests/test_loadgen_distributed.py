"""Locust's distributed mode in the grader's load generator: a master and two worker processes drive a
real HTTP server on 127.0.0.1, and the raw samples of both workers reach the master."""
from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from graders.engine.loadgen import run_load
from graders.engine.scoring import latency_summary

pytestmark = pytest.mark.timing  # compares speed with the reference (tests/conftest.py)


class _Search(BaseHTTPRequestHandler):
    served = 0
    lock = threading.Lock()

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with _Search.lock:
            _Search.served += 1
        reply = json.dumps({"ok": True, "hits": [[f"d{i}", 1.0] for i in range(body["k"])]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Search)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.slow
def test_distributed_load_gathers_raw_samples_from_every_worker(server: str, tmp_path: Path) -> None:
    _Search.served = 0
    out = run_load(server, ["q one", "q two"], seconds=4, users=4, spawn_rate=4, k=3, workdir=tmp_path,
                   label="dist", workers=2)
    samples, per_worker = out["samples"], out["per_worker"]
    assert out["workers"] == 2 and set(per_worker) == {"0", "1"} and all(n > 10 for n in per_worker.values())
    assert sum(per_worker.values()) == len(samples)
    # every sample is a request the server answered, and none was lost on the way to the master
    assert 40 < len(samples) <= _Search.served and all(ok and ms > 0 for _, ms, ok in samples)
    starts = sorted(t for t, _, _ in samples)
    assert starts[-1] - starts[0] < 4 + 2  # bounded in time: the round lasted about 4 s
    assert latency_summary(samples, out["seconds"])["error_rate"] == 0


@pytest.mark.slow
def test_distributed_workers_do_not_outlive_the_round(server: str, tmp_path: Path) -> None:
    out = run_load(server, ["q"], seconds=1, users=2, spawn_rate=2, k=1, workdir=tmp_path, label="bound",
                   workers=2)
    assert len(out["per_worker"]) == 2
    leftovers = []
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--worker" in cmdline and str(tmp_path / "load-bound.json").encode() in cmdline:
            leftovers.append(pid)
    assert leftovers == []


def test_negative_worker_counts_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="workers"):
        run_load("http://127.0.0.1:9", ["q"], seconds=1, users=1, spawn_rate=1, k=1, workdir=tmp_path,
                 label="x", workers=-1)
