"""Private overlays: `--hidden DIR` puts an interviewer's own hidden set and hidden tests over a lab's
shipped ones, so a public repository reveals nothing of a real interview.

    DIR/<lab>/lab.toml            merged over labs/<lab>/lab.toml, table by table: private seeds for the
                                  serving workload and the observability fault schedule, other rates,
                                  limits or SLOs
    DIR/rag/queries.jsonl         the hidden split the RAG grade is measured on (BEIR format), over the
    DIR/rag/qrels.tsv             lab's corpus: `query-id<TAB>corpus-id<TAB>score`
    DIR/rag/checks.py             the RAG unit parts' hidden checks: a function per part (see graders.rag.checks.Candidate)
    DIR/<lab>/nbgrader/<id>.py    the hidden block of nbgrader test cell <id> (`ailab course init --hidden`)

Everything here is read by the grader's own process only: workers never receive a path or a byte of it,
and as root they run as other users, so a folder of mode 0700 is unreadable to them.
"""
from __future__ import annotations

import importlib.util
import os
import stat
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

KNOWN = {"lab.toml", "queries.jsonl", "qrels.tsv", "checks.py", "nbgrader"}


class HiddenError(ValueError):
    """An overlay folder that cannot be used as it is; the message says what to change."""


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` merged into a copy of `base`: tables recursively, every other value replaced."""
    out = dict(base)
    for key, value in over.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@dataclass(frozen=True)
class Overlay:
    """One lab's part of a `--hidden` folder."""

    root: Path  # DIR/<lab>
    lab: str

    def lab_toml(self) -> dict[str, Any]:
        path = self.root / "lab.toml"
        if not path.exists():
            return {}
        try:
            return tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise HiddenError(f"{path}: not valid TOML ({exc})") from None

    def has_split(self) -> bool:
        return (self.root / "queries.jsonl").exists() or (self.root / "qrels.tsv").exists()

    def split(self, doc_ids: set[str]) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
        """(queries, qrels) of the private hidden split; every judged document must be in the corpus."""
        from graders.datasets.beir import read_jsonl, read_qrels

        for name in ("queries.jsonl", "qrels.tsv"):
            if not (self.root / name).exists():
                raise HiddenError(f"{self.root} has a hidden split without {name}; a split needs queries.jsonl "
                                  "({\"_id\": ..., \"text\": ...} per line) and qrels.tsv (query-id, corpus-id, score)")
        rows = read_jsonl(self.root / "queries.jsonl")
        if any("_id" not in r or not str(r.get("text", "")).strip() for r in rows):
            raise HiddenError(f"{self.root / 'queries.jsonl'}: every line needs an \"_id\" and a non-empty \"text\"")
        queries = {str(r["_id"]): str(r["text"]) for r in rows}
        qrels = read_qrels(self.root / "qrels.tsv")
        unknown_q = sorted(set(qrels) - set(queries))
        unknown_d = sorted({d for rel in qrels.values() for d in rel} - doc_ids)
        if unknown_q:
            raise HiddenError(f"{self.root / 'qrels.tsv'} judges queries missing from queries.jsonl: {unknown_q[:5]}")
        if unknown_d:
            raise HiddenError(f"{self.root / 'qrels.tsv'} judges documents that are not in the corpus: {unknown_d[:5]}; "
                              "a hidden split is over the lab's corpus (use --dataset for a corpus of your own)")
        judged = {q: rel for q, rel in qrels.items() if any(g > 0 for g in rel.values())}
        if not judged:
            raise HiddenError(f"{self.root / 'qrels.tsv'} has no relevant (score > 0) judgements")
        return {q: queries[q] for q in judged}, judged

    def checks(self) -> ModuleType | None:
        """The interviewer's checks.py, imported in the grader's process (it is trusted code), or None."""
        path = self.root / "checks.py"
        if not path.exists():
            return None
        spec = importlib.util.spec_from_file_location(f"ailab_hidden_checks_{self.lab}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001 - the interviewer's file: say where it broke
            raise HiddenError(f"{path} failed to import: {type(exc).__name__}: {exc}") from None
        return module

    def nbgrader_tests(self) -> dict[str, str]:
        """grade_id -> the hidden-test code that replaces that cell's BEGIN/END HIDDEN TESTS block."""
        folder = self.root / "nbgrader"
        return {p.stem: p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.py"))} if folder.is_dir() else {}


def open_overlay(folder: str | Path | None, lab: str) -> Overlay | None:
    """The lab's overlay in `folder` (None when no folder is given); HiddenError when it cannot be used."""
    if folder is None:
        return None
    top = Path(folder).expanduser().resolve()
    if not top.is_dir():
        raise HiddenError(f"--hidden {folder}: not a folder; make one with a subfolder per lab, e.g. {folder}/{lab}/")
    root = top / lab
    if not root.is_dir():
        raise HiddenError(f"--hidden {folder} has no {lab}/ subfolder; put this lab's hidden set in {root}")
    unknown = sorted(p.name for p in root.iterdir() if p.name not in KNOWN and not p.name.startswith("."))
    if unknown:
        raise HiddenError(f"{root} holds files the grader does not know: {unknown}; expected some of {sorted(KNOWN)}")
    _warn_if_readable(top)
    return Overlay(root=root, lab=lab)


def write_lab_toml(folder: Path, lab: str, text: str) -> None:
    """Write `text` as FOLDER/<lab>/lab.toml, the private lab.toml that `--hidden FOLDER` merges over the lab's
    (a seed, a rate). FOLDER's mode is the caller's to set (docs/interviewing.md asks for 0700)."""
    (folder / lab).mkdir(parents=True, exist_ok=True)
    (folder / lab / "lab.toml").write_text(text, encoding="utf-8")


def _warn_if_readable(top: Path) -> None:
    """Say when sandboxed submissions could read the overlay: it is private only to other users."""
    if os.geteuid() != 0:
        print(f"[hidden] warning: not running as root, so submissions run as your own user and could read {top}; "
              "grade as root (each submission gets its own user) or in a container (docs/threat-model.md)",
              file=sys.stderr, flush=True)
    elif (mode := top.stat().st_mode) & (stat.S_IROTH | stat.S_IXOTH):
        print(f"[hidden] warning: other users can enter {top} (mode {stat.S_IMODE(mode):o}); "
              f"`chmod 700 {top}` keeps sandboxed submissions out of it", file=sys.stderr, flush=True)
