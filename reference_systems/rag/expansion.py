"""Pseudo-relevance feedback: assume the first-pass top documents are relevant and move the query toward them.

- `expand_query` (Rocchio 1971, without the negative term): q' = alpha*q + beta*mean(feedback), re-normalised.
- `rm3_query` (Lavrenko & Croft's relevance model, interpolated as in Anserini's RM3):
  P(w|R) ∝ sum_d P(w|d) * weight(d) over the feedback docs, keep the top `n_terms`,
  then mix with the original query: (1-lambda)*P(w|R) + lambda*P(w|q), lambda = 0.5.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np


# @cell task_4_1_expand_query
def expand_query(query_vec: np.ndarray, feedback_vecs: np.ndarray, alpha: float = 1.0, beta: float = 0.5
                 ) -> np.ndarray:
    """A unit vector: alpha * query + beta * centroid of the feedback vectors (the query alone if none)."""
    ### BEGIN SOLUTION
    q = np.asarray(query_vec, dtype=np.float32).reshape(-1)
    fb = np.asarray(feedback_vecs, dtype=np.float32)
    if fb.ndim == 1:
        fb = fb[None, :] if fb.size else fb.reshape(0, q.size)
    if fb.ndim != 2 or (len(fb) and fb.shape[1] != q.size):
        raise ValueError(f"feedback_vecs must have shape (n, {q.size}), got {np.shape(feedback_vecs)}")
    out = alpha * q + beta * fb.mean(axis=0) if len(fb) else alpha * q
    norm = float(np.linalg.norm(out))
    if norm == 0.0 or not np.isfinite(norm):
        raise ValueError("the expanded query has zero or non-finite length; check alpha, beta and the vectors")
    return (out / norm).astype(np.float32)
    ### END SOLUTION
# @end


def rm3_query(query_terms: Mapping[str, float], feedback_docs: Sequence[Counter[str]],
              doc_weights: Sequence[float], n_terms: int = 10, original_weight: float = 0.5) -> dict[str, float]:
    """A weighted bag of terms: the interpolated relevance model (weights sum to 1)."""
    total_q = sum(query_terms.values())
    if total_q <= 0:
        return {}
    relevance: dict[str, float] = {}
    for terms, w in zip(feedback_docs, doc_weights):
        length = sum(terms.values())
        if length == 0 or w <= 0:
            continue
        for t, c in terms.items():
            relevance[t] = relevance.get(t, 0.0) + w * c / length
    top = sorted(relevance.items(), key=lambda kv: -kv[1])[:n_terms]
    norm = sum(v for _, v in top)
    expanded = {t: original_weight * c / total_q for t, c in query_terms.items()}
    for t, v in top:
        expanded[t] = expanded.get(t, 0.0) + (1.0 - original_weight) * v / norm
    return expanded
