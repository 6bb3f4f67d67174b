"""Write scores into an nbgrader gradebook (``gradebook.db``), so nbgrader's tools can use them.

The gradebook learns the assignment, its notebook and grade cells (with their points) from the
source notebook, then gets one submission per student with each hidden-test cell's
``auto_score``. A manually graded answer cell (``answers``) is registered as nbgrader registers
one, a grade cell that is also a solution cell, and is left to people: no ``auto_score``,
``needs_manual_grade`` set until someone gives it a ``manual_score`` (nbgrader's formgrader, or
``Gradebook.find_grade(...).manual_score = ...``); ``manual`` reads those back. Writing is
idempotent: grading again updates the same rows and keeps every manual score already given.
``nbgrader export --db sqlite:///RESULTS/gradebook.db`` or the formgrader then see the grades.
"""
from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from nbgrader.api import Comment, Grade, Gradebook, MissingEntry


@dataclass
class GradedSubmission:
    student: str
    assignment: str
    notebook: str
    scores: dict[str, float]        # grade_id -> auto score


@dataclass(frozen=True)
class Layout:
    """An assignment's notebook and its grade cells: hidden-test cells ``tests`` and manually
    graded answer cells ``answers`` (``{grade_id: points}`` each), of which ``code_answers`` are
    code cells (the others markdown)."""
    notebook: str
    tests: dict[str, float]
    answers: dict[str, float] = field(default_factory=dict)
    code_answers: frozenset[str] = frozenset()


def database_url(path: Path) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def register(gradebook: Gradebook, assignment: str, layout: Layout) -> None:
    """Make sure the assignment, its notebook and its grade cells exist in the gradebook."""
    gradebook.update_or_create_assignment(assignment)
    gradebook.update_or_create_notebook(layout.notebook, assignment)
    for cell, value in layout.tests.items():
        gradebook.update_or_create_grade_cell(cell, layout.notebook, assignment, max_score=float(value),
                                              cell_type="code")
    for cell, value in layout.answers.items():
        gradebook.update_or_create_grade_cell(cell, layout.notebook, assignment, max_score=float(value),
                                              cell_type="code" if cell in layout.code_answers else "markdown")
        gradebook.update_or_create_solution_cell(cell, layout.notebook, assignment)


def _grade(gradebook: Gradebook, cell: str, entry: GradedSubmission, answer: bool) -> Grade:
    """The submission's grade of ``cell``; made (with the comment of an answer cell) when the cell
    is newer than the submission in this gradebook (nbgrader makes them only in ``add_submission``)."""
    try:
        return gradebook.find_grade(cell, entry.notebook, entry.assignment, entry.student)
    except MissingEntry:
        submitted = gradebook.find_submission_notebook(entry.notebook, entry.assignment, entry.student)
        if answer:
            gradebook.db.add(Comment(cell_id=gradebook.find_solution_cell(cell, entry.notebook, entry.assignment).id,
                                     notebook=submitted))
        grade = Grade(cell_id=gradebook.find_grade_cell(cell, entry.notebook, entry.assignment).id, notebook=submitted)
        gradebook.db.add(grade)
        return grade


def _record(gradebook: Gradebook, entry: GradedSubmission, answers: dict[str, float]) -> None:
    """The automatic scores of one submission; its answers pending unless a person graded them."""
    for cell, score in entry.scores.items():
        grade = _grade(gradebook, cell, entry, answer=False)
        grade.auto_score, grade.manual_score, grade.needs_manual_grade = float(score), None, False
    for cell in answers:
        grade = _grade(gradebook, cell, entry, answer=True)
        grade.auto_score = None
        grade.needs_manual_grade = grade.manual_score is None


def write_scores(path: Path, layouts: dict[str, Layout], submissions: list[GradedSubmission]) -> None:
    """Record ``submissions`` in the gradebook at ``path``; ``layouts``: ``{assignment: Layout}``."""
    scripts = str(Path(sys.executable).parent)      # nbgrader runs the `alembic` command it installed there
    if scripts not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = scripts + os.pathsep + os.environ.get("PATH", "")
    with warnings.catch_warnings(), Gradebook(database_url(path)) as gradebook:
        warnings.simplefilter("ignore")     # nbgrader's add_submission trips an SQLAlchemy 2 autoflush warning
        for assignment, layout in layouts.items():
            register(gradebook, assignment, layout)
        for entry in submissions:
            gradebook.update_or_create_student(entry.student)
            try:
                gradebook.find_submission(entry.assignment, entry.student)
            except MissingEntry:
                gradebook.add_submission(entry.assignment, entry.student)
            _record(gradebook, entry, layouts[entry.assignment].answers)
            gradebook.db.commit()
