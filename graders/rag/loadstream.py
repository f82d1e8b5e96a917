"""The RAG load phase's query stream: seeded rewrites the retriever has never seen, with probes mixed in.

A load phase that replays the quality pass's queries measures a cache, not a retriever. The stream is
built per graded submission from a seed (fresh per grading run unless lab.toml `[load] seed` fixes it):

- **first-seen queries**: rewrites of the quality-pass queries. Each splices two of them (a prefix of one,
  the tail of another, keeping the first one's length) and swaps about one word in six for a word drawn
  from the queries' own vocabulary (a query of one or two words may instead grow by one), so any
  collection's queries (support-kb, Cranfield, BEIR, SMART) work and the length and words of a query stay
  what the reference is used to. A rewrite is kept only if its
  set of distinctive words (words in few queries, lower-cased) matches no quality-pass query and no
  earlier rewrite: a cache keyed on the text, its case, its word order or its stop words never hits.
- **probes**: every `probe_every`-th request repeats a quality-pass query, whose answer under load is
  compared with the retriever's own quality-pass answer (graders.rag.consistency).

The candidate and the reference are sent the same stream, each from its start.
"""
from __future__ import annotations

import random
import re
import secrets
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

_WORD = re.compile(r"[a-z0-9]+")
ATTEMPTS_PER_QUERY = 20  # rewrites tried per stream slot before a tiny query pool is given up on


@dataclass(frozen=True)
class StreamSettings:
    """lab.toml `[load]`: the stream's seed and make-up, and the consistency thresholds."""

    seed: int | None            # None: a fresh seed per grading run
    max_qps: float              # the stream holds max_qps x seconds of load per system: never replayed
    probe_every: int
    min_probe_overlap: float
    verify_sample: int
    min_agreement_ratio: float
    agreement_floor: float
    min_probes: int
    min_verified: int
    quality_floor_ratio: float

    @classmethod
    def from_lab(cls, raw: dict[str, Any]) -> StreamSettings:
        """lab.toml's [load] table (a --hidden lab.toml merged over it); ValueError says what does not fit."""
        where = "lab.toml [load] (with any --hidden lab.toml merged over it)"
        table = dict(raw.get("load", {}))
        seed = table.pop("seed", "fresh")
        if seed != "fresh" and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise ValueError(f"{where}: seed must be \"fresh\" or an integer; got {seed!r}")
        try:
            settings = cls(seed=None if seed == "fresh" else int(seed), **table)
        except TypeError as exc:
            raise ValueError(f"{where} does not fit the RAG lab ({exc})") from None
        numbers = {k: v for k, v in vars(settings).items() if k != "seed"}
        wrong = [k for k, v in numbers.items() if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0]
        if wrong or settings.max_qps <= 0 or settings.verify_sample < 1:
            raise ValueError(f"{where}: {', '.join(wrong) or 'max_qps, verify_sample'}: numbers >= 0 wanted "
                             "(max_qps and verify_sample above 0)")
        return settings

    def base_seed(self) -> int:
        return self.seed if self.seed is not None else secrets.randbelow(2**31)


@dataclass(frozen=True)
class LoadStream:
    """The texts in the order they are sent; `probes` maps a stream index to the quality-pass query id it repeats."""

    seed: int
    texts: list[str]
    probes: dict[int, str]

    def first_seen(self) -> int:
        return len(self.texts) - len(self.probes)


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _common_words(pool: Sequence[str]) -> set[str]:
    """Words in more than a tenth of the queries (at least 3): stop words and the collection's boilerplate."""
    df = Counter(w for text in pool for w in set(words(text)))
    cut = max(2, len(pool) // 10)
    return {w for w, n in df.items() if n > cut}


def _rewrite(a: list[str], b: list[str], vocabulary: list[str], rng: random.Random) -> str:
    out = list(a)
    if len(a) > 1 and len(b) > 1 and rng.random() < 0.7:
        cut = rng.randint(1, len(a) - 1)
        out = a[:cut] + b[max(0, len(b) - (len(a) - cut)):]
    if len(out) <= 2 and rng.random() < 0.5:  # a one- or two-word query has few swaps to offer: grow it by one
        out.insert(rng.randint(0, len(out)), rng.choice(vocabulary))
    else:
        for _ in range(max(1, len(out) // 6)):
            out[rng.randrange(len(out))] = rng.choice(vocabulary)
    return " ".join(out)


def rewrites(pool: Sequence[str], n: int, rng: random.Random, avoid: Iterable[str] = ()) -> list[str]:
    """Up to n new query texts made from `pool`, none sharing its distinctive words with `avoid`, `pool`
    or each other (fewer only when the pool is too small to give n)."""
    tokenized = [t.split() for t in pool if t.split()]
    if not tokenized:
        return []
    vocabulary = [w for toks in tokenized for w in toks]
    common = _common_words(pool)

    def key(text: str) -> frozenset[str]:
        return frozenset(w for w in words(text) if w not in common)

    seen = {key(t) for t in [*pool, *avoid]}
    out: list[str] = []
    for _ in range(n * ATTEMPTS_PER_QUERY):
        if len(out) >= n:
            break
        text = _rewrite(rng.choice(tokenized), rng.choice(tokenized), vocabulary, rng)
        k = key(text)
        if k and k not in seen:
            seen.add(k)
            out.append(text)
    return out


def build(queries: dict[str, str], size: int, probe_every: int, seed: int, avoid: Iterable[str] = ()) -> LoadStream:
    """A stream of `size` requests over the quality-pass `queries` (id -> text): rewrites, and every
    `probe_every`-th one a quality-pass query (probe_every 0: none)."""
    rng = random.Random(seed)
    ids = list(queries)
    slots = [probe_every > 0 and i % probe_every == probe_every - 1 for i in range(size)]
    fresh = iter(rewrites([queries[q] for q in ids], slots.count(False), rng, avoid))
    texts: list[str] = []
    probes: dict[int, str] = {}
    for is_probe in slots:
        if is_probe:
            qid = rng.choice(ids)
            probes[len(texts)] = qid
            texts.append(queries[qid])
        else:
            text = next(fresh, None)
            if text is None:  # a pool too small for `size` distinct rewrites: a shorter stream
                break
            texts.append(text)
    return LoadStream(seed=seed, texts=texts, probes=probes)
