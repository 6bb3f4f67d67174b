"""Every solution notebook runs top to bottom in a real kernel against its student release.

Grading mode (``tests/test_grading_end_to_end.py``) skips the exploration; this runs all of it:
plots, widgets, and training cells (in quick mode, ``FLOWLAB_QUICK=1``: a cell that trains for a
minute, as in notebook 04, takes a few steps). It uses the library a student of that
notebook has (functions graded in this notebook and later ones stubbed), so a notebook whose
experiments call a function the student has not written yet fails here. The time of each run is
measured by ``flowlab rehearse`` (a table in the README), not asserted.
"""
import shutil

import nbformat
import pytest

from flowlab_grader.course import assignments, repository_dir
from flowlab_grader.rehearse import rehearse, table

ASSIGNMENTS = assignments()


@pytest.mark.slow
@pytest.mark.parametrize("assignment", ASSIGNMENTS, ids=[a.name for a in ASSIGNMENTS])
def test_solution_runs_top_to_bottom_against_the_student_release(assignment, monkeypatch):
    monkeypatch.setenv("FLOWLAB_QUICK", "1")      # training cells take a few steps (flowlab.runtime.quick_mode)
    result = rehearse(assignment, grading=False)
    print(table([result]))
    assert result.ok, f"{assignment.name}: {result.status}; cell errors: {result.errors}"


@pytest.mark.slow
def test_a_notebook_that_uses_a_stubbed_library_function_fails_its_rehearsal(tmp_path, monkeypatch):
    """The check can fail: notebook 01 calling the library's interpolate (stubbed for its students)."""
    course = tmp_path / "autograder"
    shutil.copytree(repository_dir() / "autograder", course)
    (tmp_path / "data").symlink_to(repository_dir() / "data")
    monkeypatch.setenv("FLOWLAB_COURSE", str(course))
    first = assignments()[0]
    notebook = nbformat.read(first.source_notebook, as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell(
        "import torch\nfrom flowlab.paths import interpolate as library_interpolate\n"
        "library_interpolate(torch.zeros(1, 2), torch.ones(1, 2), 0.5)", id="uses_a_stub"))
    nbformat.write(notebook, first.source_notebook)
    result = rehearse(first, grading=True)
    assert not result.ok and any(error.startswith("uses_a_stub: NotImplementedError") for error in result.errors), result


@pytest.mark.slow
def test_an_error_inside_a_widget_is_reported(tmp_path, monkeypatch):
    """``interact`` shows its function's exception in an Output widget, not in the cell: the
    executor must still report it, or a broken slider would pass unnoticed."""
    from flowlab.runtime.execute import execute

    notebook = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                 "language": "python"}})
    notebook.cells = [nbformat.v4.new_code_cell("import ipywidgets as widgets\n"
                                                "widgets.interact(lambda x: 1 / x, x=widgets.IntSlider(value=0))",
                                                id="slider")]
    nbformat.write(notebook, tmp_path / "widget.ipynb")
    monkeypatch.chdir(tmp_path)
    result = execute(tmp_path / "widget.ipynb", cell_timeout=60, notebook_timeout=120)
    assert {"cell": "slider", "error": "widget: ZeroDivisionError"} in result["errors"], result
