"""Retrieval quality metrics with ir_measures / trec_eval semantics, in plain Python.

- nDCG@10 (`ir_measures` nDCG@10): linear gain (the judgement value), discount 1/log2(rank + 1),
  ideal ranking from all judged documents with gain > 0.
- R@100: relevant documents (gain >= 1) found in the top 100 / all relevant documents.
- RR@10: 1 / rank of the first relevant document in the top 10, else 0.

Conventions, chosen to be robust against careless submissions:
- a run lists a query's hits best first; the LIST ORDER is the ranking (scores are not re-sorted,
  so a retriever that returns distances instead of similarities is judged by what it put first);
- a doc id repeated in a run counts once, at its first position;
- queries whose judgements hold no relevant document are left out of every average;
- a judged query missing from the run (or with an empty ranking) scores 0 on every metric.

Judgements with no relevant document at all cannot be averaged: `quality` and `recall_at_k_curve`
raise `NothingToEvaluate` then. Graders never get there: `graders.datasets.load_dataset` refuses such a
collection before grading starts (and `--hidden` splits are checked the same way by graders.engine.hidden).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from graders.datasets.types import RELEVANT_GAIN, Qrels, relevant_queries

Run = Mapping[str, Sequence[tuple[str, float]]]
METRICS = ("ndcg@10", "recall@100", "mrr@10")


class NothingToEvaluate(ValueError):
    """Judgements without a single relevant document: no metric has a denominator."""

    def __init__(self) -> None:
        super().__init__("no judged query has a relevant document (gain >= 1), so there is nothing to evaluate; "
                         "judge at least one relevant document per query you grade on")


def _ranked_ids(hits: Iterable[tuple[str, float]] | None) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for hit in hits or ():
        doc_id = str(hit[0])
        if doc_id not in seen:
            seen.add(doc_id)
            out.append(doc_id)
    return out


def ndcg_at(ranked: Sequence[str], judged: dict[str, int], k: int = 10) -> float:
    dcg = sum(judged.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]) if judged.get(d, 0) > 0)
    ideal = sorted((g for g in judged.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at(ranked: Sequence[str], judged: dict[str, int], k: int = 100) -> float:
    relevant = {d for d, g in judged.items() if g >= RELEVANT_GAIN}
    return len(relevant.intersection(ranked[:k])) / len(relevant) if relevant else 0.0


def rr_at(ranked: Sequence[str], judged: dict[str, int], k: int = 10) -> float:
    for i, d in enumerate(ranked[:k]):
        if judged.get(d, 0) >= RELEVANT_GAIN:
            return 1.0 / (i + 1)
    return 0.0


def per_query(run: Run, qrels: Qrels) -> dict[str, dict[str, float]]:
    """{query id: {"ndcg@10", "recall@100", "mrr@10"}} for every query with at least one relevant doc."""
    out: dict[str, dict[str, float]] = {}
    for q in relevant_queries(qrels):
        ranked = _ranked_ids(run.get(q))
        judged = qrels[q]
        out[q] = {"ndcg@10": ndcg_at(ranked, judged, 10), "recall@100": recall_at(ranked, judged, 100),
                  "mrr@10": rr_at(ranked, judged, 10)}
    return out


def quality(run: Run, qrels: Qrels) -> dict[str, float]:
    """Mean ndcg@10, recall@100 and mrr@10 over the judged queries that have a relevant document."""
    rows = per_query(run, qrels)
    if not rows:
        raise NothingToEvaluate()
    return {m: sum(r[m] for r in rows.values()) / len(rows) for m in METRICS}


def recall_at_k_curve(run: Run, qrels: Qrels, ks: Sequence[int] = (1, 2, 5, 10, 20, 50, 100)) -> dict[int, float]:
    """Mean recall@k for each k (for a recall-vs-depth plot)."""
    queries = relevant_queries(qrels)
    if not queries:
        raise NothingToEvaluate()
    ranked = {q: _ranked_ids(run.get(q)) for q in queries}
    return {int(k): sum(recall_at(ranked[q], qrels[q], k) for q in queries) / len(queries) for k in ks}
