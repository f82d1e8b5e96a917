"""`ailab leaderboard DIR`: a workshop leaderboard built from the scorecard.json files under DIR.

`write_leaderboard` renders DIR/leaderboard.html: a self-contained page with one table per lab
(rank, submission, score, points per part, key metrics, a link to each report.html), an overall
table (a person's mean over the labs they did) and plots inlined as PNG. `serve` serves DIR on
127.0.0.1, rebuilds the page whenever a scorecard appears or changes, and the page reloads itself.
"""
from __future__ import annotations

import hashlib
import html
import json
import signal
import sys
import threading
import time
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from matplotlib.ticker import MaxNLocator

from graders.engine.report import CSS, _png, plt

PAGE = "leaderboard.html"
VERSION_PATH = "/__version"
REFERENCE = "reference"  # `ailab grade LAB reference`: shown for comparison, never ranked
KEY_METRICS = {
    "rag": ("ndcg@10", "recall@100", "latency_p95_ms", "throughput_qps"),
    "serving": ("goodput_rps", "ttft_p95_ms", "tpot_p50_ms", "output_tokens_per_s"),
}
MAX_METRICS = 4
EXTRA_CSS = """body{max-width:1280px}td.num{text-align:right}tr.ref td{color:#666;font-style:italic}
.scroll{overflow-x:auto}th{font-size:.85em;vertical-align:bottom}.plots img{max-width:600px;vertical-align:top}
.meta{color:#666;font-size:.9em}"""
# Reload only when the server says the page changed, so a reader's scroll position survives idle polls.
RELOAD_JS = """<script>(function(){if(!location.protocol.startsWith("http"))return;
var v=document.documentElement.dataset.version;setInterval(function(){
fetch("%s",{cache:"no-store"}).then(function(r){return r.ok?r.text():v}).then(function(t){
if(t.trim()!==v)location.reload()}).catch(function(){})},2000)})();</script>""" % VERSION_PATH


@dataclass
class Entry:
    """One scorecard found under the leaderboard folder."""

    lab: str
    submission: str
    score: float
    parts: list[dict[str, Any]]
    metrics: dict[str, float]
    errors: list[str]
    report: str | None  # link relative to the leaderboard folder
    mtime: float


def scorecard_paths(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("scorecard.json") if p.is_file())


def fingerprint(root: Path) -> str:
    """A short hash of every scorecard's path, size and mtime (and whether its report exists yet)."""
    items = []
    for path in scorecard_paths(root):
        try:
            st = path.stat()
        except FileNotFoundError:  # replaced between the listing and the stat
            continue
        items.append(f"{path.relative_to(root)}:{st.st_mtime_ns}:{st.st_size}:{(path.parent / 'report.html').exists()}")
    return hashlib.sha1("\n".join(items).encode()).hexdigest()[:12]


def load_entries(root: Path) -> tuple[list[Entry], list[str]]:
    """The newest scorecard per (lab, submission), and a note for each file that could not be read."""
    found: dict[tuple[str, str], Entry] = {}
    problems = []
    for path in scorecard_paths(root):
        rel = path.relative_to(root)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            report = path.parent / "report.html"
            entry = Entry(lab=str(data["lab"]), submission=str(data["submission"]), score=float(data["score"]),
                          parts=list(data.get("parts", [])), metrics=dict(data.get("metrics", {})),
                          errors=list(data.get("errors", [])),
                          report=report.relative_to(root).as_posix() if report.exists() else None,
                          mtime=path.stat().st_mtime)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            problems.append(f"{rel}: {type(exc).__name__}: {exc}")
            continue
        key = (entry.lab, entry.submission)
        if key not in found or entry.mtime >= found[key].mtime:
            found[key] = entry
    return list(found.values()), problems


def ranked(entries: list[Entry]) -> list[tuple[int | None, Entry]]:
    """Entries best first with competition ranks (1, 2, 2, 4); the reference gets no rank."""
    people = sorted((e for e in entries if e.submission != REFERENCE), key=lambda e: (-e.score, e.submission))
    out: list[tuple[int | None, Entry]] = []
    for i, e in enumerate(people):
        rank = out[-1][0] if out and out[-1][1].score == e.score else i + 1
        out.append((rank, e))
    out += [(None, e) for e in entries if e.submission == REFERENCE]
    return out


def part_columns(entries: list[Entry]) -> list[tuple[str, float]]:
    """(part, max points) in first-seen order; parts worth nothing here (hand-graded) are left out."""
    cols: dict[str, float] = {}
    for e in entries:
        for p in e.parts:
            cols[p["name"]] = max(cols.get(p["name"], 0.0), float(p.get("max_points", 0.0)))
    return [(name, mx) for name, mx in cols.items() if mx > 0]


