"""Query and sentence embedding for the reference system, safe to call from many threads.

Hugging Face's `tokenizers` raise "Already borrowed" when two threads use one at the same
time, so every call into the shared MiniLM model goes through one lock. Queries skip the
on-disk cache (a SQLite write per request would dominate a 10 ms search under load).
"""
from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from labkit import embeddings

ENCODE_LOCK = threading.Lock()


def embed_query(text: str) -> np.ndarray:
    model = embeddings.model()
    with ENCODE_LOCK:
        return model.encode([text])[0]


def embed_texts(texts: Sequence[str], progress: bool = False) -> np.ndarray:
    """Cached embeddings (documents, chunks, answer sentences)."""
    with ENCODE_LOCK:
        return embeddings.embed(texts, progress=progress)
