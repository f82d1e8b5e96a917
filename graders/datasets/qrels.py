"""Relevance judgements in the layouts real collections ship them in, told apart by reading the file.

Layouts (`LAYOUTS`) of a SMART folder's judgements file. Blank lines are skipped; the FIRST data line
decides the layout and every other line must fit it, or the file is refused with its path and line number:

- `trec`: `qid 0 docid rel` — four columns whose second is TREC's iteration field `0` (or `Q0`);
  gain = rel, a negative rel counts as 0 (MED.REL, every TREC track).
- `smart-presence`: `qid docid 0 0.000000` — four columns whose third and fourth are zero, or only
  `qid docid`; a listed pair is relevant, gain 1 (CISI, CACM, ADI, ...: presence means relevant).
- `smart-graded`: `qid docid code` — three columns with an integer code on Cranfield's inverted scale:
  1 (complete answer) .. 4 (minimum interest) are relevant with gain 5 - code; -1 and 5 mean not
  relevant, gain 0.

A BEIR folder's qrels are `beir` (`query-id<TAB>corpus-id<TAB>score`, header optional, gain = score)
unless their first data line has four whitespace-separated columns with a `0`/`Q0` second: then `trec`.
SMART query and document numbers are normalised (`001` is `1`); BEIR and TREC ids are kept as written.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from graders.datasets.types import DatasetError, Qrels, relevant_queries

LAYOUTS = {
    "smart-graded": "graded SMART (query doc code; Cranfield codes 1-4 relevant, gain 5 - code)",
    "smart-presence": "presence-only SMART (query doc 0 0; every listed pair relevant, gain 1)",
    "trec": "TREC qrels (query 0 doc relevance; gain = relevance)",
    "beir": "BEIR qrels (query-id TAB corpus-id TAB score; gain = score)",
    "generated": "generated graded judgements (support-kb: 2 answers, 1 partly useful, 0 hard negative)",
}
_EXPECTED = {
    "smart-graded": "'query doc code' with an integer code",
    "smart-presence": "'query doc 0 0' (zero third and fourth columns)",
    "trec": "'query 0 doc relevance' with an integer relevance",
    "beir": "'query-id<TAB>corpus-id<TAB>score' with an integer score",
}
_ITERATION = ("0", "Q0")


@dataclass(frozen=True)
class Judgements:
    """One judgements file as read: its layout and {query id: {doc id: gain}}."""

    path: Path
    layout: str
    qrels: Qrels

    def pairs(self) -> int:
        return sum(len(r) for r in self.qrels.values())


def smart_id(token: str) -> str:
    """A SMART record number as the loaders key it: `001` and `1` are the same query."""
    return str(int(token)) if token.isdigit() else token


def _int(token: str) -> int | None:
    try:
        return int(token)
    except ValueError:
        return None


def _zero(token: str) -> bool:
    try:
        return float(token) == 0.0
    except ValueError:
        return False


def _smart_layout(cols: list[str]) -> str | None:
    if len(cols) == 4 and cols[1] in _ITERATION:
        return "trec"
    if len(cols) == 2 or (len(cols) == 4 and _zero(cols[2]) and _zero(cols[3])):
        return "smart-presence"
    if len(cols) == 3:
        return "smart-graded"
    return None


def _smart_pair(layout: str, cols: list[str], ids: Callable[[str], str] = smart_id) -> tuple[str, str, int] | None:
    """(query, doc, gain) of one line in `layout`, or None when the line does not fit it; `ids` normalises ids."""
    if layout == "trec":
        rel = _int(cols[3]) if len(cols) == 4 and cols[1] in _ITERATION else None
        return None if rel is None else (ids(cols[0]), ids(cols[2]), max(rel, 0))
    if layout == "smart-presence":
        fits = len(cols) == 2 or (len(cols) == 4 and _zero(cols[2]) and _zero(cols[3]))
        return (smart_id(cols[0]), smart_id(cols[1]), 1) if fits else None
    code = _int(cols[2]) if len(cols) == 3 else None
    if code is None:
        return None
    return smart_id(cols[0]), smart_id(cols[1]), 5 - code if 1 <= code <= 4 else 0


def _read_lines(path: Path) -> list[tuple[int, str]]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}; make the judgements file readable") from None
    lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines:
        raise DatasetError(f"{path} holds no judgements; it needs one 'query doc ...' line per judged pair")
    return lines


def _malformed(path: Path, n: int, line: str, why: str) -> DatasetError:
    shown = line.strip()
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return DatasetError(f"{path}:{n}: malformed judgement {shown!r}: {why}; fix or remove that line")


def _add(qrels: Qrels, qid: str, did: str, gain: int) -> None:
    judged = qrels.setdefault(qid, {})
    judged[did] = max(gain, judged.get(did, gain))  # a pair judged twice keeps its higher gain


def read_smart(path: Path) -> Judgements:
    """A SMART folder's judgements file in whichever of the three layouts it is (see the module doc)."""
    lines = _read_lines(path)
    first_n, first = lines[0]
    layout = _smart_layout(first.split())
    if layout is None:
        raise _malformed(path, first_n, first, "it fits none of 'query doc code' (graded SMART), "
                         "'query doc 0 0' (presence-only SMART) or 'query 0 doc relevance' (TREC)")
    qrels: Qrels = {}
    for n, line in lines:
        pair = _smart_pair(layout, line.split())
        if pair is None:
            raise _malformed(path, n, line, f"expected {_EXPECTED[layout]}, as line {first_n} "
                             f"({LAYOUTS[layout].split(' (')[0]})")
        _add(qrels, *pair)
    return Judgements(path, layout, qrels)


