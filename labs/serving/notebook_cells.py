'''The serving lab notebook's cells: text, reference solutions and autograder tests (read by make_notebook.py).

Kinds as in labs/rag/notebook_cells.py: "markdown", "setup" (locked code), "answer" (solution
between BEGIN/END SOLUTION), "test" (points; hidden tests between BEGIN/END HIDDEN TESTS),
"written" (graded by hand), "explore" (tagged ailab-exclude: not part of the submission).

The tests drive the real engine (tiny GPT-2, one torch thread) with a handful of tokens and talk
to the app through FastAPI's in-process TestClient, so every test cell takes about a second.

ONE SOURCE where the reference has the notebook's contract: Task 1.1's `sse` is cut from
reference_systems/serving/openai_api.py at its `# @cell` marker (graders.engine.nbbuild.reference_cells). The
other solutions are written here: the notebook's builders (`chunk`, `usage_chunk`, `response`), `Scheduler`/`Job`
and `create_app` are a smaller API than the reference's `Shaper`, `Scheduler`/`Handle` (server timing, step hooks)
and server (CUDA, metrics of its own), chosen so that each task fits a notebook cell.
'''
from __future__ import annotations

from pathlib import Path
from typing import Any

from graders.engine.nbbuild import reference_cells

CODE = reference_cells(Path(__file__).resolve().parents[2] / "reference_systems" / "serving" / "openai_api.py")


def stub(task: str, name: str) -> str:
    """The code a release notebook shows in place of each solution region."""
    return f'# YOUR CODE HERE\nraise NotImplementedError("Task {task}: implement {name}")'


INTRO = """
# Lab: an LLM inference server

You will build an OpenAI-compatible inference server for a small language model: streaming
responses, **continuous batching**, admission control, cancellation and Prometheus metrics.
The model and its KV-cached engine are given (`labkit.serving.Engine`); everything between the
engine and the HTTP client is yours.

| Part | Task | What you write | Weight |
|---|---|---|---|
| Correctness | 1.1, 1.2, 3.1 | `sse`, the response builders, `create_app` | |
| Streaming | 1.1, 3.1 | one SSE chunk per token, ending with `data: [DONE]` | |
| Continuous batching | 2.1 | `Scheduler`: requests join the running batch between decode steps | |
| Admission control, cancellation | 2.2 | a bounded queue (429 + `Retry-After`), abort on disconnect, timeouts | |
| Metrics | 3.1 | `/metrics` with a time-to-first-token histogram | |
| Goodput, latency | all | requests/s meeting the SLO under open-loop load, vs the reference | |
| Written | 4.1 | a cost question, graded by hand | 5 points |

Weights are in `labs/serving/lab.toml` (`[parts]`).

**How it is graded.** Every code cell that is not a test cell and not tagged `ailab-exclude`
becomes your module. The grader calls your `create_app(engine, config)` with a fresh engine and
the settings of `lab.toml [server]` (`config.max_batch`, `config.max_waiting`,
`config.request_timeout_s`), serves the app with uvicorn on 127.0.0.1 and talks to it over HTTP
only: correctness and streaming checks, then Poisson load at several request rates, measuring
time to first token (TTFT), time per output token (TPOT) and **goodput** (requests/s that meet
TTFT ≤ 1 s and TPOT ≤ 100 ms), relative to the reference server in the same run. The test
cells are worth the points shown and hold hidden tests too: passing the visible asserts is
necessary, not sufficient.

**The engine's step API** (read it; it is the only way to the model):

```python
engine.add(request_id, prompt_ids, max_tokens, stop_ids)  # queue a request (not thread-safe)
engine.step() -> list[StepOutput]   # prefill new requests + one decode step for every running one
engine.abort(request_id)            # drop a request, free its slot
engine.has_work(), engine.num_running, engine.num_waiting, engine.max_batch
engine.tokenizer, engine.eos_id, engine.max_len
```

A step takes milliseconds and is about as fast for 32 requests as for 1: that is the whole
point of batching. The engine is not thread-safe: exactly one thread may call it.

Check your work any time with `ailab check serving.ipynb`.
"""

SETUP = """
# Setup (locked): the libraries this lab uses. Run this cell first.
import asyncio
import json
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from labkit.serving import Detokenizer, Engine, StepOutput, load_engine

MODEL_NAME = "tiny-gpt2"
"""

