"""Gaming the RAG grader's load phase: each submission tries to earn latency or throughput points it did not
earn, and each test asserts the points it must not get and the reason its scorecard and report give.

Fixtures (tests/fixtures/gaming/rag/): `base.py`, an honest self-contained submission (BM25 on labkit's
analyzer, every unit function), which the test puts in front of each gaming file, as tests/test_adversarial.py
does with its stubs:
- cached: the issue's retriever, 300 ms for every new query and repeats from a dict (it scored 100/100 when
  the load phase replayed the quality pass's queries);
- constant: the same ranking for every query;
- load_detector: honest in the quality pass, the first k documents once the load phase has begun;
- seen_or_junk: the same, but texts seen before the load phase keep their real answers, so the repeated
  quality-pass queries (probes) look consistent.
They are graded once, in one batch, on the smoke profile, with a fixed load seed and denser probes from a
`--hidden` lab.toml (which also shows that the overlay fixes the seed). The cheap tests first check the
stream, the checks and the load generator's stream mode without grading anything.
"""
from __future__ import annotations

import json
import random
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from graders.datasets import load_dataset
from graders.engine.hidden import write_lab_toml
from graders.engine.labconfig import load_lab
from graders.engine.loadgen import run_load
from graders.engine.scorecard import Scorecard
from graders.rag.consistency import judge, overlap
from graders.rag.loadstream import LoadStream, StreamSettings, build, words

pytestmark = pytest.mark.timing  # compares speed with the reference (tests/conftest.py)

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures" / "gaming" / "rag"
GAMERS = ("cached", "constant", "load_detector", "seen_or_junk")
SEED = 424242
SETTINGS = StreamSettings.from_lab(load_lab("rag").raw)
CRANFIELD_LIKE = [  # the shape of SMART queries: lower case, long, a trailing " ."
    "what similarity laws must be obeyed when constructing aeroelastic models of heated high speed aircraft .",
    "what are the structural and aeroelastic problems associated with flight of high speed aircraft .",
    "how can the aerodynamic performance of channel flow ground effect machines be calculated .",
    "what is the basic mechanism of the transonic aileron buzz .",
    "papers on shock-sound wave interaction .",
]


# ------------------------------------------------------------------ the stream, the checks, the load generator


def test_rewrites_are_new_to_any_text_cache_and_keep_the_queries_shape() -> None:
    queries = dict(list(load_dataset("support-kb").split("test").queries.items())[:100])
    stream = build(queries, 2000, 10, seed=7)
    assert len(stream.texts) == 2000 and len(stream.probes) == 200 and stream.first_seen() == 1800
    assert all(i % 10 == 9 and stream.texts[i] == queries[q] for i, q in stream.probes.items())
    fresh = [t for i, t in enumerate(stream.texts) if i not in stream.probes]
    # no cache keyed on the text, its case, its word order or its repeated words ever hits
    keys = [frozenset(words(t)) for t in fresh]
    assert len(set(keys)) == len(keys) and not set(keys) & {frozenset(words(t)) for t in queries.values()}
    mean = sum(len(t.split()) for t in queries.values()) / len(queries)
    assert abs(sum(len(t.split()) for t in fresh) / len(fresh) - mean) < 0.15 * mean
    assert build(queries, 2000, 10, seed=7) == stream, "the seed fixes the stream"
    assert build(queries, 2000, 10, seed=8).texts[:50] != stream.texts[:50]
    # any collection's queries: SMART-shaped ones, a pool of one-word queries, and a pool too small for the size
    smart = build(dict(enumerate(CRANFIELD_LIKE)), 300, 0, seed=1)  # type: ignore[arg-type]
    assert len(smart.texts) == 300 and not set(smart.texts) & set(CRANFIELD_LIKE)
    tiny = build({"a": "refund", "b": "warranty", "c": "shipping"}, 50, 5, seed=1)
    assert 0 < tiny.first_seen() < 40 and all(len(t.split()) <= 2 for t in tiny.texts)


