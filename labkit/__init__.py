"""Helpers a candidate's notebook may import: cached embeddings, tokenisation, the public dev data."""
