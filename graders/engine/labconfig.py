"""Typed view of a lab's `lab.toml`: parts and weights, SLOs, limits and load profiles."""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graders.paths import lab_dir


@dataclass(frozen=True)
class Part:
    name: str
    weight: float
    task: str
    manual: bool = False
    manual_points: float = 0.0
    full_at_ratio: float | None = None
    zero_at_ratio: float | None = None


@dataclass(frozen=True)
class Profile:
    name: str
    load_seconds: float
    rounds: int
    users: int
    spawn_rate: float
    k: int
    max_quality_queries: int


@dataclass(frozen=True)
class Limits:
    worker_start_s: float
    index_s: float
    call_s: float
    memory_mb: int


@dataclass(frozen=True)
class LabConfig:
    name: str
    title: str
    folder: Path
    notebook: Path
    dataset: str
    reference: str
    parts: dict[str, Part]
    slo: dict[str, float]
    limits: Limits
    profiles: dict[str, Profile]
    raw: dict[str, Any]

    def profile(self, name: str) -> Profile:
        if name not in self.profiles:
            raise SystemExit(f"lab {self.name!r} has no profile {name!r}; choose one of {sorted(self.profiles)}")
        return self.profiles[name]


def load_lab(lab: str) -> LabConfig:
    folder = lab_dir(lab)
    raw = tomllib.loads((folder / "lab.toml").read_text())
    parts = {
        name: Part(
            name=name,
            weight=float(p["weight"]),
            task=str(p.get("task", "")),
            manual=bool(p.get("manual", False)),
            manual_points=float(p.get("manual_points", 0)),
            full_at_ratio=p.get("full_at_ratio"),
            zero_at_ratio=p.get("zero_at_ratio"),
        )
        for name, p in raw["parts"].items()
    }
    total = sum(p.weight for p in parts.values() if not p.manual)
    if abs(total - 100) > 1e-6:
        raise ValueError(f"{folder / 'lab.toml'}: auto-graded part weights add up to {total}, not 100")
    profiles = {name: Profile(name=name, **p) for name, p in raw.get("profiles", {}).items()}
    return LabConfig(
        name=raw["lab"]["name"],
        title=raw["lab"]["title"],
        folder=folder,
        notebook=folder / raw["lab"]["notebook"],
        dataset=raw["lab"].get("dataset", ""),
        reference=raw["lab"]["reference"],
        parts=parts,
        slo={k: float(v) for k, v in raw.get("slo", {}).items()},
        limits=Limits(**raw["limits"]),
        profiles=profiles,
        raw=raw,
    )
