"""Output verification under load: every streamed completion is compared with the engine's greedy output.

    greedy = greedy_texts([(prompt, max_tokens), ...])   # in the grader's process, once per run
    mark(results, greedy)                                  # after each load run, candidate and reference alike
    v = verdict(all_results, greedy)                       # v.failed, v.share, v.usage_mismatches, v.examples

The lab's engine decodes greedily and deterministically, and a request decoded in a batch gives the
same tokens as decoded alone (tests/test_serving_reference.py), so what a correct server streams for
(prompt, max_tokens) with `ignore_eos` is known before it answers. `greedy_texts` computes it with the
lab's Engine, batched, in the grader's own process (a submission cannot reach it); the prompts are new
each run (graders.serving.client.choose_seed), so nothing can be looked up in advance. `mark` turns a
stream that says something else into a failed request: it is neither goodput nor throughput, and
graders.serving.grade withholds every performance point from a server whose share of such streams
passes lab.toml `[verification] max_failure_share`.

Text is compared exactly. A stream that differs only in non-ASCII characters or the end-of-text marker
still counts as verified, with the difference reported (`detok_only`): a multi-byte character split
across two tokens and decoded piece by piece shows as U+FFFD where the whole decode has the character;
the model did run, and the streaming part already judges detokenizing.

Near ties. Where the model's two best logits are within float32 rounding of each other, the batch a prompt
is decoded in decides which one wins, and the CPU's float rounding too: on one machine, decoded alone, 1 of 115
prompts of seed 739568390 left the grader's batched text at character 65 (on an AMD EPYC none did), and in a
clean-clone run the reference server, batching differently from the grader, streamed 1 of 67 differently. Both
were right: in the first case the two tokens' logits differ by 3.6e-7, and the next best is 0.115 below. So a
stream that leaves the greedy text is checked
once more (`near_tie`): where it first differs, the grader's model scores the prefix, and if the stream's
token is within TIE_LOGIT_GAP of the best one, greedy decoding goes on from that token; a stream that is
that text (taking at most MAX_TIES such turns) is verified and counted as `near_ties`. A token a server
picks for any other reason is nowhere near the best logit, so this never passes a wrong stream.

Timing is taken from the verified text too: token k of a verified stream arrived with the first event
that brought the text of the first k greedy tokens (`retime`). A server cannot improve its TTFT or
TPOT with events that carry no text ahead of the model (an empty "first token" at once, the text later).
"""
from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from graders.serving.client import Result

EOS_TEXT = "<|endoftext|>"
EXAMPLES = 3  # failures quoted in the report


@dataclass(frozen=True)
class Greedy:
    """The engine's greedy text per (prompt, max_tokens) of one run, what computing it cost, and per prompt the
    length of the text the first k tokens make (k = 1, 2, ...; a character still incomplete is not counted)."""
    texts: dict[tuple[str, int], str]
    seconds: float
    ends: dict[str, list[int]] = field(default_factory=dict)
    ids: dict[str, list[int]] = field(default_factory=dict)  # prompt -> greedy token ids (the longest asked)
    engine: tuple[str, str, str | None] = ("cpu", "tiny-gpt2", None)  # (device, model, dtype) for near ties

    def merged(self, more: Greedy) -> Greedy:
        """This run's greedy outputs with `more` (computed later in the run, for requests drawn later)."""
        return Greedy({**self.texts, **more.texts}, self.seconds + more.seconds, {**self.ends, **more.ends},
                      {**self.ids, **more.ids}, self.engine)


def greedy_texts(requests: Iterable[tuple[str, int]], max_batch: int = 64, device: str = "cpu",
                 model: str = "tiny-gpt2", dtype: str | None = None) -> Greedy:
    """Decode every distinct prompt once, batched, to the largest max_tokens it is asked with (greedy outputs
    are prefixes of each other), and keep the text of each (prompt, max_tokens). `device`, `model` and `dtype`
    are the servers' (the load profile's), so the expected tokens come from the same numbers."""
    import torch

    from reference_systems.serving.engine import Engine
    from reference_systems.serving.model import model_dir

    wanted: dict[tuple[str, int], None] = dict.fromkeys(requests)
    longest: dict[str, int] = {}
    for prompt, n in wanted:
        longest[prompt] = max(n, longest.get(prompt, 0))
    started = time.perf_counter()
    threads = torch.get_num_threads()  # process-wide: give it back (one thread: cores are shared with the servers)
    try:
        engine = Engine(model_dir(model), max_batch=max_batch, threads=1, device=device, dtype=dtype)
        tok = engine.tokenizer
        prompts = list(longest)
        for i, prompt in enumerate(prompts):
            engine.add(str(i), tok(prompt).input_ids, longest[prompt])
        ids: dict[str, list[int]] = {str(i): [] for i in range(len(prompts))}
        while engine.has_work():
            for out in engine.step():
                ids[out.request_id].append(out.token_id)
        by_prompt = {p: ids[str(i)] for i, p in enumerate(prompts)}
        texts = {(p, n): str(tok.decode(by_prompt[p][:n], skip_special_tokens=True)) for p, n in wanted}
        ends = {p: _token_ends(tok, g) for p, g in by_prompt.items()}
    finally:
        torch.set_num_threads(threads)
    seconds = time.perf_counter() - started
    print(f"[serving] greedy outputs of {len(prompts)} prompts computed in {seconds:.1f} s", file=sys.stderr, flush=True)
    return Greedy(texts, seconds, ends, by_prompt, (device, model, dtype))


