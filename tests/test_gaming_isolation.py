"""Issue 11, hole 3: a submission that imports, reads or copies the reference implementation is refused,
flagged in its scorecard (`integrity.reference_access`, the summary table, report.html) and zeroed.

Both layers are exercised: as root each worker runs as its own user id in a mount namespace where the
repository shows only graders/, labkit/, the lab-provided serving engine and model, the venv and the cache,
and the guard's audit hook refuses the rest; with AILAB_SANDBOX_USER=same (or not root) the hook alone does.
Every variant (import *, importlib with a built name, sys.path, exec of the file, git objects, the labs'
source notebook) starts one worker per mode, which fails to load in under a second. The flag end to end: a RAG
batch through the CLI (smoke profile) and an observability grade in-process (the candidate never loads, so no
load phase runs); the serving host, started as the grader starts it. Fixtures: tests/fixtures/gaming/isolation/
(never vouched for).
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from graders.engine import guard
from graders.engine.labconfig import load_lab
from graders.engine.sandbox import Worker, WorkerError
from graders.engine.sandbox_user import VOUCHED_ENV, mount_plan, sees_reference
from graders.paths import REPO_ROOT, cache_dir

FIX = REPO_ROOT / "tests" / "fixtures" / "gaming" / "isolation"
RAG = load_lab("rag")
ROOT_SANDBOX = os.geteuid() == 0 and os.environ.get("AILAB_SANDBOX_USER", "") in ("", "auto")
MODES = ["auto", "same"] if ROOT_SANDBOX else ["same"]  # auto as root: a user id and a mount namespace
ZEROED = "reached for the reference (zeroed)"

# fixture -> what its first refusal names
VARIANTS = {
    "rag_import_star": "import of reference_systems.rag.submission",
    "importlib_built": "import of reference_systems.rag)",
    "syspath_insert": f"import of retriever from {REPO_ROOT}/reference_systems/rag",
    "exec_from_disk": f"opening {REPO_ROOT}/reference_systems/rag/submission.py",
    "git_objects": f"starting `git --git-dir {REPO_ROOT}/.git show HEAD:reference_systems/rag/retriever.py`",
    "labs_notebook": f"opening {REPO_ROOT}/labs/rag/source/rag/rag.ipynb",
}


@pytest.fixture
def as_candidate(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Grade as a real run would: nothing vouched for, workers in the requested sandbox mode."""
    monkeypatch.delenv(VOUCHED_ENV, raising=False)
    monkeypatch.setenv("AILAB_SANDBOX_USER", request.param)
    return str(request.param)


def _worker(source: str, name: str) -> Worker:
    return Worker(source, "graders.rag.adapters", name=name, memory_mb=RAG.limits.memory_mb, start_timeout_s=60,
                  labels={"tokenize": "tokenize"}, cpu_s=RAG.limits.cpu_s)


def test_the_policy_shows_only_what_the_sandbox_needs() -> None:
    policy = guard.Policy()
    root = str(REPO_ROOT)
    shown = [f"{root}/graders/rag/metrics.py", f"{root}/labkit/serving.py", f"{root}/reference_systems/__init__.py",
             f"{root}/reference_systems/serving/engine.py", f"{root}/reference_systems/serving/__pycache__/model.cpython-311.pyc",
             f"{root}/.venv/bin/python", str(cache_dir() / "models" / "x"), "/tmp/x", f"{root}x/y"]
    hidden = [root, f"{root}/reference_systems/rag/retriever.py", f"{root}/reference_systems/serving/server.py",
              f"{root}/reference_systems/serving/__pycache__/openai_api.cpython-311.pyc", f"{root}/.git/HEAD",
              f"{root}/labs/rag/source/rag/rag.ipynb", f"{root}/tests/test_adversarial.py", f"{root}/docs/x.md"]
    assert [p for p in shown if policy.hidden(p)] == [] and [p for p in hidden if not policy.hidden(p)] == []
    assert policy.module_refused("reference_systems.rag") and policy.module_refused("reference_systems.serving.server")
    assert not policy.module_refused("reference_systems.serving.engine") and not policy.module_refused("labkit.serving")
    assert policy.folder_refused(f"{root}/reference_systems/rag") and not policy.folder_refused(root)
    assert not policy.folder_refused(f"{root}/reference_systems/serving"), "the way to the lab-provided engine"
    assert policy.spawn_refused(["git", "-C", root, "log"], "/tmp") and policy.spawn_refused(["ls"], root)
    assert policy.spawn_refused(f"cat '{root}/labs/rag/lab.toml'", "/tmp")
    assert policy.spawn_refused(["git", "show", "HEAD:reference_systems/rag/retriever.py"], "/tmp")
    assert not policy.spawn_refused([f"{root}/.venv/bin/python", "-c", "pass"], "/tmp")
    assert not policy.spawn_refused(["ls", f"{root}x/y"], "/tmp")
    assert not policy.open_refused(f"{root}/PWNED.txt", os.O_WRONLY | os.O_CREAT), "writes are the uid's to refuse"


