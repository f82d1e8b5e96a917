"""The RAG lab's part checks. They run in the grader's process and reach the submission only
through its worker's adapters, so the reference and a candidate are checked by identical code.

Each check returns (fraction of the part earned, detail); the detail says what lost points.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from graders.engine.sandbox import Worker, WorkerError

Check = tuple[float, str]


def _run(cases: list[tuple[str, Callable[[], bool]]]) -> Check:
    failed = []
    for label, case in cases:
        try:
            if not case():
                failed.append(label)
        except WorkerError as exc:
            failed.append(f"{label} ({exc})")
    if not failed:
        return 1.0, f"all {len(cases)} checks passed"
    return (len(cases) - len(failed)) / len(cases), "failed: " + "; ".join(failed)


class Candidate:
    """A submission's unit-checked functions as checks call them; each call is one call to its worker.

    This is what an interviewer's hidden checks (`--hidden DIR`, DIR/rag/checks.py) receive: a function
    per part, named after it, that returns the part's cases as (label, callable -> bool), e.g.

        def chunking(sub):
            return [("a 3-word text with max_words=2 gives 2 chunks", lambda: len(sub.chunk("a b c", 2, 0)) == 2)]
    """

    def __init__(self, w: Worker, call_s: float) -> None:
        self.w, self.call_s = w, call_s

    def chunk(self, text: str, max_words: int = 120, overlap: int = 20) -> list[str]:
        return list(self.w.call("chunk", self.call_s, text=text, max_words=max_words, overlap=overlap))

    def tokenize(self, text: str) -> list[str]:
        return list(self.w.call("tokenize", self.call_s, text=text))

    def reciprocal_rank_fusion(self, rankings: list[list[str]], k: int = 60) -> list[tuple[str, float]]:
        return [(h[0], h[1]) for h in self.w.call("rrf", self.call_s, rankings=rankings, k=k)]

    def expand_query(self, query_vec: Any, feedback_vecs: Any, alpha: float = 1.0, beta: float = 0.5) -> np.ndarray:
        return np.asarray(self.w.call("expand_query", self.call_s, query_vec=np.asarray(query_vec).tolist(),
                                      feedback_vecs=np.asarray(feedback_vecs).tolist(), alpha=alpha, beta=beta))

    def dense_search(self, kind: str, vectors: Any, queries: Any, k: int = 10, ef_search: int = 64) -> dict[str, Any]:
        """{"ids": [[...]], "scores": [[...]]} of DenseIndex(kind) built on `vectors`, searched with `queries`."""
        return dict(self.w.call("dense_search", self.call_s, kind=kind, vectors=np.asarray(vectors).tolist(),
                                queries=np.asarray(queries).tolist(), k=k, ef_search=ef_search))


def hidden_cases(cases: Any) -> Check:
    """Run an interviewer's cases: anything a case raises (the submission's wrong types included) fails that case."""
    failed, total = [], 0
    for label, case in cases:
        total += 1
        try:
            if not case():
                failed.append(str(label))
        except Exception as exc:  # noqa: BLE001 - a failing case, whatever the cause
            failed.append(f"{label} ({type(exc).__name__}: {str(exc)[:200]})")
    if not total:
        return 0.0, "the interviewer's hidden checks for this part define no cases"
    if not failed:
        return 1.0, f"all {total} hidden checks passed"
    return (total - len(failed)) / total, f"failed {len(failed)} of {total} hidden checks: " + "; ".join(failed)


def chunking(w: Worker, call_s: float) -> Check:
    def chunk(text: str, max_words: int, overlap: int) -> list[str]:
        return list(w.call("chunk", call_s, text=text, max_words=max_words, overlap=overlap))

    text = " ".join(f"t{i}" for i in range(23))

    def windows_ok() -> bool:
        out = chunk(text, 5, 2)
        return (all(len(c.split()) <= 5 for c in out) and len(out) == 7
                and out[0].split()[0] == "t0" and out[-1].split()[-1] == "t22"
                and all(a.split()[-2:] == b.split()[:2] for a, b in zip(out, out[1:])))

    return _run([
        ("windows of at most max_words that cover the text with the requested overlap", windows_ok),
        ("no overlap means disjoint windows", lambda: chunk(text, 10, 0) == [
            " ".join(f"t{i}" for i in range(10)), " ".join(f"t{i}" for i in range(10, 20)),
            " ".join(f"t{i}" for i in range(20, 23))]),
        ("a short text is one chunk", lambda: chunk("one two", 120, 20) == ["one two"]),
        ("empty text gives no chunks", lambda: chunk("   ", 120, 20) == []),
    ])


def dense_index(w: Worker, call_s: float, vectors: np.ndarray, queries: np.ndarray) -> Check:
    k = 10
    truth = np.argsort(-(queries @ vectors.T), axis=1)[:, :k]
    truth_scores = np.take_along_axis(queries @ vectors.T, truth, axis=1)

    def search(kind: str) -> dict[str, Any]:
        return dict(w.call("dense_search", call_s, kind=kind, vectors=vectors.tolist(),
                           queries=queries.tolist(), k=k, ef_search=64))

    def flat_exact() -> bool:
        out = search("flat")
        got = np.asarray(out["scores"], dtype=np.float32)
        ids = np.asarray(out["ids"])
        return bool(np.allclose(got, truth_scores, atol=1e-4)) and bool((ids[:, 0] == truth[:, 0]).mean() > 0.99)

    hnsw_recall = {"value": math.nan}
    hnsw: dict[str, Any] = {}

    def hnsw_good() -> bool:
        hnsw.update(search("hnsw"))
        ids = np.asarray(hnsw["ids"])
        recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(ids.tolist(), truth.tolist())]))
        hnsw_recall["value"] = recall
        return recall >= 0.9

    def hnsw_scores() -> bool:
        """Scores are the inner products of the returned rows, best first (an L2 index returns distances)."""
        if not hnsw:
            return False
        ids, got = np.asarray(hnsw["ids"]), np.asarray(hnsw["scores"], dtype=np.float32)
        want = np.einsum("qd,qkd->qk", queries, vectors[np.clip(ids, 0, len(vectors) - 1)])
        return bool(np.allclose(got, want, atol=1e-3)) and bool((np.diff(got, axis=1) <= 1e-5).all())

    fraction, detail = _run([
        ("DenseIndex(kind='flat') must return the exact inner-product top 10", flat_exact),
        ("DenseIndex(kind='hnsw', ef_search=64) recall@10 against exact search must be >= 0.90", hnsw_good),
        ("DenseIndex(kind='hnsw') must score by inner product, best first (not L2 distance)", hnsw_scores),
    ])
    if hnsw_recall["value"] == hnsw_recall["value"]:
        detail += f"; HNSW recall@10 = {hnsw_recall['value']:.3f} on {len(vectors)} real MiniLM vectors"
    return fraction, detail


def hybrid_fusion(w: Worker, call_s: float) -> Check:
    def tokens_ok() -> bool:
        out = w.call("tokenize", call_s, text="The AX-420 Blender is NOT working!")
        return (all(t == t.lower() for t in out) and "the" not in out and "is" not in out
                and "blender" in out and "working" in out and any("420" in t for t in out))

    def rrf_ok() -> bool:
        out = w.call("rrf", call_s, rankings=[["a", "b", "c"], ["c", "b", "d"]], k=60)
        expected = {"c": 1 / 61 + 1 / 63, "b": 2 / 62, "a": 1 / 61, "d": 1 / 63}
        return [h[0] for h in out] == ["c", "b", "a", "d"] and all(
            abs(h[1] - expected[h[0]]) < 1e-6 for h in out)

    def rrf_k() -> bool:
        out = w.call("rrf", call_s, rankings=[["x", "y"]], k=0)
        return [h[0] for h in out] == ["x", "y"] and abs(out[0][1] - 1.0) < 1e-6

    return _run([
        ("tokenize: lower-case words, stop words removed, codes kept", tokens_ok),
        ("reciprocal_rank_fusion: sums 1/(k + rank) over rankings, best first", rrf_ok),
        ("reciprocal_rank_fusion: honours k (k=0 gives 1/rank)", rrf_k),
    ])


def query_expansion(w: Worker, call_s: float) -> Check:
    dim = 8
    q = np.eye(dim)[0]
    fb = np.stack([np.eye(dim)[1], np.eye(dim)[1], np.eye(dim)[2]])

    def expand(alpha: float, beta: float) -> np.ndarray:
        return np.asarray(w.call("expand_query", call_s, query_vec=q.tolist(), feedback_vecs=fb.tolist(),
                                 alpha=alpha, beta=beta))

    def rocchio() -> bool:
        want = q + 0.5 * fb.mean(axis=0)
        want /= np.linalg.norm(want)
        return bool(np.allclose(expand(1.0, 0.5), want, atol=1e-4))

    return _run([
        ("expand_query: alpha*q + beta*mean(feedback), as a unit vector", rocchio),
        ("expand_query: beta=0 leaves the query unchanged", lambda: bool(np.allclose(expand(1.0, 0.0), q, atol=1e-4))),
    ])


_CITE = re.compile(r"\[[^\]]*\]")
_WORD = re.compile(r"[a-z0-9]+")


def grounded(answer: dict[str, Any], docs: dict[str, Any]) -> tuple[bool, bool, str]:
    """(citations valid, every sentence grounded in a cited doc, reason if not)."""
    hit_ids = {h[0] for h in answer["hits"]}
    cites = answer["citations"]
    if not answer["text"].strip() or not cites:
        return False, False, "empty answer or no citations"
    if not set(cites) <= hit_ids:
        return False, False, f"cites documents that were not retrieved: {sorted(set(cites) - hit_ids)[:3]}"
    vocab = set()
    for c in cites:
        doc = docs.get(c, {})
        vocab |= set(_WORD.findall(f"{doc.get('title', '')} {doc.get('text', '')}".lower()))
    for sentence in re.split(r"(?<=[.!?])\s+", _CITE.sub(" ", answer["text"])):
        words = _WORD.findall(sentence.lower())
        if len(words) >= 3 and sum(wd in vocab for wd in words) / len(words) < 0.8:
            return True, False, f"a sentence is not supported by the cited documents: {sentence[:80]!r}"
    return True, True, ""
