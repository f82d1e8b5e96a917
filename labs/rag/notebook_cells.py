'''The RAG lab notebook's cells: text, reference solutions and autograder tests (read by make_notebook.py).

Kinds: "markdown" (locked text), "setup" (locked code), "answer" (the candidate's code; the
solution sits between BEGIN/END SOLUTION), "test" (autograded, points; hidden tests between
BEGIN/END HIDDEN TESTS), "written" (a manually graded markdown answer), "explore" (code the
grader's notebook→module extractor drops: tagged ailab-exclude).

The tests run on small inline data (a dozen help-centre articles) so the whole notebook's tests
take seconds; the dev-data explorations live in "explore" cells.

ONE SOURCE where the reference has the notebook's contract: the answer cells of Tasks 1.1 (`chunk`), 2.1/2.2
(`DenseIndex`, with its given `as_matrix`), 3.2 (`reciprocal_rank_fusion`) and 4.1 (`expand_query`) are cut from
reference_systems/rag/{chunking,dense,fusion,expansion}.py at their `# @cell` markers
(graders.engine.nbbuild.reference_cells). `tokenize` (3.1), `Retriever` (5.1) and `answer` (6.1) are written here:
the reference's counterparts are a different design (its own stemming BM25, score fusion with RM3, the reference
encoder), not the notebook's contract.
'''
from __future__ import annotations

from pathlib import Path
from typing import Any

from graders.engine.nbbuild import reference_cells

REFERENCE = Path(__file__).resolve().parents[2] / "reference_systems" / "rag"
CODE = reference_cells(*(REFERENCE / f"{name}.py" for name in ("chunking", "dense", "fusion", "expansion")))


def stub(task: str, name: str) -> str:
    """The code a release notebook shows in place of each solution region."""
    return f'# YOUR CODE HERE\nraise NotImplementedError("Task {task}: implement {name}")'


INTRO = """
# Lab: retrieval-augmented generation

You will build, piece by piece, the retrieval side of a RAG system over a customer-support
knowledge base, and a grounded answer on top of it:

| Part | Task | What you write | Weight |
|---|---|---|---|
| Chunking | 1.1 | `chunk` | 6 |
| Dense index | 2.1, 2.2 | `DenseIndex`: exact (FAISS flat) and approximate (HNSW) | 10 |
| Hybrid fusion | 3.1, 3.2 | `tokenize` for BM25, `reciprocal_rank_fusion` | 8 |
| Query expansion | 4.1 | `expand_query` (Rocchio pseudo-relevance feedback) | 6 |
| Retrieval quality | 5.1 | `Retriever.index` / `Retriever.search` (nDCG@10 on hidden queries vs the reference) | 36 |
| Performance | 5.1 | the same `Retriever` under load (p95 latency vs the reference) | 22 |
| Grounded answers | 6.1 | `answer` with `[doc-id]` citations | 12 |
| Written | 7.1 | a trade-off question, graded by hand | 5 points |

**How it is graded.** Every code cell that is not a test cell and not tagged `ailab-exclude`
becomes your module; the grader imports it in a sandbox, calls the names above, scores
retrieval quality on a **hidden** query set and measures latency under Locust load, both
relative to a reference implementation measured in the same run. The test cells below each task
are worth the points shown; they also contain hidden tests, so passing the visible asserts is
necessary, not sufficient.

**Rules of thumb.** Keep module-level code cheap (no corpus loading outside `ailab-exclude`
cells). `Retriever.search` answers one query at a time: aim for tens of milliseconds.
Check your work any time with `ailab check rag.ipynb` (public dev data only).

Helpers you may use: `labkit.embeddings.embed(texts)` / `embed_one(text)` (all-MiniLM-L6-v2,
384-dim, L2-normalised, cached on disk), `labkit.data.load_dev()` and `labkit.data.evaluate(...)`,
`numpy`, `faiss`, `bm25s`.
"""

SETUP = """
# Setup (locked): the libraries this lab uses. Run this cell first.
import re
import threading
import time
from collections import defaultdict
from typing import Sequence

import bm25s
import faiss
import numpy as np

from labkit.embeddings import embed, embed_one

# One query at a time: FAISS's OpenMP threads only add overhead, and the grader runs several workers.
faiss.omp_set_num_threads(1)
"""

