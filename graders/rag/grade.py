"""`ailab grade rag`: grade submissions against the reference, in the same run, by the same code.

For a batch: one reference worker indexes the corpus and answers the hidden queries once; then
each submission gets its own worker and its own scorecard. Quality (nDCG@10, recall@100,
MRR@10) is absolute on the hidden split and scored as a ratio to the reference; latency comes
from Locust rounds that alternate candidate and reference (C R C R ...) so both see the same
machine at the same moments. A failing part never stops the others: unit parts run first, and a
call that hangs costs its part and a worker restart; retrieval is then indexed, searched, answered
and load-tested. Every scorecard line says what lost points; `report: PATH` is printed per submission.
"""
from __future__ import annotations

import sys
import tempfile
import time
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
from graders.engine.scoring import latency_summary, ramp
from graders.paths import REPO_ROOT
from graders.rag import checks
from graders.rag.metrics import quality, recall_at_k_curve

ADAPTERS = "graders.rag.adapters"
REFERENCE = REPO_ROOT / "reference_systems" / "rag" / "submission.py"
ANSWER_QUERIES = 30
DENSE_CHECK_DOCS = 600
DENSE_CHECK_QUERIES = 50
# adapter -> the name a candidate knows it by, for error messages
LABELS = {"index": "Retriever.index", "search": "Retriever.search", "answer": "answer (after Retriever.search)",
          "rrf": "reciprocal_rank_fusion", "dense_search": "DenseIndex", "chunk": "chunk", "tokenize": "tokenize",
          "expand_query": "expand_query", "embed": "the lab's embedder"}


def log(message: str) -> None:
    print(f"[rag] {message}", file=sys.stderr, flush=True)


@dataclass
class Run:
    """One system's measurements: index stats, the hidden-split run, answers and load samples."""

    index: dict[str, float] = field(default_factory=dict)
    run: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    answers: list[dict[str, Any]] = field(default_factory=list)
    samples: list[list[float]] = field(default_factory=list)
    load_seconds: float = 0.0
    failed_queries: int = 0
    first_error: str = ""


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
    w.call("search", ctx.lab.limits.call_s, query="warm-up query", k=10)  # not counted: first-call effects
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


def load_rounds(cand: Worker, ctx: Context, cand_run: Run, label: str) -> None:
    """Alternate candidate and reference Locust rounds; samples accumulate per system."""
    assert ctx.reference is not None
    profile = ctx.lab.profile(ctx.profile_name)
    queries = list(ctx.queries.values())
    ctx.ref.samples, ctx.ref.load_seconds = [], 0.0
    # not the candidate's scratch folder: the submission can write there, and must not forge its samples
    with tempfile.TemporaryDirectory(prefix="ailab-load-") as workdir:
        for r in range(profile.rounds):
            for who, worker, run in (("candidate", cand, cand_run), ("reference", ctx.reference, ctx.ref)):
                log(f"{label}: load round {r + 1}/{profile.rounds} on the {who} ({profile.users} users, "
                    f"{profile.load_seconds:.0f} s)")
                out = run_load(worker.url, queries, seconds=profile.load_seconds, users=profile.users,
                               spawn_rate=profile.spawn_rate, k=profile.k, workdir=Path(workdir), label=f"{who}-{r}",
                               workers=profile.workers)
                run.samples.extend(out["samples"])
                run.load_seconds += out["seconds"]


def metrics_of(run: Run, qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    """Every measured figure of one system (the scorecard keeps the RAG_METRICS among them)."""
    m: dict[str, float] = {}
    if run.run:
        m.update(quality(run.run, qrels))
    if run.samples:
        m.update(latency_summary(run.samples, run.load_seconds))
    if run.index:
        m["index_build_s"] = run.index["seconds"]
        m["index_bytes"] = run.index["index_bytes"]
    return m


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
    ref_m = metrics_of(ctx.ref, ctx.split.qrels)
    m = metrics_of(cand, ctx.split.qrels) if cand else {}
    q = parts["retrieval_quality"]
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
        card.add(p.name, *performance(m, ref_m, p, lab.slo.get("latency_p95_ms")))
    else:
        card.add(p.name, 0, p.weight, f"Task {p.task}: not measured: " + (
            why_not or (card.errors[-1] if card.errors else "no successful searches under load")))

    a = parts["grounded_answers"]
    if cand and cand.answers:
        fraction, detail = answers_score(cand, ctx)
        card.add(a.name, fraction, a.weight, detail)
    else:
        card.add(a.name, 0, a.weight, f"Task {a.task}: not measured: " + (why_not or "no answers (see errors)"))
    card.metrics, card.reference = clean_metrics(m, RAG_METRICS), {"metrics": clean_metrics(ref_m, RAG_METRICS)}


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


def grade_one(name: str, path: Path, ctx: Context, batch: Batch) -> Scorecard:
    """Grade one submission against the batch's reference measurements; writes its scorecard and report."""
    started = time.perf_counter()
    card = Scorecard(lab="rag", submission=name)
    cand: Run | None = None
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
                                   hidden_set="private (--hidden)" if ctx.private_split else "shipped",
                                   load=asdict(ctx.lab.profile(ctx.profile_name)), slo=ctx.lab.slo)
    card.extras = {"curve": recall_at_k_curve(cand.run, ctx.split.qrels) if cand and cand.run else {},
                   "ref_curve": recall_at_k_curve(ctx.ref.run, ctx.split.qrels),
                   "latencies": [s[1] for s in (cand.samples if cand else []) if s[2]],
                   "ref_latencies": [s[1] for s in ctx.ref.samples if s[2]]}
    batch.publish(card, path, write_report)
    return card


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
    ctx = Context(lab=lab, data=data, split=chosen, queries=queries, profile_name=profile, out=out,
                  private_split=private, hidden_checks=overlay.checks() if overlay else None)
    which = "private --hidden" if private else split
    log(f"dataset {data.name}: {len(data.docs)} documents, {len(queries)} {which} queries; profile {profile}")
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
        return [grade_one(name, path, ctx, batch) for name, path in batch]
    finally:
        ctx.reference.cleanup()
