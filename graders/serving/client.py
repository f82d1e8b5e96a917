"""Open-loop load for the serving lab: seeded Poisson workloads, an asyncio httpx streaming client, vLLM-style metrics.

    requests = workload(profile, rate, tokenizer, corpus_ids)      # [(arrival_s, prompt, max_tokens)]
    results = asyncio.run(drive("http://127.0.0.1:8100", requests, timeout=30))
    summary = summarize(results, warmup_s, slo, usd_per_hour)

Used by the grader (`graders.serving.grade`) and the benchmark (`benchmarks/serving.py`), so both
measure the same way. Open loop: arrivals follow the schedule whatever the server does (a slow
server does not slow the arrivals, unlike Locust's closed-loop users). Only 127.0.0.1 is a valid
target; every request is bounded by `timeout` and nothing is sent after the schedule ends.

Metrics follow vLLM's serving benchmark, measured from the client's stream: TTFT (send to first
token event), TPOT ((e2e - TTFT) / (output tokens - 1)), ITL (gaps between token events), e2e,
output tokens/s, requests/s, goodput (requests/s meeting every SLO) and dollars per million
output tokens at a device price per hour.
"""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from graders.serving import wire


@dataclass
class Result:
    arrival: float              # scheduled, seconds from the start of the run
    sent: float = 0.0           # perf_counter
    end: float = 0.0
    ok: bool = False
    status: int = 0
    error: str = ""
    token_times: list[float] = field(default_factory=list)
    output_tokens: int = 0
    expected_tokens: int = 0
    server_ttft: float | None = None

    @property
    def ttft(self) -> float:
        return self.token_times[0] - self.sent

    @property
    def tpot(self) -> float:
        return (self.end - self.token_times[0]) / (self.output_tokens - 1) if self.output_tokens > 1 else 0.0


def workload(profile: dict, rate: float, tokenizer, corpus_ids: list[int]) -> list[tuple[float, str, int]]:
    """(arrival_s, prompt, max_tokens) for one rate; the same seed gives every server the same requests."""
    rng = np.random.default_rng([profile["seed"], int(rate * 1000)])
    out: list[tuple[float, str, int]] = []
    t = 0.0
    while True:
        t += rng.exponential(1.0 / rate)
        if t >= profile["duration_s"]:
            return out
        n_prompt = int(rng.integers(profile["prompt_tokens"][0], profile["prompt_tokens"][1] + 1))
        n_out = int(rng.integers(profile["output_tokens"][0], profile["output_tokens"][1] + 1))
        start = int(rng.integers(0, len(corpus_ids) - n_prompt))
        out.append((t, tokenizer.decode(corpus_ids[start:start + n_prompt]), n_out))


async def one(client: httpx.AsyncClient, res: Result, prompt: str, max_tokens: int, timeout: float) -> None:
    body = {"model": "tiny-gpt2", "prompt": prompt, "max_tokens": max_tokens, "stream": True, "ignore_eos": True,
            "stream_options": {"include_usage": True}}
    res.expected_tokens = max_tokens
    res.sent = time.perf_counter()
    done = False
    try:
        async with asyncio.timeout(timeout), client.stream("POST", "/v1/completions", json=body) as r:
            res.status = r.status_code
            if r.status_code != 200:
                res.error = f"HTTP {r.status_code}"
                return
            async for line in wire.alines(r):
                if not line.startswith("data: "):
                    continue
                now, data = time.perf_counter(), line[6:]
                if data == "[DONE]":
                    done = True
                    break
                try:
                    obj = json.loads(data)
                except ValueError:
                    res.error = f"a malformed event (not JSON): {data[:80]!r}"
                    break
                if not isinstance(obj, dict):
                    res.error = f"an event that is not a JSON object: {data[:80]!r}"
                    break
                if obj.get("choices"):
                    res.token_times.append(now)
                elif isinstance(obj.get("usage"), dict):
                    res.output_tokens = int(obj["usage"].get("completion_tokens", -1))
                    res.server_ttft = (obj.get("server_timing") or {}).get("ttft_s")
                elif "error" in obj:
                    err = obj["error"]
                    res.error = str(err.get("message", err) if isinstance(err, dict) else err)[:200]
    except TimeoutError:
        res.error = "client timeout"
    except httpx.HTTPError as e:
        res.error = f"{type(e).__name__}: {e}"
    except (ValueError, TypeError, AttributeError) as e:  # a broken server must not break the load generator
        res.error = f"an unreadable response ({type(e).__name__}: {e})"[:200]
    if not done and not res.error:
        res.error = "the stream ended without data: [DONE]"
    res.end = res.token_times[-1] if res.token_times else time.perf_counter()
    res.ok = done and not res.error and res.output_tokens == res.expected_tokens == len(res.token_times)
    if done and not res.ok and not res.error:
        res.error = f"{len(res.token_times)} token events, usage {res.output_tokens}, asked {res.expected_tokens}"


