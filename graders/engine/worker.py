"""The sandboxed worker: imports one submission and serves its lab's adapters over HTTP on 127.0.0.1.

Started by `graders.engine.sandbox.Worker` as
    python -m graders.engine.worker --module candidate.py --adapters graders.rag.adapters --port N
Endpoints: GET /health, POST /call {"fn", "args"} and POST /search {"query", "k"} (the hot path
under load). Only functions listed in the adapters module's `EXPORTS` can be called. Calls run one
at a time, like a single-worker server, so candidate code need not be thread-safe and the
candidate and the reference are measured under the same serving discipline. `graders.engine.guard`
is installed before the submission loads.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType
from typing import Any

from graders.engine import guard

MAX_BODY = 64 * 1024 * 1024


def load_submission(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location("submission", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["submission"] = module
    spec.loader.exec_module(module)
    return module


def describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) < 2000 else text[:2000] + " ..."


class JsonHandler(BaseHTTPRequestHandler):
    """A quiet JSON-over-HTTP handler answering `health_path` with {"ok", "error"}: the shape every sandboxed
    submission host speaks (this worker, graders.agents.host). Subclasses give `load_error()` and POST routes."""
    health_path = "/health"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @staticmethod
    def json_default(value: Any) -> Any:
        return _jsonable(value)

    def load_error(self) -> str | None:
        raise NotImplementedError

    def _reply(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, default=self.json_default).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == self.health_path:
            error = self.load_error()
            self._reply(200, {"ok": error is None, "error": error})
        else:
            self._reply(404, {"ok": False, "error": f"no route {self.path}"})


class Handler(JsonHandler):
    server_version = "ailab-worker"
    state: dict[str, Any] = {}
    lock = threading.Lock()

    def load_error(self) -> str | None:
        return self.state["error"]

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        if length > MAX_BODY:
            self._reply(413, {"ok": False, "error": "request too large"})
            return
        try:
            request = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError as exc:
            self._reply(400, {"ok": False, "error": f"bad JSON: {exc}"})
            return
        if self.state["error"] is not None:
            self._reply(200, {"ok": False, "error": self.state["error"]})
            return
        adapters = self.state["adapters"]
        if self.path == "/search":
            fn_name, args = "search", {"query": request.get("query", ""), "k": int(request.get("k", 10))}
        elif self.path == "/call":
            fn_name, args = str(request.get("fn", "")), dict(request.get("args", {}))
        else:
            self._reply(404, {"ok": False, "error": f"no route {self.path}"})
            return
        if fn_name not in adapters.EXPORTS:
            self._reply(404, {"ok": False, "error": f"unknown function {fn_name!r}"})
            return
        started = time.perf_counter()
        with self.lock:
            try:
                result = getattr(adapters, fn_name)(self.state["module"], **args)
                payload = {"ok": True, "result": result}
            except BaseException as exc:  # noqa: BLE001 - every candidate failure becomes a reply
                payload = {"ok": False, "error": describe(exc) + where(exc, self.state["module_path"]),
                           "traceback": traceback.format_exc()[-4000:]}
        payload["seconds"] = time.perf_counter() - started
        self._reply(200, payload)


def where(exc: BaseException, module_path: str) -> str:
    """' (notebook cell N, line L)' for the deepest frame in the submission, using the extractor's cell markers."""
    line = getattr(exc, "lineno", None) if isinstance(exc, SyntaxError) else None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename.endswith(module_path):
            line = frame.lineno
    if not line:
        return ""
    try:
        lines = open(module_path, encoding="utf-8").read().splitlines()
    except OSError:
        return ""
    for i in range(min(line, len(lines)) - 1, -1, -1):
        if lines[i].startswith("# --- cell "):
            cell = lines[i].removeprefix("# --- cell ").rstrip(" -")
            return f" (notebook cell {cell} counting from the top, line {line - i - 1} of that cell)"
    return f" (line {line})"


def _jsonable(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"returned a {type(value).__name__}, which is not plain data (str, int, float, list, dict)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--module", required=True)
    parser.add_argument("--adapters", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()

    guard.install()  # before anything of the submission runs: the reference is not the submission's to use
    adapters = importlib.import_module(args.adapters)
    error = None
    module = None
    try:
        module = load_submission(args.module)
        error = adapters.validate(module)
    except BaseException as exc:  # noqa: BLE001 - SyntaxError, ImportError, SystemExit, anything at import
        error = f"the submission failed while loading: {describe(exc)}{where(exc, args.module)}"
    Handler.state = {"module": module, "adapters": adapters, "error": error, "module_path": args.module}
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"worker ready on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
