"""How long `ailab grade rag reference --profile quick` takes, and how much its score moves between runs.

    .venv/bin/python benchmarks/grading_time.py [--runs 3] [--dataset support-kb] [--profile quick]

Run it once first (or after `make test`) so the embedding cache is warm: the figure the docs
quote is warm-cache grading time on 2 cores. Prints one row per run and the score spread.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from graders.rag.grade import grade


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dataset", default="support-kb")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--submission", default="reference")
    args = parser.parse_args()
    rows = []
    for run in range(args.runs):
        out = Path(tempfile.mkdtemp(prefix="ailab-bench-"))
        started = time.perf_counter()
        card = grade(args.submission, out, dataset=args.dataset, profile=args.profile)[0]
        perf = next((p.points for p in card.parts if p.name == "performance"), 0.0)
        rows.append((run + 1, time.perf_counter() - started, card.score, card.metrics.get("latency_p95_ms", 0.0),
                     card.reference["metrics"].get("latency_p95_ms", 0.0), perf))
    print(f"\ngrading {args.submission} on {args.dataset}, profile {args.profile}, {os.cpu_count()} cores")
    print(f"{'run':>3} {'wall_s':>8} {'score':>7} {'cand_p95_ms':>12} {'ref_p95_ms':>11} {'p95_ratio':>9} "
          f"{'performance':>11}")
    for r in rows:
        ratio = r[3] / r[4] if r[4] else float("inf")
        print(f"{r[0]:>3} {r[1]:>8.1f} {r[2]:>7.1f} {r[3]:>12.1f} {r[4]:>11.1f} {ratio:>9.2f} {r[5]:>11.2f}")
    scores = [r[2] for r in rows]
    print(f"score spread (max - min): {max(scores) - min(scores):.1f} points; "
          f"median wall time {sorted(r[1] for r in rows)[len(rows) // 2]:.1f} s")


if __name__ == "__main__":
    main()
