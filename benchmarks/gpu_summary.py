"""Print the GPU profile's key figures from a graded folder: reference and naive floor, rate by rate.

    python -m benchmarks.gpu_summary OUT/grade      # after `ailab grade serving reference --profile gpu --out ...`

One row per (system, offered rate): output tokens/s, goodput, TTFT p95, TPOT p50, GPU utilisation, joules per
output token and USD per million output tokens from GPU-seconds; then the reference's best goodput against the
floor's best, the figure issue #15 asks to be at least 10x.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

COLUMNS = (("output_tokens_per_s", "tok/s", "{:9.0f}"), ("goodput_rps", "goodput/s", "{:9.1f}"),
           ("ttft_p95_ms", "TTFT p95", "{:9.0f}"), ("tpot_p50_ms", "TPOT p50", "{:9.2f}"),
           ("gpu_util_mean", "GPU util%", "{:9.0f}"), ("joules_per_output_token", "J/token", "{:9.3f}"),
           ("gpu_cost_per_1m_output_tokens_usd", "$/1M tok", "{:9.2f}"))


def cell(summary: dict[str, Any], key: str, fmt: str) -> str:
    value = summary.get(key)
    return fmt.format(value) if isinstance(value, (int, float)) else f"{'-':>9s}"


def main(folder: Path) -> int:
    cards = sorted(folder.glob("*/scorecard.json"))
    if not cards:
        print(f"no scorecard.json under {folder}; grade first", file=sys.stderr)
        return 2
    card = json.loads(cards[0].read_text())
    x = card.get("by_rate", {})
    env = card.get("environment", {})
    print(f"\n{card['submission']}: {card['score']:.1f} / 100 on {env.get('device')} ({env.get('model')}, "
          f"{env.get('dtype')}), price {env.get('price_device')} at ${env.get('usd_per_hour')}/h")
    print(f"{'system':10s} {'rate':>6s} " + " ".join(f"{h:>9s}" for _, h, _ in COLUMNS))
    best: dict[str, float] = {}
    for name in ("candidate", "reference", "floor"):
        for rate, summary in x.get(name, {}).items():
            print(f"{name:10s} {float(rate):6g} " + " ".join(cell(summary, k, f) for k, _, f in COLUMNS))
            best[name] = max(best.get(name, 0.0), float(summary.get("goodput_rps", 0.0)))
    if best.get("floor"):
        print(f"\nbest goodput: reference {best.get('reference', 0):.1f}/s vs naive floor {best['floor']:.1f}/s "
              f"= {best.get('reference', 0) / best['floor']:.1f}x")
    for part in card.get("parts", []):
        print(f"  {part['name']:18s} {part['points']:5.1f} / {part['max_points']:g}")
    for error in card.get("errors", [])[:5]:
        print(f"  error: {error[:300]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "out/gpu/grade")))
