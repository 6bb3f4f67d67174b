"""``flowlab release``: the student bundle, and the student notebooks in ``notebooks/``.

    flowlab release --out DIR [--through NN]

    DIR/notebooks/NN_name.ipynb    student versions of assignments 01..NN (nbgrader generate_assignment:
                                   no solutions, no hidden tests, no outputs)
    DIR/flowlab/                   the whole library (its kernel-side runtime ``flowlab.runtime``
                                   included), with every function graded in notebook NN or later
                                   stubbed: its signature kept, its docstring replaced by where the
                                   student writes it (``stub_pointer``) and its body by
                                   ``raise NotImplementedError("implemented in notebook ...")``
    DIR/data/                      checkpoints and the public references of the released notebooks
    DIR/pyproject.toml, environment.yml, README.md, release.json (what was stubbed)

``--through NN`` (default: the last notebook) releases notebooks up to NN; notebooks before NN
are past their deadline, so their functions are back in the library for later notebooks to use.
The grader runs each submission of assignment NN against the bundle stubbed from NN on, so a
student's code sees exactly the library they had. ``check_leaks`` proves the bundle hides what
it must; ``build_release`` refuses to finish when it finds a leak. The grader itself
(``flowlab_grader``, in ``autograder/``) is a package of its own and never part of a bundle.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat

from flowlab_grader.cases import graded_functions
from flowlab_grader.course import (Assignment, assignments, course_dir, library_dir, library_file, notebooks_dir,
                                   repository_dir)
from flowlab_grader.gradebook import database_url
from flowlab_grader.leaks import check_leaks
from flowlab_grader.stubs import stub_function

TOP_LEVEL_FILES = ("pyproject.toml", "environment.yml")
BUNDLE_SETUP_DIR = Path(__file__).resolve().parents[1] / "bundle"   # autograder/bundle: copied as they are


SECTION_HEADING = re.compile(r"\s*#{1,3}\s*(\d+)\.")


def stub_pointer(assignment: Assignment, name: str) -> str:
    """The docstring of a stubbed function: where the student writes it, e.g. ``Implemented by you in
    notebook 03_stochastic_samplers, section 2 (euler_maruyama_step).`` (the section: the last
    numbered heading, ``## 2. ...``, above the solution cell that defines it)."""
    section = None
    for cell in nbformat.read(assignment.source_notebook, as_version=4).cells:
        heading = SECTION_HEADING.match(cell.source) if cell.cell_type == "markdown" else None
        section = heading.group(1) if heading else section
        if cell.cell_type == "code" and re.search(rf"^def {re.escape(name)}\(", cell.source, re.M):
            break
    where = f"notebook {assignment.name}" + (f", section {section}" if section else "")
    return f"Implemented by you in {where} ({name})."


def build_library(destination: Path, stub_from: int) -> list[str]:
    """Copy the whole flowlab package to ``destination/flowlab`` and stub the functions graded from
    notebook ``stub_from`` on; returns ``["module:function", ...]``."""
    target = destination / "flowlab"
    shutil.copytree(library_dir(), target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    stubbed = []
    for module, name, assignment in graded_functions(stub_from):
        path = target / library_file(module).relative_to(library_dir())
        path.write_text(stub_function(path.read_text(), name, f"implemented in notebook {assignment.name}",
                                      stub_pointer(assignment, name)))
        stubbed.append(f"{module}:{name}")
    return stubbed


def copy_data(destination: Path, released: list[Assignment]) -> None:
    """Checkpoints and the released notebooks' public references into ``destination/data``."""
    data = repository_dir() / "data"
    if (data / "checkpoints").is_dir():
        shutil.copytree(data / "checkpoints", destination / "data" / "checkpoints")
    public = destination / "data" / "public"
    public.mkdir(parents=True, exist_ok=True)
    for assignment in released:
        for suffix in (".npz", ".json"):
            source = assignment.public_file.with_suffix(suffix)
            if source.is_file():
                shutil.copy2(source, public / source.name)


def make_readable(folder: Path) -> None:
    """Folders 0755 and files 0644 under ``folder`` (some writers create 0600 files, e.g. checkpoints;
    the sandboxed user and the students must be able to read everything in a bundle)."""
    os.chmod(folder, 0o755)
    for path in folder.rglob("*"):
        if not path.is_symlink():
            os.chmod(path, 0o755 if path.is_dir() else 0o644)


def student_bundle(assignment: Assignment, folder: Path) -> Path:
    """The library and data a student of ``assignment`` has: functions of it and later notebooks
    stubbed, the checkpoints and the public references of notebooks up to it (readable by all)."""
    build_library(folder, stub_from=assignment.number)
    copy_data(folder, [a for a in assignments() if a.number <= assignment.number])
    make_readable(folder)
    return folder


def generate_student_notebooks(selected: list[Assignment], destination: Path,
                               gradebook: Path | None = None) -> list[Path]:
    """Run ``nbgrader generate_assignment`` (on a temporary copy of the course, so that no gradebook
    or release folder appears in ``autograder/``) and copy the student notebooks to ``destination``.

    nbgrader records every instructor cell (source, checksum, points) in a gradebook as it goes;
    with ``gradebook`` that SQLite file is kept there (grading restores cells from it), else it is
    thrown away with the scratch copy."""
    destination.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory(prefix="flowlab-nbgrader-") as scratch:
        root = Path(scratch)
        shutil.copy2(course_dir() / "nbgrader_config.py", root / "nbgrader_config.py")
        environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        database = database_url(gradebook if gradebook is not None else root / "gradebook.db")
        for assignment in selected:
            shutil.copytree(assignment.source_notebook.parent, root / "source" / assignment.name,
                            ignore=shutil.ignore_patterns(".ipynb_checkpoints", "*.py", "__pycache__"))
            result = subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", assignment.name,
                                     "--force", "--log-level=WARN", f"--db={database}"], cwd=root, env=environment,
                                    capture_output=True, text=True)
            generated = root / "release" / assignment.name / assignment.notebook_name
            if result.returncode != 0 or not generated.is_file():
                raise RuntimeError(f"nbgrader generate_assignment {assignment.name} failed:\n{result.stderr[-2000:]}")
            target = destination / assignment.notebook_name
            shutil.copy2(generated, target)
            written.append(target)
    return written


