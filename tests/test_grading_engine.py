"""The lab-independent grading machinery: notebook extraction, the sandboxed worker, scoring, lab.toml."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from graders.engine.labconfig import load_lab
from graders.engine.notebook import checksum_problems, extract_module
from graders.engine.sandbox import Worker, WorkerError
from graders.engine.scoring import latency_summary, ramp

EXAMPLES = Path(__file__).resolve().parent.parent / "labs" / "rag" / "examples"
ADAPTERS = "graders.rag.adapters"

STUBS = """
def chunk(text, max_words=120, overlap=20): return text.split()
def tokenize(text): return text.lower().split()
def reciprocal_rank_fusion(rankings, k=60): return []
def expand_query(q, fb, alpha=1.0, beta=0.5): return q
def answer(query, hits, docs): return {"text": "", "citations": []}
class DenseIndex: pass
class Retriever:
    def index(self, docs): pass
    def search(self, query, k=10): return []
"""


def test_extraction_drops_test_cells_excluded_cells_and_magics() -> None:
    source = extract_module(EXAMPLES / "naive.ipynb")
    assert source.ok, source.errors
    assert "def chunk" in source.source and "class Retriever" in source.source
    assert "Task 1.1 tests" not in source.source, "nbgrader test cells must not reach the candidate module"
    nb = json.loads((EXAMPLES / "naive.ipynb").read_text())
    excluded = [c for c in nb["cells"] if "ailab-exclude" in c["metadata"].get("tags", [])]
    assert excluded and all("".join(c["source"]).strip()[:60] not in source.source for c in excluded)
    compile(source.source, "candidate.py", "exec")


def test_magics_are_neutralised(tmp_path: Path) -> None:
    nb = {"cells": [{"cell_type": "code", "metadata": {}, "source": "%matplotlib inline\n!pip install x\nx = 1\n"},
                    {"cell_type": "code", "metadata": {}, "source": "%%time\ny = 2\n"}], "nbformat": 4,
          "nbformat_minor": 5, "metadata": {}}
    path = tmp_path / "m.ipynb"
    path.write_text(json.dumps(nb))
    out = extract_module(path)
    namespace: dict[str, object] = {}
    exec(compile(out.source, "m", "exec"), namespace)
    assert namespace["x"] == 1 and "y" not in namespace


@pytest.mark.parametrize("content, message", [
    ("{not json", "not a valid notebook"),
    ('{"hello": 1}', "not a Jupyter notebook"),
    ('{"cells": [{"cell_type": "markdown", "source": "hi", "metadata": {}}]}', "no code cells"),
])
def test_bad_notebooks_give_clear_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.ipynb"
    path.write_text(content)
    out = extract_module(path)
    assert not out.ok and message in out.errors[0]


def test_edited_read_only_cells_are_flagged() -> None:
    from nbformat import from_dict
    from nbgrader.utils import compute_checksum

    nb = json.loads((EXAMPLES / "naive.ipynb").read_text())
    test_cell = next(c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade"))
    joined = {**test_cell, "source": "".join(test_cell["source"])}
    test_cell["metadata"]["nbgrader"]["checksum"] = compute_checksum(from_dict(joined))
    assert checksum_problems(nb) == []
    test_cell["source"] = "assert True\n"
    problems = checksum_problems(nb)
    assert len(problems) == 1 and test_cell["metadata"]["nbgrader"]["grade_id"] in problems[0]


def _worker(source: str, start_timeout_s: float = 60) -> Worker:
    return Worker(source, ADAPTERS, name="t", memory_mb=4096, start_timeout_s=start_timeout_s)


def test_worker_reports_candidate_exceptions_and_missing_names() -> None:
    with _worker(STUBS + "\ndef chunk(text, max_words=120, overlap=20): raise ValueError('nope')\n") as w:
        with pytest.raises(WorkerError, match="ValueError: nope"):
            w.call("chunk", 10, text="a b", max_words=2, overlap=0)
        with pytest.raises(WorkerError, match="tokenize raised AttributeError"):
            w.call("tokenize", 10, text=None)
        assert w.call("tokenize", 10, text="Still Alive") == ["still", "alive"]
    with pytest.raises(WorkerError, match="does not define .*Retriever"), _worker("def chunk(t): return []\n"):
        pass


def test_a_hang_at_import_is_killed_within_the_start_limit() -> None:
    started = time.monotonic()
    with pytest.raises(WorkerError, match="did not finish loading within 3 s"):
        with _worker("while True:\n    pass\n", start_timeout_s=3):
            pass
    assert time.monotonic() - started < 20


def test_a_looping_call_times_out_and_its_process_group_dies() -> None:
    source = STUBS + "\nimport subprocess, sys\nCHILD = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n" \
        "def chunk(text, max_words=120, overlap=20):\n    while True: pass\n"
    w = _worker(source)
    w.start()
    try:
        with pytest.raises(WorkerError, match="did not return within 2 s"):
            w.call("chunk", 2, text="a", max_words=2, overlap=0)
        assert w.proc is not None and w.proc.poll() is not None
        assert _live_members(w.proc.pid) == [], "nothing of the submission's process group may survive"
        with pytest.raises(WorkerError, match="no longer running"):
            w.call("chunk", 2, text="a", max_words=2, overlap=0)
    finally:
        w.cleanup()


def _live_members(pgid: int, wait_s: float = 5.0) -> list[int]:
    """Processes of the group that are still running (zombies awaiting their reaper do not count)."""
    deadline = time.monotonic() + wait_s
    while True:
        live = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                live.append(int(stat.parent.name))
        if not live or time.monotonic() > deadline:
            return live
        time.sleep(0.2)


def test_ramp_and_latency_summary() -> None:
    assert ramp(1.0, 0.6, 0.97) == 1.0 and ramp(0.6, 0.6, 0.97) == 0.0
    assert ramp(0.785, 0.6, 0.97) == pytest.approx(0.5)
    assert ramp(1.2, 6.0, 1.5) == 1.0 and ramp(6.0, 6.0, 1.5) == 0.0 and ramp(3.75, 6.0, 1.5) == pytest.approx(0.5)
    samples = [[0.0, float(ms), True] for ms in range(1, 101)] + [[0.0, 5.0, False]]
    s = latency_summary(samples, seconds=10)
    assert s["latency_p50_ms"] == pytest.approx(50.5) and s["throughput_qps"] == 10.0
    assert s["error_rate"] == pytest.approx(1 / 101)


def test_lab_toml_parts_add_up() -> None:
    lab = load_lab("rag")
    assert sum(p.weight for p in lab.parts.values() if not p.manual) == 100
    assert lab.parts["written"].manual and lab.profile("quick").rounds >= 2
    assert lab.notebook.exists()
