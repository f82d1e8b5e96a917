"""Where the suite's CPU goes: CPU seconds per test module and per side job, and how busy the machine was in each
phase. tests/conftest.py prints it at the end of a session.

A module's CPU is this process's plus its waited-for children's (servers, kernels, graders it started), from
resource.getrusage; a side job's own CPU (tests/_side_jobs.py) is taken out of the module during which the job was
reaped and shown on its own line. The machine's figure is /proc/stat's busy time: whatever else ran counts too.
"""
from __future__ import annotations

import os
import resource
import time
from pathlib import Path


def usable_cores() -> int:
    """How many cores this process may run on (its affinity, where the platform has one): torch's default threads."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def process_cpu() -> float:
    """CPU seconds of this process and of every child it has waited for."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def machine_busy() -> float | None:
    """Core-seconds the machine has been busy since it booted (/proc/stat), or None where there is no /proc/stat."""
    try:
        ticks = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


class Ledger:
    """CPU per module (side jobs' CPU taken out) and the machine's busy cores between named marks."""

    def __init__(self) -> None:
        self.modules: dict[str, tuple[float, float]] = {}  # module -> (wall s, CPU s)
        self.marks: list[tuple[str, float, float | None]] = []  # (name, monotonic s, machine busy core-s)
        self._open: tuple[str, float, float, float] | None = None
        self.mark("the other tests")

    def mark(self, name: str) -> None:
        self.marks.append((name, time.monotonic(), machine_busy()))

    def module_started(self, module: str, side_jobs_cpu: float) -> None:
        self._open = (module, time.monotonic(), process_cpu(), side_jobs_cpu)

    def module_ended(self, side_jobs_cpu: float) -> None:
        if self._open is None:
            return
        module, wall, cpu, reaped = self._open
        self.modules[module] = (time.monotonic() - wall, process_cpu() - cpu - (side_jobs_cpu - reaped))
        self._open = None

    def summary(self, side_jobs: dict[str, float], top: int = 15) -> list[str]:
        lines = []
        for (name, t0, busy0), (_, t1, busy1) in zip(self.marks, self.marks[1:]):
            if busy0 is not None and busy1 is not None and t1 > t0:
                lines.append(f"{name}: {t1 - t0:.0f} s, the machine busy {(busy1 - busy0) / (t1 - t0):.2f} of "
                             f"{os.cpu_count()} cores ({busy1 - busy0:.0f} core-s)")
        if side_jobs:
            lines.append("side jobs, CPU s: " + ", ".join(f"{n} {s:.0f}" for n, s in side_jobs.items()))
        ranked = sorted(self.modules.items(), key=lambda item: -item[1][1])[:top]
        lines += [f"{cpu:8.0f} CPU s {wall:7.0f} s  {module}" for module, (wall, cpu) in ranked]
        return lines
