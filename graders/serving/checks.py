"""The serving lab's functional checks, over HTTP on 127.0.0.1 like any client; each returns (fraction, detail).

Every request has a timeout (`t`, lab.toml [limits] check_s), so a server that hangs costs a
bounded few seconds per check, never the grader. A check scores the fraction of its sub-checks
that pass and names the first that failed.
"""
from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx

from graders.serving import wire

PROMPT = "The def statement defines a function. A function definition is"
CHAT = [{"role": "user", "content": "What does the with statement do?"}]


class Tally:
    """Sub-checks of one part: how many passed, and the first reason one did not."""

    def __init__(self) -> None:
        self.passed, self.total = 0, 0
        self.failures: list[str] = []

    def check(self, ok: bool, what: str) -> bool:
        self.total += 1
        self.passed += bool(ok)
        if not ok:
            self.failures.append(what)
        return ok

    def result(self, summary: str) -> tuple[float, str]:
        detail = f"{summary}: {self.passed}/{self.total} checks pass"
        if self.failures:
            detail += "; failed: " + "; ".join(self.failures[:4])
        return (self.passed / self.total if self.total else 0.0), detail


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def completion(url: str, t: float, **body: Any) -> tuple[int, Any]:
    status, raw = wire.fetch("POST", url + "/v1/completions", t, json={"model": "tiny-gpt2", **body})
    return status, _json(raw)


def chat(url: str, t: float, **body: Any) -> tuple[int, Any]:
    status, raw = wire.fetch("POST", url + "/v1/chat/completions", t, json={"model": "tiny-gpt2", **body})
    return status, _json(raw)


def probe(url: str, t: float) -> str | None:
    """None when a small completion comes back in time; else why not (the other checks are then skipped)."""
    try:
        status, _ = completion(url, t, prompt="Hello", max_tokens=2, ignore_eos=True)
    except httpx.TimeoutException:
        return f"the server did not answer a 2-token completion within {t:g} s (a hang, or a blocked event loop?)"
    except httpx.HTTPError as exc:
        return f"the server's connection failed on a 2-token completion ({type(exc).__name__}: {exc})"
    return None if status < 500 else f"a 2-token completion got HTTP {status}"


CORRECTNESS = "OpenAI completions and chat"


def correctness(url: str, t: float, expected: dict[str, Any], prompt_tokens: int,
                tally: Tally | None = None) -> tuple[float, str]:
    """OpenAI shapes, usage arithmetic, max_tokens with ignore_eos, greedy text == the reference's,
    and the official `openai` client. `expected` = the reference's {"text", "chat"} for the same requests.
    `tally` (fresh when None) collects the sub-checks, so that the grader can add the load phase's usage check."""
    tally = tally if tally is not None else Tally()
    status, body = completion(url, t, prompt=PROMPT, max_tokens=12, ignore_eos=True)
    if tally.check(status == 200 and isinstance(body, dict), f"POST /v1/completions answered HTTP {status}"):
        choice = (body.get("choices") or [{}])[0]
        usage = body.get("usage") or {}
        tally.check(body.get("object") == "text_completion" and isinstance(choice.get("text"), str),
                    "a completion needs object 'text_completion' and choices[0].text")
        tally.check(usage.get("completion_tokens") == 12 and choice.get("finish_reason") == "length",
                    f"max_tokens=12 with ignore_eos gave usage.completion_tokens={usage.get('completion_tokens')} "
                    f"and finish_reason={choice.get('finish_reason')!r} (want 12 and 'length')")
        tally.check(usage.get("prompt_tokens") == prompt_tokens and
                    usage.get("total_tokens") == prompt_tokens + (usage.get("completion_tokens") or 0),
                    f"usage {usage} is not consistent (prompt has {prompt_tokens} tokens; total = prompt + completion)")
        tally.check(choice.get("text") == expected["text"],
                    f"greedy text differs from the reference's for the same request ({str(choice.get('text'))[:40]!r} "
                    f"vs {expected['text'][:40]!r})")
    status, body = chat(url, t, messages=CHAT, max_tokens=8, ignore_eos=True)
    if tally.check(status == 200 and isinstance(body, dict), f"POST /v1/chat/completions answered HTTP {status}"):
        choice = (body.get("choices") or [{}])[0]
        message = choice.get("message") or {}
        tally.check(body.get("object") == "chat.completion" and message.get("role") == "assistant"
                    and message.get("content") == expected["chat"],
                    "chat needs object 'chat.completion', an assistant message, and the reference's greedy content")
        tally.check((body.get("usage") or {}).get("completion_tokens") == 8, "chat max_tokens=8 not honoured in usage")
    try:
        import openai

        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", timeout=t, max_retries=0)
        c = client.completions.create(model="tiny-gpt2", prompt=PROMPT, max_tokens=5, extra_body={"ignore_eos": True})
        m = client.chat.completions.create(model="tiny-gpt2", messages=CHAT, max_tokens=5,
                                           extra_body={"ignore_eos": True})
        tally.check(bool(c.choices) and c.usage is not None and bool(m.choices), "the openai client got empty choices")
    except Exception as exc:  # noqa: BLE001 - any failure of the official client is the finding
        tally.check(False, f"the official openai client failed ({type(exc).__name__}: {str(exc)[:150]})")
    return tally.result(CORRECTNESS)