def test_only_the_reference_itself_or_a_vouched_fixture_sees_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(VOUCHED_ENV, raising=False)
    reference = (REPO_ROOT / "reference_systems" / "rag" / "submission.py").read_text()
    assert sees_reference(reference) and not sees_reference(reference + "\n")
    star = (FIX / "rag_import_star.py").read_text()
    assert not sees_reference(star)
    monkeypatch.setenv(VOUCHED_ENV, str(FIX.parent.parent / "rag"))
    assert sees_reference((FIX.parent.parent / "rag" / "bm25_only.py").read_text()) and not sees_reference(star)
    views = {folder for folder, _ in mount_plan(True)}
    assert str(REPO_ROOT) in views and str(REPO_ROOT) not in {folder for folder, _ in mount_plan(False)}


@pytest.mark.parametrize("as_candidate", MODES, indirect=True)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_each_way_to_the_reference_is_refused_and_reported(as_candidate: str, variant: str) -> None:
    w = _worker((FIX / f"{variant}.py").read_text(), f"isolation-{variant}")
    assert not w.sees_reference
    with pytest.raises(WorkerError, match=r"^the submission failed while loading: ReferenceRefused: the reference "
                                          r"implementation is not available to submissions \("):
        w.__enter__()  # cleaned up on failure: the refusals are read back then
    assert w.refusals and all(r.startswith(guard.REFUSAL) for r in w.refusals), w.refusals
    assert VARIANTS[variant] in w.refusals[0], w.refusals
    if variant == "git_objects":
        assert len(w.refusals) == 2 and f"opening {REPO_ROOT}/.git/HEAD" in w.refusals[1], "caught, then retried"


PROBE = '''
import importlib, importlib.util, json, os
def chunk(text, max_words=120, overlap=20): return text.split()
def reciprocal_rank_fusion(rankings, k=60): return []
def expand_query(q, fb, alpha=1.0, beta=0.5): return q
def answer(query, hits, docs): return {"text": "", "citations": []}
class DenseIndex: pass
class Retriever:
    def index(self, docs): pass
    def search(self, query, k=10): return []
def tokenize(text):
    seen = {p: sorted(os.listdir(p)) if os.path.isdir(p) else None for p in text.split(",")}
    importlib.import_module("reference_systems.serving.model")  # lab-provided: it loads (the engine needs torch)
    engine = importlib.util.find_spec("reference_systems.serving.engine").origin
    return [json.dumps(seen), engine]
'''


@pytest.mark.parametrize("as_candidate", MODES[:1], indirect=True)  # as root, the sandbox; else the same user
@pytest.mark.slow
def test_a_candidate_sees_only_what_it_needs_and_the_lab_provided_engine_loads(as_candidate: str) -> None:
    root = str(REPO_ROOT)
    folders = [root, f"{root}/reference_systems", f"{root}/reference_systems/serving", f"{root}/labs"]
    with _worker(PROBE, "isolation-probe") as w:
        listing, engine = w.call("tokenize", 120, text=",".join(folders))
    seen = json.loads(listing)
    assert engine == f"{root}/reference_systems/serving/engine.py" and w.refusals == []
    if as_candidate == "auto":  # the mount namespace: nothing else of the repository exists for it
        assert {"graders", "labkit", "reference_systems"} <= set(seen[root]) <= {
            "graders", "labkit", "reference_systems", ".venv", ".cache"}, seen[root]
        assert seen[f"{root}/reference_systems"] == ["__init__.py", "serving"]
        assert seen[f"{root}/reference_systems/serving"] == ["__init__.py", "engine.py", "model.py"]
        assert seen[f"{root}/labs"] is None
    else:  # the same user: it may list the repository, but not read what the guard refuses (above)
        assert "labs" in seen[root] and seen[f"{root}/labs"]


# ------------------------------------------------------------------ one grade per lab


