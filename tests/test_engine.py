"""The lab-independent grading machinery: lab.toml, notebook extraction, the sandboxed worker, Locust load,
scoring, the scorecard and the report. Real processes, real HTTP on 127.0.0.1, real Locust."""
from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from graders.engine.labconfig import load_lab
from graders.engine.loadgen import run_load
from graders.engine.notebook import checksum_problems, extract_module
from graders.engine.report import write_report
from graders.engine.sandbox import Worker, WorkerError
from graders.engine.scorecard import KEYS, Scorecard
from graders.engine.scoring import latency_summary, ramp

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "labs" / "rag" / "examples"
ADAPTERS = "graders.rag.adapters"
LAB = load_lab("rag")

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


def _notebook(tmp_path: Path, cells: list[dict]) -> Path:
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return path


def _code(source: str, **metadata: object) -> dict:
    return {"cell_type": "code", "metadata": metadata, "source": source, "outputs": [], "execution_count": None}


# ------------------------------------------------------------------ lab.toml


def test_lab_toml_loads_typed_and_auto_weights_add_up() -> None:
    assert sum(p.weight for p in LAB.parts.values() if not p.manual) == 100
    assert LAB.parts["written"].manual and LAB.parts["written"].weight == 0
    assert LAB.parts["retrieval_quality"].full_at_ratio == 0.97 and LAB.profile("quick").rounds >= 2
    assert LAB.limits.memory_mb >= 2048 and LAB.notebook.exists()
    with pytest.raises(SystemExit, match="no profile"):
        LAB.profile("nope")


def test_lab_toml_with_bad_weights_is_refused(tmp_path: Path) -> None:
    text = (LAB.folder / "lab.toml").read_text().replace("weight = 36", "weight = 30", 1)
    (tmp_path / "lab.toml").write_text(text)
    with pytest.raises(ValueError, match="add up to 94, not 100"):
        load_lab(tmp_path / "lab.toml")


# ------------------------------------------------------------------ notebook -> module


def test_extraction_keeps_code_drops_test_cells_excluded_cells_and_magics(tmp_path: Path) -> None:
    path = _notebook(tmp_path, [
        _code("%matplotlib inline\n!pip install x\nx = 1\n"),
        _code("%%time\ny = 2\n"),
        _code("assert x == 1\nTESTED = True\n", nbgrader={"grade": True, "solution": False, "grade_id": "t1"}),
        _code("z = 3\n", nbgrader={"grade": True, "solution": True, "grade_id": "s1"}),  # autograded answer: kept
        _code("EXPLORED = True\n", tags=["ailab-exclude"]),
        {"cell_type": "markdown", "metadata": {}, "source": "# prose"},
    ])
    out = extract_module(path)
    assert out.ok, out.errors
    namespace: dict[str, object] = {}
    exec(compile(out.source, "candidate.py", "exec"), namespace)
    assert namespace["x"] == 1 and namespace["z"] == 3
    assert "y" not in namespace and "TESTED" not in namespace and "EXPLORED" not in namespace


def test_extraction_of_the_example_notebook_compiles_without_its_tests() -> None:
    out = extract_module(EXAMPLES / "naive.ipynb")
    assert out.ok, out.errors
    assert "def chunk" in out.source and "class Retriever" in out.source
    nb = json.loads((EXAMPLES / "naive.ipynb").read_text())
    tests = [c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade")
             and not c["metadata"]["nbgrader"].get("solution")]
    assert tests and all("".join(c["source"]).strip() not in out.source for c in tests)
    compile(out.source, "candidate.py", "exec")


def test_a_plain_python_module_is_accepted_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "sub.py"
    path.write_text(STUBS)
    out = extract_module(path)
    assert out.ok and out.source == STUBS


