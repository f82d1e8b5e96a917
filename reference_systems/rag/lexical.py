"""BM25 over `labkit.text.analyze` tokens (stop words removed, Porter-stemmed), scored by bm25s.

`scores(weighted_terms)` returns every document's score for a weighted bag of terms, which is
what query expansion (RM3) needs: an expanded query is a term -> weight map, not a string.
bm25s scoring reads only immutable arrays after `index`, so concurrent searches are safe.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence

import bm25s
import numpy as np

from labkit.text import analyze


class BM25:
    def __init__(self, k1: float = 1.2, b: float = 0.75, analyzer: Callable[[str], list[str]] = analyze) -> None:
        self.k1, self.b, self.analyzer = k1, b, analyzer
        self.model: bm25s.BM25 | None = None
        self.doc_terms: list[Counter[str]] = []

    def index(self, texts: Sequence[str]) -> None:
        tokens = [self.analyzer(t) for t in texts]
        self.doc_terms = [Counter(t) for t in tokens]
        model = bm25s.BM25(k1=self.k1, b=self.b)
        model.index([t or [""] for t in tokens], show_progress=False)
        self.model = model

    def __len__(self) -> int:
        return len(self.doc_terms)

    def scores(self, weighted_terms: Mapping[str, float]) -> np.ndarray:
        """Score of every indexed text for sum_t weight_t * BM25(t, doc)."""
        if self.model is None:
            raise RuntimeError("BM25.index(texts) must be called before searching")
        vocab = self.model.vocab_dict
        total = np.zeros(len(self.doc_terms), dtype=np.float32)
        for term, weight in weighted_terms.items():
            if term in vocab and term:
                total += weight * self.model.get_scores([term])
        return total

    def query_terms(self, query: str) -> dict[str, float]:
        return {t: float(c) for t, c in Counter(self.analyzer(query)).items()}

    def search(self, query: str, k: int = 10) -> list[tuple[int, float]]:
        """(row, score) of the top-k texts with a positive score."""
        s = self.scores(self.query_terms(query))
        return top_k(s, k)


def top_k(scores: np.ndarray, k: int) -> list[tuple[int, float]]:
    """(row, score) of the k highest positive scores, best first."""
    k = min(k, int((scores > 0).sum()))
    if k <= 0:
        return []
    rows = np.argpartition(-scores, k - 1)[:k]
    rows = rows[np.argsort(-scores[rows], kind="stable")]
    return [(int(r), float(scores[r])) for r in rows]
