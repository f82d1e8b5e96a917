"""The reference RAG system, piece by piece, on real text and real MiniLM embeddings (never random vectors).

The real-text corpus is the Python documentation shipped with CPython (`pydoc_data.topics`):
always present, and embedded once into the on-disk cache.
"""
from __future__ import annotations

import itertools
import re
import threading

import numpy as np
import pytest

from graders.rag.interface import missing_names
from labkit.embeddings import embed
from labkit.text import analyze, sentences, stem, tokenize
from reference_systems.rag import submission
from reference_systems.rag.answer import NOT_FOUND, answer
from reference_systems.rag.chunking import chunk, chunk_doc
from reference_systems.rag.dense import DenseIndex
from reference_systems.rag.expansion import expand_query, rm3_query
from reference_systems.rag.fusion import normalized_score_fusion, reciprocal_rank_fusion
from reference_systems.rag.retriever import Retriever


@pytest.fixture(scope="module")
def paragraphs() -> list[tuple[str, str]]:
    from pydoc_data.topics import topics

    out, seen = [], set()
    for name, text in sorted(topics.items()):
        for p in text.split("\n\n"):
            p = " ".join(p.split())
            if len(p.split()) >= 20 and p not in seen:  # the docs repeat some paragraphs: exact ties
                seen.add(p)
                out.append((name, p))
    return out[:360]


@pytest.fixture(scope="module")
def vectors(paragraphs) -> np.ndarray:
    return embed([p for _, p in paragraphs])


@pytest.fixture(scope="module")
def kb(paragraphs) -> dict[str, dict[str, str]]:
    return {f"py-{i:03d}": {"id": f"py-{i:03d}", "title": name, "text": text}
            for i, (name, text) in enumerate(paragraphs[:150])}


@pytest.fixture(scope="module")
def retriever(kb) -> Retriever:
    r = Retriever()
    r.index(list(kb.values()))
    return r


# ------------------------------------------------------------------ text
def test_tokenize_lowercases_drops_stop_words_and_keeps_codes():
    assert tokenize("The Return Policy of the AX-420") == ["return", "policy", "ax-420", "ax", "420"]
    assert tokenize("what is it?") == []
    with pytest.raises(TypeError):
        tokenize(None)  # type: ignore[arg-type]


def test_porter_stemmer_on_textbook_examples():
    cases = {"caresses": "caress", "ponies": "poni", "hopping": "hop", "relational": "relat",
             "generalizations": "gener", "flows": "flow", "flowing": "flow", "heated": "heat"}
    assert {w: stem(w) for w in cases} == cases
    assert analyze("Flowing over heated plates") == ["flow", "heat", "plate"]


def test_sentences_keeps_abbreviations_and_decimals():
    text = "Refunds take 3.5 days, e.g. by card. Shipping is free! Questions? the end ."
    assert sentences(text) == ["Refunds take 3.5 days, e.g. by card.", "Shipping is free!", "Questions?", "the end ."]


def test_sentences_survives_a_lone_full_stop():
    # Cranfield's abstracts hold " . . ": a piece that is only "." used to raise IndexError inside answer()
    text = "the flow is laminar . . the wing stalls . then it recovers."
    assert sentences(text) == ["the flow is laminar .", ".", "the wing stalls .", "then it recovers."]


# ------------------------------------------------------------------ chunking
@pytest.mark.parametrize("n,max_words,overlap",
                         [(1, 5, 2), (5, 5, 2), (6, 5, 2), (23, 5, 2), (250, 120, 20), (7, 3, 0)])
def test_chunk_covers_every_word_with_exact_overlap(n, max_words, overlap):
    words = [f"w{i}" for i in range(n)]
    windows = [w.split() for w in chunk(" ".join(words), max_words, overlap)]
    assert all(1 <= len(w) <= max_words for w in windows)
    assert [x for w in windows[:1] for x in w] + [x for w in windows[1:] for x in w[overlap:]] == words
    for a, b in itertools.pairwise(windows):
        if overlap:
            assert a[-overlap:] == b[:overlap]
        assert len(a) == max_words


def test_chunk_edge_cases_and_title_prefix():
    assert chunk("   ") == []
    with pytest.raises(ValueError, match="overlap"):
        chunk("a b c", max_words=3, overlap=3)
    with pytest.raises(ValueError, match="max_words"):
        chunk("a b c", max_words=0)
    pieces = chunk_doc({"title": "Returns", "text": " ".join(["x"] * 30)}, max_words=10, overlap=2)
    assert len(pieces) == 4 and all(p.startswith("Returns\n") for p in pieces)
    assert chunk_doc({"title": "Only a title", "text": ""}) == ["Only a title"]


# ------------------------------------------------------------------ dense index
def test_flat_index_is_exact(vectors):
    corpus, queries = vectors[:300], vectors[300:330]
    index = DenseIndex(corpus.shape[1], kind="flat")
    index.add(corpus)
    scores, ids = index.search(queries, 10)
    brute = queries @ corpus.T
    expected = np.argsort(-brute, axis=1, kind="stable")[:, :10]
    assert ids.shape == (30, 10)
    np.testing.assert_array_equal(ids, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(brute, expected, axis=1), atol=1e-5)


