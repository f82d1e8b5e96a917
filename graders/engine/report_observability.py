"""report.html for the observability lab: the fault/page timeline, request latency, detection and conformance tables.

Plot data comes from `card.extras` (filled by `graders.observability.grade`): the injected faults,
the pages every detector raised, the scenario's request samples, the conformance checks and the
per-fault rows. Everything is optional: a submission that never answered still gets a report.
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.patches import Patch

from graders.engine.report import CSS, _fmt, _png, part_rows, plt
from graders.engine.report_sections import SECTION_CSS, closing_sections
from graders.engine.scorecard import Scorecard

FAULT, GRACE = "#4c72b0", "#a9bfe0"
RIGHT, WRONG, OUTSIDE = "#2ca02c", "#ff7f0e", "#d62728"


def _end(page: dict[str, Any], run_end: float) -> float:
    return run_end if page.get("end") is None else float(page["end"])


def reach_at(fault: dict[str, Any]) -> float:
    """Where a fault's window opens: the first tick collected after it was switched on (records.Fault)."""
    return float(fault["start"] if fault.get("reach_at") is None else fault["reach_at"])


def too_early(page: dict[str, Any], faults: list[dict[str, Any]]) -> bool:
    """The page started while a fault was being switched on, before any symptom could reach the detectors."""
    return any(f["start"] <= page["start"] < reach_at(f) for f in faults)


def page_colour(page: dict[str, Any], faults: list[dict[str, Any]], grace_s: float) -> str:
    """Green: started in a fault's window blaming its component; orange: in a window, wrong component; red: outside."""
    inside = [f for f in faults if reach_at(f) <= page["start"] <= f["end"] + grace_s]
    if not inside:
        return OUTSIDE
    return RIGHT if any(f["component"] == page["component"] for f in inside) else WRONG


