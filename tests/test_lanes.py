"""tests/_lanes.py, which `make test` runs: the timing tests in a pytest process of their own that, once the main lane
lets it start, puts every process of the main lane at idle priority (SCHED_IDLE)."""
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
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


def _policies(pid: int) -> list[int]:
    """The scheduling class of each thread of `pid`."""
    if not hasattr(os, "SCHED_IDLE"):
        pytest.skip("SCHED_IDLE is Linux's")
    return [os.sched_getscheduler(int(tid)) for tid in os.listdir(f"/proc/{pid}/task")]


def test_one_lane_with_nothing_to_run_is_not_a_failure() -> None:
    assert lanes._combined(0, 0) == 0
    assert lanes._combined(0, 5) == lanes._combined(5, 0) == 0
    assert lanes._combined(1, 5) == lanes._combined(5, 1) == lanes._combined(1, 0) == 1
    assert lanes._combined(5, 5) == 5
    assert lanes._combined(2, 1) == 2


def test_the_main_lane_and_what_it_starts_later_go_to_idle_priority_every_thread(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with subprocess.Popen([sys.executable, "-c", SLEEPER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          text=True) as proc:
        try:
            assert proc.stdout is not None and proc.stdin is not None
            assert proc.stdout.readline().strip() == "ready"
            assert _policies(proc.pid) == [os.SCHED_OTHER] * 4
            monkeypatch.setenv("AILAB_LANE_PEER", str(proc.pid))
            lanes.idle_the_main_lane()
            assert _policies(proc.pid) == [os.SCHED_IDLE] * 4
            proc.stdin.write("\n")
            proc.stdin.flush()
            child = int(proc.stdout.readline())
            assert _policies(child) == [os.SCHED_IDLE], "a process started after the sweep inherits the class"
            os.kill(child, 9)
        finally:
            proc.kill()
    assert _policies(os.getpid())[0] == os.SCHED_OTHER, "the caller keeps its own"
    lanes.idle_the_main_lane()  # the peer has ended: nothing to do, no error


def test_the_timing_lane_waits_for_the_signal_then_idles_the_main_lane(monkeypatch: pytest.MonkeyPatch,
                                                                       tmp_path: Path) -> None:
    """take_the_lead in a process of its own, with a sleeping peer as the main lane."""
    lane = ("import json, os\nfrom tests import _lanes\n_lanes.take_the_lead()\n"
            "print(json.dumps([os.sched_getscheduler(int(t)) for t in os.listdir(f'/proc/{os.getpid()}/task')]))")
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as peer:
        env = {**os.environ, "AILAB_LANE_DIR": str(tmp_path), "AILAB_LANE_PEER": str(peer.pid)}
        try:
            with subprocess.Popen([sys.executable, "-c", lane], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                  text=True) as timing:
                time.sleep(2)
                assert timing.poll() is None, "it must wait for the main lane's signal"
                assert _policies(peer.pid) == [os.SCHED_OTHER]
                monkeypatch.setenv("AILAB_LANE_DIR", str(tmp_path))
                lanes.let_the_timing_lane_start(12.3)
                lanes.let_the_timing_lane_start(99.0)  # once only
                out, _ = timing.communicate(timeout=60)
            assert timing.returncode == 0 and (tmp_path / "go").read_text() == "12"
            assert set(json.loads(out)) == {os.SCHED_OTHER}, "the timing lane keeps the normal class"
            assert _policies(peer.pid) == [os.SCHED_IDLE]
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
    main, _, timing = done.stdout.partition(" timing lane (-m timing, first in line for the cores) ")
    assert " passed, 1 deselected" in main and "1 passed, " in timing
    assert "the main lane's processes at idle priority (SCHED_IDLE) from then" in timing
    assert "[lanes] main lane: status 0" in timing and "timing lane: status 0" in timing
