"""The serving lab's reference: deterministic model build, batched == unbatched greedy decoding, and the
OpenAI-compatible server on 127.0.0.1 (official `openai` client, SSE, usage, 429, disconnects, /metrics)."""
from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import openai
import pytest
import torch
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from reference_systems.serving.engine import Engine, generate
from reference_systems.serving.model import ModelParams, build, model_dir, weights_sha256
from reference_systems.serving.naive_server import create_naive_app
from reference_systems.serving.server import ServerConfig, create_app

PROMPTS = ["def foo(x): return x", "The with statement", "class", "import os",
           "Lambda expressions (sometimes called lambda forms) are used to create anonymous functions.", "a"]


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    before = torch.get_num_threads()  # torch's thread count is process-wide: give it back to other tests
    yield Engine(model_dir(), max_batch=8, threads=1)  # 2 threads crawl when cores are shared
    torch.set_num_threads(before)


class Served:
    """A uvicorn server for `app` on a free 127.0.0.1 port, in a thread."""

    def __init__(self, app) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.app = app
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Served:  # noqa: PYI034
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "uvicorn did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@pytest.fixture(scope="module")
def served(engine) -> Iterator[Served]:
    with Served(create_app(ServerConfig(max_batch=8, max_waiting=4), engine=engine)) as s:
        yield s


@pytest.fixture(scope="module")
def client(served) -> openai.OpenAI:
    return openai.OpenAI(base_url=served.url + "/v1", api_key="unused", max_retries=0, timeout=60)


