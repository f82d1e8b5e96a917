"""Datasets: the generated support KB, the BEIR and SMART loaders, and the `load_dataset` registry."""
from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import pytest

from graders.datasets import DATASETS_HELP, load_dataset
from graders.datasets.beir import load_beir
from graders.datasets.embedded import iter_docs, query_kind, support_kb
from graders.datasets.smart import load_smart
from graders.datasets.types import Dataset
from graders.paths import REPO_ROOT, SHARED_DATASETS

CRANFIELD = SHARED_DATASETS / "cranfield"


def _dump(ds: Dataset) -> str:
    return json.dumps({"docs": [d.as_dict() for d in ds.docs],
                       "splits": {n: [s.queries, s.qrels] for n, s in ds.splits.items()}}, sort_keys=True)


@pytest.fixture(scope="module")
def kb() -> Dataset:
    return support_kb()


def test_support_kb_is_deterministic_and_seeded(kb: Dataset) -> None:
    assert _dump(support_kb()) == _dump(kb)
    assert _dump(support_kb(seed=1)) != _dump(kb)


def test_default_kb_shape(kb: Dataset) -> None:
    t0 = time.perf_counter()
    support_kb()
    assert time.perf_counter() - t0 < 1.0
    assert len(kb.docs) == 1200
    assert [d.id for d in kb.docs][:2] == ["kb-00000", "kb-00001"]
    words = [len(d.text.split()) for d in kb.docs]
    assert 40 <= min(words) and max(words) <= 200
    assert {len(kb.split("dev").queries), len(kb.split("test").queries)} == {100, 300}


def test_splits_are_disjoint_with_graded_judgements(kb: Dataset) -> None:
    dev, test = kb.split("dev"), kb.split("test")
    assert not set(dev.queries) & set(test.queries)
    assert not set(dev.queries.values()) & set(test.queries.values())
    ids = {d.id for d in kb.docs}
    golds = []
    for split in (dev, test):
        assert set(split.qrels) == set(split.queries)
        for qid, rel in split.qrels.items():
            assert set(rel) <= ids, qid
            assert list(rel.values()).count(2) == 1, qid
            golds.append(next(d for d, g in rel.items() if g == 2))
        kinds = [query_kind(q) for q in split.queries]
        for kind in ("para", "code", "mixed"):
            assert kinds.count(kind) >= 0.15 * len(kinds), (split.name, kind)
    # no document answers a dev query and a test query alike
    assert len(set(golds)) == len(golds)
    with_negatives = [q for q, rel in test.qrels.items() if 0 in rel.values()]
    with_partial = [q for q, rel in test.qrels.items() if 1 in rel.values()]
    assert len(with_negatives) > 0.5 * len(test.qrels) and len(with_partial) > 0.5 * len(test.qrels)


def test_hard_negatives_are_near_duplicates(kb: Dataset) -> None:
    docs = kb.doc_map()
    for qid, rel in kb.split("dev").qrels.items():
        if query_kind(qid) == "code":
            gold = next(docs[d] for d, g in rel.items() if g == 2)
            for neg in (docs[d] for d, g in rel.items() if g == 0):
                assert neg.title != gold.title
                assert len(set(neg.text.split()) & set(gold.text.split())) > 0.5 * len(set(gold.text.split()))


def test_query_kind() -> None:
    assert query_kind("q-dev-0007-para") == "para"
    assert query_kind("q-test-0100-mixed") == "mixed"
    assert query_kind("42") == ""


def test_scales_and_streams() -> None:
    t0 = time.perf_counter()
    big = load_dataset("support-kb:20000")
    assert time.perf_counter() - t0 < 5.0
    ids = [d.id for d in big.docs]
    assert len(ids) == len(set(ids)) == 20000
    assert len(big.split("test").queries) == 300
    assert {d for rel in big.split("all").qrels.values() for d in rel} <= set(ids)
    assert [d.as_dict() for d in iter_docs(20000)][:500] == [d.as_dict() for d in big.docs[:500]]
    small = support_kb(200)
    assert len(small.docs) == 200 and len(small.split("dev").queries) > 20
    with pytest.raises(ValueError, match="at least"):
        support_kb(10)


def test_registry_names_and_errors(tmp_path: Path) -> None:
    assert len(load_dataset("support-kb:300").docs) == 300
    with pytest.raises(ValueError, match="whole number"):
        load_dataset("support-kb:lots")
    with pytest.raises(ValueError, match="support-kb:N"):
        load_dataset("msmarco")
    assert "cranfield" in DATASETS_HELP and "BEIR" in DATASETS_HELP
    with pytest.raises(FileNotFoundError, match="SMART"):
        load_dataset(str(tmp_path))  # an empty folder is neither BEIR nor SMART


