"""Manually graded answer cells: released empty, kept as written, left to people, merged at the end.

A one-notebook course (``01_small``, built in a temporary folder that ``FLOWLAB_COURSE`` points
at) has a graded function (``interpolate``, one hidden case), a locked question and two answer
cells: a markdown one (``answer_why``) and a code one with solution markers (``answer_ratio``).
The last three tests share one real ``flowlab grade`` run of one submission (slow) and enter
manual grades through nbgrader's own ``Gradebook`` API, as the formgrader does.
"""
import copy
import csv
import json
import os
import shutil
import textwrap
from pathlib import Path

import nbformat
import pytest
from nbconvert.exporters import HTMLExporter
from nbgrader.api import Gradebook
from nbgrader.apps.api import NbGraderAPI
from nbgrader.coursedir import CourseDirectory
from nbgrader.server_extensions.formgrader import handlers as formgrader_handlers

from flowlab import cli
from flowlab_grader import overwrite
from flowlab_grader.commands import written_answers_line
from flowlab_grader.answers import answer_points, autograded_points, code_answer_ids, instructor_text, is_answer_cell
from flowlab_grader.course import Assignment, course_dir
from flowlab_grader.grade import COLUMNS, PreparedAssignment, grade
from flowlab_grader.gradebook import GradedSubmission, Layout, database_url, write_scores
from flowlab_grader.leaks import check_leaks
from flowlab_grader.manual import manual_scores, merge, merged_row
from flowlab_grader.references import write_references
from flowlab_grader.release import build_gradebook, student_bundle
from flowlab_grader.results import Result
from flowlab_grader.sandbox import Limits, probe_isolation

NAME = "01_small"
LIMITS = Limits(cell_timeout=60, notebook_timeout=120)
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


# ---- grading leaves the answers to people; a manual grade round-trips into final.csv -------------------

WRITTEN = "At t = 0 the velocity averages the directions to all the data."


@pytest.fixture(scope="module")
def graded_batch(small_course):
    """One submission (the solution, with written answers) graded for real into ``RESULTS``."""
    root, _, student = small_course
    submitted = copy.deepcopy(student)
    cells = by_id(submitted)
    cells["interpolate"].source = "def interpolate(x0, x1, t):\n    return (1 - t) * x0 + t * x1"
    cells["answer_why"].source = WRITTEN
    cells["answer_ratio"].source = "ratio_of_errors = 1.4"
    folder = root / "submitted" / "ada" / NAME
    folder.mkdir(parents=True)
    nbformat.write(submitted, folder / f"{NAME}.ipynb")
    scratch = root / "scratch"
    scratch.mkdir(mode=0o711)
    os.chmod(scratch, 0o711)
    isolation = probe_isolation(scratch, LIMITS, allow_unisolated=True)
    results = root / "results"
    grade(root / "submitted", results, jobs=1, limits=LIMITS, only=NAME, isolation=isolation)
    return results, isolation


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow                      # shares one real sandboxed grading run: ~30 s on 2 cores
def test_grades_csv_has_the_automatic_score_and_the_written_answers_pending(graded_batch):
    results, _ = graded_batch
    (row,) = rows(results / "grades.csv")
    assert list(row) == list(COLUMNS)
    assert {key: row[key] for key in COLUMNS[2:5] + COLUMNS[6:]} == {
        "score": "2", "max_score": "7", "status": "graded", "auto_score": "2", "auto_max": "2",
        "manual_score": "", "manual_max": "5", "manual_status": "pending"}, row
    page = (results / "feedback" / "ada" / NAME / f"{NAME}.html").read_text()
    assert "awaiting a person's grade" in page and "answer_why" in page and "Automatic score: 2 / 2" in page


@pytest.mark.slow                      # shares one real sandboxed grading run: ~30 s on 2 cores
def test_the_gradebook_holds_the_answers_as_needing_a_manual_grade(graded_batch):
    results, _ = graded_batch
    with Gradebook(database_url(results / "gradebook.db")) as book:
        answer = book.find_grade("answer_why", NAME, NAME, "ada")
        hidden = book.find_grade("hidden_interpolate", NAME, NAME, "ada")
        assert (answer.auto_score, answer.manual_score, answer.needs_manual_grade, answer.max_score) == \
            (None, None, True, 3.0)
        assert (hidden.auto_score, hidden.needs_manual_grade) == (2.0, False)
        assert book.find_submission(NAME, "ada").needs_manual_grade


