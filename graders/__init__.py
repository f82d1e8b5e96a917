"""Grading engine and the `ailab` CLI: notebook -> candidate module -> harness -> metrics -> scorecard -> reports."""
