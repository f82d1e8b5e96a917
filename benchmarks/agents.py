"""Grade the reference agent (and optionally the examples) on a profile N times and print scores and seconds.

    .venv/bin/python benchmarks/agents.py --profile quick --runs 2
    .venv/bin/python benchmarks/agents.py --profile smoke --examples
    AILAB_MODEL_API_KEY=... .venv/bin/python benchmarks/agents.py --model-url https://api.openai.com/v1 --model NAME

The target is `ailab grade agents reference --profile quick` in <= 180 s on 2 cores. `--model-url`/`--model` grade
against a real OpenAI-compatible model instead of the scripted one (graders/agents/upstream.py; not deterministic).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from graders.agents.grade import grade
from graders.engine.hidden import write_lab_toml
from graders.paths import LABS_DIR


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--examples", action="store_true", help="also grade labs/agents/examples")
    ap.add_argument("--model-url", help="a real OpenAI-compatible model's base URL (key in $AILAB_MODEL_API_KEY)")
    ap.add_argument("--model", help="with --model-url: the model's name")
    ap.add_argument("--model-prices", metavar="IN,OUT", help="with --model-url: USD per million tokens")
    ap.add_argument("--seed", type=int, help="replay one fault seed in every run (as tests/test_cluster.py does)")
    args = ap.parse_args()
    model = {"model_url": args.model_url, "model": args.model, "model_prices": args.model_prices}
    hidden = None
    if args.seed is not None:
        hidden = Path(tempfile.mkdtemp(prefix="ailab-agents-seed-"))
        write_lab_toml(hidden, "agents", f"[profiles.{args.profile}]\nseed = {args.seed}\n")
    for run in range(args.runs):
        out = Path(tempfile.mkdtemp(prefix="ailab-agents-bench-"))
        started = time.perf_counter()
        cards = grade("reference", out, profile=args.profile, hidden=hidden, **model)
        reference_s = time.perf_counter() - started  # what `ailab grade agents reference` takes, less the CLI
        if args.examples:
            cards += grade(str(LABS_DIR / "agents" / "examples"), out, profile=args.profile, hidden=hidden, **model)
        seconds = time.perf_counter() - started
        for card in cards:
            m = card.metrics
            print(f"run {run + 1}: {card.submission:<10} {card.score:5.1f}  pass^k {m.get('pass_k', 0):.2f}  "
                  f"violations {m.get('violations', 0):.0f}  turn p95 {m.get('turn_p95_ms', 0):.0f} ms  "
                  f"cost/resolved ${m.get('cost_per_resolved_usd', 0):.5f}")
            for line in card.errors[:2]:
                print(f"         {line[:160]}")
            for part in card.parts:
                if part.points < part.max_points:
                    print(f"         {part.name} {part.points:g}/{part.max_points:g}: {part.detail[:200]}")
        print(f"run {run + 1}: reference graded in {reference_s:.1f} s, {seconds:.1f} s in all ({args.profile})")


if __name__ == "__main__":
    main()
