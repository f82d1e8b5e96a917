"""Grounded extractive answers: quote the hits' sentences that best match the query, each with its citation.

No generation, so nothing can be made up: every sentence of the answer is copied verbatim from
a retrieved document and followed by that document's id in brackets ("... [kb-00042]").
A sentence's score = cosine similarity to the query (MiniLM) + 0.3 x the share of the query's
(stemmed) terms it contains, minus a small penalty for coming from a lower-ranked hit. Up to 3 sentences are quoted; a
sentence scoring under 0.6 x the best one is left out.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from labkit.text import analyze, sentences
from reference_systems.rag import encoder

NOT_FOUND = "I could not find anything in the knowledge base that answers this question."


def _field(doc: Any, name: str) -> str:
    value = doc.get(name, "") if isinstance(doc, Mapping) else getattr(doc, name, "")
    return str(value or "")


def answer(query: str, hits: Sequence[tuple[str, float]], docs: Mapping[str, Any], max_sentences: int = 3,
           top_docs: int = 5, min_relative: float = 0.6) -> dict[str, Any]:
    """{"text": answer with a [doc_id] after each sentence, "citations": the doc ids quoted, in order}."""
    if not isinstance(query, str):
        raise TypeError(f"query must be a str, got {type(query).__name__}")
    ranked: list[str] = []
    for hit in hits:
        doc_id = str(hit[0])
        if doc_id in docs and doc_id not in ranked:
            ranked.append(doc_id)
    ranked = ranked[:top_docs]
    candidates = [(rank, pos, doc_id, s) for rank, doc_id in enumerate(ranked)
                  for pos, s in enumerate(sentences(_field(docs[doc_id], "text")))]
    if not candidates or not query.strip():
        return {"text": NOT_FOUND, "citations": []}

    vecs = encoder.embed_texts([query] + [c[3] for c in candidates])
    similarity = vecs[1:] @ vecs[0]
    q_terms = set(analyze(query))
    overlap = np.array([len(q_terms.intersection(analyze(c[3]))) / max(len(q_terms), 1) for c in candidates])
    penalty = np.array([0.02 * c[0] for c in candidates])
    score = similarity + 0.3 * overlap - penalty
    order = np.argsort(-score, kind="stable")[:max_sentences]
    # keep the best sentence, and others only if they are nearly as good (no padding with off-topic text)
    keep = [i for i in order if score[i] >= min_relative * score[order[0]]] if score[order[0]] > 0 else list(order[:1])
    best = sorted(keep, key=lambda i: (candidates[i][0], candidates[i][1]))
    parts, citations = [], []
    for i in best:
        _, _, doc_id, sentence = candidates[i]
        parts.append(f"{sentence} [{doc_id}]")
        if doc_id not in citations:
            citations.append(doc_id)
    return {"text": " ".join(parts), "citations": citations}
