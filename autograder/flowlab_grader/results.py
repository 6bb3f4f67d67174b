"""One submission's result on disk: written the moment it is graded, read back to resume a batch.

    RESULTS/submissions/<student>/<assignment>/result.json     the row of grades.csv, the cell
                                                                scores, the fingerprint, the run stamp
    RESULTS/feedback/<student>/<assignment>/<assignment>.html   the student's feedback page

Every file is written atomically (a temporary file in the same folder, flushed to disk, then
``os.replace``), feedback first and ``result.json`` last, so a batch that is interrupted or
killed leaves each submission either done (both files whole) or not done (no result), never half
written. ``grades.csv``, the gradebook and the summary are rebuilt from these files.

A result is kept, and its submission not run again, while its fingerprint is unchanged: the
SHA-256 of the notebook as graded (saved outputs dropped, so re-saved figures change nothing), of
the assignment's grading files (hidden references and their metadata, cases, source notebook:
points and hidden test cells) and the grader's version (``flowlab-grader`` and ``flowlab``
versions and ``RESULT_FORMAT``). ``flowlab grade --force`` grades everything again.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

from flowlab_grader import feedback
from flowlab_grader.course import Assignment
from flowlab_grader.scoring import CaseResult, CellScore
from flowlab_grader.submissions import Submission

RESULT_FORMAT = 2           # bump when result.json changes meaning: older results are graded again
RESULTS_FOLDER = "submissions"
FEEDBACK_FOLDER = "feedback"


@dataclass
class Result:
    """How one submission was graded: one row of ``grades.csv`` and the scores behind it."""
    student: str
    assignment: str
    status: str
    reason: str = ""
    cells: list[CellScore] = field(default_factory=list)
    seconds: float = 0.0
    manual: dict[str, float] = field(default_factory=dict)     # answer cells left to people: {grade_id: points}

    @property
    def auto_score(self) -> float:
        return round(sum(cell.score for cell in self.cells), 3)

    @property
    def auto_max(self) -> float:
        return round(sum(cell.points for cell in self.cells), 3)

    @property
    def manual_max(self) -> float:
        return round(sum(self.manual.values()), 3)

    @property
    def score(self) -> float:
        """Points given so far: the automatic ones (the written answers are still pending)."""
        return self.auto_score

    @property
    def max_score(self) -> float:
        """The assignment's points: hidden tests and written answers."""
        return round(self.auto_max + self.manual_max, 3)

    def row(self) -> dict[str, str]:
        """The row of ``grades.csv`` (its columns: ``manual.COLUMNS``)."""
        return {"student": self.student, "assignment": self.assignment, "score": f"{self.score:g}",
                "max_score": f"{self.max_score:g}", "status": self.status, "reason": self.reason,
                "auto_score": f"{self.auto_score:g}", "auto_max": f"{self.auto_max:g}", "manual_score": "",
                "manual_max": f"{self.manual_max:g}", "manual_status": "pending" if self.manual else "none"}


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` in one step: a reader (or a crash) sees the old file or the
    new one, whole. The temporary file lives in the same folder, so ``os.replace`` is a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@functools.lru_cache(maxsize=1)
def grader_version() -> str:
    """``flowlab-grader <version>, flowlab <version>, result format <n>``: a change grades everything again."""
    def version(distribution: str) -> str:
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            return "unknown"
    return f"flowlab-grader {version('flowlab-grader')}, flowlab {version('flowlab')}, result format {RESULT_FORMAT}"


def _digest(parts: list[tuple[str, bytes | None]]) -> str:
    hasher = hashlib.sha256()
    for name, data in parts:
        hasher.update(f"{name}\0{-1 if data is None else len(data)}\0".encode())
        hasher.update(data or b"")
    return hasher.hexdigest()


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def references_digest(assignment: Assignment | None) -> str:
    """SHA-256 of what grades ``assignment`` besides the grader: the hidden references (``.npz``,
    ``.json``), the cases file and the source notebook; ``""`` for an unknown assignment."""
    if assignment is None:
        return ""
    files = [assignment.references_file, assignment.references_file.with_suffix(".json"), assignment.cases_file,
             assignment.source_notebook]
    return _digest([(path.name, _read_or_none(path)) for path in files])


def notebook_digest(submission: Submission) -> str:
    """SHA-256 of the notebook as graded, or of why there is none (a submission that cannot be
    graded is 'graded' again only when the reason changes)."""
    if submission.notebook is not None:
        return _digest([("notebook", submission.notebook)])
    return _digest([("problem", submission.problem.encode())])


def fingerprint(submission: Submission, references: str) -> dict[str, str]:
    """What a kept result must match: the notebook's, the references' and the grader's versions."""
    return {"notebook": notebook_digest(submission), "references": references, "grader": grader_version()}


class ResultStore:
    """The per-submission results of a results folder ``out``: save one, or find a kept one."""

    def __init__(self, out: Path, run: str):
        self.out = Path(out)
        self.run = run

    def result_file(self, student: str, assignment: str) -> Path:
        return self.out / RESULTS_FOLDER / student / assignment / "result.json"

    def feedback_file(self, student: str, assignment: str) -> Path:
        """nbgrader's feedback layout: ``feedback/<student>/<assignment>/<assignment>.html``."""
        return self.out / FEEDBACK_FOLDER / student / assignment / f"{assignment}.html"

    def write_feedback(self, result: Result) -> Path:
        path = self.feedback_file(result.student, result.assignment)
        page = feedback.render(result.student, result.assignment, result.status, result.reason, result.cells,
                               result.manual)
        write_atomically(path, page.encode("utf-8"))
        return path

    def save(self, result: Result, stamp: dict[str, str], finished: str) -> Path:
        """Write ``result`` (feedback page, then ``result.json``) under its fingerprint ``stamp``;
        ``finished``: when (UTC, ISO 8601). Returns the path of ``result.json``."""
        page = self.write_feedback(result)
        document = {"format": RESULT_FORMAT, "fingerprint": stamp, "run": self.run, "finished": finished,
                    "row": result.row(), "seconds": result.seconds, "feedback": page.relative_to(self.out).as_posix(),
                    "cells": [asdict(cell) for cell in result.cells], "manual": result.manual}
        path = self.result_file(result.student, result.assignment)
        write_atomically(path, (json.dumps(document, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))
        return path

    def read(self, student: str, assignment: str) -> dict | None:
        """The stored document of a submission, or ``None`` when there is none or it is unreadable."""
        loaded = self._read_bytes(student, assignment)
        return loaded[0] if loaded else None

    def _read_bytes(self, student: str, assignment: str) -> tuple[dict, bytes] | None:
        try:
            data = self.result_file(student, assignment).read_bytes()
            document = json.loads(data.decode("utf-8"))
        except (OSError, ValueError):
            return None
        return (document, data) if isinstance(document, dict) else None

    def load(self, student: str, assignment: str) -> tuple[Result, bytes] | None:
        """The stored result of a submission and the bytes of its ``result.json``, whatever its
        fingerprint; ``None`` when there is none, it is of another format, or it does not read
        back to the row it was saved with."""
        loaded = self._read_bytes(student, assignment)
        result = self._result(student, assignment, loaded[0]) if loaded else None
        return (result, loaded[1]) if result else None

    @staticmethod
    def _result(student: str, assignment: str, document: dict) -> Result | None:
        if document.get("format") != RESULT_FORMAT:
            return None
        try:
            cells = [CellScore(**{**cell, "cases": [CaseResult(**case) for case in cell["cases"]]})
                     for cell in document["cells"]]
            row = document["row"]
            result = Result(student, assignment, row["status"], row["reason"], cells, float(document["seconds"]),
                            {str(cell): float(points) for cell, points in document["manual"].items()})
        except (AttributeError, KeyError, TypeError, ValueError):
            return None
        return result if result.row() == row else None

    def kept(self, submission: Submission, stamp: dict[str, str]) -> Result | None:
        """The stored result of ``submission`` if its fingerprint is ``stamp`` and it reads back
        to the row it was saved with; ``None`` means: grade it (again)."""
        document = self.read(submission.student, submission.assignment)
        if document is None or document.get("fingerprint") != stamp:
            return None
        result = self._result(submission.student, submission.assignment, document)
        if result is not None and not self.feedback_file(result.student, result.assignment).is_file():
            self.write_feedback(result)
        return result
