"""Split documents into overlapping word windows, each prefixed with its document's title.

MiniLM reads at most 256 word pieces (~180 words), so long documents are embedded window by
window and a document's dense score is its best window's score (max-pooling in retriever.py).
"""
from __future__ import annotations

from collections.abc import Mapping


# @cell task_1_1_chunk
def chunk(text: str, max_words: int = 120, overlap: int = 20) -> list[str]:
    """Windows of at most `max_words` words; consecutive windows share exactly `overlap` words.

    Every word lands in some window; the last window ends at the last word (it may be shorter).
    Empty or whitespace-only text gives [].
    """
    ### BEGIN SOLUTION
    if max_words < 1:
        raise ValueError(f"max_words must be >= 1, got {max_words}")
    if not 0 <= overlap < max_words:
        raise ValueError(f"overlap must be in [0, max_words); got overlap={overlap}, max_words={max_words}")
    words = text.split()
    if not words:
        return []
    step = max_words - overlap
    windows = []
    for start in range(0, len(words), step):
        windows.append(" ".join(words[start : start + max_words]))
        if start + max_words >= len(words):
            break
    return windows
    ### END SOLUTION
# @end


def chunk_doc(doc: Mapping[str, str], max_words: int = 120, overlap: int = 20) -> list[str]:
    """The doc's windows, each as "title\\nwindow"; a doc with only a title gives one chunk."""
    title = (doc.get("title") or "").strip()
    pieces = chunk(doc.get("text") or "", max_words, overlap) or [""]
    return [f"{title}\n{p}".strip() for p in pieces]
