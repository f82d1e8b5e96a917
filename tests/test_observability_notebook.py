"""The observability lab notebook: deterministic build, nbgrader release and autograde, and the solution hosted for real.

The committed notebooks must equal a fresh build of labs/observability/make_notebook.py; the
solution cells must be the reference's code; the source notebook's extracted module (as the
grader extracts it) is loaded by the grader's own host (`graders.observability.host.Assistant`)
against a mocked backend, and the spans and metrics it records pass every conformance check;
nbgrader's generate_assignment leaves stubs that name their task, and autograde gives the solution
full marks and each example exactly the points of the task it gets wrong.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import re
import sys
from pathlib import Path

import httpx
import nbformat
import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from graders.check import detect_lab
from graders.course import init_course, run_nbgrader
from graders.engine.notebook import extract_module
from graders.observability import conformance
from graders.observability.host import Assistant
from graders.observability.interface import REQUIRED_NAMES, ServiceConfig
from graders.observability.records import Truth
from graders.observability.scenario import _records
from graders.paths import LABS_DIR, REPO_ROOT

LAB = LABS_DIR / "observability"
SOURCE = LAB / "source" / "observability" / "observability.ipynb"
EXAMPLES = {name: LAB / "examples" / f"{name}.ipynb" for name in ("always_alert", "never_alert", "broken")}
REFERENCE = [REPO_ROOT / "reference_systems" / "observability" / f for f in ("instrumentation.py", "detectors.py")]
TASKS = ["1.1", "1.2", "2.1", "2.2", "2.3", "2.4", "2.5"]
POINTS = {"1.1": 9, "1.2": 21, "2.1": 20, "2.2": 12, "2.3": 12, "2.4": 13, "2.5": 13}  # = the lab.toml weights they carry


def _make_notebook():
    spec = importlib.util.spec_from_file_location("observability_make_notebook", LAB / "make_notebook.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _meta(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def _hidden_lines() -> list[str]:
    """Distinctive lines of the source's hidden tests (not repeating a visible line), to look for where they must not be."""
    lines, visible = [], set()
    for cell in nbformat.read(SOURCE, as_version=4).cells:
        for block in re.findall(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", cell.source, re.DOTALL):
            lines += [ln.strip() for ln in block.splitlines() if len(ln.strip()) > 30 and not ln.strip().startswith("#")]
        shown = re.sub(r"### BEGIN HIDDEN TESTS\n.*?### END HIDDEN TESTS", "", cell.source, flags=re.DOTALL)
        visible |= {ln.strip() for ln in shown.splitlines()}
    return [ln for ln in lines if ln not in visible]


def test_committed_notebooks_equal_a_fresh_build():
    built = _make_notebook().outputs()
    assert set(built) == {SOURCE, *EXAMPLES.values()}
    for path, text in built.items():
        assert path.exists(), f"{path} missing: run python labs/observability/make_notebook.py"
        assert path.read_text() == text, f"{path} is stale: run python labs/observability/make_notebook.py"


def test_source_notebook_cells():
    cells = nbformat.read(SOURCE, as_version=4).cells
    answers = [c for c in cells if _meta(c).get("solution") and c.cell_type == "code"]
    tests = [c for c in cells if _meta(c).get("grade") and not _meta(c).get("solution")]
    written = [c for c in cells if _meta(c).get("grade") and _meta(c).get("solution")]
    assert all("### BEGIN SOLUTION" in c.source for c in answers)
    assert [c.metadata["ailab"]["task"] for c in answers] == TASKS
    assert all("### BEGIN HIDDEN TESTS" in c.source and c.source.index("assert") < c.source.index("### BEGIN HIDDEN")
               for c in tests), "every test cell has visible asserts, then hidden tests"
    assert {c.metadata["ailab"]["task"]: _meta(c)["points"] for c in tests} == POINTS and len(tests) == len(POINTS)
    assert [c.cell_type for c in written] == ["markdown"] and _meta(written[0])["points"] == 10
    assert "root cause" in cells[cells.index(written[0]) - 1].source.lower()
    explore = [c for c in cells if "ailab-exclude" in c.metadata.get("tags", [])]
    assert len(explore) == 2 and all(not _meta(c) for c in explore)
    assert all(_meta(c)["grade_id"].startswith("obs_") for c in cells if _meta(c)), "grade ids unique to this lab"
    assert all(re.fullmatch(r"[a-z0-9-]+", c.id) for c in cells) and len({c.id for c in cells}) == len(cells)


def test_ailab_check_recognises_the_lab():
    assert {path.name: detect_lab(path) for path in (SOURCE, *EXAMPLES.values())} == \
        dict.fromkeys([SOURCE.name, *(p.name for p in EXAMPLES.values())], "observability")


def test_examples_are_release_notebooks():
    hidden = _hidden_lines()
    assert hidden
    for name, path in EXAMPLES.items():
        text = path.read_text()
        assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text, name
        assert not any(line in text for line in hidden), f"{name} leaks a hidden test"
    assert "retrieval.documents" in extract_module(EXAMPLES["broken"]).source
    assert "return [Silent()]" in extract_module(EXAMPLES["never_alert"]).source
    assert "return [Flapping()]" in extract_module(EXAMPLES["always_alert"]).source


def _definitions(source: str) -> dict[str, str]:
    """Top-level functions, classes and assignments by name, as AST dumps without docstrings or comments."""
    out = {}
    for node in ast.parse(source).body:
        for inner in ast.walk(node):
            body = getattr(inner, "body", None)
            if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                    and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                inner.body = body[1:] or [ast.Pass()]
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            out[node.name] = ast.dump(node)
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            out[node.targets[0].id] = ast.dump(node)
    return out


def test_solutions_are_the_reference_code():
    notebook = _definitions(extract_module(SOURCE).source)
    for path in REFERENCE:
        for name, dump in _definitions(path.read_text()).items():
            assert name in notebook, f"{name} of {path.name} is not in the notebook"
            assert notebook[name] == dump, (f"{name} differs between {path.name} and the notebook's solution: "
                                            "the solutions are cut from the reference: run labs/observability/make_notebook.py")


# ---------------------------------------------------------------- the solution hosted by the grader's own host

def _backend(request: httpx.Request) -> httpx.Response:
    """The backend's /retrieve and /generate, canned; a prompt containing "refund" gets an HTTP 503."""
    body = json.loads(request.content)
    if request.url.path == "/retrieve":
        emb = np.random.default_rng(len(body["query"])).standard_normal(384)
        hits = [{"doc_id": f"d{i}", "title": f"t{i}", "text": "passage", "score": 0.8 - 0.1 * i} for i in range(body["k"])]
        return httpx.Response(200, json={"hits": hits, "cache_hit": len(body["query"]) % 2 == 0,
                                         "query_embedding": (emb / np.linalg.norm(emb)).tolist()})
    if "refund" in body["prompt"]:
        return httpx.Response(503, text="model server overloaded")
    n = body["max_tokens"]
    lines = [json.dumps({"text": f" w{i}"}) for i in range(n)]
    lines.append(json.dumps({"done": True, "input_tokens": 40, "output_tokens": n, "finish_reason": "length"}))
    return httpx.Response(200, content="\n".join(lines).encode())


def _hosted(path: Path, tmp_path: Path) -> Assistant:
    extracted = extract_module(path)
    assert extracted.ok, extracted.errors
    module = tmp_path / "candidate.py"
    module.write_text(extracted.source)
    assistant = Assistant(str(module), "http://backend.test", ServiceConfig())
    assistant.pipeline.client.close()
    assistant.pipeline.client = httpx.Client(transport=httpx.MockTransport(_backend), base_url="http://backend.test")
    return assistant


def test_hosted_solution_passes_every_conformance_check(tmp_path: Path):
    assistant = _hosted(SOURCE, tmp_path)
    assert assistant.error is None, assistant.error
    queries = ["how long do I have to send back shoes?", "where is my parcel right now?",
               "can I get a refund for opened headphones?", "how do I reset my password please"]
    statuses = [assistant.ask(q, plain=False)[0] for q in queries * 3]
    assert statuses == [200, 200, 502, 200] * 3
    spans = _records(assistant.spans.drain(), 0.0)
    assert {s.name for s in spans} == {"POST /ask", "retrieval support-kb", "text_completion tiny-gpt2"}
    truth = Truth()
    truth.extend(assistant.pipeline.truth.drain())
    checks = conformance.check_telemetry(spans, generate_latest(assistant.registry).decode(), truth, ServiceConfig())
    assert {c.name: c.fraction for c in checks} == {c.name: 1.0 for c in checks}, [c for c in checks if c.fraction < 1]
    tick = assistant.detect({"now": 1.0, "spans": [], "metrics": {"assistant": [], "backend": []}})
    assert set(tick["alerts"]) == {"query_drift", "slo_burn_rate", "retrieval_quality", "cache_efficiency",
                                   "resource_trend"} and not tick["errors"], tick


def test_hosted_broken_example_fails_every_request(tmp_path: Path):
    assistant = _hosted(EXAMPLES["broken"], tmp_path)
    assert assistant.error is None, assistant.error
    status, body = assistant.ask("how long do I have to send back shoes?", plain=False)
    assert status == 500 and "AttributeError" in body["error"], body


def test_module_names_and_a_registry_per_handler():
    extracted = extract_module(SOURCE)
    namespace: dict = {"__name__": "observability_solution"}
    exec(compile(extracted.source, str(SOURCE), "exec"), namespace)  # noqa: S102 -- what the grader imports
    assert all(callable(namespace.get(n)) for n in REQUIRED_NAMES)
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("t")
    for _ in range(2):  # the metrics go on the registry passed in: two handlers in one process
        assert callable(namespace["create_handler"](tracer, CollectorRegistry(), ServiceConfig()))


# ---------------------------------------------------------------- nbgrader: release and autograde

@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    root = init_course(tmp_path_factory.mktemp("course") / "course", ["observability"])
    for student, path in {"solution": SOURCE, **EXAMPLES}.items():
        nb = nbformat.read(path, as_version=4)
        nb.cells = [c for c in nb.cells if "ailab-exclude" not in c.metadata.get("tags", [])]
        target = root / "submitted" / student / "observability" / "observability.ipynb"
        target.parent.mkdir(parents=True)
        nbformat.write(nb, target)
    print("[test] nbgrader autograde observability ...", file=sys.stderr)
    run_nbgrader(root, "autograde", "observability", timeout=600)
    return root


@pytest.mark.slow
def test_release_has_no_solutions_and_stubs_name_their_task(course: Path):
    release = course / "release" / "observability" / "observability.ipynb"
    text = release.read_text()
    assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text
    assert not any(line in text for line in _hidden_lines()), "a hidden test reached the release notebook"
    cells = nbformat.read(release, as_version=4).cells
    namespace: dict = {"__name__": "observability_release"}
    for cell in cells:
        if cell.cell_type == "code" and not _meta(cell).get("grade") and "ailab-exclude" not in cell.metadata.get("tags", []):
            task = cell.metadata.get("ailab", {}).get("task")
            if task:
                stubs = set(re.findall(r'raise NotImplementedError\("Task ([0-9.]+): ', cell.source))
                assert stubs == {task}, f"{_meta(cell)['grade_id']}: {cell.source}"
            exec(cell.source, namespace)  # noqa: S102 -- a release notebook's cells define without raising
    config = ServiceConfig()
    calls = [(lambda: namespace["Metrics"](CollectorRegistry(), config), "1.1"),
             (lambda: namespace["create_handler"](None, CollectorRegistry(), config), "1.2"),
             (lambda: namespace["SloBurnRate"](config), "2.1"), (lambda: namespace["QueryDrift"](), "2.2"),
             (lambda: namespace["RetrievalQuality"](), "2.3"), (lambda: namespace["CacheEfficiency"](), "2.4"),
             (lambda: namespace["ResourceTrend"](), "2.4"), (lambda: namespace["create_detectors"](config), "2.5")]
    for call, task in calls:
        with pytest.raises(NotImplementedError, match=re.escape(f"Task {task}:")):
            call()


@pytest.mark.slow
def test_autograde_gives_the_solution_full_marks_and_each_example_its_task(course: Path):
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", course_id="ailab") as gb:
        auto = {s: (gb.find_submission("observability", s).code_score,
                    gb.find_submission("observability", s).max_code_score)
                for s in ("solution", *EXAMPLES)}
    assert auto["solution"][0] == auto["solution"][1] == 100.0, auto
    assert auto["always_alert"][0] == auto["never_alert"][0] == 100.0 - POINTS["2.5"], auto
    assert auto["broken"][0] == 100.0 - POINTS["1.2"], auto
