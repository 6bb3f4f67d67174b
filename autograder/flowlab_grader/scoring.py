"""Phase 2 of grading, on the host: recorded outputs against the hidden references -> points.

Each hidden case passes or fails (``flowlab.runtime.compare``); a grade cell's score is its
points times the weighted fraction of its cases that pass. A case without a usable record
fails with the reason: the hidden test never ran (an earlier crash, a timeout), the student's
function raised, took too long, or returned something of the wrong kind. A case also fails when
the function changed its inputs in place or used the global random stream (what the sandbox
saw: ``flowlab.runtime.side_effects``), even with the right values. A failed case gets a hint
when the diagnosis is unambiguous: its output matches exactly one known wrong answer, or is
float64 computed in float32, or the global stream was used. With a GPU (``flowlab grade --device
cuda``) a case that passes on the CPU must pass with its inputs on the GPU too (``devices``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from flowlab.runtime.compare import diagnose
from flowlab.runtime.record import open_folder, open_subfolder, read_record
from flowlab.runtime.reference_set import ReferenceSet
from flowlab.runtime.side_effects import findings
from flowlab_grader.devices import judge_on_device

NOT_RUN = ("no result was recorded: the hidden test did not reach this case (did an earlier cell crash, "
           "time out, or was the function not defined?)")


@dataclass
class CaseResult:
    key: str
    about: str
    passed: bool
    message: str = ""
    hint: str = ""          # the diagnosis alone (part of message), for tests and summaries


@dataclass
class CellScore:
    cell: str
    points: float
    score: float = 0.0
    cases: list[CaseResult] = field(default_factory=list)


def judge(references: ReferenceSet, key: str, record) -> CaseResult:
    """Pass or fail one case from its record, with a message for the student."""
    case = references.case(key)
    about = case["about"] or key
    if record.status == "absent":
        return CaseResult(key, about, False, NOT_RUN)
    if record.status == "invalid":
        return CaseResult(key, about, False, record.error)
    if record.status == "timeout":
        return CaseResult(key, about, False, f"your function did not finish: {record.error}")
    if record.status == "error" and record.error.startswith("NotImplementedError"):
        return CaseResult(key, about, False, "not implemented yet: your function still raises NotImplementedError")
    if record.status == "error":
        return CaseResult(key, about, False, f"your function raised {record.error}")
    check = references.check(key)
    try:
        expected = references.expected(key)
        verdict = check.evaluate(record.outputs, expected, case["expect"])
    except Exception as error:      # a record that cannot be compared costs this case, not the submission
        return CaseResult(key, about, False, f"the result could not be compared with the expected one "
                                             f"({type(error).__name__})")
    problems, hint = findings(case["function"], record.changed, record.global_random, case)
    if verdict.passed and not problems and not hint:
        return CaseResult(key, about, True)
    if not verdict.passed and hint is None:
        try:
            hint = diagnose(check, record.outputs, references.wrong_answers(key), case["expect"], expected)
        except Exception:           # no hint rather than no grade
            hint = None
    parts = ([] if verdict.passed else [verdict.message]) + problems
    if verdict.passed and not problems:
        parts = ["the values are right, but the function used the global random stream"]
    message = "; ".join(parts) + (f"; hint: {hint}" if hint else "")
    return CaseResult(key, about, False, message, hint or (problems[0] if problems else ""))


def score_cells(references: ReferenceSet, points: dict[str, float], records: Path | None,
                device: str = "cpu") -> list[CellScore]:
    """Scores of the grade cells ``points`` (``{grade_id: max points}``) from the record folder
    ``records`` (None: nothing recorded, every case fails); with ``device`` ``"cuda"``, a case
    must also pass in the GPU records of ``records/cuda/``."""
    descriptor = on_device = None
    if records is not None:
        try:
            descriptor = open_folder(records)
        except OSError:
            descriptor = None
    if descriptor is not None and device != "cpu":
        on_device = open_subfolder(descriptor, device)
    try:
        cells = {cell: CellScore(cell, float(value)) for cell, value in points.items()}
        weights: dict[str, list[tuple[float, bool]]] = {cell: [] for cell in points}
        for key in references.keys():
            case = references.case(key)
            record = read_record(descriptor, key) if descriptor is not None else None
            result = judge(references, key, record) if record is not None else \
                CaseResult(key, case["about"] or key, False, NOT_RUN)
            failed = judge_on_device(references, key, on_device, device) if result.passed and device != "cpu" else None
            if failed is not None:
                result = CaseResult(key, result.about, False, *failed)
            cells[case["cell"]].cases.append(result)
            weights[case["cell"]].append((float(case["weight"]), result.passed))
        for cell, entries in weights.items():
            total = sum(weight for weight, _ in entries)
            earned = sum(weight for weight, passed in entries if passed)
            cells[cell].score = round(cells[cell].points * earned / total, 3) if total else 0.0
        return [cells[cell] for cell in points]
    finally:
        for folder in (descriptor, on_device):
            if folder is not None:
                os.close(folder)
