"""Grading runs that mostly wait on the clock, run beside the other tests in processes of their own.

An observability grade is a fixed-length scenario (a minute on the smoke profile) that keeps the CPU mostly
idle, so grading six of them one after another wastes minutes of wall time. Each such run is a side job: a
function `job(folder, *args) -> result` in a test module, named in a wave of conftest.py's WAVES under the session
fixture that hands its result to the tests. The jobs run in waves, in a thread of the pytest process: first
`warm` (the embedding cache and the model that every observability backend loads: on a clean clone, six
backends embedding the same corpus at once each took over 180 s to start), then the jobs of each wave side by
side (`python -m tests._side_jobs MODULE:FUNCTION[:ARG...] FOLDER`), a wave when the one before has ended; the
result comes back pickled. Tests that measure speed against the reference (`@pytest.mark.timing`) run only after
every side job has ended, so nothing else loads the machine while they measure (under `make test-lanes`, on a core
of their own instead: tests/_lanes.py).
"""
from __future__ import annotations

import importlib
import os
import pickle
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tests._cpu import process_cpu

ROOT = Path(__file__).resolve().parent.parent
LIMIT_S = 900  # a side job that runs longer than this is killed and its tests fail with its log
WARM = "tests._side_jobs:warm"


def warm(folder: Path) -> None:
    """Fill the shared caches the observability backend reads: support-kb's chunk embeddings and the model."""
    from reference_systems.observability.backend import KnowledgeBase
    from reference_systems.serving.model import model_dir

    KnowledgeBase(1200, 0.3)
    model_dir()


class SideJobs:
    """The side jobs of one pytest session: run in waves by a thread, waited on by name."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        # the environment as the session starts: a test that monkeypatches os.environ (one removes the trusted
        # fixtures' setting) must not change what a job started during it sees
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.started: dict[str, threading.Event] = {}
        self.thread: threading.Thread | None = None
        self.stopped = False
        self.t0 = time.monotonic()
        self.timeline: list[tuple[str, float, float]] = []  # (what, start s, end s) from the session's start
        self.cpu: dict[str, float] = {}  # job -> its CPU seconds (its own and its waited children's), once reaped
        self._lock = threading.Lock()

    def run(self, waves: list[dict[str, str]], warm_needed: bool = False) -> None:
        """Start the waves (name -> MODULE:FUNCTION[:ARG]); `warm` goes first when any job is to run or a test
        waits for it (result("warm"))."""
        waves = [wave for wave in waves if wave]
        for wave in waves:
            self.started.update({name: threading.Event() for name in wave})
        if waves or warm_needed:
            self.started["warm"] = threading.Event()
            self.thread = threading.Thread(target=self._waves, args=([{"warm": WARM}, *waves],), daemon=True)
            self.thread.start()

    def _waves(self, waves: list[dict[str, str]]) -> None:
        for wave in waves:
            started = self.elapsed()
            for name, target in wave.items():
                if not self.stopped:
                    self.procs[name] = self._start(name, target)
                self.started.setdefault(name, threading.Event()).set()
            for name in wave:
                if name in self.procs:
                    self._wait(name)
            self.timeline.append((", ".join(wave), started, self.elapsed()))

    def _start(self, name: str, target: str) -> subprocess.Popen[bytes]:
        out = self.folder / name
        out.mkdir(parents=True)
        with open(out / "log.txt", "wb") as log:
            return subprocess.Popen([sys.executable, "-m", "tests._side_jobs", target, str(out)], cwd=ROOT,
                                    stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                    start_new_session=True)

    def _wait(self, name: str) -> None:
        """Wait for a job's process (killing it past LIMIT_S) and note its CPU seconds (tests/_cpu.py)."""
        proc = self.procs[name]
        try:
            proc.wait(timeout=LIMIT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        with self._lock:
            if name not in self.cpu:
                cpu = self.folder / name / "cpu.txt"
                self.cpu[name] = float(cpu.read_text()) if cpu.exists() else 0.0

    def reaped_cpu(self) -> float:
        """CPU seconds of the jobs reaped so far: they count in this process's children's time from then on."""
        with self._lock:
            return sum(self.cpu.values())

    def elapsed(self) -> float:
        """Seconds since the session started."""
        return time.monotonic() - self.t0

    def result(self, name: str) -> Any:
        """The job's return value, once it has ended; a failed job raises with the end of its log."""
        self.started[name].wait()
        if name not in self.procs:
            raise RuntimeError(f"side job {name} was not started (the session is stopping)")
        proc = self.procs[name]
        self._wait(name)
        out = self.folder / name
        if proc.returncode != 0:
            tail = (out / "log.txt").read_text(errors="replace")[-4000:]
            raise RuntimeError(f"side job {name} ended with status {proc.returncode}:\n{tail}")
        return pickle.loads((out / "result.pickle").read_bytes())

    def wait_all(self) -> None:
        if self.thread is None:
            return
        started = self.elapsed()
        self.thread.join()
        if not any(what.startswith("timing tests") for what, _, _ in self.timeline):
            self.timeline.append(("timing tests start (waiting for the waves until the end)", started,
                                  self.elapsed()))

    def summary(self) -> list[str]:
        """One line per wave (and the timing group's wait), in seconds from the session's start."""
        return [f"{start:7.0f} s – {end:6.0f} s  {what}" for what, start, end in self.timeline]

    def stop(self) -> None:
        self.stopped = True
        for proc in list(self.procs.values()):
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
                proc.wait()
        for event in self.started.values():
            event.set()


def _run(target: str, out: Path) -> None:
    module, function, *args = target.split(":")
    started = time.monotonic()
    try:
        result = getattr(importlib.import_module(module), function)(out, *args)
    finally:
        (out / "cpu.txt").write_text(f"{process_cpu():.1f}")
    (out / "result.pickle").write_bytes(pickle.dumps(result))
    print(f"[side job] {target} done in {time.monotonic() - started:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    _run(sys.argv[1], Path(sys.argv[2]))
