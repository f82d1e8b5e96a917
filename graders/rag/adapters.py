"""RAG adapters: the only code that touches a submission's objects. Runs inside the sandboxed worker.

Each function takes the submission module first and returns plain data, checking the
submission's return types on the way so a wrong type becomes a sentence, not a crash later.
"""
from __future__ import annotations

import time
from types import ModuleType
from typing import Any

import numpy as np

from graders.rag.interface import missing_names

EXPORTS = {"chunk", "tokenize", "rrf", "expand_query", "dense_search", "index", "search", "answer", "embed"}
_state: dict[str, Any] = {}


def validate(module: ModuleType) -> str | None:
    """None when the module is gradable; else why. Also loads the lab's embedding model, so its
    seconds of start-up count toward starting the worker rather than toward the first query."""
    from labkit.embeddings import model

    model()
    missing = missing_names(module)
    if missing:
        return f"the submission does not define {', '.join(missing)} (see graders/rag/interface.py)"
    return None


def _hits(value: Any, where: str) -> list[list[Any]]:
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{where} must return a list of (doc_id, score) pairs; got {type(value).__name__}")
    out = []
    for item in value:
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise TypeError(f"{where} must return (doc_id, score) pairs; got an item {item!r:.80}")
        doc_id, score = item
        out.append([str(doc_id), float(score)])
    return out


def chunk(m: ModuleType, text: str, max_words: int, overlap: int) -> list[str]:
    out = m.chunk(text, max_words=max_words, overlap=overlap)
    if not isinstance(out, list) or not all(isinstance(c, str) for c in out):
        raise TypeError(f"chunk() must return a list of str; got {type(out).__name__}")
    return out


def tokenize(m: ModuleType, text: str) -> list[str]:
    out = m.tokenize(text)
    if not isinstance(out, list) or not all(isinstance(t, str) for t in out):
        raise TypeError(f"tokenize() must return a list of str; got {type(out).__name__}")
    return out


def rrf(m: ModuleType, rankings: list[list[str]], k: int) -> list[list[Any]]:
    return _hits(m.reciprocal_rank_fusion(rankings, k=k), "reciprocal_rank_fusion()")


def expand_query(m: ModuleType, query_vec: list[float], feedback_vecs: list[list[float]], alpha: float, beta: float):
    out = m.expand_query(np.asarray(query_vec, dtype=np.float32), np.asarray(feedback_vecs, dtype=np.float32),
                         alpha=alpha, beta=beta)
    arr = np.asarray(out, dtype=np.float32)
    if arr.shape != (len(query_vec),):
        raise TypeError(f"expand_query() must return a vector of shape ({len(query_vec)},); got shape {arr.shape}")
    return arr.tolist()


def embed(m: ModuleType, texts: list[str]) -> list[list[float]]:
    """The lab's shared embedder (labkit), so dense checks run on real MiniLM vectors."""
    from labkit.embeddings import embed as lab_embed

    return lab_embed(texts).tolist()


def dense_search(m: ModuleType, kind: str, vectors: list[list[float]], queries: list[list[float]], k: int,
                 ef_search: int = 64) -> dict[str, Any]:
    base = np.asarray(vectors, dtype=np.float32)
    q = np.asarray(queries, dtype=np.float32)
    index = m.DenseIndex(base.shape[1], kind=kind, ef_search=ef_search)
    index.add(base)
    started = time.perf_counter()
    scores, ids = index.search(q, k)
    seconds = time.perf_counter() - started
    ids = np.asarray(ids)
    if ids.shape != (len(q), k):
        raise TypeError(f"DenseIndex.search() must return ids of shape ({len(q)}, {k}); got {ids.shape}")
    return {"ids": ids.astype(int).tolist(), "scores": np.asarray(scores, dtype=float).tolist(), "seconds": seconds}


def _nbytes(obj: Any, depth: int = 0, seen: set[int] | None = None) -> int:
    """Bytes held by numpy arrays and FAISS indexes reachable from obj (a bounded, shallow walk)."""
    seen = seen if seen is not None else set()
    if id(obj) in seen or depth > 4:
        return 0
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    if type(obj).__module__.startswith("faiss"):
        try:
            import faiss

            return int(faiss.serialize_index(obj).nbytes)
        except Exception:  # noqa: BLE001 - not an index (a parameter object, a GPU index)
            return 0
    if isinstance(obj, dict):
        return sum(_nbytes(v, depth + 1, seen) for v in list(obj.values())[:10000])
    if isinstance(obj, (list, tuple)):
        if obj and isinstance(obj[0], (int, float, str)):
            return 0
        return sum(_nbytes(v, depth + 1, seen) for v in obj[:10000])
    if hasattr(obj, "__dict__") and not isinstance(obj, type):
        return sum(_nbytes(v, depth + 1, seen) for v in vars(obj).values())
    return 0


def index(m: ModuleType, docs: list[dict[str, str]]) -> dict[str, float]:
    retriever = m.Retriever()
    started = time.perf_counter()
    retriever.index(docs)
    seconds = time.perf_counter() - started
    _state["retriever"] = retriever
    _state["docs"] = {d["id"]: d for d in docs}
    return {"seconds": seconds, "index_bytes": _nbytes(retriever)}


def _retriever() -> Any:
    if "retriever" not in _state:
        raise RuntimeError("search before index: the grader must call index first")
    return _state["retriever"]


def search(m: ModuleType, query: str, k: int) -> list[list[Any]]:
    return _hits(_retriever().search(query, k), "Retriever.search()")[:k]


def answer(m: ModuleType, query: str, k: int) -> dict[str, Any]:
    hits = _hits(_retriever().search(query, k), "Retriever.search()")[:k]
    out = m.answer(query, [tuple(h) for h in hits], _state["docs"])
    if not isinstance(out, dict) or not isinstance(out.get("text"), str) or not isinstance(out.get("citations"), list):
        raise TypeError("answer() must return a dict {'text': str, 'citations': [doc_id, ...]}")
    return {"text": out["text"], "citations": [str(c) for c in out["citations"]], "hits": hits}