def test_hnsw_recall_against_flat_on_real_embeddings(vectors):
    corpus, queries = vectors[:300], vectors[300:360]
    flat, hnsw = DenseIndex(384, "flat"), DenseIndex(384, "hnsw", m=16, ef_search=64)
    flat.add(corpus)
    hnsw.add(corpus)
    _, exact = flat.search(queries, 10)
    _, approx = hnsw.search(queries, 10)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact)])
    assert recall >= 0.9


def test_dense_index_rejects_bad_input(vectors):
    with pytest.raises(ValueError, match="kind"):
        DenseIndex(384, kind="ivf")
    index = DenseIndex(384)
    with pytest.raises(ValueError, match="shape"):
        index.add(vectors[:3, :100])
    index.add(vectors[:3])
    scores, ids = index.search(vectors[0], 10)  # a 1-D query; k larger than the index
    assert ids.shape == (1, 3) and ids[0, 0] == 0 and scores[0, 0] == pytest.approx(1.0, abs=1e-5)


# ------------------------------------------------------------------ fusion and expansion
def test_rrf_by_hand():
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["b", "c", "d"]], k=60)
    assert [d for d, _ in fused] == ["b", "c", "a", "d"]
    assert dict(fused)["b"] == pytest.approx(1 / 62 + 1 / 61)
    assert dict(fused)["d"] == pytest.approx(1 / 63)
    assert reciprocal_rank_fusion([["a", "a", "b"]], k=0) == [("a", 1.0), ("b", pytest.approx(1 / 3))]


def test_normalized_score_fusion_by_hand():
    fused = dict(normalized_score_fusion([{"a": 10.0, "b": 5.0, "c": 0.0}, {"b": 0.9, "c": 0.5}], [0.5, 0.5]))
    assert fused == pytest.approx({"a": 0.5, "b": 0.75, "c": 0.0})


def test_expand_query_moves_toward_feedback(vectors):
    q, fb = vectors[0], vectors[10:15]
    centroid = fb.mean(axis=0)
    out = expand_query(q, fb, alpha=1.0, beta=0.5)
    assert np.linalg.norm(out) == pytest.approx(1.0, abs=1e-5)
    assert out @ centroid > q @ centroid
    np.testing.assert_allclose(expand_query(q, fb, beta=0.0), q, atol=1e-5)
    np.testing.assert_allclose(expand_query(q, fb[:0]), q, atol=1e-5)
    with pytest.raises(ValueError, match="shape"):
        expand_query(q, fb[:, :10])


def test_rm3_keeps_the_query_and_adds_feedback_terms():
    from collections import Counter

    docs = [Counter({"wing": 3, "flutter": 2}), Counter({"flutter": 4, "panel": 1})]
    expanded = rm3_query({"wing": 1.0}, docs, [1.0, 1.0], n_terms=2, original_weight=0.5)
    assert sum(expanded.values()) == pytest.approx(1.0)
    assert set(expanded) == {"wing", "flutter"}
    assert expanded["wing"] > 0.5 and expanded["flutter"] > 0


# ------------------------------------------------------------------ retriever and answers
def test_submission_exposes_the_contract():
    assert missing_names(submission) == []
    assert isinstance(submission.Retriever(), Retriever)


def test_retriever_rejects_misuse(kb):
    with pytest.raises(RuntimeError, match="index"):
        Retriever().search("anything")
    with pytest.raises(ValueError, match="duplicate"):
        Retriever().index([{"id": "a", "title": "", "text": "x"}, {"id": "a", "title": "", "text": "y"}])
    with pytest.raises(ValueError, match="no documents"):
        Retriever().index([])


def test_retriever_finds_the_topic_and_is_thread_safe(retriever, kb):
    query = "what does the assert statement do when debugging is enabled"
    hits = retriever.search(query, k=10)
    assert len(hits) == 10 and len({d for d, _ in hits}) == 10
    assert all(d in kb for d, _ in hits)
    assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
    assert kb[hits[0][0]]["title"] == "assert"

    queries = ["how are augmented assignment statements evaluated", query, "attribute references on objects",
               "binary arithmetic operations and their precedence"]
    expected = {q: retriever.search(q, 10) for q in queries}
    results, errors = [], []

    def worker(q: str) -> None:
        try:
            results.append((q, retriever.search(q, 10)))
        except Exception as e:  # noqa: BLE001 - surfaced by the assert below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(q,)) for q in queries * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all([d for d, _ in hits] == [d for d, _ in expected[q]] for q, hits in results)


def test_answer_is_grounded_and_cited(retriever, kb):
    query = "what does the assert statement do when debugging is enabled"
    hits = retriever.search(query, k=5)
    result = answer(query, hits, kb)
    assert result["citations"] and set(result["citations"]) <= {d for d, _ in hits}
    quoted = re.findall(r"(.+?) \[([^\]]+)\](?:\s|$)", result["text"])
    assert quoted and {d for _, d in quoted} == set(result["citations"])
    for sentence, doc_id in quoted:
        assert sentence.strip() in kb[doc_id]["text"]


def test_answer_without_hits_says_so():
    assert answer("anything", [], {}) == {"text": NOT_FOUND, "citations": []}
    assert answer("anything", [("missing", 1.0)], {})["citations"] == []