def timeline(faults: list[dict[str, Any]], pages: list[dict[str, Any]], latency: list[list[Any]], run_end: float,
             grace_s: float, slo_ms: float | None) -> str:
    lanes = list(dict.fromkeys(f["name"] for f in sorted(faults, key=lambda f: f["start"])))
    detectors = list(dict.fromkeys(p["detector"] for p in sorted(pages, key=lambda p: p["start"])))
    rows = [f"fault: {n}" for n in lanes] + [f"detector: {d}" for d in detectors] or ["(no faults, no pages)"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 0.42 * len(rows) + 3.6), sharex=True,
                                      gridspec_kw={"height_ratios": [max(1.5, 0.42 * len(rows)), 2.6]})
    y = {name: len(rows) - 1 - i for i, name in enumerate(rows)}  # first row on top
    for f in faults:
        row = y[f"fault: {f['name']}"]
        top.broken_barh([(f["start"], f["end"] - f["start"])], (row - 0.35, 0.7), color=FAULT, alpha=0.85)
        top.broken_barh([(f["end"], grace_s)], (row - 0.35, 0.7), color=GRACE, alpha=0.85)
        top.text((f["start"] + f["end"]) / 2, row, f["component"], ha="center", va="center", fontsize=7, color="white")
        for ax in (top, bottom):
            ax.axvspan(f["start"], f["end"] + grace_s, color=FAULT, alpha=0.07, lw=0)
    label_pages = len(pages) <= 80
    for p in pages:
        row = y[f"detector: {p['detector']}"]
        width = max(0.4, _end(p, run_end) - p["start"])
        top.broken_barh([(p["start"], width)], (row - 0.3, 0.6), color=page_colour(p, faults, grace_s))
        if label_pages:
            top.text(p["start"], row + 0.33, p["component"], fontsize=6, va="bottom", clip_on=True)
    if not pages:
        top.text(run_end / 2 if run_end else 0.5, -0.9 if rows else 0, "no pages were raised", ha="center",
                 fontsize=9, color=OUTSIDE)
    top.set_yticks(list(y.values()), list(y.keys()), fontsize=8)
    top.set_ylim(-1.2 if not pages else -0.7, len(rows) - 0.3)
    top.set_title("Injected faults (window, then grace) and the pages each detector raised")
    top.legend(handles=[Patch(color=FAULT, label="fault on"), Patch(color=GRACE, label=f"grace ({grace_s:g} s)"),
                        Patch(color=RIGHT, label="page: right component"),
                        Patch(color=WRONG, label="page: in a window, wrong component"),
                        Patch(color=OUTSIDE, label="page: outside every window")],
               fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    top.grid(axis="x", alpha=0.3)
    latency_panel(bottom, latency, slo_ms)
    bottom.set_xlim(0, max(run_end, 1.0))
    img = _png(fig)
    return img.replace("<img ", '<img style="max-width:100%" ', 1)


def latency_panel(ax: Any, latency: list[list[Any]], slo_ms: float | None) -> None:
    ok = [(float(t), float(ms)) for t, ms, good, *_ in latency if good and ms > 0]
    bad = [(float(t), float(ms)) for t, ms, good, *_ in latency if not good]
    if ok:
        ax.scatter([t for t, _ in ok], [ms for _, ms in ok], s=3, color="grey", alpha=0.4, label="request")
        ts, ms = np.array([t for t, _ in ok]), np.array([m for _, m in ok])
        centres = np.arange(np.floor(ts.min()), np.ceil(ts.max()) + 1)
        p50 = [float(np.median(ms[np.abs(ts - c) <= 1.5])) if np.any(np.abs(ts - c) <= 1.5) else np.nan
               for c in centres]
        ax.plot(centres, p50, color="black", lw=1.2, label="p50 (3 s window)")
        ax.set_yscale("log")
    if bad:
        floor = min((ms for _, ms in ok), default=1.0)
        ax.scatter([t for t, _ in bad], [max(ms, floor) for _, ms in bad], s=14, marker="x", color=OUTSIDE,
                   label=f"failed ({len(bad)})")
    if slo_ms:
        ax.axhline(slo_ms, color=WRONG, lw=0.8, ls="--", label=f"SLO {slo_ms:g} ms")
    if not ok and not bad:
        ax.text(0.5, 0.5, "no request samples", transform=ax.transAxes, ha="center", va="center", color=OUTSIDE)
    ax.set(xlabel="seconds since the scenario started", ylabel="latency (ms)", title="Requests during the scenario")
    ax.grid(alpha=0.3)
    if ok or bad or slo_ms:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))


def _seconds(value: float | None, missing: str) -> str:
    return missing if value is None else f"{value:.1f} s"


def _yes(value: Any) -> str:
    return "yes" if value else "<span class='lost'>no</span>"


