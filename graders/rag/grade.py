"""`ailab grade rag`: grade submissions against the reference, in the same run, by the same code.

For a batch: one reference worker indexes the corpus and answers the hidden queries once; then
each submission gets its own worker and its own scorecard. Quality (nDCG@10, recall@100,
MRR@10) is absolute on the hidden split and scored as a ratio to the reference; latency comes
from Locust rounds that alternate candidate and reference (C R C R ...) so both see the same
machine at the same moments, on a stream of queries neither has seen (graders.rag.loadstream, seeded
per submission) whose answers are checked against the quality pass (graders.rag.consistency).
A failing part never stops the others: unit parts run first, and a
call that hangs costs its part and a worker restart; retrieval is then indexed, searched, answered
and load-tested. Every scorecard line says what lost points; `report: PATH` is printed per submission.
"""
from __future__ import annotations

import sys
import tempfile
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import numpy as np

from graders.datasets import load_dataset
from graders.datasets.types import Dataset, Split
from graders.engine.batch import Batch
from graders.engine.hidden import Overlay, open_overlay
from graders.engine.labconfig import LabConfig, Limits, load_lab
from graders.engine.loadgen import LoadError, run_load
from graders.engine.submissions import open_submission, submissions_in
from graders.engine.report import write_report
from graders.engine.sandbox import Worker, WorkerError, candidate_cpu_s
from graders.engine.scorecard import RAG_METRICS, Scorecard, clean_metrics, environment
from graders.engine.scoring import latency_summary, percentile, ramp
from graders.paths import REPO_ROOT
from graders.rag import checks, consistency, loadstream
from graders.rag.consistency import Verdict
from graders.rag.loadstream import LoadStream, StreamSettings
from graders.rag.metrics import quality, recall_at_k_curve

ADAPTERS = "graders.rag.adapters"
REFERENCE = REPO_ROOT / "reference_systems" / "rag" / "submission.py"
ANSWER_QUERIES = 30
DENSE_CHECK_DOCS = 600
DENSE_CHECK_QUERIES = 50
WARM_UP = "warm-up query"  # searched before the quality pass, not counted; never in a load stream
# adapter -> the name a candidate knows it by, for error messages
LABELS = {"index": "Retriever.index", "search": "Retriever.search", "answer": "answer (after Retriever.search)",
          "rrf": "reciprocal_rank_fusion", "dense_search": "DenseIndex", "chunk": "chunk", "tokenize": "tokenize",
          "expand_query": "expand_query", "embed": "the lab's embedder"}
# measured figures of the load phase the scorecard keeps beside RAG_METRICS (absent when not measured)
LOAD_METRICS = ("latency_repeat_p50_ms", "load_probe_overlap", "load_agreement_ratio")


def log(message: str) -> None:
    print(f"[rag] {message}", file=sys.stderr, flush=True)


@dataclass
class Run:
    """One system's measurements: index stats, the hidden-split run, answers and load samples."""

    index: dict[str, float] = field(default_factory=dict)
    run: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    answers: list[dict[str, Any]] = field(default_factory=list)
    samples: list[list[Any]] = field(default_factory=list)  # [t, ms, ok, stream index, top ids] per load request
    load_seconds: float = 0.0
    cursor: int = 0            # how far into the load stream this system got
    failed_queries: int = 0
    first_error: str = ""
    verdict: Verdict | None = None


@dataclass
class Context:
    lab: LabConfig
    data: Dataset
    split: Split
    queries: dict[str, str]
    profile_name: str
    out: Path
    reference: Worker | None = None
    ref: Run = field(default_factory=Run)
    dense_vectors: np.ndarray | None = None
    dense_queries: np.ndarray | None = None
    hidden_checks: ModuleType | None = None  # the interviewer's checks.py (--hidden), run in place of ours
    private_split: bool = False              # the hidden split is the interviewer's (--hidden)
    settings: StreamSettings | None = None   # lab.toml [load]
    load_seed: int = 0                       # the batch's; submission i's stream has seed load_seed + i
    stream: LoadStream | None = None         # the stream of the submission being graded

    @property
    def judged(self) -> dict[str, dict[str, int]]:
        """The judgements of the queries graded: a profile may grade fewer than the split holds, and the
        others would count as failed queries in every average."""
        return {q: self.split.qrels[q] for q in self.queries}