def _notebook(example: Path, fixture: str, out: Path) -> Path:
    """The lab's example notebook with the fixture pasted as one more code cell at the end (its 'solution')."""
    nb = json.loads(example.read_text())
    nb["cells"].append({"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                        "source": (FIX / f"{fixture}.py").read_text()})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(nb))
    return out


def _assert_flagged_and_zeroed(card: dict, refused: str) -> None:
    assert card["score"] == 0.0 and all(p["points"] == 0 for p in card["parts"]), card["parts"]
    access = card["integrity"]["reference_access"]
    assert access and access[0].startswith(guard.REFUSAL) and refused in access[0], access
    assert card["errors"][0].startswith(f"integrity: {guard.REFUSAL} (") and "every part is zeroed" in card["errors"][0]
    assert all(p["detail"].startswith("zeroed: the submission reached for the reference implementation")
               for p in card["parts"] if p["max_points"] > 0)


@pytest.fixture(scope="module")
def rag_batch(tmp_path_factory: pytest.TempPathFactory, warm_caches: None) -> Iterator[dict]:
    """Two RAG notebooks graded in one `ailab grade` run on the smoke profile: `import *` of the reference, and
    a careful one that tries the reference's Retriever and keeps its own when refused (it loads and is measured).
    After the `warm` side job (warm_caches), so the reference's worker reads support-kb's vectors, not embeds
    them a second time beside it (on a clean clone this batch took 71-154 s, and 22 s with the cache warm)."""
    subs, out = tmp_path_factory.mktemp("subs"), tmp_path_factory.mktemp("out")
    naive = REPO_ROOT / "labs" / "rag" / "examples" / "naive.ipynb"
    _notebook(naive, "rag_import_star", subs / "import_star.ipynb")
    _notebook(naive, "caught_attempt", subs / "caught.ipynb")
    env = {k: v for k, v in os.environ.items() if k != VOUCHED_ENV}
    done = subprocess.run([sys.executable, "-m", "graders.cli", "grade", "rag", str(subs), "--out", str(out),
                           "--profile", "smoke"], capture_output=True, text=True, timeout=600,
                          env={**env, "HF_HUB_OFFLINE": "1"})
    cards = {p.parent.name: json.loads(p.read_text()) for p in out.glob("*/scorecard.json")}
    with open(out / "summary.csv", newline="") as f:
        summary = {row["submission"]: row for row in csv.DictReader(f)}
    yield {"done": done, "out": out, "cards": cards, "summary": summary}


@pytest.mark.slow
def test_rag_import_star_and_a_caught_attempt_are_flagged_and_zeroed_in_the_batch(rag_batch: dict) -> None:
    done, cards, summary = rag_batch["done"], rag_batch["cards"], rag_batch["summary"]
    assert done.returncode == 0, done.stderr[-3000:]
    star, caught = cards["import_star"], cards["caught"]
    _assert_flagged_and_zeroed(star, "import of reference_systems.rag.submission")
    assert any("could not be loaded" in e and guard.REFUSAL in e for e in star["errors"])
    _assert_flagged_and_zeroed(caught, "import of reference_systems.rag.retriever")
    assert len(caught["integrity"]["reference_access"]) == 1, "the notebook's own code raised no other refusal"
    assert not any("could not be loaded" in e for e in caught["errors"]), "the careful one loads and is measured"
    assert caught["metrics"]["ndcg@10"] > 0 and any("measured: " in p["detail"] for p in caught["parts"])
    for name in ("import_star", "caught"):
        row = summary[name]
        assert row["score"] == "0.0" and ZEROED in row["integrity"] and row["outcome"].startswith("integrity: ")
        line = next(t for t in done.stdout.splitlines() if t.split()[:2] == [name, "0.0"])
        assert ZEROED in line
        report = (rag_batch["out"] / name / "report.html").read_text()
        assert f"integrity: {guard.REFUSAL}" in report


@pytest.mark.slow
def test_serving_create_app_from_the_reference_is_refused_by_the_host(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The serving host (not the RAG worker) installs the guard too. Started as the grader starts it, with the
    audit hook alone (the RAG batch ran in the sandbox); the scorecard's flag is Batch.publish's, as above."""
    from graders.engine.notebook import extract_module
    from graders.engine.sandbox import take_refusals
    from graders.serving.grade import start_host

    monkeypatch.delenv(VOUCHED_ENV, raising=False)
    monkeypatch.setenv("AILAB_SANDBOX_USER", "same")
    nb = _notebook(REPO_ROOT / "labs" / "serving" / "examples" / "naive.ipynb", "serving_create_app",
                   tmp_path / "create_app.ipynb")
    with pytest.raises(WorkerError, match=r"^the submission failed while loading: ReferenceRefused: the reference "
                                          r"implementation is not available to submissions \(import of "
                                          r"reference_systems\.serving\.submission\)"):
        start_host(extract_module(nb).source, "isolation-create-app", load_lab("serving"))
    refused = take_refusals("isolation-create-app")
    assert len(refused) == 1 and "import of reference_systems.serving.submission" in refused[0], \
        "the notebook's own cells (labkit.serving, the lab-provided engine) raised no refusal"


@pytest.mark.slow
@pytest.mark.parametrize("as_candidate", MODES[:1], indirect=True)
def test_observability_import_star_is_flagged_and_zeroed(as_candidate: str, tmp_path: Path) -> None:
    from graders.observability.grade import grade

    nb = _notebook(REPO_ROOT / "labs" / "observability" / "examples" / "always_alert.ipynb",
                   "observability_import_star", tmp_path / "subs" / "import_star.ipynb")
    [card] = grade(str(nb), tmp_path / "out", profile="smoke")
    saved = json.loads((tmp_path / "out" / "import_star" / "scorecard.json").read_text())
    assert saved["score"] == card.score == 0.0
    _assert_flagged_and_zeroed(saved, "import of reference_systems.observability.submission")
