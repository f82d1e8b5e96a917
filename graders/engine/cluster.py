"""`ailab grade LAB DIR --workers N | --scheduler tcp://HOST:8786`: a batch fanned out on Dask distributed.

One task per submission (graders.engine.cluster_task), each needing one `grade` resource; every worker offers one
(`dask worker ADDRESS --nthreads 1 --resources grade=1`, or the local cluster `--workers N` starts), so two grades
never share a worker's cores, and each grade measures its own reference on its worker in the same run.

Only this process writes OUT, as results come back: per submission scorecard.json, report.html (with the whole
batch's integrity findings) and grade.log, the gradebook with --course, summary.csv rewritten after each, and last a
marker OUT/.done/<key>.json written atomically. The key is the SHA-256 of the notebook's bytes with its name and the
grading settings, so a rerun of the same command skips what is done and grades the rest, while a changed notebook or
profile is graded anew. A worker that dies mid-grade costs nothing but time: the scheduler gives its task to another
worker (up to its allowed-failures), a task that raised is retried once (`retries`), each future yields one result,
and a key that has its marker is never written again.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from graders.engine.batch import Batch, ReportWriter, _clock
from graders.engine.cluster_task import Graded, Job, grade_task
from graders.engine.labconfig import LabConfig
from graders.engine.scorecard import PartResult, Scorecard
from graders.engine.submissions import submissions_in
from graders.engine.summary import write_summary

RETRIES = 1               # a task that raised (not one whose worker died: the scheduler moves those) runs once more
CONNECT_TIMEOUT_S = 10    # to reach a --scheduler
SLOT_WAIT_S = 120         # for a worker with a grading slot to join a --scheduler
HIDDEN_MAX_BYTES = 64 << 20
BAR = 20


@dataclass(frozen=True)
class Settings:
    """How every submission of the batch is graded (the same for each task)."""

    lab: str
    profile: str
    dataset: str
    hidden: Path | None = None
    reference_url: str | None = None
    allow_network: bool = False


def job_key(settings: Settings, name: str, content: bytes, hidden: dict[str, bytes]) -> str:
    """The submission's key in OUT/.done: its notebook's bytes, its name and everything that changes a grade."""
    digest = hashlib.sha256()
    for rel in sorted(hidden):
        digest.update(rel.encode() + b"\0" + hashlib.sha256(hidden[rel]).digest())
    what = [settings.lab, settings.profile, settings.dataset, settings.reference_url, name, digest.hexdigest()]
    return hashlib.sha256(json.dumps(what).encode() + b"\0" + content).hexdigest()


def grade_on_cluster(lab: LabConfig, submission: str | Sequence[tuple[str, Path]], out: Path, settings: Settings,
                     course: Path | None = None, workers: int | None = None,
                     scheduler: str | None = None) -> tuple[list[Scorecard], list[str]]:
    """Grade the batch on a local cluster of `workers` processes or on the Dask scheduler at `scheduler`.

    Returns the scorecards in the batch's order (resumed ones read back from OUT) and one line per submission
    that could not be graded (its task failed twice, or its workers kept dying); a rerun retries those."""
    module = importlib.import_module(f"graders.{settings.lab}.grade")
    subs = submissions_in(submission, _reference(module, lab))
    batch = Batch.open(lab, subs, out, course)
    write = _report_writer(module, settings.lab)
    hidden = _hidden_files(settings.hidden, settings.lab)
    cards: dict[str, Scorecard] = {}
    todo: list[Job] = []
    for name, path in subs:
        content = path.read_bytes()
        job = Job(job_key(settings, name, content, hidden), settings.lab, name, path.suffix, content, settings.profile,
                  settings.dataset, settings.reference_url, settings.allow_network, hidden)
        done = _finished(out, job.key)
        if done is not None:
            cards[name] = done
        else:
            todo.append(job)
    if cards:
        _say(lab.name, f"resuming: {len(cards)} of {len(subs)} already graded in {out} (markers in {out / '.done'}); "
                       f"{len(todo)} to grade")
    failed: list[str] = []
    if todo:
        paths = dict(subs)
        with connect(workers, scheduler, lab.name) as client:
            progress = Progress(lab.name, len(subs), len(cards))
            for job, graded, error in _stream(client, todo):
                if graded is not None:
                    cards[job.name] = _store(batch, graded, write, out, paths[job.name])
                    where = graded.card.environment.get("worker", {}).get("address", "?")
                    progress.tick(f"{job.name} {cards[job.name].score:.1f}/100 on {where}")
                    write_summary([cards[n] for n, _ in subs if n in cards], out)
                else:
                    failed.append(f"{job.name}: not graded: {error}; run the same command again to retry it")
                    progress.tick(f"{job.name} NOT graded")
    ordered = [cards[n] for n, _ in subs if n in cards]
    return ordered, failed


@contextmanager
def connect(workers: int | None, scheduler: str | None, label: str) -> Iterator[Any]:
    """A Dask client: to the scheduler at `scheduler`, or to a local cluster of `workers` processes on 127.0.0.1,
    each with one thread and one grading slot. An unreachable scheduler ends in one line (SystemExit)."""
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            _listening(scheduler)
            client = Client(scheduler, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError, ValueError) as exc:
            raise SystemExit(f"cannot reach the Dask scheduler at {scheduler} ({exc}); start one there with "
                             "`dask scheduler`, or check the address and the port") from None
        try:
            _wait_for_slots(client, scheduler, label)
            yield client
        finally:
            client.close()
        return
    n = int(workers or 1)
    with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
                      resources={"grade": 1}, memory_limit=0) as cluster, Client(cluster) as client:
        _say(label, f"local Dask cluster at {cluster.scheduler_address}: {n} worker process(es), one grading slot each")
        yield client


def _listening(address: str) -> None:
    """Raise OSError at once when nothing listens at a tcp:// address (Dask itself retries until its timeout)."""
    from distributed.comm import parse_address
    from distributed.comm.addressing import parse_host_port

    protocol, location = parse_address(address)
    if protocol == "tcp":
        socket.create_connection(parse_host_port(location), timeout=CONNECT_TIMEOUT_S).close()


