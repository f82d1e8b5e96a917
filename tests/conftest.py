"""Test-session settings and the order tests run in.

Trusted fixtures: the fixtures under tests/fixtures stand in for the reference (many build on it), so submissions
byte-identical to one of them may use it (graders.engine.sandbox_user.VOUCHED_ENV). A real grade never sets this.
tests/fixtures/gaming/isolation/ holds submissions that reach for the reference and must be refused, so it is left
out (and tests/test_gaming_isolation.py grades with the setting removed).

Order and side jobs: grading runs that mostly wait on the clock run as side jobs (tests/_side_jobs.py), in
waves from when the session starts, each in its own process; WAVES names them. Whole modules run in three groups, each
in collection order: first the modules that neither read a side job nor measure speed (they run while the side
jobs do), then those that read a side job's result (`warm_caches` counts: it waits for the `warm` job), in the
order of the waves they wait for, then the modules marked `timing` (they compare speed with the reference), which
start only when every side job has ended, so nothing else loads the machine while they measure (tests/test_lanes.py
goes before them all: see _rank). A module moves as one block, so its module fixtures run once.

Threads: one OpenMP thread per process while side jobs run, until the timing tests (see _OWN_THREAD_SETTING).
Lanes: `make test-lanes` runs the timing tests in a pytest process of their own on a core of their own, beside the rest
(tests/_lanes.py); AILAB_LANE names the lane this process is ("main" or "timing"; unset under plain pytest).
Leaks: garbage is collected as each module ends, so a socket or file a module left open fails that module.
"""
from __future__ import annotations

import gc
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import _lanes as lanes
from tests._cpu import Ledger, usable_cores
from tests._side_jobs import SideJobs

FIXTURES = Path(__file__).resolve().parent / "fixtures"
HOSTILE = FIXTURES / "gaming" / "isolation"

_folders = [p for p in FIXTURES.iterdir() if p.is_dir() and p != HOSTILE.parent]
_folders += [p for p in HOSTILE.parent.iterdir() if p.is_dir() and p != HOSTILE] if HOSTILE.parent.is_dir() else []
os.environ.setdefault("AILAB_TRUSTED_FIXTURES", os.pathsep.join(str(p) for p in sorted(_folders)))

# Side jobs in waves, each wave when the one before has ended (after tests._side_jobs.warm):
# session fixture -> MODULE:FUNCTION[:ARG], called as FUNCTION(fresh_folder, ARG). The observability grades mostly
# wait, so they share a wave; the others keep a core busy, so they take one at a time, except the agents batch:
# it mostly waits (the scripted model's latency, the faults' delays) and shares the last wave with the Cranfield
# comparison, while the pytest process has mostly run out of work (docs/architecture.md "Tests" has the figures).
WAVES: list[dict[str, str]] = [
    {
        "observability_always": "tests.test_gaming_observability:graded_card:always_alert",
        "observability_never": "tests.test_gaming_observability:graded_card:never_alert",
        "observability_timer": "tests.test_gaming_observability:timer_card",
        "observability_broken": "tests.test_observability_grader:broken_batch",
        "observability_slow_handler": "tests.test_observability_grader:smoke_card:slow_handler",
        "observability_bad_detectors": "tests.test_observability_grader:smoke_card:bad_detectors",
    },
    {"adversarial_batch": "tests.test_adversarial:hostile_batch"},
    {"interview_course": "tests.test_interviewer:interview_course"},
    {"presence_only": "tests.test_datasets:presence_only_comparison",
     "agents_batch": "tests.test_agents_grader:graded_batch"},
]
SIDE_JOBS = {name: target for wave in WAVES for name, target in wave.items()}

# While side jobs run, several processes run torch at once on two cores: this one, the side jobs, and the servers,
# kernels and graders the tests start. With torch's default of one OpenMP thread per core each, they oversubscribe
# the cores and small operations slow down many times over (tests/test_embeddings.py: 0.9 s alone, 3 s beside one
# two-thread torch process, 22 s in a clean-clone run). So one thread each from then until the timing tests, which
# get the environment back and run as a grader does (sandboxed submissions always get one thread). A run without
# side jobs (the fast tier) keeps torch's default: alone, one thread is slower.
_OWN_THREAD_SETTING = False
# tests/_lanes.py: the timing lane starts measuring when this side job starts, i.e. when the waves before it have
# had both cores (a third of the main lane's CPU time), so that the two lanes end at about the same time
TIMING_STARTS_WITH = "adversarial_batch"
LANE = os.environ.get("AILAB_LANE", "")
_timing_lane: dict[str, Any] = {}  # in the timing lane: when it started measuring, and the main lane's cores
_jobs = SideJobs(Path(tempfile.mkdtemp(prefix="ailab-side-jobs-")))
_cpu = Ledger()  # where the CPU went: printed at the end (tests/_cpu.py)


def _side_job_fixture(name: str, fixture_name: str | None = None):  # type: ignore[no-untyped-def]
    @pytest.fixture(scope="session", name=fixture_name or name)
    def fixture() -> object:
        return _jobs.result(name)
    return fixture


