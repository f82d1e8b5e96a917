"""The client-measured TTFT agrees with the server's own timestamps: a raw-socket probe against the reference
server running as its own process on 127.0.0.1 (as the benchmark and the grader run it)."""
from __future__ import annotations

import asyncio

import pytest

from benchmarks.serving import load_lab, server
from graders.serving.ttft_probe import probe

pytestmark = pytest.mark.timing  # compares speed with the reference (tests/conftest.py)


@pytest.mark.slow
def test_client_ttft_agrees_with_server_timing_within_2ms():
    with server("reference", load_lab()["server"]) as url:
        out = asyncio.run(probe(url, n=30, max_tokens=8))
    samples = out["samples"]
    assert len(samples) == 30
    assert all(s.server_ttft_s > 0 for s in samples)
    # the client cannot see a token before the server hands it over (0.5 ms slack for clock reads)
    early = [round(s.diff_ms, 3) for s in samples if s.client_ttft_s < s.server_ttft_s - 0.5e-3]
    assert not early, f"client TTFT below server TTFT by more than 0.5 ms: {early}"
    assert abs(out["median_diff_ms"]) <= 2.0, f"median client - server TTFT {out['median_diff_ms']:.2f} ms > 2 ms"
    assert out["p90_diff_ms"] >= out["median_diff_ms"]


def test_probe_refuses_hosts_other_than_loopback():
    for url in ("http://localhost:8100", "http://10.0.0.1:8100", "https://127.0.0.1:8100", "http://127.0.0.1"):
        with pytest.raises(ValueError, match="127.0.0.1"):
            asyncio.run(probe(url))