def start_worker(source: str, name: str, lab: LabConfig) -> Worker:
    worker = Worker(source, ADAPTERS, name=name, memory_mb=lab.limits.memory_mb,
                    start_timeout_s=lab.limits.worker_start_s, labels=LABELS,
                    cpu_s=candidate_cpu_s(name, lab))
    return worker.__enter__()  # started, or cleaned up and raised


def measure(w: Worker, ctx: Context, name: str) -> Run:
    """Index the corpus and search every hidden query; answer a few. Failures are recorded, not raised."""
    result = Run()
    log(f"{name}: indexing {len(ctx.data.docs)} documents ...")
    result.index = w.call("index", ctx.lab.limits.index_s, docs=[d.as_dict() for d in ctx.data.docs])
    log(f"{name}: indexed in {result.index['seconds']:.1f} s; searching {len(ctx.queries)} hidden queries ...")
    w.call("search", ctx.lab.limits.call_s, query=WARM_UP, k=10)  # not counted: first-call effects
    for qid, text in ctx.queries.items():
        try:
            result.run[qid] = [(h[0], h[1]) for h in w.call("search", ctx.lab.limits.call_s, query=text, k=100)]
        except WorkerError as exc:
            result.failed_queries += 1
            result.first_error = result.first_error or str(exc)
            result.run[qid] = []
            if w.proc is None or w.proc.poll() is not None:
                break
    for qid in list(ctx.queries)[:ANSWER_QUERIES]:
        try:
            result.answers.append({"qid": qid, **w.call("answer", ctx.lab.limits.call_s, query=ctx.queries[qid], k=5)})
        except WorkerError as exc:
            result.answers.append({"qid": qid, "error": str(exc)})
    return result


def load_stream(ctx: Context, index: int) -> LoadStream:
    """The load stream of the batch's index-th submission (and of the reference rounds beside it)."""
    assert ctx.settings is not None
    profile = ctx.lab.profile(ctx.profile_name)
    size = int(ctx.settings.max_qps * profile.load_seconds * profile.rounds)
    return loadstream.build(ctx.queries, size, ctx.settings.probe_every, ctx.load_seed + index, avoid=[WARM_UP])


def load_rounds(cand: Worker, ctx: Context, cand_run: Run, label: str) -> None:
    """Alternate candidate and reference Locust rounds over the stream; each system goes on from where its
    previous round stopped, so no text is sent to it twice. Samples accumulate per system."""
    assert ctx.reference is not None and ctx.stream is not None
    profile, texts = ctx.lab.profile(ctx.profile_name), ctx.stream.texts
    # not the candidate's scratch folder: the submission can write there, and must not forge its samples
    with tempfile.TemporaryDirectory(prefix="ailab-load-") as workdir:
        for r in range(profile.rounds):
            for who, worker, run in (("candidate", cand, cand_run), ("reference", ctx.reference, ctx.ref)):
                if run.cursor >= len(texts):  # it answered the whole stream: the round's time still counts
                    run.load_seconds += profile.load_seconds
                    continue
                log(f"{label}: load round {r + 1}/{profile.rounds} on the {who} ({profile.users} users, "
                    f"{profile.load_seconds:.0f} s)")
                with cand.paused() if worker is not cand else nullcontext():
                    out = run_load(worker.url, texts[run.cursor:], seconds=profile.load_seconds, users=profile.users,
                                   spawn_rate=profile.spawn_rate, k=profile.k, workdir=Path(workdir),
                                   label=f"{who}-{r}", workers=profile.workers, stream=True)
                run.samples.extend([*s[:3], s[3] + run.cursor, s[4]] for s in out["samples"])
                run.cursor += int(out["next"])
                run.load_seconds += out["seconds"]