for _name in SIDE_JOBS:
    globals()[_name] = _side_job_fixture(_name)
# `warm_caches`: for a test that grades on support-kb, which must not embed the corpus again while `warm` does
warm_caches = _side_job_fixture("warm", "warm_caches")
# when each side job's result is there: its wave (warm is wave 0)
WAVE_OF = {"warm_caches": 0} | {name: i + 1 for i, wave in enumerate(WAVES) for name in wave}


def _rank(item: pytest.Item) -> tuple[int, int]:
    """(group, the last wave it reads): modules that read side jobs run in the order their results come. The lanes'
    own tests go first, while this process still has every core (under `make test-lanes` the timing lane takes one)."""
    if item.nodeid.startswith("tests/test_lanes.py"):
        return -1, 0
    if item.get_closest_marker("timing"):
        return 2, 0
    waves = [WAVE_OF[name] for name in item.fixturenames if name in WAVE_OF]
    return (1, max(waves)) if waves else (0, 0)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    rank: dict[str, tuple[int, int]] = {}
    for item in items:
        module = item.nodeid.split("::")[0]
        rank[module] = max(rank.get(module, (-1, 0)), _rank(item))
    items.sort(key=lambda item: rank[item.nodeid.split("::")[0]])  # stable: collection order within a group


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly:
        return
    needed = {name for item in session.items for name in item.fixturenames if name in WAVE_OF}
    if needed:
        _one_thread_each()
    _jobs.run([{name: target for name, target in wave.items() if name in needed} for wave in WAVES],
              warm_needed="warm_caches" in needed)
    if LANE == "main":
        signal = _jobs.started.get(TIMING_STARTS_WITH, threading.Event())
        if TIMING_STARTS_WITH not in needed:
            signal.set()
        threading.Thread(target=_signal_the_timing_lane, args=(signal,), daemon=True).start()
    elif LANE == "timing":
        _timing_lane["main_cpus"] = lanes.take_a_core()
        _timing_lane["started"] = _jobs.elapsed()
        _torch_threads(1)


def _signal_the_timing_lane(when: threading.Event) -> None:
    when.wait()
    lanes.let_the_timing_lane_start(_jobs.elapsed())


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("timing"):  # before its fixtures, which may grade
        if _cpu.marks[-1][0] != "the timing tests":
            _cpu.mark("the timing tests")
        _jobs.wait_all()
        _default_threads()
        if LANE == "timing":
            lanes.pin_the_main_lane(_timing_lane["main_cpus"])


def _one_thread_each() -> None:
    """One OpenMP thread for this process and every process started from now on (see _OWN_THREAD_SETTING)."""
    global _OWN_THREAD_SETTING
    if "OMP_NUM_THREADS" not in os.environ:
        _OWN_THREAD_SETTING = True
        os.environ["OMP_NUM_THREADS"] = _jobs.env["OMP_NUM_THREADS"] = "1"
        _torch_threads(1)


def _default_threads() -> None:
    """The thread setting as a grader has it, for the timing tests (see _OWN_THREAD_SETTING)."""
    global _OWN_THREAD_SETTING
    if _OWN_THREAD_SETTING:
        _OWN_THREAD_SETTING = False
        del os.environ["OMP_NUM_THREADS"]
        _torch_threads(usable_cores())  # torch's default: one per core


def _torch_threads(n: int) -> None:
    """torch's intra-op threads in this process, if it has loaded torch (what it starts reads OMP_NUM_THREADS)."""
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


@pytest.fixture(scope="module", autouse=True)
def collect_garbage_after_module(request: pytest.FixtureRequest) -> Iterator[None]:
    """Collect garbage when a module ends (after its other fixtures: autouse fixtures are set up first), so an
    object it left unclosed (a socket, a file) warns in the module that leaked it, not in whichever later test the
    garbage collector happened to run during. Also counts the module's CPU (tests/_cpu.py)."""
    _cpu.module_started(request.module.__name__, _jobs.reaped_cpu())
    yield
    gc.collect()
    _cpu.module_ended(_jobs.reaped_cpu())


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _timing_lane:
        terminalreporter.write_line(
            f"[timing lane] started measuring at {_timing_lane['started']:.0f} s on core "
            f"{sorted(os.sched_getaffinity(0))}; the main lane's processes on {sorted(_timing_lane['main_cpus'])}")
    if _jobs.timeline:
        terminalreporter.write_sep("-", "side jobs (tests/_side_jobs.py)")
        for line in _jobs.summary():
            terminalreporter.write_line(line)
    if _cpu.modules:
        _cpu.mark("end")
        terminalreporter.write_sep("-", "CPU (tests/_cpu.py): the phases, the side jobs, the modules that used most")
        for line in _cpu.summary(_jobs.cpu):
            terminalreporter.write_line(line)


def pytest_sessionfinish(session: pytest.Session) -> None:
    if LANE == "main":
        lanes.let_the_timing_lane_start(_jobs.elapsed())
    _jobs.stop()
    shutil.rmtree(_jobs.folder, ignore_errors=True)
