"""Locust file for manual runs against a RAG worker's /search on 127.0.0.1, with the grader's request shape.

Start a worker (python -m graders.engine.worker --module M.py --adapters graders.rag.adapters --port N,
then POST /call {"fn": "index", ...}) and run, e.g. with the quick profile of labs/rag/lab.toml:
    locust -f benchmarks/locustfiles/rag_search.py --host http://127.0.0.1:N --headless -u 4 -r 4 -t 6s
Like the grader's load phase, every request is a query the worker has not been sent before: seeded
rewrites (graders.rag.loadstream) of the public dev queries of the default dataset (AILAB_LOAD_DATASET
overrides it, AILAB_LOAD_SEED fixes the seed), each sent once; the users stop when the stream runs out.
The grader drives the same stream through graders.engine.loadgen, keeps raw samples and checks the answers.
"""
import os
import random

from locust import FastHttpUser, constant, task
from locust.exception import StopUser

from graders.datasets import load_dataset
from graders.rag.loadstream import build

SEED = int(os.environ.get("AILAB_LOAD_SEED", random.randrange(2**31)))
DEV = load_dataset(os.environ.get("AILAB_LOAD_DATASET", "support-kb")).split("dev").queries
QUERIES = build(DEV, 20_000, 0, SEED).texts


class SearchUser(FastHttpUser):
    wait_time = constant(0)
    next_query = 0

    def on_start(self) -> None:
        if not (self.host or "").startswith("http://127.0.0.1:"):
            raise SystemExit("load tests only target 127.0.0.1")

    @task
    def search(self) -> None:
        if SearchUser.next_query >= len(QUERIES):
            raise StopUser()
        query = QUERIES[SearchUser.next_query]
        SearchUser.next_query += 1
        with self.client.post("/search", json={"query": query, "k": 10}, catch_response=True) as r:
            if r.status_code != 200 or not r.json().get("ok"):
                r.failure(f"search failed: {r.text[:200]}")