TEST_HELPERS = '''
# Test helpers (locked): the tests below use these; they are not part of your module's API.
@dataclass
class Settings:  # what the grader passes as `config`
    max_batch: int = 4
    max_waiting: int = 4
    request_timeout_s: float = 30.0


def sse_events(body: str) -> list:
    """Parse a server-sent-events body into its `data:` payloads (JSON objects, or the string "[DONE]")."""
    events = []
    for block in body.split("\\n\\n"):
        if not block.strip():
            continue
        assert block.startswith("data: "), f"an SSE event must start with 'data: ', got {block[:60]!r}"
        data = block[len("data: "):]
        events.append(data if data == "[DONE]" else json.loads(data))
    return events


def run_async(coro):
    """asyncio.run in a fresh thread: Jupyter's own event loop is already running in this one."""
    import concurrent.futures
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()
'''

# ---------------------------------------------------------------- Task 1.1
T11 = """
## Task 1.1 — Server-sent events (streaming wire format)

OpenAI-compatible servers stream with [server-sent events](https://html.spec.whatwg.org/multipage/server-sent-events.html):
each event is `data: <payload>` followed by a blank line. Write `sse(obj) -> bytes`: a dict
becomes `data: <compact JSON>\\n\\n`; a string (the end marker `"[DONE]"`) is sent as is:
`data: [DONE]\\n\\n`.

<details><summary>Hints</summary>

- `json.dumps(obj, separators=(",", ":"))` drops the spaces: one token's chunk is sent per
  token, so every byte counts at thousands of tokens per second.
- The blank line (`\\n\\n`) is what ends an event; a client that reads `\\n` only waits forever.
</details>
"""

TEST11 = """
# Task 1.1 tests
assert sse("[DONE]") == b"data: [DONE]\\n\\n"
event = sse({"a": 1, "b": "x y"})
assert isinstance(event, bytes), f"sse must return bytes, got {type(event).__name__}"
assert event.startswith(b"data: ") and event.endswith(b"\\n\\n"), event
assert json.loads(event[len(b"data: "):]) == {"a": 1, "b": "x y"}
### BEGIN HIDDEN TESTS
assert sse({"t": "é\\n"}).count(b"\\n\\n") == 1, "a newline in the payload must be JSON-escaped"
assert b" " not in sse({"k": [1, 2]})[len(b"data: "):], "use compact JSON"
assert sse_events(sse({"x": 1}).decode() + sse("[DONE]").decode()) == [{"x": 1}, "[DONE]"]
### END HIDDEN TESTS
"""

# ---------------------------------------------------------------- Task 1.2
T12 = """
## Task 1.2 — Response objects with usage

Write the builders the routes use (field names are OpenAI's, see the
[completions](https://platform.openai.com/docs/api-reference/completions/object) and
[chat](https://platform.openai.com/docs/api-reference/chat/streaming) references):

- `usage(prompt_tokens, completion_tokens)` → `{"prompt_tokens", "completion_tokens", "total_tokens"}`.
- `chunk(request_id, text, finish_reason, chat)`: one streamed token. Completions:
  `{"id", "object": "text_completion", "created", "model", "choices": [{"index": 0, "text", "finish_reason"}]}`;
  chat: `"object": "chat.completion.chunk"` and `"delta": {"role": "assistant", "content": text}`
  instead of `"text"`. `finish_reason` is `None` except on the last token (`"stop"` or `"length"`).
- `usage_chunk(request_id, usage, chat)`: the optional last chunk of a stream: `"choices": []` and `"usage"`.
- `response(request_id, text, finish_reason, usage, chat)`: a whole (non-streamed) answer:
  `"object": "text_completion"` with `"text"`, or `"chat.completion"` with
  `"message": {"role": "assistant", "content": text}`; both with `"usage"`.

`model` is `MODEL_NAME`; `created` is a Unix time in seconds.
"""

A12 = """
def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    ### BEGIN SOLUTION
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}
    ### END SOLUTION


def _head(request_id: str, obj: str) -> dict:
    return {"id": request_id, "object": obj, "created": int(time.time()), "model": MODEL_NAME}


def chunk(request_id: str, text: str, finish_reason: str | None, chat: bool) -> dict:
    ### BEGIN SOLUTION
    if chat:
        choice = {"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": finish_reason}
        return {**_head(request_id, "chat.completion.chunk"), "choices": [choice]}
    return {**_head(request_id, "text_completion"), "choices": [{"index": 0, "text": text, "finish_reason": finish_reason}]}
    ### END SOLUTION


def usage_chunk(request_id: str, usage: dict, chat: bool) -> dict:
    ### BEGIN SOLUTION
    return {**_head(request_id, "chat.completion.chunk" if chat else "text_completion"), "choices": [], "usage": usage}
    ### END SOLUTION


def response(request_id: str, text: str, finish_reason: str | None, usage: dict, chat: bool) -> dict:
    ### BEGIN SOLUTION
    if chat:
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason}
        return {**_head(request_id, "chat.completion"), "choices": [choice], "usage": usage}
    choice = {"index": 0, "text": text, "finish_reason": finish_reason}
    return {**_head(request_id, "text_completion"), "choices": [choice], "usage": usage}
    ### END SOLUTION
"""

