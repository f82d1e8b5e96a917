"""Are a retriever's answers under load the retrieval it was graded on? Two sampled checks on the load phase.

Latency counts only if what came back under load is real retrieval. Both checks compare top-k doc ids
(k of the load requests) by overlap, so any retriever, exact or approximate, can be judged the same way:

- **probes**: quality-pass queries repeated under load (graders.rag.loadstream) must get, on average,
  the answers the same retriever gave them in the quality pass (`min_probe_overlap`). A retriever that
  notices the load (by call count, call order or request rate) and answers cheaply fails here.
- **first-seen agreement**: on a random sample of the first-seen queries it answered under load, its top k
  must agree with the reference's top k about as much as they agree on the quality pass: the ratio of the
  two mean overlaps must reach `min_agreement_ratio`. A retriever that answers the texts it has seen
  properly and everything new with anything cheap fails here. The ratio is judged only when the quality
  pass's agreement reaches `agreement_floor` (below it a retriever has little in common with the reference
  anyway, and the quality part has already priced that).

The probes need `min_probes` answers (a deterministic retriever repeats itself exactly, so a few suffice);
the agreement, a mean of noisy per-query overlaps, needs `min_verified`. With fewer a check is not judged,
and the verdict says so.
"""
from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from graders.rag.loadstream import LoadStream, StreamSettings

Ranking = list[str]


def overlap(a: Ranking, b: Ranking, k: int) -> float:
    """|top k of a ∩ top k of b| / the longer of the two (1.0 when both are empty)."""
    sa, sb = set(a[:k]), set(b[:k])
    return len(sa & sb) / max(len(sa), len(sb)) if sa or sb else 1.0


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


@dataclass
class Verdict:
    """The two checks' figures; `reasons` (empty when the answers under load hold up) cost the performance points."""

    k: int
    probes: int = 0
    probe_overlap: float | None = None
    verified: int = 0
    agreement_quality: float | None = None
    agreement_load: float | None = None
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.reasons

    @property
    def agreement_ratio(self) -> float | None:
        if self.agreement_load is None or not self.agreement_quality:
            return None
        return self.agreement_load / self.agreement_quality

    def metrics(self) -> dict[str, float]:
        """The figures the scorecard keeps (absent when not measured)."""
        out = {"load_probe_overlap": self.probe_overlap, "load_agreement_ratio": self.agreement_ratio}
        return {name: value for name, value in out.items() if value is not None}

    def summary(self) -> str:
        parts = []
        if self.probe_overlap is not None:
            parts.append(f"{self.probes} repeated quality-pass queries answered under load as in the quality pass "
                         f"(top-{self.k} overlap {self.probe_overlap:.2f})")
        if self.agreement_load is not None and self.agreement_quality is not None:
            parts.append(f"{self.verified} first-seen answers agree with the reference's by {self.agreement_load:.2f} "
                         f"(quality pass {self.agreement_quality:.2f})")
        return "; ".join(parts + self.notes)


def judge(samples: Sequence[Sequence[Any]], stream: LoadStream, quality_run: dict[str, Ranking],
          ref_quality_run: dict[str, Ranking], ref_ranking: Callable[[list[int]], dict[int, Ranking]],
          settings: StreamSettings, k: int) -> Verdict:
    """Judge a candidate's load samples ([t, ms, ok, stream index, top ids], graders.engine.loadgen stream mode).

    `quality_run` / `ref_quality_run`: qid -> ranked doc ids of the quality pass (candidate, reference);
    `ref_ranking(indices)`: the reference's top k for those stream indices.
    """
    verdict = Verdict(k=k)
    answered = [(int(s[3]), list(s[4])) for s in samples if s[2] and len(s) >= 5]

    pairs = [(ids, quality_run.get(stream.probes[i], [])) for i, ids in answered if i in stream.probes]
    verdict.probes = len(pairs)
    if len(pairs) >= settings.min_probes:
        verdict.probe_overlap = mean = sum(overlap(a, b, k) for a, b in pairs) / len(pairs)
        if mean < settings.min_probe_overlap:
            verdict.reasons.append(
                f"its answers to {len(pairs)} quality-pass queries repeated under load overlap its own quality-pass "
                f"answers by only {mean:.2f} (top-{k} mean; at least {settings.min_probe_overlap:g} "
                "required): under load it does not run the retrieval it was graded on")
    else:
        verdict.notes.append(f"only {len(pairs)} repeated quality-pass queries answered under load: not judged")

    shared = [q for q in ref_quality_run if q in quality_run]
    verdict.agreement_quality = _mean([overlap(quality_run[q], ref_quality_run[q], k) for q in shared])
    first_seen = [(i, ids) for i, ids in answered if i not in stream.probes]
    if len(first_seen) < settings.min_verified:
        verdict.notes.append(f"only {len(first_seen)} first-seen queries answered under load: agreement not judged")
        return verdict
    chosen = random.Random(stream.seed).sample(first_seen, min(settings.verify_sample, len(first_seen)))
    reference = ref_ranking([i for i, _ in chosen])
    verdict.verified = len(chosen)
    verdict.agreement_load = _mean([overlap(ids, reference.get(i, []), k) for i, ids in chosen])
    ratio = verdict.agreement_ratio
    if verdict.agreement_quality is None or verdict.agreement_quality < settings.agreement_floor:
        verdict.notes.append(f"agreement with the reference on the quality pass is below {settings.agreement_floor:g}: "
                             "first-seen agreement not judged")
    elif ratio is not None and ratio < settings.min_agreement_ratio:
        verdict.reasons.append(
            f"on {len(chosen)} sampled first-seen queries under load its top {k} agrees with the reference's by "
            f"{verdict.agreement_load:.2f}, against {verdict.agreement_quality:.2f} on the quality pass (ratio "
            f"{ratio:.2f}; at least {settings.min_agreement_ratio:g} required): new queries under load get answers "
            "unlike its quality-pass retrieval")
    return verdict
