"""Where the course lives: the nbgrader course folder, its assignments and their files.

    autograder/                           the nbgrader course (instructor only, never released)
      flowlab_grader/                     this package: the grader
      nbgrader_config.py
      source/NN_name/NN_name.ipynb        instructor notebooks: solutions + hidden tests
      cases/NN_name.py                    hidden and public test cases, graded functions
      references/NN_name.npz, .json       hidden inputs and float64 expected outputs
    data/public/NN_name.npz, .json        public inputs and outputs (the students' public tests)
    notebooks/NN_name.ipynb               student versions, generated from source/

An assignment is named ``NN_name`` (``01_flow_matching``): its number ``NN`` orders the course, and
``--through NN`` in ``flowlab release`` refers to it. The notebook inside has the same name.
The grader lives inside the course it grades, so the course folder is the one that holds this
package (``autograder/``) unless ``FLOWLAB_COURSE`` names another; the repository is its parent.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import flowlab

ASSIGNMENT_NAME = re.compile(r"^(\d\d)_[a-z0-9_]+$")
GRADER_COURSE = Path(__file__).resolve().parents[1]


def course_dir() -> Path:
    """The nbgrader course folder: ``$FLOWLAB_COURSE`` or the ``autograder/`` that holds this package."""
    override = os.environ.get("FLOWLAB_COURSE")
    return Path(override).resolve() if override else GRADER_COURSE


def repository_dir() -> Path:
    """The folder that holds ``autograder/``, ``data/``, ``notebooks/`` and ``flowlab/``."""
    return course_dir().parent


def library_dir() -> Path:
    """The instructor's ``flowlab`` package folder (the one that the release copies and stubs)."""
    return Path(flowlab.__file__).resolve().parent


def library_file(module: str) -> Path:
    """The source file of a library module: ``"flowlab.paths" -> .../flowlab/paths.py``."""
    return library_dir().joinpath(*module.split(".")[1:]).with_suffix(".py")


def public_dir() -> Path:
    """Where public references live: ``data/public/`` (shipped with the release)."""
    return repository_dir() / "data" / "public"


def notebooks_dir() -> Path:
    """Where the student versions of the notebooks are committed: ``notebooks/``."""
    return repository_dir() / "notebooks"


def assignment_number(name: str) -> int:
    """``"01_flow_matching" -> 1``; a ``ValueError`` for a name that is not ``NN_lowercase_words``."""
    match = ASSIGNMENT_NAME.match(name) if isinstance(name, str) else None
    if not match:
        raise ValueError(f"an assignment name must look like 'NN_words' (e.g. '01_flow_matching'), got {name!r}")
    return int(match.group(1))


@dataclass(frozen=True)
class Assignment:
    """One assignment of the course and the paths of its files (which need not exist yet)."""
    name: str

    @property
    def number(self) -> int:
        return assignment_number(self.name)

    @property
    def notebook_name(self) -> str:
        return f"{self.name}.ipynb"

    @property
    def source_notebook(self) -> Path:
        return course_dir() / "source" / self.name / self.notebook_name

    @property
    def cases_file(self) -> Path:
        return course_dir() / "cases" / f"{self.name}.py"

    @property
    def references_file(self) -> Path:
        return course_dir() / "references" / f"{self.name}.npz"

    @property
    def public_file(self) -> Path:
        return public_dir() / f"{self.name}.npz"

    @property
    def student_notebook(self) -> Path:
        return notebooks_dir() / self.notebook_name


def assignments() -> list[Assignment]:
    """Every assignment with a source notebook, in course order."""
    source = course_dir() / "source"
    found = [Assignment(p.name) for p in sorted(source.iterdir()) if p.is_dir() and ASSIGNMENT_NAME.match(p.name)
             and (p / f"{p.name}.ipynb").is_file()] if source.is_dir() else []
    return sorted(found, key=lambda a: a.number)


def find_assignment(name_or_number: str | int) -> Assignment:
    """The assignment named ``"01_flow_matching"`` or numbered ``1`` / ``"01"``."""
    known = assignments()
    text = str(name_or_number)
    for assignment in known:
        if text == assignment.name or (text.isdigit() and int(text) == assignment.number):
            return assignment
    raise ValueError(f"no assignment {name_or_number!r} in {course_dir() / 'source'}; "
                     f"known: {[a.name for a in known]}")
