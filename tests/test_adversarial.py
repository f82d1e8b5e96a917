"""Hostile and broken submissions: the grader finishes, names the cause, and nothing leaks or breaks.

Process-level attacks run one submission in a `Worker` directly (seconds each); the rest are one RAG batch
graded through the CLI (network namespace, summary table and summary.csv included) next to a good
submission, whose score must match its score graded alone, and beside an earlier grade that must survive.
Serving-lab servers (slowloris, a crash mid-load, malformed SSE) run in the serving host.
Fixtures: tests/fixtures/adversarial/ (plus the existing rag and serving ones, reused). The agents lab's
adversarial cases (an agent that writes the desk's database directly, one that patches the grader's audit, one
that imports the reference, one that hard-codes the public tasks' answers, one that never ends a conversation)
are graded in the one agents batch of tests/test_agents_grader.py, which grades that lab anyway.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from graders.engine.labconfig import load_lab
from graders.engine.sandbox import FILE_MB, Worker, WorkerError
from graders.engine.sandbox_user import _uid_in_use

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures" / "adversarial"
ADAPTERS = "graders.rag.adapters"
LAB = load_lab("rag")
SANDBOXED = os.geteuid() == 0 and os.environ.get("AILAB_SANDBOX_USER", "") in ("", "auto")
needs_sandbox_user = pytest.mark.skipif(not SANDBOXED, reason="needs root: the worker then runs as its own user")

STUBS = """
def chunk(text, max_words=120, overlap=20): return text.split()
def tokenize(text): return text.lower().split()
def reciprocal_rank_fusion(rankings, k=60): return []
def expand_query(q, fb, alpha=1.0, beta=0.5): return q
def answer(query, hits, docs): return {"text": "", "citations": []}
class DenseIndex: pass
class Retriever:
    def index(self, docs): self.ids = [d["id"] for d in docs]
    def search(self, query, k=10): return [(i, 1.0) for i in self.ids[:k]]
