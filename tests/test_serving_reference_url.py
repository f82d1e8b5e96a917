"""`ailab grade serving SUB --reference-url URL`: grading against an OpenAI-compatible server someone already runs
(an interviewer's `vllm serve <model folder>`) instead of the reference host the grader starts.

The external server here is the project's own reference server, started as a separate process on 127.0.0.1 and
named by its model folder's path as vLLM names a model (`--served-model-name`): a request that sends the lab's
usual `model` gets HTTP 404 there, so every point the reference's side earns proves the grader asked for the
name GET /v1/models gave. One smoke grade of the reference submission, through the real `ailab` command, once
for the module; bad URLs are refused in one line before anything loads (as in tests/test_cli_errors.py).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from graders.engine import netns
from graders.engine.hidden import write_lab_toml
from graders.engine.sandbox import free_port
from graders.serving import remote, verify
from reference_systems.serving.model import model_dir

pytestmark = pytest.mark.timing  # compares speed with the reference (tests/conftest.py)

AILAB = Path(sys.executable).parent / "ailab"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def external(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(url, served model name) of the reference server running as its own process on 127.0.0.1."""
    port, name = free_port(), str(model_dir())
    log = tmp_path_factory.mktemp("external-server") / "server.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "reference_systems.serving.server", "--port", str(port),
                                 "--served-model-name", name], env=ENV, stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "the external reference server did not start in 120 s"
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        yield url, name
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def graded(external: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The reference submission graded (smoke profile) against the external server; its scorecard, the run's
    output and seconds."""
    out = tmp_path_factory.mktemp("reference-url")
    # 8/s, smoke's rate until it rose to 14/s (labs/serving/lab.toml): the point here is the external reference's
    # wiring, and this server, outside the grader's hosts, scored goodput 0.00 at 14/s once (clean-clone run 44)
    hidden = tmp_path_factory.mktemp("reference-url-hidden")
    write_lab_toml(hidden, "serving", "[profiles.smoke]\nrates = [8.0]\n")
    started = time.perf_counter()
    done = subprocess.run([str(AILAB), "grade", "serving", "reference", "--profile", "smoke", "--out", str(out),
                           "--hidden", str(hidden),
                           "--reference-url", external[0], "--allow-network"],  # as root: the server is outside a netns
                          capture_output=True, text=True, timeout=900, env=ENV)
    seconds = time.perf_counter() - started
    assert done.returncode == 0, done.stderr[-3000:]
    card = json.loads((out / "reference" / "scorecard.json").read_text())
    print(f"\n[reference-url] smoke grade against {external[0]}: {seconds:.0f} s")
    return {"card": card, "report": (out / "reference" / "report.html").read_text(), "stderr": done.stderr,
            "seconds": seconds}


@pytest.mark.slow  # a reference server started, and (two of them) a grading run
def test_scorecard_names_the_external_reference(graded: dict, external: tuple[str, str]) -> None:
    url, name = external
    env = graded["card"]["environment"]
    assert env["reference"] == f"external: {url}" and env["reference_model"] == name
    assert f"external: {url}" in graded["report"]
    assert f"reference: the external server at {url}" in graded["stderr"]
    assert "starting the reference server" not in graded["stderr"]  # no sandboxed reference host was started


@pytest.mark.slow  # a reference server started, and (two of them) a grading run
def test_functional_parts_pass_and_performance_is_a_ratio_to_the_external_server(graded: dict) -> None:
    card = graded["card"]
    parts = {p["name"]: p for p in card["parts"]}
    for name in ("correctness", "streaming", "admission_control", "cancellation", "metrics_endpoint"):
        assert parts[name]["points"] == parts[name]["max_points"], parts[name]["detail"]
    # the same system on both sides: the ratios sit inside the full-credit bands; a reference that failed its
    # requests (a wrong `model`, an unreachable host) would leave goodput unmeasurable or 0
    for name in ("goodput", "latency"):
        assert parts[name]["points"] == parts[name]["max_points"], parts[name]["detail"]
        assert "vs the reference" in parts[name]["detail"]
    ref = card["reference"]["metrics"]  # every stream of the external server was the engine's greedy output
    assert ref["goodput_rps"] > 0 and ref["verification_failures"] == 0 and ref["verified_rate"] == 1.0
    assert not any("grader problem" in e or "does not serve" in e for e in card["errors"]), card["errors"]


@pytest.mark.slow  # a reference server started, and (two of them) a grading run
def test_a_server_that_does_not_give_the_engines_greedy_output_is_refused(external: tuple[str, str]) -> None:
    """The start-up check against the real server, with expected texts that are not what it says: one line that
    names the server and what to serve (a server of another model gets this instead of marking candidates down)."""
    ref = remote.connect(external[0])
    requests = [(0.0, "The with statement", 6), (0.0, "class", 4)]
    wrong = verify.Greedy({(p, n): "not this text" for _, p, n in requests}, 0.0)
    with pytest.raises(SystemExit) as refused:
        remote.check_greedy(ref, requests, wrong, timeout=30)
    message = str(refused.value.code)
    assert "\n" not in message and f"the server at {ref.url}" in message
    assert "does not serve the lab's model greedily" in message and "vllm serve" in message


@pytest.fixture(scope="module")
def refused(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, subprocess.CompletedProcess[str]]]:
    """Bad --reference-url input, each through the real `ailab` command: {case: (what the line must say, run)}."""
    tmp = tmp_path_factory.mktemp("reference-url-errors")
    out = str(tmp / "out")  # must never be created
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    grade = ["grade", "serving", "reference", "--profile", "smoke", "--out", out]
    cases = {
        "no scheme": ([*grade, "--reference-url", "127.0.0.1:8200", "--allow-network"],
                      "is not http(s)://HOST:PORT; pass the root of an OpenAI-compatible server"),
        "a path": ([*grade, "--reference-url", "http://127.0.0.1:8200/v1", "--allow-network"], "without /v1"),
        "no port": ([*grade, "--reference-url", "http://127.0.0.1", "--allow-network"], "is not http(s)://HOST:PORT"),
        "dead port": ([*grade, "--reference-url", dead, "--allow-network"],
                      f"nothing answers at {dead} (ConnectError"),
        "another lab": (["grade", "rag", "reference", "--out", out, "--reference-url", dead],
                        "--reference-url is for the serving lab"),
    }
    if netns.unavailable() is None:  # as root with unshare: the loopback-only namespace cannot reach the server
        cases["network namespace"] = ([*grade, "--reference-url", dead], "add --allow-network")

    def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(AILAB), *argv], capture_output=True, text=True, timeout=120, env=ENV, cwd=tmp)

    with ThreadPoolExecutor(max_workers=3) as pool:
        runs = dict(zip(cases, pool.map(run, [argv for argv, _ in cases.values()])))
    assert not Path(out).exists(), "a refused command must not start grading"
    return {name: (cases[name][1], runs[name]) for name in cases}


@pytest.mark.parametrize("name", ["no scheme", "a path", "no port", "dead port", "another lab", "network namespace"])
def test_bad_reference_url_is_refused_in_one_line(refused: dict, name: str) -> None:
    if name not in refused:
        pytest.skip("not root or no `unshare`: the grader does not isolate the network here")
    says, done = refused[name]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ailab grade: error: --reference-url"), lines
    assert says in lines[0], lines[0]
    if name == "dead port":  # says what to start
        assert "vllm serve $(python -m reference_systems.serving.model tiny-gpt2) --dtype float32 --port 8200" in lines[0]
