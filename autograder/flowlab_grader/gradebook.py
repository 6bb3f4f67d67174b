"""Write scores into an nbgrader gradebook (``gradebook.db``), so nbgrader's tools can use them.

The gradebook learns the assignment, its notebook and grade cells (with their points) from the
source notebook, then gets one submission per student with each grade cell's ``auto_score``.
``nbgrader export --db sqlite:///RESULTS/gradebook.db`` or the formgrader then see the grades.
Writing is idempotent: grading again updates the same rows.
"""
from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry


@dataclass
class GradedSubmission:
    student: str
    assignment: str
    notebook: str
    scores: dict[str, float]        # grade_id -> auto score


def database_url(path: Path) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def register(gradebook: Gradebook, assignment: str, notebook: str, points: dict[str, float]) -> None:
    """Make sure the assignment, its notebook and its grade cells exist in the gradebook."""
    gradebook.update_or_create_assignment(assignment)
    gradebook.update_or_create_notebook(notebook, assignment)
    for cell, value in points.items():
        gradebook.update_or_create_grade_cell(cell, notebook, assignment, max_score=float(value), cell_type="code")


def write_scores(path: Path, layouts: dict[str, tuple[str, dict[str, float]]],
                 submissions: list[GradedSubmission]) -> None:
    """Record ``submissions`` in the gradebook at ``path``; ``layouts``: ``{assignment: (notebook,
    {grade_id: points})}``."""
    scripts = str(Path(sys.executable).parent)      # nbgrader runs the `alembic` command it installed there
    if scripts not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = scripts + os.pathsep + os.environ.get("PATH", "")
    with warnings.catch_warnings(), Gradebook(database_url(path)) as gradebook:
        warnings.simplefilter("ignore")     # nbgrader's add_submission trips an SQLAlchemy 2 autoflush warning
        for assignment, (notebook, points) in layouts.items():
            register(gradebook, assignment, notebook, points)
        for entry in submissions:
            gradebook.update_or_create_student(entry.student)
            try:
                gradebook.find_submission(entry.assignment, entry.student)
            except MissingEntry:
                gradebook.add_submission(entry.assignment, entry.student)
            for cell, score in entry.scores.items():
                grade = gradebook.find_grade(cell, entry.notebook, entry.assignment, entry.student)
                grade.auto_score = float(score)
                grade.manual_score = None
            gradebook.db.commit()