def _token_ends(tok: Any, ids: list[int]) -> list[int]:
    return _ends([str(tok.decode(ids[:k], skip_special_tokens=True)) for k in range(1, len(ids) + 1)])


def _ends(prefixes: list[str]) -> list[int]:
    """Length of the settled text after each token: the decode of the first k tokens without a trailing U+FFFD
    (bytes of a character still to come), never shrinking."""
    out, last = [], 0
    for text in prefixes:
        last = max(last, len(text.rstrip("\ufffd")))
        out.append(last)
    return out


def loose(text: str) -> str:
    """Text without the end-of-text marker and without non-ASCII characters (see the module's docstring)."""
    return text.replace(EOS_TEXT, "").encode("ascii", "ignore").decode()


def mark(results: list[Result], greedy: Greedy) -> None:
    """Set `verified` on every whole stream; one that does not say the greedy text is no longer ok, one that
    does is re-timed by its text (`retime`)."""
    for r in results:
        if not r.ok:
            continue
        want = greedy.texts.get((r.prompt, r.expected_tokens))
        r.verified = want is not None and not r.text_cut and (r.text == want or loose(r.text) == loose(want))
        if want is not None and not r.verified and not r.text_cut and r.text:
            tied = near_tie(r, greedy)
            if tied is not None:
                r.verified = r.near_tie = True
                retime(r, *tied)
                continue
        if not r.verified:
            r.ok, r.output_tokens = False, 0
            r.error = "the streamed text is not the engine's greedy output for the prompt (output verification)"
        elif want is not None and r.prompt in greedy.ends:
            retime(r, want, greedy.ends[r.prompt])


TIE_LOGIT_GAP = 1e-3  # logits this close to the best are a tie (float32 rounding across batch shapes is ~1e-5)
MAX_TIES = 2          # turns at near ties followed per stream
TIE_BRANCHES = 3      # near-tied tokens tried at each turn


def near_tie(r: Result, greedy: Greedy) -> tuple[str, list[int]] | None:
    """(text, token ends) of the greedy decode that takes near-tied tokens where `r` left the grader's text, when
    `r` streamed exactly that (or it differs only as `loose` allows); None when the stream is wrong."""
    ids = greedy.ids.get(r.prompt, [])[: r.expected_tokens]
    if len(ids) != r.expected_tokens:
        return None
    engine = _tie_engine(*greedy.engine)
    tok, prompt_ids, got = engine.tokenizer, engine.tokenizer(r.prompt).input_ids, loose(r.text)
    for _ in range(MAX_TIES):
        k = _agreeing_tokens(tok, ids, got)
        if k == len(ids):
            break
        branches = [b for b in _near_best(engine, prompt_ids + ids[:k]) if b != ids[k]][:TIE_BRANCHES]
        for alt in branches:
            branch = ids[:k] + [alt] + _decode_from(engine, prompt_ids + ids[:k] + [alt], len(ids) - k - 1)
            if _agreeing_tokens(tok, branch, got) > k:
                ids = branch
                break
        else:
            return None
    text = str(tok.decode(ids, skip_special_tokens=True))
    if r.text != text and got != loose(text):
        return None
    return text, _token_ends(tok, ids)


def _agreeing_tokens(tok: Any, ids: list[int], got: str) -> int:
    """How many leading tokens of `ids` decode to a prefix of `got` (compared as `loose` does)."""
    for k in range(1, len(ids) + 1):
        if not got.startswith(loose(str(tok.decode(ids[:k], skip_special_tokens=True)).rstrip("\ufffd"))):
            return k - 1
    return len(ids)


@lru_cache(maxsize=2)
def _tie_engine(device: str, model: str, dtype: str | None) -> Any:
    import torch

    from reference_systems.serving.engine import Engine
    from reference_systems.serving.model import model_dir

    threads = torch.get_num_threads()
    try:
        return Engine(model_dir(model), max_batch=1, threads=1, device=device, dtype=dtype)
    finally:
        torch.set_num_threads(threads)


