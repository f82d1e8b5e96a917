"""Issue 14: a batch graded on Dask distributed (graders.engine.cluster) — the same grades as on one machine, one
scorecard per submission even when a worker is killed mid-grade, a rerun that resumes, the organiser's
`dask scheduler` / `dask worker` commands, and one line for a scheduler that is not there.

The batch is the agents lab on its smoke profile (the cheapest lab that grades for real: ~15 s a submission with its
reference): the reference, the naive and broken examples, and a hostile notebook that reaches for the reference
implementation and probes the network. A `--hidden` lab.toml fixes the fault seed, so two grades of the naive agent
differ only by timing; that file also travels to the workers with each task.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from graders.engine.cluster_task import grading_process
from graders.engine.hidden import write_lab_toml
from graders.engine.netns import unavailable

pytestmark = pytest.mark.timing  # compares speed with the reference (tests/conftest.py)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "labs" / "agents" / "examples"
NAMES = {"reference", "naive", "broken", "hostile"}
# Measured (seed 7): the naive agent graded alone 32.0, 31.9, 31.4, 31.5, 31.2; on the 2-worker cluster beside
# another grade 32.4, 32.6. Only its timed parts moved: with the fault seed fixed, every other part of every example
# came out the same in each grade (benchmarks/agents.py --profile smoke --seed 7 --examples).
TOLERANCE = 2.0
TIMED = {"latency", "throughput"}  # ratios of wall-clock figures, candidate to reference, within one grade
# The agents lab's own bound for its reference (tests/test_agents_grader.py). Against itself with seed 7 the reference
# scored 100.0 in 18 of 18 grades on an idle machine (latency ratio 0.81-1.15, full credit to 1.5), but 99.8 once
# in CI's timing phase (stop 29): one grade's p95 of ~100 turns can pass 1.5.
REFERENCE_AT_LEAST = 95.0
ISOLATED = unavailable() is None
HOSTILE_CELL = '''import socket
try:
    import reference_systems.agents.agent as _reference  # noqa: F401 - refused in the sandbox
except Exception:  # noqa: BLE001
    pass
try:
    socket.create_connection(("192.0.2.1", 80), timeout=2).close()
    _probe = "CONNECTED 192.0.2.1"
except OSError as exc:
    _probe = f"192.0.2.1: {exc}"
raise RuntimeError(f"network probe: {_probe}; interfaces {sorted(n for _, n in socket.if_nameindex())}")
'''


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "graders.cli", "grade", "agents", *args, "--profile", "smoke"]


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The four submissions and the --hidden folder that fixes the fault seed."""
    subs = tmp_path_factory.mktemp("subs")
    shutil.copy(ROOT / "reference_systems" / "agents" / "submission.py", subs / "reference.py")
    for name in ("naive", "broken"):
        shutil.copy(EXAMPLES / f"{name}.ipynb", subs / f"{name}.ipynb")
    nb = json.loads((EXAMPLES / "naive.ipynb").read_text())
    nb["cells"].append({"cell_type": "code", "execution_count": None, "id": "hostile", "metadata": {}, "outputs": [],
                        "source": HOSTILE_CELL})
    (subs / "hostile.ipynb").write_text(json.dumps(nb))
    hidden = tmp_path_factory.mktemp("hidden")
    write_lab_toml(hidden, "agents", "[profiles.smoke]\nseed = 7\n")
    return {"subs": subs, "hidden": hidden}


