"""Run a submission in its own process: scratch folder, scrubbed environment, rlimits, another user, wall timeouts.

`Worker` starts `graders.engine.worker` in a new session (so the whole process group can be
killed), waits for it to answer /health, and offers `call()` with a per-call timeout. A worker
that hangs or dies is killed and reported as a `WorkerError` with a message meant for people.

When the grader runs as root, each worker runs under a user id of its own (no passwd entry, no
files, nothing else runs as it): it cannot read the grader's private files, signal or trace the
reference worker, and everything it started — even processes that left its session — is killed
with one `kill(-1)` issued as that user, and it sees of the repository only what it needs (no reference
implementation, no source notebooks, no git history). Everywhere, the worker installs
`graders.engine.guard` before loading the submission; what it refuses comes back here (`refusals`) and
into the scorecard's integrity. `AILAB_SANDBOX_USER=same` runs workers as the grader's user (debugging);
`AILAB_SANDBOX_USER=<name>` runs them as that account (e.g. `nobody`). See docs/isolation.md.
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from graders.engine import guard
from graders.paths import cache_dir
from graders.engine.sandbox_user import (NPROC, _become, _die_with_parent, _is_trusted, _kill_user, _merge_cache,
                                         _open_model_cache, _signal_user, _sweep_tmp, can_hide_repo, mount_plan,
                                         sandbox_identity, sees_reference)

MAX_READBACK = 1024 * 1024  # bytes of worker stderr/stdout ever read back
MAX_REPLY = 64 * 1024 * 1024  # bytes of one reply from a submission's process
MAX_REFUSALS_READ = 64 * 1024  # bytes of the guard's refusal reports ever read back
FILE_MB = 256  # largest file (and log) a submission may write
CPU_S = 3600.0  # default CPU-seconds of a worker; the reference worker serves a whole batch's load rounds


class WorkerError(RuntimeError):
    """The submission could not answer: it crashed, hung, or broke the protocol."""


class OversizedReply(WorkerError):
    """A reply from the submission's process was larger than the grader reads."""


def read_bounded(client: httpx.Client, method: str, url: str, limit: int, cut: bool = False,
                 **kwargs: Any) -> tuple[int, bytes]:
    """(status, body) of one request to a submission's process, reading at most `limit` bytes of body:
    an endless or gigabyte reply raises OversizedReply (or, with `cut`, comes back cut at `limit` bytes)
    instead of filling the grader's memory."""
    with client.stream(method, url, **kwargs) as reply:
        body = bytearray()
        for chunk in reply.iter_raw():
            body += chunk
            if len(body) > limit:
                if cut:
                    return reply.status_code, bytes(body[:limit])
                raise OversizedReply(f"{method} {url}: more than {limit} bytes")
        return reply.status_code, bytes(body)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _limits(memory_mb: int, file_mb: int = FILE_MB, cpu_s: float | None = None) -> None:
    _die_with_parent()
    if memory_mb > 0:  # 0: no address-space limit (CUDA reserves far more address space than any sane limit)
        resource.setrlimit(resource.RLIMIT_AS, (memory_mb * 1024 * 1024,) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_mb * 1024 * 1024,) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if cpu_s:  # SIGXCPU at the soft limit, SIGKILL a few seconds later for a process that ignores it
        resource.setrlimit(resource.RLIMIT_CPU, (int(cpu_s), int(cpu_s) + 5))


def candidate_cpu_s(name: str, lab: Any) -> float:
    """A candidate's CPU-time limit (lab.toml limits.cpu_s); the reference serves a whole batch, so it keeps CPU_S."""
    return CPU_S if name == "reference" else float(lab.limits.cpu_s)


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


_TRUSTED_ALIVE: list[Worker] = []
_REFUSED: dict[str, list[str]] = {}  # submission name -> what the guard refused its processes, until taken


def take_refusals(name: str) -> list[str]:
    """What the guard refused the processes of the submission `name` since the last call (each once)."""
    return list(dict.fromkeys(_REFUSED.pop(name, [])))


# ------------------------------------------------------------------ the worker


