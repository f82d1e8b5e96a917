"""Baseline retrieval quality on a dataset: BM25, dense (MiniLM, exact inner product) and RRF hybrid.

    .venv/bin/python benchmarks/dataset_baselines.py [support-kb | support-kb:N | cranfield | PATH]

Prints nDCG@10 / R@100 / RR@10 per split and, for support-kb, per query kind. These are
the numbers quoted in `graders/datasets/embedded.py`; the slow dataset test asserts the
orderings they show (dense wins paraphrases, BM25 wins codes, hybrid is best overall).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

import bm25s
import ir_measures
import numpy as np
from ir_measures import RR, R, nDCG

from graders.datasets import load_dataset
from graders.datasets.embedded import query_kind
from graders.datasets.types import Dataset
from labkit.embeddings import embed

DEPTH = 100
MEASURES = [nDCG @ 10, R @ 100, RR @ 10]
Run = dict[str, list[tuple[str, float]]]


def bm25_run(ds: Dataset, queries: dict[str, str]) -> Run:
    ids = [d.id for d in ds.docs]
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize([f"{d.title} {d.text}" for d in ds.docs], stopwords="en", show_progress=False),
                    show_progress=False)
    qids = list(queries)
    tokens = bm25s.tokenize([queries[q] for q in qids], stopwords="en", show_progress=False)
    rows, scores = retriever.retrieve(tokens, k=min(DEPTH, len(ids)), show_progress=False, n_threads=1)
    return {q: [(ids[r], float(s)) for r, s in zip(rows[i], scores[i]) if s > 0] for i, q in enumerate(qids)}


def dense_run(ds: Dataset, queries: dict[str, str]) -> Run:
    ids = [d.id for d in ds.docs]
    doc_vecs = embed([f"{d.title}\n{d.text}" for d in ds.docs], progress=True)
    qids = list(queries)
    sims = embed([queries[q] for q in qids]) @ doc_vecs.T
    top = np.argsort(-sims, axis=1)[:, :DEPTH]
    return {q: [(ids[r], float(sims[i, r])) for r in top[i]] for i, q in enumerate(qids)}


def rrf(*runs: Run, k: int = 60) -> Run:
    out: Run = {}
    for q in runs[0]:
        fused: dict[str, float] = {}
        for run in runs:
            for rank, (d, _) in enumerate(run.get(q, []), start=1):
                fused[d] = fused.get(d, 0.0) + 1.0 / (k + rank)
        out[q] = sorted(fused.items(), key=lambda x: -x[1])[:DEPTH]
    return out


def evaluate(qrels: dict[str, dict[str, int]], run: Run) -> dict[str, float]:
    """Mean of each measure over the given queries (queries with no hits count as 0)."""
    ir_qrels = [ir_measures.Qrel(q, d, g) for q, rel in qrels.items() for d, g in rel.items()]
    ir_run = [ir_measures.ScoredDoc(q, d, s) for q in qrels for d, s in run.get(q, [])]
    agg = ir_measures.calc_aggregate(MEASURES, ir_qrels, ir_run)
    return {str(m): float(agg.get(m, 0.0)) for m in MEASURES}


def baselines(ds: Dataset) -> dict[tuple[str, str, str], dict[str, float]]:
    """{(split, kind, method): {measure: value}}; kind "all" plus each query kind present."""
    split = ds.split("all")
    runs = {"bm25": bm25_run(ds, split.queries), "dense": dense_run(ds, split.queries)}
    runs["hybrid"] = rrf(runs["bm25"], runs["dense"])
    table = {}
    for name, s in ds.splits.items():
        kinds = ["all"] + sorted({query_kind(q) for q in s.queries} - {""})
        for kind in kinds:
            qrels = {q: r for q, r in s.qrels.items() if kind == "all" or query_kind(q) == kind}
            for method, run in runs.items():
                table[(name, kind, method)] = evaluate(qrels, run)
            table[(name, kind, "n")] = {"queries": float(len(qrels))}
    return table


def format_table(table: dict[tuple[str, str, str], dict[str, float]]) -> str:
    lines = [f"{'split':6} {'kind':6} {'n':>4}  {'method':7} {'nDCG@10':>8} {'R@100':>7} {'RR@10':>7}"]
    for (split, kind, method), vals in table.items():
        if method == "n":
            continue
        n = int(table[(split, kind, "n")]["queries"])
        lines.append(f"{split:6} {kind:6} {n:4d}  {method:7} {vals['nDCG@10']:8.3f} {vals['R@100']:7.3f} {vals['RR@10']:7.3f}")
    return "\n".join(lines)


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "support-kb"
    t0 = time.perf_counter()
    ds = load_dataset(name)
    print(f"{ds.name}: {len(ds.docs)} docs, loaded in {time.perf_counter() - t0:.2f} s", file=sys.stderr)
    print(format_table(baselines(ds)))


if __name__ == "__main__":
    main()