# Help-centre articles the tests index; small so a test embeds them in a second.
TEST_DATA = '''
# Test data (locked): a tiny help centre the tests below use.
TEST_DOCS = [
    {"id": "returns-policy", "title": "Returns and refunds", "text": "You can send most items back within 30 days of delivery. Start a return from the Orders page, print the prepaid label and drop the parcel at any courier point. Refunds go to the original payment method within 5 business days after the item reaches our warehouse."},
    {"id": "delivery-times", "title": "Delivery times", "text": "Standard delivery takes 3 to 5 business days. Express delivery arrives the next business day when ordered before 2 pm. A tracking link is emailed when the parcel leaves the warehouse."},
    {"id": "headphones-warranty", "title": "Headphones warranty", "text": "Wireless headphones carry a two-year limited warranty that covers battery and hardware faults. Physical damage and lost earbuds are not covered."},
    {"id": "password-reset", "title": "Resetting your password", "text": "Click Forgot password on the sign-in page and follow the link we email you. The link expires after 30 minutes."},
    {"id": "qx-4471x", "title": "QX-4471X espresso machine", "text": "The QX-4471X brews espresso and lungo, has a 1.8 litre water tank and a milk frother. Descale it every two months."},
    {"id": "payment-methods", "title": "Payment methods", "text": "We accept credit cards, debit cards, PayPal and gift cards. Cash on delivery is not available."},
    {"id": "cancel-order", "title": "Cancelling an order", "text": "Orders can be cancelled free of charge until they are packed. After that, wait for the delivery and start a return instead."},
    {"id": "gift-cards", "title": "Gift cards", "text": "Gift cards never expire and can be combined with other payment methods at checkout."},
    {"id": "laptop-battery", "title": "Laptop battery care", "text": "Keep laptop batteries between 20 and 80 percent for a longer life. Avoid leaving the laptop in a hot car."},
    {"id": "privacy", "title": "Privacy and your data", "text": "We never sell personal data. You can download or delete your account data from the privacy settings."},
    {"id": "international", "title": "International shipping", "text": "We ship to Canada, the United Kingdom and the European Union. Import duties and customs fees are paid by the recipient."},
    {"id": "store-pickup", "title": "Click and collect", "text": "Order online and pick the parcel up at a store near you, usually within two hours. Bring the order number and a photo ID."},
]
TEST_DOC_MAP = {d["id"]: d for d in TEST_DOCS}
'''

# ---------------------------------------------------------------- Task 1.1
T11 = """
## Task 1.1 — Chunking (6 points)

Write `chunk(text, max_words=120, overlap=20) -> list[str]`: split `text` into windows of at most
`max_words` whitespace-separated words, each window starting `max_words - overlap` words after the
previous one, so consecutive windows share `overlap` words. Join the words of a window with single
spaces. Empty text has no chunks.

<details><summary>Hints</summary>

- `text.split()` (no argument) splits on any whitespace run and drops empty strings.
- Stop as soon as a window reaches the last word: a trailing window that only repeats words of
  the previous one adds an embedding and nothing else.
- Why overlap at all? A sentence cut in half by a window boundary is still whole in one window.
</details>
"""

TEST11 = """
# Task 1.1 tests
words = " ".join(f"w{i}" for i in range(9))
out = chunk(words, max_words=4, overlap=1)
assert isinstance(out, list) and all(isinstance(c, str) for c in out), f"chunk must return a list of str, got {out!r}"
assert out == ["w0 w1 w2 w3", "w3 w4 w5 w6", "w6 w7 w8"], out
assert chunk("", 4, 1) == [], "empty text has no chunks"
assert chunk("one two", 120, 20) == ["one two"], "a short text is one chunk"
### BEGIN HIDDEN TESTS
text = " ".join(f"t{i}" for i in range(23))
out = chunk(text, max_words=5, overlap=2)
assert all(len(c.split()) <= 5 for c in out), "a window is longer than max_words"
assert out[0].split()[0] == "t0" and out[-1].split()[-1] == "t22", "the windows must cover the text"
assert len(out) == 7, f"expected 7 windows (no trailing window that adds nothing), got {len(out)}"
assert all(a.split()[-2:] == b.split()[:2] for a, b in zip(out, out[1:])), "consecutive windows must share 2 words"
assert chunk("  spaced\\n\\tout   words ", 2, 0) == ["spaced out", "words"]
assert chunk(" ".join(["x"] * 8), 4, 0) == ["x x x x", "x x x x"]
### END HIDDEN TESTS
"""

