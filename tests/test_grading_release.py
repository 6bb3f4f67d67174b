"""The student release: built by real nbgrader, stubs what is due, leaks nothing; notebooks/ is current."""
import ast
import json
import shutil
import subprocess
import sys

import nbformat
import pytest

from flowlab import cli
from flowlab_grader.cases import graded_functions, load_cases
from flowlab_grader import leaks, stubs
from flowlab_grader.course import assignments, library_dir, library_file
from flowlab_grader.leaks import check_leaks
from flowlab_grader.release import build_library, build_release, student_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("release") / "bundle"
    manifest = build_release(out)
    return out, manifest


def imported_packages(path) -> set[str]:
    """The top-level packages that the Python file at ``path`` imports anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found


def test_the_bundle_has_the_notebooks_the_library_and_the_public_data(bundle):
    out, manifest = bundle
    names = [a.notebook_name for a in assignments()]
    assert manifest["notebooks"] == names and manifest["through"] == f"{assignments()[-1].number:02d}"
    assert all((out / "notebooks" / name).is_file() for name in names)
    assert (out / "data" / "public" / "01_flow_matching.npz").is_file()
    assert (out / "data" / "checkpoints" / "moons.safetensors").stat().st_mode & 0o044 == 0o044, "readable by all"
    assert (out / "flowlab" / "runtime" / "hidden.py").is_file(), "hidden test cells need it when graded"
    library = {path.relative_to(library_dir()) for path in library_dir().rglob("*.py")}
    assert {path.relative_to(out / "flowlab") for path in (out / "flowlab").rglob("*.py")} == library, \
        "the flowlab package is copied whole"
    assert not list(out.rglob("flowlab_grader")), "the grader stays home"
    assert not [path for path in out.rglob("*.py") if "flowlab_grader" in imported_packages(path)]
    assert json.loads((out / "release.json").read_text()) == manifest


def test_stubbed_functions_raise_and_say_where_they_are_implemented(bundle):
    out, manifest = bundle
    last = assignments()[-1]
    assert set(manifest["stubbed"]) == {function.library for function in load_cases(last).functions}
    module, _, name = manifest["stubbed"][0].partition(":")
    code = (f"import inspect, torch, {module} as m, flowlab.paths as p\n"
            f"required = [q for q in inspect.signature(m.{name}).parameters.values() if q.default is q.empty]\n"
            f"try:\n    m.{name}(*[None] * len(required))\n"
            "except NotImplementedError as e:\n    print('stub:', e)\n"
            "print(p.interpolate(torch.zeros(1, 2), torch.ones(1, 2), 0.5).tolist())")
    result = subprocess.run([sys.executable, "-c", code], cwd=out, env={"PYTHONPATH": str(out), "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, timeout=120)
    assert f"stub: implemented in notebook {last.name}" in result.stdout, result.stderr
    assert "[[0.5, 0.5]]" in result.stdout, "functions of notebooks past their deadline are back in the library"


@pytest.mark.parametrize("through", assignments(), ids=[a.name for a in assignments()])
def test_a_release_through_any_notebook_leaks_nothing(through, tmp_path):
    """What ``flowlab release --through NN`` ships, for every NN (notebooks from notebooks/, which
    the test below proves current): the stubbed library, the released notebooks, the public data."""
    student_bundle(through, tmp_path)
    (tmp_path / "notebooks").mkdir()
    for assignment in [a for a in assignments() if a.number <= through.number]:
        shutil.copy2(assignment.student_notebook, tmp_path / "notebooks")
    assert check_leaks(tmp_path, stub_from=through.number) == []


def test_the_bundle_leaks_nothing(bundle):
    out, _ = bundle
    assert check_leaks(out, stub_from=assignments()[-1].number) == []


def test_the_leak_check_finds_planted_leaks(bundle, tmp_path):
    out, _ = bundle
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    assignment = assignments()[0]
    shutil.copy2(assignment.references_file, copy / "data" / "stolen.npz")
    notebook = copy / "notebooks" / assignment.notebook_name
    notebook.write_text(notebook.read_text().replace("# YOUR CODE HERE", "### BEGIN SOLUTION"))
    paths = copy / "flowlab" / "paths.py"
    paths.write_text(paths.read_text() + "\n# return (1 - t) * x0 + t * x1\n")
    problems = "\n".join(check_leaks(copy, stub_from=assignment.number))
    assert "stolen.npz: a copy of references/01_flow_matching.npz" in problems
    assert "stolen.npz: an array file outside data/public" in problems
    assert "contains '### BEGIN SOLUTION'" in problems
    assert "flowlab/paths.py: contains the solution line 'return (1 - t) * x0 + t * x1'" in problems


def test_stubs_keep_the_signature_and_point_to_the_notebook_instead_of_the_docstring(bundle, tmp_path):
    out, manifest = bundle
    last = assignments()[-1]
    for entry in manifest["stubbed"]:
        module, _, name = entry.partition(":")
        original, copy = library_file(module), out / library_file(module).relative_to(library_dir().parent)
        assert stubs.function_docstring(copy.read_text(), name).startswith(
            f"Implemented by you in notebook {last.name}"), f"{entry}: the docstring must point to the notebook"
        signature = [ast.dump(node.args) for path in (original, copy) for node in ast.parse(path.read_text()).body
                     if isinstance(node, ast.FunctionDef) and node.name == name]
        assert signature[0] == signature[1], f"{entry}: the stub keeps the signature"
    module, _, name = manifest["stubbed"][0].partition(":")
    planted = tmp_path / "copy"
    shutil.copytree(out, planted)
    line = next(line for line in stubs.function_docstring(library_file(module).read_text(), name).splitlines()
                if line in leaks.docstring_lines(last.number))
    (planted / "flowlab" / "notes.py").write_text(f"# {line}\n")
    assert f"flowlab/notes.py: contains a line of {name}'s library docstring" in "\n".join(
        check_leaks(planted, stub_from=last.number))


def test_committed_student_notebooks_are_up_to_date(bundle):
    """notebooks/ must equal what nbgrader generates now: run `flowlab release --notebooks`."""
    out, _ = bundle
    for assignment in assignments():
        generated = nbformat.read(out / "notebooks" / assignment.notebook_name, as_version=4)
        committed = nbformat.read(assignment.student_notebook, as_version=4)
        assert committed == generated, f"{assignment.student_notebook} is stale: run `flowlab release --notebooks`"
        assert all(not cell.get("outputs") for cell in committed.cells if cell.cell_type == "code")


def test_through_a_later_notebook_stubs_only_what_is_due(tmp_path):
    last = assignments()[-1].number
    assert graded_functions(last + 1) == []
    assert build_library(tmp_path, stub_from=last + 1) == []
    assert "raise NotImplementedError" not in (tmp_path / "flowlab" / "paths.py").read_text()


def test_release_into_a_non_empty_folder_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "something").write_text("x")
    assert cli.main(["release", "--out", str(tmp_path)]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
