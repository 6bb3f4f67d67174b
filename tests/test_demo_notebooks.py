"""The lecture demo notebooks (``notebooks/demos/``) run top to bottom in a real kernel.

Each runs as ``flowlab rehearse`` runs a notebook: the executor in a child process of its own
(``run_executor``: own process group, no standard input), in an empty folder, against the full
library. The demos are committed without outputs and each has at least one widget.

A widget's figures and errors go into its ``Output`` widget, not into the cell's outputs (an
exception inside ``interact`` is shown there and never fails the cell; the executor reports it as
``widget: <name>``). To check that every widget also drew its figure, the test runs a copy with
one probe cell appended: it reads every ``Output`` widget in the kernel (the executor syncs their
outputs back to it), prints a summary and re-displays their PNGs as its own outputs, where the
executed notebook keeps them.
"""
import json
import os
import shutil

import nbformat
import pytest

from flowlab_grader.course import repository_dir
from flowlab_grader.rehearse import run_executor

DEMOS = repository_dir() / "notebooks" / "demos"
NAMES = ("samplers", "guidance", "inversion_and_conditioning")
PROBE = """import json
from IPython.display import display
from ipywidgets import Output
from ipywidgets.widgets.widget import _instances

_widget_outputs = [o for w in list(_instances.values()) if isinstance(w, Output) for o in w.outputs]
for _o in _widget_outputs:
    if "image/png" in _o.get("data", {}):
        display({"image/png": _o["data"]["image/png"]}, raw=True)
print("PROBE " + json.dumps({"images": sum("image/png" in o.get("data", {}) for o in _widget_outputs),
                             "errors": [o.get("ename", "") for o in _widget_outputs if o.get("output_type") == "error"]}))"""


@pytest.mark.parametrize("name", NAMES)
def test_demo_is_committed_clean_and_has_a_widget(name):
    notebook = nbformat.read(DEMOS / f"{name}.ipynb", as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in code), f"{name}: outputs committed"
    assert any("widgets." in cell.source for cell in code), f"{name}: no widgets. control"
    assert notebook.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_demo_runs_top_to_bottom(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                  # the kernel's ipc sockets go to the cwd
    notebook = nbformat.read(DEMOS / f"{name}.ipynb", as_version=4)
    widget_cells = sum("widgets.interact(" in cell.source for cell in notebook.cells)
    notebook.cells.append(nbformat.v4.new_code_cell(PROBE, id="probe"))
    nbformat.write(notebook, tmp_path / f"{name}.ipynb")
    environment = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    result, seconds, log = run_executor(tmp_path / f"{name}.ipynb", environment, cell_timeout=120,
                                        notebook_timeout=300, keep_outputs=True)
    assert result is not None, log
    print(f"{name}: {seconds:.1f} s, {result}")
    assert result["status"] == "ok" and not result["errors"], f"{name}: {result}\n{log}"
    executed = nbformat.read(tmp_path / "executed.ipynb", as_version=4)
    probe = "".join(output.get("text", "") for output in executed.cells[-1].outputs if output.output_type == "stream")
    summary = json.loads(probe.split("PROBE ", 1)[1])
    print(f"{name}: widget outputs {summary}")
    assert not summary["errors"], f"{name}: a widget's function raised: {summary['errors']}"
    assert summary["images"] >= widget_cells > 0, f"{name}: {widget_cells} widgets drew {summary['images']} figures"
    keep = os.environ.get("FLOWLAB_KEEP_DEMOS")
    if keep:
        os.makedirs(keep, exist_ok=True)
        shutil.copy2(tmp_path / "executed.ipynb", os.path.join(keep, f"{name}.ipynb"))