def metrics_of(url: str) -> dict[str, float]:
    text = httpx.get(url + "/metrics").text
    return {s.name + json.dumps(s.labels, sort_keys=True) * bool(s.labels): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


# -- model ------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_model_builds_deterministically_and_loads(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    params = ModelParams()
    first = model_dir(params, root=tmp_path / "cache")
    assert first.name == f"tiny-gpt2-{params.key()}"
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert model_dir(params, root=tmp_path / "cache") == first  # reused, not rebuilt
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp
    second = build(tmp_path / "again", params)
    assert weights_sha256(first) == weights_sha256(second)
    assert (first / "tokenizer.json").read_bytes() == (second / "tokenizer.json").read_bytes()
    assert weights_sha256(first) == weights_sha256(model_dir())  # the shared cache holds the same model
    tok = AutoTokenizer.from_pretrained(first)
    model = AutoModelForCausalLM.from_pretrained(first)
    assert len(tok) == model.config.vocab_size == params.vocab_size
    assert (model.config.n_layer, model.config.n_embd, model.config.n_head) == (4, 256, 4)
    assert tok.decode(tok("def f(x):\n    return x").input_ids) == "def f(x):\n    return x"


# -- engine -----------------------------------------------------------------------------------------
def test_batched_greedy_equals_unbatched_and_transformers(engine):
    tok = engine.tokenizer
    prompts = [tok(p).input_ids for p in PROMPTS]
    solo = [generate(engine, [p], 20)[0] for p in prompts]
    assert len({tuple(s) for s in solo}) == len(prompts), "different prompts should continue differently"
    assert generate(engine, prompts, 20) == solo
    # continuous batching: half join while the other half is mid-decode
    got: dict[str, list[int]] = {str(i): [] for i in range(len(prompts))}
    for i in range(3):
        engine.add(str(i), prompts[i], 20)
    for step in range(40):
        if step == 5:
            for i in range(3, len(prompts)):
                engine.add(str(i), prompts[i], 20)
        for o in engine.step():
            got[o.request_id].append(o.token_id)
    assert not engine.has_work()
    assert [got[str(i)] for i in range(len(prompts))] == solo
    # the anchor: transformers' own greedy generate agrees with the engine's attention + KV cache
    for p, s in zip(prompts[:2], solo[:2]):
        ref = engine.model.generate(torch.tensor([p]), max_new_tokens=20, do_sample=False, pad_token_id=0,
                                    eos_token_id=None)
        assert ref[0, len(p):].tolist() == s


def test_engine_stops_aborts_and_rejects_bad_input(engine):
    p = engine.tokenizer("import os").input_ids
    first = generate(engine, [p], 5)[0]
    engine.add("stop", p, 50, stop_ids={first[2]})
    outs = []
    while engine.has_work():
        outs += engine.step()
    assert [o.token_id for o in outs] == first[:3] and outs[-1].finish_reason == "stop"
    engine.add("gone", p, 50)
    engine.step()
    assert engine.abort("gone") and not engine.has_work() and not engine.abort("gone")
    with pytest.raises(ValueError, match="context"):
        engine.add("long", p, engine.max_len)
    with pytest.raises(ValueError, match="empty"):
        engine.add("empty", [], 5)


def test_detokenizer_streams_exact_text_across_split_characters(engine):
    from labkit.serving import Detokenizer
    tok = engine.tokenizer
    ids = tok("naïve → 日本語 ✓ def f(x):\n    return x").input_ids + [engine.eos_id]
    d = Detokenizer(tok)
    pieces = [d.push(i, last=k == len(ids) - 1) for k, i in enumerate(ids)]
    assert "".join(pieces) + d.flush() == tok.decode(ids, skip_special_tokens=True)
    assert all("\ufffd" not in p for p in pieces), "partial UTF-8 must be held back, not streamed"


# -- server -----------------------------------------------------------------------------------------
def test_openai_client_completions_and_chat(client, engine):
    prompt = PROMPTS[0]
    expected = engine.tokenizer.decode(generate(engine, [engine.tokenizer(prompt).input_ids], 12)[0])
    r = client.completions.create(model="tiny-gpt2", prompt=prompt, max_tokens=12, extra_body={"ignore_eos": True})
    assert r.choices[0].text == expected and r.choices[0].finish_reason == "length"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (len(engine.tokenizer(prompt).input_ids), 12)

    stream = client.completions.create(prompt=prompt, model="tiny-gpt2", max_tokens=12, stream=True,
                                       stream_options={"include_usage": True}, extra_body={"ignore_eos": True})
    chunks = list(stream)
    token_chunks = [c for c in chunks if c.choices]
    assert "".join(c.choices[0].text for c in token_chunks) == expected
    assert len(token_chunks) == chunks[-1].usage.completion_tokens == 12

    chat = client.chat.completions.create(model="tiny-gpt2", messages=[{"role": "user", "content": "hello"}],
                                          max_tokens=8)
    assert chat.choices[0].message.role == "assistant" and chat.usage.completion_tokens <= 8
    pieces = list(client.chat.completions.create(model="tiny-gpt2", messages=[{"role": "user", "content": "hello"}],
                                                 max_tokens=8, stream=True))
    assert "".join(p.choices[0].delta.content or "" for p in pieces) == chat.choices[0].message.content
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="gpt-4", prompt="x", max_tokens=1)
    with pytest.raises(openai.BadRequestError, match="context length"):
        client.completions.create(model="tiny-gpt2", prompt="x", max_tokens=5000)