# ---------------------------------------------------------------- Task 2
T21 = """
## Task 2.1 — Exact dense index (5 points)

Write the `DenseIndex` class: `DenseIndex(dim, kind="flat")` holds L2-normalised float32 vectors,
`add(vectors)` appends rows (row ids continue across calls), and `search(queries, k)` returns
`(scores, row_ids)`, two arrays of shape `(n_queries, k)`, best first, where a score is the inner
product (= cosine similarity for unit vectors). `kind="flat"` is exact search: use FAISS's
`IndexFlatIP`.

<details><summary>Hints</summary>

- FAISS wants C-contiguous `float32` arrays: `np.ascontiguousarray(x, dtype=np.float32)`.
- FAISS returns row id `-1` when there are fewer than `k` vectors.
</details>
"""

T22 = """
## Task 2.2 — Approximate search with HNSW (5 points)

In the same class, `kind="hnsw"` builds a graph index (`faiss.IndexHNSWFlat`) with `m` links per
node that ranks by **inner product** and searches with `ef_search` candidates. Scores must still be
similarities, best first.

<details><summary>Hints</summary>

- `faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)`; the default metric is L2, whose
  "scores" are distances (smaller is better).
- `index.hnsw.efConstruction` (build quality) and `index.hnsw.efSearch` (query-time breadth) are
  the knobs; the exploration cell below measures what `efSearch` buys.
- Never judge an ANN index on random Gaussian vectors: they have no structure, so recall looks
  terrible. Real embeddings (or low-rank data, as in the tests) behave like production.
</details>
"""

TEST21 = """
# Task 2.1 tests
rng = np.random.default_rng(0)
base = rng.normal(size=(200, 16)).astype(np.float32)
base /= np.linalg.norm(base, axis=1, keepdims=True)
queries = (base[:5] + 0.1 * rng.normal(size=(5, 16))).astype(np.float32)
index = DenseIndex(16)
index.add(base)
scores, ids = index.search(queries, 3)
assert scores.shape == (5, 3) and ids.shape == (5, 3), (scores.shape, ids.shape)
expected = np.argsort(-(queries @ base.T), axis=1)[:, :3]
assert (ids == expected).all(), "flat search must be exact"
assert np.allclose(scores, np.take_along_axis(queries @ base.T, expected, axis=1), atol=1e-4), "scores must be inner products"
### BEGIN HIDDEN TESTS
two = DenseIndex(16)
two.add(base[:120])
two.add(base[120:].astype(np.float64))  # row ids continue; float64 input is accepted
_, ids2 = two.search(queries.astype(np.float64), 3)
assert (ids2 == expected).all(), "row ids must continue across add() calls"
_, one = two.search(base[150:151], 1)
assert one[0, 0] == 150
### END HIDDEN TESTS
"""

TEST22 = """
# Task 2.2 tests: low-rank data behaves like embeddings (random Gaussian vectors would not)
rng = np.random.default_rng(1)
data = (rng.normal(size=(2000, 12)) @ rng.normal(size=(12, 64))).astype(np.float32)
data /= np.linalg.norm(data, axis=1, keepdims=True)
queries = (data[:40] + 0.05 * rng.normal(size=(40, 64))).astype(np.float32)
queries /= np.linalg.norm(queries, axis=1, keepdims=True)
exact = DenseIndex(64)
exact.add(data)
_, truth = exact.search(queries, 10)
ann = DenseIndex(64, kind="hnsw", m=16, ef_search=64)
ann.add(data)
ann_scores, approx = ann.search(queries, 10)
recall = np.mean([len(set(a) & set(t)) / 10 for a, t in zip(approx, truth)])
assert recall >= 0.95, f"HNSW recall@10 {recall:.2f} < 0.95 at ef_search=64"
### BEGIN HIDDEN TESTS
assert (np.diff(ann_scores, axis=1) <= 1e-6).all(), "HNSW scores must be similarities, best (largest) first"
assert np.allclose(ann_scores[:, 0], np.sum(queries * data[approx[:, 0]], axis=1), atol=1e-4), "HNSW scores must be inner products"
### END HIDDEN TESTS
"""

