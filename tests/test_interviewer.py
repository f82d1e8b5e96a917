"""Interviewers: private hidden overlays, integrity signals, and grades in nbgrader's gradebook and feedback.

The end-to-end test is a real nbgrader course (`ailab course init`): three students submit (two the
same naive notebook, one broken), nbgrader autogrades one of them, an interviewer has already graded a
written answer by hand, and `ailab grade rag --course --hidden` grades all three on a private hidden
split with private hidden checks. Then `nbgrader generate_feedback` runs on the result.
"""
from __future__ import annotations

import csv
import html
import json
import keyword
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from graders.course import init_course, run_nbgrader
from graders.engine.hidden import HiddenError, open_overlay, write_lab_toml
from graders.engine.integrity import batch_findings, fingerprints, scaffold_and_reference, similarity
from graders.engine.labconfig import load_lab
from graders.gradebook import check_mapping
from graders.observability.system import schedule

ROOT = Path(__file__).resolve().parent.parent
RAG = ROOT / "labs" / "rag"


def test_every_labs_parts_add_up_to_its_nbgrader_cells() -> None:
    for lab in ("rag", "serving", "observability"):
        assert check_mapping(load_lab(lab)) == [], lab


def test_similarity_sees_through_renaming_and_ignores_the_scaffold() -> None:
    scaffold, reference = scaffold_and_reference(RAG / "source" / "rag" / "rag.ipynb")
    base = fingerprints(scaffold)
    names = sorted(set(re.findall(r"\b[a-z_][a-z0-9_]{3,}\b", reference)) - set(keyword.kwlist))
    renamed = reference
    for i, name in enumerate(names):
        renamed = re.sub(rf"\b{name}\b", f"v{i}", renamed)
    renamed = re.sub(r"#[^\n]*", "# reworded", renamed).replace("    ", "  ")
    ref, copy = fingerprints(reference) - base, fingerprints(renamed) - base
    assert similarity(ref, copy) == 1.0, "renaming, comments and indentation change no fingerprint"
    other = fingerprints((ROOT / "reference_systems" / "serving" / "scheduler.py").read_text()) - base
    assert similarity(ref, other) < 0.3
    assert similarity(fingerprints(scaffold) - base, ref) is None, "the scaffold alone is too little to compare"


def test_batch_findings_name_the_closest_submissions(tmp_path: Path) -> None:
    naive, broken = RAG / "examples" / "naive.ipynb", RAG / "examples" / "broken.ipynb"
    shutil.copy(naive, tmp_path / "copy.ipynb")
    found = batch_findings([("naive", naive), ("copy", tmp_path / "copy.ipynb"), ("broken", broken)],
                           RAG / "source" / "rag" / "rag.ipynb")
    assert found["naive"].most_similar[0] == ("copy", 1.0)
    assert found["broken"].most_similar[0][1] < 0.8 and found["broken"].notes() == []
    assert found["copy"].notes()[0] == "solution code is 100% similar to submission 'naive' (a signal to review, not a verdict)"
    assert 0 < (found["naive"].similarity_to_reference or 0) < 1