def build_gradebook(selected: list[Assignment], folder: Path) -> str:
    """The gradebook of ``selected`` assignments, as ``generate_assignment`` writes it, in
    ``folder/gradebook.db`` (the student notebooks beside it in ``folder/release``); its URL.
    The gradebook holds the solution cells' source, so ``folder`` is the owner's alone (0700)."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    generate_student_notebooks(selected, folder / "release", gradebook=folder / "gradebook.db")
    return database_url(folder / "gradebook.db")


def update_notebooks(only: list[Assignment] | None = None) -> list[Path]:
    """Regenerate the committed student notebooks in ``notebooks/`` from ``autograder/source``
    (every assignment, or those in ``only``)."""
    return generate_student_notebooks(assignments() if only is None else only, notebooks_dir())


def _released(through: int | None) -> list[Assignment]:
    known = assignments()
    if not known:
        raise FileNotFoundError(f"no source notebooks in {course_dir() / 'source'}")
    last = known[-1].number if through is None else through
    selected = [assignment for assignment in known if assignment.number <= last]
    if not selected or last not in {assignment.number for assignment in known}:
        raise ValueError(f"--through {through}: no notebook with that number; known: {[a.name for a in known]}")
    return selected


def build_release(out: Path, through: int | None = None) -> dict:
    """Build the student bundle in ``out`` (which must not exist or be empty); returns the manifest."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} exists and is not empty; choose a new folder")
    released = _released(through)
    last = released[-1].number
    out.mkdir(parents=True, exist_ok=True)
    notebooks = generate_student_notebooks(released, out / "notebooks")
    stubbed = build_library(out, stub_from=last)
    copy_data(out, released)
    for name in TOP_LEVEL_FILES:
        if (repository_dir() / name).is_file():
            shutil.copy2(repository_dir() / name, out / name)
    for template in sorted(BUNDLE_SETUP_DIR.iterdir()):   # README.md and Makefile: the students' CPU-first setup
        shutil.copy2(template, out / template.name)
    make_readable(out)
    manifest = {"through": f"{last:02d}", "notebooks": [path.name for path in notebooks], "stubbed": stubbed}
    (out / "release.json").write_text(json.dumps(manifest, indent=1) + "\n")
    problems = check_leaks(out, stub_from=last)
    if problems:
        raise RuntimeError("the release leaks:\n" + "\n".join(problems))
    return manifest