def test_the_consistency_checks_on_made_up_answers() -> None:
    ids = [f"d{i}" for i in range(100)]
    rng = random.Random(0)
    run = {f"q{i}": rng.sample(ids, 10) for i in range(40)}  # the candidate's quality pass
    ref_run = {q: r[:6] + rng.sample(ids, 4) for q, r in run.items()}  # ~0.6 agreement with the reference
    stream = LoadStream(seed=3, texts=[f"t{i}" for i in range(200)], probes={i: f"q{i % 40}" for i in range(9, 200, 10)})
    ref_load = {i: rng.sample(ids, 10) for i in range(200)}
    honest_load = {i: ref_load[i][:6] + rng.sample(ids, 4) for i in range(200)}

    def samples(first_seen: dict[int, list[str]], probe: dict[str, list[str]]) -> list[list[object]]:
        return [[0.0, 5.0, True, i, probe[stream.probes[i]] if i in stream.probes else first_seen[i]]
                for i in range(200)]

    def verdict(first_seen: dict[int, list[str]], probe: dict[str, list[str]]):  # type: ignore[no-untyped-def]
        return judge(samples(first_seen, probe), stream, run, ref_run,
                     lambda idx: {i: ref_load[i] for i in idx}, SETTINGS, 10)

    honest = verdict(honest_load, run)
    assert honest.ok and honest.probe_overlap == 1.0 and honest.agreement_ratio is not None
    assert 0.7 < honest.agreement_ratio < 1.3 and honest.verified == 60 and honest.probes == 20
    junk = {i: ids[:10] for i in range(200)}
    cheap = verdict(junk, {q: ids[:10] for q in run})
    assert not cheap.ok and len(cheap.reasons) == 2 and "repeated under load overlap" in cheap.reasons[0]
    seen = verdict(junk, run)
    assert not seen.ok and seen.probe_overlap == 1.0 and "sampled first-seen queries" in seen.reasons[0]
    few = judge(samples(junk, run)[:SETTINGS.min_verified], stream, run, ref_run, lambda idx: {}, SETTINGS, 10)
    assert few.ok and "not judged" in few.summary(), "too few answers to judge is said, not punished"
    assert overlap([], [], 10) == 1.0 and overlap(["a"], ["a", "b"], 10) == 0.5


def test_an_interviewers_load_table_that_does_not_fit_is_one_clear_line() -> None:
    raw = load_lab("rag").raw
    assert StreamSettings.from_lab({**raw, "load": {**raw["load"], "seed": 7}}).base_seed() == 7
    for bad, says in (({"seed": "random"}, 'seed must be "fresh" or an integer'), ({"max_qps": 0}, "max_qps"),
                      ({"probe_every": -1}, "probe_every: numbers >= 0"), ({"probes": 3}, "does not fit the RAG lab")):
        with pytest.raises(ValueError, match="lab.toml \\[load\\]") as info:
            StreamSettings.from_lab({**raw, "load": {**raw["load"], **bad}})
        assert says in str(info.value) and "\n" not in str(info.value)


