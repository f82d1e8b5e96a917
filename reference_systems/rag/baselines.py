"""Single-method retrievers with the lab's Retriever interface: the baselines the reference is compared with.

- `BM25Only`: bm25s with its defaults (k1 = 1.5, b = 0.75, its English stop list, no stemming).
- `DenseOnly`: one MiniLM vector per document ("title\\ntext", truncated at 256 tokens by the model),
  exact (`kind="flat"`) or HNSW (`kind="hnsw"`) inner-product search.
- `RRFHybrid`: the two fused with reciprocal-rank fusion, k = 60.
All construct with no arguments, so the grader can also use them as naive submissions.
"""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import bm25s
import numpy as np

from reference_systems.rag import encoder
from reference_systems.rag.dense import DenseIndex
from reference_systems.rag.fusion import reciprocal_rank_fusion
from reference_systems.rag.retriever import validate_docs


def doc_text(doc: Mapping[str, str]) -> str:
    return f"{doc['title']}\n{doc['text']}".strip()


class BM25Only:
    def __init__(self) -> None:
        self.ids: list[str] = []
        self.index_build_s = 0.0

    def index(self, docs: Sequence[Mapping[str, Any]]) -> None:
        t0 = time.perf_counter()
        docs = validate_docs(docs)
        self.ids = [d["id"] for d in docs]
        self.model = bm25s.BM25()
        self.model.index(bm25s.tokenize([doc_text(d) for d in docs], stopwords="en", show_progress=False),
                         show_progress=False)
        self.index_build_s = time.perf_counter() - t0

    def search(self, query: str, k: int = 10) -> list[tuple[str, float]]:
        if not self.ids:
            raise RuntimeError("index(docs) must be called before search()")
        tokens = bm25s.tokenize([query], stopwords="en", show_progress=False, return_ids=False)[0]
        vocab = self.model.vocab_dict
        tokens = [t for t in tokens if t in vocab]
        if not tokens:
            return []
        scores = self.model.get_scores(tokens)
        k = min(k, int((scores > 0).sum()))
        if k <= 0:
            return []
        rows = np.argsort(-scores, kind="stable")[:k]
        return [(self.ids[r], float(scores[r])) for r in rows]


class DenseOnly:
    def __init__(self, kind: str = "flat", m: int = 32, ef_search: int = 64) -> None:
        self.kind, self.m, self.ef_search = kind, m, ef_search
        self.ids: list[str] = []
        self.index_build_s = 0.0

    def index(self, docs: Sequence[Mapping[str, Any]]) -> None:
        t0 = time.perf_counter()
        docs = validate_docs(docs)
        vecs = encoder.embed_texts([doc_text(d) for d in docs], progress=True)
        self.dense = DenseIndex(vecs.shape[1], kind=self.kind, m=self.m, ef_search=self.ef_search)
        self.dense.add(vecs)
        self.ids = [d["id"] for d in docs]
        self.index_build_s = time.perf_counter() - t0

    def search(self, query: str, k: int = 10) -> list[tuple[str, float]]:
        if not self.ids:
            raise RuntimeError("index(docs) must be called before search()")
        scores, rows = self.dense.search(encoder.embed_query(query), k)
        return [(self.ids[r], float(s)) for s, r in zip(scores[0], rows[0]) if r >= 0]


class DenseHNSW(DenseOnly):
    def __init__(self) -> None:
        super().__init__(kind="hnsw")


class RRFHybrid:
    def __init__(self, depth: int = 100) -> None:
        self.depth = depth
        self.bm25, self.dense = BM25Only(), DenseOnly()
        self.index_build_s = 0.0

    def index(self, docs: Sequence[Mapping[str, Any]]) -> None:
        t0 = time.perf_counter()
        self.bm25.index(docs)
        self.dense.index(docs)
        self.index_build_s = time.perf_counter() - t0

    def search(self, query: str, k: int = 10) -> list[tuple[str, float]]:
        rankings = [[d for d, _ in r.search(query, self.depth)] for r in (self.bm25, self.dense)]
        return reciprocal_rank_fusion(rankings, k=60)[:k]
