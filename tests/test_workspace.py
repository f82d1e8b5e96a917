"""`ailab start`: the workspace gets nbgrader's release notebook and a README, and never overwrites work."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from graders.workspace import start


@pytest.mark.slow
def test_start_makes_a_release_workspace_and_refuses_to_overwrite(tmp_path: Path, capsys):
    dest = start("rag", tmp_path / "ws", launch=False)
    notebook = dest / "rag.ipynb"
    text = notebook.read_text()
    assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text
    cells = nbformat.read(notebook, as_version=4).cells
    stubs = [c for c in cells if c.metadata.get("nbgrader", {}).get("solution") and c.cell_type == "code"]
    assert len(stubs) == 7 and all('raise NotImplementedError("Task ' in c.source for c in stubs)
    assert "ailab check" in (dest / "README.md").read_text()
    assert f"ailab check {notebook}" in capsys.readouterr().out

    notebook.write_text(text + " ")  # the candidate's work in progress
    with pytest.raises(SystemExit, match="already exists.*--dir"):
        start("rag", dest, launch=False)
    assert notebook.read_text() == text + " "


def test_start_rejects_an_unknown_lab(tmp_path: Path):
    with pytest.raises(SystemExit, match="unknown lab 'nope'.*rag"):
        start("nope", tmp_path / "ws", launch=False)
    assert not (tmp_path / "ws").exists()
