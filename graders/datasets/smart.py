"""Loader for classic SMART-format test collections (Cranfield, CISI, MED, ...).

Traps handled here (see the Cranfield README):
- queries are numbered by their position in the query file (1..N), not by their `.I` id;
- Cranfield's relevance codes run backwards: 1 is the most relevant, 4 the least, and
  -1 or 5 mean not relevant, so gain = 5 - code (codes outside 1..4 give gain 0).
  Collections whose qrels carry no code (CISI, MED) get gain 1.
"""
from __future__ import annotations

import re
from pathlib import Path

from graders.datasets.types import Dataset, Doc, Qrels, Split

_FIELD = re.compile(r"^\.([A-Z])(?:\s+(.*))?$")
DEV_EVERY = 5  # every 5th query (by position) is public dev; the rest is the hidden test split


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


def _find(folder: Path, *names: str) -> Path:
    for name in names:
        for candidate in folder.iterdir():
            if candidate.name.lower() == name.lower():
                return candidate
    raise FileNotFoundError(
        f"{folder} has none of {', '.join(names)}; a SMART collection folder needs documents, queries and qrels files"
    )


def _gain(code: str | None) -> int:
    if code is None:
        return 1
    value = int(code)
    return 5 - value if 1 <= value <= 4 else 0


def load_smart(folder: str | Path, name: str | None = None) -> Dataset:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder; pass the folder that holds the SMART collection files")
    docs_file = _find(folder, "cran.all.1400", "CISI.ALL", "MED.ALL", "docs.all")
    qry_file = _find(folder, "cran.qry", "CISI.QRY", "MED.QRY", "queries.qry")
    rel_file = _find(folder, "cranqrel", "CISI.REL", "MED.REL", "qrels.rel")

    docs = []
    for doc_id, fields in parse_records(docs_file.read_text(errors="replace")):
        docs.append(Doc(id=doc_id, title=fields.get("T", ""), text=fields.get("W", "")))

    queries: dict[str, str] = {}
    for position, (_, fields) in enumerate(parse_records(qry_file.read_text(errors="replace")), start=1):
        queries[str(position)] = fields.get("W", "")

    qrels: Qrels = {}
    for line in rel_file.read_text().splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        qid, did = str(int(parts[0])), str(int(parts[1]))
        code = parts[2] if len(parts) > 2 and parts[2].lstrip("-").isdigit() else None
        if qid in queries:
            qrels.setdefault(qid, {})[did] = _gain(code)

    dev = {q: t for q, t in queries.items() if int(q) % DEV_EVERY == 0}
    test = {q: t for q, t in queries.items() if int(q) % DEV_EVERY != 0}
    return Dataset(
        name=name or folder.name,
        docs=docs,
        splits={
            "dev": Split("dev", dev, {q: qrels.get(q, {}) for q in dev}),
            "test": Split("test", test, {q: qrels.get(q, {}) for q in test}),
        },
        description=f"SMART collection from {folder}",
    )
