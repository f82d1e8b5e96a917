"""The support assistant's backend: retriever, query-embedding cache and model server, with a fault injector.

Runs as its own process on 127.0.0.1, started by the grader; the submission only reaches it through
the lab's `Pipeline` (graders.observability.host), like a service calling a vector store and a model
server. Keeping the injector here is what makes faults invisible except through telemetry.

    python -m reference_systems.observability.backend --port N   (the fault token is read from stdin)

POST /retrieve {"query", "k"}       -> {"hits": [...], "cache_hit": bool, "query_embedding": [...]}
POST /generate {"prompt", "max_tokens"} -> NDJSON stream: {"text"} per token, then {"done": true, usage...};
                                        HTTP 503 during an error burst, 429 when the queue is full
POST /faults {"token", "fault", "active"} -> switch a fault (the grader holds the token)
GET /metrics -> this process's resource metrics (process_*), as a node exporter would expose them
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import threading
import time
import uuid
from collections import OrderedDict
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from fastapi import Request  # module level: FastAPI resolves string annotations in module globals

from graders.engine.labconfig import load_lab

MAX_PROMPT_TOKENS = 256
CACHE_SIZE = 4096


class FaultInjector:
    """Named faults from lab.toml [faults], each on or off; parameters are read from the same table."""

    def __init__(self, catalogue: dict[str, dict[str, Any]]) -> None:
        self.catalogue = catalogue
        self.active: set[str] = set()
        self.rng = random.Random(0)
        self.leaked: list[bytearray] = []
        self._leak_thread: threading.Thread | None = None

    def on(self, name: str) -> bool:
        return name in self.active

    def param(self, name: str, key: str) -> float:
        return float(self.catalogue[name][key])

    def switch(self, name: str, active: bool) -> None:
        if name not in self.catalogue:
            raise KeyError(name)
        if active:
            self.active.add(name)
        else:
            self.active.discard(name)
        if name == "memory_leak" and active and self._leak_thread is None:
            self._leak_thread = threading.Thread(target=self._leak, daemon=True)
            self._leak_thread.start()

    def _leak(self) -> None:
        """Keep `mb_per_s` of touched memory per second while the fault is on; give it all back after."""
        step_s = 0.25
        chunk = int(self.param("memory_leak", "mb_per_s") * step_s * 1024 * 1024)
        while self.on("memory_leak"):
            self.leaked.append(bytearray(b"\x01") * chunk)  # filled, so the pages are really resident
            time.sleep(step_s)
        self.leaked.clear()
        self._leak_thread = None


class KnowledgeBase:
    """The reference hybrid retriever (first pass only: BM25 + MiniLM, score fusion) over support-kb."""

    def __init__(self, n_docs: int, kept_fraction: float) -> None:
        from graders.datasets.embedded import support_kb
        from reference_systems.rag.retriever import Retriever

        self.docs = [{"id": d.id, "title": d.title, "text": d.text} for d in support_kb(n_docs).docs]
        self.retriever = Retriever(prf=False)
        self.retriever.index(self.docs)
        rows = np.random.default_rng(7).random(len(self.docs))
        self.kept = rows < kept_fraction  # the rows a degraded index still finds
        self.cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self.lock = threading.Lock()

    def embed(self, query: str, use_cache: bool) -> tuple[np.ndarray, bool]:
        with self.lock:
            vec = self.cache.get(query) if use_cache else None
            if vec is not None:
                self.cache.move_to_end(query)
                return vec, True
        vec = self.retriever.embed_query(query)
        with self.lock:
            self.cache[query] = vec
            while len(self.cache) > CACHE_SIZE:
                self.cache.popitem(last=False)
        return vec, False

    def search(self, query: str, k: int, use_cache: bool, degraded: bool) -> dict[str, Any]:
        from reference_systems.rag.lexical import top_k

        r = self.retriever
        qvec, cache_hit = self.embed(query, use_cache)
        depth = r.config.depth
        runs = [top_k(r.bm25.scores(r.bm25.query_terms(query)), depth), r._dense_rows(qvec, depth)]
        if degraded:
            runs = [[(row, s) for row, s in run if self.kept[row]] for run in runs]
        ranked = r._fuse([run for run in runs if run])[:k] if any(runs) else []
        hits = [{"doc_id": self.docs[row]["id"], "title": self.docs[row]["title"], "text": self.docs[row]["text"][:400],
                 "score": float(r.doc_vecs[row] @ qvec)} for row, _ in ranked]
        return {"hits": hits, "cache_hit": cache_hit, "query_embedding": [round(float(x), 5) for x in qvec]}


def create_app(token: str, n_docs: int = 1200) -> Any:
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, Response, StreamingResponse
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest

    from labkit.serving import Detokenizer
    from reference_systems.serving.engine import Engine
    from reference_systems.serving.model import model_dir
    from reference_systems.serving.scheduler import Handle, QueueFull, Scheduler

    lab = load_lab("observability")
    faults = FaultInjector(lab.raw["faults"])
    t0 = time.perf_counter()
    retrieval = KnowledgeBase(n_docs, faults.param("index_degradation", "kept_fraction"))
    engine = Engine(model_dir(), max_batch=16, threads=1)
    tok = engine.tokenizer

    def on_step(running: int, waiting: int) -> None:  # engine thread, after every decode step
        if faults.on("engine_slowdown"):
            time.sleep(faults.param("engine_slowdown", "step_delay_s"))

    scheduler = Scheduler(engine, max_waiting=64, on_step=on_step)
    print(f"backend ready in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        scheduler.start()
        yield
        scheduler.stop()

    app = FastAPI(title="ailab support-assistant backend", lifespan=lifespan)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"ok": scheduler.alive(), "error": None if scheduler.alive() else "engine thread not running"}

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/faults")
    async def switch(request: Request) -> JSONResponse:
        body = await request.json()
        if body.get("token") != token:
            return JSONResponse({"error": "wrong token"}, status_code=403)
        try:
            faults.switch(str(body["fault"]), bool(body["active"]))
        except KeyError:
            return JSONResponse({"error": f"unknown fault {body.get('fault')!r}"}, status_code=400)
        return JSONResponse({"ok": True})

    @app.post("/retrieve")
    def retrieve(body: dict[str, Any]) -> JSONResponse:
        query, k = body.get("query"), body.get("k", 5)
        if not isinstance(query, str) or not query.strip() or not isinstance(k, int) or not 1 <= k <= 50:
            return JSONResponse({"error": "send {'query': non-empty str, 'k': int in 1..50}"}, status_code=400)
        if faults.on("retriever_latency"):
            time.sleep(faults.param("retriever_latency", "delay_s"))
        return JSONResponse(retrieval.search(query, k, use_cache=not faults.on("cache_miss"),
                                             degraded=faults.on("index_degradation")))

    @app.post("/generate")
    async def generate(body: dict[str, Any]) -> Response:
        prompt, max_tokens = body.get("prompt"), body.get("max_tokens", 24)
        if not isinstance(prompt, str) or not isinstance(max_tokens, int) or not 1 <= max_tokens <= 128:
            return JSONResponse({"error": "send {'prompt': str, 'max_tokens': int in 1..128}"}, status_code=400)
        if faults.on("error_burst") and faults.rng.random() < faults.param("error_burst", "error_rate"):
            return JSONResponse({"error": "model server overloaded"}, status_code=503)
        ids = tok(prompt).input_ids[-MAX_PROMPT_TOKENS:] or [engine.eos_id]
        handle = Handle(uuid.uuid4().hex, ids, max_tokens, frozenset({engine.eos_id}), asyncio.get_running_loop())
        try:
            scheduler.submit(handle)
        except QueueFull as exc:
            return JSONResponse({"error": f"busy: {exc}"}, status_code=429, headers={"Retry-After": "1"})

        async def stream():  # type: ignore[no-untyped-def]
            detok, n, reason = Detokenizer(tok), 0, "length"
            try:
                async for out in handle.tokens():
                    n += 1
                    text = "" if out.finish_reason == "stop" else detok.push(out.token_id, last=out.finished)
                    yield json.dumps({"text": text}) + "\n"
                    if out.finished:
                        reason = out.finish_reason or "length"
                yield json.dumps({"done": True, "input_tokens": len(ids), "output_tokens": n,
                                  "finish_reason": reason}) + "\n"
            finally:
                scheduler.release(handle)

        return StreamingResponse(stream(), media_type="application/x-ndjson")

    return app


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--docs", type=int, default=1200)
    args = ap.parse_args(argv)
    token = sys.stdin.readline().strip()  # not argv or the environment: other processes of this user can read those
    if not token:
        raise SystemExit("write the fault-control token on the first line of stdin")
    import uvicorn

    sys.setswitchinterval(0.001)  # as in the serving reference: the engine thread holds the GIL between steps
    uvicorn.run(create_app(token, args.docs), host="127.0.0.1", port=args.port, log_level="warning",
                access_log=False, timeout_graceful_shutdown=2)


if __name__ == "__main__":
    main()