def load_metrics(run: Run, probes: dict[int, str]) -> dict[str, float]:
    """Latency and throughput of the first-seen queries; errors over every request; repeats' p50 apart."""
    first = [s for s in run.samples if s[3] not in probes]
    m = latency_summary(first, run.load_seconds)
    m["error_rate"] = latency_summary(run.samples, run.load_seconds)["error_rate"]
    repeats = [s[1] for s in run.samples if s[3] in probes and s[2]]
    if repeats:
        m["latency_repeat_p50_ms"] = percentile(repeats, 50)
    return m


def metrics_of(run: Run, qrels: dict[str, dict[str, int]], probes: dict[int, str]) -> dict[str, float]:
    """Every measured figure of one system (the scorecard keeps the RAG_METRICS and LOAD_METRICS among them)."""
    m: dict[str, float] = {}
    if run.run:
        m.update(quality(run.run, qrels))
    if run.samples:
        m.update(load_metrics(run, probes))
    if run.index:
        m["index_build_s"] = run.index["seconds"]
        m["index_bytes"] = run.index["index_bytes"]
    if run.verdict is not None:
        m.update(run.verdict.metrics())
    return m


def verify_load(cand: Run, ctx: Context) -> Verdict:
    """Judge the candidate's answers under load (graders.rag.consistency); the reference's answers to the
    sampled first-seen queries come from its own load rounds, or from asking it now for those it never reached."""
    assert ctx.reference is not None and ctx.stream is not None and ctx.settings is not None
    k, stream, reference = ctx.lab.profile(ctx.profile_name).k, ctx.stream, ctx.reference
    seen = {s[3]: s[4] for s in ctx.ref.samples if s[2]}

    def ref_ranking(indices: list[int]) -> dict[int, list[str]]:
        return {i: seen[i] if i in seen else [h[0] for h in reference.call(
            "search", ctx.lab.limits.call_s, query=stream.texts[i], k=k)] for i in indices}

    def top(run: dict[str, list[tuple[str, float]]]) -> dict[str, list[str]]:
        return {q: [d for d, _ in hits[:k]] for q, hits in run.items()}

    return consistency.judge(cand.samples, stream, top(cand.run), top(ctx.ref.run), ref_ranking, ctx.settings, k)


def unit_parts(card: Scorecard, ctx: Context, w: Worker | None, source: str, name: str, why_not: str) -> Worker | None:
    """The unit-checked parts. A check that kills the worker (a hang) costs that part only: the
    worker is restarted for the next one. Returns the worker that is running afterwards, if any."""
    parts, call_s = ctx.lab.parts, ctx.lab.limits.call_s
    vectors, queries = ctx.dense_vectors, ctx.dense_queries
    assert vectors is not None and queries is not None, "grade() embeds the dense-check vectors first"
    unit: dict[str, Callable[[Worker], checks.Check]] = {
        "chunking": lambda x: checks.chunking(x, call_s),
        "dense_index": lambda x: checks.dense_index(x, call_s, vectors, queries),
        "hybrid_fusion": lambda x: checks.hybrid_fusion(x, call_s),
        "query_expansion": lambda x: checks.query_expansion(x, call_s),
    }
    for part, fn in unit.items():
        if w is not None and (w.proc is None or w.proc.poll() is not None):
            w = restart(w, source, name, ctx.lab)
        if w is None:
            card.add(part, 0, parts[part].weight, f"Task {parts[part].task}: not checked: {why_not}")
            continue
        hidden = getattr(ctx.hidden_checks, part, None)
        try:
            if callable(hidden):
                fraction, detail = checks.hidden_cases(hidden(checks.Candidate(w, call_s)))
            else:
                fraction, detail = fn(w)
        except WorkerError as exc:
            fraction, detail = 0.0, str(exc)
        card.add(part, fraction, parts[part].weight, f"Task {parts[part].task}: {detail}")
    return w