EXPLORE2 = """
# Exploration (tagged ailab-exclude: not part of your submission). Recall@10 vs latency over efSearch
# on the public dev corpus. The first run embeds the corpus (about a minute); later runs hit the cache.
from labkit.data import load_dev

dev_docs, dev_queries, dev_qrels = load_dev()
doc_vecs = embed([f"{d['title']}. {d['text']}" for d in dev_docs], progress=True)
query_vecs = embed(list(dev_queries.values()))
exact = DenseIndex(doc_vecs.shape[1])
exact.add(doc_vecs)
_, truth = exact.search(query_vecs, 10)
print(f"{len(dev_docs)} docs, {len(query_vecs)} queries\\nefSearch  recall@10  ms/query")
for ef in (2, 4, 8, 16, 32, 64, 128):
    ann = DenseIndex(doc_vecs.shape[1], kind="hnsw", m=16, ef_search=ef)
    ann.add(doc_vecs)
    start = time.perf_counter()
    found = np.vstack([ann.search(q[None, :], 10)[1] for q in query_vecs])
    ms = (time.perf_counter() - start) * 1000 / len(query_vecs)
    recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)])
    print(f"{ef:8d}  {recall:9.3f}  {ms:8.3f}")
"""

# ---------------------------------------------------------------- Task 3
T31 = """
## Task 3.1 — Tokens for BM25 (4 points)

Write `tokenize(text) -> list[str]`: the lower-cased alphanumeric words of `text` (runs of `a-z`
and `0-9`; every other character separates words), in order, without English stop words
(`STOP_WORDS` below is a fine list; you may use your own).

<details><summary>Hints</summary>

- One regular expression does it: `re.findall(r"[a-z0-9]+", text.lower())`.
- Stop words carry no topic; dropping them makes BM25 faster and sharper. Product codes such as
  `QX-4471X` must survive (as `qx`, `4471x`): they are what lexical search is best at.
</details>
"""

A31 = """
STOP_WORDS = frozenset(
    "a about after all also am an and any are as at be been before being but by can could did do does doing "
    "for from had has have having he her here hers him his how i if in into is it its just me more most my "
    "no nor not of off on once only or other our ours out over own same she should so some such than that "
    "the their theirs them then there these they this those through to too under until up very was we were "
    "what when where which while who whom why will with would you your yours".split()
)


def tokenize(text: str) -> list[str]:
    \"\"\"Lower-cased alphanumeric words of `text`, stop words removed.\"\"\"
    ### BEGIN SOLUTION
    return [t for t in re.findall(r"[a-z0-9]+", text.lower()) if t not in STOP_WORDS]
    ### END SOLUTION
"""

TEST31 = """
# Task 3.1 tests
assert tokenize("The Quick, brown fox!") == ["quick", "brown", "fox"], tokenize("The Quick, brown fox!")
assert tokenize("") == []
### BEGIN HIDDEN TESTS
assert tokenize("QX-4471X ships in 3-5 days") == ["qx", "4471x", "ships", "3", "5", "days"]
assert tokenize("Where is MY order?") == ["order"], "stop words must go"
assert tokenize("e-mail\\nreceipts") == ["e", "mail", "receipts"]
### END HIDDEN TESTS
"""

T32 = """
## Task 3.2 — Reciprocal-rank fusion (4 points)

Write `reciprocal_rank_fusion(rankings, k=60) -> list[(doc_id, score)]`: each ranking is a list of
doc ids, best first; a document's fused score is the sum over the rankings it appears in of
`1 / (k + rank)`, with ranks starting at **1**. Return every document once, highest score first.

<details><summary>Hints</summary>

- RRF (Cormack, Clarke and Büttcher, 2009) needs no score calibration between BM25 and cosine
  similarity: only ranks matter. That is why it is the default way to fuse hybrid search.
- `collections.defaultdict(float)` and one `sorted(...)` are all it takes.
</details>
"""

TEST32 = """
# Task 3.2 tests
fused = reciprocal_rank_fusion([["a", "b", "c"], ["b", "a", "d"]], k=60)
ids = [doc_id for doc_id, _ in fused]
assert set(ids[:2]) == {"a", "b"} and set(ids[2:]) == {"c", "d"}, ids
assert abs(dict(fused)["a"] - (1 / 61 + 1 / 62)) < 1e-9, "score = sum of 1 / (k + rank), ranks from 1"
assert all(s1 >= s2 for (_, s1), (_, s2) in zip(fused, fused[1:])), "highest score first"
### BEGIN HIDDEN TESTS
assert reciprocal_rank_fusion([]) == []
assert [d for d, _ in reciprocal_rank_fusion([["x", "y"]], k=0)] == ["x", "y"]
assert abs(dict(reciprocal_rank_fusion([["x", "y"]], k=0))["y"] - 0.5) < 1e-9, "k must be used"
consensus = reciprocal_rank_fusion([["a", "b", "c"], ["c", "b", "a"], ["b", "a", "c"]])
assert consensus[0][0] == "b", consensus
assert abs(dict(fused)["c"] - 1 / 63) < 1e-9
### END HIDDEN TESTS
"""

