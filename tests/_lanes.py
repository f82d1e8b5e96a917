"""`make test-lanes`: the suite in two lanes, the timing tests on a core of their own, everything else beside them.

Experimental, and not what `make test` or CI runs: three clean-clone `.ci/run`s with it took 22-23 minutes
against 31-35 without, but the third failed four tests that compare speed, where one core is not enough
(docs/architecture.md "Tests").

The tests marked `timing` compare speed with the reference, so nothing else may run where they measure; run after
the rest, as plain `pytest` does (tests/conftest.py), they took ~17 of 31-33 minutes on two cores while leaving one
core mostly idle (one server and one load generator at a time), and the rest keeps both cores busy. So here two
pytest processes run at once:

- lane `main` (`-m "not timing"`) starts on every core, with the side jobs (tests/_side_jobs.py);
- lane `timing` (`-m timing`) collects, then waits until the main lane's side jobs reach TIMING_STARTS_WITH
  (tests/conftest.py): then it pins itself to the last core and every process of the main lane, and so whatever
  they start from then on, to the others (`take_a_core`, called by conftest).

The main lane's output streams as it runs; the timing lane's follows when both are done. Either failing fails the
run. With fewer than two cores, where a process cannot be pinned (not Linux), or with AILAB_LANES=1, this is
plain pytest.

    python -m tests._lanes [pytest arguments]
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

NO_TESTS = 5  # pytest's exit status when nothing was collected


def _combined(main: int, timing: int) -> int:
    """One lane with nothing to run (a -k that selects only the other's tests) is not a failure."""
    if main == NO_TESTS and timing == NO_TESTS:
        return NO_TESTS
    return max(s for s in (main, timing) if s != NO_TESTS) if NO_TESTS in (main, timing) else max(main, timing)


def main(argv: list[str]) -> int:
    """Run both lanes with `argv` (pytest arguments); the combined exit status."""
    pytest = [sys.executable, "-m", "pytest"]
    pinnable = hasattr(os, "sched_getaffinity")  # Linux
    if not pinnable or len(os.sched_getaffinity(0)) < 2 or os.environ.get("AILAB_LANES") == "1":
        return subprocess.call([*pytest, *argv])
    folder = Path(tempfile.mkdtemp(prefix="ailab-lanes-"))
    env = {**os.environ, "AILAB_LANE_DIR": str(folder)}
    started = time.monotonic()
    lanes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        lanes["main"] = subprocess.Popen([*pytest, "-m", "not timing", *argv], env={**env, "AILAB_LANE": "main"})
        with open(folder / "timing.log", "wb") as log:
            lanes["timing"] = subprocess.Popen([*pytest, "-m", "timing", *argv], stdout=log, stderr=subprocess.STDOUT,
                                               env={**env, "AILAB_LANE": "timing",
                                                    "AILAB_LANE_PEER": str(lanes["main"].pid)})
        status = {"main": lanes["main"].wait()}
        ended = {"main": time.monotonic() - started}
        (folder / "go").touch()  # the main lane ended before its signal (a selection without side jobs)
        status["timing"] = lanes["timing"].wait()
        ended["timing"] = time.monotonic() - started
    finally:
        for proc in lanes.values():
            if proc.poll() is None:
                proc.terminate()
                proc.wait()
    print(f"\n{' timing lane (-m timing, a core of its own) ':=^120}", flush=True)
    sys.stdout.buffer.write((folder / "timing.log").read_bytes())
    began = (folder / "go").read_text().strip() or "?"
    print(f"\n[lanes] main lane: status {status['main']}, ended at {ended['main']:.0f} s; timing lane: status "
          f"{status['timing']}, measured from {began} s, ended at {ended['timing']:.0f} s", flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    return _combined(status["main"], status["timing"])


def _go() -> Path:
    """The main lane's signal: a file in the lanes' folder, holding when it was given."""
    return Path(os.environ["AILAB_LANE_DIR"]) / "go"


def let_the_timing_lane_start(elapsed_s: float) -> None:
    """The main lane's signal (once): the timing lane may take its core now."""
    go = _go()
    if not go.exists():
        go.write_text(f"{elapsed_s:.0f}")


def take_a_core() -> set[int]:
    """In the timing lane: wait for the main lane's signal, then put this process (and what it starts) on the last
    core and the main lane's processes (and what they start) on the others, with one OpenMP thread for what this
    process starts; the main lane's cores."""
    go = _go()
    while not go.exists():
        time.sleep(0.5)
    cpus = sorted(os.sched_getaffinity(0))
    pin(os.getpid(), {cpus[-1]})
    pin_the_main_lane(set(cpus[:-1]))
    os.environ["OMP_NUM_THREADS"] = "1"
    return set(cpus[:-1])


def pin_the_main_lane(cpus: set[int]) -> None:
    """Every process of the main lane onto `cpus`; the timing lane repeats it before each timing test, for a process
    that was starting while the last sweep ran."""
    try:
        peer = psutil.Process(int(os.environ["AILAB_LANE_PEER"]))
        tree = [peer, *peer.children(recursive=True)]
    except psutil.Error:  # the main lane has ended
        return
    for proc in tree:
        pin(proc.pid, cpus)


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of `pid` onto `cpus` (an affinity is a thread's; a new thread or process inherits its creator's)."""
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:  # ended meanwhile
        return
    for tid in tids:
        try:
            os.sched_setaffinity(tid, cpus)
        except OSError:
            pass


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
