"""Output verification at a near tie: a real case where decoding a prompt alone and decoding it in the grader's batch
give different, equally greedy texts (graders/serving/verify.py "Near ties"), and streams that only look like it."""
from __future__ import annotations

from dataclasses import replace

import pytest

from graders.serving import verify
from graders.serving.client import Result, prompt_corpus, warmup, workload
from reference_systems.serving.engine import Engine, generate
from reference_systems.serving.model import model_dir

# The quick profile's load of seed 739568390: the prompt ending "Back to" (max_tokens 60), decoded alone, leaves
# the grader's batched greedy text at character 65 (found when the naive server streamed it in a grading run).
SEED, RATES = 739568390, (2.0, 12.0)
SPEC = {"seed": SEED, "duration_s": 8.0, "prompt_tokens": [16, 128], "output_tokens": [32, 96]}


@pytest.fixture(scope="module")
def case() -> tuple[verify.Greedy, str, int, list[int]]:
    tok, corpus_ids = prompt_corpus()
    requests = warmup(SPEC, 2, tok, corpus_ids) + [r for rate in RATES for r in workload(SPEC, rate, tok, corpus_ids)]
    greedy = verify.greedy_texts([(p, n) for _, p, n in requests])
    [(prompt, n)] = [(p, n) for _, p, n in requests if p.rstrip().endswith("Back to")]
    engine = Engine(model_dir(), max_batch=1, threads=1)
    alone = generate(engine, [engine.tokenizer(prompt).input_ids], n)[0]
    return greedy, prompt, n, alone


def _stream(engine_tok, prompt: str, n: int, ids: list[int]) -> Result:
    text = str(engine_tok.decode(ids, skip_special_tokens=True))
    times = [float(i) for i in range(len(ids))]
    return Result(arrival=0.0, sent=0.0, ok=True, token_times=times, output_tokens=len(ids), expected_tokens=n,
                  prompt=prompt, text=text, text_ends=[len(text)] * len(ids), usage_tokens=len(ids))


@pytest.mark.slow
def test_a_stream_that_takes_a_near_tied_token_is_verified_and_counted(case) -> None:
    greedy, prompt, n, alone = case
    tok = verify._tie_engine(*greedy.engine).tokenizer
    decoded_alone = str(tok.decode(alone, skip_special_tokens=True))
    assert decoded_alone != greedy.texts[(prompt, n)], "the case no longer differs: pick another prompt"
    honest = _stream(tok, prompt, n, alone)
    verify.mark([honest], greedy)
    assert honest.verified and honest.ok and honest.near_tie
    v = verify.verdict([honest], greedy)
    assert (v.compared, v.failed, v.near_ties, v.detok_only) == (1, 0, 1, 0)


@pytest.mark.slow
def test_streams_that_leave_the_greedy_text_elsewhere_still_fail(case) -> None:
    greedy, prompt, n, alone = case
    tok = verify._tie_engine(*greedy.engine).tokenizer
    k = verify._agreeing_tokens(tok, greedy.ids[prompt][:n], verify.loose(str(tok.decode(alone))))
    wrong_token = [*greedy.ids[prompt][:3], (greedy.ids[prompt][3] + 1) % 1000, *greedy.ids[prompt][4:n]]
    tie_then_junk = [*alone[: k + 1], *[(t + 7) % 1000 for t in alone[k + 1:]]]
    for ids in (wrong_token, tie_then_junk):
        stream = _stream(tok, prompt, n, ids)
        verify.mark([stream], greedy)
        assert stream.verified is False and not stream.ok and not stream.near_tie
    cut = replace(_stream(tok, prompt, n, alone), text_cut=True)
    verify.mark([cut], greedy)
    assert cut.verified is False, "a stream too long to keep is never verified"
