"""Builds the serving lab's nbgrader source notebook and its example submissions, deterministically.

    python labs/serving/make_notebook.py            # writes source/serving/serving.ipynb and examples/*.ipynb
    python labs/serving/make_notebook.py --examples # only examples/*.ipynb
    python labs/serving/make_notebook.py --check    # exits 1 if a committed notebook differs from a fresh build

The notebook text lives in `labs/serving/notebook_cells.py` (cells, solutions, tests) and the
example submissions' code in `labs/serving/example_cells.py`; this file only assembles them with
nbgrader cell metadata and fixed cell ids, so the output is byte-identical on every run.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import importlib.util

import nbformat

HERE = Path(__file__).resolve().parent


def _sibling(name: str) -> Any:
    # Loaded by path under a lab-specific name: the RAG lab has siblings with the same file names.
    spec = importlib.util.spec_from_file_location(f"serving_{name}", HERE / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


example_cells = _sibling("example_cells")
notebook_cells = _sibling("notebook_cells")

SOURCE = HERE / "source" / "serving" / "serving.ipynb"
EXAMPLES = HERE / "examples"
EXCLUDE_TAG = "ailab-exclude"
HIDDEN = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS.*?^[ \t]*### END HIDDEN TESTS[^\n]*\n?", re.DOTALL | re.MULTILINE)
SOLUTION = re.compile(r"^([ \t]*)### BEGIN SOLUTION[^\n]*\n(.*?)^[ \t]*### END SOLUTION[^\n]*\n?", re.DOTALL | re.MULTILINE)


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


def build_source() -> Any:
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


def build_example(name: str) -> Any:
    """A completed release notebook (a submission): no hidden tests, answer cells holding the example's code."""
    example = example_cells.EXAMPLES[name]
    nb = build_source()
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


def outputs() -> dict[Path, str]:
    out = {SOURCE: render(build_source())}
    for name in example_cells.EXAMPLES:
        out[EXAMPLES / f"{name}.ipynb"] = render(build_example(name))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare the committed notebooks with a fresh build")
    parser.add_argument("--examples", action="store_true", help="only (re)write the example submissions")
    args = parser.parse_args(argv)
    stale = []
    for path, text in outputs().items():
        if args.examples and path == SOURCE:
            continue
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path.relative_to(HERE.parent.parent)}", file=sys.stderr)
    if stale:
        print("stale (run `python labs/serving/make_notebook.py`): " + ", ".join(map(str, stale)), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
