"""A batched, greedy, KV-cached inference engine for the tiny GPT-2: the step API servers build on.

    engine = Engine(model_dir(), max_batch=32)
    engine.add("r1", prompt_ids, max_tokens=64, stop_ids={engine.eos_id})
    while engine.has_work():
        for out in engine.step():   # StepOutput(request_id, token_id, finished, finish_reason)
            ...

Each `step()` prefills the requests added since the last step (one padded batch) and runs one
decode step for every request already running, so new requests join the running batch between
decode steps: continuous batching, as in vLLM / Orca.

The KV cache is a preallocated tensor with one *slot* per concurrent request
(layers x slots x heads x positions x head_dim). The model's own modules (embeddings, layer
norms, projections, MLPs, head) do the maths; only attention is written here, because it reads
and writes the slot cache. Greedy decoding of a request in a batch gives the same tokens as
decoding it alone (tested against `transformers`' own `generate`).
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class StepOutput:
    request_id: str
    token_id: int
    finished: bool
    finish_reason: str | None  # "stop" (a stop id came out), "length" (max_tokens reached) or None


@dataclass
class _Seq:
    request_id: str
    prompt_ids: list[int]
    max_tokens: int
    stop_ids: frozenset[int]
    slot: int = -1
    length: int = 0            # tokens in the KV cache
    last_token: int = -1       # generated but not yet fed back
    generated: list[int] = field(default_factory=list)


class Engine:
    def __init__(self, model_dir: str | Path | None = None, max_batch: int = 32, threads: int | None = None,
                 max_len: int | None = None) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if model_dir is None:
            from reference_systems.serving.model import model_dir as build_model_dir
            model_dir = build_model_dir()
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if threads:
            torch.set_num_threads(threads)
        self.model_dir = Path(model_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(self.model_dir, dtype=torch.float32).eval()
        cfg = self.model.config
        self.eos_id: int = cfg.eos_token_id
        self.vocab_size: int = cfg.vocab_size
        self.max_len: int = min(max_len or cfg.n_positions, cfg.n_positions)
        self.max_batch = max_batch
        self.n_head = cfg.n_head
        self.head_dim = cfg.n_embd // cfg.n_head
        shape = (cfg.n_layer, max_batch, cfg.n_head, self.max_len, self.head_dim)
        self.k_cache = torch.zeros(shape)
        self.v_cache = torch.zeros(shape)
        self._free = list(range(max_batch - 1, -1, -1))  # pop() hands out the lowest slot: keeps the batch dense
        self._waiting: deque[_Seq] = deque()
        self._running: dict[str, _Seq] = {}

    # -- public API -------------------------------------------------------------------------
    def add(self, request_id: str, prompt_ids: list[int], max_tokens: int, stop_ids: set[int] | frozenset[int] = frozenset()) -> None:
        """Queue a request; its first token comes out of the next `step()` that has a free slot."""
        if request_id in self._running or any(s.request_id == request_id for s in self._waiting):
            raise ValueError(f"request id {request_id!r} is already in the engine; ids must be unique")
        if not prompt_ids:
            raise ValueError("prompt_ids is empty: tokenize a non-empty prompt first")
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        if len(prompt_ids) + max_tokens > self.max_len:
            raise ValueError(f"prompt ({len(prompt_ids)} tokens) + max_tokens ({max_tokens}) exceeds the model's "
                             f"context of {self.max_len} tokens; shorten the prompt or lower max_tokens")
        bad = [t for t in prompt_ids if not 0 <= t < self.vocab_size]
        if bad:
            raise ValueError(f"token ids {bad[:5]} are outside the vocabulary [0, {self.vocab_size})")
        self._waiting.append(_Seq(request_id, list(prompt_ids), max_tokens, frozenset(stop_ids)))

    def abort(self, request_id: str) -> bool:
        """Drop a request (waiting or running) and free its slot. False if it was not there."""
        seq = self._running.pop(request_id, None)
        if seq is not None:
            self._free.append(seq.slot)
            self._free.sort(reverse=True)
            return True
        for s in self._waiting:
            if s.request_id == request_id:
                self._waiting.remove(s)
                return True
        return False

    def has_work(self) -> bool:
        return bool(self._waiting or self._running)

    @property
    def num_running(self) -> int:
        return len(self._running)

    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    @torch.inference_mode()
    def step(self) -> list[StepOutput]:
        """Prefill newly added requests (as many as there are free slots) and decode one token for the rest."""
        decoding = list(self._running.values())
        admitted: list[_Seq] = []
        while self._waiting and self._free:
            seq = self._waiting.popleft()
            seq.slot = self._free.pop()
            admitted.append(seq)
            self._running[seq.request_id] = seq
        # Decode first: its padded rows may scribble on position 0 of slots that the prefill then fills.
        outputs: list[StepOutput] = []
        if decoding:
            outputs += self._emit(decoding, self._decode(decoding))
        if admitted:
            outputs += self._emit(admitted, self._prefill(admitted))
        return outputs

    # -- internals ----------------------------------------------------------------------------
    def _emit(self, seqs: list[_Seq], tokens: list[int]) -> list[StepOutput]:
        outs = []
        for seq, tok in zip(seqs, tokens):
            seq.generated.append(tok)
            seq.last_token = tok
            reason = "stop" if tok in seq.stop_ids else "length" if len(seq.generated) >= seq.max_tokens else None
            if reason:
                self.abort(seq.request_id)
            outs.append(StepOutput(seq.request_id, tok, reason is not None, reason))
        return outs

    def _prefill(self, seqs: list[_Seq]) -> list[int]:
        # Right padding is exact under a causal mask: real tokens never attend to the pad after them.
        lengths = [len(s.prompt_ids) for s in seqs]
        width = max(lengths)
        ids = torch.zeros(len(seqs), width, dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, : lengths[i]] = torch.tensor(s.prompt_ids)
        slots = torch.tensor([s.slot for s in seqs])
        pos = torch.arange(width)
        tr = self.model.transformer
        x = tr.wte(ids) + tr.wpe(pos)[None]
        for layer, block in enumerate(tr.h):
            q, k, v = self._qkv(block, x)
            self.k_cache[layer, slots, :, :width] = k
            self.v_cache[layer, slots, :, :width] = v
            x = self._finish_block(block, x, F.scaled_dot_product_attention(q, k, v, is_causal=True))
        last = x[torch.arange(len(seqs)), torch.tensor(lengths) - 1]
        for s, n in zip(seqs, lengths):
            s.length = n
        return self._next_tokens(last)

    def _decode(self, seqs: list[_Seq]) -> list[int]:
        # Attend over cache rows 0..rows-1 as one strided view (no gather); empty slots ride along masked.
        rows = max(s.slot for s in seqs) + 1
        ids = torch.zeros(rows, dtype=torch.long)
        pos = torch.zeros(rows, dtype=torch.long)
        for s in seqs:
            ids[s.slot], pos[s.slot] = s.last_token, s.length
        width = int(pos.max()) + 1
        mask = (torch.arange(width)[None, :] <= pos[:, None])[:, None, None, :]
        tr = self.model.transformer
        x = (tr.wte(ids) + tr.wpe(pos))[:, None, :]
        row = torch.arange(rows)
        for layer, block in enumerate(tr.h):
            q, k, v = self._qkv(block, x)
            self.k_cache[layer, row, :, pos] = k[:, :, 0]
            self.v_cache[layer, row, :, pos] = v[:, :, 0]
            kc = self.k_cache[layer, :rows, :, :width]
            vc = self.v_cache[layer, :rows, :, :width]
            x = self._finish_block(block, x, F.scaled_dot_product_attention(q, kc, vc, attn_mask=mask))
        for s in seqs:
            s.length += 1
        slots = torch.tensor([s.slot for s in seqs])
        return self._next_tokens(x[slots, 0])

    def _qkv(self, block, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, t, c = x.shape
        qkv = block.attn.c_attn(block.ln_1(x))
        return tuple(z.view(b, t, self.n_head, self.head_dim).transpose(1, 2) for z in qkv.split(c, dim=2))

    def _finish_block(self, block, x: torch.Tensor, att: torch.Tensor) -> torch.Tensor:
        b, _, t, _ = att.shape
        x = x + block.attn.c_proj(att.transpose(1, 2).reshape(b, t, -1))
        return x + block.mlp(block.ln_2(x))

    def _next_tokens(self, hidden: torch.Tensor) -> list[int]:
        logits = self.model.lm_head(self.model.transformer.ln_f(hidden))
        return logits.argmax(dim=-1).tolist()


def generate(engine: Engine, prompts: list[list[int]], max_tokens: int, stop_ids: frozenset[int] = frozenset()) -> list[list[int]]:
    """Run prompts to completion together; returns the generated ids per prompt (a convenience for tests/benchmarks)."""
    out: dict[str, list[int]] = {str(i): [] for i in range(len(prompts))}
    for i, p in enumerate(prompts):
        engine.add(str(i), p, max_tokens, stop_ids)
    while engine.has_work():
        for o in engine.step():
            out[o.request_id].append(o.token_id)
    return [out[str(i)] for i in range(len(prompts))]


def throughput(engine: Engine, batch: int, new_tokens: int = 64, prompt_len: int = 16) -> float:
    """Generated tokens per second for `batch` equal requests decoded together (prefill included)."""
    prompts = [[(7 * i + j) % engine.vocab_size for j in range(prompt_len)] for i in range(batch)]
    t0 = time.perf_counter()
    generate(engine, prompts, new_tokens)
    return batch * new_tokens / (time.perf_counter() - t0)


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description="Measure the engine's generation throughput at several batch sizes.")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--new-tokens", type=int, default=64)
    args = ap.parse_args()
    eng = Engine(max_batch=max(int(b) for b in args.batches.split(",")), threads=args.threads)
    throughput(eng, 1, 8)  # warm-up
    for b in (int(b) for b in args.batches.split(",")):
        print(f"batch {b:3d}: {throughput(eng, b, args.new_tokens):7.0f} tok/s")
