"""Retrieval datasets by name: the generated support KB, Cranfield, or any BEIR / SMART folder.

`load_dataset` refuses, with a one-line `DatasetError` that says what to do, anything that cannot be
graded: a missing or empty folder, malformed judgements (file and line), judgements that match no
query or no document, a collection with no relevant judgement, or a hidden test split without one.
"""
from __future__ import annotations

from pathlib import Path

from graders.datasets.types import Dataset, DatasetError, Doc, Qrels, Split, relevant_queries

DATASETS_HELP = """\
datasets:
  support-kb     generated e-commerce support knowledge base, 1200 docs (default)
  support-kb:N   the same generator with N docs, e.g. support-kb:100000 (50 to ~1,000,000)
  cranfield      Cranfield 1400 (SMART format) from ../shared/datasets/cranfield
  PATH           a folder: BEIR (corpus.jsonl, queries.jsonl, qrels/*.tsv) or SMART (*.ALL, *.QRY, *.REL files;
                 judgements graded as Cranfield's, presence-only, or TREC qrels: detected from the file)"""
CHOICES = "pass support-kb, support-kb:N, cranfield, or the path of a BEIR or SMART collection folder"


def support_kb_size(name: str) -> int | None:
    """The document count of `support-kb` / `support-kb:N` (None for any other name), checked without
    generating anything; DatasetError when N is not a usable number."""
    if name != "support-kb" and not name.startswith("support-kb:"):
        return None
    from graders.datasets.embedded import DEFAULT_DOCS, MIN_DOCS

    size = name.partition(":")[2]
    if size and not size.replace("_", "").isdigit():
        raise DatasetError(f"bad dataset {name!r}: N in support-kb:N must be a whole number of documents")
    n = int(size) if size else DEFAULT_DOCS
    if n < MIN_DOCS:
        raise DatasetError(f"support-kb needs at least {MIN_DOCS} documents, got {n}; try support-kb:200 or more")
    return n


def _load(name: str) -> Dataset:
    from graders.paths import SHARED_DATASETS

    size = support_kb_size(name)
    if size is not None:
        from graders.datasets.embedded import support_kb

        return support_kb(size)
    if name == "cranfield":
        from graders.datasets.smart import load_smart

        folder = SHARED_DATASETS / "cranfield"
        if not folder.is_dir():
            raise DatasetError(f"Cranfield is not at {folder}; put the shared datasets beside the repository "
                               "or pass the folder's path instead")
        return load_smart(folder, name="cranfield")
    path = Path(name).expanduser()
    if path.is_dir():
        if (path / "corpus.jsonl").exists():
            from graders.datasets.beir import load_beir

            return load_beir(path)
        from graders.datasets.smart import load_smart

        return load_smart(path)
    if path.exists():
        raise DatasetError(f"dataset {name!r} is a file, not a folder; {CHOICES}")
    if any(c in name for c in "/\\.~") or path.parent != Path("."):
        raise DatasetError(f"dataset folder {name!r} does not exist; {CHOICES}")
    raise DatasetError(f"unknown dataset {name!r}; {CHOICES}")


def check_gradable(data: Dataset) -> Dataset:
    """`data` itself, when a grade can be measured on it: documents, and a hidden test split with at least
    one relevant judgement (a public dev split may be empty)."""
    if not data.docs:
        raise DatasetError(f"{data.description or data.name} has no documents; nothing to index")
    test = data.splits.get("test")
    if test is None or not relevant_queries(test.qrels):
        judged = sum(len(relevant_queries(s.qrels)) for s in data.splits.values())
        raise DatasetError(f"{data.description or data.name}: the hidden test split has no query with a relevant "
                           f"judgement (the collection has {judged}, all in the public dev split); judge more queries")
    return data


def load_dataset(name_or_path: str) -> Dataset:
    """Load a dataset by registry name or folder path (see DATASETS_HELP); a DatasetError (one line, what
    to do) when it cannot be graded."""
    name = name_or_path.strip()
    try:
        return check_gradable(_load(name))
    except OSError as exc:  # a folder or file that cannot be listed or read
        raise DatasetError(f"cannot read dataset {name!r}: {exc.strerror or exc} ({exc.filename}); "
                           "make it readable") from None


__all__ = ["CHOICES", "DATASETS_HELP", "Dataset", "DatasetError", "Doc", "Qrels", "Split", "check_gradable",
           "load_dataset", "support_kb_size"]
