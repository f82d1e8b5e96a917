"""What every lab's `grade()` does around grading one submission: the batch's order and progress, the
integrity findings, the hand-graded answers, the gradebook, and writing the scorecard and report.

A lab's grader measures and scores; `Batch.publish` then fills in what every scorecard carries, writes
`scorecard.json` and `report.html`, and (with `--course`) puts the grade into nbgrader's gradebook.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from graders.engine.integrity import Finding, batch_findings, flag_reference_access
from graders.engine.labconfig import LabConfig
from graders.engine.notebook import written_answers
from graders.engine.sandbox import take_refusals
from graders.engine.scorecard import PartResult, Scorecard

ReportWriter = Callable[[Scorecard, Path], Path]


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


@dataclass
class Batch:
    """One `ailab grade` run of a lab: (name, path) of each submission, graded in order."""

    lab: LabConfig
    subs: list[tuple[str, Path]]
    out: Path
    course: Path | None = None
    findings: dict[str, Finding] = field(default_factory=dict)
    private: bool = False  # an interviewer's --hidden overlay changed what is graded
    started: float = field(default_factory=time.monotonic)
    done: int = 0

    @classmethod
    def open(cls, lab: LabConfig, subs: Sequence[tuple[str, Path]], out: Path, course: Path | None = None) -> Batch:
        review_at = float(lab.raw.get("integrity", {}).get("similarity_review_at", 0.8))
        for name, _ in subs:  # nothing left over from an earlier batch in this process counts against these
            take_refusals(name)
        return cls(lab=lab, subs=list(subs), out=Path(out), course=course,
                   findings=batch_findings(subs, lab.notebook, review_at=review_at))

    def __iter__(self) -> Iterator[tuple[str, Path]]:
        """The submissions, with a progress line before each: position, elapsed time, time left."""
        for index, (name, path) in enumerate(self.subs, start=1):
            elapsed = time.monotonic() - self.started
            left = f", about {_clock(elapsed / self.done * (len(self.subs) - self.done))} left" if self.done else ""
            print(f"[{self.lab.name}] [{index}/{len(self.subs)}] grading {name} ({_clock(elapsed)} elapsed{left})",
                  file=sys.stderr, flush=True)
            yield name, path
            self.done += 1

    def complete(self, card: Scorecard, why_not: str) -> None:
        """Zero every auto-graded part the grader did not reach, add the hand-graded one, and total."""
        done = {p.name for p in card.parts}
        for part in self.lab.parts.values():
            if not part.manual and part.name not in done:
                card.add(part.name, 0, part.weight, f"Task {part.task}: not graded: {why_not or 'see errors'}")
        written = next(p for p in self.lab.parts.values() if p.manual)
        card.parts.append(PartResult(written.name, 0.0, 0.0,
                                     f"Task {written.task}: graded by hand in formgrader ({written.manual_points:g} "
                                     "points, not part of this score)"))
        card.total()

    def publish(self, card: Scorecard, path: Path, write_report: ReportWriter) -> Path:
        """Integrity findings (a submission that reached for the reference is zeroed) and written answers into
        the card, the gradebook (with a course), then scorecard.json and report.html under OUT/<name>/; returns
        the report's path."""
        self.add_findings(card)
        card.integrity.setdefault("tampered_cells", [])
        flag_reference_access(card, take_refusals(card.submission))
        card.extras["written"] = written_answers(path, self.lab.notebook)
        return self.store(card, write_report)

    def add_findings(self, card: Scorecard) -> None:
        """The batch's similarity findings for this submission (to the reference and to the others) into the card."""
        finding = self.findings.get(card.submission)
        if finding is not None:
            card.integrity.update(finding.to_json())

    def store(self, card: Scorecard, write_report: ReportWriter) -> Path:
        """The gradebook (with a course), then scorecard.json and report.html under OUT/<name>/; returns the
        report's path. (graders.engine.cluster stores cards that a Dask worker graded and published elsewhere.)"""
        if self.course is not None:
            self._to_gradebook(card)
        folder = self.out / card.slug
        card.write(folder)
        report = write_report(card, folder / "report.html")
        print(f"[{self.lab.name}] {card.submission}: {card.score:.1f}/100 in {card.duration_s:.0f} s", file=sys.stderr,
              flush=True)
        print(f"report: {report}", flush=True)
        return report

    def _to_gradebook(self, card: Scorecard) -> None:
        from graders import gradebook

        assert self.course is not None
        try:
            gradebook.push(self.course, self.lab, card.submission, card)
            card.extras["manual"] = gradebook.manual_grades(self.course, self.lab, card.submission)
        except Exception as exc:  # noqa: BLE001 - the grade stands in scorecard.json even when the gradebook fails
            card.errors.append(f"the grade could not be written into {self.course}/gradebook.db "
                               f"({type(exc).__name__}: {exc}); scorecard.json holds it")