TEST12 = """
# Task 1.2 tests
assert usage(5, 3) == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
c = chunk("cmpl-1", "hi", None, chat=False)
assert c["id"] == "cmpl-1" and c["object"] == "text_completion" and c["model"] == MODEL_NAME, c
assert c["choices"][0]["text"] == "hi" and c["choices"][0]["finish_reason"] is None, c
c = chunk("chatcmpl-1", "yo", "length", chat=True)
assert c["object"] == "chat.completion.chunk" and c["choices"][0]["delta"]["content"] == "yo", c
assert c["choices"][0]["finish_reason"] == "length", c
r = response("cmpl-2", "whole text", "stop", usage(2, 2), chat=False)
assert r["choices"][0]["text"] == "whole text" and r["usage"]["total_tokens"] == 4, r
### BEGIN HIDDEN TESTS
r = response("chatcmpl-2", "hey", "length", usage(1, 1), chat=True)
assert r["object"] == "chat.completion" and r["choices"][0]["message"] == {"role": "assistant", "content": "hey"}, r
u = usage_chunk("cmpl-3", usage(4, 6), chat=False)
assert u["choices"] == [] and u["usage"] == {"prompt_tokens": 4, "completion_tokens": 6, "total_tokens": 10}, u
assert usage_chunk("c", usage(1, 1), chat=True)["object"] == "chat.completion.chunk"
assert isinstance(c["created"], int) and abs(c["created"] - time.time()) < 60, "created is a Unix time in seconds"
json.dumps([c, r, u])  # everything must be JSON-serialisable
### END HIDDEN TESTS
"""

# ---------------------------------------------------------------- Task 2.1 / 2.2
T21 = """
## Task 2.1 — A continuous-batching scheduler

The HTTP handlers run on an asyncio event loop; the engine must run on **one** thread of its
own, stepping while there is work. Write `Scheduler`:

- `start()` starts a background thread that loops: take the adds and aborts queued by the event
  loop, call `engine.step()` if `engine.has_work()` (else sleep until something arrives), and
  hand each `StepOutput` to its request. `stop()` ends the thread.
- `submit(prompt_ids, max_tokens, stop_ids) -> Job` (called on the event loop) queues a request
  for the engine thread and returns its `Job`. A request submitted while others are decoding
  **joins the running batch at the next step**: never wait for the batch to drain.
- `async stream(job)` yields the job's `StepOutput`s as they are produced, one per token, and
  returns after the one with `finished=True`.

<details><summary>Hints</summary>

- Threads and asyncio: the engine thread must not touch an `asyncio.Queue` directly; use
  `job.loop.call_soon_threadsafe(job.queue.put_nowait, out)`. One `call_soon_threadsafe` per
  step (delivering all of the step's outputs) wakes the loop once instead of once per token.
- The event loop must not touch the engine either: put `("add", job)` / `("abort", id)` in a
  `collections.deque` (append/popleft are atomic) and wake the thread with a `threading.Event`.
- A step's outputs are ~free to deliver; a step that waits for anything is not. Never
  `time.sleep` while the engine has work.
- `engine.add` raises `ValueError` for a bad request (too long, bad ids): fail that job (put the
  exception in its queue and raise it from `stream`), not the thread.
</details>

## Task 2.2 — Admission control, cancellation and timeouts

A server that accepts everything under overload makes *every* request late. In the same class:

- `submit` raises `QueueFull` when `engine.max_batch + max_waiting` requests are already in
  flight (submitted and not yet finished or released); the app will answer 429.
- `release(job)`: the caller is done with the job (finished, failed, client gone): it stops
  counting as in flight, and if it has not finished, the engine thread **aborts** it, which
  frees its batch slot at the next step. Calling it twice is harmless.
- `stream(job)` raises `TimeoutError` when the job is not finished `timeout_s` after its
  submission, and **always releases** the job when it ends: finished, failed, timed out, or
  closed early because the HTTP client disconnected (the generator is closed or cancelled).

<details><summary>Hints</summary>

- `try: ... finally: self.release(job)` inside the async generator runs on all of these.
- `asyncio.timeout_at(loop.time() + remaining)` (Python 3.11) bounds the whole loop.
- Count in-flight jobs on the event loop only (submit and release both run there): no lock needed.
</details>
"""

