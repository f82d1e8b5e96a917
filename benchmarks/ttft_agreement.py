"""Does the client-measured TTFT agree with the server's own timestamps? A raw-socket probe of the reference server.

    .venv/bin/python -m benchmarks.ttft_agreement [--n 30] [--max-tokens 8] [--json out.json]

Starts the reference server as a subprocess on 127.0.0.1 (as `benchmarks/serving.py` does), sends
`n` sequential streamed completions through `graders.serving.ttft_probe` on the idle server, and
prints the median and p90 of client TTFT minus server TTFT (durations, not stamps across processes).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from benchmarks.serving import load_lab, server
from graders.serving.ttft_probe import probe


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=30, help="measured requests (after 3 warm-up ones)")
    ap.add_argument("--max-tokens", type=int, default=8)
    ap.add_argument("--json", type=Path, help="also write the figures and samples here")
    args = ap.parse_args(argv)
    with server("reference", load_lab()["server"]) as url:
        print(f"probing {url} with {args.n} sequential requests ...", file=sys.stderr)
        out = asyncio.run(probe(url, n=args.n, max_tokens=args.max_tokens))
    s = out["samples"]
    client = sorted(x.client_ttft_s * 1e3 for x in s)
    srv = sorted(x.server_ttft_s * 1e3 for x in s)
    print(f"client TTFT median {client[len(client) // 2]:.2f} ms, server TTFT median {srv[len(srv) // 2]:.2f} ms")
    print(f"client - server TTFT: median {out['median_diff_ms']:.2f} ms, p90 {out['p90_diff_ms']:.2f} ms, "
          f"min {min(x.diff_ms for x in s):.2f} ms over {len(s)} requests")
    if args.json:
        args.json.write_text(json.dumps({**out, "samples": [vars(x) for x in s]}, indent=2))
    return out


if __name__ == "__main__":
    main()
