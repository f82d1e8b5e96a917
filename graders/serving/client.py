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

Every stream's text is kept (`Result.text`) so that `graders.serving.verify` can compare it with the
engine's greedy output; a request counts as completed only when its stream is whole and, once
verified, right. Output token counts are the token events of verified streams, never the server's
`usage` claim, which is only recorded (`usage_tokens`) and compared; verification also re-times each
token at the event that brought its text (an early empty event does not make a first token). Prompts are windows of the
model's corpus drawn from a seeded generator; `choose_seed` gives a fresh seed per run unless one is
configured, so no list of prompts exists before a run starts.
"""
from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from graders.serving import wire


SEED_ENV = "AILAB_SERVING_SEED"
MAX_TEXT = 64 * 1024  # characters of one stream's text kept for verification (an honest one is ~1 KiB)


@dataclass
class Result:
    arrival: float              # scheduled, seconds from the start of the run
    sent: float = 0.0           # perf_counter
    end: float = 0.0
    ok: bool = False            # a whole stream (and, once verify.mark ran, the right text)
    status: int = 0
    error: str = ""
    token_times: list[float] = field(default_factory=list)
    output_tokens: int = 0      # token events counted by the client (never the server's usage claim)
    expected_tokens: int = 0    # max_tokens asked (ignore_eos: exactly this many)
    server_ttft: float | None = None
    prompt: str = ""
    text: str = ""              # the streamed pieces, joined (cut at MAX_TEXT: then it cannot verify)
    text_ends: list[int] = field(default_factory=list)  # len(text) after each token event
    text_cut: bool = False
    near_tie: bool = False           # verified by graders.serving.verify.near_tie
    usage_tokens: int | None = None  # usage.completion_tokens as the server claimed it; None: no usage chunk
    verified: bool | None = None     # None: not compared (the stream failed, or no verification ran)

    @property
    def ttft(self) -> float:
        return self.token_times[0] - self.sent

    @property
    def tpot(self) -> float:
        return (self.end - self.token_times[0]) / (self.output_tokens - 1) if self.output_tokens > 1 else 0.0


def choose_seed(configured: int | None) -> tuple[int, str]:
    """(seed, where it came from): AILAB_SERVING_SEED, else the configured one (lab.toml or --hidden), else a fresh
    random seed, so that the prompts of a run cannot be known before it starts; record it to replay the run."""
    raw = os.environ.get(SEED_ENV, "").strip()
    if raw:
        try:
            return int(raw), SEED_ENV
        except ValueError:
            raise SystemExit(f"{SEED_ENV}={raw!r} is not an integer; set it to a seed from a scorecard "
                             "(environment.load_seed) or unset it for a fresh one") from None
    if configured is not None:
        return int(configured), "lab.toml"
    return secrets.randbelow(2**31), "fresh"


def _draw(rng: np.random.Generator, profile: dict, tokenizer, corpus_ids: list[int]) -> tuple[str, int]:
    n_prompt = int(rng.integers(profile["prompt_tokens"][0], profile["prompt_tokens"][1] + 1))
    n_out = int(rng.integers(profile["output_tokens"][0], profile["output_tokens"][1] + 1))
    start = int(rng.integers(0, len(corpus_ids) - n_prompt))
    return tokenizer.decode(corpus_ids[start:start + n_prompt]), n_out


def workload(profile: dict, rate: float, tokenizer, corpus_ids: list[int], draw: int = 0) -> list[tuple[float, str, int]]:
    """(arrival_s, prompt, max_tokens) for one rate; the same seed gives every server the same requests. `draw` > 0:
    another set at the same rate (the grader's second look), from a stream that no first draw and no warm-up uses."""
    rng = np.random.default_rng([profile["seed"], int(rate * 1000)] + ([draw] if draw else []))
    out: list[tuple[float, str, int]] = []
    t = 0.0
    while True:
        t += rng.exponential(1.0 / rate)
        if t >= profile["duration_s"]:
            return out
        out.append((t, *_draw(rng, profile, tokenizer, corpus_ids)))


def warmup(profile: dict, n: int, tokenizer, corpus_ids: list[int]) -> list[tuple[float, str, int]]:
    """n requests sent back to back before the measured rates, from their own stream of the seed (key 0, which
    no rate uses), so that no warm-up prompt comes back in the measured load."""
    rng = np.random.default_rng([profile["seed"], 0])
    return [(0.0, *_draw(rng, profile, tokenizer, corpus_ids)) for _ in range(n)]


async def one(client: httpx.AsyncClient, res: Result, prompt: str, max_tokens: int, timeout: float,
              fields: dict[str, Any] | None = None) -> None:
    body = {"model": "tiny-gpt2", "prompt": prompt, "max_tokens": max_tokens, "stream": True, "ignore_eos": True,
            "stream_options": {"include_usage": True}, **(fields or {})}
    res.expected_tokens, res.prompt = max_tokens, prompt
    pieces: list[str] = []
    size = 0
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
                    piece = _piece(obj["choices"])
                    size += len(piece)
                    res.text_ends.append(size)
                    if size <= MAX_TEXT:
                        pieces.append(piece)
                    else:
                        res.text_cut = True
                elif isinstance(obj.get("usage"), dict):
                    claimed = obj["usage"].get("completion_tokens")
                    res.usage_tokens = claimed if isinstance(claimed, int) and not isinstance(claimed, bool) else -1
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
    res.text = "".join(pieces)
    res.ok = done and not res.error and len(res.token_times) == res.expected_tokens
    res.output_tokens = len(res.token_times) if res.ok else 0
    if done and not res.ok and not res.error:
        res.error = f"{len(res.token_times)} token events for max_tokens={res.expected_tokens} (want one per token)"


def _piece(choices: Any) -> str:
    """The text of a chunk's first choice (a completion's `text` or a chat `delta.content`); "" when it has none."""
    choice = choices[0] if isinstance(choices, list) and choices else None
    if not isinstance(choice, dict):
        return ""
    text = choice.get("text")
    if text is None and isinstance(choice.get("delta"), dict):
        text = choice["delta"].get("content")
    return text if isinstance(text, str) else ""


async def drive(url: str, requests: list[tuple[float, str, int]], timeout: float,
                fields: dict[str, Any] | None = None, any_host: bool = False) -> list[Result]:
    """Send `requests` on their schedule; `fields` go into every body (an external reference's model name).
    Only 127.0.0.1 is a target, unless `any_host`: a server whose URL the user gave (`--reference-url`)."""
    if not url.startswith("http://127.0.0.1:") and not (any_host and url.startswith(("http://", "https://"))):
        raise ValueError(f"load only targets 127.0.0.1; refusing {url}")
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=256)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout) as client:
        results = [Result(arrival=a) for a, _, _ in requests]
        tasks, t0 = [], time.perf_counter()
        for res, (at, prompt, n_out) in zip(results, requests):
            delay = t0 + at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(client, res, prompt, n_out, timeout, fields)))
        await asyncio.gather(*tasks)
    return results