def write_observability_report(card: Scorecard, path: Path) -> Path:
    e = html.escape
    x = card.extras
    faults, pages = x.get("faults", []), x.get("pages", [])
    run_end = float(x.get("run_end") or max([f["end"] for f in faults] + [0.0]))
    grace_s = float(x.get("grace_s", 0.0))
    slo = card.environment.get("slo", {})
    slo_ms = float(slo["slo_latency_s"]) * 1000 if isinstance(slo, dict) and "slo_latency_s" in slo else None
    rows = part_rows(card)
    metric_rows = "".join(f"<tr><td>{e(n)}</td><td>{_fmt(v)}</td></tr>" for n, v in card.metrics.items())
    figure = timeline(faults, pages, x.get("latency", []), run_end, grace_s, slo_ms)
    fault_rows = "".join(
        f"<tr><td>{e(str(r['fault']))}</td><td>{e(str(r['component']))}</td>"
        f"<td>{r.get('start', 0):.0f}–{r.get('end', 0):.0f} s</td><td>{_yes(r['detected'])}</td>"
        f"<td>{_seconds(r.get('time_to_detect_s'), '')}</td>"
        f"<td>{e(str(r.get('blamed', '')))}</td><td>{_yes(r['correct']) if r['detected'] else ''}</td>"
        f"<td>{e(str(r.get('detector', '')))} {e(str(r.get('kind', '')))}</td></tr>"
        for r in x.get("per_fault", []))
    false = [p for p in pages if page_colour(p, faults, grace_s) == OUTSIDE]
    c = x.get("chance")
    chance = "" if not c else (
        f"<p>Precision against chance: the same page times score {c['precision']:.2f} on average on schedules drawn "
        f"blindly, and {c['luck_bar']:.2f} by luck (a random pager would hit a window {c['window_share']:.0%} of "
        f"the time). Recall, root cause and time to detect were counted at <b>{c['credit']:.0%}</b> of their points: "
        "in proportion to precision above the luck bar.</p>")
    false_rows = "".join(
        f"<tr><td>{e(str(p['detector']))}</td><td>{e(str(p['kind']))}</td><td>{e(str(p['component']))}</td>"
        f"<td>{_seconds(p['start'], '')}</td><td>{_seconds(p.get('end'), 'still firing')}</td>"
        f"<td>{'<b>too early</b>: before the fault could show in the telemetry. ' if too_early(p, faults) else ''}"
        f"{e(str(p.get('detail', '')))}</td></tr>" for p in false[:50])
    if len(false) > 50:
        false_rows += f"<tr><td colspan='6'>and {len(false) - 50} more</td></tr>"
    check_rows = "".join(
        f"<tr><td>{e(str(c['name']))}</td><td class='{'lost' if c['fraction'] < 1 else ''}'>{c['fraction']:.0%}</td>"
        f"<td>{e(str(c['detail']))}</td></tr>" for c in x.get("checks", []))
    seconds = x.get("detector_seconds", {})
    cost_rows = "".join(f"<tr><td>{e(str(n))}</td><td>{s:.2f} s</td></tr>" for n, s in seconds.items())
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{e(card.lab)}: {e(card.submission)}</title>
<style>{CSS}{SECTION_CSS}pre{{white-space:pre-wrap;margin:0}}</style></head><body>
<h1>{e(card.lab)} lab: {e(card.submission)}</h1>
<p class="score">{card.score:.1f} / 100</p><p>graded in {card.duration_s:.0f} s</p>
<h2>Parts</h2><table><tr><th>part</th><th>points</th><th>detail (why points were lost)</th></tr>{rows}</table>
<h2>Faults and pages</h2>
<p>A fault counts as detected when a page <em>starts</em> inside its window: from the first tick whose telemetry
was collected after the fault was switched on, to {grace_s:g} s after it ended. A page already firing when the fault
began does not count, and one that starts before the fault could show in the telemetry is a false page. Green pages
blamed the fault's component, orange ones another, red ones started outside every window (false pages).
Fault times and order were drawn for this run.</p>{chance}
<div>{figure}</div>
<table><tr><th>metric</th><th>value</th></tr>{metric_rows}</table>
<h2>Detection per fault</h2>
<table><tr><th>fault</th><th>component</th><th>window</th><th>detected</th><th>time to detect</th><th>blamed</th>
<th>correct</th><th>first page</th></tr>{fault_rows or "<tr><td colspan='8'>no scenario was run</td></tr>"}</table>
<h2>False pages ({len(false)})</h2>
<table><tr><th>detector</th><th>kind</th><th>component</th><th>start</th><th>end</th><th>detail</th></tr>
{false_rows or "<tr><td colspan='6'>none</td></tr>"}</table>
<h2>Telemetry conformance (Task 1)</h2>
<table><tr><th>check</th><th>passed</th><th>detail</th></tr>{check_rows or "<tr><td colspan='3'>not checked</td></tr>"}</table>
<h2>Detector cost</h2><p>Total time spent in observe() over the scenario.</p>
<table><tr><th>detector</th><th>time</th></tr>{cost_rows or "<tr><td colspan='2'>no detectors ran</td></tr>"}</table>
{closing_sections(card)}
</body></html>"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
