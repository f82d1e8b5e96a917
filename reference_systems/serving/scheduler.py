"""Continuous batching: one thread runs engine steps; requests join and leave between decode steps.

The asyncio side (HTTP handlers) never touches the engine. It `submit()`s a `Handle` and reads
the handle's tokens; adds and aborts go through an inbox the engine thread drains before each
step, and tokens come back through `loop.call_soon_threadsafe`. Admission is bounded: at most
`max_batch` running plus `max_waiting` queued requests; beyond that `submit` raises `QueueFull`
(the server answers 429 with Retry-After) instead of letting latency grow without bound.
"""
from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from reference_systems.serving.engine import Engine, StepOutput


class QueueFull(Exception):
    """No room: the running batch and the waiting queue are full."""


@dataclass
class Handle:
    """One request's way in and out of the scheduler, with server-side timestamps (time.monotonic)."""
    request_id: str
    prompt_ids: list[int]
    max_tokens: int
    stop_ids: frozenset[int]
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    arrival: float = field(default_factory=time.monotonic)
    first_token: float | None = None
    finish: float | None = None
    done: bool = False
    released: bool = False

    async def tokens(self) -> AsyncIterator[StepOutput]:
        while True:
            out = await self.queue.get()
            if isinstance(out, BaseException):
                raise out
            yield out
            if out.finished:
                return


class Scheduler:
    def __init__(self, engine: Engine, max_waiting: int = 64, on_step=None) -> None:
        self.engine = engine
        self.capacity = engine.max_batch + max_waiting
        self.inflight = 0  # admitted and not yet released; only touched on the event loop
        self.on_step = on_step  # called in the engine thread after each step with (running, waiting)
        self._inbox: deque[tuple[str, Handle | str]] = deque()
        self._handles: dict[str, Handle] = {}
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="engine-steps", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop = True
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=10)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- event-loop side ------------------------------------------------------------------------
    def submit(self, handle: Handle) -> None:
        if self.inflight >= self.capacity:
            raise QueueFull(f"{self.inflight} requests in flight (limit {self.capacity})")
        self.inflight += 1
        self._inbox.append(("add", handle))
        self._wake.set()

    def tokens(self, handle: Handle) -> AsyncIterator[StepOutput]:
        return handle.tokens()

    def release(self, handle: Handle) -> None:
        """The handler is done with `handle` (finished, failed, timed out or client gone): free its slot."""
        if handle.released:
            return
        handle.released = True
        if handle.finish is None:
            handle.finish = time.monotonic()
        self.inflight -= 1
        if not handle.done:
            self._inbox.append(("abort", handle.request_id))
            self._wake.set()

    # -- engine thread --------------------------------------------------------------------------
    def _drain(self) -> None:
        while self._inbox:
            kind, item = self._inbox.popleft()
            if kind == "add":
                h = item
                assert isinstance(h, Handle)
                try:
                    self.engine.add(h.request_id, h.prompt_ids, h.max_tokens, h.stop_ids)
                    self._handles[h.request_id] = h
                except ValueError as e:
                    h.done = True
                    h.loop.call_soon_threadsafe(h.queue.put_nowait, e)
            else:
                assert isinstance(item, str)
                if self._handles.pop(item, None) is not None:
                    self.engine.abort(item)

    def _run(self) -> None:
        while not self._stop:
            self._drain()
            if not self.engine.has_work():
                if self.on_step:
                    self.on_step(0, 0)
                self._wake.wait(timeout=1.0)
                self._wake.clear()
                continue
            try:
                outs = self.engine.step()
            except Exception as e:  # noqa: BLE001  (a broken step fails its requests, not the server)
                for rid, h in list(self._handles.items()):
                    self.engine.abort(rid)
                    h.done = True
                    h.loop.call_soon_threadsafe(h.queue.put_nowait, RuntimeError(f"engine step failed: {e!r}"))
                self._handles.clear()
                continue
            by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Handle, StepOutput]]] = {}
            for o in outs:
                owner = self._handles.get(o.request_id)
                if owner is None:
                    continue
                if o.finished:
                    owner.done = True
                    del self._handles[o.request_id]
                by_loop.setdefault(owner.loop, []).append((owner, o))
            for loop, items in by_loop.items():  # one wake-up of the event loop per step, not per token
                loop.call_soon_threadsafe(_deliver, items)
            if self.on_step:
                self.on_step(self.engine.num_running, self.engine.num_waiting)


def _deliver(items: list[tuple[Handle, StepOutput]]) -> None:
    for h, o in items:
        h.queue.put_nowait(o)