@pytest.mark.slow                      # shares one real sandboxed grading run: ~30 s on 2 cores
def test_nbgraders_formgrader_lists_the_answer_and_renders_it_for_grading(graded_batch):
    """What the formgrader does, without a browser (before any manual grade is given below): its
    API on the gradebook (the submission that needs manual grading) and its ``formgrade`` page of
    the submitted notebook (the student's answer beside the score box of the answer's cell)."""
    results, _ = graded_batch
    course = CourseDirectory(root=str(results.parent), autograded_directory="submitted",
                             db_url=database_url(results / "gradebook.db"))
    (submission,) = NbGraderAPI(coursedir=course).get_notebook_submissions(NAME, NAME)
    assert (submission["student"], submission["needs_manual_grade"], submission["max_score"]) == ("ada", True, 7.0)
    exporter = HTMLExporter(template_name="formgrade", extra_template_basedirs=[formgrader_handlers.template_path])
    page, _ = exporter.from_filename(str(results.parent / "submitted" / "ada" / NAME / f"{NAME}.ipynb"), resources={
        "assignment_id": NAME, "notebook_id": NAME, "submission_id": submission["id"], "index": 0, "total": 1,
        "base_url": "", "student": "ada", "last_name": None, "first_name": None, "notebook_path": ""})
    assert WRITTEN in page and 'id="answer_why"' in page, "the answer beside its score box"


def give(results: Path, cell: str, points: float) -> None:
    """What a person does in the formgrader: a manual score on the answer's grade."""
    with Gradebook(database_url(results / "gradebook.db")) as book:
        grade_ = book.find_grade(cell, NAME, NAME, "ada")
        grade_.manual_score, grade_.needs_manual_grade = points, False
        book.db.commit()


@pytest.mark.slow                      # shares one real sandboxed grading run: ~30 s on 2 cores
def test_a_manual_grade_round_trips_through_the_gradebook_into_final_csv(graded_batch):
    results, isolation = graded_batch
    give(results, "answer_why", 2.5)
    assert cli.main(["merge-manual", str(results)]) == 0
    (row,) = rows(results / "final.csv")
    assert (row["score"], row["max_score"], row["manual_score"], row["manual_status"]) == ("4.5", "7", "2.5", "partial")
    give(results, "answer_ratio", 2)
    grade(results.parent / "submitted", results, jobs=1, limits=LIMITS, only=NAME, isolation=isolation)
    assert json.loads((results / "grading.json").read_text())["batch"]["kept"] == 1, "its result.json read back"
    (row,) = merge(results, results / "again.csv")
    assert (row["score"], row["manual_score"], row["manual_status"]) == ("6.5", "4.5", "graded"), \
        "grading again keeps the manual grades"
    assert rows(results / "grades.csv")[0]["manual_status"] == "pending", "grades.csv stays the automatic table"


ROW = {"student": "ada", "assignment": NAME, "score": "2", "max_score": "7", "status": "graded", "reason": "",
       "auto_score": "2", "auto_max": "2", "manual_score": "", "manual_max": "5", "manual_status": "pending"}


@pytest.mark.parametrize("scores, expected", [
    ({}, ("2", "", "pending")),
    ({"answer_why": None, "answer_ratio": None}, ("2", "", "pending")),
    ({"answer_why": 0.0, "answer_ratio": None}, ("2", "0", "partial")),
    ({"answer_why": 3.0, "answer_ratio": 1.25}, ("6.25", "4.25", "graded")),
], ids=["no_submission_in_gradebook", "pending", "partial", "graded"])
def test_merged_row_adds_the_manual_scores_given_so_far(scores, expected):
    row = merged_row(ROW, scores)
    assert (row["score"], row["manual_score"], row["manual_status"]) == expected
    assert {key: row[key] for key in ("max_score", "auto_score", "manual_max")} == {"max_score": "7", "auto_score": "2",
                                                                                    "manual_max": "5"}


