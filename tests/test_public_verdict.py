"""The line at the end of each grade cell (``public_verdict.require``) repeats the public tests'
verdict, so that nbgrader's Validate button, which looks only at grade cells, tells the truth.

Cells run in a real IPython shell, as a kernel runs them: the solution cell, the public test cell
(the real ``public.check`` on the shipped public cases of notebook 01), then the grade cell's line.
"""
import re

import nbformat
import pytest
from IPython.core.interactiveshell import InteractiveShell

from flowlab_grader.answers import is_test_cell
from flowlab_grader.cases import load_cases
from flowlab_grader.course import assignments

from flowlab.runtime.public import public_file
from flowlab.runtime.public_verdict import runs_public_tests_of
from flowlab.runtime.reference_set import ReferenceSet

SETUP = "import torch\nfrom flowlab.runtime import public, public_verdict"
PUBLIC_CELL = 'public.check("01_flow_matching", "interpolate", interpolate)'
GRADE_LINE = 'public_verdict.require("interpolate")'
BROADCAST_T = ("    if isinstance(t, torch.Tensor) and t.dim() == 1:\n"
               "        t = t.to(x0.dtype).reshape(-1, *([1] * (x0.dim() - 1)))\n")
SOLUTIONS = {
    "right": "def interpolate(x0, x1, t):\n" + BROADCAST_T + "    return (1 - t) * x0 + t * x1",
    "not written": "def interpolate(x0, x1, t):\n    raise NotImplementedError()",
    "reversed time": "def interpolate(x0, x1, t):\n" + BROADCAST_T + "    return t * x0 + (1 - t) * x1",
    "typo": "def interpolate(x0, x1, t):\n" + BROADCAST_T + "    return (1 - t) * x0 + t * x_1",
}


@pytest.fixture
def shell():
    shell = InteractiveShell.instance()
    assert shell.run_cell(SETUP).success
    yield shell
    shell.reset()


def grade_cell_error(shell, *cells: str) -> str | None:
    """Run ``cells`` in order, then the grade cell's line; its error message, or None."""
    for cell in cells:
        shell.run_cell(cell)
    result = shell.run_cell(GRADE_LINE)
    return None if result.success else str(result.error_in_exec)


def test_a_right_function_passes(shell, capsys):
    assert grade_cell_error(shell, SOLUTIONS["right"], PUBLIC_CELL) is None
    assert "interpolate passes its public tests" in capsys.readouterr().out


@pytest.mark.parametrize("kind, expected", [
    ("not written", "interpolate: not written yet (raises NotImplementedError)"),
    ("reversed time", "interpolate fails its public tests (the cell above):\nAssertionError: interpolate fails"),
    ("typo", "interpolate fails its public tests (the cell above):\nNameError: name 'x_1' is not defined"),
])
def test_a_wrong_function_fails_the_grade_cell_saying_why(shell, kind, expected):
    error = grade_cell_error(shell, SOLUTIONS[kind], PUBLIC_CELL)
    assert error is not None and error.startswith(expected), error


def test_the_failed_property_reaches_the_grade_cell_and_no_mistake_is_named(shell):
    """The public tests say which property failed (a case's ``about``) and what differs, never
    which known mistake the output matches (that would give the answer away)."""
    error = grade_cell_error(shell, SOLUTIONS["reversed time"], PUBLIC_CELL)
    public = ReferenceSet.load(public_file("01_flow_matching"))
    properties = [public.case(key)["about"] for key in public.keys("interpolate")]
    assert any(f"- {about}: " in error for about in properties), error
    wrong = load_cases(assignments()[0]).function("interpolate").wrong
    assert "hint" not in error and not any(mistake.message in error for mistake in wrong.values()), error


@pytest.mark.parametrize("cells", [
    (SOLUTIONS["right"],),                                   # the public tests never ran
    (SOLUTIONS["right"], PUBLIC_CELL, SOLUTIONS["right"]),   # redefined after they ran
], ids=["never run", "redefined since"])
def test_a_grade_cell_not_right_after_its_public_tests_asks_to_run_them(shell, cells):
    assert grade_cell_error(shell, *cells) == \
        "interpolate: run its public tests first (the cell above this one; Run All runs both in order)"


def test_public_tests_of_another_function_do_not_count(shell):
    other = 'def f(x):\n    return x\npublic.check("01_flow_matching", "flow_matching_loss", f)'
    error = grade_cell_error(shell, SOLUTIONS["right"], other)
    assert error is not None and error.startswith("interpolate: run its public tests first"), error


@pytest.mark.parametrize("source, function, expected", [
    ('public.check("04_x", "label_dropout", label_dropout)', "label_dropout", True),
    ("public.check( '04_x' , 'label_dropout', f)", "label_dropout", True),
    ('public.check("04_x", "label_dropout_v2", f)', "label_dropout", False),
    ('public.check("04_x", "cfg_velocity", cfg_velocity)', "label_dropout", False),
    ("label_dropout(y, 0.1, 10)", "label_dropout", False),
])
def test_a_public_test_cell_is_recognised_by_its_check_call(source, function, expected):
    assert runs_public_tests_of(source, function) is expected


def test_the_verdict_is_shown_without_a_traceback(shell):
    """IPython (and so the kernel's error output that Validate shows) prints only the message."""
    shell.run_cell(SOLUTIONS["not written"])
    shell.run_cell(PUBLIC_CELL)
    error = shell.run_cell(GRADE_LINE).error_in_exec
    lines = [line.replace("\x1b[0;31m", "").replace("\x1b[0m", "") for line in error._render_traceback_()]
    assert lines == ["AssertionError: interpolate: not written yet (raises NotImplementedError)"]
    assert isinstance(error, AssertionError)


def test_a_stubbed_library_function_is_not_mistaken_for_the_students_placeholder(shell):
    """A library function due in a later notebook raises NotImplementedError with a message."""
    stubbed = 'def interpolate(x0, x1, t):\n    raise NotImplementedError("implemented in notebook 02_ode_samplers")'
    error = grade_cell_error(shell, stubbed, PUBLIC_CELL)
    assert error == ("interpolate fails its public tests (the cell above):\n"
                     "NotImplementedError: implemented in notebook 02_ode_samplers"), error


def grade_cells(path) -> list:
    cells = nbformat.read(path, as_version=4).cells
    return [cell for cell in cells if is_test_cell(cell)]     # not the manually graded answers


@pytest.mark.parametrize("assignment", assignments(), ids=lambda assignment: assignment.name)
def test_every_grade_cell_ends_with_its_functions_verdict_in_source_and_release(assignment):
    for source, student in zip(grade_cells(assignment.source_notebook), grade_cells(assignment.student_notebook),
                               strict=True):
        (function,) = re.findall(r'hidden\.run\("[^"]+", "(\w+)"', source.source)
        verdict = f'from flowlab.runtime import public_verdict\npublic_verdict.require("{function}")'
        after_hidden = source.source.split("### END HIDDEN TESTS\n")[1]
        assert after_hidden.startswith(verdict), f"{assignment.name}: {source.source}"
        assert verdict in student.source and "hidden.run" not in student.source


@pytest.mark.parametrize("assignment", assignments(), ids=lambda assignment: assignment.name)
def test_public_references_hold_no_wrong_answers(assignment):
    """What students have cannot name a mistake: no wrong answers' outputs, no hints."""
    public = ReferenceSet.load(assignment.public_file)
    assert not [key for key in public.arrays if "|wrong:" in key]
    assert all(not public.case(key)["wrong"] for key in public.keys())
