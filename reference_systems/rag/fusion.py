"""Fusing rankings from several retrievers.

- `reciprocal_rank_fusion` (Cormack et al. 2009): score(d) = sum over rankings of 1 / (k + rank(d)),
  rank from 1, k = 60. Needs only ranks, so it is immune to incomparable score scales.
- `normalized_score_fusion`: a convex combination of per-ranking min-max-normalised scores
  (a document missing from a ranking gets 0 there), which keeps how far ahead a top hit is.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence


# @cell task_3_2_rrf
def reciprocal_rank_fusion(rankings: Sequence[Sequence[str]], k: int = 60) -> list[tuple[str, float]]:
    """Fused (doc_id, score), best first; ties broken by first appearance. Duplicates within a ranking count once."""
    ### BEGIN SOLUTION
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    scores: dict[str, float] = {}
    for ranking in rankings:
        seen: set[str] = set()
        for rank, doc_id in enumerate(ranking, start=1):
            if doc_id in seen:
                continue
            seen.add(doc_id)
            scores[doc_id] = scores.get(doc_id, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])
    ### END SOLUTION
# @end


def min_max(scores: Mapping[str, float]) -> dict[str, float]:
    if not scores:
        return {}
    lo, hi = min(scores.values()), max(scores.values())
    span = hi - lo
    return {d: (s - lo) / span if span > 0 else 1.0 for d, s in scores.items()}


def normalized_score_fusion(runs: Sequence[Mapping[str, float]], weights: Sequence[float] | None = None
                            ) -> list[tuple[str, float]]:
    """sum_i w_i * minmax(run_i)(d), best first. Weights default to equal."""
    weights = list(weights) if weights is not None else [1.0 / len(runs)] * len(runs)
    if len(weights) != len(runs):
        raise ValueError(f"got {len(runs)} runs but {len(weights)} weights")
    fused: dict[str, float] = {}
    for run, w in zip(runs, weights):
        for d, s in min_max(run).items():
            fused[d] = fused.get(d, 0.0) + w * s
    return sorted(fused.items(), key=lambda kv: -kv[1])
