"""The scorecard: one JSON document per graded submission (schema 2), and how it is written.

Schema 2 added `integrity`: similarity of the solution code to the reference and to the batch's other
submissions, the read-only cells found edited or deleted, and `reference_access`: what the sandbox's guard
refused the submission (importing or reading the reference implementation; non-empty means every part was
zeroed), see graders.engine.integrity and graders.engine.guard."""
from __future__ import annotations

import json
import platform
import re
import sys
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

SCHEMA = 2
KEYS = ("schema", "lab", "submission", "score", "parts", "metrics", "reference", "environment", "errors",
        "integrity", "duration_s")
RAG_METRICS = ("ndcg@10", "recall@100", "mrr@10", "latency_p50_ms", "latency_p95_ms", "throughput_qps",
               "index_build_s", "index_bytes")


@dataclass
class PartResult:
    name: str
    points: float
    max_points: float
    detail: str


@dataclass
class Scorecard:
    lab: str
    submission: str
    score: float = 0.0
    parts: list[PartResult] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    reference: dict[str, Any] = field(default_factory=lambda: {"metrics": {}})
    environment: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    integrity: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0
    by_rate: dict[str, Any] = field(default_factory=dict)  # serving: system -> offered rate -> metrics (in the JSON)
    extras: dict[str, Any] = field(default_factory=dict)  # plot data for the report; not in the JSON

    @property
    def slug(self) -> str:
        return slugify(self.submission)

    def add(self, name: str, fraction: float, max_points: float, detail: str) -> None:
        fraction = min(1.0, max(0.0, fraction))
        self.parts.append(PartResult(name, round(fraction * max_points, 2), max_points, detail))

    def total(self) -> float:
        self.score = round(sum(p.points for p in self.parts), 1)
        return self.score

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "lab": self.lab,
            "submission": self.submission,
            "score": self.score,
            "parts": [asdict(p) for p in self.parts],
            "metrics": self.metrics,
            "reference": self.reference,
            "environment": self.environment,
            "errors": self.errors,
            "integrity": self.integrity,
            "duration_s": round(self.duration_s, 2),
            **({"by_rate": self.by_rate} if self.by_rate else {}),
        }

    def write(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "scorecard.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2, allow_nan=False, default=_finite))
        tmp.replace(path)  # atomic: a crash never leaves half a scorecard behind
        return path


def _finite(value: Any) -> Any:
    raise TypeError(f"not JSON: {value!r}")


def slugify(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "submission"


def clean_metrics(metrics: dict[str, float], names: tuple[str, ...] | None = None) -> dict[str, float]:
    """The named metrics (all when None), in that order. JSON has no NaN: unmeasured metrics are
    left out rather than written as NaN."""
    names = names or tuple(metrics)
    return {k: round(float(metrics[k]), 6) for k in names
            if k in metrics and metrics[k] == metrics[k] and abs(metrics[k]) != float("inf")}


def environment(**extra: Any) -> dict[str, Any]:
    import os

    versions = {}
    for package in ("faiss-cpu", "torch", "locust", "tokenizers", "bm25s", "ir-measures", "nbgrader"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "versions": versions,
        **extra,
    }