def read_stream(url: str, path: str, t: float, body: dict[str, Any]) -> tuple[int, list[str]]:
    """(status, the raw non-empty lines of the SSE body), bounded by `t` overall."""
    lines: list[str] = []
    deadline = time.monotonic() + t
    with httpx.stream("POST", url + path, json={"model": "tiny-gpt2", **body}, timeout=t) as r:
        if r.status_code != 200:
            return r.status_code, []
        try:
            for line in wire.lines(r):
                if line.strip():
                    lines.append(line)
                if time.monotonic() > deadline:
                    lines.append("<grader: timed out>")
                    break
        except wire.WireError as exc:
            lines.append(f"<grader: {exc}>")
    return r.status_code, lines


def streaming(url: str, t: float, expected: dict[str, Any]) -> tuple[float, str]:
    """Completions and chat streams; a stream whose framing is broken (no single final `[DONE]`, or
    events that are not JSON) scores nothing for its endpoint, since no client can read it reliably."""
    tally = Tally()
    broken: list[str] = []
    for path, body, want, key in (
        ("/v1/completions", {"prompt": PROMPT, "max_tokens": 12}, expected["text"], "text"),
        ("/v1/chat/completions", {"messages": CHAT, "max_tokens": 8}, expected["chat"], "content"),
    ):
        n = body["max_tokens"]
        body = {**body, "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}}
        try:
            status, lines = read_stream(url, path, t, body)
        except httpx.HTTPError as exc:
            tally.check(False, f"{path} stream failed ({type(exc).__name__}: {exc})")
            continue
        if not tally.check(status == 200 and bool(lines), f"{path} stream answered HTTP {status} with no events"):
            continue
        tally.check(all(ln.startswith("data: ") for ln in lines),
                    f"{path}: every event must be `data: ...` (got {next(ln for ln in lines if not ln.startswith('data: '))[:60]!r})"
                    if any(not ln.startswith("data: ") for ln in lines) else "")
        framed = tally.check(lines[-1] == "data: [DONE]" and sum(ln == "data: [DONE]" for ln in lines) == 1,
                             f"{path}: the stream must end with exactly one `data: [DONE]` (last line {lines[-1][:60]!r})")
        events, malformed = [], 0
        for ln in lines:
            if ln.startswith("data: ") and ln != "data: [DONE]":
                try:
                    events.append(json.loads(ln[6:]))
                except ValueError:
                    malformed += 1
        framed &= tally.check(malformed == 0 and all(isinstance(e, dict) for e in events),
                              f"{path}: {malformed} events are not JSON objects")
        if not framed:
            broken.append(path)
        events = [e for e in events if isinstance(e, dict)]
        tokens = [e for e in events if e.get("choices")]
        pieces = [(c.get("text") if key == "text" else (c.get("delta") or {}).get("content")) or ""
                  for e in tokens for c in e["choices"][:1]]
        tally.check(len(tokens) == n, f"{path}: {len(tokens)} token chunks for max_tokens={n} (want one per token)")
        tally.check("".join(pieces) == want,
                    f"{path}: streamed text differs from the non-streamed greedy text (lost or duplicated tokens?)")
        usage = [e["usage"] for e in events if not e.get("choices") and isinstance(e.get("usage"), dict)]
        tally.check(bool(usage) and usage[-1].get("completion_tokens") == n,
                    f"{path}: include_usage must add a final chunk with usage.completion_tokens={n}")
    fraction, detail = tally.result("server-sent events")
    if broken:
        fraction *= 1 - len(broken) / 2
        detail += f"; broken framing on {', '.join(broken)}: no credit for that endpoint"
    return fraction, detail


async def _flood(url: str, n: int, t: float) -> list[tuple[int, str | None]]:
    """Open n streams at once; (status, Retry-After) of each once its headers arrive; then disconnect all."""
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=t) as client:
        async def one(i: int) -> tuple[int, str | None]:
            body = {"model": "tiny-gpt2", "prompt": f"{i} {PROMPT}", "max_tokens": 64, "ignore_eos": True, "stream": True}
            try:
                async with asyncio.timeout(t), client.stream("POST", "/v1/completions", json=body) as r:
                    if r.status_code == 200:
                        async for _ in wire.alines(r):  # the first event: the request was admitted
                            break
                    return r.status_code, r.headers.get("retry-after")
            except (TimeoutError, httpx.TimeoutException):
                return -1, None
            except httpx.HTTPError:
                return -2, None
        return await asyncio.gather(*(one(i) for i in range(n)))


