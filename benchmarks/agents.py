"""Grade the reference agent (and optionally the examples) on a profile N times and print scores and seconds.

    .venv/bin/python benchmarks/agents.py --profile quick --runs 2
    .venv/bin/python benchmarks/agents.py --profile smoke --examples

The target is `ailab grade agents reference --profile quick` in <= 180 s on 2 cores.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from graders.agents.grade import grade
from graders.paths import LABS_DIR


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--examples", action="store_true", help="also grade labs/agents/examples")
    args = ap.parse_args()
    for run in range(args.runs):
        out = Path(tempfile.mkdtemp(prefix="ailab-agents-bench-"))
        started = time.perf_counter()
        cards = grade("reference", out, profile=args.profile)
        if args.examples:
            cards += grade(str(LABS_DIR / "agents" / "examples"), out, profile=args.profile)
        seconds = time.perf_counter() - started
        for card in cards:
            m = card.metrics
            print(f"run {run + 1}: {card.submission:<10} {card.score:5.1f}  pass^k {m.get('pass_k', 0):.2f}  "
                  f"violations {m.get('violations', 0):.0f}  turn p95 {m.get('turn_p95_ms', 0):.0f} ms  "
                  f"cost/resolved ${m.get('cost_per_resolved_usd', 0):.5f}")
        print(f"run {run + 1}: {seconds:.1f} s ({args.profile})")


if __name__ == "__main__":
    main()
