"""Turn a submitted notebook into the candidate module the grader runs, and spot tampered cells.

The module is every code cell except nbgrader test cells (grade: true, solution: false) and
cells tagged `ailab-exclude` (exploration that would be slow to re-run), with IPython magics
and shell escapes removed. Problems come back as plain-language messages, never exceptions.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EXCLUDE_TAG = "ailab-exclude"
_MARKERS = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[^\n]*\n?", re.MULTILINE)


@dataclass
class Extracted:
    source: str = ""
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def _is_test_cell(cell: dict[str, Any]) -> bool:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return bool(meta.get("grade")) and not meta.get("solution")


def _strip_magics(code: str) -> str:
    kept = []
    in_cell_magic = False
    for line in code.splitlines():
        stripped = line.lstrip()
        if stripped.startswith("%%"):
            in_cell_magic = True  # a cell magic (%%time, %%bash) makes the whole cell non-Python
        if in_cell_magic:
            kept.append("# " + line)
        elif stripped.startswith(("%", "!")):
            kept.append(line[: len(line) - len(stripped)] + "pass  # " + stripped)
        else:
            kept.append(line)
    return "\n".join(kept)


def read_notebook(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, f"{path} does not exist; pass the path of the .ipynb you completed"
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, (
            f"{path.name} is not a valid notebook (not JSON: {exc}); "
            "re-download it from JupyterLab (File > Download) and submit that file"
        )
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        return None, f"{path.name} is JSON but not a Jupyter notebook (no list of cells)"
    return nb, None


def extract_module(path: Path, source_notebook: Path | None = None) -> Extracted:
    """The candidate's code as one Python module; `.py` files are taken as they are. With the lab's
    `source_notebook`, read-only cells the submission deleted are reported too."""
    if path.suffix == ".py":
        try:
            return Extracted(source=path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            return Extracted(errors=[f"cannot read {path.name}: {exc}"])
    nb, error = read_notebook(path)
    if nb is None:
        return Extracted(errors=[error or "unreadable notebook"])
    chunks = []
    for index, cell in enumerate(nb["cells"]):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        if _is_test_cell(cell) or EXCLUDE_TAG in cell.get("metadata", {}).get("tags", []):
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else str(source)
        chunks.append(f"# --- cell {index + 1} ---\n{_strip_magics(source)}\n")
    if not chunks:
        return Extracted(errors=[f"{path.name} has no code cells to grade; did you submit the right notebook?"])
    result = Extracted(source="\n".join(chunks))
    result.warnings.extend(checksum_problems(nb))
    source, _ = read_notebook(source_notebook) if source_notebook is not None else (None, None)
    if source is not None:
        result.warnings.extend(missing_cells(nb, source))
    return result


def checksum_problems(nb: dict[str, Any]) -> list[str]:
    """Read-only and test cells whose content no longer matches nbgrader's recorded checksum."""
    from nbformat import from_dict
    from nbgrader.utils import compute_checksum

    problems = []
    for cell in nb.get("cells", []):
        meta = cell.get("metadata", {}).get("nbgrader", {}) if isinstance(cell, dict) else {}
        if not meta or "checksum" not in meta or not (meta.get("locked") or _is_test_cell(cell)):
            continue
        source = cell.get("source", "")
        normalised = {**cell, "source": "".join(source) if isinstance(source, list) else source}
        try:
            actual = compute_checksum(from_dict(normalised))
        except Exception:  # noqa: BLE001 - a malformed cell is itself the finding
            actual = None
        if actual != meta["checksum"]:
            problems.append(
                f"cell {meta.get('grade_id', '?')} is read-only but was edited (nbgrader checksum mismatch); "
                "its original version is what counts"
            )
    return problems


def _text(cell: dict[str, Any]) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def _graded_cells(nb: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {meta["grade_id"]: cell for cell in nb.get("cells", []) if isinstance(cell, dict)
            and (meta := cell.get("metadata", {}).get("nbgrader", {})).get("grade_id")}


def missing_cells(nb: dict[str, Any], source: dict[str, Any]) -> list[str]:
    """Read-only and test cells of the lab's source notebook that the submission no longer has."""
    have = _graded_cells(nb)
    problems = []
    for gid, cell in _graded_cells(source).items():
        meta = cell["metadata"]["nbgrader"]
        if (meta.get("locked") or _is_test_cell(cell)) and gid not in have:
            problems.append(f"cell {gid} is read-only but was deleted from the notebook (a tampering signal; "
                            "the grader's own checks do not depend on it)")
    return problems


def written_answers(path: Path, source_notebook: Path) -> list[dict[str, Any]]:
    """The submission's hand-graded answers beside their question and the source's model answer (the rubric):
    [{"id", "points", "question", "answer", "rubric"}]. A notebook that cannot be read gives no answers."""
    source, _ = read_notebook(source_notebook)
    submitted, _ = read_notebook(path) if path.suffix == ".ipynb" else (None, None)
    if source is None:
        return []
    theirs = _graded_cells(submitted) if submitted else {}
    answers, question = [], ""
    for cell in source["cells"]:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade") and meta.get("solution") and cell.get("cell_type") == "markdown":
            gid = meta["grade_id"]
            answer = _text(theirs[gid]) if gid in theirs else "(no answer cell in this submission)"
            answers.append({"id": gid, "points": meta.get("points", 0), "question": question,
                            "answer": answer, "rubric": _MARKERS.sub("", _text(cell)).strip()})
        elif cell.get("cell_type") == "markdown":
            question = _text(cell)
    return answers