A2 = """
class QueueFull(Exception):
    \"\"\"The running batch and the waiting queue are full: answer 429.\"\"\"


@dataclass
class Job:
    \"\"\"One request's way in and out of the scheduler.\"\"\"
    request_id: str
    prompt_ids: list
    max_tokens: int
    stop_ids: frozenset
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    arrival: float = field(default_factory=time.monotonic)
    finished: bool = False
    released: bool = False


class Scheduler:
    \"\"\"Continuous batching: one thread steps the engine; jobs join and leave between steps.\"\"\"

    def __init__(self, engine: Engine, max_waiting: int = 64, timeout_s: float = 30.0) -> None:
        self.engine = engine
        self.capacity = engine.max_batch + max_waiting
        self.timeout_s = timeout_s
        self.inflight = 0
        ### BEGIN SOLUTION
        self._inbox: deque = deque()
        self._jobs: dict[str, Job] = {}
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        ### END SOLUTION

    def start(self) -> None:
        ### BEGIN SOLUTION
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="engine", daemon=True)
        self._thread.start()
        ### END SOLUTION

    def stop(self) -> None:
        ### BEGIN SOLUTION
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        ### END SOLUTION

    def submit(self, prompt_ids: list, max_tokens: int, stop_ids=frozenset()) -> Job:
        ### BEGIN SOLUTION
        if self.inflight >= self.capacity:
            raise QueueFull(f"{self.inflight} requests in flight (limit {self.capacity})")
        job = Job(uuid.uuid4().hex, list(prompt_ids), max_tokens, frozenset(stop_ids), asyncio.get_running_loop())
        self.inflight += 1
        self._inbox.append(("add", job))
        self._wake.set()
        return job
        ### END SOLUTION

    def release(self, job: Job) -> None:
        ### BEGIN SOLUTION
        if job.released:
            return
        job.released = True
        self.inflight -= 1
        if not job.finished:
            self._inbox.append(("abort", job.request_id))
            self._wake.set()
        ### END SOLUTION

    async def stream(self, job: Job) -> AsyncIterator[StepOutput]:
        ### BEGIN SOLUTION
        try:
            loop = asyncio.get_running_loop()
            async with asyncio.timeout_at(loop.time() + self.timeout_s - (time.monotonic() - job.arrival)):
                while True:
                    out = await job.queue.get()
                    if isinstance(out, BaseException):
                        raise out
                    yield out
                    if out.finished:
                        return
        finally:
            self.release(job)
        ### END SOLUTION

    def _run(self) -> None:
        \"\"\"The engine thread: apply queued adds/aborts, step, deliver each step's outputs to their jobs.\"\"\"
        ### BEGIN SOLUTION
        while not self._stop:
            while self._inbox:
                kind, item = self._inbox.popleft()
                if kind == "add":
                    try:
                        self.engine.add(item.request_id, item.prompt_ids, item.max_tokens, item.stop_ids)
                        self._jobs[item.request_id] = item
                    except ValueError as e:
                        item.finished = True
                        item.loop.call_soon_threadsafe(item.queue.put_nowait, e)
                elif self._jobs.pop(item, None) is not None:
                    self.engine.abort(item)
            if not self.engine.has_work():
                self._wake.wait(timeout=1.0)
                self._wake.clear()
                continue
            delivered: dict = {}
            for out in self.engine.step():
                job = self._jobs.get(out.request_id)
                if job is None:
                    continue
                if out.finished:
                    job.finished = True
                    del self._jobs[out.request_id]
                delivered.setdefault(job.loop, []).append((job, out))
            for loop, items in delivered.items():
                loop.call_soon_threadsafe(_deliver, items)
        ### END SOLUTION


def _deliver(items: list) -> None:
    \"\"\"Runs on the event loop (via call_soon_threadsafe): hand a step's outputs to their jobs' queues.\"\"\"
    for job, out in items:
        job.queue.put_nowait(out)
"""

