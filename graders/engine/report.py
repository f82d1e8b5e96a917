"""report.html: one self-contained page per graded submission (plots inlined as PNG)."""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

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
    ax.set(xlabel="latency (ms)", ylabel="fraction of requests", title="Search latency under load (CDF)")
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
    ax.set(xlabel="latency (ms, log scale)", ylabel="requests", title="Search latency under load (histogram)")
    ax.legend()
    ax.grid(alpha=0.3)
    return _png(fig)


def _fmt(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.4g}"


def write_report(card: Scorecard, path: Path) -> Path:
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(p.name)}</td><td>{p.points:g} / {p.max_points:g}</td>"
        f"<td class='{'lost' if p.points < p.max_points else ''}'>{e(p.detail)}</td></tr>" for p in card.parts)
    ref = card.reference.get("metrics", {})
    names = sorted(set(card.metrics) | set(ref))
    metric_rows = "".join(
        f"<tr><td>{e(n)}</td><td>{_fmt(card.metrics.get(n))}</td><td>{_fmt(ref.get(n))}</td></tr>" for n in names)
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
<table><tr><th>metric</th><th>candidate</th><th>reference</th></tr>{metric_rows}</table>
{closing_sections(card)}
</body></html>"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
