"""The serving lab notebook: deterministic build, nbgrader release, and the solution module serving for real.

The committed notebooks must equal a fresh build of labs/serving/make_notebook.py; the release
notebook comes from nbgrader's own generate_assignment (graders.course); the source notebook's
extracted module (as the grader extracts it) serves a streamed completion from the real engine
through httpx's in-process ASGI transport; nbgrader autograde gives the solution full marks and
the naive example fewer.
"""
from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import sys
import types
from pathlib import Path

import nbformat
import pytest

from graders.course import generate_release, init_course, run_nbgrader
from graders.engine.notebook import extract_module
from graders.paths import LABS_DIR
from graders.serving.interface import REQUIRED_NAMES, ServerSettings

LAB = LABS_DIR / "serving"
SOURCE = LAB / "source" / "serving" / "serving.ipynb"
EXAMPLES = {"naive": LAB / "examples" / "naive.ipynb", "broken": LAB / "examples" / "broken.ipynb"}


def _make_notebook():
    spec = importlib.util.spec_from_file_location("serving_make_notebook", LAB / "make_notebook.py")
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


def _module(path: Path, name: str) -> types.ModuleType:
    extracted = extract_module(path)
    assert extracted.ok, extracted.errors
    module = types.ModuleType(name)
    sys.modules[name] = module  # dataclasses look their module up there
    exec(compile(extracted.source, str(path), "exec"), module.__dict__)  # noqa: S102 -- what the grader imports
    return module


def test_committed_notebooks_equal_a_fresh_build():
    built = _make_notebook().outputs()
    assert set(built) == {SOURCE, *EXAMPLES.values()}
    for path, text in built.items():
        assert path.exists(), f"{path} missing: run python labs/serving/make_notebook.py"
        assert path.read_text() == text, f"{path} is stale: run python labs/serving/make_notebook.py"


def test_source_notebook_cells():
    cells = nbformat.read(SOURCE, as_version=4).cells
    answers = [c for c in cells if _meta(c).get("solution") and c.cell_type == "code"]
    tests = [c for c in cells if _meta(c).get("grade") and not _meta(c).get("solution")]
    written = [c for c in cells if _meta(c).get("grade") and _meta(c).get("solution")]
    assert all("### BEGIN SOLUTION" in c.source for c in answers) and len(answers) == 4
    assert all("### BEGIN HIDDEN TESTS" in c.source and c.source.index("assert") < c.source.index("### BEGIN HIDDEN")
               for c in tests), "every test cell has visible asserts, then hidden tests"
    assert [c.cell_type for c in written] == ["markdown"] and _meta(written[0])["points"] == 5
    assert "max_batch" in written[0].source or "max_batch" in cells[cells.index(written[0]) - 1].source
    assert [c.metadata["ailab"]["task"] for c in tests] == ["1.1", "1.2", "2.1", "2.2", "3.1"]
    assert all(re.fullmatch(r"[a-z0-9-]+", c.id) for c in cells) and len({c.id for c in cells}) == len(cells)


def test_examples_are_release_notebooks():
    hidden = _hidden_lines()
    assert hidden
    for name, path in EXAMPLES.items():
        text = path.read_text()
        assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text, name
        assert not any(line in text for line in hidden), f"{name} leaks a hidden test"
    naive = extract_module(EXAMPLES["naive"]).source
    assert "asyncio.Lock()" in naive and "QueueFull(" not in naive.split("class Scheduler")[1].split("def create_app")[0]


@pytest.mark.slow
def test_release_has_no_solutions_and_stubs_name_their_task(tmp_path: Path):
    release = generate_release("serving", tmp_path / "course") / "serving.ipynb"
    text = release.read_text()
    assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text
    assert not any(line in text for line in _hidden_lines()), "a hidden test reached the release notebook"
    cells = nbformat.read(release, as_version=4).cells
    answers = [c for c in cells if _meta(c).get("solution") and c.cell_type == "code"]
    assert [c.metadata["ailab"]["task"] for c in answers] == ["1.1", "1.2", "2.1/2.2", "3.1"]
    namespace: dict = {}
    for cell in cells:
        if cell.cell_type == "code" and not _meta(cell).get("grade") and "ailab-exclude" not in cell.metadata.get("tags", []):
            task = cell.metadata.get("ailab", {}).get("task")
            if task:
                stubs = set(re.findall(r'raise NotImplementedError\("Task ([0-9./]+): ', cell.source))
                assert stubs == {task}, f"{_meta(cell)['grade_id']}: {cell.source}"
            exec(cell.source, namespace)  # noqa: S102 -- a release notebook's cells define without raising
    for call, task in [(lambda: namespace["sse"]("[DONE]"), "1.1"), (lambda: namespace["usage"](1, 1), "1.2"),
                       (lambda: namespace["Scheduler"](types.SimpleNamespace(max_batch=1)), "2.1/2.2"),
                       (lambda: namespace["create_app"](None, ServerSettings()), "3.1")]:
        with pytest.raises(NotImplementedError, match=re.escape(f"Task {task}:")):
            call()


@pytest.mark.slow
def test_source_module_streams_a_completion_over_asgi():
    import httpx

    from labkit.serving import load_engine

    module = _module(SOURCE, "serving_solution")
    assert all(hasattr(module, n) for n in REQUIRED_NAMES)
    engine = load_engine(max_batch=4)
    app = module.create_app(engine, ServerSettings(max_batch=4, max_waiting=4, request_timeout_s=10))

    async def run() -> tuple[int, str]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://serving.test") as client:
                body = {"prompt": "The list type", "max_tokens": 6, "ignore_eos": True, "stream": True,
                        "stream_options": {"include_usage": True}}
                r = await client.post("/v1/completions", json=body)
                metrics = (await client.get("/metrics")).text
                return r.status_code, r.text + "\n" + metrics

    status, text = asyncio.run(asyncio.wait_for(run(), 60))
    body, metrics = text.split("\n\ndata: [DONE]\n\n")
    assert status == 200
    events = [json.loads(block[len("data: "):]) for block in body.split("\n\n")]
    assert [len(e["choices"]) for e in events] == [1] * 6 + [0], events
    assert events[-1]["usage"]["completion_tokens"] == 6
    assert "serving_time_to_first_token_seconds_count 1.0" in metrics
    assert not engine.has_work()


@pytest.mark.slow
def test_autograde_gives_the_solution_full_marks_and_naive_fewer(tmp_path: Path):
    from nbgrader.api import Gradebook

    root = init_course(tmp_path / "course", ["serving"])
    for student, path in {"solution": SOURCE, "naive": EXAMPLES["naive"]}.items():
        nb = nbformat.read(path, as_version=4)
        nb.cells = [c for c in nb.cells if "ailab-exclude" not in c.metadata.get("tags", [])]
        target = root / "submitted" / student / "serving" / "serving.ipynb"
        target.parent.mkdir(parents=True)
        nbformat.write(nb, target)
    print("[test] nbgrader autograde serving ...", file=sys.stderr)
    run_nbgrader(root, "autograde", "serving", timeout=300)
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}", course_id="ailab") as gb:
        auto = {s: (gb.find_submission("serving", s).code_score, gb.find_submission("serving", s).max_code_score)
                for s in ("solution", "naive")}
    assert auto["solution"][0] == auto["solution"][1] == 100.0, auto
    assert auto["naive"][0] < auto["solution"][0] - 20, auto
