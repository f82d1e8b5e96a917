"""Locust file for manual runs against a RAG worker's /search on 127.0.0.1.

    locust -f benchmarks/locustfiles/rag_search.py --host http://127.0.0.1:PORT \
        --headless -u 8 -r 8 -t 30s
The grader uses the same request shape through graders.engine.loadgen.
"""
from locust import FastHttpUser, constant, task

QUERIES = [
    "how do I return shoes I bought last week",
    "AX-420 error E-1043",
    "shipping times for premium members in Australia",
    "warranty claim for a broken blender",
]


class SearchUser(FastHttpUser):
    wait_time = constant(0)
    i = 0

    def on_start(self) -> None:
        if not self.host.startswith("http://127.0.0.1:"):
            raise SystemExit("load tests only target 127.0.0.1")

    @task
    def search(self) -> None:
        SearchUser.i += 1
        self.client.post("/search", json={"query": QUERIES[self.i % len(QUERIES)], "k": 10})
