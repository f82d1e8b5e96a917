"""The reference observability submission: `create_handler` and `create_detectors` per graders/observability/interface.py.

The grader loads this module exactly as it loads a candidate's notebook module, so the reference is
hosted, scraped, faulted and scored by the same code.
"""
from __future__ import annotations

from reference_systems.observability.detectors import create_detectors
from reference_systems.observability.instrumentation import create_handler

__all__ = ["create_detectors", "create_handler"]