@pytest.fixture(scope="module")
def sequential(batch: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """The batch graded on one machine, one submission after another."""
    from graders.agents.grade import grade

    cards = grade(str(batch["subs"]), tmp_path_factory.mktemp("seq"), profile="smoke", hidden=batch["hidden"])
    return {c.submission: c.to_json() for c in cards}


@pytest.fixture(scope="module")
def clustered(batch: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The batch on a local 2-worker cluster; the worker grading `naive` is killed (SIGKILL) 3 s into that grade."""
    out = tmp_path_factory.mktemp("cluster")
    command = _cli(str(batch["subs"]), "--out", str(out), "--hidden", str(batch["hidden"]), "--workers", "2")
    started = time.monotonic()
    cli = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    killed: dict[str, int] = {}
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and cli.poll() is None and not killed:
            grading = grading_process("naive")
            if grading is not None and time.time() - grading.create_time() > 3:
                worker = grading.parent()
                assert worker is not None and worker.pid != cli.pid
                killed = {"worker": worker.pid, "grading": grading.pid}
                os.kill(worker.pid, signal.SIGKILL)
            time.sleep(0.2)
        gone = time.monotonic() + 10
        while killed and psutil.pid_exists(killed["grading"]) and time.monotonic() < gone:
            time.sleep(0.2)
        orphan = bool(killed) and psutil.pid_exists(killed["grading"])
        stdout, stderr = cli.communicate(timeout=240)
    finally:
        if cli.poll() is None:
            cli.kill()
    yield {"out": out, "command": command, "rc": cli.returncode, "stdout": stdout, "stderr": stderr,
           "killed": killed, "orphan": orphan, "seconds": time.monotonic() - started,
           "cards": {p.parent.name: json.loads(p.read_text()) for p in out.glob("*/scorecard.json")}}


@pytest.mark.slow
def test_a_two_worker_cluster_grades_like_one_machine(clustered: dict, sequential: dict[str, dict]) -> None:
    assert clustered["rc"] == 0, clustered["stderr"][-3000:]
    cards = clustered["cards"]
    assert set(cards) == NAMES == set(sequential)
    for name in NAMES:
        assert abs(cards[name]["score"] - sequential[name]["score"]) <= TOLERANCE, (name, cards[name]["parts"])
        untimed = [{p["name"]: p["points"] for p in card["parts"] if p["name"] not in TIMED}
                   for card in (cards[name], sequential[name])]
        assert untimed[0] == untimed[1], (name, "the cluster's untimed parts, then one machine's", untimed)
    for card in (cards["reference"], sequential["reference"]):
        lost = [p for p in card["parts"] if p["points"] < p["max_points"]]
        assert card["score"] >= REFERENCE_AT_LEAST and {p["name"] for p in lost} <= TIMED, \
            [f"{p['name']} {p['points']}/{p['max_points']}: {p['detail']}" for p in lost]
    assert cards["broken"]["score"] == cards["hostile"]["score"] == 0.0
    workers = {c["environment"]["worker"]["address"] for c in cards.values()}
    assert all(w.startswith("tcp://127.0.0.1:") for w in workers) and len(workers) >= 2, workers
    with open(clustered["out"] / "summary.csv", newline="") as f:
        rows = {r["submission"]: r["score"] for r in csv.DictReader(f)}
    assert rows == {n: f"{cards[n]['score']:.1f}" for n in NAMES}
    assert "4/4" in clustered["stderr"] and "[agents] [####" in clustered["stderr"]
    print(f"cluster batch graded in {clustered['seconds']:.0f} s: "
          f"{ {n: (cards[n]['score'], sequential[n]['score']) for n in sorted(NAMES)} }")


@pytest.mark.slow
def test_a_worker_killed_mid_grade_leaves_exactly_one_scorecard_per_submission(clustered: dict) -> None:
    assert clustered["killed"], "the naive submission's grade was never seen running"
    assert clustered["rc"] == 0, clustered["stderr"][-3000:]
    out = clustered["out"]
    assert sorted(p.parent.name for p in out.glob("**/scorecard.json")) == sorted(NAMES)
    markers = [json.loads(p.read_text()) for p in (out / ".done").glob("*.json")]
    assert sorted(m["submission"] for m in markers) == sorted(NAMES)
    naive = clustered["cards"]["naive"]
    assert naive["environment"]["worker"]["pid"] != clustered["killed"]["worker"], "regraded by a live worker"
    assert naive["errors"] == [] and naive["score"] > 20
    assert not clustered["orphan"], "the killed worker's grading process outlived it"
    assert len(clustered["stdout"].split("report: ")) == len(NAMES) + 1, "one report line per submission"
    print(f"killed worker pid {clustered['killed']['worker']} 3 s into grading naive; regraded on "
          f"{naive['environment']['worker']}; progress:\n" +
          "\n".join(line for line in clustered["stderr"].splitlines() if "] [#" in line or "WARNING" in line))


@pytest.mark.slow
def test_sandbox_and_network_rules_hold_on_the_workers(clustered: dict) -> None:
    hostile = clustered["cards"]["hostile"]
    assert hostile["integrity"]["reference_access"], hostile["errors"]
    assert "import of reference_systems.agents.agent" in hostile["errors"][0]
    assert hostile["integrity"]["most_similar"][0] == {"submission": "naive", "similarity": 1.0}, "batch-wide findings"
    if not ISOLATED:
        pytest.skip("network isolation needs root and unshare")
    assert all(c["environment"]["worker"]["network"] == "loopback only" for c in clustered["cards"].values())
    assert "network probe: 192.0.2.1: [Errno 101] Network is unreachable; interfaces ['lo']" in "\n".join(
        hostile["errors"])


@pytest.mark.slow
def test_the_same_command_again_resumes_without_grading(clustered: dict) -> None:
    before = {p: p.read_bytes() for p in clustered["out"].glob("*/scorecard.json")}
    again = subprocess.run(clustered["command"], capture_output=True, text=True, timeout=120, env=_env())
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resuming: 4 of 4 already graded" in again.stderr and "Dask cluster" not in again.stderr
    assert {p: p.read_bytes() for p in clustered["out"].glob("*/scorecard.json")} == before
    assert all(line.split()[1] == f"{clustered['cards'][line.split()[0]]['score']:.1f}"
               for line in again.stdout.splitlines() if line.split()[:1] and line.split()[0] in NAMES)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_the_organisers_scheduler_and_worker_commands(batch: dict[str, Path], tmp_path: Path) -> None:
    """`dask scheduler` and `dask worker ... --nthreads 1 --resources grade=1`, then `ailab grade --scheduler`."""
    subs = tmp_path / "subs"
    subs.mkdir()
    shutil.copy(batch["subs"] / "hostile.ipynb", subs / "hostile.ipynb")
    dask = str(Path(sys.executable).parent / "dask")
    address = f"tcp://127.0.0.1:{_free_port()}"
    started = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                                 "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        started.append(subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--resources", "grade=1",
                                         "--host", "127.0.0.1", "--no-dashboard", "--memory-limit", "0"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env()))
        done = subprocess.run(_cli(str(subs), "--out", str(tmp_path / "out"), "--scheduler", address),
                              capture_output=True, text=True, timeout=120, env=_env())
    finally:
        for proc in reversed(started):
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"Dask scheduler {address}: 1 worker(s), 1 grading slot(s)" in done.stderr
    card = json.loads((tmp_path / "out" / "hostile" / "scorecard.json").read_text())
    assert card["integrity"]["reference_access"] and card["environment"]["worker"]["address"].startswith("tcp://127.")


def test_an_unreachable_scheduler_is_one_line(batch: dict[str, Path], tmp_path: Path) -> None:
    address = f"tcp://127.0.0.1:{_free_port()}"  # nothing listens there
    done = subprocess.run(_cli(str(batch["subs"]), "--out", str(tmp_path / "out"), "--scheduler", address),
                          capture_output=True, text=True, timeout=60, env=_env())
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"ailab grade: error: cannot reach the Dask scheduler at {address} ([Errno 111] Connection refused); start "
        "one there with `dask scheduler`, or check the address and the port"]
    assert not (tmp_path / "out").exists()
