"""Grading runs that mostly wait on the clock, run side by side in their own processes while other tests run.

An observability grade is a fixed-length scenario (a minute on the smoke profile) that keeps the CPU mostly
idle, so grading five of them one after another wastes four minutes of wall time. Each such run is a side job:
a function `job(folder, *args) -> result` in a test module, named in conftest.py's SIDE_JOBS under the session fixture
that hands its result to the tests. When the session starts, conftest starts every side job that a selected test
needs (`python -m tests._side_jobs MODULE:FUNCTION[:ARG...] FOLDER`); the result comes back pickled. Tests that measure
speed against the reference (`@pytest.mark.timing`) run only after every side job has ended, so nothing else
loads the machine while they measure.
"""
from __future__ import annotations

import importlib
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LIMIT_S = 900  # a side job that runs longer than this is killed and its tests fail with its log


class SideJobs:
    """The side jobs of one pytest session: started together, waited on by name."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.running: dict[str, tuple[subprocess.Popen[bytes], float]] = {}

    def start(self, name: str, target: str) -> None:
        out = self.folder / name
        out.mkdir(parents=True)
        log = open(out / "log.txt", "wb")  # noqa: SIM115 - the child writes it; closed when the job is waited on
        proc = subprocess.Popen([sys.executable, "-m", "tests._side_jobs", target, str(out)], cwd=ROOT,
                                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                                start_new_session=True)
        log.close()
        self.running[name] = (proc, time.monotonic())

    def result(self, name: str) -> Any:
        """The job's return value, once it has ended; a failed job raises with the end of its log."""
        proc, started = self.running[name]
        try:
            proc.wait(timeout=max(1.0, LIMIT_S - (time.monotonic() - started)))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        out = self.folder / name
        if proc.returncode != 0:
            tail = (out / "log.txt").read_text(errors="replace")[-4000:]
            raise RuntimeError(f"side job {name} ended with status {proc.returncode}:\n{tail}")
        return pickle.loads((out / "result.pickle").read_bytes())

    def wait_all(self) -> None:
        for proc, started in self.running.values():
            try:
                proc.wait(timeout=max(1.0, LIMIT_S - (time.monotonic() - started)))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()

    def stop(self) -> None:
        for proc, _ in self.running.values():
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
                proc.wait()


def _run(target: str, out: Path) -> None:
    module, function, *args = target.split(":")
    result = getattr(importlib.import_module(module), function)(out, *args)
    (out / "result.pickle").write_bytes(pickle.dumps(result))


if __name__ == "__main__":
    _run(sys.argv[1], Path(sys.argv[2]))
