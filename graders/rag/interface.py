"""The RAG lab's contract: what a candidate notebook (and `reference_systems.rag`) must define.

A submission is a Python module (extracted from the notebook's code cells) with these names.
The grader never imports it into its own process: `graders.rag.adapters` calls these names
inside the sandboxed worker, and the grader talks to the worker over HTTP on 127.0.0.1.

Documents and hits travel as plain data:
- a document is a dict {"id": str, "title": str, "text": str};
- a hit is a (doc_id, score) pair, best first;
- an answer is a dict {"text": str, "citations": [doc_id, ...]}.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, TypedDict

import numpy as np


class DocDict(TypedDict):
    id: str
    title: str
    text: str


class AnswerDict(TypedDict):
    text: str
    citations: list[str]


Hit = tuple[str, float]


class DenseIndex(Protocol):
    """Task 2.1 / 2.2: an inner-product vector index over L2-normalised float32 vectors.

    `DenseIndex(dim, kind="flat")` is exact search; `kind="hnsw"` is approximate
    (HNSW, `m` links per node), searched with `ef_search` candidates.
    """

    def __init__(self, dim: int, kind: str = "flat", m: int = 32, ef_search: int = 64) -> None: ...

    def add(self, vectors: np.ndarray) -> None: ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Returns (scores, row_ids), each of shape (n_queries, k), best first."""
        ...


class Retriever(Protocol):
    """Task 5.1: the whole retrieval pipeline behind two calls."""

    def index(self, docs: Sequence[DocDict]) -> None: ...

    def search(self, query: str, k: int = 10) -> list[Hit]: ...


class Submission(Protocol):
    """The module-level names a submission defines (checked by `graders.rag.adapters`)."""

    # Task 1.1: split text into word windows of at most max_words, consecutive windows sharing `overlap` words.
    def chunk(self, text: str, max_words: int = 120, overlap: int = 20) -> list[str]: ...

    # Task 3.1: tokens for BM25: lower-cased alphanumeric words, English stop words removed.
    def tokenize(self, text: str) -> list[str]: ...

    # Task 3.2: reciprocal-rank fusion of several rankings (lists of doc ids, best first).
    def reciprocal_rank_fusion(self, rankings: Sequence[Sequence[str]], k: int = 60) -> list[Hit]: ...

    # Task 4.1: Rocchio pseudo-relevance feedback on a query vector (returns a unit vector).
    def expand_query(
        self, query_vec: np.ndarray, feedback_vecs: np.ndarray, alpha: float = 1.0, beta: float = 0.5
    ) -> np.ndarray: ...

    # Task 6.1: a grounded answer built only from the hits' documents, citing the ones it used.
    def answer(self, query: str, hits: Sequence[Hit], docs: dict[str, DocDict]) -> AnswerDict: ...

    DenseIndex: type[DenseIndex]
    Retriever: type[Retriever]


REQUIRED_NAMES: tuple[str, ...] = (
    "chunk",
    "tokenize",
    "reciprocal_rank_fusion",
    "expand_query",
    "answer",
    "DenseIndex",
    "Retriever",
)


def missing_names(module: Any) -> list[str]:
    return [name for name in REQUIRED_NAMES if not hasattr(module, name)]
