"""Grade an observability submission several times: wall time, score spread, and time to detect per fault.

    .venv/bin/python benchmarks/observability.py [--runs 2] [--profile quick] [--submission reference]

The lab promises: the reference scores >= 95, graded twice within 1 point, and the quick profile
grades in <= 3 minutes on 2 cores. This prints one row per run (with the precision the same pages
score by chance, the credit factor recall, root cause and time to detect kept, and the share of the
run inside fault windows), then each fault's time to detect and the component the first page blamed,
per run, so a reader can see which faults are slow or fragile. Every run draws its own schedule.
Warm the caches first (any earlier grade, or `make test`).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from graders.observability.grade import grade


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--submission", default="reference")
    args = parser.parse_args()
    rows, faults = [], {}
    for run in range(args.runs):
        out = Path(tempfile.mkdtemp(prefix="ailab-bench-obs-"))
        started = time.perf_counter()
        card = grade(args.submission, out, profile=args.profile)[0]
        m = card.metrics
        chance = card.extras.get("chance", {})
        rows.append((run + 1, time.perf_counter() - started, card.score, m.get("detection_recall", 0.0),
                     m.get("detection_precision", 0.0), m.get("root_cause_accuracy", 0.0),
                     m.get("mean_time_to_detect_s", float("nan")), m.get("telemetry_conformance", 0.0),
                     m.get("instrumentation_overhead_ratio", float("nan")), chance.get("precision", float("nan")),
                     chance.get("credit", float("nan")), chance.get("window_share", float("nan"))))
        for r in card.extras.get("per_fault", []):
            faults.setdefault(r["fault"], []).append(r)
    print(f"\ngrading {args.submission}, profile {args.profile}, {os.cpu_count()} cores")
    print(f"{'run':>3} {'wall_s':>7} {'score':>6} {'recall':>7} {'precis':>7} {'rootc':>6} {'mttd_s':>7} "
          f"{'conform':>8} {'overhead':>9} {'chance':>7} {'credit':>7} {'windows':>8}")
    for r in rows:
        print(f"{r[0]:>3} {r[1]:>7.1f} {r[2]:>6.1f} {r[3]:>7.2f} {r[4]:>7.2f} {r[5]:>6.2f} {r[6]:>7.1f} {r[7]:>8.2f} "
              f"{r[8]:>9.3f} {r[9]:>7.2f} {r[10]:>7.2f} {r[11]:>8.2f}")
    print(f"\n{'fault':<18} {'component':<10} " + " ".join(f"{'run ' + str(i + 1):>16}" for i in range(args.runs)))
    for name, per_run in faults.items():
        cells = [f"{r['time_to_detect_s']:.1f}s {r['blamed'] or '-':<9}" if r["detected"] else f"{'missed':>16}"
                 for r in per_run]
        print(f"{name:<18} {per_run[0]['component']:<10} " + " ".join(f"{c:>16}" for c in cells))
    scores = [r[2] for r in rows]
    print(f"\nscore spread (max - min): {max(scores) - min(scores):.1f} points; "
          f"median wall time {sorted(r[1] for r in rows)[len(rows) // 2]:.1f} s")


if __name__ == "__main__":
    main()
