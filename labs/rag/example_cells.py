'''Answer-cell code of the example submissions (read by make_notebook.py), keyed by nbgrader grade_id.

- naive: everything runs, simple choices: BM25-only retriever (no dense, no fusion, no PRF),
  a first-sentence answer, a chunker that emits a redundant tail window, a tokenizer with a
  three-word stop list, Rocchio that breaks on empty feedback, HNSW left on the L2 metric.
- broken: `chunk` returns lists of words, `Retriever.index` raises KeyError, the rest unfinished.
- syntax_error: the naive submission with a SyntaxError in the tokenize cell.

"_default": "solution" fills every answer cell not listed with the reference solution (a candidate
who got that task right); otherwise unlisted cells keep the release stub (unfinished).
'''
from __future__ import annotations

NAIVE_CHUNK = """
def chunk(text: str, max_words: int = 120, overlap: int = 20) -> list[str]:
    words = text.split()
    return [" ".join(words[i : i + max_words]) for i in range(0, len(words), max_words - overlap)]
"""

NAIVE_DENSE = """
class DenseIndex:
    def __init__(self, dim: int, kind: str = "flat", m: int = 32, ef_search: int = 64) -> None:
        if kind == "hnsw":
            self.index = faiss.IndexHNSWFlat(dim, m)
            self.index.hnsw.efSearch = ef_search
        else:
            self.index = faiss.IndexFlatIP(dim)

    def add(self, vectors: np.ndarray) -> None:
        self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
"""

NAIVE_TOKENIZE = """
STOP_WORDS = {"the", "a", "an"}


def tokenize(text: str) -> list[str]:
    return [t for t in re.findall(r"[a-z0-9]+", text.lower()) if t not in STOP_WORDS]
"""

NAIVE_EXPAND = """
def expand_query(query_vec: np.ndarray, feedback_vecs: np.ndarray, alpha: float = 1.0, beta: float = 0.5) -> np.ndarray:
    q = alpha * query_vec + beta * np.mean(feedback_vecs, axis=0)
    return q / np.linalg.norm(q)
"""

NAIVE_RETRIEVER = """
class Retriever:
    \"\"\"BM25 over whole documents: simple and fast.\"\"\"

    def index(self, docs) -> None:
        self.ids = [d["id"] for d in docs]
        self.bm25 = bm25s.BM25()
        self.bm25.index([tokenize(d["title"] + " " + d["text"]) for d in docs], show_progress=False)

    def search(self, query: str, k: int = 10) -> list[tuple[str, float]]:
        scores = self.bm25.get_scores(tokenize(query))
        top = np.argsort(-scores)[:k]
        return [(self.ids[i], float(scores[i])) for i in top]
"""

NAIVE_ANSWER = """
def answer(query: str, hits, docs: dict) -> dict:
    doc_id = hits[0][0]
    first = docs[doc_id]["text"].split(". ")[0].rstrip(".") + "."
    return {"text": f"{first} [{doc_id}]", "citations": [doc_id]}
"""

NAIVE_WRITTEN = """
I would switch the dense index to HNSW and lower efSearch until latency is halved; recall drops a bit.
"""

BROKEN_CHUNK = """
def chunk(text: str, max_words: int = 120, overlap: int = 20) -> list[str]:
    words = text.split()
    return [words[i : i + max_words] for i in range(0, len(words), max_words)]
"""

BROKEN_RETRIEVER = """
class Retriever:
    def index(self, docs) -> None:
        self.ids = [d["id"] for d in docs]
        self.vecs = embed([d["body"] for d in docs])

    def search(self, query: str, k: int = 10) -> list[tuple[str, float]]:
        scores = self.vecs @ embed_one(query)
        return [(self.ids[i], float(scores[i])) for i in np.argsort(-scores)[:k]]
"""

SYNTAX_ERROR_TOKENIZE = """
STOP_WORDS = {"the", "a", "an"}


def tokenize(text: str) -> list[str]:
    return [t for t in re.findall(r"[a-z0-9]+", text.lower()) if t not in STOP_WORDS
"""

NAIVE = {
    "_default": "solution",
    "task_1_1_chunk": NAIVE_CHUNK,
    "task_2_dense_index": NAIVE_DENSE,
    "task_3_1_tokenize": NAIVE_TOKENIZE,
    "task_4_1_expand_query": NAIVE_EXPAND,
    "task_5_1_retriever": NAIVE_RETRIEVER,
    "task_6_1_answer": NAIVE_ANSWER,
    "task_7_1_written": NAIVE_WRITTEN,
}

EXAMPLES: dict[str, dict[str, str]] = {
    "naive": NAIVE,
    "broken": {"task_1_1_chunk": BROKEN_CHUNK, "task_5_1_retriever": BROKEN_RETRIEVER},
    "syntax_error": {**NAIVE, "task_3_1_tokenize": SYNTAX_ERROR_TOKENIZE},
}
