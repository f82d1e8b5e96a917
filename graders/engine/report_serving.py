"""report.html for the serving lab: parts, output verification, latency-vs-load curves, TTFT distributions and
the price table.

Plot data comes from `card.extras` (filled by `graders.serving.grade`): per-rate summaries of the
candidate and the reference, the TTFT samples at the highest rate, the verification verdicts of both
(graders.serving.verify) and the price table.
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np

from graders.engine.report import CSS, _fmt, _png, metric_rows, part_rows, plt
from graders.engine.report_sections import SECTION_CSS, closing_sections
from graders.engine.scorecard import Scorecard


def _systems(cand: dict[float, Any], ref: dict[float, Any], floor: dict[float, Any]) -> list[tuple[str, Any, str]]:
    both = [("reference", ref, "o--"), ("candidate", cand, "o-")]
    return both + ([("naive (floor)", floor, "s:")] if floor else [])


def load_curves(rates: list[float], cand: dict[float, Any], ref: dict[float, Any],
                floor: dict[float, Any] | None = None) -> str:
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    for label, data, style in _systems(cand, ref, floor or {}):
        xs = [r for r in rates if r in data]
        a.plot(xs, [data[r].get("ttft_p95_ms", np.nan) for r in xs], style, label=label)
        b.plot(xs, [data[r].get("goodput_rps", 0.0) for r in xs], style, label=label)
    b.plot(rates, rates, ":", color="grey", label="offered")
    a.set(xlabel="offered load (requests/s)", ylabel="TTFT p95 (ms, log)", yscale="log", title="TTFT p95 vs load")
    b.set(xlabel="offered load (requests/s)", ylabel="goodput (requests/s)", title="Goodput vs load")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend()
    return _png(fig)


def throughput_latency(rates: list[float], cand: dict[float, Any], ref: dict[float, Any],
                       floor: dict[float, Any] | None = None) -> str:
    """vLLM's trade-off chart: output tokens/s against median time per output token, one point per offered rate."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for label, data, style in _systems(cand, ref, floor or {}):
        xs = [r for r in rates if r in data and data[r].get("output_tokens_per_s")]
        ax.plot([data[r]["output_tokens_per_s"] for r in xs], [data[r].get("tpot_p50_ms", np.nan) for r in xs],
                style, label=label)
        for r in xs:
            ax.annotate(f"{r:g}/s", (data[r]["output_tokens_per_s"], data[r].get("tpot_p50_ms", np.nan)),
                        fontsize=7, alpha=0.7)
    ax.set(xlabel="output tokens/s (log)", ylabel="TPOT p50 (ms, log)", xscale="log", yscale="log",
           title="Throughput vs latency")
    ax.grid(alpha=0.3)
    ax.legend()
    return _png(fig)


GPU_ROWS = (("gpu_util_mean", "GPU utilisation (%, mean of NVML samples)"),
            ("gpu_power_w_mean", "board power (W, mean)"), ("energy_j", "energy (J, board counter)"),
            ("joules_per_output_token", "joules per output token"), ("gpu_seconds", "GPU-seconds held"),
            ("gpu_cost_per_1m_output_tokens_usd", "USD per 1M output tokens (GPU-seconds x price)"),
            ("energy_cost_per_1m_output_tokens_usd", "USD per 1M output tokens (energy x price per kWh)"),
            ("gpu_memory_mb_max", "GPU memory used (MB, max)"))


def gpu_section(card: Scorecard) -> str:
    """Measured GPU cost per rate (profiles with device = cuda); empty on CPU profiles."""
    x, e = card.extras, html.escape
    systems = [(n, x.get(k, {})) for n, k in (("candidate", "candidate"), ("reference", "reference"),
                                               ("naive (floor)", "floor")) if x.get(k)]
    if not any("gpu_seconds" in s for _, d in systems for s in d.values()):
        return ""
    head = "".join(f"<th>{e(n)} {float(r):g}/s</th>" for n, d in systems for r in d)
    rows = "".join(f"<tr><td>{e(label)}</td>" + "".join(f"<td>{_fmt(s.get(key))}</td>" for _, d in systems
                                                          for s in d.values()) + "</tr>" for key, label in GPU_ROWS)
    return (f"<h2>Measured on the GPU</h2><p>Each run's GPU-seconds, energy and utilisation, sampled from NVML "
            f"while that run's load was on (graders/serving/gpu.py).</p><table><tr><th></th>{head}</tr>{rows}</table>")


def ttft_histogram(ttft: list[float], ref_ttft: list[float], rate: float) -> str:
    fig, ax = plt.subplots(figsize=(5, 3.4))
    both = [x for x in ttft + ref_ttft if x > 0]
    bins: Any = np.geomspace(min(both), max(both) * 1.0001, 40) if both and max(both) > min(both) else 20
    for label, data in (("reference", ref_ttft), ("candidate", ttft)):
        if data:
            ax.hist(data, bins=bins, alpha=0.55, label=f"{label} (n={len(data)})")
    if isinstance(bins, np.ndarray):
        ax.set_xscale("log")
    ax.set(xlabel="TTFT (ms, log scale)", ylabel="requests", title=f"Time to first token at {rate:g} requests/s")
    ax.legend()
    ax.grid(alpha=0.3)
    return _png(fig)


