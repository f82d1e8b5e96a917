"""Retrieval benchmark: every baseline and the reference on one dataset, one table, comparable across runs.

    python benchmarks/retrieval.py [--dataset cranfield|support-kb|PATH] [--split all|dev|test]
                                   [--methods bm25,dense,hnsw,rrf,reference] [--json out.json]

Quality (ndcg@10, recall@100, mrr@10) over every query of the split; latency is in-process,
one query at a time (the HTTP / Locust numbers come from the grader). Embeddings are cached
on disk, so index_build_s of a dense method is much lower on a second run: the JSON says
which run was warm.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from graders.datasets import DATASETS_HELP, DatasetError, load_dataset
from graders.rag.metrics import quality
from reference_systems.rag.baselines import BM25Only, DenseHNSW, DenseOnly, RRFHybrid
from reference_systems.rag.retriever import Retriever

METHODS: dict[str, tuple[str, Callable[[], Any]]] = {
    "bm25": ("BM25-only (bm25s defaults)", BM25Only),
    "dense": ("dense-only exact (FlatIP)", DenseOnly),
    "hnsw": ("dense HNSW (M32 ef64)", DenseHNSW),
    "rrf": ("RRF BM25+dense (k=60)", RRFHybrid),
    "reference": ("reference (hybrid+PRF)", Retriever),
}
COLUMNS = ("ndcg@10", "recall@100", "mrr@10", "index_build_s", "latency_p50_ms", "latency_p95_ms")


def search_all(factory: Callable[[], Any], docs: list[dict[str, str]], queries: dict[str, str],
               depth: int = 100) -> tuple[dict[str, list[tuple[str, float]]], dict[str, float]]:
    """(run, timings): index `docs` with a fresh `factory()`, then search every query `depth` deep."""
    retriever = factory()
    t0 = time.perf_counter()
    retriever.index(docs)
    build_s = time.perf_counter() - t0
    retriever.search(next(iter(queries.values())), depth)  # warm-up: lazy model load, first-call costs
    run, latencies = {}, []
    for qid, text in queries.items():
        t = time.perf_counter()
        run[qid] = retriever.search(text, depth)
        latencies.append((time.perf_counter() - t) * 1000)
    p50, p95 = np.percentile(latencies, [50, 95])
    return run, {"index_build_s": build_s, "latency_p50_ms": float(p50), "latency_p95_ms": float(p95)}


def run_method(factory: Callable[[], Any], docs: list[dict[str, str]], queries: dict[str, str],
               qrels: dict[str, dict[str, int]], depth: int = 100) -> dict[str, float]:
    run, timings = search_all(factory, docs, queries, depth)
    return {**quality(run, qrels), **timings}


def format_table(rows: dict[str, dict[str, float]]) -> str:
    header = f"{'method':<28}" + "".join(f"{c:>16}" for c in COLUMNS)
    lines = [header, "-" * len(header)]
    for name, r in rows.items():
        lines.append(f"{name:<28}" + "".join(f"{r[c]:>16.3f}" if c.startswith(("ndcg", "recall", "mrr"))
                                             else f"{r[c]:>16.1f}" for c in COLUMNS))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=DATASETS_HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="support-kb")
    parser.add_argument("--split", default="all", help="all, dev or test (default all)")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {','.join(METHODS)}")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
    try:
        dataset = load_dataset(args.dataset)
        split = dataset.split(args.split)
    except (DatasetError, KeyError) as e:
        parser.error(str(e))
    docs = [d.as_dict() for d in dataset.docs]
    print(f"dataset {dataset.name}: {len(docs)} docs, split {split.name}: {len(split.queries)} queries, "
          f"judgements {dataset.qrels_layout}", file=sys.stderr)

    rows: dict[str, dict[str, float]] = {}
    for m in methods:
        label, factory = METHODS[m]
        print(f"running {label} ...", file=sys.stderr, flush=True)
        rows[label] = run_method(factory, docs, split.queries, split.qrels)
    print(format_table(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "dataset": dataset.name, "qrels_layout": dataset.qrels_layout, "split": split.name,
            "n_docs": len(docs), "n_queries": len(split.queries),
            "machine": {"python": platform.python_version(), "platform": platform.platform()},
            "timing": "in-process, one query at a time, k=100, after one warm-up query",
            "results": rows,
        }, indent=2))
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