TEST21 = """
# Task 2.1 tests: tokens come back per request, and requests share the running batch
engine = load_engine(max_batch=4)
tok = engine.tokenizer
prompts = [tok(p).input_ids for p in ("The list type", "A dictionary maps", "Exceptions are raised", "The with statement")]


def solo(ids, n):  # what greedy decoding gives for one request alone
    engine.add("solo", ids, n)
    out = []
    while engine.has_work():
        out += [o.token_id for o in engine.step()]
    return out


async def run_batch(sched, n_tokens, stagger_s=0.0):
    peak = 0

    async def one(ids):
        nonlocal peak
        job = sched.submit(ids, n_tokens)
        toks = []
        async for out in sched.stream(job):
            toks.append(out.token_id)
            peak = max(peak, engine.num_running)
        return toks, out.finish_reason

    tasks = []
    for ids in prompts:
        tasks.append(asyncio.create_task(one(ids)))
        await asyncio.sleep(stagger_s)
    return await asyncio.gather(*tasks), peak


async def test_batching():
    sched = Scheduler(engine, max_waiting=4)
    sched.start()
    try:
        return await asyncio.wait_for(run_batch(sched, 12), 30)
    finally:
        sched.stop()

results, peak = run_async(test_batching())
expected = [solo(ids, 12) for ids in prompts]
assert [r[0] for r in results] == expected, "each request must get exactly its own tokens"
assert all(r[1] == "length" for r in results), results
assert peak >= 2, f"requests never shared the running batch (at most {peak} running at once)"
### BEGIN HIDDEN TESTS
async def test_join_midway():
    sched = Scheduler(engine, max_waiting=4)
    sched.start()
    try:  # requests arrive while others decode: they must join, not wait for the batch to drain
        return await asyncio.wait_for(run_batch(sched, 24, stagger_s=0.01), 30)
    finally:
        sched.stop()

results, peak = run_async(test_join_midway())
assert [r[0] for r in results] == [solo(ids, 24) for ids in prompts], "staggered requests got the wrong tokens"
assert peak >= 3, f"late requests did not join the running batch (peak {peak} running)"


async def test_bad_request():
    sched = Scheduler(engine, max_waiting=4)
    sched.start()
    try:
        job = sched.submit([1, 2, 3], engine.max_len)  # too long: engine.add raises ValueError
        try:
            async for _ in sched.stream(job):
                pass
        except ValueError:
            return "failed"
        return "no error"
    finally:
        sched.stop()

assert run_async(test_bad_request()) == "failed", "a request the engine rejects must fail with its ValueError"
assert not engine.has_work(), "requests left in the engine"
### END HIDDEN TESTS
"""

TEST22 = """
# Task 2.2 tests: a bounded queue, abort on early close, timeouts
engine = load_engine(max_batch=4)
ids = engine.tokenizer("Generators yield").input_ids


async def test_admission():
    sched = Scheduler(engine, max_waiting=2)
    sched.start()
    try:
        jobs = [sched.submit(ids, 200) for _ in range(6)]  # 4 in the batch + 2 waiting
        try:
            sched.submit(ids, 4)
            full = False
        except QueueFull:
            full = True
        sched.release(jobs[0])
        sched.release(jobs[0])  # twice is harmless
        again = sched.submit(ids, 4)  # room again
        for job in jobs[1:]:
            sched.release(job)
        got = [o async for o in sched.stream(again)]
        for _ in range(100):  # aborts are applied by the engine thread at its next step
            if not engine.has_work():
                break
            await asyncio.sleep(0.01)
        return full, len(got), engine.has_work(), sched.inflight
    finally:
        sched.stop()

full, n, busy, inflight = run_async(test_admission())
assert full, "the 7th request (4 running + 2 waiting) must raise QueueFull"
assert n == 4, f"a request submitted after a release must run: got {n} tokens"
assert not busy, "released requests must be aborted in the engine"
assert inflight == 0, f"inflight should be 0 after every job was released, got {inflight}"
### BEGIN HIDDEN TESTS
async def test_close_early():
    sched = Scheduler(engine, max_waiting=2)
    sched.start()
    try:
        job = sched.submit(ids, 300)
        gen = sched.stream(job)
        async for _ in gen:
            break
        await gen.aclose()  # what Starlette does when the client disconnects
        for _ in range(100):
            if not engine.has_work():
                break
            await asyncio.sleep(0.01)
        return engine.has_work(), sched.inflight
    finally:
        sched.stop()

busy, inflight = run_async(test_close_early())
assert not busy and inflight == 0, "closing a stream early must release the job and abort it in the engine"


async def test_timeout():
    sched = Scheduler(engine, max_waiting=2, timeout_s=0.2)
    sched.start()
    try:
        job = sched.submit(ids, 400)
        t0 = time.monotonic()
        try:
            async for _ in sched.stream(job):
                pass
            return "finished", time.monotonic() - t0
        except TimeoutError:
            return "timeout", time.monotonic() - t0
        finally:
            for _ in range(100):
                if not engine.has_work():
                    break
                await asyncio.sleep(0.01)
    finally:
        sched.stop()

outcome, took = run_async(test_timeout())
assert outcome == "timeout" and took < 2.0, (outcome, took)
assert not engine.has_work(), "a timed-out request must be aborted"
### END HIDDEN TESTS
"""