# ---------------------------------------------------------------- Task 4.1
T41 = """
## Task 4.1 — Query expansion with pseudo-relevance feedback (6 points)

Write `expand_query(query_vec, feedback_vecs, alpha=1.0, beta=0.5) -> np.ndarray`, Rocchio's
update for dense retrieval: `q' = alpha * q + beta * mean(feedback_vecs)`, returned as a **unit**
vector of the same shape as `q`. The feedback vectors are the top few results of a first search
("pseudo"-relevant: nobody judged them). With no feedback vectors, return the normalised query.

<details><summary>Hints</summary>

- `feedback_vecs` has shape `(n, dim)`; `n` may be 0.
- PRF helps when the first results are mostly right and hurts when they are not (query drift):
  keep `beta` moderate and the feedback set small.
</details>
"""

TEST41 = """
# Task 4.1 tests
q = np.array([1.0, 0.0, 0.0], dtype=np.float32)
fb = np.array([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]], dtype=np.float32)
out = np.asarray(expand_query(q, fb))
assert out.shape == (3,), out.shape
assert abs(np.linalg.norm(out) - 1) < 1e-5, "the expanded query must be a unit vector"
assert np.allclose(out, np.array([1.0, 0.5, 0.0]) / np.linalg.norm([1.0, 0.5, 0.0]), atol=1e-5), out
### BEGIN HIDDEN TESTS
assert np.allclose(expand_query(q, np.zeros((0, 3), dtype=np.float32)), q, atol=1e-6), "no feedback: the query itself"
assert np.allclose(expand_query(q, fb, beta=0.0), q, atol=1e-6)
two = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=np.float32)
expected = np.array([0.5, 1.0, 1.0]) / np.linalg.norm([0.5, 1.0, 1.0])
assert np.allclose(expand_query(q, two, alpha=0.5, beta=2.0), expected, atol=1e-5), "alpha, beta and the mean"
### END HIDDEN TESTS
"""

# ---------------------------------------------------------------- Task 5.1
T51 = """
## Task 5.1 — The retriever (58 points: 36 quality, 22 performance)

Write `Retriever` with `index(docs)` (each doc a dict `{"id", "title", "text"}`) and
`search(query, k=10) -> list[(doc_id, score)]`, best first, each document at most once. Combine
what you built: chunked dense retrieval, BM25 (the `bm25s` package, with your `tokenize`),
reciprocal-rank fusion, and Rocchio expansion of the dense query (the reference fuses three
rankings: dense, dense after expansion, and BM25).

The grader indexes the whole corpus once, then scores nDCG@10 on hidden queries and p95 latency
under load, both as ratios to the reference. `index` may take a while (embedding is cached);
`search` must be fast: one query, tens of milliseconds.

<details><summary>Hints</summary>

- Embed `title + ". " + chunk` for each chunk and remember which document each chunk came from;
  a document's dense rank is that of its best chunk.
- `bm25s.BM25().index(list_of_token_lists, show_progress=False)`, then `get_scores(tokens)`
  scores every document for one query.
- Fuse deep rankings (e.g. top 100 of each), not just the top k: fusion finds documents that are
  second-best in both lists.
- `labkit.data.evaluate(Retriever(), *load_dev())` prints nDCG@10 on the public dev split.
</details>
"""

