"""Written answers: nbgrader's manually graded answer cells, which people grade, not the grader.

nbgrader tells its cells apart by two flags of their ``nbgrader`` metadata:

    grade  solution
    true   false     a test cell: here, the hidden tests of a graded function (``hidden.run``),
                     scored automatically from the recorded outputs (``scoring``)
    true   true      a manually graded answer: a markdown cell (a written answer) or a code cell
                     (a derivation in code), with ``points`` and ``grade_id`` ``answer_<slug>``
    false  true      a solution cell: the student's code, not scored by itself

In the instructor's source an answer cell holds the expected answer and the rubric
(``**Expected answer.** ...``, ``**Rubric (P points).** ...``); ``nbgrader generate_assignment``
(its ``ClearSolutions``) replaces a markdown answer without ``### BEGIN SOLUTION`` markers by
``YOUR ANSWER HERE`` and a code answer's solution region by its stub, so neither is released
(``leaks`` checks it). Grading restores every cell but these (``overwrite``), leaves their points
to a person (``gradebook``: pending in the nbgrader gradebook, ``needs_manual_grade``) and
``manual`` merges what the person gave into the final table.
"""
from __future__ import annotations

import re

from nbformat import NotebookNode

SOLUTION_REGION = re.compile(r"### BEGIN SOLUTION(.*?)### END SOLUTION", re.S)


def nbgrader_metadata(cell) -> dict:
    """The ``nbgrader`` metadata of a cell (``{}`` when it has none or it is not an object)."""
    meta = cell.get("metadata") if isinstance(cell, dict) else None
    meta = meta.get("nbgrader") if isinstance(meta, dict) else None
    return meta if isinstance(meta, dict) else {}


def is_answer_cell(cell) -> bool:
    """A manually graded answer: a grade cell that is also a solution cell (nbgrader's rule)."""
    meta = nbgrader_metadata(cell)
    return bool(meta.get("grade")) and bool(meta.get("solution")) and isinstance(meta.get("grade_id"), str)


def is_test_cell(cell) -> bool:
    """An automatically graded cell: a grade cell that is not a solution (the hidden tests)."""
    meta = nbgrader_metadata(cell)
    return bool(meta.get("grade")) and not meta.get("solution") and isinstance(meta.get("grade_id"), str)


def _points(cells) -> dict[str, float]:
    return {nbgrader_metadata(cell)["grade_id"]: float(nbgrader_metadata(cell).get("points", 0)) for cell in cells}


def answer_points(notebook: NotebookNode) -> dict[str, float]:
    """``{grade_id: points}`` of the notebook's manually graded answer cells, in notebook order."""
    return _points(cell for cell in notebook.cells if is_answer_cell(cell))


def code_answer_ids(notebook: NotebookNode) -> frozenset[str]:
    """The grade ids of the notebook's answer cells that are code cells."""
    return frozenset(nbgrader_metadata(cell)["grade_id"] for cell in notebook.cells
                     if is_answer_cell(cell) and cell.cell_type == "code")


def autograded_points(notebook: NotebookNode) -> dict[str, float]:
    """``{grade_id: points}`` of the notebook's automatically graded (hidden test) cells, in order."""
    return _points(cell for cell in notebook.cells if is_test_cell(cell))


def instructor_text(cell) -> str:
    """What of an answer cell only the instructor may see: the solution regions of a cell with
    ``### BEGIN SOLUTION`` markers, else the whole cell (which the release replaces)."""
    regions = SOLUTION_REGION.findall(cell.source)
    return "\n".join(regions) if regions else cell.source