"""


def hostile(name: str, start_timeout_s: float = 60, memory_mb: int = LAB.limits.memory_mb,
            cpu_s: float | None = LAB.limits.cpu_s) -> Worker:
    """A worker for the stubs overridden by one fixture (the fixture's definitions come last and win)."""
    source = STUBS + "\n" + (FIX / f"{name}.py").read_text()
    return Worker(source, ADAPTERS, name=name, memory_mb=memory_mb, start_timeout_s=start_timeout_s,
                  labels={"chunk": "chunk", "tokenize": "tokenize"}, cpu_s=cpu_s)


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------ process-level attacks (one worker each)


def test_an_endless_loop_at_import_is_killed_at_the_start_limit() -> None:
    started = time.monotonic()
    with pytest.raises(WorkerError, match=r"did not finish loading within 3 s \(an endless loop"):
        with hostile("loop_at_import", start_timeout_s=3):
            pass
    assert time.monotonic() - started < 15


@pytest.mark.slow
def test_an_endless_loop_in_a_graded_call_costs_the_call_limit() -> None:
    with hostile("loop_in_call") as w:
        started = time.monotonic()
        with pytest.raises(WorkerError, match=r"^chunk did not finish within 2 s; the submission's process was stopped"):
            w.call("chunk", 2, text="a b", max_words=2, overlap=0)
        assert time.monotonic() - started < 8 and w.proc is not None and w.proc.poll() is not None


@pytest.mark.slow
def test_a_memory_bomb_hits_the_address_space_limit_and_is_named() -> None:
    with hostile("memory_bomb", memory_mb=2048) as w:
        with pytest.raises(WorkerError, match=r"chunk raised MemoryError.* — the submission ran out of its memory limit"):
            w.call("chunk", 30, text="a", max_words=2, overlap=0)
        assert w.call("tokenize", 10, text="Still Here") == ["still", "here"], "the worker survives its MemoryError"


@needs_sandbox_user
@pytest.mark.slow
def test_a_fork_bomb_hits_the_process_limit_and_every_escaped_child_is_killed() -> None:
    with hostile("fork_bomb") as w:
        assert w.identity is not None
        uid = w.identity[0]
        with pytest.raises(WorkerError, match=r"chunk raised BlockingIOError: \[Errno 11\].* — the submission started "
                                              r"too many processes or threads \(limit 512\)"):
            w.call("chunk", 60, text="a", max_words=2, overlap=0)
        assert _uid_in_use(uid), "the children left the process group and are still alive before cleanup"
    assert not _uid_in_use(uid), "cleanup kills every process of the submission's user, setsid or not"


@pytest.mark.slow
def test_a_multi_gigabyte_print_stops_at_the_file_size_limit() -> None:
    with hostile("huge_print") as w:
        started = time.monotonic()
        with pytest.raises(WorkerError, match=r"chunk raised OSError: \[Errno 27\] File too large.* — the submission "
                                              rf"wrote more than the {FILE_MB} MiB file/output limit"):
            w.call("chunk", 120, text="a", max_words=2, overlap=0)
        assert w.log_path.stat().st_size <= FILE_MB * 1024 * 1024
        assert len(w.output_tail(10**9)) == 1024 * 1024, "what is read back is capped at 1 MiB"
        assert time.monotonic() - started < 60


@needs_sandbox_user
@pytest.mark.slow
def test_the_hidden_split_and_the_graders_environment_and_memory_cannot_be_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AILAB_CANARY", "hidden-canary-7c1f")
    private = tmp_path / "private-dataset"  # a private hidden set, as an interviewer would pass with --dataset
    private.mkdir(mode=0o700)
    (private / "qrels.tsv").write_text("q1\td1\t2  hidden-canary-7c1f\n")
    (private / "qrels.tsv").chmod(0o644)  # even a world-readable file is safe inside a private folder
    grader = os.getpid()
    paths = [str(private / "qrels.tsv"), f"/proc/{grader}/environ", f"/proc/{grader}/mem", "/root/.bash_history"]
    with hostile("read_secrets") as w:
        found = w.call("tokenize", 10, text=json.dumps(paths))
    assert found == ["DENIED PermissionError", "DENIED PermissionError", "DENIED PermissionError",
                     "DENIED FileNotFoundError", "ENV absent"]


@needs_sandbox_user
@pytest.mark.slow
def test_writes_to_the_project_the_cache_and_other_folders_are_refused(tmp_path: Path) -> None:
    from graders.paths import cache_dir

    shared_cache = cache_dir() / "embeddings" / "all-MiniLM-L6-v2.sqlite"
    canary = cache_dir() / "embeddings" / "canary-write-test.bin"  # the cache folder's rules, on a file only we write
    targets = [ROOT / "graders" / "rag" / "metrics.py", ROOT / "PWNED.txt", ROOT / ".venv" / "bin" / "python",
               shared_cache, canary, tmp_path / "out.txt", Path("/etc/passwd")]
    shared_cache.parent.mkdir(parents=True, exist_ok=True)  # on a cold cache (a clean clone) the file is not there
    shared_cache.touch(exist_ok=True)                        # yet: an empty file is an empty SQLite database
    canary.write_bytes(b"written by the grader")
    # the side jobs (tests/_side_jobs.py) embed into the shared cache while this runs, so its bytes are not compared
    # (its refusal is in `outcomes`); the canary beside it stands for it
    compared = [p for p in targets if p != shared_cache]
    before = {p: p.read_bytes() for p in compared if p.exists()}
    try:
        with hostile("write_files") as w:
            outcomes = w.call("tokenize", 10, text=json.dumps([str(p) for p in targets]))
        assert outcomes == ["DENIED PermissionError"] * len(targets)
        after = {p: p.read_bytes() for p in compared if p.exists()}
        assert after == before and not (ROOT / "PWNED.txt").exists()
    finally:
        canary.unlink(missing_ok=True)


@needs_sandbox_user
@pytest.mark.slow
def test_a_paused_submission_does_no_background_work_while_the_reference_is_measured() -> None:
    """The graders pause the candidate (every process of its uid) around each reference round (rag, serving and
    agents load rounds), so a CPU burner it left running cannot slow the reference down."""
    with hostile("background_burn") as w:
        assert w.call("tokenize", 10, text="go") == ["started"]
        beats = w.scratch / "beats.txt"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (not beats.exists() or beats.stat().st_size < 100):
            time.sleep(0.05)
        with w.paused():
            stopped = time.monotonic() + 0.2  # signals land asynchronously
            time.sleep(1.5)
            resumed = time.monotonic()
        time.sleep(0.5)
        times = [float(x) for x in beats.read_text().split("\n")[:-1]]  # the last line may be half written
    assert any(t < stopped for t in times), "it ran before the pause"
    assert [t for t in times if stopped < t < resumed] == [], "a heartbeat while the submission was paused"
    assert any(t > resumed for t in times), "it runs again after the pause"


@pytest.mark.slow
def test_a_process_that_ignores_sigterm_is_still_killed() -> None:
    with hostile("ignore_sigterm") as w:
        started = time.monotonic()
        with pytest.raises(WorkerError, match="chunk did not finish within 2 s"):
            w.call("chunk", 2, text="a", max_words=2, overlap=0)
        assert w.proc is not None and w.proc.returncode == -9, "SIGTERM ignored, so SIGKILL"
        assert time.monotonic() - started < 12


@pytest.mark.slow
def test_a_crash_in_native_code_is_reported_with_its_signal() -> None:
    with hostile("segfault") as w:
        with pytest.raises(WorkerError, match=r"chunk: the submission's process died \(killed by signal SIGABRT"):
            w.call("chunk", 10, text="a", max_words=2, overlap=0)
        with pytest.raises(WorkerError, match="no longer running"):
            w.call("tokenize", 10, text="a")


@pytest.mark.slow
def test_a_cpu_hog_thread_is_killed_at_the_cpu_limit() -> None:
    # the limit counts start-up too: the worker's imports and the lab's embedding model take ~2 CPU-seconds
    with hostile("cpu_hog", cpu_s=8) as w:
        assert w.call("chunk", 10, text="a b", max_words=2, overlap=0) == ["a", "b"]
        deadline = time.monotonic() + 60
        while w.proc is not None and w.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        with pytest.raises(WorkerError, match="no longer running"):
            w.call("tokenize", 10, text="a")
        assert w.exit_reason() == "killed after using its 8 CPU-seconds (RLIMIT_CPU)"


@pytest.mark.slow
def test_an_oversized_reply_is_refused() -> None:
    with hostile("huge_reply") as w:
        with pytest.raises(WorkerError, match=r"^chunk returned more than 64 MiB of data"):
            w.call("chunk", 60, text="a", max_words=2, overlap=0)


# ------------------------------------------------------------------ the serving lab's servers


@contextmanager
def _host(source: str) -> Iterator[Worker]:
    """The serving lab's host for `source`, started as the grader starts it (start_host enters the Worker)."""
    from graders.serving.grade import start_host

    w = start_host(source, "adv", load_lab("serving"))
    try:
        yield w
    finally:
        w.cleanup()


@pytest.mark.slow
def test_serving_a_slowloris_server_a_crash_mid_load_and_malformed_sse_are_bounded_and_named() -> None:
    from graders.serving import checks

    with _host((ROOT / "tests" / "fixtures" / "serving" / "hang.py").read_text()) as w:  # accepts, never answers
        started = time.monotonic()
        assert checks.probe(w.url, 2) == ("the server did not answer a 2-token completion within 2 s "
                                          "(a hang, or a blocked event loop?)")
        assert time.monotonic() - started < 5
    with _host((FIX / "crash_mid_load.py").read_text()) as w:
        assert checks.probe(w.url, 10) is None and checks.probe(w.url, 10) is None
        why = checks.probe(w.url, 10)
        assert why is not None and why.startswith("the server's connection failed on a 2-token completion")
        assert w.proc is not None and w.proc.wait(timeout=10) == 3 and w.exit_reason() == "exit code 3"
    with _host((ROOT / "tests" / "fixtures" / "serving" / "bad_stream.py").read_text()) as w:
        fraction, detail = checks.streaming(w.url, 10, {"text": "", "chat": ""})
        assert fraction == 0.0 and "[DONE]" in detail


@pytest.mark.slow
def test_a_server_that_answers_without_end_is_read_only_up_to_the_limits() -> None:
    from graders.serving import checks, wire

    with _host((FIX / "flood_server.py").read_text()) as w:
        started = time.monotonic()
        status, body = checks.completion(w.url, 20, prompt="hi", max_tokens=2)
        assert status == 200 and body is None, "a reply cut at the limit is not JSON"
        status, lines = checks.read_stream(w.url, "/v1/completions", 20, {"prompt": "hi", "max_tokens": 2, "stream": True})
        assert lines == [f"<grader: a line of the stream passed {wire.MAX_LINE >> 20} MiB>"]
        fraction, detail = checks.metrics_endpoint(w.url, 20)
        assert fraction < 1 and "not Prometheus text format" in detail
        assert time.monotonic() - started < 30


def test_a_flood_of_alerts_or_spans_from_the_assistant_is_cut_or_refused() -> None:
    from graders.observability.scenario import MAX_ALERTS, MAX_DETECTORS, _alerts, _records

    flood = {f"d{i}": [["k" * 10_000, "retriever", "x" * 10**6]] * 1000 for i in range(200)}
    alerts = _alerts(flood)
    assert len(alerts) == MAX_DETECTORS and all(len(a) == MAX_ALERTS for a in alerts.values())
    first = alerts["d0"][0]
    assert (len(first.kind), first.component, len(first.detail)) == (80, "retriever", 200)
    with pytest.raises(WorkerError, match="alerts are not an object"):
        _alerts(["not", "a", "dict"])
    with pytest.raises(WorkerError, match="malformed span"):
        _records([{"name": "x"}], 0.0)


# ------------------------------------------------------------------ one hostile batch through the CLI


def hostile_batch(folder: Path) -> dict:
    """The good submission graded alone, then a hostile batch (with the same good one) through `ailab grade`: a
    side job (tests/_side_jobs.py), as the batch spends minutes waiting out hanging submissions."""
    from graders.rag.grade import grade

    good = ROOT / "tests" / "fixtures" / "rag" / "bm25_only.py"
    alone = grade(str(good), folder / "alone", profile="smoke")[0]

    subs = folder / "hostile"
    subs.mkdir()
    shutil.copy(good, subs / "good.py")
    for fixture in (FIX / "batch").glob("*.py"):
        shutil.copy(fixture, subs / fixture.name)
    (subs / "not_json.ipynb").write_text('{"cells": [')
    (subs / "edited_tests.ipynb").write_text(json.dumps(_edited_notebook()))

    # a gradebook a hostile submission can see (world-readable), holding an earlier grade
    book = Path(tempfile.mkdtemp(prefix="ailab-gradebook-"))
    book.chmod(0o755)
    shutil.copytree(folder / "alone" / "bm25_only", book / "earlier")
    for p in [book / "earlier", *(book / "earlier").iterdir()]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    before = digest(book / "earlier")
    project = {p: p.read_bytes() for p in (ROOT / "graders" / "rag" / "metrics.py", ROOT / "labs" / "rag" / "lab.toml")}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "graders.cli", "grade", "rag", str(subs), "--out", str(book),
                           "--profile", "smoke"],
                          capture_output=True, text=True, timeout=540, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return {"alone": alone, "done": done, "book": book, "before": before, "project": project,
            "seconds": time.monotonic() - started,
            "cards": {p.parent.name: json.loads(p.read_text()) for p in book.glob("*/scorecard.json")}}


