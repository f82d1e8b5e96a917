'''Answer-cell code of the serving lab's example submissions (read by make_notebook.py), keyed by grade_id.

- naive: everything works, but the scheduler serves one request at a time: a lock around each
  request's whole generation (batch size 1, no continuous batching) and no admission bound
  (never 429), so under load its queue and TTFT grow without limit and goodput collapses.
- broken: the reference solution except `sse`, which writes malformed events (no `data: `
  prefix, one newline, the end marker JSON-quoted): every stream is unreadable and never ends
  with `data: [DONE]`.

"_default": "solution" fills every answer cell not listed with the reference solution.
'''
from __future__ import annotations

NAIVE_SCHEDULER = """
class QueueFull(Exception):
    \"\"\"Never raised: this scheduler queues without bound.\"\"\"


@dataclass
class Job:
    request_id: str
    prompt_ids: list
    max_tokens: int
    stop_ids: frozenset
    arrival: float = field(default_factory=time.monotonic)
    released: bool = False


class Scheduler:
    \"\"\"One request at a time: simple and correct, but the engine never batches.\"\"\"

    def __init__(self, engine: Engine, max_waiting: int = 64, timeout_s: float = 30.0) -> None:
        self.engine = engine
        self.timeout_s = timeout_s
        self.inflight = 0
        self._lock = asyncio.Lock()
        self._engine_lock = threading.Lock()  # a step in the worker thread vs an abort from the loop

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def submit(self, prompt_ids: list, max_tokens: int, stop_ids=frozenset()) -> Job:
        self.inflight += 1
        return Job(uuid.uuid4().hex, list(prompt_ids), max_tokens, frozenset(stop_ids))

    def release(self, job: Job) -> None:
        if not job.released:
            job.released = True
            self.inflight -= 1

    def _step(self) -> list:
        with self._engine_lock:
            return self.engine.step()

    async def stream(self, job: Job) -> AsyncIterator[StepOutput]:
        try:
            async with self._lock:
                with self._engine_lock:
                    self.engine.add(job.request_id, job.prompt_ids, job.max_tokens, job.stop_ids)
                try:
                    while True:
                        for out in await asyncio.to_thread(self._step):
                            yield out
                            if out.finished:
                                return
                finally:
                    with self._engine_lock:
                        self.engine.abort(job.request_id)
        finally:
            self.release(job)
"""

NAIVE_WRITTEN = """
Use the biggest batch and the biggest queue: more requests in flight means more throughput, so
the cost per token is lowest.
"""

BROKEN_SSE = """
def sse(obj: dict | str) -> bytes:
    return (json.dumps(obj) + "\\n").encode()
"""

EXAMPLES: dict[str, dict[str, str]] = {
    "naive": {"_default": "solution", "task_2_scheduler": NAIVE_SCHEDULER, "task_4_1_written": NAIVE_WRITTEN},
    "broken": {"_default": "solution", "task_1_1_sse": BROKEN_SSE},
}
