"""JupyterLab smoke test: a candidate's `ailab start rag --no-lab` workspace under a real `jupyter lab` server.

The server (127.0.0.1, a token, a throwaway config dir) must serve the release notebook over its REST
API and run code in a kernel for it (over the kernel websocket, as the browser does). The candidate's part is then played by the reference: each answer cell
of the served notebook gets the source notebook's solution (nbgrader's own grade_id pairs them), the
notebook is saved back through the API and executed headless with nbclient, so every visible test cell
runs against the reference solution. As in test_notebook_lifecycle, the `ailab-exclude` exploration
cells are dropped: they embed the whole dev corpus and are not part of a submission.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import nbformat
import pytest
from nbclient import NotebookClient
from tornado.websocket import websocket_connect

from graders.paths import LABS_DIR

SOURCE = LABS_DIR / "rag" / "source" / "rag" / "rag.ipynb"
MARKER = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n?", re.MULTILINE)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _script(name: str) -> list[str]:
    path = Path(sys.executable).parent / name
    return [str(path)] if path.exists() else [sys.executable, "-m", name]


def _nbgrader(cell: Any) -> dict[str, Any]:
    return dict(cell.metadata.get("nbgrader", {}))


async def _run_in_kernel(url: str, code: str, timeout: float = 60) -> str:
    """Execute `code` in a kernel through the server's websocket (Jupyter's JSON protocol); returns its stdout."""
    msg_id = uuid.uuid4().hex
    header = {"msg_id": msg_id, "msg_type": "execute_request", "username": "smoke", "session": uuid.uuid4().hex,
              "version": "5.3", "date": datetime.now(timezone.utc).isoformat()}
    content = {"code": code, "silent": False, "store_history": False, "user_expressions": {}, "allow_stdin": False,
               "stop_on_error": True}
    conn = await asyncio.wait_for(websocket_connect(url), timeout)
    try:
        conn.write_message(json.dumps({"header": header, "parent_header": {}, "metadata": {}, "content": content,
                                       "channel": "shell", "buffers": []}))
        out, replied, idle = [], False, False
        while not (replied and idle):  # shell and iopub are separate channels: outputs may trail the reply
            raw = await asyncio.wait_for(conn.read_message(), timeout)
            assert raw is not None, "the kernel's websocket closed"
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])
            elif msg["msg_type"] == "execute_reply":
                assert msg["content"]["status"] == "ok", msg["content"]
                replied = True
            elif msg["msg_type"] == "status":
                idle = msg["content"]["execution_state"] == "idle"
        return "".join(out)
    finally:
        conn.close()
        # The close handshake needs the event loop: wait for the stream to close (the server's close frame, or
        # tornado's own abort after 5 s) before asyncio.run ends, or its socket may stay open until garbage
        # collection raises a ResourceWarning (suspected, not proven, in clean-clone runs 16 and 17).
        with contextlib.suppress(asyncio.TimeoutError):
            while await asyncio.wait_for(conn.read_message(), 10) is not None:
                pass


def _solve(notebook: dict[str, Any]) -> nbformat.NotebookNode:
    """The served release notebook with the reference's answers in its answer cells, explorations dropped."""
    solutions = {_nbgrader(c)["grade_id"]: MARKER.sub("", c.source)
                 for c in nbformat.read(SOURCE, as_version=4).cells if _nbgrader(c).get("solution")}
    nb = nbformat.from_dict(notebook)
    nb.cells = [c for c in nb.cells if "ailab-exclude" not in c.metadata.get("tags", [])]
    answers = [c for c in nb.cells if _nbgrader(c).get("solution") and c.cell_type == "code"]
    assert len(answers) == 7 and all("raise NotImplementedError" in c.source for c in answers)
    for cell in answers:
        cell.source = solutions[_nbgrader(cell)["grade_id"]]
    return nb


@pytest.mark.slow
def test_release_workspace_served_by_jupyterlab_passes_visible_tests_on_the_reference(tmp_path: Path):
    ws = tmp_path / "ws"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime")}
    started = subprocess.run([*_script("ailab"), "start", "rag", "--dir", str(ws), "--no-lab"], env=env,
                             capture_output=True, text=True, timeout=180)
    assert started.returncode == 0, started.stderr
    assert (ws / "rag.ipynb").exists() and "ailab check" in (ws / "README.md").read_text()

    token, port = secrets.token_hex(16), _free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "jupyter.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [*_script("jupyter"), "lab", "--no-browser", "--ip", "127.0.0.1", "--port", str(port),
             "--ServerApp.port_retries=0", f"--ServerApp.token={token}", f"--ServerApp.root_dir={ws}", "--allow-root"],
            cwd=ws, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        with httpx.Client(base_url=base, headers={"Authorization": f"token {token}"}, timeout=30) as api:
            deadline = time.monotonic() + 90
            while True:
                assert server.poll() is None, f"jupyter lab exited: {log.read_text()[-3000:]}"
                try:
                    if api.get("/api/status").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, f"jupyter lab never answered: {log.read_text()[-3000:]}"
                time.sleep(0.5)

            assert httpx.get(f"{base}/api/contents/rag.ipynb", timeout=10).status_code == 403, "the token is enforced"
            listing = api.get("/api/contents/").json()
            assert {"rag.ipynb", "README.md"} <= {item["name"] for item in listing["content"]}
            served = api.get("/api/contents/rag.ipynb").json()
            assert served["type"] == "notebook" and served["writable"]
            text = str(served["content"])
            assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text
            page = api.get("/lab/tree/rag.ipynb")
            assert page.status_code == 200 and "JupyterLab" in page.text

            session = api.post("/api/sessions", json={"path": "rag.ipynb", "type": "notebook", "name": "rag.ipynb",
                                                      "kernel": {"name": "python3"}})
            assert session.status_code == 201, session.text
            kernel_id = session.json()["kernel"]["id"]
            ws_url = f"ws://127.0.0.1:{port}/api/kernels/{kernel_id}/channels?token={token}"
            printed = asyncio.run(_run_in_kernel(ws_url, "import os, labkit; print(os.getcwd())"))
            assert printed.strip() == str(ws), "the notebook's kernel runs in the workspace, with the lab's packages"
            assert api.delete(f"/api/sessions/{session.json()['id']}").status_code == 204

            solved = _solve(served["content"])
            saved = api.put("/api/contents/rag.ipynb", json={"type": "notebook", "format": "json", "content": solved})
            assert saved.status_code == 200, saved.text

        nb = nbformat.read(ws / "rag.ipynb", as_version=4)
        assert [c.source for c in nb.cells] == [c.source for c in solved.cells]
        NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ws)}}).execute()
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()

    tests = [c for c in nb.cells if _nbgrader(c).get("grade") and not _nbgrader(c).get("solution")]
    assert len(tests) == 9, "one test cell per task, two for task 5.1"
    for cell in tests:
        assert cell.execution_count, f"{_nbgrader(cell)['grade_id']} did not run"
        assert not [o for o in cell.outputs if o.output_type == "error"], _nbgrader(cell)["grade_id"]
