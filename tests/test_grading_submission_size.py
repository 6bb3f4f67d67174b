"""A notebook heavy with saved outputs is graded: outputs are dropped as it is read, and the size
limit is on the cells' source (``flowlab_grader.submissions``)."""
import base64
import json
import zipfile

import nbformat
import pytest

from flowlab_grader import overwrite, submissions
from flowlab_grader.course import assignments

ASSIGNMENT = next(a for a in assignments() if a.name == "01_flow_matching")
OUTPUT_BYTES = 150 * 10**6          # what many large figures weigh


def heavy_solution() -> nbformat.NotebookNode:
    """The source notebook of 01 (a correct submission) with ~150 MB of saved figures and counts."""
    notebook = nbformat.read(ASSIGNMENT.source_notebook, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    figure = base64.b64encode(b"\x89PNG" + bytes(OUTPUT_BYTES * 3 // 4 // len(code))).decode()
    for count, cell in enumerate(code, start=1):
        cell.execution_count = count
        cell.outputs = [nbformat.v4.new_output("display_data", data={"image/png": figure, "text/plain": "<Figure>"})]
    return notebook


@pytest.fixture(scope="module")
def heavy_bytes() -> bytes:
    data = json.dumps(heavy_solution(), indent=1).encode()      # nbformat.writes would validate 150 MB
    assert len(data) > 140 * 10**6
    return data


def _sources(notebook) -> list[str]:
    return [cell.source for cell in notebook.cells]


@pytest.mark.parametrize("packed", ["folder", "zip"])
def test_a_notebook_heavy_with_outputs_is_read_without_them(tmp_path, heavy_bytes, packed):
    name = ASSIGNMENT.name
    if packed == "folder":
        (tmp_path / "alice" / name).mkdir(parents=True)
        (tmp_path / "alice" / name / f"{name}.ipynb").write_bytes(heavy_bytes)
    else:
        with zipfile.ZipFile(tmp_path / "alice.zip", "w") as archive:
            archive.writestr(f"{name}/{name}.ipynb", heavy_bytes)
    (found,) = submissions.discover(tmp_path, [name])
    assert found.problem == "" and found.notebook is not None
    assert len(found.notebook) < 10**6, "the outputs must be gone"
    read = nbformat.reads(found.notebook.decode(), as_version=4)
    nbformat.validate(read)
    original = nbformat.read(ASSIGNMENT.source_notebook, as_version=4)
    assert _sources(read) == _sources(original)
    assert all(cell.outputs == [] and cell.execution_count is None for cell in read.cells if cell.cell_type == "code")
    assert _sources(overwrite.read_submission(found.notebook)) == _sources(original)   # grading's next step


def test_a_notebook_without_outputs_is_passed_on_byte_for_byte():
    data = nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])).encode()
    assert submissions.without_outputs(data) == (data, "")


def test_the_limit_is_on_the_source():
    big = "# " + "x" * (submissions.MAX_SOURCE_BYTES + 10)
    data = nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(big)])).encode()
    notebook, problem = submissions.without_outputs(data)
    assert notebook is None and "code and text" in problem and "outputs do not count" in problem


def test_what_is_not_a_notebook_passes_unchanged_when_small():
    assert submissions.without_outputs(b"not json") == (b"not json", "")
