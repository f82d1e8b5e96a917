"""report.html: the RAG lab's self-contained page per graded submission (plots inlined as PNG), with the
load phase's verification (first-seen queries, answers under load against the quality pass)."""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from graders.engine.report_sections import SECTION_CSS, closing_sections
from graders.engine.scorecard import Scorecard

CSS = """body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f3f3f3}.score{font-size:2.4em;font-weight:600}.err{color:#a00}.warn{color:#a60}
.lost{color:#a00}img{max-width:470px;margin-right:8px}"""


def _png(fig: plt.Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def recall_plot(curve: dict[int, float], ref_curve: dict[int, float]) -> str:
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for label, data, style in (("reference", ref_curve, "--"), ("candidate", curve, "-")):
        if data:
            ks = sorted(int(k) for k in data)
            ax.plot(ks, [data[k] for k in ks], style, marker="o", label=label)
    ax.set_xscale("log")
    ax.set(xlabel="k", ylabel="recall@k", title="Recall@k on the hidden split", ylim=(0, 1.02))
    ax.legend()
    ax.grid(alpha=0.3)
    return _png(fig)


def latency_plot(latencies: list[float], ref_latencies: list[float]) -> str:
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for label, data, style in (("reference", ref_latencies, "--"), ("candidate", latencies, "-")):
        if data:
            xs = sorted(data)
            ax.plot(xs, [(i + 1) / len(xs) for i in range(len(xs))], style, label=f"{label} (n={len(xs)})")
    ax.set(xlabel="latency (ms)", ylabel="fraction of requests", title="Latency under load, first-seen queries (CDF)")
    ax.axhline(0.95, color="grey", lw=0.6)
    ax.legend()
    ax.grid(alpha=0.3)
    return _png(fig)


def latency_histogram(latencies: list[float], ref_latencies: list[float]) -> str:
    fig, ax = plt.subplots(figsize=(5, 3.4))
    both = [x for x in latencies + ref_latencies if x > 0]
    log_bins = bool(both) and max(both) > min(both)
    bins: list[float] | int = list(np.geomspace(min(both), max(both) * 1.0001, 40)) if log_bins else 20
    for label, data in (("reference", ref_latencies), ("candidate", latencies)):
        if data:
            ax.hist(data, bins=bins, alpha=0.55, label=f"{label} (n={len(data)})")
    if log_bins:
        ax.set_xscale("log")
    ax.set(xlabel="latency (ms, log scale)", ylabel="requests", title="Latency under load, first-seen (histogram)")
    ax.legend()
    ax.grid(alpha=0.3)
    return _png(fig)


def _fmt(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.4g}"


def part_rows(card: Scorecard, mark_lost: bool = True) -> str:
    """The parts table's rows: name, points, detail (with `mark_lost`, a detail that lost points is styled `lost`)."""
    e = html.escape
    return "".join(f"<tr><td>{e(p.name)}</td><td>{p.points:g} / {p.max_points:g}</td>"
                   + (f"<td class='{'lost' if p.points < p.max_points else ''}'>" if mark_lost else "<td>")
                   + f"{e(p.detail)}</td></tr>" for p in card.parts)


def metric_rows(card: Scorecard, sort: bool = False) -> str:
    """Candidate vs reference rows for every metric either has (sorted, or the candidate's order first)."""
    ref = card.reference.get("metrics", {})
    names = sorted(set(card.metrics) | set(ref)) if sort else list(dict.fromkeys(list(card.metrics) + list(ref)))
    return "".join(f"<tr><td>{html.escape(n)}</td><td>{_fmt(card.metrics.get(n))}</td><td>{_fmt(ref.get(n))}</td></tr>"
                   for n in names)


def _check_row(name: str, measured: str, required: str, value: float | None, floor: float, judged: bool) -> str:
    if value is None or not judged:
        verdict, css = "not judged", "warn"
    else:
        verdict, css = ("holds", "") if value >= floor else ("FAILS: no performance points", "lost")
    return (f"<tr><td>{html.escape(name)}</td><td>{html.escape(measured)}</td><td>{html.escape(required)}</td>"
            f"<td class='{css}'>{verdict}</td></tr>")


def load_section(load: dict[str, Any], metrics: dict[str, float], ref: dict[str, float]) -> str:
    """How the load phase was run and whether the answers under load are the retrieval that was graded."""
    e = html.escape
    cfg, verdict = load["settings"], load.get("verdict") or {}
    k = verdict.get("k", 10)
    rows = ""
    if verdict:
        probe, ratio = verdict.get("probe_overlap"), load.get("agreement_ratio")
        quality = verdict.get("agreement_quality")
        rows = _check_row(f"repeated quality-pass queries (probes): mean top-{k} overlap with its own quality-pass "
                          "answers", f"{probe:.2f} over {verdict['probes']}" if probe is not None else
                          f"{verdict['probes']} answered", f">= {cfg['min_probe_overlap']:g}", probe,
                          cfg["min_probe_overlap"], True)
        rows += _check_row(
            f"first-seen queries: top-{k} agreement with the reference, over its agreement on the quality pass",
            f"{ratio:.2f} ({verdict['agreement_load']:.2f} / {quality:.2f}, {verdict['verified']} sampled)"
            if ratio is not None else "not measured", f">= {cfg['min_agreement_ratio']:g}", ratio,
            cfg["min_agreement_ratio"], quality is not None and quality >= cfg["agreement_floor"])
    if verdict.get("reasons"):
        outcome = "<p class='lost'>No performance points: " + e("; ".join(verdict["reasons"])) + "</p>"
    elif verdict:
        outcome = "<p>The answers under load hold up against the quality pass.</p>"
    else:
        outcome = "<p>No answers under load to check.</p>"
    notes = "".join(f"<li>{e(n)}</li>" for n in verdict.get("notes", []))
    repeat = (f" Repeated queries' p50 (not counted): {metrics['latency_repeat_p50_ms']:.1f} ms, reference "
              f"{ref.get('latency_repeat_p50_ms', float('nan')):.1f} ms." if "latency_repeat_p50_ms" in metrics else "")
    examples = "".join(f"<li><code>{e(t)}</code></li>" for t in load.get("examples", []))
    return f"""<h2>Load phase: first-seen queries, answers checked</h2>
<p>Seed {load['seed']} (lab.toml <code>[load] seed</code> reproduces it): a stream of {load['requests']} requests,
{load['first_seen']} of them rewrites of the hidden queries that neither system had seen, every
{load['probe_every']}th a repeated quality-pass query. Each system is sent the same stream from its start and never
the same rewrite twice; the candidate got through {load['candidate_reached']}, the reference through
{load['reference_reached']}. Latency and throughput above count first-seen queries only.{repeat}</p>
<table><tr><th>check</th><th>measured</th><th>required</th><th>verdict</th></tr>{rows}</table>
{outcome}{f'<ul>{notes}</ul>' if notes else ''}
<details><summary>the first requests of the stream</summary><ul>{examples}</ul></details>"""


def write_report(card: Scorecard, path: Path) -> Path:
    e = html.escape
    rows = part_rows(card)
    ref = card.reference.get("metrics", {})
    metrics_table = metric_rows(card, sort=True)
    extras = card.extras
    plots = ""
    if extras.get("curve") or extras.get("ref_curve"):
        plots += recall_plot(extras.get("curve", {}), extras.get("ref_curve", {}))
    if extras.get("latencies") or extras.get("ref_latencies"):
        plots += latency_plot(extras.get("latencies", []), extras.get("ref_latencies", []))
        plots += latency_histogram(extras.get("latencies", []), extras.get("ref_latencies", []))
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{e(card.lab)}: {e(card.submission)}</title>
<style>{CSS}{SECTION_CSS}</style></head><body>
<h1>{e(card.lab)} lab — {e(card.submission)}</h1>
<div class="score">{card.score:g} / 100</div><p>graded in {card.duration_s:.0f} s</p>
<h2>Parts</h2><table><tr><th>part</th><th>points</th><th>detail (why points were lost)</th></tr>{rows}</table>
<h2>Candidate vs reference</h2><div>{plots}</div>
<table><tr><th>metric</th><th>candidate</th><th>reference</th></tr>{metrics_table}</table>
{load_section(extras["load"], card.metrics, ref) if extras.get("load") else ""}
{closing_sections(card)}
</body></html>"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
