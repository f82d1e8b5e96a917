"""Inner-product vector search with FAISS: exact (IndexFlatIP) or approximate (IndexHNSWFlat).

Vectors are L2-normalised, so inner product = cosine similarity. HNSW is built with
METRIC_INNER_PRODUCT; `m` links per node, `ef_construction` candidates while building,
`ef_search` candidates while searching (higher = better recall, slower).
FAISS CPU indexes are safe to search from several threads at once; `add` is not, so it is locked.
"""
from __future__ import annotations

import threading

import faiss
import numpy as np


# @cell task_2_dense_index
def as_matrix(vectors: np.ndarray, dim: int) -> np.ndarray:
    """A C-contiguous float32 (n, dim) copy-if-needed of `vectors` (a single 1-D vector becomes one row)."""
    arr = np.asarray(vectors, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise ValueError(f"expected vectors of shape (n, {dim}), got {np.shape(vectors)}")
    if not np.isfinite(arr).all():
        raise ValueError("vectors contain NaN or inf; embed the texts again or drop the bad rows")
    return np.ascontiguousarray(arr)


class DenseIndex:
    """`DenseIndex(dim, kind="flat")` exact search; `kind="hnsw"` approximate search."""

    def __init__(self, dim: int, kind: str = "flat", m: int = 32, ef_search: int = 64,
                 ef_construction: int = 80) -> None:
        ### BEGIN SOLUTION
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.dim, self.kind = dim, kind
        self.index: faiss.Index
        if kind == "flat":
            self.index = faiss.IndexFlatIP(dim)
        elif kind == "hnsw":
            if m < 2 or ef_search < 1 or ef_construction < 1:
                raise ValueError(f"hnsw needs m >= 2, ef_search >= 1, ef_construction >= 1; got {m}, {ef_search}, "
                                 f"{ef_construction}")
            hnsw = faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
            hnsw.hnsw.efConstruction = ef_construction
            hnsw.hnsw.efSearch = ef_search
            self.index = hnsw
        else:
            raise ValueError(f"kind must be 'flat' (exact) or 'hnsw' (approximate), got {kind!r}")
        self._lock = threading.Lock()
        ### END SOLUTION

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def add(self, vectors: np.ndarray) -> None:
        ### BEGIN SOLUTION
        arr = as_matrix(vectors, self.dim)
        with self._lock:
            self.index.add(arr)
        ### END SOLUTION

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, row_ids), each (n_queries, min(k, len(self))), best first."""
        ### BEGIN SOLUTION
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        q = as_matrix(queries, self.dim)
        k = min(k, len(self))
        if k == 0:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        scores, ids = self.index.search(q, k)
        return scores, ids
        ### END SOLUTION