def test_an_assignment_without_written_answers_has_none_to_merge():
    row = merged_row({**ROW, "max_score": "2", "manual_max": "0", "manual_status": "none"}, {})
    assert (row["score"], row["manual_score"], row["manual_status"]) == ("2", "", "none")


def test_the_gradebook_takes_answer_cells_added_after_a_submission_was_recorded(tmp_path):
    """A notebook given written answers after a first grading: the same gradebook takes them, pending."""
    path = tmp_path / "gradebook.db"
    first = Layout(NAME, {"hidden_interpolate": 2.0})
    write_scores(path, {NAME: first}, [GradedSubmission("ada", NAME, NAME, {"hidden_interpolate": 1.0})])
    later = Layout(NAME, {"hidden_interpolate": 2.0}, {"answer_why": 3.0})
    write_scores(path, {NAME: later}, [GradedSubmission("ada", NAME, NAME, {"hidden_interpolate": 2.0})])
    with Gradebook(database_url(path)) as book:
        answer = book.find_grade("answer_why", NAME, NAME, "ada")
        assert (answer.needs_manual_grade, answer.max_score, book.find_grade("hidden_interpolate", NAME, NAME,
                                                                            "ada").auto_score) == (True, 3.0, 2.0)
        assert book.find_comment("answer_why", NAME, NAME, "ada") is not None, "the formgrader's comment box"
    assert manual_scores(path) == {("ada", NAME): {"answer_why": None}}



def test_the_gradebook_records_each_answer_cell_as_the_kind_of_cell_it_is(tmp_path):
    """A derivation in code is a code cell in nbgrader's gradebook (the formgrader shows it so)."""
    path = tmp_path / "gradebook.db"
    layout = Layout(NAME, {"hidden_interpolate": 2.0}, {"answer_why": 3.0, "answer_code": 1.0}, frozenset({"answer_code"}))
    write_scores(path, {NAME: layout}, [GradedSubmission("ada", NAME, NAME, {"hidden_interpolate": 1.0})])
    with Gradebook(database_url(path)) as book:
        kinds = {cell: book.find_grade_cell(cell, NAME, NAME).cell_type
                 for cell in ("hidden_interpolate", "answer_why", "answer_code")}
    assert kinds == {"hidden_interpolate": "code", "answer_why": "markdown", "answer_code": "code"}


def test_code_answer_ids_are_the_answer_cells_that_are_code():
    cells = [nbformat.v4.new_markdown_cell("why", metadata={"nbgrader": {"grade": True, "solution": True,
                                                                          "grade_id": "answer_why", "points": 2}}),
             nbformat.v4.new_code_cell("x = 1", metadata={"nbgrader": {"grade": True, "solution": True,
                                                                        "grade_id": "answer_code", "points": 1}}),
             nbformat.v4.new_code_cell("", metadata={"nbgrader": {"grade": True, "solution": False,
                                                                   "grade_id": "hidden_f", "points": 1}})]
    assert code_answer_ids(nbformat.v4.new_notebook(cells=cells)) == {"answer_code"}


def test_merge_manual_explains_a_folder_that_is_no_results_folder(tmp_path, capsys):
    assert cli.main(["merge-manual", str(tmp_path)]) == 2
    assert "grades.csv is missing" in capsys.readouterr().err
    (tmp_path / "grades.csv").write_text("student,assignment,score,max_score,status,reason\nada,01_a,1,2,graded,\n")
    write_scores(tmp_path / "gradebook.db", {}, [])
    assert cli.main(["merge-manual", str(tmp_path)]) == 2
    assert "lacks the columns ['auto_score'" in capsys.readouterr().err, "a grades.csv of an older flowlab grade"


def test_flowlab_grade_says_what_is_left_for_people(tmp_path):
    pending = Result("ada", NAME, "graded", manual={"answer_why": 3.0, "answer_ratio": 2.0})
    line = written_answers_line([pending, Result("bo", "02_b", "graded")], tmp_path)
    assert "written answers of 1 submissions (5 points)" in line and f"flowlab merge-manual {tmp_path}" in line
    assert written_answers_line([Result("bo", "02_b", "graded")], tmp_path) == ""