def _write_beir(folder: Path, splits: dict[str, list[tuple[str, str, int]]], n_queries: int = 10) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(
        json.dumps({"_id": f"d{i}", "title": f"title {i}", "text": f"text about topic {i}"}) + "\n" for i in range(20)))
    (folder / "queries.jsonl").write_text("".join(
        json.dumps({"_id": f"q{i:02d}", "text": f"what about topic {i}"}) + "\n" for i in range(n_queries)))
    (folder / "qrels").mkdir(exist_ok=True)
    for name, rows in splits.items():
        lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{g}" for q, d, g in rows]
        (folder / "qrels" / f"{name}.tsv").write_text("\n".join(lines) + "\n")


def test_beir_dev_and_test(tmp_path: Path) -> None:
    _write_beir(tmp_path / "mini", {"dev": [("q00", "d0", 1)],
                                    "test": [("q01", "d1", 2), ("q01", "d5", 0), ("q02", "d2", 1)],
                                    "train": [("q03", "d3", 1)]})
    ds = load_dataset(str(tmp_path / "mini"))
    assert ds.name == "mini" and len(ds.docs) == 20 and ds.docs[3].title == "title 3"
    assert ds.split("dev").qrels == {"q00": {"d0": 1}}
    assert ds.split("test").qrels == {"q01": {"d1": 2, "d5": 0}, "q02": {"d2": 1}}
    assert ds.split("test").queries["q02"] == "what about topic 2"
    assert set(ds.splits) == {"dev", "test"}


def test_beir_test_only_gets_a_deterministic_dev_split(tmp_path: Path) -> None:
    _write_beir(tmp_path / "t", {"test": [(f"q{i:02d}", f"d{i}", 1) for i in range(10)]})
    ds = load_beir(tmp_path / "t")
    assert sorted(ds.split("dev").queries) == ["q00", "q05"]
    assert len(ds.split("test").queries) == 8


def test_beir_broken_folders_say_what_is_missing(tmp_path: Path) -> None:
    _write_beir(tmp_path / "b", {"test": [("q01", "d1", 1)]})
    (tmp_path / "b" / "queries.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match="queries.jsonl"):
        load_beir(tmp_path / "b")
    _write_beir(tmp_path / "c", {"dev": [("q01", "d1", 1)]})
    with pytest.raises(FileNotFoundError, match="test.tsv"):
        load_beir(tmp_path / "c")
    _write_beir(tmp_path / "d", {"test": [("q01", "d1", "high")]})  # type: ignore[list-item]
    with pytest.raises(ValueError, match="test.tsv:2"):
        load_beir(tmp_path / "d")


@pytest.mark.cranfield
def test_cranfield_through_the_registry() -> None:
    if not CRANFIELD.is_dir():
        pytest.skip(f"{CRANFIELD} is absent")
    ds = load_dataset("cranfield")
    assert ds.name == "cranfield" and len(ds.docs) == 1400
    every = ds.split("all")
    assert len(every.queries) == 225
    assert sum(len(r) for r in every.qrels.values()) == 1837
    raw = [line.split() for line in (CRANFIELD / "cranqrel").read_text().splitlines() if line.startswith("1 ")]
    assert every.qrels["1"] == {d: (5 - int(c) if 1 <= int(c) <= 4 else 0) for _, d, c in raw}
    assert _dump(load_smart(CRANFIELD, name="cranfield")) == _dump(ds)


def _baselines_module():
    spec = importlib.util.spec_from_file_location("dataset_baselines", REPO_ROOT / "benchmarks" / "dataset_baselines.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@pytest.mark.slow
def test_query_kinds_favour_different_retrievers(kb: Dataset) -> None:
    """Measured with real BM25, real MiniLM embeddings and RRF over all 400 queries."""
    b = _baselines_module()
    split = kb.split("all")
    runs = {"bm25": b.bm25_run(kb, split.queries), "dense": b.dense_run(kb, split.queries)}
    runs["hybrid"] = b.rrf(runs["bm25"], runs["dense"])

    def ndcg(method: str, kind: str = "") -> float:
        qrels = {q: r for q, r in split.qrels.items() if not kind or query_kind(q) == kind}
        return b.evaluate(qrels, runs[method])["nDCG@10"]

    assert ndcg("dense", "para") > ndcg("bm25", "para") + 0.2
    assert ndcg("bm25", "code") > ndcg("dense", "code") + 0.1
    overall = {m: ndcg(m) for m in runs}
    assert overall["hybrid"] >= max(overall["bm25"], overall["dense"]) - 0.01, overall
    assert all(0.4 < v < 0.9 for v in overall.values()), overall