def _wait_for_slots(client: Any, scheduler: str, label: str) -> None:
    deadline = time.monotonic() + SLOT_WAIT_S
    said = False
    while True:
        workers = client.scheduler_info(n_workers=-1)["workers"]
        slots = sum(int(w.get("resources", {}).get("grade", 0)) for w in workers.values())
        if slots:
            _say(label, f"Dask scheduler {scheduler}: {len(workers)} worker(s), {slots} grading slot(s)")
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"no worker of the Dask scheduler at {scheduler} offers a grading slot after "
                             f"{SLOT_WAIT_S} s; start one per grading machine with `dask worker {scheduler} "
                             "--nthreads 1 --resources grade=1`")
        if not said:
            _say(label, f"waiting for a worker with a grading slot (`dask worker {scheduler} --nthreads 1 "
                        "--resources grade=1`) ...")
            said = True
        time.sleep(2)


def _stream(client: Any, jobs: list[Job]) -> Iterator[tuple[Job, Graded | None, str]]:
    """(job, result or None, why not) as each task finishes, in the order they finish."""
    from distributed import as_completed

    futures = {client.submit(grade_task, job, key=f"ailab-grade-{job.key[:32]}", resources={"grade": 1},
                             retries=RETRIES, pure=False): job for job in jobs}
    for future in as_completed(futures):
        job = futures[future]
        try:
            yield job, future.result(), ""
        except Exception as exc:  # noqa: BLE001 - KilledWorker, GradingFailed: reported, retried by a rerun
            yield job, None, f"{type(exc).__name__}: {' '.join(str(exc).split())[:500]}"
        finally:
            future.release()


