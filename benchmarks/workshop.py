"""A workshop batch on Dask (issue 14): 8 mixed RAG submissions graded one after another, then on a local 2-worker
cluster, then on the cluster again with the worker grading `naive` killed (SIGKILL) mid-grade.

    .venv/bin/python benchmarks/workshop.py [--profile quick] [--out out/workshop-bench] [--no-kill]

Checks: every cluster score within ±1 point of the sequential one, and after the kill every submission has exactly
one scorecard and one .done marker. Measures: wall time of each run, each task's time on its worker (its own reference
included), grades per worker-hour, and the workers needed to grade 100 candidates in 30 minutes. The fixtures that
build on the reference are vouched for as the test suite does (tests/conftest.py); the hostile ones are graded as
strangers' code would be. Writes OUT/workshop.json and prints a table; exit status 1 when a check fails.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from graders.engine.cluster_task import grading_process

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
SUBMISSIONS = {  # name -> file: the reference, the examples, working and hanging fixtures, two hostile ones
    "reference": ROOT / "reference_systems" / "rag" / "submission.py",
    "naive": ROOT / "labs" / "rag" / "examples" / "naive.ipynb",
    "broken": ROOT / "labs" / "rag" / "examples" / "broken.ipynb",
    "syntax_error": ROOT / "labs" / "rag" / "examples" / "syntax_error.ipynb",
    "bm25_only": FIX / "rag" / "bm25_only.py",
    "hang_in_search": FIX / "rag" / "hang_in_search.py",
    "monkeypatch": FIX / "adversarial" / "batch" / "monkeypatch.py",
    "net_probe": FIX / "adversarial" / "batch" / "net_probe.py",
}
VOUCHED = [FIX / "rag", FIX / "adversarial" / "batch"]
CANDIDATES, TURNAROUND_H = 100, 0.5


def grade(subs: Path, out: Path, profile: str, *extra: str, kill: str | None = None) -> dict[str, Any]:
    """`ailab grade rag SUBS --out OUT` (with `extra`); with `kill`, SIGKILL the worker grading that submission 5 s
    into its grade. Returns wall time, exit status, the scorecards and what was killed."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "AILAB_TRUSTED_FIXTURES": os.pathsep.join(map(str, VOUCHED))}
    command = [sys.executable, "-m", "graders.cli", "grade", "rag", str(subs), "--out", str(out), "--profile", profile,
               *extra]
    print(f"$ {' '.join(command[2:])}", file=sys.stderr, flush=True)
    started = time.monotonic()
    with open(out.with_suffix(".log"), "w") as log:
        cli = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        killed: dict[str, int] = {}
        while cli.poll() is None:
            if kill and not killed:
                grading = grading_process(kill)
                if grading is not None and time.time() - grading.create_time() > 5:
                    worker = grading.parent()
                    if worker is not None and worker.pid != cli.pid:
                        killed = {"worker": worker.pid, "grading": grading.pid}
                        os.kill(worker.pid, signal.SIGKILL)
                        print(f"killed worker pid {worker.pid} 5 s into grading {kill}", file=sys.stderr, flush=True)
            time.sleep(0.5)
    return {"seconds": time.monotonic() - started, "rc": cli.returncode, "killed": killed,
            "cards": {p.parent.name: json.loads(p.read_text()) for p in out.glob("*/scorecard.json")},
            "scorecards": sorted(p.parent.name for p in out.glob("**/scorecard.json")),
            "markers": sorted(json.loads(p.read_text())["submission"] for p in (out / ".done").glob("*.json"))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--out", default="out/workshop-bench")
    parser.add_argument("--no-kill", action="store_true", help="skip the third run (a worker killed mid-grade)")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    shutil.rmtree(out, ignore_errors=True)
    subs = out / "submissions"
    subs.mkdir(parents=True)
    for name, path in SUBMISSIONS.items():
        shutil.copy(path, subs / f"{name}{path.suffix}")
    runs = {"sequential": grade(subs, out / "sequential", args.profile),
            "cluster": grade(subs, out / "cluster", args.profile, "--workers", "2")}
    if not args.no_kill:
        runs["killed"] = grade(subs, out / "killed", args.profile, "--workers", "2", kill="naive")
    seq = runs["sequential"]["cards"]
    problems = [f"{k}: exit status {r['rc']}" for k, r in runs.items() if r["rc"] != 0]
    if "killed" in runs and not runs["killed"]["killed"]:
        problems.append("killed: the naive submission's grade was never seen running, so no worker was killed")
    for key in runs.keys() - {"sequential"}:
        r = runs[key]
        if r["scorecards"] != sorted(SUBMISSIONS) or r["markers"] != sorted(SUBMISSIONS):
            problems.append(f"{key}: scorecards {r['scorecards']}, markers {r['markers']}")
        problems += [f"{key}: {n} {r['cards'][n]['score']} vs sequential {seq[n]['score']}"
                     for n in SUBMISSIONS if n in r["cards"] and n in seq
                     and abs(r["cards"][n]["score"] - seq[n]["score"]) > 1.0]
    tasks = [c["environment"]["worker"]["task_s"] for c in runs["cluster"]["cards"].values()]
    grade_s = [c["duration_s"] for c in runs["cluster"]["cards"].values()]
    per_worker_hour = 3600 / (sum(tasks) / len(tasks))
    alone_per_hour = 3600 * len(SUBMISSIONS) / runs["sequential"]["seconds"]
    summary = {
        "profile": args.profile, "cores": os.cpu_count(), "submissions": len(SUBMISSIONS),
        "wall_s": {k: round(r["seconds"], 1) for k, r in runs.items()},
        "task_s_mean": round(sum(tasks) / len(tasks), 1), "grade_s_mean": round(sum(grade_s) / len(grade_s), 1),
        "grades_per_worker_hour": round(per_worker_hour, 1),
        "workers_for_100_in_30_min": math.ceil(CANDIDATES / (per_worker_hour * TURNAROUND_H)),
        "sequential_grades_per_hour": round(alone_per_hour, 1),
        "machines_for_100_in_30_min_one_grade_each": math.ceil(CANDIDATES / (alone_per_hour * TURNAROUND_H)),
        "scores": {n: {k: r["cards"].get(n, {}).get("score") for k, r in runs.items()} for n in SUBMISSIONS},
        "max_diff": max((abs(r["cards"][n]["score"] - seq[n]["score"]) for k, r in runs.items() if k != "sequential"
                         for n in SUBMISSIONS if n in r["cards"] and n in seq), default=0.0),
        "killed": runs.get("killed", {}).get("killed"), "problems": problems,
    }
    (out / "workshop.json").write_text(json.dumps(summary, indent=2))
    print(f"\n{'submission':<16}" + "".join(f"{k:>12}" for k in runs))
    for n, row in summary["scores"].items():
        print(f"{n:<16}" + "".join(f"{'-' if v is None else f'{v:.1f}':>12}" for v in row.values()))
    print(json.dumps({k: v for k, v in summary.items() if k != "scores"}, indent=2))
    for line in problems:
        print(f"FAIL: {line}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
