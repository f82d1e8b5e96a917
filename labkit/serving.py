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
from typing import Any

from reference_systems.serving.engine import Engine, StepOutput
from reference_systems.serving.model import model_dir

__all__ = ["Detokenizer", "Engine", "StepOutput", "load_engine", "model_dir"]


@functools.lru_cache(maxsize=4)
def load_engine(max_batch: int = 32, threads: int = 1, device: str = "cpu", model: str = "tiny-gpt2") -> Engine:
    """The lab's engine (built on first use, then cached on disk). Same arguments, same engine object:
    loading takes seconds, so notebook cells share it; drive it from one scheduler at a time.
    On a machine with an NVIDIA GPU, `device="cuda"` (or "auto") runs it there with CUDA-graph decode steps,
    and `model="gpt2-small"` is the GPU profile's model (docs/gpu.md)."""
    return Engine(model_dir(model), max_batch=max_batch, threads=threads, device=device)


class Detokenizer:
    """Incremental detokenizing in O(1) per token (vLLM/TGI's offsets): decode a short window, not the whole
    output, and hold back text ending in U+FFFD, since byte-level BPE tokens can end mid-character."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix = 0  # window start: decoding from here gives stable text
        self.read = 0    # ids before this are already returned

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def push(self, token_id: int, last: bool = False) -> str:
        self.ids.append(token_id)
        done = self._decode(self.ids[self.prefix:self.read])
        text = self._decode(self.ids[self.prefix:])
        if len(text) <= len(done) or (text.endswith("\ufffd") and not last):
            return ""
        self.prefix, self.read = self.read, len(self.ids)
        return text[len(done):]

    def flush(self) -> str:
        """Whatever is still held back (the request ended)."""
        done = self._decode(self.ids[self.prefix:self.read])
        text = self._decode(self.ids[self.prefix:])
        self.prefix = self.read = len(self.ids)
        return text[len(done):]
