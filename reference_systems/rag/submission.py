"""The reference RAG system seen through the lab's contract (`graders.rag.interface`).

The grader loads this module exactly as it loads a candidate's notebook module: only the
names below are used, and `Retriever()` must build with no arguments.
"""
from __future__ import annotations

from labkit.text import tokenize
from reference_systems.rag.answer import answer
from reference_systems.rag.chunking import chunk
from reference_systems.rag.dense import DenseIndex
from reference_systems.rag.expansion import expand_query
from reference_systems.rag.fusion import reciprocal_rank_fusion
from reference_systems.rag.retriever import Retriever

__all__ = ["DenseIndex", "Retriever", "answer", "chunk", "expand_query", "reciprocal_rank_fusion", "tokenize"]
