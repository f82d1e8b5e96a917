"""Build a lab's nbgrader source notebook and example submissions from Python cell specs, deterministically.

Each lab keeps its text in `labs/<lab>/notebook_cells.py` (CELLS: dicts with kind, id, source,
task, points; `stub(task, name)`) and its example submissions in `labs/<lab>/example_cells.py`
(EXAMPLES: name -> {grade_id: code}); `labs/<lab>/make_notebook.py` hands both to `Builder`,
which adds nbgrader cell metadata and fixed cell ids, so the output is byte-identical on every run.

One source: a lab's solution code is not written twice. The reference modules carry `# @cell <id>` markers, and
`reference_cells` cuts the answer cells out of them (with their BEGIN/END SOLUTION regions), so a fix to the
reference is a fix to the notebook's solution and `make_notebook.py --check` fails until the notebook is rebuilt.
"""
from __future__ import annotations

import argparse
import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

EXCLUDE_TAG = "ailab-exclude"
CELL_MARK = re.compile(r"^# @cell (\w+)[ \t]*\n", re.MULTILINE)
END_MARK = re.compile(r"^# @end\b.*", re.MULTILINE | re.DOTALL)
HIDDEN = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS.*?^[ \t]*### END HIDDEN TESTS[^\n]*\n?", re.DOTALL | re.MULTILINE)
SOLUTION = re.compile(r"^([ \t]*)### BEGIN SOLUTION[^\n]*\n(.*?)^[ \t]*### END SOLUTION[^\n]*\n?", re.DOTALL | re.MULTILINE)


def reference_cells(*paths: Path) -> dict[str, str]:
    """cell id -> code, cut from reference modules at their `# @cell <id>` markers. A cell runs to the next marker,
    a `# @end` line or the end of the file; pieces with the same id (in one file or several) are joined in order.
    What precedes the first marker (the module's docstring and imports, which the notebook's setup cell makes)
    is not part of any cell."""
    cells: dict[str, list[str]] = {}
    for path in paths:
        pieces = CELL_MARK.split(path.read_text(encoding="utf-8"))[1:]
        for cell_id, body in zip(pieces[::2], pieces[1::2]):
            cells.setdefault(cell_id, []).append(END_MARK.sub("", body).strip("\n"))
    return {cell_id: "\n\n\n".join(parts) + "\n" for cell_id, parts in cells.items()}


def _nbgrader(grade_id: str, *, grade: bool = False, solution: bool = False, locked: bool = False,
              points: float | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3,
                            "solution": solution, "task": False}
    if grade:
        meta["points"] = points
    return meta


def _cell(spec: dict[str, Any]) -> Any:
    kind, gid = spec["kind"], spec["id"]
    text = spec["source"].strip("\n")
    if kind == "markdown":
        cell = nbformat.v4.new_markdown_cell(text, metadata={"nbgrader": _nbgrader(gid, locked=True)})
    elif kind == "setup":
        cell = nbformat.v4.new_code_cell(text, metadata={"nbgrader": _nbgrader(gid, locked=True)})
    elif kind == "answer":
        meta = {"nbgrader": _nbgrader(gid, solution=True), "ailab": {"task": spec["task"], "name": spec["name"]}}
        cell = nbformat.v4.new_code_cell(text, metadata=meta)
    elif kind == "test":
        meta = {"nbgrader": _nbgrader(gid, grade=True, locked=True, points=spec["points"]),
                "ailab": {"task": spec["task"]}}
        cell = nbformat.v4.new_code_cell(text, metadata=meta)
    elif kind == "written":
        meta = {"nbgrader": _nbgrader(gid, grade=True, solution=True, points=spec["points"]),
                "ailab": {"task": spec["task"]}}
        cell = nbformat.v4.new_markdown_cell(text, metadata=meta)
    elif kind == "explore":
        cell = nbformat.v4.new_code_cell(text, metadata={"tags": [EXCLUDE_TAG]})
    else:
        raise ValueError(f"unknown cell kind {kind!r} in {gid}")
    cell["id"] = gid.replace("_", "-")
    return cell


