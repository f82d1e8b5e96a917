"""One grade on a Dask worker: the task `grade_task`, and the grading process it starts (`python -m` this module).

A task carries one submission's bytes (workers need no shared filesystem) and the grading settings. It starts the
ordinary single-threaded grader in a process and session of its own: the lab's `grade()` on this one submission,
which starts and measures the lab's reference in that same process, on this worker, beside the submission, exactly
as `ailab grade` does on one machine. The scorecard (with the report's plot data) goes back to the client, which
alone writes OUT (graders.engine.cluster).

Why a process and not the worker's own thread: the sandbox forks workers with a `preexec_fn` and kills process
groups, which is safe in a single-threaded grader and not in a Dask worker (an event loop and executor threads).
The grading process is in its own session, so no process-group kill reaches the Dask worker; it gets SIGKILL when
the worker dies (PR_SET_PDEATHSIG), and the sandboxed processes it starts die with it, so a killed worker leaves
nothing grading. As root it runs in a loopback-only network namespace of its own (graders.engine.netns): the rule
holds on every worker while the worker itself keeps talking to the scheduler.
"""
from __future__ import annotations

import importlib
import json
import os
import pickle
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from graders.engine import netns
from graders.engine.scorecard import Scorecard
from graders.engine.sandbox_user import _die_with_parent

TASK_PREFIX = "ailab-task-"
LOG_TAIL = 20_000  # characters of the grading process's output sent back with the scorecard


@dataclass(frozen=True)
class Job:
    """What a worker needs to grade one submission."""

    key: str             # the submission's key in OUT/.done (graders.engine.cluster.job_key)
    lab: str
    name: str            # the submission's name: file stem, or the student id with --course
    suffix: str          # .ipynb or .py
    content: bytes       # the notebook's bytes
    profile: str
    dataset: str
    reference_url: str | None = None
    allow_network: bool = False
    hidden: dict[str, bytes] = field(default_factory=dict)  # a --hidden DIR/<lab>/ folder: relative path -> bytes


@dataclass
class Graded:
    """A task's result: the scorecard and the tail of the grading process's output."""

    key: str
    card: Scorecard
    log: str


class GradingFailed(RuntimeError):
    """The grading process ended without a scorecard (a grader or environment problem, not the submission's)."""


def grade_task(job: Job) -> Graded:
    """Grade `job` in a grading process on this worker (see the module's docstring); the card names the worker."""
    from distributed import get_worker

    worker = get_worker()
    _sweep_dead_tasks()
    with tempfile.TemporaryDirectory(prefix=f"{TASK_PREFIX}{os.getpid()}-") as tmp:
        folder = Path(tmp)
        path = folder / f"submission{job.suffix}"
        path.write_bytes(job.content)
        hidden = folder / "hidden"
        for rel, data in job.hidden.items():
            target = hidden / job.lab / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        spec, result, log = folder / "job.json", folder / "card.pickle", folder / "grade.log"
        spec.write_text(json.dumps({"lab": job.lab, "name": job.name, "path": str(path), "out": str(folder / "out"),
                                    "profile": job.profile, "dataset": job.dataset, "reference_url": job.reference_url,
                                    "hidden": str(hidden) if job.hidden else None}))
        command = [sys.executable, "-m", "graders.engine.cluster_task", str(spec), str(result), str(os.getpid())]
        env = {k: v for k, v in os.environ.items() if k != netns.MARK}
        network = "open (--allow-network)" if job.allow_network else f"open ({netns.unavailable()})"
        unshare = shutil.which("unshare")
        if not job.allow_network and netns.unavailable() is None and unshare is not None:
            command, env[netns.MARK], network = [unshare, "--net", "--", *command], "1", "loopback only"
        started = time.monotonic()
        with open(log, "wb") as out:
            code = subprocess.call(command, cwd=folder, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        text = log.read_text(errors="replace")[-LOG_TAIL:]
        if code != 0 or not result.exists():
            raise GradingFailed(f"grading {job.name} on {worker.address} ended with exit code {code} and no "
                                f"scorecard; last output:\n{text[-3000:]}")
        with open(result, "rb") as f:
            card: Scorecard = pickle.load(f)  # written by our own grading process, never by the submission
    card.environment["worker"] = {"address": worker.address, "name": str(worker.name), "host": socket.gethostname(),
                                  "pid": os.getpid(), "network": network,
                                  "task_s": round(time.monotonic() - started, 2)}  # with the reference's own run
    return Graded(job.key, card, text)


def _sweep_dead_tasks() -> None:
    """Remove the task folders of workers that were killed mid-grade (named after the worker's pid)."""
    for folder in Path(tempfile.gettempdir()).glob(f"{TASK_PREFIX}*-*"):
        pid = folder.name[len(TASK_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(folder, ignore_errors=True)


def grading_process(name: str) -> psutil.Process | None:
    """The grading process this module runs for submission `name` on this machine, if one runs (its first argument
    is the task's spec file, which names the submission): what a test or benchmark kills to stand for a failure."""
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if "graders.engine.cluster_task" in cmd:
            try:
                if json.loads(Path(cmd[cmd.index("graders.engine.cluster_task") + 1]).read_text())["name"] == name:
                    return proc
            except (OSError, ValueError, IndexError):
                continue
    return None


def main(argv: list[str]) -> int:
    """The grading process: grade one submission as `ailab grade` would, into a scratch OUT, and pickle its card."""
    spec_path, result_path, parent = argv
    _die_with_parent()
    if os.getppid() != int(parent):  # the worker died before the parent-death signal was armed
        return 1
    if netns.isolated():
        netns.loopback_up()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    spec = json.loads(Path(spec_path).read_text())
    grade = importlib.import_module(f"graders.{spec['lab']}.grade").grade
    external = {"reference_url": spec["reference_url"]} if spec["reference_url"] else {}
    cards = grade([(spec["name"], Path(spec["path"]))], Path(spec["out"]), dataset=spec["dataset"],
                  profile=spec["profile"], hidden=Path(spec["hidden"]) if spec["hidden"] else None, **external)
    tmp = Path(result_path + ".tmp")
    with open(tmp, "wb") as f:
        pickle.dump(cards[0], f)
    tmp.replace(result_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
