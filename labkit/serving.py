"""What a serving-lab notebook may import: the lab's inference engine and its tiny GPT-2.

    from labkit.serving import Engine, StepOutput, load_engine
    engine = load_engine(max_batch=8)      # the deterministic tiny GPT-2 behind a KV-cached step API
    engine.add("r1", prompt_ids, max_tokens=16, stop_ids={engine.eos_id})
    while engine.has_work():
        for out in engine.step():          # StepOutput(request_id, token_id, finished, finish_reason)
            ...

The scheduler and the HTTP server on top of the engine are the lab's tasks, so they are not here.
`Detokenizer` (incremental, UTF-8 safe decoding of a token stream) is plumbing, not a task.
"""
from __future__ import annotations

import functools

from reference_systems.serving.engine import Engine, StepOutput
from reference_systems.serving.model import model_dir
from reference_systems.serving.openai_api import Detokenizer

__all__ = ["Detokenizer", "Engine", "StepOutput", "load_engine", "model_dir"]


@functools.lru_cache(maxsize=4)
def load_engine(max_batch: int = 32, threads: int = 1) -> Engine:
    """The lab's engine (built on first use, then cached on disk). Same arguments, same engine object:
    loading takes seconds, so notebook cells share it; drive it from one scheduler at a time."""
    return Engine(model_dir(), max_batch=max_batch, threads=threads)
