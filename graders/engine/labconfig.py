"""Typed view of a lab's `lab.toml`: parts and weights, SLOs, limits and load profiles."""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
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
    workers: int = 0  # Locust worker processes beside a master (distributed mode); 0: one local runner


@dataclass(frozen=True)
class LoadProfile:
    """An open-loop load profile (the serving lab): Poisson arrivals at each rate."""
    name: str
    rates: list[float]
    duration_s: float
    warmup_s: float
    prompt_tokens: list[int]
    output_tokens: list[int]
    client_timeout_s: float
    seed: int | None = None  # None: a fresh seed per grading run (graders.serving.client.choose_seed)
    device: str = "cpu"      # "cuda": the servers' engines and the grader's expected outputs run on the GPU
    model: str = "tiny-gpt2"  # a name in reference_systems.serving.model.MODELS
    dtype: str | None = None  # the engine's dtype; None: float32
    max_batch: int | None = None    # [server] max_batch / max_waiting for this profile
    max_waiting: int | None = None
    floor: bool = False      # also load the naive server once per batch and plot it beside candidate and reference


@dataclass(frozen=True)
class ScenarioProfile:
    """A fault-injection scenario (the observability lab): warm-up, then each fault once per round."""
    name: str
    rate: float
    users: int
    overhead_s: float
    warmup_s: float
    fault_s: float
    gap_s: float
    rounds: int
    grace_s: float
    seed: int


@dataclass(frozen=True)
class Limits:
    worker_start_s: float
    index_s: float = 600.0
    call_s: float = 30.0
    memory_mb: int = 6144
    check_s: float = 10.0  # the serving lab: any single request of a functional check
    cpu_s: float = 900.0  # CPU-seconds of one submission's process (RLIMIT_CPU); wall limits above come first


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
    load_profiles: dict[str, LoadProfile] = field(default_factory=dict)  # tables with `rates`
    scenarios: dict[str, ScenarioProfile] = field(default_factory=dict)  # tables with `fault_s`
    task_profiles: dict[str, dict[str, Any]] = field(default_factory=dict)  # tables with `n_tasks` (the agents lab)

    def profile(self, name: str) -> Profile:
        if name not in self.profiles:
            raise SystemExit(f"lab {self.name!r} has no profile {name!r}; choose one of {sorted(self.profiles)}")
        return self.profiles[name]

    def scenario(self, name: str) -> ScenarioProfile:
        if name not in self.scenarios:
            raise SystemExit(f"lab {self.name!r} has no profile {name!r}; choose one of {sorted(self.scenarios)}")
        return self.scenarios[name]

    def load_profile(self, name: str) -> LoadProfile:
        if name not in self.load_profiles:
            raise SystemExit(f"lab {self.name!r} has no profile {name!r}; choose one of {sorted(self.load_profiles)}")
        return self.load_profiles[name]


def load_lab(lab: str | Path, overlay: dict[str, Any] | None = None) -> LabConfig:
    """A lab by name (`labs/<lab>/lab.toml`) or the path of a lab.toml; ValueError says what is wrong.
    `overlay` (an interviewer's private lab.toml, graders.engine.hidden) is merged over it table by table."""
    path = Path(lab) if str(lab).endswith(".toml") else lab_dir(str(lab)) / "lab.toml"
    folder = path.parent
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML ({exc})") from None
    if overlay:
        from graders.engine.hidden import merge

        raw = merge(raw, overlay)
    where = f"{path} (with the --hidden lab.toml merged over it)" if overlay else str(path)
    for table in ("lab", "parts", "limits"):
        if table not in raw:
            raise ValueError(f"{where}: missing the [{table}] table")
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
        raise ValueError(f"{where}: auto-graded part weights add up to {total:g}, not 100")
    for part in parts.values():
        bounds = (part.full_at_ratio, part.zero_at_ratio)
        if bounds != (None, None) and (None in bounds or bounds[0] == bounds[1]):
            raise ValueError(f"{where}: part {part.name!r} needs both full_at_ratio and zero_at_ratio, and they must differ")
    tables = raw.get("profiles", {})
    try:
        profiles = {name: Profile(name=name, **p) for name, p in tables.items()
                    if "rates" not in p and "fault_s" not in p and "n_tasks" not in p}
        load_profiles = {name: LoadProfile(name=name, **p) for name, p in tables.items() if "rates" in p}
        scenarios = {name: ScenarioProfile(name=name, **p) for name, p in tables.items() if "fault_s" in p}
        limits = Limits(**raw["limits"])
    except TypeError as exc:  # a misspelt or missing setting
        raise ValueError(f"{where}: a [profiles.*] or [limits] table does not fit the lab ({exc})") from None
    return LabConfig(
        name=raw["lab"]["name"],
        title=raw["lab"]["title"],
        folder=folder,
        notebook=folder / raw["lab"]["notebook"],
        dataset=raw["lab"].get("dataset", ""),
        reference=raw["lab"]["reference"],
        parts=parts,
        slo={k: float(v) for k, v in raw.get("slo", {}).items()},
        limits=limits,
        profiles=profiles,
        raw=raw,
        load_profiles=load_profiles,
        scenarios=scenarios,
        task_profiles={name: dict(p) for name, p in tables.items() if "n_tasks" in p},
    )
