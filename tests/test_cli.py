"""The `ailab` command line: argument parsing, lab detection and its error messages."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from graders.check import detect_lab
from graders.cli import build_parser, main

LABS = Path(__file__).resolve().parent.parent / "labs"


@pytest.mark.parametrize("notebook, lab", [
    ("rag/examples/naive.ipynb", "rag"),
    ("rag/source/rag/rag.ipynb", "rag"),
    ("serving/examples/naive.ipynb", "serving"),
    ("serving/source/serving/serving.ipynb", "serving"),
])
def test_check_recognises_the_lab_of_a_notebook(notebook: str, lab: str) -> None:
    assert detect_lab(LABS / notebook) == lab


def test_grade_parses_the_documented_options() -> None:
    args = build_parser().parse_args(
        ["grade", "rag", "subs/", "--out", "o", "--dataset", "cranfield", "--profile", "full"])
    assert (args.lab, args.submission, args.out, args.dataset, args.profile) == ("rag", "subs/", "o", "cranfield", "full")



def _refusal(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """main(argv) must refuse: exit status 2 and one line on stderr (the in-process side of test_cli_errors.py)."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    return err


def test_an_unknown_profile_names_the_choices(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _refusal(["grade", "rag", "reference", "--out", str(tmp_path), "--profile", "huge"], capsys) == (
        "ailab grade: error: lab 'rag' has no profile 'huge'; choose one of ['full', 'quick', 'smoke']")
    assert "'full', 'quick', 'smoke'" in _refusal(
        ["grade", "observability", "reference", "--out", str(tmp_path), "--profile", "huge"], capsys)


def test_unknown_lab_and_missing_submission_say_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "labs available: agents, observability, rag, serving" in _refusal(
        ["grade", "nosuchlab", "reference", "--out", str(tmp_path)], capsys)
    assert "missing.ipynb does not exist; pass a notebook" in _refusal(
        ["grade", "rag", str(tmp_path / "missing.ipynb"), "--out", str(tmp_path)], capsys)


def test_the_installed_entry_point_runs() -> None:
    out = subprocess.run([Path(sys.executable).parent / "ailab", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "start" in out.stdout and "course" in out.stdout
