"""`make test` in two lanes: the timing tests on a core of their own, everything else beside them.

The tests marked `timing` compare speed with the reference, so nothing else may run where they measure; run after
the rest, as plain `pytest` does (tests/conftest.py), they took ~17 of 31-33 minutes on two cores while leaving one
core mostly idle (one server and one load generator at a time), and the rest keeps both cores busy. So here two
pytest processes run at once:

- lane `main` (`-m "not timing"`) starts on every core, with the side jobs (tests/_side_jobs.py);
- lane `timing` (`-m timing`) collects, then waits until the main lane's side jobs reach TIMING_STARTS_WITH
  (tests/conftest.py): then it pins itself to the last core and every process of the main lane, and so whatever
  they start from then on, to the others (tests/conftest.py `_take_a_core`).

The main lane's output streams as it runs; the timing lane's follows when both are done. Either failing fails the
run. With fewer than two cores, or AILAB_LANES=1, this is plain pytest.

    python -m tests._lanes [pytest arguments]
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NO_TESTS = 5  # pytest's exit status when nothing was collected


def _combined(main: int, timing: int) -> int:
    """One lane with nothing to run (a -k that selects only the other's tests) is not a failure."""
    if main == NO_TESTS and timing == NO_TESTS:
        return NO_TESTS
    return max(s for s in (main, timing) if s != NO_TESTS) if NO_TESTS in (main, timing) else max(main, timing)


def main(argv: list[str]) -> int:
    pytest = [sys.executable, "-m", "pytest"]
    if len(os.sched_getaffinity(0)) < 2 or os.environ.get("AILAB_LANES") == "1":
        return subprocess.call([*pytest, *argv])
    folder = Path(tempfile.mkdtemp(prefix="ailab-lanes-"))
    env = {**os.environ, "AILAB_LANE_DIR": str(folder)}
    started = time.monotonic()
    lanes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        lanes["main"] = subprocess.Popen([*pytest, "-m", "not timing", *argv], env={**env, "AILAB_LANE": "main"})
        with open(folder / "timing.log", "wb") as log:
            lanes["timing"] = subprocess.Popen([*pytest, "-m", "timing", *argv], stdout=log, stderr=subprocess.STDOUT,
                                               env={**env, "AILAB_LANE": "timing",
                                                    "AILAB_LANE_PEER": str(lanes["main"].pid)})
        status = {"main": lanes["main"].wait()}
        ended = {"main": time.monotonic() - started}
        (folder / "go").touch()  # the main lane ended before its signal (a selection without side jobs)
        status["timing"] = lanes["timing"].wait()
        ended["timing"] = time.monotonic() - started
    finally:
        for proc in lanes.values():
            if proc.poll() is None:
                proc.terminate()
                proc.wait()
    print(f"\n{' timing lane (-m timing, a core of its own) ':=^120}", flush=True)
    sys.stdout.buffer.write((folder / "timing.log").read_bytes())
    began = (folder / "go").read_text().strip() or "?"
    print(f"\n[lanes] main lane: status {status['main']}, ended at {ended['main']:.0f} s; timing lane: status "
          f"{status['timing']}, measured from {began} s, ended at {ended['timing']:.0f} s", flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    return _combined(status["main"], status["timing"])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
