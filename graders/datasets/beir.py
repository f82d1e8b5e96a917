"""Loader for BEIR-format folders: corpus.jsonl, queries.jsonl and qrels/{dev,test,train}.tsv.

BEIR's "dev" qrels become the public "dev" split and "test" the hidden "test" split
("train" is ignored). A folder with only test qrels gets a deterministic dev split: every
5th query by sorted id is dev, the rest stay test. Only queries with judgements are kept,
and judgements of documents missing from the corpus are dropped. The qrels may also be TREC's
`qid 0 docid rel` lines (`graders.datasets.qrels.read_beir`); `Dataset.qrels_layout` says which.
Anything that cannot be graded is refused with a one-line `DatasetError` naming the file.
"""
from __future__ import annotations

import json
from pathlib import Path

from graders.datasets.qrels import attach, read_beir
from graders.datasets.types import Dataset, DatasetError, Doc, Qrels, Split

DEV_EVERY = 5


def _need(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DatasetError(f"BEIR folder {path.parent} has no {path.name} ({what}); "
                           "a BEIR folder needs corpus.jsonl, queries.jsonl and qrels/test.tsv")
    return path


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    try:
        with path.open(encoding="utf-8", errors="replace") as f:
            for n, line in enumerate(f, start=1):
                if line.strip():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise DatasetError(f"{path}:{n}: not a JSON object ({e.msg}); "
                                           "each line must be one JSON object") from None
                    if not isinstance(row, dict):
                        raise DatasetError(f"{path}:{n}: not a JSON object; each line must be one JSON object")
                    rows.append(row)
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}; make the file readable") from None
    return rows


def read_qrels(path: Path) -> Qrels:
    """{query: {doc: score}} of a BEIR qrels file (tab-separated with an optional header, or TREC's layout)."""
    return read_beir(path).qrels


def load_beir(folder: str | Path, name: str | None = None) -> Dataset:
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder} is not a folder; pass a BEIR dataset folder "
                           "(corpus.jsonl, queries.jsonl, qrels/)")
    corpus = read_jsonl(_need(folder / "corpus.jsonl", "the documents"))
    queries_rows = read_jsonl(_need(folder / "queries.jsonl", "the queries"))
    qdir = folder / "qrels"
    found = {s: qdir / f"{s}.tsv" for s in ("dev", "test") if (qdir / f"{s}.tsv").is_file()}
    if "test" not in found:
        _need(qdir / "test.tsv", "the test judgements")

    for path, rows in ((folder / "corpus.jsonl", corpus), (folder / "queries.jsonl", queries_rows)):
        if any("_id" not in r for r in rows):
            raise DatasetError(f"{path}: every line needs an \"_id\" field")
    docs = [Doc(str(r["_id"]), str(r.get("title") or ""), str(r.get("text") or "")) for r in corpus]
    queries = {str(r["_id"]): str(r.get("text") or "") for r in queries_rows}
    doc_ids = {d.id for d in docs}

    read = {s: read_beir(p) for s, p in found.items()}
    layouts = {j.layout for j in read.values()}
    if len(layouts) > 1:
        raise DatasetError(f"{qdir}: dev.tsv and test.tsv are in different layouts ({', '.join(sorted(layouts))}); "
                           "write both the same way")
    judged = {s: attach(j, queries, doc_ids, folder / "queries.jsonl", strict=True) for s, j in read.items()}
    if "dev" not in judged:
        test = judged["test"]
        dev_ids = set(sorted(test)[::DEV_EVERY])
        judged = {"dev": {q: r for q, r in test.items() if q in dev_ids},
                  "test": {q: r for q, r in test.items() if q not in dev_ids}}
    splits = {s: Split(s, {q: queries[q] for q in sorted(qrels)}, qrels) for s, qrels in judged.items()}
    return Dataset(name=name or folder.name, docs=docs, splits=splits, description=f"BEIR folder {folder}",
                   qrels_layout=layouts.pop())
