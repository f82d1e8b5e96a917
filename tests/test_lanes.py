"""tests/_lanes.py, which `make test-lanes` runs: the timing tests in a pytest process of their own, pinned to a core of
their own once the main lane lets them start, and every process of the main lane pinned to the other cores."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import _lanes as lanes

ROOT = Path(__file__).resolve().parent.parent
# a process with three extra threads, and a child of its own once it reads a line
SLEEPER = """import subprocess, sys, threading, time
for _ in range(3):
    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
print("ready", flush=True)
sys.stdin.readline()
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print(child.pid, flush=True)
time.sleep(60)
"""


def _cpus() -> list[int]:
    """This process's cores now (under `make test-lanes` the main lane has one once the timing lane has taken its own)."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


def _two_cores() -> list[int]:
    cpus = _cpus()
    if len(cpus) < 2:
        pytest.skip("pinning a lane to a core of its own needs two cores")
    return cpus


def _affinities(pid: int) -> list[set[int]]:
    return [os.sched_getaffinity(int(tid)) for tid in os.listdir(f"/proc/{pid}/task")]


def test_one_lane_with_nothing_to_run_is_not_a_failure() -> None:
    assert lanes._combined(0, 0) == 0
    assert lanes._combined(0, 5) == lanes._combined(5, 0) == 0
    assert lanes._combined(1, 5) == lanes._combined(5, 1) == lanes._combined(1, 0) == 1
    assert lanes._combined(5, 5) == 5
    assert lanes._combined(2, 1) == 2


def test_the_main_lane_and_what_it_starts_later_are_pinned_every_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    first = _two_cores()[0]
    with subprocess.Popen([sys.executable, "-c", SLEEPER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          text=True) as proc:
        try:
            assert proc.stdout is not None and proc.stdin is not None
            assert proc.stdout.readline().strip() == "ready"
            monkeypatch.setenv("AILAB_LANE_PEER", str(proc.pid))
            lanes.pin_the_main_lane({first})
            assert len(_affinities(proc.pid)) == 4 and all(a == {first} for a in _affinities(proc.pid))
            proc.stdin.write("\n")
            proc.stdin.flush()
            child = int(proc.stdout.readline())
            assert _affinities(child) == [{first}], "a process started after the sweep inherits the pinning"
            os.kill(child, 9)
        finally:
            proc.kill()
    lanes.pin_the_main_lane({first})  # the peer has ended: nothing to do, no error


def test_the_timing_lane_waits_for_the_signal_then_takes_the_last_core(monkeypatch: pytest.MonkeyPatch,
                                                                       tmp_path: Path) -> None:
    """take_a_core in a process of its own (it pins the process that calls it), with a sleeping peer."""
    cpus = _two_cores()
    lane = ("import json, os\nfrom tests import _lanes\nmain = _lanes.take_a_core()\n"
            "print(json.dumps({'main': sorted(main), 'omp': os.environ['OMP_NUM_THREADS'], 'mine': "
            "[sorted(os.sched_getaffinity(int(t))) for t in os.listdir(f'/proc/{os.getpid()}/task')]}))")
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as peer:
        env = {**os.environ, "AILAB_LANE_DIR": str(tmp_path), "AILAB_LANE_PEER": str(peer.pid)}
        try:
            with subprocess.Popen([sys.executable, "-c", lane], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                  text=True) as timing:
                time.sleep(2)
                assert timing.poll() is None, "it must wait for the main lane's signal"
                assert all(a == set(cpus) for a in _affinities(peer.pid))
                monkeypatch.setenv("AILAB_LANE_DIR", str(tmp_path))
                lanes.let_the_timing_lane_start(12.3)
                lanes.let_the_timing_lane_start(99.0)  # once only
                out, _ = timing.communicate(timeout=60)
            assert timing.returncode == 0 and (tmp_path / "go").read_text() == "12"
            took = json.loads(out)
            assert took["main"] == cpus[:-1] and all(a == [cpus[-1]] for a in took["mine"]) and took["omp"] == "1"
            assert all(a == set(cpus[:-1]) for a in _affinities(peer.pid))
        finally:
            peer.kill()


def test_make_test_runs_the_two_lanes_and_reports_both(tmp_path: Path) -> None:
    """A small selection through `python -m tests._lanes`: one module of each kind; both lanes' outputs and status."""
    env = {**os.environ, "PYTEST_ADDOPTS": f"-p no:cacheprovider --basetemp={tmp_path / 'tmp'}"}
    env.pop("AILAB_LANE", None)
    cpus = _cpus()
    done = subprocess.run([sys.executable, "-m", "tests._lanes", "-q", "tests/test_metrics.py",
                           "tests/test_ttft_agreement.py::test_probe_refuses_hosts_other_than_loopback"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    if len(cpus) < 2:  # plain pytest
        assert "timing lane" not in done.stdout and " passed" in done.stdout
        return
    main, _, timing = done.stdout.partition(" timing lane (-m timing, a core of its own) ")
    assert " passed, 1 deselected" in main and "1 passed, " in timing
    assert f"on core [{cpus[-1]}]; the main lane's processes on {cpus[:-1]}" in timing
    assert "[lanes] main lane: status 0" in timing and "timing lane: status 0" in timing
