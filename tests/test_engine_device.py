"""The serving engine's device handling on CPU: buckets, refusals, the padded decode CUDA graphs replay, the GPU profile.

The GPU itself is exercised by benchmarks/gpu_check.sh on a machine with one; here everything that decides what a
graph replays is checked eagerly: a decode step padded to a (rows, width) bucket gives the same tokens as the
exact step, which is what makes replaying a captured bucket correct.
"""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from graders.engine.hidden import write_lab_toml
from graders.engine.labconfig import load_lab
from graders.serving import gpu
from reference_systems.serving.engine import MIN_WIDTH, Engine, bucket, buckets, generate, resolve_device
from reference_systems.serving.model import MODELS, model_dir, params_for

NO_GPU = not torch.cuda.is_available()


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(model_dir(), max_batch=8, threads=1)


def test_buckets_cover_every_size_with_powers_of_two() -> None:
    assert buckets(256) == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    assert buckets(48) == [1, 2, 4, 8, 16, 32, 48]
    assert buckets(1024, MIN_WIDTH) == [64, 128, 256, 512, 1024]
    assert all(bucket(n, 256) >= n and bucket(n, 256) in buckets(256) for n in range(1, 257))
    assert bucket(17, 1024, MIN_WIDTH) == 64 and bucket(65, 1024, MIN_WIDTH) == 128


@pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU")
def test_cuda_without_a_gpu_and_unknown_devices_are_refused_clearly() -> None:
    with pytest.raises(ValueError, match="torch sees no CUDA GPU here.*use device='cpu'"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    assert resolve_device("auto").type == "cpu"
    with pytest.raises(ValueError, match="CUDA graphs need device='cuda'"):
        Engine(model_dir(), max_batch=1, graphs=True)
    with pytest.raises(ValueError, match="unknown dtype 'float16'"):
        Engine(model_dir(), max_batch=1, dtype="float16")


def test_a_decode_step_padded_to_its_bucket_gives_the_exact_steps_tokens(engine: Engine) -> None:
    tok = engine.tokenizer
    prompts = [tok(t).input_ids for t in ("Exceptions are raised", "A for statement runs the body of the loop",
                                          "def")]
    for i, p in enumerate(prompts):
        engine.add(f"p{i}", p, max_tokens=8)
    first = engine.step()  # prefill: slots 0..2 hold the prompts
    assert len(first) == 3
    seqs = sorted(engine._running.values(), key=lambda s: s.slot)
    ids = [s.last_token for s in seqs]
    pos = [s.length for s in seqs]
    width = max(pos) + 1
    with torch.inference_mode():
        exact = engine._decode_rows(torch.tensor(ids), torch.tensor(pos), width).tolist()
        rows = bucket(len(ids), engine.max_batch)
        padded = engine._decode_rows(torch.tensor(ids + [0] * (rows - len(ids))),
                                     torch.tensor(pos + [0] * (rows - len(pos))),
                                     bucket(width, engine.max_len, MIN_WIDTH)).tolist()
    assert rows == 4 and bucket(width, engine.max_len, MIN_WIDTH) == MIN_WIDTH > width
    assert padded[:3] == exact
    for s in seqs:
        engine.abort(s.request_id)
    assert not engine.has_work()


def test_bfloat16_runs_on_cpu_and_float32_stays_the_default(engine: Engine) -> None:
    assert engine.dtype == torch.float32 and engine.device.type == "cpu"
    small = Engine(model_dir(), max_batch=2, threads=1, dtype="bfloat16")
    assert small.k_cache.dtype == torch.bfloat16
    out = generate(small, [[5, 6, 7], [8, 9]], max_tokens=6)
    assert [len(o) for o in out] == [6, 6]


def test_named_models_and_the_gpu_profile() -> None:
    small = params_for("gpt2-small")
    assert (small.n_layer, small.n_embd, small.n_head, small.n_positions) == (12, 768, 12, 1024)
    assert small.vocab_size == MODELS["tiny-gpt2"].vocab_size  # one tokenizer: the same prompts for either
    with pytest.raises(ValueError, match="unknown model 'gpt5'"):
        params_for("gpt5")
    assert model_dir().name.startswith("tiny-gpt2-")
    profile = load_lab("serving").load_profile("gpu")
    assert (profile.device, profile.model, profile.dtype, profile.floor) == ("cuda", "gpt2-small", "float32", True)
    assert load_lab("serving").load_profile("quick").device == "cpu"


@pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU")
def test_no_gpu_means_no_gpu_figures_and_a_one_line_refusal_of_the_gpu_profile(tmp_path) -> None:
    with gpu.GpuMeter() as meter:
        pass
    assert meter.handle is None  # no NVML here
    assert meter.figures(output_tokens=100, usd_per_hour=5.0, usd_per_kwh=0.15) == {}
    run = subprocess.run([sys.executable, "-m", "graders.cli", "grade", "serving", "reference", "--profile", "gpu",
                          "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert "profile 'gpu' runs on a CUDA GPU and torch sees none here" in run.stderr
    assert "Traceback" not in run.stderr and not (tmp_path / "out").exists()


def test_measured_cost_is_gpu_seconds_times_price_and_energy_times_price_per_kwh() -> None:
    meter = gpu.GpuMeter()
    meter.handle, meter.seconds, meter.energy_j = object(), 10.0, 1000.0  # as if NVML had measured one run
    meter.util, meter.power_w = [50.0, 70.0], [300.0, 500.0]
    figures = meter.figures(output_tokens=1000, usd_per_hour=3.6, usd_per_kwh=0.15)
    assert figures["gpu_cost_per_1m_output_tokens_usd"] == pytest.approx(10.0)  # 3.6 $/h x 10 s / 1000 tok x 1e6
    assert figures["joules_per_output_token"] == pytest.approx(1.0)
    assert figures["energy_cost_per_1m_output_tokens_usd"] == pytest.approx(1000 / 3.6e6 * 0.15 * 1e3)
    assert (figures["gpu_util_mean"], figures["gpu_power_w_mean"]) == (60.0, 400.0)
    assert "joules_per_output_token" not in meter.figures(0, 3.6, 0.15)  # no tokens: no per-token figures


@pytest.mark.slow
@pytest.mark.timing
def test_the_floor_is_loaded_once_and_lands_in_the_scorecard_and_report(tmp_path) -> None:
    """floor = true (the GPU profile's setting) on CPU: the naive server takes the same load once per batch."""
    hidden = tmp_path / "hidden"
    write_lab_toml(hidden, "serving", "[profiles.smoke]\nfloor = true\nrates = [6.0]\nduration_s = 3.0\n")
    hidden.chmod(0o700)
    from graders.serving.grade import grade

    [card] = grade("reference", tmp_path / "out", profile="smoke", hidden=hidden)
    assert card.score >= 95, card.errors
    assert set(card.by_rate) == {"candidate", "reference", "floor"}
    floor, ref = card.by_rate["floor"]["6"], card.by_rate["reference"]["6"]
    assert floor["verification_failures"] == 0 and floor["output_tokens_per_s"] > 0
    assert floor["ttft_p95_ms"] > ref["ttft_p95_ms"]  # one request at a time queues what the reference batches
    saved = (tmp_path / "out" / "reference" / "scorecard.json").read_text()
    assert '"floor"' in saved and '"by_rate"' in saved
    report = (tmp_path / "out" / "reference" / "report.html").read_text()
    assert report.count("<img") == 3  # load curves, throughput vs latency, TTFT histogram