def verification_section(card: Scorecard) -> str:
    """What the load phase's streams were checked against, the counts for both systems, and wrong examples."""
    e = html.escape
    v = card.extras.get("verification") or {}
    env = card.environment
    seed = f"seed {e(str(env.get('load_seed')))} ({e(str(env.get('load_seed_source')))})"
    intro = (f"<p>Prompts drawn for this run from the model's corpus ({seed}; <code>AILAB_SERVING_SEED</code> "
             "replays it). Every completion streamed during the load phase, candidate and reference, was compared "
             "with the engine's greedy output for its prompt and <code>max_tokens</code>, computed by the grader. A "
             "wrong stream is a failed request; more than "
             f"{float(v.get('max_failure_share', env.get('max_failure_share', 0))):.0%} wrong and no performance "
             "points. Token counts are the verified streamed tokens, never the server's <code>usage</code>.</p>")
    cand, ref = v.get("candidate"), v.get("reference")
    if not cand or not ref:
        return f"<h2>Output verification under load</h2>{intro}<p>No load phase ran.</p>"
    rows = [("streams compared", "compared", "{:d}"), ("not the greedy output", "failed", "{:d}"),
            ("share wrong", "share", "{:.1%}"), ("verified, but differing in non-ASCII text or end-of-text marker",
                                                  "detok_only", "{:d}"),
            ("verified, taking a near-tied token where the grader's batch took the other", "near_ties", "{:d}"),
            ("verified, with a usage that disagrees with the streamed tokens", "usage_mismatches", "{:d}")]
    table = "".join(f"<tr><td>{e(label)}</td><td>{fmt.format(cand[key])}</td><td>{fmt.format(ref[key])}</td></tr>"
                    for label, key, fmt in rows)
    examples = "".join(f"<tr><td>…{e(x['prompt'])}</td><td>{e(x['max_tokens'])}</td><td>{e(repr(x['got']))}</td>"
                       f"<td>{e(repr(x['want']))}</td></tr>" for x in cand.get("examples", []))
    if examples:
        examples = ("<p>Wrong streams of the candidate (the text is cut):</p><table><tr><th>prompt (end)</th>"
                    f"<th>max_tokens</th><th>streamed</th><th>greedy output</th></tr>{examples}</table>")
    return (f"<h2>Output verification under load</h2>{intro}<table><tr><th></th><th>candidate</th>"
            f"<th>reference</th></tr>{table}</table>{examples}")


def write_serving_report(card: Scorecard, path: Path) -> Path:
    e = html.escape
    x = card.extras
    rows = part_rows(card, mark_lost=False)
    ref = card.reference.get("metrics", {})
    metrics_table = metric_rows(card)
    plots = ""
    rates = x.get("rates", [])
    if x.get("candidate") or x.get("reference"):
        plots += load_curves(rates, x.get("candidate", {}), x.get("reference", {}), x.get("floor"))
        plots += throughput_latency(rates, x.get("candidate", {}), x.get("reference", {}), x.get("floor"))
    if x.get("ttft") or x.get("ref_ttft"):
        plots += ttft_histogram(x.get("ttft", []), x.get("ref_ttft", []), max(rates) if rates else 0)
    device = card.environment.get("price_device")
    tps_c, tps_r = card.metrics.get("output_tokens_per_s"), ref.get("output_tokens_per_s")
    price_rows = "".join(
        f"<tr><td>{e(str(d))}{' (used)' if d == device else ''}</td><td>{usd:g}</td>"
        f"<td>{_fmt(usd / (3600 * tps_c) * 1e6 if tps_c else None)}</td>"
        f"<td>{_fmt(usd / (3600 * tps_r) * 1e6 if tps_r else None)}</td></tr>"
        for d, usd in x.get("prices", {}).items())
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{e(card.lab)}: {e(card.submission)}</title>
<style>{CSS}{SECTION_CSS}</style></head><body>
<h1>{e(card.lab)} lab: {e(card.submission)}</h1>
<p class="score">{card.score:.1f} / 100</p>
<h2>Parts</h2><table><tr><th>part</th><th>points</th><th>detail (why points were lost)</th></tr>{rows}</table>
{verification_section(card)}
<h2>Candidate vs reference under load</h2><div>{plots}</div>
<p>Metrics at the highest offered rate, measured from the client's stream (vLLM's definitions; output tokens
are the verified streamed tokens); the verification figures cover the whole load phase.</p>
<table><tr><th>metric</th><th>candidate</th><th>reference</th></tr>{metrics_table}</table>
<h2>Cost per million output tokens</h2>
<table><tr><th>device</th><th>USD / hour</th><th>candidate</th><th>reference</th></tr>{price_rows}</table>
<p>USD per hour / (3600 x output tokens/s) x 10<sup>6</sup>, at the measured throughput on this machine.</p>
{gpu_section(card)}
{closing_sections(card)}
</body></html>"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page)
    return path
