"""``flowlab merge-manual``: the points people gave the written answers, merged into the final table.

    flowlab merge-manual RESULTS [--out FILE]          (default: RESULTS/final.csv)

``flowlab grade`` scores the hidden tests and leaves each manually graded answer cell
(``answers``) pending: ``RESULTS/grades.csv`` has its points in ``manual_max`` and
``manual_status`` ``pending``, and ``RESULTS/gradebook.db`` has it as a grade that needs a manual
grade. People grade it there, with nbgrader's formgrader or nbgrader's ``Gradebook`` API (a
``manual_score`` on the cell's ``Grade``, plus any ``extra_credit``). This command reads those
scores back and writes the final table: the columns of ``grades.csv`` (``grade.COLUMNS``), with

    score          auto_score + the manual scores given so far (+ extra credit)
    max_score      auto_max + manual_max (unchanged)
    manual_score   the sum of the manual scores given so far ('' while none is)
    manual_status  'graded' (every answer has a manual score), 'partial' (some have), 'pending'
                   (none has), 'none' (the assignment has no written answers)

A submission without a notebook keeps its answers pending: a person decides (nbgrader lets them
give 0). Running it again after more grading updates the table; ``grades.csv`` is not changed.
"""
from __future__ import annotations

import csv
import io
import warnings
from pathlib import Path

from nbgrader.api import Gradebook

from flowlab_grader.gradebook import database_url
from flowlab_grader.grade import COLUMNS
from flowlab_grader.results import write_atomically

STATUSES = ("none", "pending", "partial", "graded")


def manual_scores(gradebook: Path) -> dict[tuple[str, str], dict[str, float | None]]:
    """``{(student, assignment): {answer grade_id: manual score + extra credit, or None}}`` from
    the gradebook at ``gradebook``: every manually graded answer cell of every submission."""
    found: dict[tuple[str, str], dict[str, float | None]] = {}
    with warnings.catch_warnings(), Gradebook(database_url(gradebook)) as book:
        warnings.simplefilter("ignore")     # SQLAlchemy 2 warnings from nbgrader's queries
        for assignment in book.assignments:
            for notebook in assignment.notebooks:
                answers = {cell.name for cell in notebook.grade_cells} & {cell.name for cell in notebook.solution_cells}
                for submitted in notebook.submissions:
                    scores = found.setdefault((submitted.student.id, assignment.name), {})
                    for grade in submitted.grades:
                        if grade.name in answers:
                            scores[grade.name] = None if grade.manual_score is None else \
                                float(grade.manual_score) + float(grade.extra_credit or 0.0)
    return found


def _number(value: float) -> str:
    return f"{round(value, 3):g}"


def merged_row(row: dict[str, str], scores: dict[str, float | None]) -> dict[str, str]:
    """A row of ``grades.csv`` with the manual ``scores`` of its answers (``{grade_id: score or None}``)."""
    given = [score for score in scores.values() if score is not None]
    if float(row["manual_max"]) == 0 and not scores:
        status = "none"
    elif given and len(given) == len(scores):
        status = "graded"
    else:
        status = "partial" if given else "pending"
    manual = round(sum(given), 3)
    return {**row, "score": _number(float(row["auto_score"]) + manual),
            "manual_score": _number(manual) if given else "", "manual_status": status}


def read_grades(path: Path) -> list[dict[str, str]]:
    """The rows of a ``grades.csv``; ``ValueError`` unless it has the columns ``flowlab grade`` writes."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [column for column in COLUMNS if column not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path} lacks the columns {missing}: grade again with this flowlab grade")
        return list(reader)


def merge(results: Path, out: Path | None = None) -> list[dict[str, str]]:
    """Write the final table of the results folder ``results`` to ``out`` (default
    ``results/final.csv``); returns its rows."""
    results = Path(results)
    grades, gradebook = results / "grades.csv", results / "gradebook.db"
    for path in (grades, gradebook):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: is {results} a results folder of flowlab grade?")
    scores = manual_scores(gradebook)
    rows = [merged_row(row, scores.get((row["student"], row["assignment"]), {})) for row in read_grades(grades)]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_atomically(Path(out) if out else results / "final.csv", buffer.getvalue().encode("utf-8"))
    return rows


def summary(rows: list[dict[str, str]]) -> str:
    """One line: how many submissions are in each manual status."""
    if not rows:
        return "no submissions"
    counts = {status: sum(row["manual_status"] == status for row in rows) for status in STATUSES}
    return f"{len(rows)} submissions; written answers: " + ", ".join(
        f"{count} {status}" for status, count in counts.items() if count)