def test_overlays_that_cannot_be_used_say_what_to_fix(tmp_path: Path) -> None:
    with pytest.raises(HiddenError, match="has no rag/ subfolder"):
        open_overlay(tmp_path, "rag")
    (tmp_path / "rag").mkdir()
    (tmp_path / "rag" / "notes.txt").write_text("?")
    with pytest.raises(HiddenError, match=r"holds files the grader does not know: \['notes.txt'\]"):
        open_overlay(tmp_path, "rag")
    (tmp_path / "rag" / "notes.txt").unlink()
    (tmp_path / "rag" / "queries.jsonl").write_text('{"_id": "q1", "text": "refund for shoes"}\n')
    overlay = open_overlay(tmp_path, "rag")
    assert overlay is not None
    with pytest.raises(HiddenError, match="without qrels.tsv"):
        overlay.split({"d1"})
    (tmp_path / "rag" / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tnope\t2\n")
    with pytest.raises(HiddenError, match=r"judges documents that are not in the corpus: \['nope'\]"):
        overlay.split({"d1"})
    write_lab_toml(tmp_path, "rag", "[profiles.smoke]\nload_secnds = 3\n")
    with pytest.raises(ValueError, match="does not fit the lab"):
        load_lab("rag", overlay.lab_toml())


def test_a_private_seed_changes_the_fault_schedule(tmp_path: Path) -> None:
    write_lab_toml(tmp_path, "observability", "[profiles.quick]\nseed = 4242\n")
    overlay = open_overlay(tmp_path, "observability")
    assert overlay is not None
    shipped, private = load_lab("observability"), load_lab("observability", overlay.lab_toml())
    assert private.scenario("quick").seed == 4242 and private.scenario("quick").fault_s == shipped.scenario("quick").fault_s
    order = [[f.name for f in schedule(lab, lab.scenario("quick"))[0]] for lab in (shipped, private)]
    assert sorted(order[0]) == sorted(order[1]) and order[0] != order[1]


HIDDEN_TEST = 'assert chunk("x y z", 2, 0) == ["x y", "z"], "interviewer-only case"\n'


def _overlay(folder: Path) -> Path:
    """A private hidden split (40 dev queries, renamed), a hidden check for chunking, a hidden nbgrader test."""
    from graders.datasets import load_dataset

    dev = load_dataset("support-kb").split("dev")
    root = folder / "hidden" / "rag"
    (root / "nbgrader").mkdir(parents=True)
    folder.joinpath("hidden").chmod(0o700)
    picked = list(dev.queries.items())[:40]
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": f"p-{q}", "text": t}) + "\n" for q, t in picked))
    (root / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"p-{q}\t{d}\t{g}\n" for q, _ in picked for d, g in dev.qrels[q].items()))
    (root / "checks.py").write_text(
        "def chunking(sub):\n"
        "    return [('three words, two per chunk', lambda: sub.chunk('a b c', 2, 0) == ['a b', 'c']),\n"
        "            ('nothing in, nothing out', lambda: sub.chunk('', 5, 1) == [])]\n")
    (root / "nbgrader" / "test_1_1_chunk.py").write_text(HIDDEN_TEST)
    return folder / "hidden"


def interview_course(work: Path) -> dict:
    """The course, three submissions, nbgrader's autograde, a grade by hand, `ailab grade --course --hidden` and
    feedback: a side job (tests/_side_jobs.py), as it spends minutes in nbgrader and grading processes."""
    hidden = _overlay(work)
    root = init_course(work / "course", ["rag"], hidden=hidden)
    for student, example in (("alice", "naive"), ("bob", "naive"), ("carol", "broken")):
        target = root / "submitted" / student / "rag" / "rag.ipynb"
        target.parent.mkdir(parents=True)
        shutil.copy(RAG / "examples" / f"{example}.ipynb", target)
    print("[test] nbgrader autograde rag --student alice ...", file=sys.stderr)
    run_nbgrader(root, "autograde", "rag", "--student", "alice", timeout=600)
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{root / 'gradebook.db'}", course_id="ailab") as gb:  # the interviewer grades by hand
        gb.find_grade("task_7_1_written", "rag", "rag", "alice").manual_score = 4.0
        gb.find_comment("task_7_1_written", "rag", "rag", "alice").manual_comment = "clear trade-offs, no numbers"
        gb.db.commit()
    out = work / "out"
    done = subprocess.run([sys.executable, "-m", "graders.cli", "grade", "rag", "--course", str(root), "--hidden",
                           str(hidden), "--out", str(out), "--profile", "smoke"], capture_output=True, text=True,
                          timeout=900, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    run_nbgrader(root, "generate_feedback", "rag", "--student", "alice", timeout=300)
    cards = {p.parent.name: json.loads(p.read_text()) for p in out.glob("*/scorecard.json")}
    return {"root": root, "out": out, "done": done, "cards": cards}


@pytest.fixture(scope="module")
def course(interview_course: dict) -> dict:
    return interview_course


@pytest.mark.slow
def test_the_course_source_holds_the_interviewers_hidden_tests_and_the_release_none(course: dict) -> None:
    source = (course["root"] / "source" / "rag" / "rag.ipynb").read_text()
    release = (course["root"] / "release" / "rag" / "rag.ipynb").read_text()
    assert "interviewer-only case" in source and "interviewer-only case" not in release
    shipped = (RAG / "source" / "rag" / "rag.ipynb").read_text()
    assert "interviewer-only case" not in shipped, "labs/ keeps the shipped hidden tests"


@pytest.mark.slow
def test_grading_used_the_private_split_and_the_private_checks(course: dict) -> None:
    alice, carol = course["cards"]["alice"], course["cards"]["carol"]
    assert alice["environment"]["hidden_set"] == "private (--hidden)" and alice["environment"]["queries"] == 40
    chunking = next(p for p in alice["parts"] if p["name"] == "chunking")
    assert chunking["detail"] == "Task 1.1: all 2 hidden checks passed" and chunking["points"] == 6
    assert 0 < carol["score"] < alice["score"]


@pytest.mark.slow
def test_gradebook_totals_equal_the_scores_and_manual_grades_survive(course: dict) -> None:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course['root'] / 'gradebook.db'}", course_id="ailab") as gb:
        for student, card in course["cards"].items():
            sub = gb.find_submission("rag", student)
            assert sub.code_score == pytest.approx(card["score"], abs=0.06), student
        alice = gb.find_submission_notebook("rag", "rag", "alice")
        written = next(g for g in alice.grades if g.name == "task_7_1_written")
        assert written.manual_score == 4.0 and written.auto_score is None, "a person's grade is never overwritten"
        quality = next(g for g in alice.grades if g.name == "test_5_1_quality")
        card_quality = next(p for p in course["cards"]["alice"]["parts"] if p["name"] == "retrieval_quality")
        assert quality.auto_score == card_quality["points"]


