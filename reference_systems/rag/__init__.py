"""The reference RAG system: the lab's contract implemented with literature-default methods (see README.md)."""
