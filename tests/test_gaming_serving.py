"""Gaming the serving grader's load phase: each server tries to earn goodput, latency or throughput it did not
earn, and each test asserts the points it must not get and the reason its scorecard and report give.

Fixtures (tests/fixtures/gaming/serving/): `base.py`, an honest self-contained server (continuous batching over
the lab's engine, SSE, usage, 429, disconnects, /metrics; nothing of reference_systems), which the test puts in
front of each gaming file, as tests/test_adversarial.py does with its stubs:
- junk: the wire-check prompts go through the engine, every other prompt gets max_tokens junk tokens at once
  (before output verification: 90/100, goodput ratio 1.20, TPOT p50 0.02 ms);
- inflated_usage: the right tokens, but ten times the completion tokens claimed in `usage` under load.
Both are graded once, in one batch, on the smoke profile, with the load seed fixed by a `--hidden` lab.toml
(which also shows that the overlay fixes the seed and that the scorecard then keeps it private). A server that
caches outputs per prompt text gains nothing, and is not graded: the cheap tests below show that no prompt of a
run repeats (across rates and the warm-up) and that two runs share no prompt. They also check the client's
verification and usage bookkeeping on hand-made results, without a server, and that a token is timed by the
event that brought its text (an empty event sent at once does not fake a first token).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from graders.engine.hidden import write_lab_toml
from graders.serving.client import Result, choose_seed, prompt_corpus, summarize, warmup, workload
from graders.serving.verify import Greedy, mark, verdict

pytestmark = pytest.mark.timing  # compares speed with the reference (tests/conftest.py)

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures" / "gaming" / "serving"
GAMERS = ("junk", "inflated_usage")
SEED = 7351962048
SLO = {"ttft_ms": 1000.0, "tpot_ms": 100.0}


# ------------------------------------------------------------------ seeds, prompts and verification, no server


def test_prompts_are_drawn_per_run_and_never_repeat(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AILAB_SERVING_SEED", raising=False)
    (a, source), (b, _) = choose_seed(None), choose_seed(None)
    assert source == "fresh" and a != b                        # a fresh seed per run (2**-31 to collide)
    assert choose_seed(7) == (7, "lab.toml")
    monkeypatch.setenv("AILAB_SERVING_SEED", "42")
    assert choose_seed(7) == (42, "AILAB_SERVING_SEED")         # the operator's replay wins
    monkeypatch.setenv("AILAB_SERVING_SEED", "forty-two")
    with pytest.raises(SystemExit, match="AILAB_SERVING_SEED='forty-two' is not an integer"):
        choose_seed(None)

    tok, ids = prompt_corpus()
    spec = {"duration_s": 8.0, "prompt_tokens": [16, 128], "output_tokens": [32, 96]}

    def run(seed: int) -> list[str]:
        s = {**spec, "seed": seed}
        return [p for _, p, _ in warmup(s, 2, tok, ids) + workload(s, 2.0, tok, ids) + workload(s, 12.0, tok, ids)]

    first, second = run(a), run(b)
    assert len(first) > 60 and len(set(first)) == len(first)    # a per-prompt cache never hits within a run
    assert not set(first) & set(second)                         # ... nor across runs: nothing to precompute
    assert run(a) == first                                      # the recorded seed replays the run


def _result(prompt: str, text: str, usage: int | None, n: int = 3, ok: bool = True) -> Result:
    times = [1.0 + 0.05 * i for i in range(n)]
    return Result(arrival=1.0, sent=0.9, end=times[-1], ok=ok, token_times=times, output_tokens=n if ok else 0,
                  expected_tokens=n, prompt=prompt, text=text, usage_tokens=usage)


def test_wrong_streams_fail_and_token_counts_come_from_the_stream() -> None:
    greedy = Greedy({("p1", 3): "a b c", ("p2", 3): "x é y", ("p3", 3): "q r s", ("p4", 3): "t u v"}, 0.0)
    results = [_result("p1", "a b c", 3),                 # right
               _result("p2", "x \ufffd\ufffd y", 3),      # right, a character split across tokens
               _result("p3", "junk junk junk", 3),        # wrong
               _result("p4", "t u v", 30),                # right, usage inflated tenfold
               _result("p1", "a b", 3, ok=False)]         # a broken stream: not compared
    mark(results, greedy)
    assert [r.verified for r in results] == [True, True, False, True, None]
    assert not results[2].ok and "output verification" in results[2].error
    v = verdict(results, greedy)
    assert (v.compared, v.failed, v.detok_only, v.usage_mismatches) == (4, 1, 1, 1)
    assert v.examples[0]["got"] == "junk junk junk" and "usage.completion_tokens=30 for 3" in v.usage_examples[0]
    reason = v.withheld(0.02)
    assert reason is not None and reason.startswith("output verification failed: 1 of 4")
    assert v.withheld(0.25) is None                       # 25% wrong is within a 25% allowance
    s = summarize(results, 0.5, SLO, usd_per_hour=1.0)
    assert s["completed"] == 3 and s["verification_failures"] == 1 and s["usage_mismatches"] == 1
    assert s["verified_rate"] == pytest.approx(0.75)
    span = results[0].end - results[0].sent
    assert s["output_tokens_per_s"] == pytest.approx(9 / span)  # 3 verified streams x 3 tokens, not usage's 36


def test_tokens_are_timed_by_the_text_they_bring() -> None:
    """An empty event sent at once, the text later: the first token arrives with its text, not with the event."""
    greedy = Greedy({("p", 3): "ab cd ef"}, 0.0, ends={"p": [2, 5, 8]})
    early = Result(arrival=1.0, sent=0.0, end=2.0, ok=True, token_times=[0.001, 1.0, 2.0], output_tokens=3,
                   expected_tokens=3, prompt="p", text="ab cd ef", text_ends=[0, 2, 8], usage_tokens=3)
    honest = Result(arrival=1.0, sent=0.0, end=2.0, ok=True, token_times=[1.0, 1.5, 2.0], output_tokens=3,
                    expected_tokens=3, prompt="p", text="ab cd ef", text_ends=[2, 5, 8], usage_tokens=3)
    mark([early, honest], greedy)
    assert early.verified and early.token_times == [1.0, 2.0, 2.0] and early.ttft == 1.0
    assert honest.verified and honest.token_times == [1.0, 1.5, 2.0]


# ------------------------------------------------------------------ the gaming servers, graded once


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Grade every gaming server once on the smoke profile with a private seed; {name: scorecard, "_out": dir}."""
    from graders.serving.grade import grade

    subs, hidden = tmp_path_factory.mktemp("gaming-serving"), tmp_path_factory.mktemp("hidden")
    base = (FIX / "base.py").read_text()
    for name in GAMERS:
        (subs / f"{name}.py").write_text(base + "\n\n" + (FIX / f"{name}.py").read_text())
    write_lab_toml(hidden, "serving", f"[profiles.smoke]\nseed = {SEED}\n")
    out = tmp_path_factory.mktemp("gaming-serving-out")
    grade(str(subs), out, profile="smoke", hidden=hidden)
    cards = {name: json.loads((out / name / "scorecard.json").read_text()) for name in GAMERS}
    return {**cards, "_out": out}


