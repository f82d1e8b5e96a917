"""Hint ladders for `ailab check`: per lab and auto-graded part, hints from general to specific.

A part's next hint unlocks each time a check leaves it below full points (graders.history keeps
the count), so a candidate who is stuck gets nudged further without being handed the answer at
once. The notebooks keep their own hints beside each task; these point at what the grader checks.
"""
from __future__ import annotations

HINTS: dict[str, dict[str, tuple[str, ...]]] = {
    "rag": {
        "chunking": (
            "Read the part's detail line: it names the failed cases (empty text, short text, overlap).",
            "Windows start every max_words - overlap words, and words are joined with single spaces.",
            "Stop once a window reaches the last word: no trailing window that only repeats words.",
        ),
        "dense_index": (
            "Scores are similarities, best first, for both kinds: inner product on unit vectors.",
            "IndexHNSWFlat defaults to L2 distances; pass faiss.METRIC_INNER_PRODUCT and set hnsw.efSearch.",
            "Row ids continue across add() calls, and FAISS wants C-contiguous float32 arrays.",
        ),
        "hybrid_fusion": (
            "tokenize: lower-case, runs of a-z and 0-9 only, stop words dropped, order kept.",
            "RRF ranks start at 1: score += 1 / (k + rank) for every ranking a document appears in.",
            "Return every document exactly once, highest fused score first.",
        ),
        "query_expansion": (
            "Rocchio: q' = alpha * q + beta * mean(feedback), then normalise to unit length.",
            "With zero feedback vectors (shape (0, dim)) return the normalised query; keep q's shape.",
        ),
        "retrieval_quality": (
            "Score on the dev split in the notebook (labkit.data.evaluate) before running the check.",
            "Embed title + '. ' + chunk, and rank a document by its best chunk, not by its first one.",
            "Fuse deep rankings (top 100 of dense, expanded dense and BM25), not just the top k.",
            "Each document at most once in search(): deduplicate chunks before cutting to k.",
        ),
        "performance": (
            "p95 latency is compared to the reference under the same load: profile one search() call.",
            "Do everything query-independent in index(): embeddings, BM25, the FAISS index.",
            "Avoid full sorts over the corpus: np.argpartition for the top candidates, then sort those.",
        ),
        "grounded_answers": (
            "Copy sentences verbatim from the hit documents, each followed by [doc-id].",
            "citations must list only ids of the hits you were given, each one you cited.",
            "With no hits, say you found nothing and return an empty citations list.",
        ),
    },
    "serving": {
        "correctness": (
            "Compare your JSON with OpenAI's objects field by field: object, choices, usage.",
            "Without ignore_eos a request stops at engine.eos_id; that token counts in usage, its text does not.",
            "Too-long prompts and malformed bodies are a 400 with {'error': {'message': ...}}.",
        ),
        "streaming": (
            "Each event is b'data: <compact JSON>\\n\\n'; the stream ends with data: [DONE].",
            "One chunk per generated token; finish_reason only on the last one.",
            "With stream_options.include_usage, send the usage chunk (choices: []) before [DONE].",
        ),
        "admission_control": (
            "submit() raises QueueFull once max_batch + max_waiting requests are in flight.",
            "Map QueueFull to HTTP 429 with the header Retry-After: 1, before starting the stream.",
            "A job stops counting as in flight only when released: release() in stream()'s finally.",
        ),
        "cancellation": (
            "A client that disconnects closes your generator: release the job in a finally block.",
            "release() of an unfinished job must make the engine thread abort it at the next step.",
        ),
        "metrics_endpoint": (
            "GET /metrics serves Prometheus text from the app's own CollectorRegistry.",
            "serving_time_to_first_token_seconds is a histogram: request arrival to first token, in seconds.",
        ),
        "goodput": (
            "Goodput counts requests meeting the SLO: first make correctness and streaming pass.",
            "New requests must join the running batch between decode steps, never wait for it to drain.",
            "Never time.sleep while the engine has work; deliver a step's outputs with one call_soon_threadsafe.",
        ),
        "latency": (
            "TTFT p95 includes failures counted as the client timeout: fix errors and timeouts first.",
            "Keep the event loop free: no engine calls or blocking waits on it, only queue hand-offs.",
            "Admit fewer and fail fast (429) rather than queue requests that will miss the SLO anyway.",
        ),
    },
    "agents": {
        "task_success": (
            "Read the report's table of conversations that did not end right: it shows the end state against the expected one.",
            "Run labkit.agents.run_local(create_agent, faults=False) first, then with faults.",
            "A refusal or a tool error goes back to the model as the tool's result; it proposes again.",
        ),
        "policy": (
            "The report lists each violation with its conversation: fix the guardrail it names.",
            "Check every write in code before it runs: the order's owner, the refund limit, the product's cost.",
            "Clean every outgoing message: other customers' addresses and unsupported product claims.",
        ),
        "escalation": (
            "A refund above the limit is escalated with a reason, never issued.",
            "Escalate only when a human is needed: every unneeded escalation costs precision.",
        ),
        "cost": (
            "Tool schemas are input tokens on every completion: show the model only the tools the intent needs.",
            "Answer repeated reads from a per-conversation cache.",
        ),
        "latency": (
            "A hanging tool takes 2 s: time out after config.tool_timeout_s and retry.",
            "Keep state per conversation: several conversations run at once in different threads.",
        ),
        "throughput": ("Never block on a shared lock across a whole conversation.",),
        "recovery": ("Retry timeouts and 5xx (ToolError.retryable), at most 3 tries, within the budget.",),
        "traces": (
            "One invoke_agent span per conversation; a chat span per completion; an execute_tool span per tool try.",
            "gen_ai.usage.* on the chat span come from model.last_usage.",
        ),
    },
    "observability": {
        "telemetry_conformance": (
            "The detail line lists failed checks: span names, kinds, attributes, metric names.",
            "Child spans must be current (start_as_current_span) while retrieve and generate run.",
            "On errors set status ERROR and error.type on the child and the root, then re-raise.",
            "Create every metric on the given registry, with a histogram bucket at config.slo_latency_s.",
        ),
        "detection_recall": (
            "Run inject(fault, create_detectors(CONFIG)) for every fault and see which ones never page.",
            "Learn baselines during the warm-up and alert only after it.",
            "Silent faults need their own detector: retrieval quality, cache hit ratio, memory trend.",
        ),
        "detection_precision": (
            "Run run_ticks(FakeService(seed), ..., 60) without faults: every page there is a false one.",
            "Keep firing a few seconds after the condition last held: a flickering alert is several pages.",
            "Wait for enough data before a statistical test, and correct for multiple tests (Bonferroni).",
        ),
        "root_cause_accuracy": (
            "A fault's root cause is what the first page in its window blames: order detectors carefully.",
            "Blame from spans: the child span that failed most, or whose duration grew most over baseline.",
            "Put the drift detector first and let the others stand down while the traffic drifts.",
        ),
        "mean_time_to_detect": (
            "Page on the first tick a condition holds; requiring several ticks in a row costs seconds.",
            "Short windows react sooner: a burn-rate window shorter than a tick is the last tick.",
            "Per-tick deltas of counters and histogram buckets react faster than cumulative values.",
        ),
        "instrumentation_overhead": (
            "Build attribute dicts, span names and label children once in create_handler, not per request.",
            "Resolve .labels(...) once; use time.perf_counter() and no logging or printing per request.",
        ),
    },
}


def ladder(lab: str, part: str) -> tuple[str, ...]:
    """The hints of one part, in unlock order (empty for an unknown lab or part)."""
    return HINTS.get(lab, {}).get(part, ())


def unlock(unlocked: dict[str, int], lab: str, misses: list[str]) -> dict[str, int]:
    """The unlocked counts after a check that left `misses` below full points: one more hint each."""
    after = dict(unlocked)
    for part in misses:
        after[part] = min(after.get(part, 0) + 1, len(ladder(lab, part)))
    return after