def admission_control(url: str, t: float, max_batch: int, max_waiting: int) -> tuple[float, str]:
    n = max_batch + max_waiting + 32
    results = asyncio.run(_flood(url, n, t))
    codes = [c for c, _ in results]
    rejected = [ra for c, ra in results if c == 429]
    tally = Tally()
    if not tally.check(bool(rejected), f"{n} concurrent streams (max_batch {max_batch} + max_waiting {max_waiting} "
                                        "+ 32): none got HTTP 429; bound the waiting queue"):
        return 0.0, tally.result(f"flood of {n}: all {codes.count(200)} answered were admitted")[1]
    tally.check(bool(rejected) and all(ra is not None and ra.strip().isdigit() for ra in rejected),
                "429 answers need a Retry-After header (seconds)")
    bad = [c for c in codes if c >= 500 or c < 0]
    tally.check(not bad, f"{len(bad)} requests got a 5xx, a timeout or a dropped connection instead of 200 or 429")
    accepted = codes.count(200)
    tally.check(accepted >= max_batch, f"only {accepted} of {n} were admitted; admit at least max_batch={max_batch}")
    return tally.result(f"flood of {n}: {accepted} admitted, {len(rejected)} rejected with 429")


def running_gauge(url: str, t: float) -> float | None:
    """The value of the first gauge whose name has `running` in it, or None."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = wire.fetch("GET", url + "/metrics", t)[1].decode(errors="replace")
        for family in text_string_to_metric_families(text):
            if family.type == "gauge" and "running" in family.name and family.samples:
                return float(family.samples[0].value)
    except Exception:  # noqa: BLE001 - no usable gauge: the timing check decides alone
        return None
    return None


def wait_idle(url: str, t: float, limit_s: float = 30.0) -> None:
    """Let earlier work drain (bounded) so it does not load the next check or rate."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and (running_gauge(url, t) or 0) > 0:
        time.sleep(0.3)


async def _burst(url: str, n: int, t: float) -> float:
    async with httpx.AsyncClient(base_url=url, timeout=t) as client:
        started = time.perf_counter()
        await asyncio.gather(*(client.post("/v1/completions", json={
            "model": "tiny-gpt2", "prompt": f"{i} {PROMPT}", "max_tokens": 8, "ignore_eos": True}) for i in range(n)))
        return time.perf_counter() - started


