"""How far a client's TTFT is from the server's own: a lean raw-socket probe of the serving lab's server.

    figures = asyncio.run(probe("http://127.0.0.1:8100", n=30, max_tokens=8))
    figures["median_diff_ms"], figures["p90_diff_ms"], figures["samples"]

The load generator (`graders.serving.client`, httpx) spends ~2 ms of its own building and writing
each request, which lands in its TTFT. This probe keeps one keep-alive connection from
`asyncio.open_connection`, writes a request serialised in advance, and parses the chunked SSE
response by hand, so what it measures is the server plus the loopback socket.

Both sides are compared as durations, never as absolute stamps: client TTFT is just before the
request bytes are written -> the first `data:` token event read; server TTFT is
`server_timing.first_token - server_timing.arrival` from the usage chunk (the server's ASGI
middleware stamps arrival, its stream stamps the first token before handing it to the HTTP
layer). The difference is the time the request spends in flight to the server plus the first
chunk's way back. Sequential requests on an idle server; the first few are warm-up, not counted.
"""
from __future__ import annotations

import asyncio
import json
import statistics
import time
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class Sample:
    client_ttft_s: float
    server_ttft_s: float

    @property
    def diff_ms(self) -> float:
        return (self.client_ttft_s - self.server_ttft_s) * 1e3


def request_bytes(host: str, port: int, prompt: str, max_tokens: int) -> bytes:
    body = json.dumps({"model": "tiny-gpt2", "prompt": prompt, "max_tokens": max_tokens, "stream": True,
                       "ignore_eos": True, "stream_options": {"include_usage": True}},
                      separators=(",", ":")).encode()
    head = (f"POST /v1/completions HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Accept: text/event-stream\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def _read_head(reader: asyncio.StreamReader) -> None:
    status = await reader.readline()
    if not status.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"the server answered {status.decode(errors='replace').strip()!r}, not 200")
    headers = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        k, _, v = line.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip().lower()
    if headers.get("transfer-encoding") != "chunked":
        raise RuntimeError(f"expected a chunked event stream, got headers {headers}")


async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes) -> Sample:
    """One streamed completion on an open connection: (client TTFT, server TTFT)."""
    sent = time.perf_counter()
    writer.write(raw)
    await writer.drain()
    await _read_head(reader)
    first: float | None = None
    timing: dict | None = None
    buf = b""
    while True:
        size = int((await reader.readline()).split(b";")[0], 16)
        if size == 0:
            await reader.readline()  # the CRLF after the last chunk
            break
        buf += await reader.readexactly(size + 2)
        buf = buf[:-2]
        now = time.perf_counter()
        *lines, buf = buf.split(b"\n")
        for line in lines:
            if not line.startswith(b"data: ") or line == b"data: [DONE]":
                continue
            obj = json.loads(line[6:])
            if obj.get("choices") and first is None:
                first = now
            elif "server_timing" in obj:
                timing = obj["server_timing"]
            elif "error" in obj:
                raise RuntimeError(f"the server streamed an error: {obj['error']}")
    if first is None or timing is None:
        raise RuntimeError("the stream had no token event or no usage chunk with server_timing")
    return Sample(first - sent, timing["first_token"] - timing["arrival"])


async def probe(url: str, n: int = 30, max_tokens: int = 8, warmup: int = 3,
                prompt: str = "def f(x): return x") -> dict:
    """median and p90 of client TTFT - server TTFT in ms over `n` sequential requests, plus the samples."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname != "127.0.0.1" or parts.port is None:
        raise ValueError(f"the probe only targets http://127.0.0.1:<port>; refusing {url!r}")
    if n < 1 or max_tokens < 1:
        raise ValueError(f"n and max_tokens must be >= 1 (got n={n}, max_tokens={max_tokens})")
    raw = request_bytes(parts.hostname, parts.port, prompt, max_tokens)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        samples = []
        for i in range(warmup + n):
            s = await asyncio.wait_for(one(reader, writer, raw), timeout=30)
            if i >= warmup:
                samples.append(s)
    finally:
        writer.close()
        await writer.wait_closed()
    diffs = sorted(s.diff_ms for s in samples)
    return {"median_diff_ms": statistics.median(diffs),
            "p90_diff_ms": diffs[min(len(diffs) - 1, round(0.9 * (len(diffs) - 1)))],
            "samples": samples}