def metric_columns(lab: str, entries: list[Entry]) -> list[str]:
    seen = [m for e in entries for m in e.metrics]
    preferred = [m for m in KEY_METRICS.get(lab, ()) if m in seen]
    return preferred or list(dict.fromkeys(seen))[:MAX_METRICS]


def overall(entries: list[Entry]) -> list[tuple[int, str, dict[str, float], float]]:
    """(rank, person, score per lab, mean over the labs that person did), best mean first."""
    by_person: dict[str, dict[str, float]] = {}
    for e in entries:
        if e.submission != REFERENCE:
            by_person.setdefault(e.submission, {})[e.lab] = e.score
    rows = sorted(((p, s, sum(s.values()) / len(s)) for p, s in by_person.items()), key=lambda r: (-r[2], r[0]))
    out: list[tuple[int, str, dict[str, float], float]] = []
    for i, (person, scores, mean) in enumerate(rows):
        rank = out[-1][0] if out and round(out[-1][3], 6) == round(mean, 6) else i + 1
        out.append((rank, person, scores, mean))
    return out


def _part_points(e: Entry, name: str) -> float | None:
    return next((float(p["points"]) for p in e.parts if p["name"] == name), None)


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.4g}"


def distribution_plot(lab: str, entries: list[Entry]) -> str:
    scores = [e.score for e in entries if e.submission != REFERENCE]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.hist(scores, bins=list(range(0, 101, 10)), color="#4a7bb7", edgecolor="white")
    ref = next((e.score for e in entries if e.submission == REFERENCE), None)
    if ref is not None:
        ax.axvline(ref, color="#a00", ls="--", label=f"reference ({ref:g})")
        ax.legend(loc="upper left")
    ax.set(xlim=(0, 102), xlabel="score", ylabel="submissions", title=f"{lab}: score distribution (n={len(scores)})")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    return _png(fig)


def parts_plot(lab: str, rows: list[tuple[int | None, Entry]], parts: list[tuple[str, float]]) -> str:
    names = [e.submission for _, e in rows][::-1]  # best at the top
    fig, ax = plt.subplots(figsize=(6, max(2.4, 0.32 * len(names) + 1.2)))
    left = [0.0] * len(names)
    for name, _ in parts:
        points = [_part_points(e, name) or 0.0 for _, e in rows][::-1]
        ax.barh(names, points, left=left, label=name)
        left = [a + b for a, b in zip(left, points)]
    ax.set(xlim=(0, 100), xlabel="points", title=f"{lab}: points per part")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def overall_plot(rows: list[tuple[int, str, dict[str, float], float]]) -> str:
    names = [r[1] for r in rows][::-1]
    fig, ax = plt.subplots(figsize=(6, max(2.4, 0.32 * len(names) + 1.2)))
    ax.barh(names, [r[3] for r in rows][::-1], color="#4a7bb7")
    ax.set(xlim=(0, 100), xlabel="mean score over the labs done", title="Overall")
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def lab_section(lab: str, entries: list[Entry]) -> str:
    e = html.escape
    rows = ranked(entries)
    parts = part_columns(entries)
    metrics = metric_columns(lab, entries)
    head = "".join(f"<th>{e(n).replace('_', '_<wbr>')}<br><small>/ {m:g}</small></th>" for n, m in parts)
    head += "".join(f"<th>{e(m).replace('_', '_<wbr>')}</th>" for m in metrics)
    body = []
    for rank, x in rows:
        link = f"<a href='{e(x.report)}'>report</a>" if x.report else "–"
        cells = "".join(f"<td class='num'>{_num(_part_points(x, n))}</td>" for n, _ in parts)
        cells += "".join(f"<td class='num'>{_num(x.metrics.get(m))}</td>" for m in metrics)
        flag = f" <span class='err' title='{e(x.errors[0])}'>({len(x.errors)} error{'s' * (len(x.errors) > 1)})</span>" \
            if x.errors else ""
        body.append(f"<tr class='{'ref' if rank is None else 'row'}' data-lab='{e(lab)}' data-submission='{e(x.submission)}'>"
                    f"<td>{rank if rank is not None else 'ref'}</td><td>{e(x.submission)}{flag}</td>"
                    f"<td class='num score-cell'>{x.score:g}</td>{cells}<td>{link}</td></tr>")
    plots = distribution_plot(lab, entries)
    if parts:
        plots += parts_plot(lab, rows, parts)
    return (f"<h2 id='lab-{e(lab)}'>{e(lab)}</h2><div class='scroll'><table class='lab' data-lab='{e(lab)}'>"
            f"<tr><th>rank</th><th>submission</th><th>score</th>{head}<th>report</th></tr>{''.join(body)}</table></div>"
            f"<div class='plots'>{plots}</div>")