def restart(w: Worker, source: str, name: str, lab: LabConfig) -> Worker | None:
    w.cleanup()
    log(f"{name}: restarting the submission's worker after it was stopped ...")
    try:
        return start_worker(source, name, lab)
    except WorkerError:
        return None


def system_parts(card: Scorecard, ctx: Context, cand: Run | None, why_not: str) -> None:
    """Retrieval quality, performance and grounded answers, from the measured runs."""
    lab, parts = ctx.lab, ctx.lab.parts
    probes = ctx.stream.probes if ctx.stream else {}
    ref_m = metrics_of(ctx.ref, ctx.judged, probes)
    m = metrics_of(cand, ctx.judged, probes) if cand else {}
    q = parts["retrieval_quality"]
    ratio = 0.0
    if cand and cand.run and "ndcg@10" in m:
        ratio = m["ndcg@10"] / ref_m["ndcg@10"] if ref_m.get("ndcg@10") else 0.0
        detail = (f"Task {q.task}: nDCG@10 {m['ndcg@10']:.3f} vs reference {ref_m['ndcg@10']:.3f} (ratio {ratio:.2f}; "
                  f"full credit at >= {q.full_at_ratio}, none at <= {q.zero_at_ratio}); "
                  f"recall@100 {m['recall@100']:.3f} vs {ref_m['recall@100']:.3f}")
        if cand.failed_queries:
            detail += f"; {cand.failed_queries} searches failed, scored as empty: {cand.first_error[:300]}"
        card.add(q.name, ramp(ratio, q.zero_at_ratio or 0, q.full_at_ratio or 1), q.weight, detail)
    else:
        card.add(q.name, 0, q.weight, f"Task {q.task}: not measured: " + (why_not or "no search results (see errors)"))

    p = parts["performance"]
    if cand and cand.samples and ref_m.get("latency_p95_ms") and m.get("throughput_qps"):
        fraction, weight, detail = performance(m, ref_m, p, lab.slo.get("latency_p95_ms"))
        card.add(p.name, *verified(fraction, weight, detail, cand, ratio, ctx))
    else:
        card.add(p.name, 0, p.weight, f"Task {p.task}: not measured: " + (
            why_not or (card.errors[-1] if card.errors else "no successful first-seen searches under load")))

    a = parts["grounded_answers"]
    if cand and cand.answers:
        fraction, detail = answers_score(cand, ctx)
        card.add(a.name, fraction, a.weight, detail)
    else:
        card.add(a.name, 0, a.weight, f"Task {a.task}: not measured: " + (why_not or "no answers (see errors)"))
    names = RAG_METRICS + LOAD_METRICS
    card.metrics, card.reference = clean_metrics(m, names), {"metrics": clean_metrics(ref_m, names)}


def verified(fraction: float, weight: float, detail: str, cand: Run, quality_ratio: float,
             ctx: Context) -> tuple[float, float, str]:
    """The performance points, kept only for real retrieval: none when the answers under load fail the
    consistency checks, and scaled down to none for a retriever whose nDCG@10 ratio falls from the quality
    part's zero point to `[load] quality_floor_ratio` (a fast answer that finds nothing is worth nothing)."""
    assert ctx.settings is not None and ctx.stream is not None
    verdict = cand.verdict
    first = sum(1 for s in cand.samples if s[2] and s[3] not in ctx.stream.probes)
    detail += f"; latency and throughput count the {first} first-seen queries answered under load, never a repeat"
    if cand.cursor >= len(ctx.stream.texts):
        detail += (f" (it got through the whole stream of {len(ctx.stream.texts)} requests before the time was up, "
                   "so its throughput is at least that)")
    if verdict is not None and verdict.summary():
        detail += f"; answers under load: {verdict.summary()}"
    if verdict is not None and not verdict.ok:
        return 0.0, weight, detail + "; no performance points: " + "; ".join(verdict.reasons)
    zero_at = ctx.lab.parts["retrieval_quality"].zero_at_ratio or 0.6
    gate = ramp(quality_ratio, ctx.settings.quality_floor_ratio, zero_at)
    if gate < 1:
        detail += (f"; nDCG@10 ratio {quality_ratio:.2f} is below {zero_at:g}: performance counts "
                   f"{gate:.0%} (none at <= {ctx.settings.quality_floor_ratio:g}; fast answers that find little "
                   "are not worth points)")
    return fraction * gate, weight, detail


