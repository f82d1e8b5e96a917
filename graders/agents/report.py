"""report.html for the agents lab: parts, candidate vs reference figures, every policy violation with its
conversation, the tasks that failed and why, and the turn-latency distributions.

Data comes from `card.extras` (graders.agents.grade): the candidate's and the reference's runs and the violations.
"""
from __future__ import annotations

import html
from pathlib import Path

from graders.engine.report import CSS, latency_histogram, metric_rows, part_rows
from graders.engine.report_sections import SECTION_CSS, closing_sections
from graders.engine.scorecard import Scorecard


def write_agents_report(card: Scorecard, path: Path) -> Path:
    e, x = html.escape, card.extras
    rows = part_rows(card, mark_lost=False)
    metrics_table = metric_rows(card)
    violations = "".join(f"<li>{e(v)}</li>" for v in x.get("violations", [])) or "<li>none</li>"
    runs = x.get("runs", [])
    failed = "".join(f"<tr><td>{e(r['task'])}</td><td>{r['rep'] + 1}</td><td>{e('; '.join(r['why']))}</td>"
                     f"<td>{e(r['error'][:300])}</td></tr>" for r in runs if not r["ok"])
    cand_ms = [r["seconds"] * 1e3 for r in runs if r["ok"]]
    ref_ms = [r["seconds"] * 1e3 for r in x.get("ref_runs", []) if r["ok"]]
    plot = latency_histogram(cand_ms, ref_ms) if cand_ms or ref_ms else ""
    env = card.environment
    model = (f"The policy model was {env.get('model')!r} at {env['model_url']} (--model-url), for both: a real model, "
             "so the figures are not deterministic and its misbehaviour is its own." if env.get("model_url") else
             "The policy model is a scripted stand-in that misbehaves at the rates in labs/agents/lab.toml.")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{e(card.lab)}: {e(card.submission)}</title>
<style>{CSS}{SECTION_CSS}</style></head><body>
<h1>{e(card.lab)} lab: {e(card.submission)}</h1>
<p class="score">{card.score:.1f} / 100</p>
<h2>Parts</h2><table><tr><th>part</th><th>points</th><th>detail (why points were lost)</th></tr>{rows}</table>
<h2>Policy violations (the desk's audit of every write and message)</h2><ul>{violations}</ul>
<h2>Candidate vs reference</h2>
<p>Both ran the same tasks under the same fault seeds in the same run, alternating per repetition. {e(model)}</p>
<table><tr><th>metric</th><th>candidate</th><th>reference</th></tr>{metrics_table}</table>
<h2>Turn latency (resolved conversations)</h2><div>{plot}</div>
<h2>Conversations that did not end right</h2>
<table><tr><th>task</th><th>run</th><th>end state</th><th>agent error</th></tr>{failed or '<tr><td colspan=4>none</td></tr>'}</table>
{closing_sections(card)}
</body></html>"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page)
    return path
