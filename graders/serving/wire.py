"""Bounded reads of a candidate server's replies: a hostile or broken server may answer with an endless
body or a gigabyte line, and the grader must read neither into memory.

`fetch` reads a whole reply up to MAX_BODY bytes (cut short beyond: what follows cannot make it valid).
`lines` / `alines` yield a stream's lines like httpx's `iter_lines`, but end with WireError when one
line passes MAX_LINE or the stream passes MAX_STREAM.
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx

from graders.engine.sandbox import read_bounded

MAX_BODY = 8 * 1024 * 1024     # one non-streamed reply
MAX_LINE = 1024 * 1024         # one SSE line (an event is a few hundred bytes)
MAX_STREAM = 64 * 1024 * 1024  # one streamed reply


class WireError(ValueError):
    """The server's reply passed a size limit."""


def fetch(method: str, url: str, timeout: float, **kwargs: Any) -> tuple[int, bytes]:
    """(status, body) with the body cut at MAX_BODY bytes."""
    with httpx.Client(timeout=timeout) as client:
        return read_bounded(client, method, url, MAX_BODY, cut=True, **kwargs)


class _Splitter:
    def __init__(self) -> None:
        self.buffer, self.total = "", 0

    def feed(self, text: str) -> list[str]:
        self.total += len(text)
        if self.total > MAX_STREAM:
            raise WireError(f"the stream passed {MAX_STREAM >> 20} MiB")
        self.buffer += text
        *done, self.buffer = self.buffer.split("\n")
        if len(self.buffer) > MAX_LINE:
            raise WireError(f"a line of the stream passed {MAX_LINE >> 20} MiB")
        return [line.rstrip("\r") for line in done]


def lines(reply: httpx.Response) -> Iterator[str]:
    splitter = _Splitter()
    for text in reply.iter_text():
        yield from splitter.feed(text)
    if splitter.buffer:
        yield splitter.buffer.rstrip("\r")


async def alines(reply: httpx.Response) -> AsyncIterator[str]:
    splitter = _Splitter()
    async for text in reply.aiter_text():
        for line in splitter.feed(text):
            yield line
    if splitter.buffer:
        yield splitter.buffer.rstrip("\r")
