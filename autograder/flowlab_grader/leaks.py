"""Does a student bundle leak? Solutions, hidden tests, hidden references, stubbed bodies, answers.

``check_leaks(bundle, stub_from)`` returns one line per problem (empty: no leak):

- a file of ``autograder/`` (references, cases, source notebooks) copied byte for byte, or a
  folder named ``autograder``, or an ``.npz`` outside ``data/public``;
- nbgrader's markers (``### BEGIN SOLUTION``, ``### BEGIN HIDDEN TESTS``, ...) in any text file,
  or a hidden test call in a notebook;
- a line of a stubbed function's body, or of a solution in a source notebook, that appears
  nowhere else in the instructor's library, not even inside a longer line ("revealing" lines; a
  line such as ``return x`` that the library has elsewhere anyway reveals nothing), found in any
  text file of the bundle as a substring (a solution pasted into a comment counts too);
- a line of a manually graded answer cell's instructor text (its expected answer and rubric,
  ``answers.instructor_text``) that the released notebooks' other cells do not have anyway,
  found in any text file of the bundle;
- a line of a stubbed function's original docstring (which gives its formula) that the library
  has nowhere else, found in a Python file of the bundle (the released notebooks' solution cells
  keep the docstring on purpose: it says what to write), or a stubbed function whose docstring
  is still the original;
- a stubbed function whose body is not the stub.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import nbformat

from flowlab_grader.answers import instructor_text, is_answer_cell, nbgrader_metadata
from flowlab_grader.cases import graded_functions
from flowlab_grader.course import Assignment, assignments, course_dir, library_dir, library_file
from flowlab_grader.stubs import docstring_span, function_body, function_docstring

MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION", "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS",
           "### BEGIN MARK SCHEME", "### END MARK SCHEME")
NOTEBOOK_MARKERS = ("hidden.run(", "from flowlab.runtime import hidden")
TEXT_SUFFIXES = {".py", ".ipynb", ".md", ".json", ".txt", ".toml", ".yml", ".yaml", ".cfg", ".html"}
SOLUTION = re.compile(r"### BEGIN SOLUTION(.*?)### END SOLUTION", re.S)
MIN_LINE = 8


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _lines(text: str) -> set[str]:
    return {line.strip() for line in text.splitlines() if len(line.strip()) >= MIN_LINE and not line.strip().startswith("#")}


def _graded(stub_from: int) -> list[tuple[Path, str]]:
    """``(source file, function)`` of every function stubbed for a student of ``stub_from``."""
    return [(library_file(module), name) for module, name, _ in graded_functions(stub_from)]


def revealing_lines(stub_from: int, released: list[Assignment]) -> set[str]:
    """Lines of stubbed bodies and of released solutions that the library has nowhere else."""
    graded = _graded(stub_from)
    bodies = {(path, name): function_body(path.read_text(), name) for path, name in graded}
    elsewhere = []
    for path in library_dir().rglob("*.py"):
        text = path.read_text()
        for (body_path, _), body in bodies.items():
            if body_path == path:
                text = text.replace(body, "")
        elsewhere.append(text)
    library_text = "\n".join(elsewhere)
    secret = set().union(*(_lines(body) for body in bodies.values())) if bodies else set()
    for assignment in released:
        for cell in nbformat.read(assignment.source_notebook, as_version=4).cells:
            for block in SOLUTION.findall(cell.source):
                secret |= _lines(block)
    # A line that the library has elsewhere, even inside a longer line, reveals nothing new.
    return {line for line in secret if line not in library_text and line.strip() not in ('"""', "'''")}


def docstring_lines(stub_from: int) -> dict[str, str]:
    """``{line: function}``: lines of the stubbed functions' docstrings that the instructor's
    library has nowhere else (its other docstrings and code), even inside a longer line."""
    graded = _graded(stub_from)
    docstrings = {(path, name): function_docstring(path.read_text(), name) or "" for path, name in graded}
    elsewhere = []
    for path in library_dir().rglob("*.py"):
        lines = path.read_text().splitlines()
        for first, last in sorted((docstring_span(path.read_text(), name) for doc_path, name in docstrings
                                   if doc_path == path), reverse=True):
            del lines[first - 1: last]
        elsewhere.append("\n".join(lines))
    library_text = "\n".join(elsewhere)
    return {line: name for (_, name), docstring in docstrings.items() for line in _lines(docstring)
            if line not in library_text}


