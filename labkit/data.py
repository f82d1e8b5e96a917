"""The public dev split for a candidate's notebook, and a quick score of a retriever on it.

Only the dev split ever leaves this module: the hidden test split is the grader's business.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

from graders.datasets import load_dataset
from graders.rag.metrics import quality

Qrels = dict[str, dict[str, int]]


def load_dev(name: str = "support-kb") -> tuple[list[dict[str, str]], dict[str, str], Qrels]:
    """(docs, queries, qrels) of a dataset's public dev split; docs are {"id", "title", "text"} dicts."""
    dataset = load_dataset(name)
    if "dev" not in dataset.splits:
        raise ValueError(f"dataset {name!r} has no public dev split (it has {sorted(dataset.splits)})")
    dev = dataset.split("dev")
    return [d.as_dict() for d in dataset.docs], dict(dev.queries), {q: dict(j) for q, j in dev.qrels.items()}


def evaluate(retriever: Any, docs: Sequence[dict[str, str]], queries: dict[str, str], qrels: Qrels,
             k: int = 10) -> dict[str, float]:
    """Index `docs`, search every query, and return ndcg@10 / recall@100 / mrr@10 plus timings.

    Searches `max(k, 100)` deep so recall@100 means what it says.
    """
    start = time.perf_counter()
    retriever.index(list(docs))
    index_s = time.perf_counter() - start
    print(f"indexed {len(docs)} docs in {index_s:.1f} s; searching {len(queries)} queries ...", file=sys.stderr)
    run: dict[str, Sequence[tuple[str, float]]] = {}
    latencies = []
    for qid, text in queries.items():
        t0 = time.perf_counter()
        run[qid] = list(retriever.search(text, max(k, 100)))
        latencies.append(time.perf_counter() - t0)
    latencies.sort()
    scores = quality(run, qrels)
    scores["index_build_s"] = round(index_s, 3)
    scores["latency_p50_ms"] = round(1000 * latencies[len(latencies) // 2], 2) if latencies else 0.0
    scores["latency_p95_ms"] = round(1000 * latencies[max(0, int(0.95 * len(latencies)) - 1)], 2) if latencies else 0.0
    return {name: round(value, 4) for name, value in scores.items()}