@pytest.fixture(scope="module")
def graded(adversarial_batch: dict) -> Iterator[dict]:
    yield adversarial_batch
    shutil.rmtree(adversarial_batch["book"], ignore_errors=True)


def _edited_notebook() -> dict:
    """The naive example with nbgrader checksums recorded, then one hidden-test cell edited to always pass
    and another test cell deleted."""
    from nbformat import from_dict
    from nbgrader.utils import compute_checksum

    nb = json.loads((ROOT / "labs" / "rag" / "examples" / "naive.ipynb").read_text())
    for cell in nb["cells"]:
        meta = cell["metadata"].get("nbgrader", {})
        if meta.get("grade") and not meta.get("solution"):
            meta["checksum"] = compute_checksum(from_dict({**cell, "source": "".join(cell["source"])}))
    first = next(c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == "test_1_1_chunk")
    first["source"] = "assert True  # the tests were here\n"
    nb["cells"] = [c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") != "test_3_2_rrf"]
    return nb


def _errors(result: dict, name: str) -> str:
    return "\n".join(result["cards"][name]["errors"])


@pytest.mark.slow
def test_the_hostile_batch_is_graded_to_completion_with_a_summary(graded: dict) -> None:
    done = graded["done"]
    assert done.returncode == 0, done.stderr[-3000:]
    names = {"good", "monkeypatch", "forged_scores", "vandal", "sigterm_hang", "net_probe", "not_json",
             "edited_tests"}
    assert set(graded["cards"]) == names | {"earlier"}
    with open(graded["book"] / "summary.csv", newline="") as f:
        summary = list(csv.DictReader(f))
    assert sorted(r["submission"] for r in summary) == sorted(names)
    assert {r["submission"]: r["score"] for r in summary} == {
        n: f"{graded['cards'][n]['score']:.1f}" for n in names}
    good_row = next(r for r in summary if r["submission"] == "good")
    assert good_row["outcome"] == "ok" and good_row["report"] == str(graded["book"] / "good" / "report.html")
    table = done.stdout[done.stdout.index("submission"):].splitlines()
    for row in summary:  # the printed table has one line per submission: its name, score and points per part
        line = next(t for t in table if t.split()[:2] == [row["submission"], row["score"]])
        assert line.split()[2] == row["chunking"] and row["outcome"][:40] in line
    print(f"hostile batch graded in {graded['seconds']:.0f} s")


@pytest.mark.slow
def test_the_good_submission_scores_as_it_does_alone(graded: dict) -> None:
    good, alone = graded["cards"]["good"], graded["alone"]
    assert abs(good["score"] - alone.score) <= 1.0, (good["parts"], alone.parts)
    assert good["metrics"]["ndcg@10"] == alone.metrics["ndcg@10"] and good["errors"] == []


@pytest.mark.slow
def test_earlier_grades_and_the_project_are_untouched(graded: dict) -> None:
    assert digest(graded["book"] / "earlier") == graded["before"]
    assert {p: p.read_bytes() for p in graded["project"]} == graded["project"]
    assert not (ROOT / "PWNED.txt").exists()
    errors = _errors(graded, "vandal")
    if SANDBOXED:  # as the grader's own user the files would be writable: that is what the sandbox user is for
        assert "WROTE" not in errors and errors.count("DENIED PermissionError") >= 5, errors
        assert "Retriever.index raised RuntimeError: vandal:" in errors


@pytest.mark.slow
def test_monkey_patching_the_graders_metrics_changes_nothing(graded: dict) -> None:
    patched, good = graded["cards"]["monkeypatch"], graded["cards"]["good"]
    assert patched["metrics"]["ndcg@10"] == good["metrics"]["ndcg@10"] < 1.0
    assert abs(patched["score"] - good["score"]) <= 1.0 and patched["errors"] == []


@pytest.mark.slow
def test_forged_scores_are_wrong_types_and_earn_nothing(graded: dict) -> None:
    card = graded["cards"]["forged_scores"]
    parts = {p["name"]: p for p in card["parts"]}
    assert card["score"] == 0.0, card["parts"]
    assert "chunk() must return a list of str; got dict" in parts["chunking"]["detail"]
    assert "must return a list of (doc_id, score) pairs; got dict" in _errors(graded, "forged_scores")


@pytest.mark.slow
def test_a_submission_that_ignores_sigterm_and_hangs_in_search_is_killed_and_partly_graded(graded: dict) -> None:
    card = graded["cards"]["sigterm_hang"]
    parts = {p["name"]: p for p in card["parts"]}
    call_s = LAB.limits.call_s
    assert f"Retriever.search did not finish within {call_s:.0f} s" in _errors(graded, "sigterm_hang")
    unit = ("chunking", "dense_index", "hybrid_fusion", "query_expansion")
    assert all(parts[n]["points"] == parts[n]["max_points"] for n in unit)
    assert card["score"] == sum(parts[n]["max_points"] for n in unit)
    assert card["duration_s"] < call_s + 60


@pytest.mark.slow
def test_a_connection_beyond_loopback_fails_inside_the_graders_network_namespace(graded: dict) -> None:
    if not SANDBOXED or shutil.which("unshare") is None:
        pytest.skip("network isolation needs root and unshare")
    errors = _errors(graded, "net_probe")
    assert ("network probe: 192.0.2.1: [Errno 101] Network is unreachable; 1.1.1.1: [Errno 101] Network is "
            "unreachable; interfaces ['lo']") in errors
    assert "— the submission tried to reach the network; only 127.0.0.1 is allowed" in errors
    assert graded["cards"]["net_probe"]["score"] < graded["cards"]["good"]["score"]


@pytest.mark.slow
def test_tampered_and_invalid_notebooks_are_flagged(graded: dict) -> None:
    edited = graded["cards"]["edited_tests"]
    assert ("cell test_1_1_chunk is read-only but was edited (nbgrader checksum mismatch); its original version is "
            "what counts") in edited["errors"]
    assert ("cell test_3_2_rrf is read-only but was deleted from the notebook (a tampering signal; the grader's own "
            "checks do not depend on it)") in edited["errors"]
    assert len(edited["integrity"]["tampered_cells"]) == 2
    assert edited["score"] > 20, "a tampered notebook is flagged, and still graded by the hidden checks"
    bad = graded["cards"]["not_json"]
    assert bad["score"] == 0 and bad["errors"][0].startswith("not_json.ipynb is not a valid notebook (not JSON")


@pytest.mark.slow
def test_the_sandbox_scratch_folder_belongs_to_the_submission_and_is_removed() -> None:
    with hostile("loop_in_call") as w:
        scratch, logdir = w.scratch, w.logdir
        if SANDBOXED:
            assert w.identity is not None and scratch.stat().st_uid == w.identity[0]
            assert stat.S_IMODE(logdir.stat().st_mode) == 0o700 and logdir.stat().st_uid == 0
    assert not scratch.exists() and not logdir.exists()
