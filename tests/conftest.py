"""Test-session setting: the fixtures under tests/fixtures stand in for the reference (many build on it), so
submissions byte-identical to one of them may use it (graders.engine.sandbox_user.VOUCHED_ENV). A real grade
never sets this. tests/fixtures/gaming/isolation/ holds submissions that reach for the reference and must be
refused, so it is left out (and tests/test_gaming_isolation.py grades with the setting removed)."""
from __future__ import annotations

import os
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"
HOSTILE = FIXTURES / "gaming" / "isolation"

_folders = [p for p in FIXTURES.iterdir() if p.is_dir() and p != HOSTILE.parent]
_folders += [p for p in HOSTILE.parent.iterdir() if p.is_dir() and p != HOSTILE] if HOSTILE.parent.is_dir() else []
os.environ.setdefault("AILAB_TRUSTED_FIXTURES", os.pathsep.join(str(p) for p in sorted(_folders)))