class _Recorder(BaseHTTPRequestHandler):
    received: list[str] = []
    lock = threading.Lock()

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with _Recorder.lock:
            _Recorder.received.append(body["query"])
        reply = json.dumps({"ok": True, "result": [[f"doc-{body['query']}", 1.0], ["x" * 10_000, 0.5]]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[str]:
    _Recorder.received = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.slow
def test_stream_mode_sends_each_text_once_and_records_what_came_back(recorder: str, tmp_path: Path) -> None:
    texts = [f"query {i}" for i in range(100_000)]
    first = run_load(recorder, texts, seconds=2, users=4, spawn_rate=4, k=5, workdir=tmp_path, label="a", stream=True)
    rest = texts[first["next"]:]
    second = run_load(recorder, rest, seconds=1, users=4, spawn_rate=4, k=5, workdir=tmp_path, label="b", stream=True)
    assert 50 < first["next"] < len(texts) and Counter(_Recorder.received).most_common(1)[0][1] == 1
    assert set(_Recorder.received) <= set(texts[:first["next"] + second["next"]]), "in order, from where it stopped"
    for out, sent in ((first, texts), (second, rest)):
        for _, ms, ok, i, ids in out["samples"]:
            assert ok and ms > 0 and ids == [f"doc-{sent[i]}", "x" * 200], "ids are recorded, cut to 200 characters"
    # a stream shorter than the round: every text once, then the users stop
    _Recorder.received = []
    short = run_load(recorder, texts[:30], seconds=2, users=4, spawn_rate=4, k=5, workdir=tmp_path, label="c",
                     stream=True)
    assert sorted(_Recorder.received) == sorted(texts[:30]) and short["next"] == 30 and len(short["samples"]) == 30


# ------------------------------------------------------------------ one graded batch of gaming submissions


@pytest.fixture(scope="module")
def cards(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Scorecard]:
    from graders.rag.grade import grade

    subs = tmp_path_factory.mktemp("gaming")
    base = (FIX / "base.py").read_text()
    for name in GAMERS:
        (subs / f"{name}.py").write_text(base + "\n" + (FIX / f"{name}.py").read_text())
    hidden = tmp_path_factory.mktemp("hidden")
    write_lab_toml(hidden, "rag", f"[load]\nseed = {SEED}\nprobe_every = 4\n\n"
                                  "[profiles.smoke]\nmax_quality_queries = 50\n")
    hidden.chmod(0o700)
    out = tmp_path_factory.mktemp("graded")
    return {c.submission: c for c in grade(str(subs), out, profile="smoke", hidden=hidden)}


def _part(card: Scorecard, name: str):  # type: ignore[no-untyped-def]
    return next(p for p in card.parts if p.name == name)


@pytest.mark.slow
def test_the_overlay_fixes_the_seed_and_each_submission_gets_its_own_stream(cards: dict[str, Scorecard]) -> None:
    seeds = {name: cards[name].environment["load_seed"] for name in GAMERS}
    assert seeds == {name: SEED + i for i, name in enumerate(sorted(GAMERS))}
    for card in cards.values():
        stream = card.environment["load_stream"]
        assert stream["probe_every"] == 4 and stream["requests"] == 400 * 3 and stream["first_seen"] == 900


@pytest.mark.slow
def test_a_cache_of_repeats_gains_nothing_latency_is_judged_on_first_seen_queries(cards: dict[str, Scorecard]) -> None:
    card = cards["cached"]
    perf, ref = _part(card, "performance"), card.reference["metrics"]
    assert perf.points <= 0.25 * perf.max_points, perf.detail
    assert "first-seen queries answered under load, never a repeat" in perf.detail
    assert card.metrics["latency_p50_ms"] >= 300, "every load request is new to it, so every one sleeps"
    assert card.metrics["latency_p95_ms"] > 2 * ref["latency_p95_ms"] and card.metrics["throughput_qps"] < ref[
        "throughput_qps"] / 2
    assert not any(e.startswith("performance:") for e in card.errors), "it is slow, not inconsistent"
    assert _part(card, "retrieval_quality").points > 0


@pytest.mark.slow
def test_the_same_ranking_for_every_query_earns_neither_quality_nor_speed(cards: dict[str, Scorecard]) -> None:
    card = cards["constant"]
    quality, perf = _part(card, "retrieval_quality"), _part(card, "performance")
    assert quality.points == 0 and "nDCG@10" in quality.detail
    assert perf.points == 0 and "performance counts 0%" in perf.detail and "fast answers that find little" in perf.detail
    assert card.metrics["latency_p95_ms"] < card.reference["metrics"]["latency_p95_ms"], "fast: only quality stops it"
    assert card.score <= cards["cached"].score - 10


@pytest.mark.slow
def test_a_retriever_that_turns_cheap_under_load_loses_the_performance_points(cards: dict[str, Scorecard]) -> None:
    card = cards["load_detector"]
    perf = _part(card, "performance")
    assert perf.points == 0 and "no performance points: its answers to" in perf.detail
    assert "quality-pass queries repeated under load overlap its own quality-pass answers by only" in perf.detail
    assert card.metrics["load_probe_overlap"] < 0.3 and card.metrics["load_agreement_ratio"] < 0.3
    assert any(e.startswith("performance: its answers to") for e in card.errors), card.errors
    # its speed alone would have earned every point, and its quality pass is the honest retriever's
    assert card.metrics["latency_p95_ms"] < card.reference["metrics"]["latency_p95_ms"]
    assert _part(card, "retrieval_quality").points == _part(cards["cached"], "retrieval_quality").points > 0


@pytest.mark.slow
def test_consistent_probes_do_not_hide_junk_answers_to_new_queries(cards: dict[str, Scorecard]) -> None:
    card = cards["seen_or_junk"]
    perf = _part(card, "performance")
    assert card.metrics["load_probe_overlap"] == 1.0, "the probes alone would not catch it"
    assert perf.points == 0 and "no performance points: on 60 sampled first-seen queries under load" in perf.detail
    assert card.metrics["load_agreement_ratio"] < 0.3
    assert any(e.startswith("performance: on 60 sampled first-seen queries") for e in card.errors), card.errors


@pytest.mark.slow
def test_the_reports_show_the_load_checks(cards: dict[str, Scorecard], tmp_path_factory: pytest.TempPathFactory) -> None:
    out = tmp_path_factory.getbasetemp() / "graded0"
    pages = {name: (out / name / "report.html").read_text() for name in GAMERS}
    for name, page in pages.items():
        assert "Load phase: first-seen queries, answers checked" in page
        assert f"Seed {cards[name].environment['load_seed']} " in page
    assert pages["load_detector"].count("FAILS: no performance points") == 2
    assert pages["seen_or_junk"].count("FAILS: no performance points") == 1
    assert "hold up against the quality pass" in pages["cached"]
