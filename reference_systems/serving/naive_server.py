"""The baseline: the same OpenAI-compatible API, serving one request at a time at batch size 1.

A lock is held around each request's whole generation, so concurrent requests queue behind
it (no bound, no 429) and the engine never batches: what a first attempt usually looks like,
and what the reference's continuous batching is measured against.
"""
from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable

from fastapi import FastAPI

from reference_systems.serving.engine import Engine, StepOutput
from reference_systems.serving.scheduler import Handle
from reference_systems.serving.server import ServerConfig, create_app


class NaiveBackend:
    def __init__(self, engine: Engine, cfg: ServerConfig, on_step: Callable[[int, int], None]) -> None:
        self.engine = engine
        self.on_step = on_step
        self._lock = asyncio.Lock()               # one request generates at a time
        self._engine_lock = threading.Lock()     # a step in a worker thread vs an abort from the loop
        self._waiting = 0

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def alive(self) -> bool:
        return True

    def submit(self, handle: Handle) -> None:
        self._waiting += 1
        self.on_step(int(self._lock.locked()), self._waiting)

    def release(self, handle: Handle) -> None:
        with self._engine_lock:
            self.engine.abort(handle.request_id)

    def _step(self) -> list[StepOutput]:
        with self._engine_lock:
            return self.engine.step()

    async def tokens(self, handle: Handle) -> AsyncIterator[StepOutput]:
        try:
            await self._lock.acquire()
        finally:
            self._waiting -= 1
        try:
            self.on_step(1, self._waiting)
            with self._engine_lock:
                self.engine.add(handle.request_id, handle.prompt_ids, handle.max_tokens, handle.stop_ids)
            while True:
                for out in await asyncio.to_thread(self._step):
                    yield out
                    if out.finished:
                        return
        finally:
            with self._engine_lock:
                self.engine.abort(handle.request_id)
            self._lock.release()
            self.on_step(0, self._waiting)


def create_naive_app(engine_cfg: ServerConfig | None = None, *, engine: Engine | None = None) -> FastAPI:
    cfg = engine_cfg or ServerConfig()
    engine = engine or Engine(cfg.model_dir, max_batch=1, threads=cfg.threads, device=cfg.device)
    return create_app(cfg, engine=engine, backend_factory=NaiveBackend)
