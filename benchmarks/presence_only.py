"""Presence-only judgements: does the reference still beat plain BM25 + dense RRF when relevance is binary?

    .venv/bin/python benchmarks/presence_only.py [--source ../shared/datasets/cranfield] [--split all]
                                                 [--keep DIR] [--json out.json]

Several classic SMART collections (CISI, CACM, ADI, ...) judge by presence: a `.REL` line
`qid docid 0 0.000000` means "relevant", with no grade. This benchmark builds such a collection from a
graded one (Cranfield): the same documents and queries, and a `.REL` file that lists the relevant
pairs (codes 1-4) with zero third and fourth columns; codes -1 and 5 (not relevant) are left out, as a
presence-only file cannot say "judged, not relevant". The copy is loaded through the grader's own
loader, which must detect the `smart-presence` layout; then the reference retriever and `RRFHybrid`
(bm25s + MiniLM, RRF k = 60, reference_systems/rag/baselines.py) each search every query once, and both
runs are scored against the presence-only judgements and, for comparison, the graded originals.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from graders.datasets import load_dataset
from graders.datasets.smart import find_files
from graders.paths import SHARED_DATASETS
from graders.rag.metrics import quality
from reference_systems.rag.baselines import RRFHybrid
from reference_systems.rag.retriever import Retriever

METHODS = {"rrf": RRFHybrid, "reference": Retriever}


def _retrieval_benchmark() -> ModuleType:
    """benchmarks/retrieval.py (a script folder, not a package), for its `search_all`."""
    spec = importlib.util.spec_from_file_location("ailab_bench_retrieval", Path(__file__).with_name("retrieval.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_presence_only(source: Path, dest: Path) -> Path:
    """A presence-only copy of the graded SMART collection in `source`, written to `dest` (created):
    the documents and queries files copied as they are, the judgements as `CRAN.REL`-style lines
    `qid docid 0 0.000000` for the relevant pairs only (graded codes 1-4)."""
    files = find_files(source)
    dest.mkdir(parents=True, exist_ok=True)
    for role in ("documents", "queries"):
        shutil.copyfile(files[role], dest / files[role].name)
    lines = []
    for line in files["judgements"].read_text(encoding="utf-8").splitlines():
        cols = line.split()
        if len(cols) == 3 and 1 <= int(cols[2]) <= 4:
            lines.append(f"{cols[0]:>5} {cols[1]:>5} 0 0.000000")
    (dest / "PRESENCE.REL").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return dest


def compare(source: Path, work: Path, split: str = "all") -> dict[str, dict[str, dict[str, float]]]:
    """{method: {"presence": quality, "graded": quality, "timings": ...}} on `split` of both versions."""
    graded = load_dataset(str(source))
    presence = load_dataset(str(write_presence_only(source, work)))
    if presence.qrels_layout != "smart-presence" or graded.qrels_layout != "smart-graded":
        raise SystemExit(f"layouts read: {graded.qrels_layout} / {presence.qrels_layout}; expected smart-graded / "
                         "smart-presence")
    p_split, g_split = presence.split(split), graded.split(split)
    queries = {q: t for q, t in p_split.queries.items() if p_split.qrels.get(q)}
    docs = [d.as_dict() for d in presence.docs]
    search_all = _retrieval_benchmark().search_all
    results: dict[str, dict[str, dict[str, float]]] = {}
    for name, factory in METHODS.items():
        print(f"{name}: indexing {len(docs)} docs, searching {len(queries)} queries ...", file=sys.stderr, flush=True)
        run, timings = search_all(factory, docs, queries)
        results[name] = {"presence": quality(run, p_split.qrels), "graded": quality(run, g_split.qrels),
                         "timings": timings}
    return results


def format_table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    lines = [f"{'method':<10} {'judgements':<10} {'nDCG@10':>8} {'R@100':>7} {'RR@10':>7}"]
    for method, r in results.items():
        for layout in ("presence", "graded"):
            q = r[layout]
            lines.append(f"{method:<10} {layout:<10} {q['ndcg@10']:8.3f} {q['recall@100']:7.3f} {q['mrr@10']:7.3f}")
    gap = results["reference"]["presence"]["ndcg@10"] - results["rrf"]["presence"]["ndcg@10"]
    lines.append(f"reference - rrf, nDCG@10 on presence-only judgements: {gap:+.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", type=Path, default=SHARED_DATASETS / "cranfield",
                        help="a graded SMART collection folder (default: the shared Cranfield)")
    parser.add_argument("--split", default="all", help="all, dev or test (default all)")
    parser.add_argument("--keep", type=Path, help="write the presence-only copy here and keep it")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if not args.source.is_dir():
        parser.error(f"{args.source} is not a folder; pass --source with a graded SMART collection")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ailab-presence-") as tmp:
        results = compare(args.source, args.keep or Path(tmp) / "presence", args.split)
    print(format_table(results))
    print(f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        report = {"source": str(args.source), "split": args.split, "results": results}
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