# ---------------------------------------------------------------- Task 3.1
T31 = """
## Task 3.1 — The OpenAI-compatible app

Write `create_app(engine, config) -> FastAPI`, the function the grader calls. It creates a
`Scheduler(engine, config.max_waiting, config.request_timeout_s)`, started and stopped by the
app's [lifespan](https://fastapi.tiangolo.com/advanced/events/), and serves:

- `POST /v1/completions` (`prompt`: a string or a list of token ids) and
  `POST /v1/chat/completions` (`messages`, turned into ids with
  `engine.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)`
  and then the tokenizer). Fields: `max_tokens` (default 16; chat also `max_completion_tokens`),
  `stream`, `stream_options: {"include_usage": true}`, and vLLM's `ignore_eos`: without it the
  request also stops at `engine.eos_id` (that stop token counts in `completion_tokens`, but its
  text is not shown). A prompt that does not fit (`len(ids) + max_tokens > engine.max_len`) or a
  malformed body is a 400 with `{"error": {"message": ...}}`.
- `stream: true`: a `StreamingResponse` (`text/event-stream`) of `sse(chunk(...))`, one per
  generated token, the usage chunk if asked for, then `sse("[DONE]")`. A timeout sends an
  error event (`{"error": {...}}`) and then `[DONE]`.
- otherwise one JSON `response(...)` with usage; 504 on timeout.
- `QueueFull` → **429** with header `Retry-After: 1`.
- `GET /health` → 200; `GET /metrics` → Prometheus text from a `CollectorRegistry` of this
  app (not the global one: the grader may build several apps in one process) holding at least
  a histogram named `serving_time_to_first_token_seconds` (arrival to first token, seconds).

<details><summary>Hints</summary>

- Decode text incrementally with `Detokenizer(engine.tokenizer)`: `push(token_id, last=...)`
  returns the new text (possibly `""` mid-character); `flush()` returns what is held back.
- A client that disconnects cancels the response's iteration of your generator; if you iterate
  `scheduler.stream(job)` inside it, its `finally` aborts the request for you.
- `await request.json()` plus a few checks is enough; pydantic models are fine too.
- Test without sockets: `with fastapi.testclient.TestClient(app) as client:` runs the lifespan.
</details>
"""

A31 = """
def create_app(engine: Engine, config: Any) -> FastAPI:
    \"\"\"An OpenAI-compatible app serving `engine` with continuous batching.\"\"\"
    ### BEGIN SOLUTION
    from contextlib import asynccontextmanager

    sched = Scheduler(engine, config.max_waiting, config.request_timeout_s)
    tok = engine.tokenizer
    registry = CollectorRegistry()
    ttft = Histogram("serving_time_to_first_token_seconds", "Arrival to first token.", registry=registry,
                     buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))
    outcomes = Counter("serving_requests", "Requests by outcome.", ["outcome"], registry=registry)

    @asynccontextmanager
    async def lifespan(app):
        sched.start()
        yield
        sched.stop()

    app = FastAPI(lifespan=lifespan)

    def error(message: str, status: int, headers: dict | None = None) -> JSONResponse:
        body = {"error": {"message": message, "type": "invalid_request_error" if status == 400 else "error",
                          "param": None, "code": status}}
        return JSONResponse(body, status_code=status, headers=headers)

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/metrics")
    async def metrics():
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await serve(request, chat=False)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await serve(request, chat=True)

    async def serve(request: Request, chat: bool):
        try:
            body = await request.json()
            if chat:
                text = tok.apply_chat_template(body["messages"], add_generation_prompt=True, tokenize=False)
                ids = tok(text).input_ids
                max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or 16
            else:
                prompt = body["prompt"]
                ids = tok(prompt).input_ids if isinstance(prompt, str) else [int(t) for t in prompt]
                max_tokens = body.get("max_tokens") or 16
            max_tokens = int(max_tokens)
        except Exception as e:
            return error(f"invalid request: {e!r}", 400)
        if not ids or max_tokens < 1 or len(ids) + max_tokens > engine.max_len:
            return error(f"prompt ({len(ids)} tokens) + max_tokens ({max_tokens}) must fit the model's "
                         f"{engine.max_len} tokens", 400)
        stop = frozenset() if body.get("ignore_eos") else frozenset({engine.eos_id})
        try:
            job = sched.submit(ids, max_tokens, stop)
        except QueueFull as e:
            outcomes.labels("rejected").inc()
            return error(f"server busy ({e}); retry later", 429, {"Retry-After": "1"})
        rid = ("chatcmpl-" if chat else "cmpl-") + job.request_id
        detok = Detokenizer(tok)
        state = {"n": 0, "reason": None}

        def text_of(out: StepOutput) -> str:
            if state["n"] == 0:
                ttft.observe(time.monotonic() - job.arrival)
            state["n"] += 1
            state["reason"] = out.finish_reason
            if out.finish_reason == "stop":  # the stop token counts but is not shown
                return detok.flush()
            return detok.push(out.token_id, last=out.finished)

        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

            async def events():
                outcome = "abort"
                try:
                    async for out in sched.stream(job):
                        yield sse(chunk(rid, text_of(out), out.finish_reason, chat))
                    if include_usage:
                        yield sse(usage_chunk(rid, usage(len(ids), state["n"]), chat))
                    outcome = state["reason"]
                except TimeoutError:
                    outcome = "timeout"
                    yield sse({"error": {"message": "request timed out", "type": "timeout", "param": None, "code": 504}})
                except ValueError as e:
                    outcome = "error"
                    yield sse({"error": {"message": str(e), "type": "error", "param": None, "code": 500}})
                finally:
                    outcomes.labels(outcome).inc()
                yield sse("[DONE]")

            return StreamingResponse(events(), media_type="text/event-stream")

        parts = []
        try:
            async for out in sched.stream(job):
                parts.append(text_of(out))
        except TimeoutError:
            outcomes.labels("timeout").inc()
            return error("request timed out", 504)
        except ValueError as e:
            return error(str(e), 500)
        outcomes.labels(state["reason"]).inc()
        return JSONResponse(response(rid, "".join(parts), state["reason"], usage(len(ids), state["n"]), chat))

    return app
    ### END SOLUTION
"""