async def _open_and_drop(url: str, n: int, t: float, max_tokens: int) -> int:
    """Open n long streams, read each one's first token, then disconnect them all; how many started."""
    started = 0
    async with httpx.AsyncClient(base_url=url, timeout=t) as client:
        async def one(i: int) -> None:
            nonlocal started
            body = {"model": "tiny-gpt2", "prompt": f"{i} {PROMPT}", "max_tokens": max_tokens, "ignore_eos": True,
                    "stream": True}
            async with client.stream("POST", "/v1/completions", json=body) as r:
                async for line in wire.alines(r):
                    if line.strip():  # any event: framing is the streaming part's business, not this one's
                        started += 1
                        return  # leaving the block closes the connection mid-stream

        tasks = [asyncio.create_task(one(i)) for i in range(n)]
        _, pending = await asyncio.wait(tasks, timeout=t)
        for task in pending:  # streams that never started (a server that serves one at a time)
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return started


def cancellation(url: str, t: float, max_batch: int) -> tuple[float, str]:
    """Fill every batch slot with long streams, disconnect them, and check that capacity comes back at once:
    a burst of max_batch short requests takes about as long as on an idle server, and the running gauge drops."""
    tally = Tally()
    baseline = asyncio.run(_burst(url, max_batch, t))
    started = asyncio.run(_open_and_drop(url, max_batch, t / 2, max_tokens=400))
    if not tally.check(started >= max_batch // 2, f"only {started} of {max_batch} concurrent long streams started "
                                                   f"within {t / 2:g} s, so disconnecting could not be tested"):
        return tally.result("cancellation")
    time.sleep(0.5)
    after = asyncio.run(_burst(url, max_batch, t))
    allowed = 2.5 * baseline + 1.0
    tally.check(after <= allowed, f"after {started} streams disconnected, {max_batch} short requests took {after:.1f} s "
                                  f"vs {baseline:.1f} s on an idle server: the dropped requests still hold their slots")
    gauge = running_gauge(url, t)
    if gauge is not None:
        tally.check(gauge == 0, f"the running-requests gauge shows {gauge:g} after every client left")
    return tally.result(f"{started} streams dropped mid-way; {max_batch} short requests then took {after:.1f} s "
                        f"(idle: {baseline:.1f} s)")


def metrics_endpoint(url: str, t: float) -> tuple[float, str]:
    from prometheus_client.parser import text_string_to_metric_families

    tally = Tally()
    status, raw = wire.fetch("GET", url + "/metrics", t)
    if not tally.check(status == 200, f"GET /metrics answered HTTP {status}"):
        return tally.result("Prometheus /metrics")
    try:
        families = list(text_string_to_metric_families(raw.decode(errors="replace")))
    except Exception as exc:  # noqa: BLE001 - the parser raises several types on bad text
        tally.check(False, f"not Prometheus text format ({type(exc).__name__}: {str(exc)[:120]})")
        return tally.result("Prometheus /metrics")
    tally.check(True, "")
    ttft = [f for f in families if f.name.endswith("time_to_first_token_seconds")]
    hist = ttft[0] if ttft else None
    tally.check(hist is not None and hist.type == "histogram", "no histogram named *_time_to_first_token_seconds")
    if hist is not None:
        names = {s.name for s in hist.samples}
        tally.check({hist.name + "_bucket", hist.name + "_sum", hist.name + "_count"} <= names,
                    "the TTFT histogram needs _bucket, _sum and _count samples")
        count = sum(s.value for s in hist.samples if s.name == hist.name + "_count")
        tally.check(count > 0, "the TTFT histogram's _count is 0 after the grader's requests")
    counters = [f for f in families if f.type == "counter"]
    tally.check(bool(counters) and all(s.name.endswith(("_total", "_created")) for f in counters for s in f.samples),
                "expose counters (e.g. generated tokens) whose samples end in _total")
    return tally.result("Prometheus /metrics")