A51 = """
class Retriever:
    \"\"\"Hybrid search: dense chunks with Rocchio feedback + BM25 over documents, fused with RRF.\"\"\"

    def __init__(self, max_words: int = 120, overlap: int = 20, depth: int = 100, feedback_docs: int = 3,
                 beta: float = 0.3) -> None:
        ### BEGIN SOLUTION
        self.max_words, self.overlap, self.depth = max_words, overlap, depth
        self.feedback_docs, self.beta = feedback_docs, beta
        ### END SOLUTION

    def index(self, docs: Sequence[dict]) -> None:
        ### BEGIN SOLUTION
        self.doc_ids = [d["id"] for d in docs]
        texts, owners = [], []
        for i, d in enumerate(docs):
            for piece in chunk(d["text"], self.max_words, self.overlap) or [""]:
                texts.append(f"{d['title']}. {piece}")
                owners.append(i)
        self.owner = np.asarray(owners)
        self.vecs = embed(texts, progress=len(texts) > 1000)
        # Exact search is cheap up to a few hundred thousand chunks; beyond, trade recall for speed.
        self.dense = DenseIndex(self.vecs.shape[1], kind="flat" if len(texts) < 200_000 else "hnsw")
        self.dense.add(self.vecs)
        self.bm25 = bm25s.BM25()
        self.bm25.index([tokenize(f"{d['title']} {d['text']}") for d in docs], show_progress=False)
        ### END SOLUTION

    def search(self, query: str, k: int = 10) -> list[tuple[str, float]]:
        ### BEGIN SOLUTION
        n = min(max(k, self.depth), len(self.doc_ids))
        if n == 0:
            return []

        def dense_ranking(vec: np.ndarray) -> tuple[list[int], list[int]]:
            _, rows = self.dense.search(vec[None, :], min(4 * n, len(self.owner)))
            docs, best_rows, seen = [], [], set()
            for row in rows[0]:
                if row >= 0 and self.owner[row] not in seen:
                    seen.add(self.owner[row])
                    docs.append(int(self.owner[row]))
                    best_rows.append(int(row))
            return docs[:n], best_rows[:n]

        q = embed_one(query)
        first, first_rows = dense_ranking(q)
        dense, _ = dense_ranking(expand_query(q, self.vecs[first_rows[: self.feedback_docs]], beta=self.beta))
        rankings = [[self.doc_ids[i] for i in first], [self.doc_ids[i] for i in dense]]
        tokens = tokenize(query)
        if tokens:
            scores = self.bm25.get_scores(tokens)
            top = np.argpartition(-scores, n - 1)[:n]
            top = top[np.argsort(-scores[top])]
            rankings.append([self.doc_ids[i] for i in top if scores[i] > 0])
        return reciprocal_rank_fusion(rankings)[:k]
        ### END SOLUTION
"""

TEST51_QUALITY = """
# Task 5.1 tests: retrieval quality on the tiny help centre
retriever = Retriever()
retriever.index(TEST_DOCS)
hits = retriever.search("how do I send an item back", k=5)
assert isinstance(hits, list) and 0 < len(hits) <= 5, hits
assert all(isinstance(d, str) and isinstance(float(s), float) for d, s in hits), "hits are (doc_id, score) pairs"
assert len({d for d, _ in hits}) == len(hits), "each document at most once"
assert hits[0][0] == "returns-policy", hits
### BEGIN HIDDEN TESTS
# paraphrases sharing no useful word with their article: dense retrieval must carry them
top = [d for d, _ in retriever.search("my earphones stopped charging", k=3)]
assert top[0] == "headphones-warranty", f"paraphrased query missed: {top}"
top = [d for d, _ in retriever.search("I can't log in anymore", k=3)]
assert top[0] == "password-reset", f"paraphrased query missed: {top}"
# an exact product code: lexical matching matters
assert retriever.search("QX-4471X water tank", k=1)[0][0] == "qx-4471x"
assert len(retriever.search("refund", k=3)) == 3, "k hits when the corpus has that many"
# re-indexing replaces the corpus
fresh = Retriever()
fresh.index(TEST_DOCS[:2])
assert {d for d, _ in fresh.search("delivery", k=10)} <= {"returns-policy", "delivery-times"}
### END HIDDEN TESTS
"""

TEST51_PERF = """
# Task 5.1 tests: search is fast enough for interactive use (the SLO is p95 <= 250 ms)
timings = []
for i, question in enumerate(["refund timing", "express delivery cut-off", "lost earbuds warranty", "descale espresso"] * 5):
    start = time.perf_counter()
    retriever.search(question, k=10)
    timings.append(time.perf_counter() - start)
p95_ms = 1000 * sorted(timings[4:])[int(0.95 * (len(timings) - 4)) - 1]
assert p95_ms < 250, f"p95 search latency {p95_ms:.0f} ms on 12 documents"
### BEGIN HIDDEN TESTS
big = [{"id": f"bulk-{i}", "title": f"Article {i}", "text": d["text"]} for i, d in enumerate(TEST_DOCS * 20)]
bulk = Retriever()
bulk.index(big)
start = time.perf_counter()
for question in ["refund timing", "express delivery cut-off", "lost earbuds warranty"] * 3:
    bulk.search(question, k=10)
assert (time.perf_counter() - start) / 9 < 0.25, "search must stay fast on a larger corpus"
### END HIDDEN TESTS
"""