class Worker:
    """A submission's worker process; use as a context manager."""

    def __init__(self, module_source: str, adapters: str, *, name: str, memory_mb: int, start_timeout_s: float,
                 labels: dict[str, str] | None = None, command: list[str] | None = None,
                 health_path: str = "/health", cpu_s: float | None = CPU_S):
        """`command` (after `python -m`) replaces the RAG adapter worker, e.g. the serving lab's host;
        `{port}` in it is filled in. Whatever runs must answer `health_path` with {"ok": bool, "error": str}.
        `cpu_s` caps the worker's CPU time (RLIMIT_CPU; None: no cap)."""
        self.name = name
        self.health_path = health_path
        self.labels = labels or {}  # adapter name -> what the candidate wrote, for messages ("Retriever.index")
        self.adapters = adapters
        self.memory_mb = memory_mb
        self.cpu_s = cpu_s
        self.start_timeout_s = start_timeout_s
        self.trusted = _is_trusted(module_source)
        self.sees_reference = sees_reference(module_source)  # the reference itself (or a vouched test fixture)
        self.refusals: list[str] = []  # what the guard refused this process (graders.engine.guard)
        self.identity = sandbox_identity()
        self.mounts = mount_plan(not self.sees_reference and can_hide_repo()) if self.identity is not None else ()
        self.scratch = Path(tempfile.mkdtemp(prefix=f"ailab-{name[:20]}-"))
        # the log lives outside the scratch folder: a submission could swap a file there for a link to a secret
        self.logdir = Path(tempfile.mkdtemp(prefix="ailab-log-"))
        self.log_path = self.logdir / "worker.log"
        self.refusals_path = self.logdir / "refused.txt"  # the guard's reports, on a descriptor the worker inherits
        (self.scratch / "candidate.py").write_text(module_source, encoding="utf-8")
        if self.identity is not None:
            uid, gid, _ = self.identity
            (self.scratch / "cache").mkdir()
            for path in (self.scratch, self.scratch / "cache"):
                os.chown(path, uid, gid)
            _open_model_cache()
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

    def env(self) -> dict[str, str]:
        env = scrubbed_env(self.scratch)
        env["TMPDIR"] = str(self.scratch)
        if self.sees_reference:
            env[guard.SWITCH_ENV] = "off"
        if self.identity is not None:
            # read the shared embedding cache, write new vectors here: a submission cannot poison the shared one
            env["AILAB_PRIVATE_CACHE"] = str(self.scratch / "cache")
            env["USER"] = env["LOGNAME"] = "ailab-sandbox"  # no passwd entry: getpass must not look one up
        return env

    def _preexec(self) -> None:
        _limits(self.memory_mb, cpu_s=self.cpu_s)
        if self.identity is not None:
            _become(*self.identity, self.mounts)

    def start(self) -> None:
        for trusted in list(_TRUSTED_ALIVE):  # e.g. the reference's corpus vectors, for this submission to reuse
            _merge_cache(trusted.scratch / "cache")
        self.log = open(self.log_path, "wb")
        reports = os.open(self.refusals_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", *self.command],
                cwd=self.scratch,
                env={**self.env(), guard.FD_ENV: str(reports)},
                stdin=subprocess.DEVNULL,
                stdout=self.log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=self._preexec,
                pass_fds=(reports,),
            )
        finally:
            os.close(reports)
        if self.trusted and self.identity is not None:
            _TRUSTED_ALIVE.append(self)
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise WorkerError(
                    f"the submission's process exited while starting ({self.exit_reason()}). "
                    f"Last output:\n{self.output_tail()}"
                )
            try:
                health = self.client.get(self.health_path, timeout=2).json()
            except (httpx.HTTPError, ValueError):
                time.sleep(0.2)
                continue
            if not health["ok"]:
                self.stop()
                raise WorkerError(explain(str(health["error"])))
            return
        self.stop()
        raise WorkerError(
            f"the submission did not finish loading within {self.start_timeout_s:.0f} s "
            "(an endless loop or heavy work at import time?); keep top-level cells cheap "
            "and move exploration into cells tagged ailab-exclude"
        )

    def exit_reason(self) -> str:
        code = self.proc.returncode if self.proc is not None else None
        if code == -signal.SIGXCPU:
            return f"killed after using its {self.cpu_s or 0:.0f} CPU-seconds (RLIMIT_CPU)"
        if code is not None and code < 0:
            return f"killed by signal {signal.Signals(-code).name}"
        return f"exit code {code}"

    def call(self, fn: str, timeout_s: float, **args: Any) -> Any:
        """Call an adapter; its result, or WorkerError (candidate exception, timeout, crash)."""
        what = self.labels.get(fn, fn)
        if self.proc is None or self.proc.poll() is not None:
            raise WorkerError(f"{what} was not called: the submission's process is no longer running "
                              "(it crashed or was stopped earlier)")
        try:
            status, body = read_bounded(self.client, "POST", "/call", MAX_REPLY, json={"fn": fn, "args": args},
                                        timeout=timeout_s)
        except OversizedReply:
            raise WorkerError(f"{what} returned more than {MAX_REPLY >> 20} MiB of data; return only what the "
                              "interface asks for") from None
        except httpx.TimeoutException:
            self.stop()
            raise WorkerError(f"{what} did not finish within {timeout_s:.0f} s; the submission's process was stopped. "
                              "Look for an endless loop, or make it faster (limits are in the lab's lab.toml)") from None
        except httpx.HTTPError as exc:
            self.stop()
            raise WorkerError(f"{what}: the submission's process died ({self.exit_reason()}; {exc}); out of memory, "
                              f"too many processes or a crash in native code? Last output:\n{self.output_tail(600)}"
                              ) from None
        try:
            payload = json.loads(body)
        except ValueError:
            raise WorkerError(f"{what}: the worker sent a reply that is not JSON (status {status})") from None
        if not isinstance(payload, dict):
            raise WorkerError(f"{what}: the worker's reply is not a JSON object (status {status})")
        if not payload.get("ok"):
            raise WorkerError(explain(f"{what} raised {payload.get('error')}"))
        return payload["result"]

    def output_tail(self, limit: int = 1500) -> str:
        path = self.log_path
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
            if self.identity is not None and self.identity[2]:  # and those that left it (setsid, double fork)
                _kill_user(self.identity[0])
        if hasattr(self, "log") and not self.log.closed:
            self.log.close()

    @contextmanager
    def paused(self) -> Iterator[None]:
        """The submission stopped (SIGSTOP) while the block runs, then continued: while the reference is measured,
        work a submission leaves running in the background (a CPU burner, a child that left the process group)
        cannot slow the reference down and so lift the candidate's ratios."""
        self._signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self._signal(signal.SIGCONT)

    def _signal(self, sig: int) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        if self.identity is not None and self.identity[2]:  # its own uid: the children that left the group too
            _signal_user(self.identity[0], sig)

    def read_refusals(self) -> list[str]:
        """What the guard has refused this worker's process so far (one line each, first MAX_REFUSALS_READ bytes)."""
        try:
            with open(self.refusals_path, "rb") as f:
                lines = f.read(MAX_REFUSALS_READ).decode(errors="replace").splitlines()
        except OSError:
            return []
        return list(dict.fromkeys(line for line in lines if line.startswith(guard.REFUSAL)))[:guard.MAX_REPORTS]

    def cleanup(self) -> None:
        self.stop()
        self.client.close()
        found = self.read_refusals()  # before the log folder goes; a second cleanup finds nothing new
        if found:
            self.refusals = found
            _REFUSED.setdefault(self.name, []).extend(found)
        if self in _TRUSTED_ALIVE:
            _TRUSTED_ALIVE.remove(self)
            _merge_cache(self.scratch / "cache")
        if self.identity is not None and self.identity[2]:
            _sweep_tmp(self.identity[0])
        shutil.rmtree(self.scratch, ignore_errors=True)
        shutil.rmtree(self.logdir, ignore_errors=True)


def explain(error: str) -> str:
    """Add the plain-words cause to errors that are the sandbox's limits at work."""
    hints = {
        "[Errno 27] File too large": f"the submission wrote more than the {FILE_MB} MiB file/output limit",
        "MemoryError": "the submission ran out of its memory limit (limits.memory_mb in the lab's lab.toml)",
        "[Errno 11] Resource temporarily unavailable": f"the submission started too many processes or threads "
                                                       f"(limit {NPROC})",
        "[Errno 13] Permission denied": "the submission tried to use a file or folder it may not access",
        "[Errno 101] Network is unreachable": "the submission tried to reach the network; only 127.0.0.1 is allowed",
    }
    for needle, hint in hints.items():
        if needle in error and hint not in error:
            return f"{error} — {hint}"
    return error
