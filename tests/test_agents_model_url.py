"""`ailab grade agents SUB --model-url URL --model NAME`: the agents lab against an OpenAI-compatible model someone
already runs, in place of the scripted one the grader serves itself (graders/agents/upstream.py).

The "external" model here is the lab's own scripted policy model, started standalone as a separate process on
127.0.0.1 (`python -m reference_systems.agents.policy_model`). It accepts only its own served name (404 otherwise)
and only the API key in $AILAB_MODEL_API_KEY (401 otherwise), so every conversation that ends right proves the
desk forwarded the agent's completions there with the right `model` and key; its own token totals
(GET /ailab/usage) must equal what the scorecard counted per conversation from the replies' `usage`. One smoke
grade of the reference through the real `ailab` command; bad input is refused in one line (as in
tests/test_cli_errors.py) before anything is graded.
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
from graders.engine.sandbox import free_port

pytestmark = pytest.mark.timing  # compares speed with the reference (tests/conftest.py)

AILAB = Path(sys.executable).parent / "ailab"
KEY = "sk-ailab-test-7f3c9e1d"  # a made-up key: it must reach the server and nothing written
NAME = "external-support-policy"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "AILAB_MODEL_API_KEY": KEY}


@pytest.fixture(scope="module")
def external(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL (…/v1) of the scripted model served standalone by its own process on 127.0.0.1."""
    port = free_port()
    log = tmp_path_factory.mktemp("external-model") / "server.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "reference_systems.agents.policy_model", "--port", str(port),
                                 "--served-model-name", NAME, "--api-key-env", "AILAB_MODEL_API_KEY"],
                                env=ENV, stdout=sink, stderr=subprocess.STDOUT)
    root = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "the standalone policy model did not start in 30 s"
            try:
                if httpx.get(root + "/ailab/usage", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        yield root + "/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_reference_graded_against_an_external_model(external: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    started = time.perf_counter()
    done = subprocess.run([str(AILAB), "grade", "agents", "reference", "--profile", "smoke", "--out", str(out),
                           "--model-url", external, "--model", NAME, "--model-prices", "1,2",
                           "--allow-network"],  # as root: the server is outside the grader's network namespace
                          capture_output=True, text=True, timeout=300, env=ENV)
    seconds = time.perf_counter() - started
    assert done.returncode == 0, done.stderr[-3000:]
    print(f"\n[model-url] smoke grade of the reference against {external}: {seconds:.1f} s")
    card = json.loads((out / "reference" / "scorecard.json").read_text())
    served = httpx.get(external.removesuffix("/v1") + "/ailab/usage", timeout=5).json()

    assert card["score"] >= 95, card["parts"]  # the same model on both sides, and every completion answered
    assert card["metrics"]["violations"] == 0 and card["metrics"]["trace_conformance"] == 1.0  # spans = desk's usage
    env = card["environment"]
    assert env["model"] == NAME and env["model_url"] == external and env["model_host"] == external.split("/")[2]
    assert "external" in env["model_kind"] and env["model_usage"] == "the server's `usage`"
    assert env["prices"] == {"input_usd_per_1m": 1.0, "output_usd_per_1m": 2.0}
    assert f"model: '{NAME}' at {external}" in done.stderr
    assert f"at {external} (--model-url)" in (out / "reference" / "report.html").read_text()

    # tokens: what the external server served, all of it counted per conversation (candidate and reference sides)
    sides = [card["metrics"], card["reference"]["metrics"]]
    n = 16 * 2  # smoke: 16 tasks x k = 2 per side
    assert served["completions"] > 2 * n and served["prompt_tokens"] > 0
    assert round(sum(m["tokens_per_conversation"] * n for m in sides)) == \
        served["prompt_tokens"] + served["completion_tokens"]
    cost = sum(m["cost_per_resolved_usd"] * m["success_rate"] * n for m in sides)  # priced with --model-prices
    assert cost == pytest.approx((served["prompt_tokens"] * 1 + served["completion_tokens"] * 2) / 1e6, rel=1e-3)

    written = [p for p in out.rglob("*") if p.is_file() and KEY in p.read_text(errors="replace")]
    assert not written and KEY not in done.stderr + done.stdout, written


def test_an_unreachable_model_url_is_refused_in_one_line(tmp_path: Path) -> None:
    """Through the real `ailab` command: nothing listens at the URL, and (as root, where the grader isolates the
    network) no --allow-network. Exit 2, one line that says what to do, nothing graded."""
    out = str(tmp_path / "out")  # must never be created
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    grade = ["grade", "agents", "reference", "--profile", "smoke", "--out", out, "--model-url", dead]
    cases = {"unreachable": ([*grade, "--allow-network"], f"--model-url: nothing answers at {dead}/models (ConnectError")}
    if netns.unavailable() is None:  # as root with unshare: the loopback-only namespace cannot reach the server
        cases["network namespace"] = (grade, "add --allow-network")

    def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(AILAB), *argv], capture_output=True, text=True, timeout=60, env=ENV, cwd=tmp_path)

    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = dict(zip(cases, pool.map(run, [argv for argv, _ in cases.values()])))
    assert not Path(out).exists(), "a refused command must not start grading"
    for name, done in runs.items():
        assert done.returncode == 2 and "Traceback" not in done.stderr, (name, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("ailab grade: error: --model-url"), (name, lines)
        assert cases[name][1] in lines[0] and KEY not in lines[0], (name, lines[0])
    assert "start the model server first" in runs["unreachable"].stderr


@pytest.mark.parametrize(("argv", "says"), [
    (["--model-url", "127.0.0.1:8000/v1"], "is not http(s)://HOST[:PORT]/PATH; pass the base URL"),
    (["--model-url", "https://user:pw@example.com/v1"], "never in the URL"),
    (["--model", NAME], "--model and --model-prices go with --model-url URL"),
    (["--model-url", "http://127.0.0.1:8000/v1", "--model-prices", "cheap"], "is not INPUT,OUTPUT"),
    (["--model-url", "http://127.0.0.1:8000/v1", "--workers", "2"], "not supported with --workers"),
])
def test_bad_model_flags_are_refused_in_one_line(argv: list[str], says: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The same command in this process (no server is reached: each is refused before)."""
    from graders.cli import main

    out = tmp_path / "out"
    assert main(["grade", "agents", "reference", "--out", str(out), "--allow-network", *argv]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ailab grade: error: --model"), lines
    assert says in lines[0] and not out.exists()
    assert main(["grade", "rag", "reference", "--out", str(out), "--model-url", "http://127.0.0.1:8000/v1"]) == 2
    assert "are for the agents lab" in capsys.readouterr().err