def render(root: Path, version: str) -> str:
    """The whole page for the scorecards under `root`, stamped with `version` for the reload check."""
    e = html.escape
    entries, problems = load_entries(root)
    labs = sorted({x.lab for x in entries})
    sections = "".join(lab_section(lab, [x for x in entries if x.lab == lab]) for lab in labs)
    rows = overall(entries)
    if rows:
        head = "".join(f"<th>{e(lab)}</th>" for lab in labs)
        body = "".join(
            f"<tr class='row' data-submission='{e(person)}'><td>{rank}</td><td>{e(person)}</td>"
            + "".join(f"<td class='num'>{_num(scores.get(lab))}</td>" for lab in labs)
            + f"<td class='num'>{len(scores)}</td><td class='num score-cell'>{mean:.1f}</td></tr>"
            for rank, person, scores, mean in rows)
        overall_html = (f"<table class='overall'><tr><th>rank</th><th>person</th>{head}<th>labs done</th>"
                        f"<th>mean</th></tr>{body}</table><div class='plots'>{overall_plot(rows)}</div>")
    else:
        overall_html = "<p>No graded submissions yet.</p>"
    notes = "".join(f"<li class='err'>{e(p)}</li>" for p in problems)
    people = len({x.submission for x in entries if x.submission != REFERENCE})
    return f"""<!doctype html><html data-version="{e(version)}"><head><meta charset="utf-8">
<title>ailab leaderboard</title><style>{CSS}{EXTRA_CSS}</style></head><body>
<h1>ailab leaderboard</h1>
<p class="meta">{len(entries)} scorecards, {people} people, {len(labs)} labs; built {time.strftime('%Y-%m-%d %H:%M:%S')}.
Scores are relative to the reference system graded on the same machine; the reference row is not ranked.</p>
<h2>Overall</h2>{overall_html}{sections}{f'<h2>Unreadable scorecards</h2><ul>{notes}</ul>' if notes else ''}
{RELOAD_JS}</body></html>"""


def write_leaderboard(root: Path, version: str | None = None) -> Path:
    """Write ROOT/leaderboard.html (atomically: a reader never sees half a page) and return its path."""
    root = Path(root)
    path = root / PAGE
    tmp = root / f".{PAGE}.tmp"
    tmp.write_text(render(root, version or fingerprint(root)), encoding="utf-8")
    tmp.replace(path)
    return path


class _Handler(SimpleHTTPRequestHandler):
    """Serves the leaderboard folder, plus the version the page polls; never caches."""

    timeout = 10  # a stalled client cannot hold a thread forever

    def do_GET(self) -> None:  # noqa: N802 -- http.server's naming
        if self.path.split("?")[0] == VERSION_PATH:
            data = self.server.version.encode()  # type: ignore[attr-defined]
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if self.path.split("?")[0] == "/":
            self.send_response(302)
            self.send_header("Location", f"/{PAGE}")
            self.end_headers()
            return
        super().do_GET()

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 -- http.server's signature
        pass  # the page polls every 2 s; logging each poll would drown the terminal


def serve(root: Path, port: int = 8000, poll_s: float = 2.0, duration_s: float | None = None,
          stop: threading.Event | None = None) -> int:
    """Serve ROOT on 127.0.0.1:PORT (0 picks a free port), rebuilding the page when scorecards change.

    Runs until Ctrl-C, SIGTERM, `stop` being set, or `duration_s` seconds."""
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    stop = stop or threading.Event()
    version = fingerprint(root)
    write_leaderboard(root, version)
    server = ThreadingHTTPServer(("127.0.0.1", port), partial(_Handler, directory=str(root)))
    server.daemon_threads = True
    server.version = version  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5}, daemon=True)
    thread.start()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    host, bound = server.server_address[:2]
    print(f"serving http://{host!s}:{bound}/{PAGE} (folder {root}); Ctrl-C stops", flush=True)
    deadline = time.monotonic() + duration_s if duration_s else None
    try:
        while not stop.wait(poll_s):
            if deadline is not None and time.monotonic() >= deadline:
                break
            current = fingerprint(root)
            if current != version:
                try:
                    write_leaderboard(root, current)
                except Exception as exc:  # noqa: BLE001 -- a bad scorecard must not take the board down
                    print(f"[leaderboard] rebuild failed: {exc}", file=sys.stderr, flush=True)
                    continue
                version = server.version = current  # type: ignore[attr-defined]
                print(f"[leaderboard] rebuilt ({len(scorecard_paths(root))} scorecards)", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        server.server_close()
    return 0


def main_static(root: Path) -> Path:
    """Write the page once; ROOT must exist."""
    if not Path(root).is_dir():
        raise SystemExit(f"{root} is not a folder; pass the --out folder of `ailab grade`")
    path = write_leaderboard(Path(root))
    print(f"leaderboard: {path} ({len(scorecard_paths(Path(root)))} scorecards)")
    return path