def _near_best(engine: Any, ids: list[int]) -> list[int]:
    """Tokens whose logit after `ids` is within TIE_LOGIT_GAP of the best, best first."""
    import torch

    with torch.inference_mode():
        logits = engine.model(input_ids=torch.tensor([ids], device=engine.device)).logits[0, -1].float()
    best = float(logits.max())
    near = torch.nonzero(logits >= best - TIE_LOGIT_GAP).flatten().tolist()
    return sorted(near, key=lambda t: -float(logits[t]))


def _decode_from(engine: Any, ids: list[int], n: int) -> list[int]:
    from reference_systems.serving.engine import generate

    return generate(engine, [ids], n)[0] if n > 0 else []


def retime(r: Result, want: str, ends: list[int]) -> None:
    """Token k's time is that of the first event by which the stream had brought the text of the first k greedy
    tokens (compared without non-ASCII characters when the stream differs only in those)."""
    norm = (lambda text: text) if r.text == want else loose
    need = [len(norm(want[:e])) for e in ends[:r.expected_tokens - 1]] + [len(norm(want))]
    got = [len(norm(r.text[:e])) for e in r.text_ends]
    times, j = [], 0
    for n in need:
        while j < len(got) - 1 and got[j] < n:
            j += 1
        times.append(r.token_times[j])
    r.token_times, r.end = times, times[-1]


@dataclass
class Verdict:
    """Verification over one server's load phase (every rate and the warm-up)."""
    compared: int = 0          # whole streams compared with the greedy text
    failed: int = 0            # ... that said something else
    detok_only: int = 0        # verified, but differing in non-ASCII characters or the end-of-text marker
    near_ties: int = 0         # verified, taking a near-tied token where the grader's batch took the other
    usage_mismatches: int = 0  # verified, with usage.completion_tokens != the streamed tokens (or no usage)
    examples: list[dict[str, str]] = field(default_factory=list)
    usage_examples: list[str] = field(default_factory=list)

    @property
    def share(self) -> float:
        return self.failed / self.compared if self.compared else 0.0

    def withheld(self, max_share: float) -> str | None:
        """Why the server gets no performance points (more wrong streams than `max_share` of those compared)."""
        if not self.compared or self.share <= max_share:
            return None
        example = ""
        if self.examples:
            e = self.examples[0]
            example = f" (e.g. streamed {e['got'][:40]!r} where the engine's greedy output is {e['want'][:40]!r})"
        return (f"output verification failed: {self.failed} of {self.compared} completions streamed under load were "
                f"not the engine's greedy output for their prompt{example}, more than the {max_share:.0%} the lab "
                "allows, so goodput, latency, throughput and cost are not credited")

    def usage_finding(self) -> str | None:
        """A sentence on `usage` claims that disagree with the verified streamed tokens, or None."""
        if not self.usage_mismatches:
            return None
        return (f"usage under load: {self.usage_mismatches} of {self.compared - self.failed} verified streams "
                f"reported a usage that disagrees with the tokens they streamed (e.g. {self.usage_examples[0]}); "
                "throughput and cost count the streamed tokens")

    def to_json(self) -> dict[str, Any]:
        return {"compared": self.compared, "failed": self.failed, "share": self.share, "detok_only": self.detok_only,
                "near_ties": self.near_ties,
                "usage_mismatches": self.usage_mismatches, "examples": self.examples,
                "usage_examples": self.usage_examples}


def verdict(results: Iterable[Result], greedy: Greedy) -> Verdict:
    v = Verdict()
    for r in results:
        if r.verified is None:
            continue
        v.compared += 1
        want = greedy.texts.get((r.prompt, r.expected_tokens), "")
        if not r.verified:
            v.failed += 1
            if len(v.examples) < EXAMPLES:
                v.examples.append({"prompt": r.prompt[-60:], "max_tokens": str(r.expected_tokens),
                                   "got": r.text[:80], "want": want[:80]})
            continue
        v.near_ties += r.near_tie
        v.detok_only += not r.near_tie and r.text != want
        if r.usage_tokens != r.output_tokens:
            v.usage_mismatches += 1
            if len(v.usage_examples) < EXAMPLES:
                claim = "no usage chunk" if r.usage_tokens is None else f"usage.completion_tokens={r.usage_tokens}"
                v.usage_examples.append(f"{claim} for {r.output_tokens} streamed tokens")
    return v


def stream_tpot_p50_ms(results: Iterable[Result]) -> float | None:
    """Median time per output token over every whole stream, verified or not: how fast tokens arrived."""
    values = [(r.end - r.token_times[0]) / (len(r.token_times) - 1) * 1e3
              for r in results if r.verified is not None and len(r.token_times) > 1]
    return float(np.median(values)) if values else None
