"""What every lab's grader does first: find the submissions, turn each into a module, start its process."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from graders.engine.notebook import Extracted, extract_module
from graders.engine.sandbox import Worker, WorkerError
from graders.engine.scorecard import Scorecard


def submissions_in(submission: str | Sequence[tuple[str, Path]], reference: Path) -> list[tuple[str, Path]]:
    """(name, path) pairs: one notebook or .py, every one in a folder, or the word `reference`;
    a list of (name, path) pairs (e.g. an nbgrader course's submissions by student) as it is."""
    if not isinstance(submission, str):
        return list(submission)
    if submission == "reference":
        return [("reference", reference)]
    path = Path(submission)
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.suffix in (".ipynb", ".py") and not p.name.startswith((".", "_")))
        if not found:
            raise SystemExit(f"{path} holds no .ipynb or .py submissions")
        return [(p.stem, p) for p in found]
    if not path.exists():
        raise SystemExit(f"{path} does not exist; pass a notebook, a .py file, a folder of them, or the word `reference`")
    return [(path.stem, path)]


def open_submission(path: Path, card: Scorecard, start: Callable[[str], Worker], log: Callable[[str], None],
                    source_notebook: Path | None = None) -> tuple[Worker | None, str, Extracted]:
    """Extract the module and start its process. Problems become scorecard errors, never exceptions.

    Returns (the running worker or None, why it is None, the extraction). Integrity findings (read-only
    cells edited, or deleted from the lab's `source_notebook`) are reported in `errors` but never stop grading.
    """
    extracted = extract_module(path, source_notebook)
    worker: Worker | None = None
    why_not = ""
    if not extracted.ok:
        card.errors.extend(extracted.errors)
        why_not = extracted.errors[0]
    else:
        try:
            log(f"{card.submission}: starting the submission's process ...")
            worker = start(extracted.source)
        except WorkerError as exc:
            why_not = f"the submission could not be loaded: {exc}"
            card.errors.append(why_not)
    card.errors.extend(extracted.warnings)
    card.integrity["tampered_cells"] = list(extracted.warnings)  # edited or deleted read-only cells
    return worker, why_not, extracted