def _parts(card: dict) -> dict[str, dict]:
    return {p["name"]: p for p in card["parts"]}


@pytest.mark.slow
def test_junk_tokens_earn_no_performance_points(graded: dict) -> None:
    card, p = graded["junk"], _parts(graded["junk"])
    # the wire checks went through the engine, so only the load phase's verification can catch it
    assert p["correctness"]["points"] == p["correctness"]["max_points"], p["correctness"]["detail"]
    assert p["goodput"]["points"] == 0 and p["latency"]["points"] == 0
    for part in ("goodput", "latency"):
        assert "no performance points: output verification failed" in p[part]["detail"], p[part]["detail"]
    assert card["score"] <= 60, card["score"]                  # was 90 before verification
    assert card["errors"][0].startswith("output verification failed: "), card["errors"]
    assert "lorem" in card["errors"][0]                         # the report quotes what it streamed
    assert any(e.startswith("implausible timing: ") for e in card["errors"]), card["errors"]
    m, ref = card["metrics"], card["reference"]["metrics"]
    assert m["verified_rate"] == 0 and m["verification_failures"] >= 30 and m["goodput_rps"] == 0
    assert "output_tokens_per_s" not in m and "tpot_p50_ms" not in m  # no verified token, no throughput
    # the reference, in the same run on the same prompts, streamed the engine's greedy output every time
    assert ref["verified_rate"] == 1 and ref["verification_failures"] == 0 and ref["usage_mismatches"] == 0
    report = (graded["_out"] / "junk" / "report.html").read_text()
    assert "Output verification under load" in report and "output verification failed" in report
    assert "lorem" in report


@pytest.mark.slow
def test_inflated_usage_is_flagged_and_throughput_counts_streamed_tokens(graded: dict) -> None:
    card, p = graded["inflated_usage"], _parts(graded["inflated_usage"])
    m, ref = card["metrics"], card["reference"]["metrics"]
    assert m["verified_rate"] == 1 and m["usage_mismatches"] >= 30, m
    assert any(e.startswith("usage under load: ") and "=" in e and "throughput and cost count the streamed tokens"
               in e for e in card["errors"]), card["errors"]
    # throughput from the verified stream: near the reference's on the same requests, not ten times it
    assert m["output_tokens_per_s"] <= 1.5 * ref["output_tokens_per_s"], (m, ref)
    assert m["cost_per_1m_output_tokens_usd"] >= ref["cost_per_1m_output_tokens_usd"] / 1.5
    # the claim costs a correctness sub-check, so it scores below an otherwise identical honest server
    assert p["correctness"]["points"] < p["correctness"]["max_points"]
    assert "disagreed with the streamed tokens" in p["correctness"]["detail"]
    assert card["score"] < 100 - 1, card["score"]
    assert p["goodput"]["points"] > 0, p["goodput"]["detail"]  # the work itself was real and is measured


@pytest.mark.slow
def test_a_hidden_seed_fixes_the_prompts_and_stays_private(graded: dict) -> None:
    env = graded["junk"]["environment"]
    assert env["load_seed_source"] == "--hidden lab.toml" and env["load_seed"] == "private (--hidden)"
    assert str(SEED) not in json.dumps(graded["junk"]) and str(SEED) not in json.dumps(graded["inflated_usage"])