EXPLORE5 = """
# Exploration (tagged ailab-exclude): your retriever on the public dev split. `ailab check` does the same.
from labkit.data import evaluate, load_dev

dev_docs, dev_queries, dev_qrels = load_dev()
print(evaluate(Retriever(), dev_docs, dev_queries, dev_qrels))
"""

# ---------------------------------------------------------------- Task 6.1
T61 = """
## Task 6.1 — Grounded answers with citations (12 points)

Write `answer(query, hits, docs) -> {"text": str, "citations": [doc_id, ...]}`: an extractive
answer built **only** from sentences of the hit documents (`docs` maps id → doc), each sentence
followed by the id of its document in brackets, e.g. `Refunds take 5 days. [returns-policy]`.
`citations` lists the cited ids, each one a hit. With no hits, say you found nothing and cite
nothing.

<details><summary>Hints</summary>

- Split the top few documents into sentences (`re.split(r"(?<=[.!?])\\s+", text)`) and pick the one
  or two closest to the question (embeddings, word overlap, or both).
- Copy sentences verbatim: an answer the grader cannot trace back to a cited document is not grounded.
</details>
"""

A61 = """
def answer(query: str, hits: Sequence[tuple[str, float]], docs: dict[str, dict]) -> dict:
    \"\"\"An extractive answer from the hits' sentences, each followed by its [doc-id].\"\"\"
    ### BEGIN SOLUTION
    candidates = []
    for doc_id, _ in list(hits)[:3]:
        if doc_id in docs:
            for sentence in re.split(r"(?<=[.!?])\\s+", docs[doc_id]["text"].strip()):
                if sentence:
                    candidates.append((doc_id, sentence))
    if not candidates:
        return {"text": "I could not find an answer to that in the knowledge base.", "citations": []}
    scores = embed([s for _, s in candidates]) @ embed_one(query)
    terms = set(tokenize(query))
    scores += 0.2 * np.array([len(terms & set(tokenize(s))) / max(len(terms), 1) for _, s in candidates])
    order = np.argsort(-scores)
    picked = [candidates[i] for i in order[:2] if scores[i] >= 0.8 * scores[order[0]]]
    citations = list(dict.fromkeys(doc_id for doc_id, _ in picked))
    return {"text": " ".join(f"{s} [{doc_id}]" for doc_id, s in picked), "citations": citations}
    ### END SOLUTION
"""

TEST61 = """
# Task 6.1 tests
result = answer("How long does a refund take?", [("returns-policy", 0.9), ("cancel-order", 0.4)], TEST_DOC_MAP)
assert isinstance(result, dict) and isinstance(result.get("text"), str) and result["text"], result
assert isinstance(result.get("citations"), list) and result["citations"], "cite at least one document"
assert set(result["citations"]) <= {"returns-policy", "cancel-order"}, "cite only hits"
assert all(f"[{c}]" in result["text"] for c in result["citations"]), "each citation appears as [doc-id] in the text"
### BEGIN HIDDEN TESTS
assert "5 business days" in result["text"], f"the answer should be the refund sentence: {result['text']}"
sentences = [s.strip() for s in re.split(r"\\[[^\\]]+\\]", result["text"]) if s.strip()]
assert all(any(s in TEST_DOC_MAP[c]["text"] for c in result["citations"]) for s in sentences), "sentences must come from cited docs"
empty = answer("anything", [], TEST_DOC_MAP)
assert empty["citations"] == [] and empty["text"], "no hits: no citations, but say so"
other = answer("Can I still cancel once it is packed?", [("cancel-order", 1.0)], TEST_DOC_MAP)
assert other["citations"] == ["cancel-order"], other
### END HIDDEN TESTS
"""

# ---------------------------------------------------------------- Task 7.1
T71 = """
## Task 7.1 — Written: a trade-off (5 points, graded by hand)

Your retriever now serves a corpus **10× larger** and product asks you to **halve p95 search
latency**. Which knobs do you turn — HNSW `m` / `efSearch` (or exact vs approximate at all), chunk
size and overlap, fusion depth, pseudo-relevance feedback (a second dense search per query) — in
what order, and what does each one cost you in quality, memory or build time? Say how you would
measure that you did not lose too much (which metric, on which data). 150–300 words.
"""

