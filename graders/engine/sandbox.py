"""Run a submission in its own process: scratch folder, scrubbed environment, rlimits, wall timeouts.

`Worker` starts `graders.engine.worker` in a new session (so the whole process group can be
killed), waits for it to answer /health, and offers `call()` with a per-call timeout. A worker
that hangs or dies is killed and reported as a `WorkerError` with a message meant for people.
"""
from __future__ import annotations

import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from graders.paths import cache_dir

MAX_READBACK = 1024 * 1024  # bytes of worker stderr/stdout ever read back


class WorkerError(RuntimeError):
    """The submission could not answer: it crashed, hung, or broke the protocol."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """Linux: the worker gets SIGKILL when the grader dies, so a crashed grader leaves no orphans."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except OSError:
        pass


def _limits(memory_mb: int, file_mb: int = 512) -> None:
    _die_with_parent()
    resource.setrlimit(resource.RLIMIT_AS, (memory_mb * 1024 * 1024,) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_mb * 1024 * 1024,) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def scrubbed_env(scratch: Path) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(scratch),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        # One thread each: on a shared 2-core machine, two OpenMP threads per process spin against
        # the load generator and the other worker, and a MiniLM query embedding went from ~20 ms to ~400 ms.
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "AILAB_CACHE": str(cache_dir()),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    return env


class Worker:
    """A submission's worker process; use as a context manager."""

    def __init__(self, module_source: str, adapters: str, *, name: str, memory_mb: int, start_timeout_s: float,
                 labels: dict[str, str] | None = None, command: list[str] | None = None,
                 health_path: str = "/health"):
        """`command` (after `python -m`) replaces the RAG adapter worker, e.g. the serving lab's host;
        `{port}` in it is filled in. Whatever runs must answer `health_path` with {"ok": bool, "error": str}."""
        self.name = name
        self.health_path = health_path
        self.labels = labels or {}  # adapter name -> what the candidate wrote, for messages ("Retriever.index")
        self.adapters = adapters
        self.memory_mb = memory_mb
        self.start_timeout_s = start_timeout_s
        self.scratch = Path(tempfile.mkdtemp(prefix=f"ailab-{name[:20]}-"))
        (self.scratch / "candidate.py").write_text(module_source, encoding="utf-8")
        self.port = free_port()
        self.command = [c.replace("{port}", str(self.port)) for c in command] if command else [
            "graders.engine.worker", "--module", "candidate.py", "--adapters", adapters, "--port", str(self.port)]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def __enter__(self) -> Worker:
        try:
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def start(self) -> None:
        self.log = open(self.scratch / "worker.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", *self.command],
            cwd=self.scratch,
            env=scrubbed_env(self.scratch),
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=lambda: _limits(self.memory_mb),
        )
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise WorkerError(
                    f"the submission's process exited while starting (exit code {self.proc.returncode}). "
                    f"Last output:\n{self.output_tail()}"
                )
            try:
                health = self.client.get(self.health_path, timeout=2).json()
            except (httpx.HTTPError, ValueError):
                time.sleep(0.2)
                continue
            if not health["ok"]:
                self.stop()
                raise WorkerError(str(health["error"]))
            return
        self.stop()
        raise WorkerError(
            f"the submission did not finish loading within {self.start_timeout_s:.0f} s "
            "(an endless loop or heavy work at import time?); keep top-level cells cheap "
            "and move exploration into cells tagged ailab-exclude"
        )

    def call(self, fn: str, timeout_s: float, **args: Any) -> Any:
        """Call an adapter; its result, or WorkerError (candidate exception, timeout, crash)."""
        what = self.labels.get(fn, fn)
        if self.proc is None or self.proc.poll() is not None:
            raise WorkerError(f"{what} was not called: the submission's process is no longer running "
                              "(it crashed or was stopped earlier)")
        try:
            reply = self.client.post("/call", json={"fn": fn, "args": args}, timeout=timeout_s)
        except httpx.TimeoutException:
            self.stop()
            raise WorkerError(f"{what} did not finish within {timeout_s:.0f} s; the submission's process was stopped. "
                              "Look for an endless loop, or make it faster (limits are in the lab's lab.toml)") from None
        except httpx.HTTPError as exc:
            self.stop()
            code = self.proc.returncode if self.proc is not None else None
            raise WorkerError(f"{what}: the submission's process died (exit code {code}; {exc}); out of memory or a "
                              f"crash in native code? Last output:\n{self.output_tail(600)}") from None
        if len(reply.content) > 64 * 1024 * 1024:
            raise WorkerError(f"{what} returned more than 64 MiB of data; return only what the interface asks for")
        try:
            payload = reply.json()
        except ValueError:
            raise WorkerError(f"{what}: the worker sent a reply that is not JSON (status {reply.status_code})") from None
        if not payload.get("ok"):
            raise WorkerError(f"{what} raised {payload.get('error')}")
        return payload["result"]

    def output_tail(self, limit: int = 1500) -> str:
        path = self.scratch / "worker.log"
        if not path.exists():
            return ""
        size = path.stat().st_size
        with open(path, "rb") as f:
            f.seek(max(0, size - min(limit, MAX_READBACK)))
            return f.read().decode(errors="replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self.proc is not None:
            try:  # children the submission started stay in its process group; none may outlive it
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if hasattr(self, "log") and not self.log.closed:
            self.log.close()

    def cleanup(self) -> None:
        self.stop()
        self.client.close()
        shutil.rmtree(self.scratch, ignore_errors=True)
