"""The course notebooks follow the pattern (no kernel needed; test_grading_end_to_end.py runs them).

Each source notebook: a locked setup cell that reads ``grading_mode()``; for each graded function a
solution cell defining it with the library function's name and signature, a locked public test
cell calling ``public.check`` on it, and a grade cell with points calling ``hidden.run``; at least
one ipywidgets control; exploration that looks at ``GRADING``. Manually graded answer cells
(grade and solution, ``answer_*``; see ``flowlab_grader.answers``) are no solution code. The student
copies in ``notebooks/`` have no outputs, no solutions and no expected answers.
"""
import ast
import inspect

import nbformat
import pytest

from flowlab_grader.answers import is_answer_cell
from flowlab_grader.cases import load_cases
from flowlab_grader.course import assignments

ASSIGNMENTS = assignments()
IDS = [a.name for a in ASSIGNMENTS]


def nbgrader(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def source(assignment):
    return nbformat.read(assignment.source_notebook, as_version=4)


def defined_functions(cell) -> dict[str, ast.FunctionDef]:
    python = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))
    return {node.name: node for node in ast.parse(python).body if isinstance(node, ast.FunctionDef)}


def parameters(node: ast.FunctionDef) -> list[tuple[str, bool]]:
    """``[(name, has a default)]`` of a function definition."""
    names = [argument.arg for argument in node.args.args]
    first_default = len(names) - len(node.args.defaults)
    return [(name, index >= first_default) for index, name in enumerate(names)]


@pytest.mark.parametrize("assignment", ASSIGNMENTS, ids=IDS)
def test_setup_cell_is_locked_and_reads_grading_mode(assignment):
    code = [cell for cell in source(assignment).cells if cell.cell_type == "code"]
    assert nbgrader(code[0]).get("locked") and "grading_mode()" in code[0].source


@pytest.mark.parametrize("assignment", ASSIGNMENTS, ids=IDS)
def test_graded_functions_mirror_the_library_signatures(assignment):
    solutions = {}
    for cell in source(assignment).cells:
        if nbgrader(cell).get("solution") and not is_answer_cell(cell):
            assert "### BEGIN SOLUTION" in cell.source and "### END SOLUTION" in cell.source
            solutions.update(defined_functions(cell))
    for function in load_cases(assignment).functions:
        assert function.name in solutions, f"no solution cell defines {function.name}"
        library = inspect.signature(function.reference())
        expected = [(name, p.default is not inspect.Parameter.empty) for name, p in library.parameters.items()]
        assert parameters(solutions[function.name]) == expected, f"{function.name}: not the library's signature"


@pytest.mark.parametrize("assignment", ASSIGNMENTS, ids=IDS)
def test_every_graded_function_has_public_tests_right_after_it(assignment):
    cells = [cell for cell in source(assignment).cells if cell.cell_type == "code"]
    for function in load_cases(assignment).functions:
        index = next(i for i, cell in enumerate(cells) if function.name in defined_functions(cell))
        public, hidden = cells[index + 1], cells[index + 2]
        assert nbgrader(public).get("locked") and not nbgrader(public).get("grade")
        assert f'public.check("{assignment.name}", "{function.name}", {function.name})' in public.source
        assert nbgrader(hidden).get("grade") and nbgrader(hidden).get("points", 0) > 0
        assert "### BEGIN HIDDEN TESTS" in hidden.source and f'"{function.name}"' in hidden.source


@pytest.mark.parametrize("assignment", ASSIGNMENTS, ids=IDS)
def test_exploration_has_a_widget_and_a_grading_switch(assignment):
    explore = [cell.source for cell in source(assignment).cells if cell.cell_type == "code" and not nbgrader(cell)]
    assert any("widgets." in text for text in explore), "at least one ipywidgets control"
    assert any("GRADING" in text for text in explore), "slow exploration must be skipped in grading mode"


@pytest.mark.parametrize("assignment", ASSIGNMENTS, ids=IDS)
def test_student_copy_has_no_outputs_and_no_solutions(assignment):
    student = nbformat.read(assignment.student_notebook, as_version=4)
    assert student.metadata["kernelspec"]["name"] == "python3"
    for cell in student.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None
        if nbgrader(cell).get("solution"):
            stub = "YOUR ANSWER HERE" if cell.cell_type == "markdown" else "raise NotImplementedError()"
            assert stub in cell.source and "BEGIN SOLUTION" not in cell.source