def test_sse_wire_format_usage_and_client_vs_server_ttft(served):
    body = {"model": "tiny-gpt2", "prompt": "for i in range(10):", "max_tokens": 30, "stream": True,
            "ignore_eos": True, "stream_options": {"include_usage": True}}
    events, t0, first = [], time.monotonic(), None
    with httpx.stream("POST", served.url + "/v1/completions", json=body, timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                first = first or time.monotonic()
                events.append(line[len("data: "):])
            else:
                assert line == "", f"unexpected SSE line {line!r}"
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    tokens = [c for c in chunks if c["choices"]]
    assert len(tokens) == chunks[-1]["usage"]["completion_tokens"] == 30
    assert tokens[-1]["choices"][0]["finish_reason"] == "length"
    assert all(c["choices"][0]["finish_reason"] is None for c in tokens[:-1])
    timing = chunks[-1]["server_timing"]
    client_ttft, server_ttft = first - t0, timing["ttft_s"]
    assert 0 < server_ttft <= client_ttft < server_ttft + 0.5  # the server's view is inside the client's
    assert timing["arrival"] >= t0 and timing["first_token"] <= first


def test_queue_full_429_and_disconnect_frees_slot(engine):
    small = Engine(engine.model_dir, max_batch=1)
    with Served(create_app(ServerConfig(max_batch=1, max_waiting=1), engine=small)) as s, \
            httpx.Client(base_url=s.url, timeout=30) as http:
        long = {"prompt": "import os", "max_tokens": 480, "ignore_eos": True, "stream": True}
        with http.stream("POST", "/v1/completions", json=long) as running:
            lines = running.iter_lines()
            assert next(lines).startswith("data: ")  # running: first token is out
            with http.stream("POST", "/v1/completions", json=long) as waiting:
                assert waiting.status_code == 200
                full = http.post("/v1/completions", json={"prompt": "x", "max_tokens": 2})
                assert full.status_code == 429
                assert int(full.headers["Retry-After"]) >= 1 and "busy" in full.json()["error"]["message"]
        # both streams closed mid-generation: their slots must come back without finishing 480 tokens
        deadline = time.monotonic() + 10
        while small.has_work():
            assert time.monotonic() < deadline, "aborted streams still hold engine slots"
            time.sleep(0.02)
        ok = http.post("/v1/completions", json={"prompt": "x", "max_tokens": 2, "ignore_eos": True})
        assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] == 2
        m = metrics_of(s.url)
        assert m['ailab_serving_requests_total{"outcome": "abort"}'] == 2
        assert m['ailab_serving_requests_total{"outcome": "rejected"}'] == 1
        assert m["ailab_serving_num_requests_running"] == 0 and m["ailab_serving_num_requests_waiting"] == 0


def test_metrics_parse_and_count(served, client):
    before = metrics_of(served.url)
    client.completions.create(model="tiny-gpt2", prompt="x", max_tokens=3, extra_body={"ignore_eos": True})
    after = metrics_of(served.url)
    for name in ("time_to_first_token_seconds_count", "e2e_request_latency_seconds_count"):
        assert after["ailab_serving_" + name] == before.get("ailab_serving_" + name, 0) + 1
    assert after["ailab_serving_generation_tokens_total"] - before.get("ailab_serving_generation_tokens_total", 0) == 3
    assert after["ailab_serving_prompt_tokens_total"] > before.get("ailab_serving_prompt_tokens_total", 0)
    assert 'ailab_serving_time_to_first_token_seconds_bucket{"le": "+Inf"}' in after
    assert r'ailab_serving_num_requests_running' in after and "ailab_serving_num_requests_waiting" in after


def test_bad_requests_get_openai_errors(served):
    r = httpx.post(served.url + "/v1/completions", json={"max_tokens": 3})
    assert r.status_code == 400 and "prompt" in r.json()["error"]["message"]
    r = httpx.post(served.url + "/v1/chat/completions", json={"messages": [], "max_tokens": 3})
    assert r.status_code == 400
    assert httpx.get(served.url + "/health").json() == {"status": "ok"}


def test_naive_server_same_answers_one_at_a_time(engine, served):
    naive_engine = Engine(engine.model_dir, max_batch=1)
    body = {"prompt": PROMPTS[1], "max_tokens": 10, "ignore_eos": True}
    with Served(create_naive_app(engine=naive_engine)) as s:
        results: list[httpx.Response] = []
        threads = [threading.Thread(target=lambda: results.append(httpx.post(s.url + "/v1/completions", json=body,
                                                                               timeout=60))) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    reference = httpx.post(served.url + "/v1/completions", json=body).json()["choices"][0]["text"]
    assert [r.status_code for r in results] == [200] * 3
    assert {r.json()["choices"][0]["text"] for r in results} == {reference}
    spans = sorted((r.json()["server_timing"]["first_token"], r.json()["server_timing"]["finish"]) for r in results)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans)), "the naive server must not overlap requests"
