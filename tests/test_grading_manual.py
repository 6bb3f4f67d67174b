"""Manually graded answer cells: released empty, kept as written, left to people, merged at the end.

A one-notebook course (``01_small``, built in a temporary folder that ``FLOWLAB_COURSE`` points
at) has a graded function (``interpolate``, one hidden case), a locked question and two answer
cells: a markdown one (``answer_why``) and a code one with solution markers (``answer_ratio``).
"""
import copy
import os
import shutil
import textwrap
from pathlib import Path

import nbformat
import pytest

from flowlab_grader import overwrite
from flowlab_grader.answers import answer_points, autograded_points, instructor_text, is_answer_cell
from flowlab_grader.course import Assignment, course_dir
from flowlab_grader.grade import PreparedAssignment
from flowlab_grader.leaks import check_leaks
from flowlab_grader.references import write_references
from flowlab_grader.release import build_gradebook, student_bundle

NAME = "01_small"
QUESTION = "## Why one step\n\nWhy does one Euler step from $t = 0$ land on the data mean?"
EXPECTED = ("**Expected answer.** At $t = 0$ the velocity is the average direction $\\mathbb E[x_1] - x_0$,\n"
            "so a step of size 1 from $x_0$ reaches $\\mathbb E[x_1]$.\n\n"
            "**Rubric (3 points).**\n- 1 point: the velocity at t = 0 averages over all the data.\n"
            "- 2 points: x0 + (E[x1] - x0) = E[x1] after one step of size 1.")
RATIO = "# The ratio of the two errors\n### BEGIN SOLUTION\nratio_of_errors = 2.0 ** 0.5\n### END SOLUTION"
CASES_FILE = textwrap.dedent('''
    import torch
    from flowlab_grader.cases import AssignmentCases, Case, GradedFunction

    def half_way(generator):
        return {"x0": torch.randn(4, 2, generator=generator), "x1": torch.randn(4, 2, generator=generator), "t": 0.5}

    CASES = AssignmentCases("01_small", (GradedFunction("interpolate", library="flowlab.paths:interpolate",
                                                        positional=3),),
                            (Case("interpolate/half_way", "interpolate", half_way, seed=1, cell="hidden_interpolate",
                                  about="the middle of the path"),))
''')


def cell(kind, source, grade_id, **flags):
    make = nbformat.v4.new_code_cell if kind == "code" else nbformat.v4.new_markdown_cell
    made = make(source)
    made.metadata["nbgrader"] = {"grade_id": grade_id, "locked": flags.get("locked", False),
                                 "grade": flags.get("grade", False), "solution": flags.get("solution", False),
                                 "task": False, "schema_version": 3}
    if flags.get("grade"):
        made.metadata["nbgrader"]["points"] = flags["points"]
    return made


