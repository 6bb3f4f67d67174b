"""How much each notebook asks of a student: graded functions, lines of code, written answers.

    python -m flowlab_grader.workload          prints the table (markdown) that autograder/README.md holds

Per notebook, from the instructor's source and its cases file:

- graded functions: the ``GradedFunction``s of ``autograder/cases/NN_name.py``;
- student lines: the non-blank, non-comment lines between ``### BEGIN SOLUTION`` and
  ``### END SOLUTION`` in the solution cells that define a graded function (what the student
  writes; a docstring line inside the markers counts, as the student would have to write it);
- written answers: the manually graded answer cells (``answers``) and their points.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import nbformat
from nbformat import NotebookNode

from flowlab_grader.answers import SOLUTION_REGION, answer_points, is_answer_cell, nbgrader_metadata
from flowlab_grader.cases import load_cases
from flowlab_grader.course import Assignment, assignments

HEADER = ("| notebook | graded functions | student lines | written answers (points) |\n"
          "|---|---:|---:|---|")


@dataclass(frozen=True)
class Workload:
    notebook: str
    functions: int
    lines: int
    answers: tuple[float, ...]      # the points of each written answer, in notebook order

    def row(self) -> str:
        points = " + ".join(f"{value:g}" for value in self.answers)
        written = f"{len(self.answers)} ({points})" if self.answers else "0"
        return f"| {self.notebook} | {self.functions} | {self.lines} | {written} |"


def _defines(cell: NotebookNode, names: set[str]) -> bool:
    return any(re.search(rf"^\s*def {re.escape(name)}\(", cell.source, re.M) for name in names)


def student_lines(notebook: NotebookNode, functions: set[str]) -> int:
    """Non-blank, non-comment lines inside the solution markers of the solution cells that define
    one of ``functions``."""
    count = 0
    for cell in notebook.cells:
        if cell.cell_type != "code" or not nbgrader_metadata(cell).get("solution") or is_answer_cell(cell):
            continue
        if _defines(cell, functions):
            for region in SOLUTION_REGION.findall(cell.source):
                count += sum(1 for line in region.splitlines() if line.strip() and not line.strip().startswith("#"))
    return count


def workload(assignment: Assignment) -> Workload:
    """The counts of one notebook (see the module docstring)."""
    source = nbformat.read(assignment.source_notebook, as_version=4)
    functions = {function.name for function in load_cases(assignment).functions}
    return Workload(assignment.name, len(functions), student_lines(source, functions),
                    tuple(answer_points(source).values()))


def table(rows: list[Workload]) -> str:
    """The markdown table, one row a notebook and a total."""
    total_answers = [value for row in rows for value in row.answers]
    total = (f"| **course** | {sum(row.functions for row in rows)} | {sum(row.lines for row in rows)} | "
             f"{len(total_answers)} ({sum(total_answers):g} points) |")
    return "\n".join([HEADER, *(row.row() for row in rows), total])


def course_table() -> str:
    return table([workload(assignment) for assignment in assignments()])


if __name__ == "__main__":
    print(course_table())