def performance(m: dict[str, float], ref: dict[str, float], p: Any, slo_p95: float | None) -> tuple[float, float, str]:
    """(fraction, max points, detail): half for the p95 latency ratio, half for the throughput ratio.

    Both are slowdown factors (candidate p95 / reference p95, reference q/s / candidate q/s), so one
    pair of bounds serves both. The lab's absolute SLO caps the part, smoothly: at the SLO the cap is
    100 %, at twice the SLO 50 %. On a machine so busy that the reference itself is slow, the SLO
    used is the full-credit slowdown times the reference's p95 when that is larger. Every input moves
    the points continuously, so noise moves them a little, never across a cliff.
    """
    full, zero = p.full_at_ratio or 1.5, p.zero_at_ratio or 6.0
    lat_ratio = m["latency_p95_ms"] / ref["latency_p95_ms"]
    qps_ratio = ref["throughput_qps"] / m["throughput_qps"]
    fraction = (0.5 * ramp(lat_ratio, zero, full) + 0.5 * ramp(qps_ratio, zero, full)) * (1 - m["error_rate"])
    detail = (f"Task {p.task}: p95 {m['latency_p95_ms']:.1f} ms vs reference {ref['latency_p95_ms']:.1f} ms "
              f"(slowdown {lat_ratio:.2f}); {m['throughput_qps']:.1f} vs {ref['throughput_qps']:.1f} queries/s "
              f"(slowdown {qps_ratio:.2f}); full credit at slowdown <= {full:g}, none at >= {zero:g}; "
              f"errors under load {m['error_rate']:.1%}")
    if slo_p95 and m["latency_p95_ms"] > slo_p95:
        slo = max(slo_p95, full * ref["latency_p95_ms"])
        cap = 0.5 + 0.5 * ramp(m["latency_p95_ms"] / slo, 2.0, 1.0)
        if cap < fraction:
            fraction = cap
            detail += f"; misses the SLO p95 <= {slo_p95:.0f} ms: capped at {cap:.0%} (half at twice the SLO)"
        elif slo > slo_p95 and m["latency_p95_ms"] <= slo:
            detail += (f"; above the SLO p95 <= {slo_p95:.0f} ms, but this machine is busy: the reference's own p95 "
                       f"is {ref['latency_p95_ms']:.0f} ms, so up to {slo:.0f} ms is not capped")
        else:
            detail += f"; misses the SLO p95 <= {slo_p95:.0f} ms (its slowdown already costs more than the SLO cap)"
    return fraction, p.weight, detail


def answers_score(cand: Run, ctx: Context) -> tuple[float, str]:
    docs = ctx.data.doc_map()
    doc_dicts = {d: docs[d].as_dict() for d in docs}
    valid = good = relevant = 0
    reasons = []
    for ans in cand.answers:
        if "error" in ans:
            reasons.append(ans["error"])
            continue
        ok_cites, ok_ground, why = checks.grounded(ans, doc_dicts)
        valid += ok_cites
        good += ok_cites and ok_ground
        relevant += any(ctx.split.qrels.get(ans["qid"], {}).get(c, 0) > 0 for c in ans["citations"])
        if why:
            reasons.append(why)
    n = len(cand.answers)
    ref_relevant = sum(
        any(ctx.split.qrels.get(a["qid"], {}).get(c, 0) > 0 for c in a.get("citations", [])) for a in ctx.ref.answers)
    rel_ratio = relevant / ref_relevant if ref_relevant else 1.0
    fraction = 0.7 * good / n + 0.3 * ramp(rel_ratio, 0.5, 0.95)
    detail = (f"Task 6.1: {good}/{n} answers cite only retrieved documents and every sentence is supported; "
              f"{relevant}/{n} cite a relevant document (reference {ref_relevant}/{len(ctx.ref.answers)})")
    if reasons:
        detail += f"; e.g. {reasons[0][:200]}"
    return fraction, detail