def answer_lines(released: list[Assignment]) -> dict[str, str]:
    """``{line: grade_id}``: lines of the released notebooks' answer cells (expected answers and
    rubrics) that no other cell of those notebooks has, even inside a longer line."""
    secret: dict[str, str] = {}
    public_text = []
    for assignment in released:
        for cell in nbformat.read(assignment.source_notebook, as_version=4).cells:
            if is_answer_cell(cell):
                for line in sorted(_lines(instructor_text(cell))):
                    secret.setdefault(line, f"{assignment.name}:{nbgrader_metadata(cell)['grade_id']}")
            else:
                public_text.append(cell.source)
    text = "\n".join(public_text)
    return {line: where for line, where in secret.items() if line not in text}


def _cell_sources(raw: str) -> str:
    """A notebook's cell texts as written (its JSON escapes quotes and backslashes, which would
    hide a line such as ``s = "x"`` or ``\\nabla`` from a search of the raw file)."""
    try:
        return "\n".join(cell.source for cell in nbformat.reads(raw, as_version=4).cells)
    except Exception:           # not a readable notebook: the raw text is all there is
        return ""


def _text_files(bundle: Path):
    for path in sorted(bundle.rglob("*")):
        if path.is_file() and path.suffix in TEXT_SUFFIXES:
            text = path.read_text(errors="replace")
            yield path, text + ("\n" + _cell_sources(text) if path.suffix == ".ipynb" else "")


def check_leaks(bundle: Path, stub_from: int) -> list[str]:
    """Every leak found in ``bundle`` (see the module docstring); empty when there is none."""
    bundle = Path(bundle)
    problems = []
    secret_files = {_digest(path): path for folder in ("source", "cases", "references")
                    for path in (course_dir() / folder).rglob("*") if path.is_file()}
    released = [a for a in assignments() if (bundle / "notebooks" / a.notebook_name).is_file()]
    revealing = revealing_lines(stub_from, released)
    answers = answer_lines(released)
    docstrings = docstring_lines(stub_from)
    for path in sorted(bundle.rglob("*")):
        relative = path.relative_to(bundle)
        if "autograder" in relative.parts:
            problems.append(f"{relative}: an autograder folder in the release")
        if path.is_file() and _digest(path) in secret_files:
            problems.append(f"{relative}: a copy of {secret_files[_digest(path)].relative_to(course_dir())}")
        if path.suffix == ".npz" and relative.parts[:2] != ("data", "public"):
            problems.append(f"{relative}: an array file outside data/public")
    for path, text in _text_files(bundle):
        relative = path.relative_to(bundle)
        markers = MARKERS + (NOTEBOOK_MARKERS if path.suffix == ".ipynb" else ())
        problems += [f"{relative}: contains {marker!r}" for marker in markers if marker in text]
        problems += [f"{relative}: contains the solution line {line!r}" for line in sorted(revealing) if line in text]
        problems += [f"{relative}: contains a line of the expected answer or rubric of {where}: {line!r}"
                     for line, where in sorted(answers.items()) if line in text]
        if path.suffix == ".py":
            problems += [f"{relative}: contains a line of {name}'s library docstring: {line!r}"
                         for line, name in sorted(docstrings.items()) if line in text]
    for path, name in _graded(stub_from):
        copy = bundle / path.relative_to(library_dir().parent)
        if not copy.is_file() or "raise NotImplementedError(" not in function_body(copy.read_text(), name):
            problems.append(f"{copy.relative_to(bundle)}: {name} is not stubbed")
        elif function_docstring(path.read_text(), name) == function_docstring(copy.read_text(), name):
            problems.append(f"{copy.relative_to(bundle)}: {name} keeps its library docstring")
    return problems
