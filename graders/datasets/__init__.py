"""Retrieval datasets by name: the generated support KB, Cranfield, or any BEIR / SMART folder."""
from __future__ import annotations

from pathlib import Path

from graders.datasets.types import Dataset, Doc, Qrels, Split

DATASETS_HELP = """\
datasets:
  support-kb     generated e-commerce support knowledge base, 1200 docs (default)
  support-kb:N   the same generator with N docs, e.g. support-kb:100000 (50 to ~1,000,000)
  cranfield      Cranfield 1400 (SMART format) from ../shared/datasets/cranfield
  PATH           a folder: BEIR (corpus.jsonl, queries.jsonl, qrels/*.tsv) or SMART (Cranfield-style files)"""


def load_dataset(name_or_path: str) -> Dataset:
    """Load a dataset by registry name or folder path (see DATASETS_HELP)."""
    from graders.paths import SHARED_DATASETS

    name = name_or_path.strip()
    if name == "support-kb" or name.startswith("support-kb:"):
        from graders.datasets.embedded import DEFAULT_DOCS, support_kb

        size = name.partition(":")[2]
        if size and not size.replace("_", "").isdigit():
            raise ValueError(f"bad dataset {name!r}: N in support-kb:N must be a whole number of documents")
        return support_kb(int(size) if size else DEFAULT_DOCS)
    if name == "cranfield":
        from graders.datasets.smart import load_smart

        folder = SHARED_DATASETS / "cranfield"
        if not folder.is_dir():
            raise FileNotFoundError(f"Cranfield is not at {folder}; put the shared datasets beside the repository "
                                    "or pass the folder's path instead")
        return load_smart(folder, name="cranfield")
    path = Path(name).expanduser()
    if path.is_dir():
        if (path / "corpus.jsonl").exists():
            from graders.datasets.beir import load_beir

            return load_beir(path)
        from graders.datasets.smart import load_smart

        return load_smart(path)
    raise ValueError(f"unknown dataset {name_or_path!r} (not a name and not a folder).\n{DATASETS_HELP}")


__all__ = ["DATASETS_HELP", "Dataset", "Doc", "Qrels", "Split", "load_dataset"]
