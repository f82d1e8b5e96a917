"""The workshop hub end to end: `ailab hub` starts JupyterHub (deploy/jupyterhub/jupyterhub_config.py) on 127.0.0.1,
a candidate logs in, fetches the agents lab from nbgrader's exchange, works in JupyterLab and submits; the
organiser collects and grades the submission with `ailab grade --course`.

Everything is real and local: JupyterHub, the pure-Python configurable-http-proxy, the candidate's
jupyterhub-singleuser server (SimpleLocalProcessSpawner), nbgrader's assignment-list REST handlers in it, a
kernel reached through the proxy's websocket, nbgrader's exchange and collect, and a smoke-profile grading run.
The candidate's "work" is the agents lab's naive example, written into the fetched notebook's answer cells
through the contents API.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import nbformat
import pytest
from tornado.httpclient import HTTPRequest

from graders.course import run_nbgrader
from graders.paths import LABS_DIR

NAIVE = LABS_DIR / "agents" / "examples" / "naive.ipynb"
STUDENT = "alice"
# How long `ailab hub` may take to answer. This bounds a start that never ends, not how fast it is: it answers in
# ~19 s on an idle 2-core machine (two nbgrader runs release the lab, then JupyterHub starts), but it took over
# 120 s in clean-clone run 15, beside six observability grades starting at once.
HUB_READY_S = 300


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(nb: Any) -> dict[str, str]:
    """grade_id -> source of the cells a candidate writes (code answers and the written answer)."""
    return {c.metadata["nbgrader"]["grade_id"]: c.source for c in nb.cells
            if c.metadata.get("nbgrader", {}).get("solution")}


def _wait(what: str, until: Any, hub: subprocess.Popen[bytes], log: Path, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        assert hub.poll() is None, f"ailab hub exited ({hub.returncode}): {log.read_text()[-4000:]}"
        try:
            found = until()
        except httpx.TransportError:
            found = None
        if found:
            return found
        assert time.monotonic() < deadline, f"{what} within {timeout:.0f} s: {log.read_text()[-4000:]}"
        time.sleep(0.3)


def _stop(hub: subprocess.Popen[bytes]) -> int:
    """SIGTERM to JupyterHub (ailab hub exec'd it), which stops the proxy and the servers; the group if it hangs."""
    if hub.poll() is None:
        hub.send_signal(signal.SIGTERM)
        try:
            hub.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(hub.pid, signal.SIGKILL)
            hub.wait()
    return hub.returncode


def _login(browser: httpx.Client, password: str) -> None:
    """Log a browser-like session in: the hub's login form (with its XSRF field), then its cookie."""
    form = browser.get("/hub/login")
    assert form.status_code == 200, form.text[:500]
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', form.text)
    fields = {"_xsrf": xsrf.group(1)} if xsrf else {}
    wrong = browser.post("/hub/login", data={**fields, "username": STUDENT, "password": "not-the-password"})
    assert wrong.status_code == 403, "the shared password is enforced"
    ok = browser.post("/hub/login", data={**fields, "username": STUDENT, "password": password})
    assert ok.status_code == 302, ok.text[:500]


def test_the_shared_password_is_given_or_made_once_and_kept_private(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from graders.hub import password

    (tmp_path / "hub").mkdir()
    monkeypatch.delenv("AILAB_HUB_PASSWORD", raising=False)
    made = password(tmp_path)
    assert len(made) >= 8 and password(tmp_path) == made, "made once, then read back"
    assert (tmp_path / "hub" / "password").stat().st_mode & 0o777 == 0o600
    monkeypatch.setenv("AILAB_HUB_PASSWORD", "short")
    with pytest.raises(SystemExit, match="at least 8 characters"):
        password(tmp_path)
    monkeypatch.setenv("AILAB_HUB_PASSWORD", "a-workshop-password")
    assert password(tmp_path) == "a-workshop-password"


def test_hub_refuses_a_file_or_an_unknown_lab(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from graders.cli import main

    (tmp_path / "file").write_text("")
    for args, said in ((["hub", str(tmp_path / "file")], "is a file; pass a folder"),
                       (["hub", str(tmp_path / "w"), "--labs", "nope"], "unknown lab 'nope'")):
        assert main(args) == 2
        assert said in capsys.readouterr().err
    assert not (tmp_path / "w").exists(), "nothing is made before the input is checked"


@pytest.mark.slow
def test_a_candidate_fetches_works_and_submits_through_the_hub_and_the_organiser_grades_it(tmp_path: Path) -> None:
    pytest.importorskip("jupyterhub", reason="jupyterhub is not installed (it is an ailab dependency: make .venv)")
    from test_jupyterlab_smoke import _run_in_kernel

    workshop, port = tmp_path / "workshop", _free_port()
    password, organiser = secrets.token_urlsafe(12), secrets.token_hex(24)
    base, log = f"http://127.0.0.1:{port}", tmp_path / "hub.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "AILAB_HUB_PASSWORD": password, "AILAB_HUB_API_TOKEN": organiser}
    with open(log, "wb") as out:
        hub = subprocess.Popen([sys.executable, "-m", "graders.cli", "hub", str(workshop), "--labs", "agents",
                                "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT,
                               start_new_session=True)
    course, home = workshop / "course", workshop / "home" / STUDENT
    clients = ExitStack()
    admin = clients.enter_context(
        httpx.Client(base_url=f"{base}/hub/api", headers={"Authorization": f"token {organiser}"}, timeout=30))
    try:
        _wait("the hub answers", lambda: admin.get("/").status_code == 200, hub, log, HUB_READY_S)
        assert (workshop / "exchange" / "ailab" / "outbound" / "agents" / "agents.ipynb").exists(), "released"

        assert admin.post(f"/users/{STUDENT}").status_code == 201, "the organiser registers the candidate"
        browser = clients.enter_context(httpx.Client(base_url=base, timeout=30))
        _login(browser, password)
        started = admin.post(f"/users/{STUDENT}/server")
        assert started.status_code in (201, 202), started.text
        _wait("the candidate's server is ready",
              lambda: admin.get(f"/users/{STUDENT}").json()["servers"].get("", {}).get("ready"), hub, log, 90)

        lab = browser.get(f"/user/{STUDENT}/lab", follow_redirects=True)  # the hub's OAuth hand-off, cookies only
        assert lab.status_code == 200 and "JupyterLab" in lab.text, lab.text[:500]
        assert '"@jupyter/nbgrader:formgrader"' in lab.text, "the instructor's formgrader is off for candidates"

        token = admin.post(f"/users/{STUDENT}/tokens", json={"note": "test_hub"}).json()["token"]
        user = clients.enter_context(
            httpx.Client(base_url=f"{base}/user/{STUDENT}", headers={"Authorization": f"token {token}"}, timeout=60))
        listed = user.get("/assignments", params={"course_id": "ailab"}).json()
        assert listed["success"] and [(a["assignment_id"], a["status"]) for a in listed["value"]] == [
            ("agents", "released")]
        assert user.get("/formgrader").status_code == 404

        fetched = user.post("/assignments/fetch", data={"course_id": "ailab", "assignment_id": "agents"}).json()
        assert fetched["success"], fetched
        served = user.get("/api/contents/agents/agents.ipynb").json()
        nb = nbformat.from_dict(served["content"])
        assert (home / "agents" / "agents.ipynb").exists() and "BEGIN SOLUTION" not in json.dumps(served)
        work = _answers(nbformat.read(NAIVE, as_version=4))
        assert set(work) == set(_answers(nb)), "the example answers the release notebook's cells"
        for cell in nb.cells:
            if cell.metadata.get("nbgrader", {}).get("grade_id") in work:
                cell.source = work[cell.metadata["nbgrader"]["grade_id"]]
        saved = user.put("/api/contents/agents/agents.ipynb", json={"type": "notebook", "content": nb})
        assert saved.status_code == 200, saved.text

        session = user.post("/api/sessions", json={"path": "agents/agents.ipynb", "type": "notebook",
                                                   "name": "agents.ipynb", "kernel": {"name": "python3"}})
        assert session.status_code == 201, session.text
        kernel = session.json()["kernel"]["id"]
        channels = HTTPRequest(f"ws://127.0.0.1:{port}/user/{STUDENT}/api/kernels/{kernel}/channels",
                               headers={"Authorization": f"token {token}"})
        printed = asyncio.run(_run_in_kernel(
            channels, "import os, labkit; print(os.environ['JUPYTERHUB_USER'], os.getcwd())"))
        assert printed.split() == [STUDENT, str(home / "agents")], "a kernel through the proxy, in the candidate's home"
        assert user.delete(f"/api/sessions/{session.json()['id']}").status_code == 204

        submitted = user.post("/assignments/submit", data={"course_id": "ailab", "assignment_id": "agents"}).json()
        assert submitted["success"], submitted
        inbound = list((workshop / "exchange" / "ailab" / "inbound").glob(f"{STUDENT}+agents+*"))
        assert len(inbound) == 1, "the submission is named by the hub user, not the system user"

        run_nbgrader(course, "collect", "agents", timeout=120)  # the organiser, while the hub still runs
    finally:
        pid = None
        if hub.poll() is None:
            try:
                pid = admin.get(f"/users/{STUDENT}").json()["servers"][""]["state"]["pid"]
            except (httpx.HTTPError, KeyError, ValueError):
                pass
        clients.close()
        code = _stop(hub)
    assert code == 0, log.read_text()[-3000:]
    if pid is not None:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # the candidate's server went with the hub
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "the proxy went with the hub"

    collected = course / "submitted" / STUDENT / "agents" / "agents.ipynb"
    assert _answers(nbformat.read(collected, as_version=4)) == work
    out = tmp_path / "graded"
    graded = subprocess.run([sys.executable, "-m", "graders.cli", "grade", "agents", "--course", str(course), "--out",
                             str(out), "--profile", "smoke", "--workers", "1"],  # the Dask path, on one local worker
                            env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=300)
    assert graded.returncode == 0, graded.stderr[-3000:]
    card = json.loads((out / STUDENT / "scorecard.json").read_text())
    assert 5 < card["score"] < 90, "the naive agent scores, but well below the reference"
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", course_id="ailab") as gb:
        assert gb.find_submission("agents", STUDENT).code_score == pytest.approx(card["score"], abs=0.06)