async def drive(url: str, requests: list[tuple[float, str, int]], timeout: float) -> list[Result]:
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"load only targets 127.0.0.1; refusing {url}")
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=256)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout) as client:
        results = [Result(arrival=a) for a, _, _ in requests]
        tasks, t0 = [], time.perf_counter()
        for res, (at, prompt, n_out) in zip(results, requests):
            delay = t0 + at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(client, res, prompt, n_out, timeout)))
        await asyncio.gather(*tasks)
    return results


def summarize(results: list[Result], warmup_s: float, slo: dict, usd_per_hour: float) -> dict:
    measured = [r for r in results if r.arrival >= warmup_s]
    ok = [r for r in measured if r.ok]
    if not ok:
        errors = sorted({r.error for r in measured if not r.ok})
        return {"requests": len(measured), "completed": 0, "error_rate": 1.0, "goodput_rps": 0.0,
                "requests_per_s": 0.0, "errors": errors[:3]}
    duration = max(r.end for r in ok) - min(r.sent for r in measured)
    ttft = np.array([r.ttft for r in ok]) * 1e3
    tpot = np.array([r.tpot for r in ok if r.output_tokens > 1]) * 1e3
    itl = np.concatenate([np.diff(r.token_times) for r in ok]) * 1e3
    e2e = np.array([r.end - r.sent for r in ok]) * 1e3
    good = [r for r in ok if r.ttft * 1e3 <= slo["ttft_ms"] and r.tpot * 1e3 <= slo["tpot_ms"]]
    out_tps = sum(r.output_tokens for r in ok) / duration
    diffs = [(r.ttft - r.server_ttft) * 1e3 for r in ok if r.server_ttft is not None]
    errors = sorted({r.error for r in measured if not r.ok})
    return {
        "requests": len(measured), "completed": len(ok),
        "ttft_p50_ms": float(np.percentile(ttft, 50)), "ttft_p95_ms": float(np.percentile(ttft, 95)),
        "tpot_p50_ms": float(np.percentile(tpot, 50)) if len(tpot) else 0.0,
        "itl_p95_ms": float(np.percentile(itl, 95)) if len(itl) else 0.0,
        "e2e_p95_ms": float(np.percentile(e2e, 95)),
        "output_tokens_per_s": out_tps, "requests_per_s": len(ok) / duration, "goodput_rps": len(good) / duration,
        "error_rate": 1 - len(ok) / len(measured),
        "cost_per_1m_output_tokens_usd": usd_per_hour / (3600 * out_tps) * 1e6,
        "client_minus_server_ttft_p50_ms": float(np.median(diffs)) if diffs else None,
        "errors": errors[:3],
    }


def prompt_corpus() -> tuple[Any, list[int]]:
    """(tokenizer, token ids of the lab's text corpus): what `workload` cuts prompts from."""
    from transformers import AutoTokenizer

    from reference_systems.serving.model import corpus, model_dir

    tok = AutoTokenizer.from_pretrained(model_dir())
    return tok, tok.backend_tokenizer.encode("\n".join(corpus())).ids