TEST31 = """
# Task 3.1 tests: the app through FastAPI's in-process test client (no sockets)
from fastapi.testclient import TestClient

engine = load_engine(max_batch=4)
app = create_app(engine, Settings())
with TestClient(app) as client:
    assert client.get("/health").status_code == 200
    r = client.post("/v1/completions", json={"prompt": "The list type", "max_tokens": 5, "ignore_eos": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["usage"] == {"prompt_tokens": len(engine.tokenizer("The list type").input_ids),
                             "completion_tokens": 5, "total_tokens": body["usage"]["prompt_tokens"] + 5}, body
    assert body["choices"][0]["finish_reason"] == "length", body

    with client.stream("POST", "/v1/completions", json={"prompt": "The list type", "max_tokens": 5, "ignore_eos": True,
                                                       "stream": True, "stream_options": {"include_usage": True}}) as s:
        assert s.status_code == 200 and s.headers["content-type"].startswith("text/event-stream"), s.headers
        events = sse_events(s.read().decode())
    assert events[-1] == "[DONE]", f"a stream must end with data: [DONE], got {events[-1:]}"
    tokens = [e for e in events[:-1] if e.get("choices")]
    assert len(tokens) == 5, f"one chunk per token: expected 5, got {len(tokens)}"
    assert "".join(e["choices"][0]["text"] for e in tokens) == body["choices"][0]["text"], "stream and whole text differ"
    assert events[-2]["usage"]["completion_tokens"] == 5, events[-2]

    metrics = client.get("/metrics").text
    assert "serving_time_to_first_token_seconds_bucket" in metrics, metrics[:500]
### BEGIN HIDDEN TESTS
    r = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3,
                                                  "ignore_eos": True})
    assert r.status_code == 200 and r.json()["object"] == "chat.completion", r.text
    assert r.json()["usage"]["completion_tokens"] == 3
    with client.stream("POST", "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}],
                                                            "max_tokens": 3, "ignore_eos": True, "stream": True}) as s:
        events = sse_events(s.read().decode())
    assert events[-1] == "[DONE]" and len(events) == 4, events
    assert all(e["object"] == "chat.completion.chunk" for e in events[:-1]), events
    r = client.post("/v1/completions", json={"prompt": [1, 2, 3], "max_tokens": 4, "ignore_eos": True})
    assert r.status_code == 200 and r.json()["usage"]["prompt_tokens"] == 3, r.text
    r = client.post("/v1/completions", json={"prompt": "x", "max_tokens": engine.max_len})
    assert r.status_code == 400 and "error" in r.json(), r.text
    assert client.post("/v1/completions", content=b"not json").status_code == 400
    assert 'serving_time_to_first_token_seconds_count 5.0' in client.get("/metrics").text

# two apps in one process: a registry per app
with TestClient(create_app(engine, Settings())) as other:
    assert other.get("/metrics").status_code == 200

# a full queue answers 429 with Retry-After
with TestClient(create_app(engine, Settings(max_batch=4, max_waiting=0))) as client:
    import concurrent.futures
    def long_request(_):
        return client.post("/v1/completions", json={"prompt": "a", "max_tokens": 150, "ignore_eos": True})
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = [r.status_code for r in pool.map(long_request, range(8))]
    assert 429 in codes and 200 in codes, codes
assert not engine.has_work()
### END HIDDEN TESTS
"""

