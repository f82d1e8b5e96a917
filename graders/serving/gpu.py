"""What a load run cost on the GPU, measured: GPU-seconds held, energy, utilisation, memory (NVML).

    with GpuMeter() as meter:            # samples NVML in a thread every `interval_s`
        results = asyncio.run(drive(...))
    figures = meter.figures(output_tokens, usd_per_hour, usd_per_kwh)

The GPU is held for the whole run whether it computes or waits, so cost is priced on the wall seconds
of the run (GPU-seconds x price per GPU-hour), not on a throughput table: a server that keeps the GPU
idle pays for it. Energy is the board's own counter (nvmlDeviceGetTotalEnergyConsumption, mJ since the
driver loaded) read before and after; utilisation is NVML's share of time a kernel was running, sampled.
Without NVML (no nvidia-ml-py, no driver) `figures()` is empty and the grader reports none of this.
"""
from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import Any


def _nvml() -> Any | None:
    try:
        import pynvml  # nvidia-ml-py
        pynvml.nvmlInit()
        return pynvml
    except Exception:  # noqa: BLE001 - no package, no driver, no GPU: all mean "not measured"
        return None


class GpuMeter:
    """Samples GPU 0 (the one torch uses as cuda:0) during a `with` block."""

    def __init__(self, interval_s: float = 0.05, index: int = 0) -> None:
        self.interval_s = interval_s
        self.nvml = _nvml()
        self.handle = self.nvml.nvmlDeviceGetHandleByIndex(index) if self.nvml else None
        self.util: list[float] = []
        self.power_w: list[float] = []
        self.memory_mb = 0.0
        self.seconds = 0.0
        self.energy_j: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0
        self._e0: int | None = None

    def __enter__(self) -> GpuMeter:
        self._t0 = time.perf_counter()
        if self.handle is not None:
            self._e0 = self._energy_mj()
            self._thread = threading.Thread(target=self._sample, name="gpu-meter", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.seconds = time.perf_counter() - self._t0
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        e1 = self._energy_mj() if self.handle is not None else None
        if e1 is not None and self._e0 is not None:
            self.energy_j = (e1 - self._e0) / 1e3
        elif self.power_w:  # no energy counter on this board: integrate the sampled power
            self.energy_j = sum(self.power_w) / len(self.power_w) * self.seconds

    def _energy_mj(self) -> int | None:
        try:
            return int(self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))  # type: ignore[union-attr]
        except Exception:  # noqa: BLE001 - pre-Volta boards have no counter
            return None

    def _sample(self) -> None:
        nvml = self.nvml
        assert nvml is not None
        while not self._stop.wait(self.interval_s):
            try:
                self.util.append(float(nvml.nvmlDeviceGetUtilizationRates(self.handle).gpu))
                self.power_w.append(nvml.nvmlDeviceGetPowerUsage(self.handle) / 1e3)
                self.memory_mb = max(self.memory_mb, nvml.nvmlDeviceGetMemoryInfo(self.handle).used / 2**20)
            except Exception:  # noqa: BLE001 - one failed read is one sample fewer
                continue

    def figures(self, output_tokens: int, usd_per_hour: float, usd_per_kwh: float) -> dict[str, float]:
        """Measured cost of the run: GPU-seconds, energy, utilisation, and both per million output tokens."""
        if self.handle is None:
            return {}
        out: dict[str, float] = {"gpu_seconds": self.seconds,
                                 "gpu_util_mean": sum(self.util) / len(self.util) if self.util else 0.0,
                                 "gpu_power_w_mean": sum(self.power_w) / len(self.power_w) if self.power_w else 0.0,
                                 "gpu_memory_mb_max": self.memory_mb}
        if output_tokens > 0:
            out["gpu_cost_per_1m_output_tokens_usd"] = usd_per_hour * self.seconds / 3600 / output_tokens * 1e6
        if self.energy_j is not None:
            out["energy_j"] = self.energy_j
            if output_tokens > 0:
                out["joules_per_output_token"] = self.energy_j / output_tokens
                out["energy_cost_per_1m_output_tokens_usd"] = self.energy_j / 3.6e6 * usd_per_kwh / output_tokens * 1e6
        return out