def grade_one(name: str, path: Path, ctx: Context, batch: Batch, index: int = 0) -> Scorecard:
    """Grade the batch's index-th submission against the reference measurements; writes its scorecard and report."""
    started = time.perf_counter()
    card = Scorecard(lab="rag", submission=name)
    cand: Run | None = None
    ctx.stream = load_stream(ctx, index)
    # the reference's rounds are run anew beside each submission, on its stream (none if it never gets there)
    ctx.ref.samples, ctx.ref.load_seconds, ctx.ref.cursor = [], 0.0, 0
    w, why_not, extracted = open_submission(path, card, lambda src: start_worker(src, name, ctx.lab), log,
                                            ctx.lab.notebook)
    try:
        w = unit_parts(card, ctx, w, extracted.source, name, why_not)
        if w is not None:
            try:
                cand = measure(w, ctx, name)
                if cand.failed_queries:
                    card.errors.append(f"{cand.failed_queries} of {len(ctx.queries)} searches failed: {cand.first_error}")
                if w.proc is not None and w.proc.poll() is None and len(cand.run) > cand.failed_queries:
                    load_rounds(w, ctx, cand, name)
            except WorkerError as exc:
                card.errors.append(f"the retriever could not be measured: {exc}")
            except LoadError as exc:
                card.errors.append(f"the load test could not run (a grader problem, not the submission's): {exc}")
            if cand is not None and cand.samples:
                cand.verdict = verify_load(cand, ctx)
                card.errors += [f"performance: {reason}" for reason in cand.verdict.reasons]
        system_parts(card, ctx, cand, why_not)
    except Exception as exc:  # noqa: BLE001 - a grader bug must not cost the rest of the batch its grades
        card.errors.append(f"internal grader error while grading this submission ({type(exc).__name__}: {exc}); "
                           "parts not yet scored get 0 — please report this with the submission attached")
    finally:
        if w is not None:
            w.cleanup()
    batch.complete(card, why_not)
    card.duration_s = time.perf_counter() - started
    card.environment = environment(profile=ctx.profile_name, dataset=ctx.data.name, split=ctx.split.name,
                                   queries=len(ctx.queries), documents=len(ctx.data.docs),
                                   qrels_layout="beir (--hidden)" if ctx.private_split else ctx.data.qrels_layout,
                                   hidden_set="private (--hidden)" if ctx.private_split else "shipped",
                                   load=asdict(ctx.lab.profile(ctx.profile_name)), slo=ctx.lab.slo,
                                   load_seed=ctx.stream.seed, load_stream=stream_facts(ctx, cand))
    probes = ctx.stream.probes
    card.extras = {"curve": recall_at_k_curve(cand.run, ctx.judged) if cand and cand.run else {},
                   "ref_curve": recall_at_k_curve(ctx.ref.run, ctx.judged),
                   "latencies": [s[1] for s in (cand.samples if cand else []) if s[2] and s[3] not in probes],
                   "ref_latencies": [s[1] for s in ctx.ref.samples if s[2] and s[3] not in probes],
                   "load": load_extras(ctx, cand)}
    batch.publish(card, path, write_report)
    return card


def stream_facts(ctx: Context, cand: Run | None) -> dict[str, Any]:
    """What the scorecard's environment records of the load stream (with load_seed, enough to rebuild it)."""
    assert ctx.stream is not None and ctx.settings is not None
    return {"requests": len(ctx.stream.texts), "first_seen": ctx.stream.first_seen(),
            "probe_every": ctx.settings.probe_every, "candidate_reached": cand.cursor if cand else 0,
            "reference_reached": ctx.ref.cursor}


