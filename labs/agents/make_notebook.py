"""Builds the agents lab's nbgrader source notebook and its example submissions, deterministically.

    python labs/agents/make_notebook.py              # writes source/agents/agents.ipynb and examples/*.ipynb
    python labs/agents/make_notebook.py --examples   # only examples/*.ipynb
    python labs/agents/make_notebook.py --check      # exits 1 if a committed notebook differs from a fresh build

The text lives in `notebook_cells.py` (cells, solutions, tests, hints) and the example
submissions' code in `example_cells.py`, both beside this file; `graders.engine.nbbuild`
assembles them with nbgrader metadata.
"""
from __future__ import annotations

import sys
from pathlib import Path

from graders.engine.nbbuild import Builder

BUILDER = Builder("agents", Path(__file__).resolve().parent)
outputs = BUILDER.outputs

if __name__ == "__main__":
    sys.exit(BUILDER.main(doc=__doc__))
