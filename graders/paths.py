"""Where things live: the repository's labs and the on-disk cache shared by graders, labs and tests."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
LABS_DIR = REPO_ROOT / "labs"
SHARED_DATASETS = REPO_ROOT.parent / "shared" / "datasets"


def cache_dir() -> Path:
    """The cache for expensive artefacts (embeddings, built models); `AILAB_CACHE` overrides it."""
    path = Path(os.environ.get("AILAB_CACHE", REPO_ROOT / ".cache" / "ailab"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def lab_dir(lab: str) -> Path:
    path = LABS_DIR / lab
    if not (path / "lab.toml").exists():
        known = sorted(p.name for p in LABS_DIR.iterdir() if (p / "lab.toml").exists())
        raise SystemExit(f"unknown lab {lab!r}; labs available: {', '.join(known)}")
    return path