def load_extras(ctx: Context, cand: Run | None) -> dict[str, Any]:
    """The report's load-verification section: the checks' figures, thresholds and verdict."""
    assert ctx.stream is not None and ctx.settings is not None
    verdict = cand.verdict if cand else None
    return {"seed": ctx.stream.seed, "settings": asdict(ctx.settings), **stream_facts(ctx, cand),
            "verdict": asdict(verdict) if verdict else None, "ok": verdict.ok if verdict else None,
            "agreement_ratio": verdict.agreement_ratio if verdict else None,
            "examples": ctx.stream.texts[:3]}


def prepare(lab: LabConfig, dataset: str, split: str, profile: str, out: Path, overlay: Overlay | None = None) -> Context:
    data = load_dataset(dataset)
    chosen = data.split(split)
    private = overlay is not None and overlay.has_split() and split == "test"
    if private:
        assert overlay is not None
        queries, qrels = overlay.split({d.id for d in data.docs})
        chosen = Split("test", queries, qrels)
    limit = lab.profile(profile).max_quality_queries
    queries = {q: t for q, t in list(chosen.queries.items())[:limit] if chosen.qrels.get(q)}
    try:
        settings = StreamSettings.from_lab(lab.raw)
    except ValueError as exc:  # an interviewer's [load] table that does not fit: one line, as for a wrong profile
        raise SystemExit(str(exc)) from None
    ctx = Context(lab=lab, data=data, split=chosen, queries=queries, profile_name=profile, out=out,
                  private_split=private, hidden_checks=overlay.checks() if overlay else None,
                  settings=settings, load_seed=settings.base_seed())
    which = "private --hidden" if private else split
    log(f"dataset {data.name}: {len(data.docs)} documents, {len(queries)} {which} queries; profile {profile}; "
        f"load stream seed {ctx.load_seed} (+ i for the batch's i-th submission)")
    return ctx


def grade(submission: str | list[tuple[str, Path]], out_dir: Path, dataset: str = "support-kb",
          profile: str = "quick", split: str = "test", limits: Limits | None = None,
          hidden: Path | None = None, course: Path | None = None) -> list[Scorecard]:
    """Grade a .ipynb, a .py, a folder of them, `reference`, or (name, path) pairs; scorecard.json +
    report.html each in `out_dir/<name>/`. `limits` overrides lab.toml's (tests use shorter ones);
    `hidden` is an interviewer's overlay folder (graders.engine.hidden); with `course`, grades also go
    into that nbgrader course's gradebook (graders.gradebook)."""
    overlay = open_overlay(hidden, "rag")
    lab = load_lab("rag", overlay.lab_toml() if overlay else None)
    if limits is not None:
        lab = replace(lab, limits=limits)
    subs = submissions_in(submission, REFERENCE)
    ctx = prepare(lab, dataset, split, profile, Path(out_dir), overlay)
    batch = Batch.open(lab, subs, Path(out_dir), course)
    log("starting the reference worker ...")
    ctx.reference = start_worker(REFERENCE.read_text(), "reference", lab)
    try:
        ctx.ref = measure(ctx.reference, ctx, "reference")
        if ctx.ref.failed_queries:  # the grading environment is broken; grading anyone against it would mislead
            raise RuntimeError(f"the reference failed on {ctx.ref.failed_queries} queries: {ctx.ref.first_error}")
        texts = [f"{d.title}\n{d.text}" for d in ctx.data.docs[:DENSE_CHECK_DOCS]]
        ctx.dense_vectors = np.asarray(ctx.reference.call("embed", 600, texts=texts), dtype=np.float32)
        qtexts = list(ctx.data.split("dev").queries.values())[:DENSE_CHECK_QUERIES]
        ctx.dense_queries = np.asarray(ctx.reference.call("embed", 120, texts=qtexts), dtype=np.float32)
        return [grade_one(name, path, ctx, batch, i) for i, (name, path) in enumerate(batch)]
    finally:
        ctx.reference.cleanup()
