"""The closing sections every lab's report.html shares: errors and integrity findings, the environment,
and the interviewer's notes (the written answers beside their rubric, formgrader's manual grades, and a
box for the interviewer's own notes).
"""
from __future__ import annotations

import html
from typing import Any

from graders.engine.scorecard import Scorecard

SECTION_CSS = """.answer{white-space:pre-wrap;border-left:3px solid #48c;padding:4px 10px;background:#f6f9fc}
.rubric{white-space:pre-wrap;border-left:3px solid #aaa;padding:4px 10px;color:#444;font-size:.92em}
details{margin:.4em 0}textarea{width:100%;min-height:7em;font:inherit}"""


def _similarity_rows(integrity: dict[str, Any]) -> str:
    e = html.escape
    review = float(integrity.get("review_at", 0.8))
    rows = []
    ref = integrity.get("similarity_to_reference")
    if ref is not None:
        rows.append(("the reference solution", float(ref)))
    rows += [(f"submission {m['submission']}", float(m["similarity"])) for m in integrity.get("most_similar", [])]
    return "".join(f"<tr><td>{e(who)}</td><td class='{'warn' if s >= review else ''}'>{s:.0%}"
                   f"{' — review' if s >= review else ''}</td></tr>" for who, s in rows)


def integrity_section(card: Scorecard) -> str:
    e = html.escape
    errors = "".join(f"<li class='err'><pre style='white-space:pre-wrap;margin:0'>{e(x)}</pre></li>"
                     for x in card.errors) or "<li>none</li>"
    rows = _similarity_rows(card.integrity)
    similarity = (f"<p>Similarity of the solution code (winnowed token fingerprints, identifiers and layout "
                  f"ignored, the release notebook's scaffold removed) — a signal to look closer at or above "
                  f"{float(card.integrity.get('review_at', 0.8)):.0%}, never a verdict:</p>"
                  f"<table><tr><th>compared with</th><th>similarity</th></tr>{rows}</table>") if rows else (
                  "<p>Similarity: not enough solution code to compare.</p>")
    tampered = card.integrity.get("tampered_cells", [])
    tamper = (f"<p class='warn'>{len(tampered)} read-only cell(s) edited or deleted (listed above).</p>"
              if tampered else "<p>Read-only and test cells: none found edited or deleted.</p>")
    return f"<h2>Errors and integrity findings</h2><ul>{errors}</ul>{tamper}{similarity}"


def environment_section(card: Scorecard) -> str:
    e = html.escape
    env = "".join(f"<tr><td>{e(str(k))}</td><td>{e(str(v))}</td></tr>" for k, v in card.environment.items())
    return f"<h2>Environment</h2><table>{env}</table>"


def notes_section(card: Scorecard) -> str:
    """Each written answer with its question and rubric, formgrader's manual grade when known, a notes box."""
    e = html.escape
    manual = card.extras.get("manual", {})
    blocks = []
    for answer in card.extras.get("written", []):
        grade = manual.get(answer["id"], {})
        if grade.get("score") is not None:
            graded = f"<p><b>formgrader:</b> {grade['score']:g} / {grade['max_points']:g}</p>"
        else:
            graded = f"<p><b>formgrader:</b> not graded yet ({answer['points']:g} points, by hand)</p>"
        if grade.get("comment"):
            graded += f"<p><b>comment:</b> {e(str(grade['comment']))}</p>"
        blocks.append(
            f"<h3>{e(answer['id'])}</h3><details><summary>question</summary><div class='rubric'>"
            f"{e(answer['question'])}</div></details><p>the candidate's answer:</p>"
            f"<div class='answer'>{e(answer['answer'])}</div>{graded}<details><summary>rubric (the model answer)"
            f"</summary><div class='rubric'>{e(answer['rubric'])}</div></details>")
    written = "".join(blocks) or "<p>No written answers in this submission (a .py file, or an unreadable notebook).</p>"
    return (f"<h2>Interviewer notes</h2><p>Written answers are graded by hand in nbgrader's formgrader and are not "
            f"part of the score above; grade with <code>ailab grade … --course DIR</code> to see formgrader's "
            f"grades here.</p>{written}<h3>Rubric notes</h3>"
            f"<textarea placeholder='Your notes on this candidate (not saved by the page: print it or copy them "
            f"into formgrader)'></textarea>")


def closing_sections(card: Scorecard) -> str:
    return integrity_section(card) + environment_section(card) + notes_section(card)
