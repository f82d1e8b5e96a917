"""Serving benchmark: the reference (continuous batching) vs the naive server under the same open-loop load.

    .venv/bin/python -m benchmarks.serving [--profile quick|full] [--rates 4,16] [--json out.json]

Each server runs as its own subprocess on 127.0.0.1, one at a time, and gets the same seeded
workload per rate: Poisson arrivals, prompt and output lengths drawn uniformly from the
profile's ranges (`ignore_eos`, so output lengths are exact), prompts cut from the Python docs.
Requests arriving during warm-up are sent but not measured; nothing arrives after
`duration_s`, and every request is bounded by `client_timeout_s`.

Metrics follow vLLM's serving benchmark, measured from the client's stream: TTFT (send to first
token event), TPOT ((e2e - TTFT) / (output tokens - 1)), ITL (gaps between token events),
e2e, output tokens/s, requests/s, goodput (requests/s meeting every SLO in labs/serving/lab.toml)
and dollars per million output tokens at the configured device price. It also reports how far
the client's TTFT is from the server's own (`server_timing`), the cost of the HTTP path.

The load generator is `graders.serving.client` (shared with the grader), an asyncio httpx client
rather than Locust: Poisson arrivals must be open loop (a slow server must not slow the
arrivals), which Locust's closed-loop users do not give. As in the grader, the prompts come from a
fresh seed per run (printed; AILAB_SERVING_SEED=N replays it) and every stream is verified against
the engine's greedy output (`graders.serving.verify`): a wrong one counts as failed, and the
`verified` column is the share of whole streams that were right.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import httpx

from graders.paths import LABS_DIR, REPO_ROOT
from graders.serving.client import choose_seed, drive, prompt_corpus, summarize, warmup, workload
from graders.serving.verify import greedy_texts, mark


def load_lab() -> dict:
    with open(LABS_DIR / "serving" / "lab.toml", "rb") as f:
        return tomllib.load(f)


@contextlib.contextmanager
def server(kind: str, cfg: dict):
    """The reference or naive server as a subprocess on a free 127.0.0.1 port; yields its URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "reference_systems.serving.server", "--port", str(port),
           "--max-batch", str(cfg["max_batch"]), "--max-waiting", str(cfg["max_waiting"]),
           "--threads", str(cfg["threads"]), "--request-timeout", str(cfg["request_timeout_s"]),
           "--device", cfg.get("device", "cpu"), "--model", cfg.get("model", "tiny-gpt2")]
    if kind == "naive":
        cmd.append("--naive")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"the {kind} server exited with {proc.returncode} before answering /health")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise SystemExit(f"the {kind} server did not answer /health within 120 s")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def wait_idle(url: str, limit_s: float = 30) -> None:
    """Let a backlog from the previous rate drain so it does not load the next one."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        text = httpx.get(url + "/metrics", timeout=5).text
        busy = [ln for ln in text.splitlines() if ln.startswith(("ailab_serving_num_requests_running ",
                                                                  "ailab_serving_num_requests_waiting "))]
        if all(float(ln.split()[-1]) == 0 for ln in busy):
            return
        time.sleep(0.5)


COLUMNS = [("rate", "rate", "{:.0f}"), ("ok", "completed", "{:d}"), ("err", "error_rate", "{:.0%}"),
           ("ttft p50", "ttft_p50_ms", "{:.0f}"), ("ttft p95", "ttft_p95_ms", "{:.0f}"),
           ("tpot p50", "tpot_p50_ms", "{:.1f}"), ("itl p95", "itl_p95_ms", "{:.1f}"), ("e2e p95", "e2e_p95_ms", "{:.0f}"),
           ("out tok/s", "output_tokens_per_s", "{:.0f}"), ("req/s", "requests_per_s", "{:.2f}"),
           ("verified", "verified_rate", "{:.0%}"),
           ("goodput", "goodput_rps", "{:.2f}"), ("$/1M tok", "cost_per_1m_output_tokens_usd", "{:.3f}"),
           ("ttft c-s ms", "client_minus_server_ttft_p50_ms", "{:.2f}")]


def table(rows: list[dict]) -> str:
    head = ["server"] + [c[0] for c in COLUMNS]
    lines = [head]
    for row in rows:
        cells = [row["server"]]
        for _, key, fmt in COLUMNS:
            v = row.get(key)
            cells.append("-" if v is None else fmt.format(v))
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(line, widths)) for line in lines)


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="quick", help="a [profiles.*] table of labs/serving/lab.toml")
    ap.add_argument("--rates", help="comma-separated requests/s, overriding the profile's")
    ap.add_argument("--servers", default="reference,naive")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args(argv)
    lab = load_lab()
    if args.profile not in lab["profiles"]:
        raise SystemExit(f"unknown profile {args.profile!r}; labs/serving/lab.toml has {', '.join(lab['profiles'])}")
    profile = dict(lab["profiles"][args.profile])
    if args.rates:
        profile["rates"] = [float(r) for r in args.rates.split(",")]
    prices = lab["prices"]
    usd_per_hour = prices["usd_per_hour"][prices["device"]]

    tok, corpus_ids = prompt_corpus()
    profile["seed"], source = choose_seed(profile.get("seed"))
    print(f"load seed {profile['seed']} ({source}); AILAB_SERVING_SEED={profile['seed']} replays it", file=sys.stderr)
    warm = warmup(profile, 4, tok, corpus_ids)
    loads = {rate: workload(profile, rate, tok, corpus_ids) for rate in profile["rates"]}
    greedy = greedy_texts([(p, n) for _, p, n in warm + [r for reqs in loads.values() for r in reqs]],
                          device=profile.get("device", "cpu"), model=profile.get("model", "tiny-gpt2"),
                          dtype=profile.get("dtype"))
    server_cfg = {**lab["server"], **{k: profile[k] for k in ("device", "model", "max_batch", "max_waiting")
                                      if k in profile}}  # a GPU profile's engine and batch

    rows = []
    for kind in args.servers.split(","):
        with server(kind, server_cfg) as url:
            asyncio.run(drive(url, warm, 30))  # warm the process up
            for rate, reqs in loads.items():
                wait_idle(url)
                print(f"{kind}: {len(reqs)} requests at {rate:g}/s for {profile['duration_s']:g} s ...", file=sys.stderr)
                results = asyncio.run(drive(url, reqs, profile["client_timeout_s"]))
                mark(results, greedy)
                rows.append({"server": kind, "rate": rate, **summarize(results, profile["warmup_s"], lab["slo"],
                                                                        usd_per_hour)})
    print(table(rows))
    print(f"SLO per request: ttft <= {lab['slo']['ttft_ms']:g} ms and tpot <= {lab['slo']['tpot_ms']:g} ms; "
          f"price {usd_per_hour} USD/h ({prices['device']})")
    by = {(r["server"], r["rate"]): r for r in rows}
    for rate in profile["rates"]:
        ref, naive = by.get(("reference", rate)), by.get(("naive", rate))
        if ref and naive and "goodput_rps" in ref:
            ratio = ref["goodput_rps"] / naive["goodput_rps"] if naive.get("goodput_rps") else float("inf")
            print(f"rate {rate:g}/s: reference goodput / naive goodput = {ratio:.1f}x")
    best = {k: max((r.get("goodput_rps", 0.0) for r in rows if r["server"] == k), default=0.0)
            for k in ("reference", "naive")}
    if best["naive"] > 0:
        print(f"best goodput over the rates: reference {best['reference']:.2f}/s, naive {best['naive']:.2f}/s "
              f"= {best['reference'] / best['naive']:.1f}x")
    if args.json:
        args.json.write_text(json.dumps({"profile": profile, "slo": lab["slo"], "rows": rows}, indent=2))
    return rows


if __name__ == "__main__":
    main()