EXPLORE3 = """
# Exploration (not graded, not part of your module): stream a completion and watch tokens arrive.
from fastapi.testclient import TestClient

with TestClient(create_app(load_engine(max_batch=4), Settings())) as client:
    t0 = time.perf_counter()
    with client.stream("POST", "/v1/completions", json={"prompt": "The for statement", "max_tokens": 24, "stream": True}) as s:
        for line in s.iter_lines():
            if line:
                print(f"{(time.perf_counter() - t0) * 1000:7.1f} ms  {line[:100]}")
"""

# ---------------------------------------------------------------- Task 4.1
T41 = """
## Task 4.1 — Written: cost per million output tokens (5 points, graded by hand)

Your server runs on a 2-vCPU machine at 0.10 USD/hour, and must meet the SLO **TTFT ≤ 1 s and
TPOT ≤ 100 ms** per request. **Which `max_batch` and waiting-queue size (`max_waiting`)
minimise the cost per 1M output tokens while meeting the SLO, and why?** Say how cost follows
from throughput, what a bigger batch does to throughput and to TPOT, what a longer queue does
to TTFT under overload (and what a too-short one does to goodput), and how you would measure
the answer rather than guess it. 150–300 words.
"""

A41 = """
### BEGIN SOLUTION
Cost per 1M output tokens = price per hour / (3600 x output tokens/s) x 1e6, so it falls as
throughput rises: at 0.10 USD/h, 800 tok/s costs ~0.035 USD and 150 tok/s ~0.19.

**max_batch.** One decode step costs nearly the same for 1 or 32 sequences on this model (the
weights are read once per step), so throughput grows almost linearly with the batch until the
step becomes compute-bound; TPOT is the step time, which grows slowly with the batch. I would
take the largest batch whose TPOT p95 stays well under 100 ms at the offered load, here 32
(TPOT ~20-40 ms), since every extra concurrent sequence is almost free throughput. Beyond that,
TPOT approaches the SLO and the KV cache (4 MB per slot) grows.

**max_waiting.** The queue only decides *what happens under overload*. TTFT of a queued request
is roughly its queue position / completion rate; a request that waits longer than 1 s is
served but does not count, so it burns capacity for nothing. The queue should hold about as
many requests as can start within the TTFT budget: completion rate x 1 s (~10-15 requests at
~12 req/s), not 64; beyond that, a fast 429 lets the client retry elsewhere and keeps the
admitted requests within SLO. Too short a queue rejects bursts that would have met the SLO.

**Measure**: sweep max_batch in {8, 16, 32, 64} and max_waiting in {0, 8, 16, 64} under the
same Poisson load at several rates; for each, record goodput and output tok/s of good requests;
pick the setting with the highest goodput-weighted tokens/s, i.e. the lowest cost per 1M
tokens of requests that met the SLO.
### END SOLUTION
"""

CELLS: list[dict[str, Any]] = [
    {"kind": "markdown", "id": "intro", "source": INTRO},
    {"kind": "setup", "id": "setup", "source": SETUP},
    {"kind": "setup", "id": "test_helpers", "source": TEST_HELPERS},
    {"kind": "markdown", "id": "task_1_1_text", "source": T11},
    {"kind": "answer", "id": "task_1_1_sse", "source": CODE["task_1_1_sse"], "task": "1.1", "name": "sse"},
    {"kind": "test", "id": "test_1_1_sse", "source": TEST11, "task": "1.1", "points": 15},
    {"kind": "markdown", "id": "task_1_2_text", "source": T12},
    {"kind": "answer", "id": "task_1_2_shapes", "source": A12, "task": "1.2", "name": "the response builders"},
    {"kind": "test", "id": "test_1_2_shapes", "source": TEST12, "task": "1.2", "points": 15},
    {"kind": "markdown", "id": "task_2_text", "source": T21},
    {"kind": "answer", "id": "task_2_scheduler", "source": A2, "task": "2.1/2.2", "name": "Scheduler"},
    {"kind": "test", "id": "test_2_1_batching", "source": TEST21, "task": "2.1", "points": 40},
    {"kind": "test", "id": "test_2_2_admission", "source": TEST22, "task": "2.2", "points": 10},
    {"kind": "markdown", "id": "task_3_1_text", "source": T31},
    {"kind": "answer", "id": "task_3_1_create_app", "source": A31, "task": "3.1", "name": "create_app"},
    {"kind": "test", "id": "test_3_1_app", "source": TEST31, "task": "3.1", "points": 20},
    {"kind": "explore", "id": "explore_3_1_stream", "source": EXPLORE3},
    {"kind": "markdown", "id": "task_4_1_text", "source": T41},
    {"kind": "written", "id": "task_4_1_written", "source": A41, "task": "4.1", "points": 5},
]