def _notebook(cells: list[Any]) -> Any:
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    nb.cells = cells
    return nb


def _build_source(notebook_cells: Any) -> Any:
    """The nbgrader source notebook: solutions between BEGIN/END SOLUTION, hidden tests in test cells."""
    nb = _notebook([_cell(spec) for spec in notebook_cells.CELLS])
    nbformat.validate(nb)
    return nb


def release_source(source: str, stub: str) -> str:
    """What nbgrader's ClearSolutions leaves of an answer cell: each solution region becomes `stub`."""
    return SOLUTION.sub(lambda m: "".join(f"{m.group(1)}{line}\n" for line in stub.splitlines()), source)


def solution_source(source: str) -> str:
    """The solution with its delimiters removed: what a candidate who wrote it would have."""
    return SOLUTION.sub(lambda m: m.group(2), source)


def _build_example(notebook_cells: Any, example_cells: Any, name: str) -> Any:
    """A completed release notebook (a submission): no hidden tests, answer cells holding the example's code."""
    example = example_cells.EXAMPLES[name]
    nb = _build_source(notebook_cells)
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        gid = meta.get("grade_id", "")
        if meta.get("grade") and not meta.get("solution"):
            cell.source = HIDDEN.sub("", cell.source).rstrip("\n")
        elif meta.get("solution") and cell.cell_type == "code":
            if gid in example:
                cell.source = example[gid].strip("\n")
            elif example.get("_default") == "solution":
                cell.source = solution_source(cell.source)
            else:
                task = cell.metadata["ailab"]
                cell.source = release_source(cell.source, notebook_cells.stub(task["task"], task["name"]))
        elif meta.get("solution"):
            cell.source = example.get(gid, "YOUR ANSWER HERE").strip("\n")
    nbformat.validate(nb)
    return nb


def render(nb: Any) -> str:
    return nbformat.writes(nb) + "\n"


def load_sibling(here: Path, lab: str, name: str) -> Any:
    """A lab's cell module, loaded by path under a lab-specific name (labs share these file names)."""
    spec = importlib.util.spec_from_file_location(f"{lab}_{name}", here / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Builder:
    lab: str
    here: Path  # labs/<lab>

    def __post_init__(self) -> None:
        self.notebook_cells = load_sibling(self.here, self.lab, "notebook_cells")
        self.example_cells = load_sibling(self.here, self.lab, "example_cells")
        self.source = self.here / "source" / self.lab / f"{self.lab}.ipynb"
        self.examples = self.here / "examples"

    def build_source(self) -> Any:
        return _build_source(self.notebook_cells)

    def build_example(self, name: str) -> Any:
        return _build_example(self.notebook_cells, self.example_cells, name)

    def outputs(self) -> dict[Path, str]:
        out = {self.source: render(self.build_source())}
        for name in self.example_cells.EXAMPLES:
            out[self.examples / f"{name}.ipynb"] = render(self.build_example(name))
        return out

    def main(self, argv: list[str] | None = None, doc: str | None = None) -> int:
        parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.add_argument("--check", action="store_true", help="compare the committed notebooks with a fresh build")
        parser.add_argument("--examples", action="store_true", help="only (re)write the example submissions")
        args = parser.parse_args(argv)
        stale = []
        for path, text in self.outputs().items():
            if args.examples and path == self.source:
                continue
            if args.check:
                if not path.exists() or path.read_text() != text:
                    stale.append(path)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path.relative_to(self.here.parent.parent)}", file=sys.stderr)
        if stale:
            print(f"stale (run `python labs/{self.lab}/make_notebook.py`): " + ", ".join(map(str, stale)),
                  file=sys.stderr)
            return 1
        return 0
