"""Loader for classic SMART-format test collections (Cranfield, CISI, MED, CACM, ADI, ...).

A SMART folder holds one file per role, found by name (case does not matter):
documents `*.all` / `*.all.*` (cran.all.1400, CISI.ALL, cacm.all), queries `*.qry` / `query.text`,
judgements `*.rel` / `*qrel` / `qrels.text` (CISI.REL, cranqrel, qrels.text).

Traps handled here (see the Cranfield README):
- the judgements come in three layouts (graded Cranfield codes, presence-only with zero columns,
  TREC qrels), detected from the file itself by `graders.datasets.qrels.read_smart`; the dataset
  says which it read (`Dataset.qrels_layout`), and so does every scorecard graded on it;
- Cranfield's relevance codes run backwards: 1 is the most relevant, 4 the least, -1 or 5 not
  relevant, so gain = 5 - code;
- queries are numbered by their position in the query file (1..N), not by their `.I` id (Cranfield's
  `.I` ids have gaps; CISI's, MED's and CACM's are 1..N, so both agree). Only when some judged query
  number exceeds N and every judged number is a `.I` id are the `.I` ids used instead.
A query's text is its `.W` field (its `.T` title when it has no `.W`); a document's is `.T` + `.W`.
"""
from __future__ import annotations

import fnmatch
import re
from pathlib import Path

from graders.datasets.qrels import Judgements, attach, read_smart, smart_id
from graders.datasets.types import Dataset, DatasetError, Doc, Split

_FIELD = re.compile(r"^\.([A-Z])(?:\s+(.*))?$")
DEV_EVERY = 5  # every 5th query (by position) is public dev; the rest is the hidden test split
ROLES = {
    "documents": ("*.all", "*.all.*"),
    "queries": ("*.qry", "query.text"),
    "judgements": ("*.rel", "*qrel", "qrels.text"),
}


def parse_records(text: str) -> list[tuple[str, dict[str, str]]]:
    """Parse `.I id` records into (id, {field letter: text})."""
    records: list[tuple[str, dict[str, str]]] = []
    field = None
    for line in text.splitlines():
        m = _FIELD.match(line)
        if m and m.group(1) == "I":
            records.append(((m.group(2) or "").strip(), {}))
            field = None
        elif m and records:
            field = m.group(1)
            rest = (m.group(2) or "").strip()
            records[-1][1][field] = records[-1][1].get(field, "") + (rest + "\n" if rest else "")
        elif records and field is not None:
            records[-1][1][field] = records[-1][1].get(field, "") + line + "\n"
    return [(rid, {k: " ".join(v.split()) for k, v in fields.items()}) for rid, fields in records]


def find_files(folder: Path) -> dict[str, Path]:
    """{role: file} for the three SMART roles; a one-line DatasetError when one is missing or ambiguous."""
    names = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
    if not names:
        raise DatasetError(f"{folder} is empty; pass a folder holding a BEIR collection (corpus.jsonl, queries.jsonl, "
                           "qrels/test.tsv) or a SMART one (*.ALL documents, *.QRY queries, *.REL judgements)")
    found: dict[str, Path] = {}
    for role, patterns in ROLES.items():
        hits = sorted(p for p in names if any(fnmatch.fnmatch(p.name.lower(), pat) for pat in patterns))
        if not hits:
            raise DatasetError(f"{folder} has no SMART {role} file ({', '.join(patterns)}) and no BEIR corpus.jsonl; "
                               "a collection folder needs documents, queries and judgements")
        if len(hits) > 1:
            raise DatasetError(f"{folder} has several SMART {role} files ({', '.join(p.name for p in hits)}); "
                               "keep the one that belongs to the collection")
        found[role] = hits[0]
    return found


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}; make the file readable") from None


def number_queries(records: list[tuple[str, dict[str, str]]], judged: Judgements) -> tuple[dict[str, str], str]:
    """({query number: text} in file order, how they are numbered): by position, unless the judgements use
    `.I` ids. A query without text keeps its number (and is left out of the splits)."""
    texts = [fields.get("W") or fields.get("T", "") for _, fields in records]
    by_id = {smart_id(rid): text for (rid, _), text in zip(records, texts)}
    numbers = [int(q) for q in judged.qrels if q.isdigit()]
    if numbers and max(numbers) > len(records) and set(judged.qrels) <= set(by_id):
        return by_id, ".I ids"
    return {str(i): t for i, t in enumerate(texts, start=1)}, "position"


def load_smart(folder: str | Path, name: str | None = None) -> Dataset:
    """A SMART collection folder as a Dataset; every 5th query of the file is dev, the rest test."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder} is not a folder; pass the folder that holds the SMART collection files")
    files = find_files(folder)
    docs = [Doc(id=smart_id(doc_id), title=fields.get("T", ""), text=fields.get("W", ""))
            for doc_id, fields in parse_records(_read(files["documents"]))]
    if not docs:
        raise DatasetError(f"{files['documents']} holds no `.I` records; SMART documents start with `.I <id>` lines")
    judged = read_smart(files["judgements"])
    queries, numbering = number_queries(parse_records(_read(files["queries"])), judged)
    if not any(queries.values()):
        raise DatasetError(f"{files['queries']} holds no queries; SMART queries are `.I <id>` records with a `.W` text")
    qrels = attach(judged, queries, {d.id for d in docs}, files["queries"])
    splits = {}
    for split, dev in (("dev", True), ("test", False)):
        chosen = {q: t for i, (q, t) in enumerate(queries.items(), start=1) if t and (i % DEV_EVERY == 0) == dev}
        splits[split] = Split(split, chosen, {q: qrels.get(q, {}) for q in chosen})
    return Dataset(name=name or folder.name, docs=docs, splits=splits, qrels_layout=judged.layout,
                   description=f"SMART collection from {folder} (queries numbered by {numbering}; "
                               f"judgements {files['judgements'].name}: {judged.layout})")