@pytest.mark.parametrize("content, message", [
    ("{not json", "not a valid notebook"),
    ('{"hello": 1}', "not a Jupyter notebook"),
    ('{"cells": [{"cell_type": "markdown", "source": "hi", "metadata": {}}]}', "no code cells"),
])
def test_bad_notebooks_give_clear_errors_not_exceptions(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.ipynb"
    path.write_text(content)
    out = extract_module(path)
    assert not out.ok and message in out.errors[0]


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    out = extract_module(tmp_path / "absent.ipynb")
    assert not out.ok and "does not exist" in out.errors[0]


def test_edited_read_only_cells_are_flagged_with_nbgraders_checksum() -> None:
    from nbformat import from_dict
    from nbgrader.utils import compute_checksum

    nb = json.loads((EXAMPLES / "naive.ipynb").read_text())
    test_cell = next(c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade")
                     and not c["metadata"]["nbgrader"].get("solution"))
    test_cell["metadata"]["nbgrader"]["checksum"] = compute_checksum(from_dict({**test_cell,
                                                                                "source": "".join(test_cell["source"])}))
    assert checksum_problems(nb) == []
    test_cell["source"] = "assert True\n"
    problems = checksum_problems(nb)
    assert len(problems) == 1 and test_cell["metadata"]["nbgrader"]["grade_id"] in problems[0]


# ------------------------------------------------------------------ the sandboxed worker


def _worker(source: str, start_timeout_s: float = 90) -> Worker:
    return Worker(source, ADAPTERS, name="t", memory_mb=LAB.limits.memory_mb, start_timeout_s=start_timeout_s,
                  labels={"chunk": "chunk", "index": "Retriever.index"})


def test_worker_serves_adapters_only_and_reports_candidate_exceptions() -> None:
    source = STUBS + "\ndef chunk(text, max_words=120, overlap=20):\n    raise ValueError('nope')\n"
    with _worker(source) as w:  # loads torch + the embedding model under lab.toml's memory limit
        assert httpx.get(f"{w.url}/health").json() == {"ok": True, "error": None}
        with pytest.raises(WorkerError, match=r"chunk raised ValueError: nope \(line \d+\)"):
            w.call("chunk", 10, text="a b", max_words=2, overlap=0)
        reply = httpx.post(f"{w.url}/call", json={"fn": "chunk", "args": {"text": "a", "max_words": 1, "overlap": 0}})
        assert "Traceback" in reply.json()["traceback"]
        assert w.call("tokenize", 10, text="Still Alive") == ["still", "alive"]
        # only the adapters' exports are callable: no reaching into the module or the stdlib
        for fn in ("validate", "_nbytes", "__import__", "missing_names"):
            assert httpx.post(f"{w.url}/call", json={"fn": fn, "args": {}}).status_code == 404
        assert w.call("index", 10, docs=[{"id": "d1", "title": "", "text": "x"}])["seconds"] >= 0
        hot = httpx.post(f"{w.url}/search", json={"query": "anything", "k": 3}).json()
        assert hot["ok"] and hot["result"] == [["d1", 1.0]]


@pytest.mark.slow
def test_a_module_that_fails_to_import_is_reported_by_health() -> None:
    with pytest.raises(WorkerError, match=r"failed while loading: ZeroDivisionError.*line 2"):
        with _worker("x = 1\ny = 1 / 0\n"):
            pass
    with pytest.raises(WorkerError, match="does not define .*Retriever"):
        with _worker("def chunk(t): return []\n"):
            pass


def test_a_hang_at_import_is_killed_within_the_start_limit() -> None:
    started = time.monotonic()
    with pytest.raises(WorkerError, match="did not finish loading within 3 s"):
        with _worker("while True:\n    pass\n", start_timeout_s=3):
            pass
    assert time.monotonic() - started < 20


@pytest.mark.slow
def test_a_looping_call_times_out_and_its_whole_process_group_dies() -> None:
    source = STUBS + ("\nimport subprocess, sys\n"
                      "CHILD = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
                      "def chunk(text, max_words=120, overlap=20):\n    while True: pass\n")
    w = _worker(source)
    w.start()
    try:
        started = time.monotonic()
        with pytest.raises(WorkerError, match="chunk did not finish within 2 s"):
            w.call("chunk", 2, text="a", max_words=2, overlap=0)
        assert time.monotonic() - started < 12
        assert w.proc is not None and w.proc.poll() is not None
        assert _live_members(w.proc.pid) == [], "nothing of the submission's process group may survive"
        with pytest.raises(WorkerError, match="no longer running"):
            w.call("chunk", 2, text="a", max_words=2, overlap=0)
    finally:
        w.cleanup()
    assert not w.scratch.exists()


@pytest.mark.slow
def test_the_worker_runs_in_a_scratch_folder_with_a_scrubbed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AILAB_SECRET_FOR_TEST", "s3cret")
    source = STUBS + "\nimport os\ndef tokenize(text):\n    return [os.getcwd(), os.environ.get('HOME', ''), " \
                     "os.environ.get('AILAB_SECRET_FOR_TEST', 'absent'), os.environ.get('OMP_NUM_THREADS', '')]\n"
    with _worker(source) as w:
        cwd, home, secret, threads = w.call("tokenize", 10, text="")
        assert Path(cwd).resolve() == w.scratch.resolve() == Path(home).resolve()
        assert secret == "absent" and threads == "1"


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


# ------------------------------------------------------------------ Locust load


@pytest.mark.slow
def test_locust_load_collects_raw_samples_from_a_real_worker(tmp_path: Path) -> None:
    with _worker(STUBS) as w:
        w.call("index", 10, docs=[{"id": f"d{i}", "title": "", "text": "x"} for i in range(20)])
        out = run_load(w.url, ["q one", "q two"], seconds=2, users=2, spawn_rate=2, k=5, workdir=tmp_path,
                       label="t")
    samples = out["samples"]
    assert len(samples) > 20 and all(ok for _, _, ok in samples)
    assert all(ms > 0 for _, ms, _ in samples) and out["seconds"] == 2
    summary = latency_summary(samples, out["seconds"])
    assert summary["latency_p50_ms"] <= summary["latency_p95_ms"] and summary["error_rate"] == 0


def test_load_only_targets_localhost(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="127.0.0.1"):
        run_load("http://example.com:80", ["q"], seconds=1, users=1, spawn_rate=1, k=1, workdir=tmp_path, label="x")


# ------------------------------------------------------------------ scoring, scorecard, report


def test_ramp_is_flat_near_ratio_one_so_noise_does_not_move_points() -> None:
    q, p = LAB.parts["retrieval_quality"], LAB.parts["performance"]
    assert ramp(1.0, q.zero_at_ratio, q.full_at_ratio) == 1.0 and ramp(0.6, 0.6, 0.97) == 0.0
    assert ramp(0.785, 0.6, 0.97) == pytest.approx(0.5)
    assert ramp(3.75, 6.0, 1.5) == pytest.approx(0.5) and ramp(6.0, 6.0, 1.5) == 0.0
    for noise in (0.8, 0.9, 1.0, 1.1, 1.3):  # +-30 % latency noise on the reference graded against itself
        assert ramp(noise, p.zero_at_ratio, p.full_at_ratio) == 1.0
    for noise in (0.98, 1.0, 1.02):
        assert ramp(noise, q.zero_at_ratio, q.full_at_ratio) == 1.0


def test_latency_summary_from_raw_samples() -> None:
    samples = [[0.0, float(ms), True] for ms in range(1, 101)] + [[0.0, 5.0, False]]
    s = latency_summary(samples, seconds=10)
    assert s["latency_p50_ms"] == pytest.approx(50.5) and s["throughput_qps"] == 10.0
    assert s["latency_p95_ms"] == pytest.approx(95.05) and s["error_rate"] == pytest.approx(1 / 101)


def test_scorecard_json_has_exactly_the_schema_keys_and_report_inlines_plots(tmp_path: Path) -> None:
    card = Scorecard(lab="rag", submission="my notebook")
    card.add("chunking", 0.5, 6, "half")
    card.add("performance", 1.7, 22, "clipped")
    card.metrics = {"ndcg@10": 0.5}
    card.errors.append("something went wrong; do this")
    assert card.total() == 25.0
    card.extras = {"curve": {1: 0.2, 10: 0.6}, "ref_curve": {1: 0.3, 10: 0.7},
                   "latencies": [5.0, 6.0, 9.0], "ref_latencies": [4.0, 5.0, 7.0]}
    path = card.write(tmp_path / card.slug)
    data = json.loads(path.read_text())
    assert tuple(data) == KEYS and data["schema"] == 2 and data["score"] == 25.0
    assert data["parts"][1] == {"name": "performance", "points": 22.0, "max_points": 22, "detail": "clipped"}
    html = write_report(card, tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3  # recall@k, latency CDF, latency histogram
    assert "something went wrong; do this" in html and "25 / 100" in html and "not measured" in html
