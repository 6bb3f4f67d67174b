"""Bulk downloads of Canvas and Moodle, and a student folder without the assignment's folder.

Names and choices here (no kernels); the end-to-end batch (``test_grading_end_to_end.py``)
grades a Canvas resubmission, a Moodle folder and a loose notebook for real.
"""
from pathlib import Path

import nbformat
import pytest

from flowlab_grader import lms, submissions

KNOWN = ["01_a", "02_b"]


def notebook(text: str) -> bytes:
    return nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(text)])).encode()


def graded(folder: Path, only: str | None = None) -> dict[tuple[str, str], str]:
    """``{(student, assignment): the code graded, or the problem}``."""
    found = {}
    for submission in submissions.discover(folder, KNOWN, only):
        code = nbformat.reads(submission.notebook.decode(), as_version=4).cells[0].source if submission.notebook else ""
        found[(submission.student, submission.assignment)] = code or submission.problem
    return found


@pytest.mark.parametrize("name, expected", [
    ("01_a.ipynb", ("01_a.ipynb", 0)), ("01_a-1.ipynb", ("01_a.ipynb", 1)), ("01_a-12.ipynb", ("01_a.ipynb", 12)),
    ("01_a (2).ipynb", ("01_a.ipynb", 2)), ("my-notes.ipynb", ("my-notes.ipynb", 0)), ("-1.ipynb", ("-1.ipynb", 0)),
])
def test_a_resubmission_suffix_is_split_from_the_name(name, expected):
    assert lms.resubmission(name) == expected


@pytest.mark.parametrize("file, student, name, rank", [
    ("doejane_12345_678901_01_a.ipynb", "doejane_12345", "01_a.ipynb", (678901, 0)),
    ("doejane_LATE_12345_678901_01_a-2.ipynb", "doejane_12345", "01_a.ipynb", (678901, 2)),
    ("doejane_late_12345_678901_my_file.ipynb", "doejane_12345", "my_file.ipynb", (678901, 0)),
])
def test_canvas_names_give_student_file_and_rank(tmp_path, file, student, name, rank):
    upload = lms.canvas_upload(tmp_path / file)
    assert (upload.student, upload.name, upload.rank) == (student, name, rank)


@pytest.mark.parametrize("file", ["alice", "01_a.ipynb", "doejane_x_1_01_a.ipynb", "doejane_12_x_01_a.ipynb"])
def test_other_names_are_not_canvas_uploads(tmp_path, file):
    assert lms.canvas_upload(tmp_path / file) is None


@pytest.mark.parametrize("person, number, key", [
    ("Jane Doe", "12345", "Jane-Doe_12345"), ("José Núñez", "7", "Jose-Nunez_7"), ("李雷", "8", "student_8"),
    ("O'Brien, Pat", "9", "O-Brien-Pat_9"),
])
def test_student_keys_are_safe_folder_names_made_unique_by_the_number(person, number, key):
    assert lms.student_key(person, number) == key
    assert submissions.STUDENT_ID.match(key)


def test_a_canvas_download_grades_the_newest_upload_of_each_student(tmp_path):
    (tmp_path / "doejane_12345_678901_01_a.ipynb").write_bytes(notebook("first"))
    (tmp_path / "doejane_LATE_12345_678901_01_a-1.ipynb").write_bytes(notebook("second"))
    (tmp_path / "doejane_LATE_12345_678901_01_a-2.ipynb").write_bytes(notebook("third"))
    (tmp_path / "roebo_222_678902_02_b.ipynb").write_bytes(notebook("bo's b"))
    (tmp_path / "roebo_222_678902_readme.txt").write_text("not a notebook")
    (tmp_path / "smithcy_333_678903_homework.ipynb").write_bytes(notebook("cy's"))
    assert graded(tmp_path) == {
        ("doejane_12345", "01_a"): "third", ("roebo_222", "02_b"): "bo's b",
        ("smithcy_333", "?"): "no known assignment is named by homework.ipynb: pass --assignment"}
    assert graded(tmp_path, only="01_a") == {
        ("doejane_12345", "01_a"): "third", ("roebo_222", "01_a"): "missing: nothing submitted",
        ("smithcy_333", "01_a"): "cy's"}


def test_a_moodle_download_in_folders_or_flat_grades_each_students_notebook(tmp_path):
    jane = tmp_path / "Jane Doe_12345_assignsubmission_file_"
    jane.mkdir()
    (jane / "01_a.ipynb").write_bytes(notebook("jane old"))
    (jane / "01_a (1).ipynb").write_bytes(notebook("jane new"))
    (tmp_path / "Jane Doe_12345_assignsubmission_onlinetext_").mkdir()
    (tmp_path / "Jane Doe_12345_assignsubmission_onlinetext_" / "onlinetext.html").write_text("<p>hi</p>")
    (tmp_path / "Bo Roe_222_assignsubmission_file_").mkdir()
    (tmp_path / "Cy Smith_333_assignsubmission_file_renamed.ipynb").write_bytes(notebook("cy flat"))
    assert graded(tmp_path, only="01_a") == {
        ("Jane-Doe_12345", "01_a"): "jane new", ("Bo-Roe_222", "01_a"): "missing: nothing submitted",
        ("Cy-Smith_333", "01_a"): "cy flat"}


def test_two_different_notebooks_of_one_student_are_a_problem_not_a_guess(tmp_path):
    (tmp_path / "doejane_1_2_part1.ipynb").write_bytes(notebook("1"))
    (tmp_path / "doejane_1_2_part2.ipynb").write_bytes(notebook("2"))
    assert graded(tmp_path, only="01_a")[("doejane_1", "01_a")].startswith("several notebooks, none named 01_a.ipynb")


def test_a_linked_upload_is_not_followed(tmp_path):
    (tmp_path / "secret.ipynb").write_bytes(notebook("not theirs"))
    (tmp_path / "doejane_1_2_01_a.ipynb").symlink_to(tmp_path / "secret.ipynb")
    assert "not a regular file" in graded(tmp_path)[("doejane_1", "01_a")]


def test_a_student_folder_without_the_assignment_folder_is_graded(tmp_path):
    (tmp_path / "ada").mkdir()
    (tmp_path / "ada" / "01_a.ipynb").write_bytes(notebook("ada's a"))
    (tmp_path / "bo").mkdir()
    (tmp_path / "bo" / "whatever.ipynb").write_bytes(notebook("bo's"))
    (tmp_path / "cy" / "01_a").mkdir(parents=True)
    (tmp_path / "cy" / "01_a" / "01_a.ipynb").write_bytes(notebook("cy in its folder"))
    (tmp_path / "cy" / "01_a.ipynb").write_bytes(notebook("cy loose"))
    (tmp_path / "dee").mkdir()
    assert graded(tmp_path, only="01_a") == {
        ("ada", "01_a"): "ada's a", ("bo", "01_a"): "bo's", ("cy", "01_a"): "cy in its folder",
        ("dee", "01_a"): "missing: nothing submitted"}
    assert graded(tmp_path) == {("ada", "01_a"): "ada's a", ("cy", "01_a"): "cy in its folder"}