def verification_figures(results: list[Result]) -> dict[str, Any]:
    """Output verification figures of some results: streams compared, how many failed, the share verified, and
    how many verified streams came with a `usage` that disagrees with their tokens (or none)."""
    compared = [r for r in results if r.verified is not None]
    failed = sum(not r.verified for r in compared)
    return {"verification_failures": failed,
            "verified_rate": (len(compared) - failed) / len(compared) if compared else float("nan"),
            "usage_mismatches": sum(bool(r.verified) and r.usage_tokens != r.output_tokens for r in compared)}


def summarize(results: list[Result], warmup_s: float, slo: dict, usd_per_hour: float) -> dict:
    measured = [r for r in results if r.arrival >= warmup_s]
    ok = [r for r in measured if r.ok]
    if not ok:
        errors = sorted({r.error for r in measured if not r.ok})
        return {"requests": len(measured), "completed": 0, "error_rate": 1.0, "goodput_rps": 0.0,
                "requests_per_s": 0.0, **verification_figures(measured), "errors": errors[:3]}
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
        **verification_figures(measured),
        "errors": errors[:3],
    }


def prompt_corpus() -> tuple[Any, list[int]]:
    """(tokenizer, token ids of the lab's text corpus): what `workload` cuts prompts from."""
    from transformers import AutoTokenizer

    from reference_systems.serving.model import corpus, model_dir

    tok = AutoTokenizer.from_pretrained(model_dir())
    return tok, tok.backend_tokenizer.encode("\n".join(corpus())).ids