def source_notebook():
    hidden = ('### BEGIN HIDDEN TESTS\nfrom flowlab.runtime import hidden\nhidden.run("01_small", "interpolate", '
              'globals())\n### END HIDDEN TESTS')
    return nbformat.v4.new_notebook(cells=[
        cell("code", "import torch\nfrom flowlab.runtime import grading_mode\nGRADING = grading_mode()", "setup",
             locked=True),
        cell("code", "def interpolate(x0, x1, t):\n    ### BEGIN SOLUTION\n    return (1 - t) * x0 + t * x1\n"
                     "    ### END SOLUTION", "interpolate", solution=True),
        cell("code", hidden, "hidden_interpolate", grade=True, locked=True, points=2),
        cell("markdown", QUESTION, "question_why", locked=True),
        cell("markdown", EXPECTED, "answer_why", grade=True, solution=True, points=3),
        cell("code", RATIO, "answer_ratio", grade=True, solution=True, points=2),
    ], metadata={"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}})


@pytest.fixture(scope="module")
def small_course(tmp_path_factory):
    """The course in ``root/autograder`` (references written, gradebook and release built in
    ``root/nbgrader``), with ``FLOWLAB_COURSE`` set while the module's tests run."""
    root = tmp_path_factory.mktemp("manual")
    course = root / "autograder"
    (course / "source" / NAME).mkdir(parents=True)
    (course / "cases").mkdir()
    shutil.copy2(course_dir() / "nbgrader_config.py", course / "nbgrader_config.py")
    nbformat.write(source_notebook(), course / "source" / NAME / f"{NAME}.ipynb")
    (course / "cases" / f"{NAME}.py").write_text(CASES_FILE)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FLOWLAB_COURSE", str(course))
        write_references([Assignment(NAME)])
        url = build_gradebook([Assignment(NAME)], root / "nbgrader")
        student = nbformat.read(root / "nbgrader" / "release" / f"{NAME}.ipynb", as_version=4)
        yield root, url, student


def by_id(notebook) -> dict:
    return {c.metadata["nbgrader"]["grade_id"]: c for c in notebook.cells if "grade_id" in c.metadata.get("nbgrader", {})}


def test_answer_cells_are_manual_and_hidden_tests_automatic(small_course):
    source = source_notebook()
    assert autograded_points(source) == {"hidden_interpolate": 2.0}
    assert answer_points(source) == {"answer_why": 3.0, "answer_ratio": 2.0}
    prepared = PreparedAssignment.load(Assignment(NAME))
    assert (prepared.points, prepared.manual) == ({"hidden_interpolate": 2.0}, {"answer_why": 3.0, "answer_ratio": 2.0})
    assert instructor_text(by_id(source)["answer_ratio"]) == "\nratio_of_errors = 2.0 ** 0.5\n"


def test_the_release_empties_the_answers_and_keeps_the_question(small_course):
    _, _, student = small_course
    cells = by_id(student)
    assert cells["answer_why"].source == "YOUR ANSWER HERE" and is_answer_cell(cells["answer_why"])
    assert "ratio_of_errors = 2.0" not in cells["answer_ratio"].source
    assert "raise NotImplementedError()" in cells["answer_ratio"].source
    assert cells["question_why"].source == QUESTION


def released_bundle(root: Path, student) -> Path:
    """What ``flowlab release`` ships: the stubbed library, the public data and ``student``."""
    bundle = student_bundle(Assignment(NAME), root / f"bundle-{len(list(root.glob('bundle-*')))}")
    (bundle / "notebooks").mkdir()
    nbformat.write(student, bundle / "notebooks" / f"{NAME}.ipynb")
    return bundle


def test_the_leak_check_passes_the_release_and_finds_a_released_answer(small_course):
    root, _, student = small_course
    assert check_leaks(released_bundle(root, student), stub_from=1) == []
    answered = copy.deepcopy(student)
    by_id(answered)["answer_why"].source = EXPECTED          # the release kept the instructor's text
    problems = check_leaks(released_bundle(root, answered), stub_from=1)
    assert any("expected answer or rubric of 01_small:answer_why" in problem and "2 points: x0" in problem
               for problem in problems), problems
    bundle = released_bundle(root, student)
    (bundle / "NOTES.md").write_text("hint: ratio_of_errors = 2.0 ** 0.5\n")   # a code answer pasted elsewhere
    assert [problem for problem in check_leaks(bundle, stub_from=1) if "answer_ratio" in problem]


def graded(url, submitted):
    return overwrite.notebook_to_grade(submitted, url, NAME, NAME)


def test_overwrite_keeps_the_written_answer_and_restores_the_question(small_course):
    _, url, student = small_course
    submitted = copy.deepcopy(student)
    cells = by_id(submitted)
    cells["answer_why"].source = "Because the velocity at t = 0 is E[x1] - x0."
    cells["question_why"].source = "an easier question"
    cells["answer_why"].metadata["nbgrader"]["points"] = 100                    # forged points
    restored = by_id(graded(url, submitted))
    assert restored["answer_why"].source == "Because the velocity at t = 0 is E[x1] - x0."
    assert restored["answer_why"].metadata["nbgrader"]["points"] == 3 and is_answer_cell(restored["answer_why"])
    assert restored["question_why"].source == QUESTION


def test_a_deleted_answer_cell_comes_back_editable_and_empty(small_course):
    _, url, student = small_course
    submitted = copy.deepcopy(student)
    submitted.cells = [c for c in submitted.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "answer_why"]
    restored = graded(url, submitted)
    names = [c.metadata.get("nbgrader", {}).get("grade_id") for c in restored.cells]
    assert names.index("answer_why") == names.index("question_why") + 1
    answer = by_id(restored)["answer_why"]
    assert is_answer_cell(answer) and answer.metadata.get("editable", True) and "YOUR ANSWER HERE" in answer.source
    assert "Expected answer" not in answer.source
