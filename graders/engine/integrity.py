"""Integrity signals for a batch: how alike the submissions' solution code is, to each other and to the
reference solution (a similarity score for a person to look at, never a verdict), and whether a submission
reached for the reference implementation itself (refused by graders.engine.guard: a flag that zeroes the grade).

Fingerprints follow MOSS's winnowing (Schleimer, Wilkerson and Aiken, SIGMOD 2003) over Python tokens
with identifiers, literals, comments and layout normalised away, so renaming variables or reformatting
does not hide a copy. What the release notebook hands every candidate (signatures, docstrings, the
cells around the solutions) is subtracted first, so the shared scaffold never counts as similarity.
Similarity of two submissions is the share of the smaller one's fingerprints found in the other.
"""
from __future__ import annotations

import hashlib
import io
import keyword
import re
import tokenize
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graders.engine.notebook import read_notebook
from graders.engine.scorecard import Scorecard

KGRAM = 5         # tokens per fingerprinted k-gram
WINDOW = 4        # winnowing window: any shared run of KGRAM + WINDOW - 1 tokens is always caught
MIN_PRINTS = 15   # fewer fingerprints than this (a stub, an empty notebook): no similarity is claimed
_SOLUTION = re.compile(r"### BEGIN SOLUTION.*?### END SOLUTION", re.DOTALL)
REFERENCE_ACCESS = "reference_access"  # scorecard integrity key: what the guard refused the submission


@dataclass
class Finding:
    """One submission's integrity signals, as written into its scorecard."""

    similarity_to_reference: float | None = None
    most_similar: list[tuple[str, float]] = field(default_factory=list)  # (other submission, similarity)
    review_at: float = 0.8

    def to_json(self) -> dict[str, Any]:
        return {"similarity_to_reference": self.similarity_to_reference,
                "most_similar": [{"submission": n, "similarity": s} for n, s in self.most_similar],
                "review_at": self.review_at}

    def notes(self) -> list[str]:
        """Plain-words lines for the report, only for similarities at or above `review_at`."""
        lines = []
        if self.similarity_to_reference is not None and self.similarity_to_reference >= self.review_at:
            lines.append(f"solution code is {self.similarity_to_reference:.0%} similar to the reference solution "
                         "(a signal to review, not a verdict)")
        for other, score in self.most_similar:
            if score >= self.review_at:
                lines.append(f"solution code is {score:.0%} similar to submission {other!r} "
                             "(a signal to review, not a verdict)")
        return lines


def _tokens(code: str) -> list[str]:
    """Python tokens with names, numbers and strings replaced by their kind; comments and layout dropped."""
    out: list[str] = []
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
            tokenize.ENCODING, tokenize.ENDMARKER}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if tok.type in skip:
                continue
            if tok.type == tokenize.NAME:
                out.append(tok.string if keyword.iskeyword(tok.string) else "V")
            elif tok.type == tokenize.NUMBER:
                out.append("0")
            elif tok.type == tokenize.STRING:
                out.append("S")
            else:
                out.append(tok.string)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass  # a half-written cell: the tokens read so far still count
    return out


def fingerprints(code: str) -> set[int]:
    """Winnowed hashes of the code's token k-grams."""
    tokens = _tokens(code)
    hashes = [int.from_bytes(hashlib.blake2b(" ".join(tokens[i:i + KGRAM]).encode(), digest_size=8).digest(), "big")
              for i in range(len(tokens) - KGRAM + 1)]
    if len(hashes) <= WINDOW:
        return set(hashes)
    return {min(hashes[i:i + WINDOW]) for i in range(len(hashes) - WINDOW + 1)}


def solution_code(path: Path) -> str:
    """What a submission wrote: its nbgrader solution cells (every non-test code cell of a notebook
    without nbgrader metadata; a .py file as it is). Unreadable files give ''."""
    if path.suffix == ".py":
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return ""
    nb, _ = read_notebook(path)
    if nb is None:
        return ""
    cells = [c for c in nb["cells"] if isinstance(c, dict) and c.get("cell_type") == "code"]
    marked = [c for c in cells if c.get("metadata", {}).get("nbgrader", {}).get("solution")]
    chosen = marked or [c for c in cells if not c.get("metadata", {}).get("nbgrader", {}).get("grade")]
    return "\n".join("".join(s) if isinstance(s := c.get("source", ""), list) else str(s) for c in chosen)


def scaffold_and_reference(source_notebook: Path) -> tuple[str, str]:
    """(what the release hands out around the solutions, the reference solution) of a lab's source notebook."""
    full = solution_code(source_notebook)
    return _SOLUTION.sub("", full), full


def similarity(a: set[int], b: set[int]) -> float | None:
    if min(len(a), len(b)) < MIN_PRINTS:
        return None
    return round(len(a & b) / min(len(a), len(b)), 3)


def batch_findings(subs: Sequence[tuple[str, Path]], source_notebook: Path | None, review_at: float = 0.8,
                   closest: int = 3) -> dict[str, Finding]:
    """Every submission's similarity to the reference solution and its `closest` most similar peers."""
    base: set[int] = set()
    ref: set[int] = set()
    if source_notebook is not None and source_notebook.exists():
        scaffold, reference = scaffold_and_reference(source_notebook)
        base = fingerprints(scaffold)
        ref = fingerprints(reference) - base
    prints = {name: fingerprints(solution_code(path)) - base for name, path in subs}
    findings = {}
    for name, mine in prints.items():
        peers = [(other, s) for other, theirs in prints.items()
                 if other != name and (s := similarity(mine, theirs)) is not None]
        peers.sort(key=lambda p: (-p[1], p[0]))
        findings[name] = Finding(similarity_to_reference=similarity(mine, ref) if name != "reference" else None,
                                 most_similar=peers[:closest], review_at=review_at)
    return findings


def flag_reference_access(card: Scorecard, refusals: Sequence[str]) -> None:
    """Write what the guard refused the submission's processes into `card.integrity` ([] when nothing) and,
    if anything, zero every part: the work can no longer be taken for the candidate's own, and the attempt is
    the interviewer's to judge. The flag leads the errors, so the summary table's outcome shows it."""
    card.integrity[REFERENCE_ACCESS] = list(refusals)
    if not refusals:
        return
    for part in card.parts:
        if part.max_points > 0:
            part.points = 0.0
            part.detail = f"zeroed: the submission reached for the reference implementation; measured: {part.detail}"
    more = f" (and {len(refusals) - 1} more attempt(s), in integrity.{REFERENCE_ACCESS})" if len(refusals) > 1 else ""
    card.errors.insert(0, f"integrity: {refusals[0]}{more} — every part is zeroed")
    card.total()
