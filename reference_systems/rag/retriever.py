"""The reference retrieval pipeline: hybrid BM25 + dense search with pseudo-relevance feedback on both sides.

search(query):
  1. first pass: BM25 (stemmed, title counted twice) and dense MiniLM over title-prefixed chunks
     (a doc's dense score = its best chunk's), fused by an equal-weight convex combination of
     min-max-normalised scores (reciprocal-rank fusion, k = 60, is the `fusion="rrf"` option);
  2. feedback: the fused top `fb_docs` documents are taken as relevant; RM3 expands the BM25 query
     with their top terms and Rocchio moves the query vector toward their centroid;
  3. second pass: both expanded queries are searched again and fused the same way.
Parameters are literature defaults; the only choice made on data (score fusion over RRF) was made on
Cranfield's dev split (every 5th query). README.md has the ablation.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from reference_systems.rag import encoder
from reference_systems.rag.chunking import chunk_doc
from reference_systems.rag.dense import DenseIndex
from reference_systems.rag.expansion import expand_query, rm3_query
from reference_systems.rag.fusion import normalized_score_fusion, reciprocal_rank_fusion
from reference_systems.rag.lexical import BM25, top_k

HNSW_FROM = 200_000  # exact search over fewer chunks costs a few ms per query; beyond that HNSW pays off


@dataclass(frozen=True)
class Config:
    max_words: int = 120          # ~170 word pieces: inside MiniLM's 256-token window
    overlap: int = 20
    k1: float = 1.2               # Robertson's BM25 defaults
    b: float = 0.75
    title_repeat: int = 2         # the title counts twice in BM25 (a light field weight)
    fusion: str = "score"         # "score" (min-max convex combination) or "rrf"
    rrf_k: int = 60               # Cormack et al.
    dense_weight: float = 0.5     # for fusion = "score"
    depth: int = 100              # candidates each retriever hands to fusion
    prf: bool = True
    fb_docs: int = 10             # Anserini RM3 defaults: 10 docs, 10 terms, original weight 0.5
    fb_terms: int = 10
    rm3_original_weight: float = 0.5
    rocchio_alpha: float = 1.0
    rocchio_beta: float = 0.5
    dense_kind: str = "auto"      # "flat" (exact), "hnsw", or "auto": exact below HNSW_FROM chunks
    use_bm25: bool = True
    use_dense: bool = True


def validate_docs(docs: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    out, seen = [], set()
    for i, d in enumerate(docs):
        if not isinstance(d, Mapping) or "id" not in d:
            raise ValueError(f"document {i} must be a dict with 'id', 'title' and 'text'; got {type(d).__name__}")
        doc_id = str(d["id"])
        if doc_id in seen:
            raise ValueError(f"duplicate document id {doc_id!r}; ids must be unique")
        seen.add(doc_id)
        out.append({"id": doc_id, "title": str(d.get("title") or ""), "text": str(d.get("text") or "")})
    if not out:
        raise ValueError("index() got no documents; pass a non-empty list of {'id','title','text'} dicts")
    return out


class Retriever:
    """`Retriever()` then `index(docs)`, then `search(query, k)` -> [(doc_id, score)], best first."""

    def __init__(self, config: Config | None = None, **overrides: Any) -> None:
        base = config or Config()
        self.config = Config(**{**base.__dict__, **overrides}) if overrides else base
        if not (self.config.use_bm25 or self.config.use_dense):
            raise ValueError("at least one of use_bm25 / use_dense must be on")
        self.ids: list[str] = []
        self.index_build_s = 0.0

    # ------------------------------------------------------------ indexing
    def index(self, docs: Sequence[Mapping[str, Any]]) -> None:
        t0 = time.perf_counter()
        cfg, docs = self.config, validate_docs(docs)
        self.ids = [d["id"] for d in docs]
        self.bm25 = BM25(cfg.k1, cfg.b)
        if cfg.use_bm25:
            self.bm25.index([" ".join([d["title"]] * cfg.title_repeat + [d["text"]]) for d in docs])
        if cfg.use_dense:
            chunks, owner = [], []
            for row, d in enumerate(docs):
                pieces = chunk_doc(d, cfg.max_words, cfg.overlap)
                chunks.extend(pieces)
                owner.extend([row] * len(pieces))
            print(f"reference retriever: embedding {len(chunks)} chunks of {len(docs)} docs", file=sys.stderr)
            vecs = encoder.embed_texts(chunks, progress=True)
            self.chunk_owner = np.asarray(owner, dtype=np.int64)
            kind = cfg.dense_kind if cfg.dense_kind != "auto" else ("flat" if len(vecs) < HNSW_FROM else "hnsw")
            self.dense = DenseIndex(vecs.shape[1], kind=kind, ef_search=128)
            self.dense.add(vecs)
            # a doc's feedback vector: the normalised mean of its chunk vectors
            sums = np.zeros((len(docs), vecs.shape[1]), np.float32)
            np.add.at(sums, self.chunk_owner, vecs)
            self.doc_vecs = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
        self.index_build_s = time.perf_counter() - t0

    # ------------------------------------------------------------ searching
    def embed_query(self, query: str) -> np.ndarray:
        return encoder.embed_query(query)

    def _dense_rows(self, qvec: np.ndarray, depth: int) -> list[tuple[int, float]]:
        """Doc rows by their best chunk's similarity."""
        scores, rows = self.dense.search(qvec, min(len(self.dense), depth * 3))
        best: dict[int, float] = {}
        for s, r in zip(scores[0], rows[0]):
            if r >= 0:
                doc = int(self.chunk_owner[r])
                if doc not in best:
                    best[doc] = float(s)
        return list(best.items())[:depth]

    def _fuse(self, runs: list[list[tuple[int, float]]]) -> list[tuple[int, float]]:
        cfg = self.config
        if len(runs) == 1:
            return runs[0]
        if cfg.fusion == "rrf":
            fused = reciprocal_rank_fusion([[str(r) for r, _ in run] for run in runs], k=cfg.rrf_k)
        elif cfg.fusion == "score":
            fused = normalized_score_fusion([{str(r): s for r, s in run} for run in runs],
                                            [1 - cfg.dense_weight, cfg.dense_weight])
        else:
            raise ValueError(f"fusion must be 'rrf' or 'score', got {cfg.fusion!r}")
        return [(int(r), s) for r, s in fused]

    def _pass(self, terms: dict[str, float] | None, qvec: np.ndarray | None) -> list[tuple[int, float]]:
        runs = []
        if terms is not None:
            runs.append(top_k(self.bm25.scores(terms), self.config.depth))
        if qvec is not None:
            runs.append(self._dense_rows(qvec, self.config.depth))
        return self._fuse(runs)

    def search(self, query: str, k: int = 10) -> list[tuple[str, float]]:
        if not self.ids:
            raise RuntimeError("Retriever.index(docs) must be called before search()")
        if not isinstance(query, str):
            raise TypeError(f"query must be a str, got {type(query).__name__}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        cfg = self.config
        terms = self.bm25.query_terms(query) if cfg.use_bm25 else None
        qvec = self.embed_query(query) if cfg.use_dense else None
        ranked = self._pass(terms, qvec)
        if cfg.prf and ranked:
            fb = [r for r, _ in ranked[: cfg.fb_docs]]
            if terms:
                terms = rm3_query(terms, [self.bm25.doc_terms[r] for r in fb], [1.0] * len(fb),
                                  cfg.fb_terms, cfg.rm3_original_weight)
            if qvec is not None:
                qvec = expand_query(qvec, self.doc_vecs[fb], cfg.rocchio_alpha, cfg.rocchio_beta)
            ranked = self._pass(terms, qvec)
        return [(self.ids[r], float(s)) for r, s in ranked[:k]]