def read_beir(path: Path) -> Judgements:
    """A BEIR folder's qrels file: BEIR's tab-separated layout, or TREC's four columns."""
    lines = _read_lines(path)
    if lines[0][1].split("\t")[:1] == ["query-id"]:
        lines = lines[1:]
    if not lines:
        raise DatasetError(f"{path} holds only a header; it needs one 'query-id<TAB>corpus-id<TAB>score' line per pair")
    cols = lines[0][1].split()
    layout = "trec" if "\t" not in lines[0][1].strip() and len(cols) == 4 and cols[1] in _ITERATION else "beir"
    qrels: Qrels = {}
    for n, line in lines:
        if layout == "trec":
            pair = _smart_pair("trec", line.split(), ids=str)  # BEIR ids are strings: "007" is not "7"
            if pair is None:
                raise _malformed(path, n, line, f"expected {_EXPECTED['trec']}, as line {lines[0][0]} (TREC qrels)")
            _add(qrels, *pair)
            continue
        row = line.rstrip("\r\n").split("\t")
        score = _int(row[2].strip()) if len(row) >= 3 else None
        if score is None:
            raise _malformed(path, n, line, f"expected {_EXPECTED['beir']}")
        _add(qrels, row[0], row[1], score)
    return Judgements(path, layout, qrels)


def _examples(ids: set[str] | list[str], n: int = 3) -> str:
    return ", ".join(sorted(ids, key=lambda s: (len(s), s))[:n])


def attach(judged: Judgements, queries: dict[str, str], doc_ids: set[str], queries_file: Path,
           strict: bool = False) -> Qrels:
    """The judgements of `queries` over the corpus `doc_ids`; pairs of unknown documents are dropped.

    Refuses (DatasetError, one line) a file whose query ids match no query, whose documents are all
    outside the corpus, or that holds no relevant judgement. `strict`: a judged query missing from
    `queries` is refused too (BEIR folders list every query in queries.jsonl)."""
    where = f"{judged.path.name} (read as {LAYOUTS[judged.layout].split(' (')[0]})"
    known = set(judged.qrels) & set(queries)
    if not known:
        raise DatasetError(f"no query id of {where} matches a query of {queries_file.name} (judged e.g. "
                           f"{_examples(set(judged.qrels))}; queries e.g. {_examples(list(queries))}); "
                           "check that the two files belong to the same collection")
    missing = set(judged.qrels) - known
    if strict and missing:
        raise DatasetError(f"{judged.path} judges queries that are not in {queries_file.name}, e.g. "
                           f"{_examples(missing)}; add them there or remove their judgements")
    qrels = {q: {d: g for d, g in judged.qrels[q].items() if d in doc_ids} for q in known}
    if not any(qrels.values()):
        raise DatasetError(f"none of the documents {where} judges is in the corpus (judged e.g. "
                           f"{_examples({d for r in judged.qrels.values() for d in r})}); "
                           "check that the judgements belong to these documents")
    if not relevant_queries(qrels):
        raise DatasetError(f"{where} has no relevant judgement: all {judged.pairs()} judged pairs have gain 0, "
                           "so there is nothing to grade against; check the file's layout (graders/datasets/qrels.py)")
    return qrels
