"""graders.rag.metrics: hand-computed examples, edge cases, and agreement with ir_measures."""
from __future__ import annotations

import math
import random

import pytest

from graders.rag.metrics import METRICS, NothingToEvaluate, per_query, quality, recall_at_k_curve


def test_ndcg_rr_recall_by_hand():
    qrels = {"q": {"d1": 3, "d2": 1, "d3": 0}}
    run = {"q": [("d3", 0.9), ("d1", 0.8), ("d2", 0.7)]}
    dcg = 3 / math.log2(3) + 1 / math.log2(4)
    idcg = 3 + 1 / math.log2(3)
    got = quality(run, qrels)
    assert set(got) == set(METRICS)
    assert got["ndcg@10"] == pytest.approx(dcg / idcg)  # 0.6590
    assert got["mrr@10"] == pytest.approx(0.5)
    assert got["recall@100"] == pytest.approx(1.0)


def test_perfect_and_empty_rankings():
    qrels = {"q": {"a": 2, "b": 1}}
    assert quality({"q": [("a", 1.0), ("b", 0.5)]}, qrels) == pytest.approx(
        {"ndcg@10": 1.0, "recall@100": 1.0, "mrr@10": 1.0})
    assert quality({}, qrels) == {"ndcg@10": 0.0, "recall@100": 0.0, "mrr@10": 0.0}


def test_cutoffs():
    # relevant doc at rank 11: outside nDCG@10 and RR@10, inside R@100
    qrels = {"q": {"rel": 1}}
    run = {"q": [(f"x{i}", 1.0 - i / 100) for i in range(10)] + [("rel", 0.0)]}
    assert quality(run, qrels) == {"ndcg@10": 0.0, "recall@100": 1.0, "mrr@10": 0.0}
    late = {"q": [(f"x{i}", 0.0) for i in range(100)] + [("rel", 0.0)]}
    assert quality(late, qrels)["recall@100"] == 0.0


def test_duplicates_count_once_at_first_position():
    qrels = {"q": {"a": 1, "b": 1}}
    run = {"q": [("c", 3.0), ("a", 2.0), ("a", 1.9), ("a", 1.8), ("b", 1.0)]}
    pq = per_query(run, qrels)["q"]
    # deduped ranking c, a, b
    expected = (1 / math.log2(3) + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert pq["ndcg@10"] == pytest.approx(expected)
    assert pq["mrr@10"] == pytest.approx(0.5)


def test_queries_without_relevant_docs_are_excluded_and_missing_queries_count_zero():
    qrels = {"q1": {"a": 1}, "q2": {"b": 0}, "q3": {}, "q4": {"c": 2}}
    run = {"q1": [("a", 1.0)], "q2": [("b", 1.0)]}  # q4 missing from the run
    rows = per_query(run, qrels)
    assert set(rows) == {"q1", "q4"}
    assert quality(run, qrels)["ndcg@10"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="relevant"):
        quality(run, {"q2": {"b": 0}})


def test_judgements_without_a_relevant_document_raise_one_named_error():
    """Graders never get here (load_dataset refuses such a collection first); callers get one clear error."""
    for call in (lambda: quality({}, {"q": {"a": 0}}), lambda: recall_at_k_curve({"q": [("a", 1.0)]}, {})):
        with pytest.raises(NothingToEvaluate, match="nothing to evaluate; judge at least one relevant document"):
            call()


def test_recall_curve_is_monotone_and_exact():
    qrels = {"q": {"a": 1, "b": 1, "c": 1, "d": 1}}
    run = {"q": [("a", 1.0), ("x", 0.9), ("b", 0.8), ("y", 0.7), ("c", 0.6)]}
    curve = recall_at_k_curve(run, qrels, ks=(1, 2, 3, 5, 100))
    assert curve == pytest.approx({1: 0.25, 2: 0.25, 3: 0.5, 5: 0.75, 100: 0.75})


def test_agrees_with_ir_measures_on_untied_runs():
    ir_measures = pytest.importorskip("ir_measures")
    rng = random.Random(7)
    docs = [f"d{i}" for i in range(300)]
    qrels, run = {}, {}
    for q in range(25):
        qid = f"q{q}"
        qrels[qid] = {d: rng.choice([0, 1, 2, 3, 4]) for d in rng.sample(docs, 30)}
        ranked = rng.sample(docs, 150)
        run[qid] = [(d, 1000.0 - i) for i, d in enumerate(ranked)]  # distinct, descending scores
    ours = quality(run, qrels)
    measures = [ir_measures.nDCG @ 10, ir_measures.R @ 100, ir_measures.RR @ 10]
    theirs = ir_measures.calc_aggregate(measures, qrels, {q: dict(h) for q, h in run.items()})
    assert ours["ndcg@10"] == pytest.approx(theirs[ir_measures.nDCG @ 10], abs=1e-9)
    assert ours["recall@100"] == pytest.approx(theirs[ir_measures.R @ 100], abs=1e-9)
    assert ours["mrr@10"] == pytest.approx(theirs[ir_measures.RR @ 10], abs=1e-9)
