"""Loader for BEIR-format folders: corpus.jsonl, queries.jsonl and qrels/{dev,test,train}.tsv.

BEIR's "dev" qrels become the public "dev" split and "test" the hidden "test" split
("train" is ignored). A folder with only test qrels gets a deterministic dev split: every
5th query by sorted id is dev, the rest stay test. Only queries with judgements are kept,
and judgements of documents missing from the corpus are dropped.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

from graders.datasets.types import Dataset, Doc, Qrels, Split

DEV_EVERY = 5


def _need(path: Path, what: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"BEIR folder {path.parent} has no {path.name} ({what}); "
                                "a BEIR folder needs corpus.jsonl, queries.jsonl and qrels/test.tsv")
    return path


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{n}: not a JSON object ({e.msg}); each line must be one JSON object") from e
    return rows


def read_qrels(path: Path) -> Qrels:
    qrels: Qrels = {}
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    if rows and rows[0][:1] == ["query-id"]:
        rows = rows[1:]
    for n, row in enumerate(rows, start=2):
        if not row:
            continue
        if len(row) < 3 or not row[2].strip().lstrip("-").isdigit():
            raise ValueError(f"{path}:{n}: expected 'query-id<TAB>corpus-id<TAB>score', got {row!r}")
        qrels.setdefault(row[0], {})[row[1]] = int(row[2])
    return qrels


def load_beir(folder: str | Path, name: str | None = None) -> Dataset:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder; pass a BEIR dataset folder (corpus.jsonl, queries.jsonl, qrels/)")
    corpus = read_jsonl(_need(folder / "corpus.jsonl", "the documents"))
    queries_rows = read_jsonl(_need(folder / "queries.jsonl", "the queries"))
    qdir = folder / "qrels"
    found = {s: qdir / f"{s}.tsv" for s in ("dev", "test") if (qdir / f"{s}.tsv").is_file()}
    if "test" not in found:
        _need(qdir / "test.tsv", "the test judgements")

    for path, rows in ((folder / "corpus.jsonl", corpus), (folder / "queries.jsonl", queries_rows)):
        if any("_id" not in r for r in rows):
            raise ValueError(f"{path}: every line needs an \"_id\" field")
    docs = [Doc(str(r["_id"]), str(r.get("title") or ""), str(r.get("text") or "")) for r in corpus]
    queries = {str(r["_id"]): str(r.get("text") or "") for r in queries_rows}
    doc_ids = {d.id for d in docs}

    judged = {s: read_qrels(p) for s, p in found.items()}
    if "dev" not in judged:
        test = judged["test"]
        dev_ids = set(sorted(test)[::DEV_EVERY])
        judged = {"dev": {q: r for q, r in test.items() if q in dev_ids},
                  "test": {q: r for q, r in test.items() if q not in dev_ids}}
    splits = {}
    for s, qrels in judged.items():
        missing_q = sorted(set(qrels) - set(queries))
        if missing_q:
            raise ValueError(f"{qdir / (s + '.tsv')} judges queries not in queries.jsonl, e.g. {missing_q[:3]}")
        qrels = {q: {d: g for d, g in rel.items() if d in doc_ids} for q, rel in qrels.items()}
        splits[s] = Split(s, {q: queries[q] for q in sorted(qrels)}, qrels)
    return Dataset(name=name or folder.name, docs=docs, splits=splits, description=f"BEIR folder {folder}")