A71 = """
### BEGIN SOLUTION
Measure first: profile one search (embedding the query, dense search, BM25 scoring, fusion) on the
10x corpus, and keep a frozen dev query set to report nDCG@10 and recall@100 before/after each change.

1. **Exact → HNSW.** Flat search is linear in the number of chunks; at 10x it dominates. HNSW
   (m 16–32, efSearch 32–64) is sub-linear; the cost is recall@10 of ~0.95–0.99 instead of 1.0,
   ~m×8 bytes per vector of extra memory and minutes of build time. Pick efSearch from the
   recall/latency curve (the exploration cell), not by guess.
2. **Drop the PRF second pass** or compute feedback from the first result list without a second
   full search: it halves dense search work. It costs the recall PRF bought on vague queries.
3. **Fusion depth** 100 → 30–50: fewer BM25 candidates to sort and fuse; deep fusion mostly helps
   recall@100, barely nDCG@10.
4. **Bigger chunks, less overlap**: fewer vectors (smaller index, faster search) at the price of
   blurrier embeddings for long documents (nDCG falls on specific questions).
5. BM25 stays cheap (sparse), but prune with a top-k selection (argpartition), not a full sort.

I would stop at the first change set that meets p95 at an nDCG@10 loss under ~2 points, measured on
the same machine in the same run as the old configuration.
### END SOLUTION
"""

CELLS: list[dict[str, Any]] = [
    {"kind": "markdown", "id": "intro", "source": INTRO},
    {"kind": "setup", "id": "setup", "source": SETUP},
    {"kind": "setup", "id": "test_data", "source": TEST_DATA},
    {"kind": "markdown", "id": "task_1_1_text", "source": T11},
    {"kind": "answer", "id": "task_1_1_chunk", "source": CODE["task_1_1_chunk"], "task": "1.1", "name": "chunk"},
    {"kind": "test", "id": "test_1_1_chunk", "source": TEST11, "task": "1.1", "points": 6},
    {"kind": "markdown", "id": "task_2_1_text", "source": T21},
    {"kind": "markdown", "id": "task_2_2_text", "source": T22},
    {"kind": "answer", "id": "task_2_dense_index", "source": CODE["task_2_dense_index"], "task": "2.1/2.2", "name": "DenseIndex"},
    {"kind": "test", "id": "test_2_1_flat", "source": TEST21, "task": "2.1", "points": 5},
    {"kind": "test", "id": "test_2_2_hnsw", "source": TEST22, "task": "2.2", "points": 5},
    {"kind": "explore", "id": "explore_2_2_ef_search", "source": EXPLORE2},
    {"kind": "markdown", "id": "task_3_1_text", "source": T31},
    {"kind": "answer", "id": "task_3_1_tokenize", "source": A31, "task": "3.1", "name": "tokenize"},
    {"kind": "test", "id": "test_3_1_tokenize", "source": TEST31, "task": "3.1", "points": 4},
    {"kind": "markdown", "id": "task_3_2_text", "source": T32},
    {"kind": "answer", "id": "task_3_2_rrf", "source": CODE["task_3_2_rrf"], "task": "3.2", "name": "reciprocal_rank_fusion"},
    {"kind": "test", "id": "test_3_2_rrf", "source": TEST32, "task": "3.2", "points": 4},
    {"kind": "markdown", "id": "task_4_1_text", "source": T41},
    {"kind": "answer", "id": "task_4_1_expand_query", "source": CODE["task_4_1_expand_query"], "task": "4.1", "name": "expand_query"},
    {"kind": "test", "id": "test_4_1_expand_query", "source": TEST41, "task": "4.1", "points": 6},
    {"kind": "markdown", "id": "task_5_1_text", "source": T51},
    {"kind": "answer", "id": "task_5_1_retriever", "source": A51, "task": "5.1", "name": "Retriever"},
    {"kind": "test", "id": "test_5_1_quality", "source": TEST51_QUALITY, "task": "5.1", "points": 36},
    {"kind": "test", "id": "test_5_1_performance", "source": TEST51_PERF, "task": "5.1", "points": 22},
    {"kind": "explore", "id": "explore_5_1_dev_eval", "source": EXPLORE5},
    {"kind": "markdown", "id": "task_6_1_text", "source": T61},
    {"kind": "answer", "id": "task_6_1_answer", "source": A61, "task": "6.1", "name": "answer"},
    {"kind": "test", "id": "test_6_1_answer", "source": TEST61, "task": "6.1", "points": 12},
    {"kind": "markdown", "id": "task_7_1_text", "source": T71},
    {"kind": "written", "id": "task_7_1_written", "source": A71, "task": "7.1", "points": 5},
]