@pytest.mark.slow
def test_feedback_shows_the_performance_results_and_the_report_the_manual_grade(course: dict) -> None:
    page = course["root"] / "feedback" / "alice" / "rag" / "rag.html"
    text = html.unescape(re.sub(r"<[^>]+>", "", page.read_text()))
    assert re.search(r"performance: [0-9.]+ / 22 — Task 5\.1: p95 [0-9.]+ ms vs reference [0-9.]+ ms", text)
    assert re.search(r"retrieval_quality: [0-9.]+ / 36 — Task 5\.1: nDCG@10 0\.\d+ vs reference 0\.\d+", text)
    report = (course["out"] / "alice" / "report.html").read_text()
    assert "formgrader:</b> 4 / 5" in report and "clear trade-offs, no numbers" in report
    assert "I would switch the dense index to HNSW" in report, "the candidate's written answer is in the report"
    assert "Measure first: profile one search" in report, "beside the rubric"


@pytest.mark.slow
def test_the_summary_flags_the_identical_submissions(course: dict) -> None:
    with open(course["out"] / "summary.csv", newline="") as f:
        rows = {r["submission"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"alice", "bob", "carol"}
    assert rows["alice"]["integrity"] == "100% like bob" and rows["bob"]["integrity"] == "100% like alice"
    assert rows["carol"]["integrity"] == "" and rows["alice"]["chunking"] == "6"
    assert "[3/3] grading carol" in course["done"].stderr, "batch progress is shown"
    assert course["cards"]["alice"]["integrity"]["most_similar"][0] == {"submission": "bob", "similarity": 1.0}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_formgrader_shows_the_grades(course: dict, tmp_path: Path) -> None:
    """A real Jupyter server with nbgrader's formgrader, on the course folder, serves the same totals."""
    import secrets
    import time

    import httpx

    token, port = secrets.token_hex(16), _free_port()
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt"),
           "PATH": os.pathsep.join((str(Path(sys.executable).parent), os.environ.get("PATH", "")))}
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen([sys.executable, "-m", "jupyter", "server", "--no-browser", "--ip", "127.0.0.1",
                                   "--port", str(port), "--ServerApp.port_retries=0", f"--ServerApp.token={token}",
                                   f"--ServerApp.root_dir={course['root']}", "--allow-root"],
                                  cwd=course["root"], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"token {token}"},
                          timeout=30) as api:
            deadline = time.monotonic() + 90
            while True:
                assert server.poll() is None, log.read_text()[-3000:]
                try:
                    reply = api.get("/formgrader/api/submissions/rag")
                    if reply.status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, f"formgrader did not answer: {log.read_text()[-3000:]}"
                time.sleep(0.5)
            shown = {s["student"]: s for s in reply.json()}
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert set(shown) == {"alice", "bob", "carol"}
    alice = shown["alice"]  # autograded by nbgrader, then graded by ailab
    assert alice["autograded"] and alice["code_score"] == pytest.approx(course["cards"]["alice"]["score"], abs=0.06)
    assert alice["written_score"] == 4.0
    # formgrader lists a submission's scores only once nbgrader's autograde has run on it
    assert not shown["bob"]["autograded"] and not shown["carol"]["autograded"]