def _store(batch: Batch, graded: Graded, write: ReportWriter, out: Path, path: Path) -> Scorecard:
    """Write one graded submission into OUT (once per key), its marker last."""
    marker = out / ".done" / f"{graded.key}.json"
    done = _finished(out, graded.key)
    if done is not None:  # already in OUT: a second result for the same key is dropped, never written
        return done
    card = graded.card
    batch.add_findings(card)  # the similarity to the batch's other submissions, which the worker never saw
    batch.store(card, write)
    (out / card.slug / "grade.log").write_text(graded.log)
    marker.parent.mkdir(parents=True, exist_ok=True)
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(json.dumps({"submission": card.submission, "slug": card.slug, "path": str(path),
                               "score": card.score, "worker": card.environment.get("worker", {})}))
    os.replace(tmp, marker)
    return card


def _finished(out: Path, key: str) -> Scorecard | None:
    """The scorecard of a submission already graded into OUT under this key, or None."""
    marker = out / ".done" / f"{key}.json"
    if not marker.exists():
        return None
    card_path = out / json.loads(marker.read_text())["slug"] / "scorecard.json"
    return read_card(card_path) if card_path.exists() else None


def read_card(path: Path) -> Scorecard:
    """A scorecard.json read back (the report's plot data, not in the JSON, stays empty)."""
    data = json.loads(path.read_text())
    return Scorecard(lab=data["lab"], submission=data["submission"], score=float(data["score"]),
                     parts=[PartResult(**p) for p in data["parts"]], metrics=data["metrics"],
                     reference=data["reference"], environment=data["environment"], errors=data["errors"],
                     integrity=data["integrity"], duration_s=float(data["duration_s"]), by_rate=data.get("by_rate", {}))


def _reference(module: ModuleType, lab: LabConfig) -> Path:
    found = getattr(module, "REFERENCE", None)
    return Path(found) if found is not None else Path(module.reference_path(lab))


def _report_writer(module: ModuleType, lab: str) -> ReportWriter:
    """The lab's report writer, as its grade module imports it (`write_report`, or `write_<lab>_report`)."""
    writer: Callable[[Scorecard, Path], Path] | None = getattr(module, "write_report", None) or getattr(
        module, f"write_{lab}_report", None)
    if writer is None:
        raise SystemExit(f"lab {lab!r} cannot be graded on a cluster yet: its grader names no report writer")
    return writer


def _hidden_files(hidden: Path | None, lab: str) -> dict[str, bytes]:
    """A --hidden DIR's part for this lab, to travel with each task (workers need no shared filesystem)."""
    if hidden is None or not (hidden / lab).is_dir():
        return {}
    files = {str(p.relative_to(hidden / lab)): p.read_bytes() for p in sorted((hidden / lab).rglob("*")) if p.is_file()}
    if sum(len(b) for b in files.values()) > HIDDEN_MAX_BYTES:
        raise SystemExit(f"--hidden {hidden / lab} holds more than {HIDDEN_MAX_BYTES >> 20} MiB; a cluster grade "
                         "sends it with every task")
    return files


def _say(label: str, message: str) -> None:
    print(f"[{label}] {message}", file=sys.stderr, flush=True)


class Progress:
    """One line per finished grade: a bar across the whole batch, elapsed time and time left."""

    def __init__(self, label: str, total: int, done: int) -> None:
        self.label, self.total, self.done, self.resumed = label, total, done, done
        self.started = time.monotonic()

    def tick(self, what: str) -> None:
        self.done += 1
        elapsed = time.monotonic() - self.started
        graded = self.done - self.resumed
        left = f", about {_clock(elapsed / graded * (self.total - self.done))} left" if self.done < self.total else ""
        filled = round(BAR * self.done / self.total) if self.total else BAR
        _say(self.label, f"[{'#' * filled}{'-' * (BAR - filled)}] {self.done}/{self.total} {what} "
                         f"({_clock(elapsed)} elapsed{left})")
