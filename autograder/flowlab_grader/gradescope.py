"""Gradescope: the autograder bundle, and grading one submission inside Gradescope's container.

    flowlab export gradescope --assignment NN --out DIR      writes DIR/autograder.zip

Gradescope unpacks the zip into ``/autograder/source``, runs ``setup.sh`` once (as root) when
it builds the image and ``run_autograder`` (as root) for every submission, with the student's
files in ``/autograder/submission``; what ``/autograder/results/results.json`` says is the
grade. The zip holds::

    setup.sh, run_autograder   the two scripts (below)
    gradescope.json            the assignment, the visibility of the hidden tests' results, the limits
    course/                    what grading needs of the repository: the flowlab package (library
                               and runtime), the grader, nbgrader_config.py, every source notebook
                               and cases file (the student release stubs the functions of later
                               notebooks too), this assignment's hidden references, data/

``setup.sh`` installs Python, bubblewrap and, into ``/opt/flowlab/venv``, CPU torch first (the
version the references were made with; no CUDA build is pulled in), then the two packages from
``course/``. ``run_autograder`` runs ``python -m flowlab_grader.gradescope``, which (``run``):

1. makes ``/autograder/source`` root's alone (``0700``): the references, cases and solutions;
2. grades the notebooks of ``/autograder/submission`` as one student's folder with
   ``flowlab_grader.grade`` (the same two phases: the notebook records outputs in a sandbox, the
   host compares them with the references): in bubblewrap where the container lets it make
   namespaces, else as an unprivileged user of its own (``sandbox`` level ``user``), which can
   read neither the references nor anything else of root's;
3. writes ``results.json`` in Gradescope's format: one test per grade cell (``name``, ``score``,
   ``max_score``, ``status``, ``output``: each hidden case's verdict and message, as on the
   feedback page, and ``visibility``: ``gradescope.json``'s, ``after_due_date`` unless the export
   said otherwise), the total ``score``, the run's outcome as the visible ``output`` and the
   grading time. Written answers (nbgrader's manually graded cells) are left to Gradescope's
   own manual grading; the output says how many points wait for it.

The root of it all is ``$GRADESCOPE_ROOT`` (default ``/autograder``), so that a test can run
``run_autograder`` in a temporary folder; ``$FLOWLAB_VENV`` moves the virtual environment,
``$FLOWLAB_PYTHON`` overrides the Python ``run_autograder`` uses, and ``$FLOWLAB_TORCH_INDEX`` the
index ``setup.sh`` takes torch from (a mirror, where PyTorch's own cannot be reached).
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from flowlab_grader import sandbox
from flowlab_grader.course import Assignment, course_dir, library_dir, repository_dir
from flowlab_grader.results import Result, write_atomically

ROOT_VARIABLE = "GRADESCOPE_ROOT"
DEFAULT_ROOT = "/autograder"
CONFIG = "gradescope.json"
COURSE = "course"
STUDENT = "student"
VISIBILITIES = ("visible", "hidden", "after_due_date", "after_published")
VENV = "/opt/flowlab/venv"
SKIPPED = ("__pycache__", ".ipynb_checkpoints")

SETUP = """#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder's image.
set -euo pipefail
SOURCE="${{GRADESCOPE_ROOT:-/autograder}}/source"
VENV="${{FLOWLAB_VENV:-{venv}}}"

apt-get update
apt-get install -y --no-install-recommends python3 python3-venv python3-pip bubblewrap
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --upgrade pip
# CPU torch first (the version the references were made with), so that no CUDA build is pulled in.
"$VENV/bin/python" -m pip install "torch=={torch}" --index-url "${{FLOWLAB_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}}"
# Editable: the environment holds no copy of the library or the grader, only their path, which
# the notebooks' user cannot read (run_autograder makes the source folder root's alone).
"$VENV/bin/python" -m pip install -e "$SOURCE/{course}" -e "$SOURCE/{course}/autograder"
chmod -R go-rwx "$SOURCE"
"""

RUN = """#!/usr/bin/env bash
# Gradescope runs this, as root, for every submission: grade /autograder/submission into
# /autograder/results/results.json (flowlab_grader.gradescope).
set -euo pipefail
ROOT="${{GRADESCOPE_ROOT:-/autograder}}"
PYTHON="${{FLOWLAB_PYTHON:-${{FLOWLAB_VENV:-{venv}}}/bin/python}}"
export GRADESCOPE_ROOT="$ROOT"
export FLOWLAB_COURSE="$ROOT/source/{course}/autograder"
cd "$ROOT"
exec "$PYTHON" -m flowlab_grader.gradescope
"""


# ---- the bundle ---------------------------------------------------------------------------------

def _files(folder: Path, pattern: str = "**/*") -> list[Path]:
    return [path for path in sorted(folder.glob(pattern))
            if path.is_file() and not any(part in SKIPPED for part in path.parts) and path.suffix != ".pyc"]


def course_files(assignment: Assignment) -> dict[str, Path]:
    """``{name in the zip: file}``: what grading ``assignment`` needs of the repository."""
    repository, course = repository_dir(), course_dir()
    chosen = {name: repository / name for name in ("pyproject.toml", "README.md", "LICENSE")
              if (repository / name).is_file()}
    chosen |= {f"flowlab/{path.relative_to(library_dir()).as_posix()}": path for path in _files(library_dir())}
    for folder in ("data/checkpoints", "data/public"):
        chosen |= {path.relative_to(repository).as_posix(): path for path in _files(repository / folder)}
    grader = course / "flowlab_grader"
    chosen |= {f"autograder/flowlab_grader/{path.name}": path for path in _files(grader, "*.py")}
    chosen |= {f"autograder/{name}": course / name for name in ("pyproject.toml", "nbgrader_config.py")}
    chosen |= {f"autograder/{path.relative_to(course).as_posix()}": path
               for folder in ("source", "cases") for path in _files(course / folder)}
    for suffix in (".npz", ".json"):
        reference = assignment.references_file.with_suffix(suffix)
        chosen[f"autograder/references/{reference.name}"] = reference
    return {f"{COURSE}/{name}": path for name, path in chosen.items()}


def _torch_version() -> str:
    import torch

    return torch.__version__.split("+")[0]


def _add(archive: zipfile.ZipFile, name: str, data: bytes, executable: bool = False) -> None:
    info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
    info.external_attr = (stat.S_IFREG | (0o755 if executable else 0o644)) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    archive.writestr(info, data)


def export(assignment: Assignment, out: Path, visibility: str = "after_due_date",
           limits: sandbox.Limits | None = None) -> Path:
    """Write ``out/autograder.zip`` for ``assignment`` (see the module docstring); returns its path.
    ``visibility``: when students see the hidden tests' results (one of ``VISIBILITIES``)."""
    if visibility not in VISIBILITIES:
        raise ValueError(f"visibility must be one of {VISIBILITIES}, got {visibility!r}")
    if not assignment.references_file.is_file():
        raise FileNotFoundError(f"no references for {assignment.name}: run flowlab references --assignment "
                                f"{assignment.name}")
    limits = limits or sandbox.Limits()
    config = {"assignment": assignment.name, "visibility": visibility,
              "limits": {"cell_timeout": limits.cell_timeout, "notebook_timeout": limits.notebook_timeout,
                         "memory": limits.memory}}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "autograder.zip"
    with tempfile.NamedTemporaryFile(dir=out, prefix=".autograder.", suffix=".zip", delete=False) as handle:
        with zipfile.ZipFile(handle, "w") as archive:
            _add(archive, "setup.sh", SETUP.format(venv=VENV, torch=_torch_version(), course=COURSE).encode(), True)
            _add(archive, "run_autograder", RUN.format(venv=VENV, course=COURSE).encode(), True)
            _add(archive, CONFIG, (json.dumps(config, indent=1) + "\n").encode())
            for name, source in course_files(assignment).items():
                _add(archive, name, source.read_bytes())
    os.replace(handle.name, path)
    return path


# ---- inside Gradescope's container --------------------------------------------------------------

def gradescope_root() -> Path:
    return Path(os.environ.get(ROOT_VARIABLE) or DEFAULT_ROOT)


def lock(folder: Path) -> None:
    """Make ``folder`` and everything in it its owner's alone (root's, in Gradescope)."""
    for path in [folder, *folder.rglob("*")]:
        if not path.is_symlink():
            os.chmod(path, stat.S_IMODE(path.lstat().st_mode) & 0o700)


def student_folder(submission: Path, folder: Path) -> Path:
    """Copy the submission's notebooks (at any depth, first of each name) into one student's
    folder ``folder/student``, as ``flowlab grade`` reads a folder without an assignment folder."""
    target = folder / STUDENT
    target.mkdir(parents=True)
    for path in sorted(submission.rglob("*.ipynb")) if submission.is_dir() else []:
        hidden = any(part.startswith(".") or part in SKIPPED for part in path.relative_to(submission).parts)
        if path.is_file() and not path.is_symlink() and not hidden and not (target / path.name).exists():
            shutil.copyfile(path, target / path.name)
    return folder


def choose_isolation(work: Path, limits: sandbox.Limits) -> sandbox.Isolation:
    """bubblewrap where the container allows it; else, as root, a user of its own per job; else
    ``SandboxUnavailable`` (the notebook would read the references, or could not run at all)."""
    problem = sandbox.bwrap_problem(work, limits)
    if problem is None:
        return sandbox.Isolation("bwrap")
    fallback = sandbox.user_problem(work, limits)
    if fallback is None:
        return sandbox.Isolation("user", problem)
    raise sandbox.SandboxUnavailable(f"neither bubblewrap ({problem}) nor a user of its own ({fallback})")


def cell_output(cell) -> str:
    """One line per hidden case of a grade cell: its verdict, what it tests and the message."""
    return "\n".join(f"{'pass' if case.passed else 'FAIL'}: {case.about}" + ("" if case.passed else f": {case.message}")
                     for case in cell.cases)


RUN_OUTCOMES = {
    "graded": "Your notebook ran to the end; each test below is one graded cell.",
    "timeout": "Your notebook ran past its time limit; the tests it reached before count.",
    "crashed": "Your notebook's kernel died or could not run to the end; the tests it reached before count.",
    "error": "The autograder itself failed on this submission (not your fault); your instructor can see why.",
}


def results_document(result: Result, visibility: str, seconds: float) -> dict:
    """Gradescope's ``results.json`` for ``result``."""
    tests = [{"name": f"{cell.cell} ({len(cell.cases)} hidden test{'' if len(cell.cases) == 1 else 's'})",
              "score": cell.score, "max_score": cell.points,
              "status": "passed" if cell.score >= cell.points else "failed", "output": cell_output(cell),
              "visibility": visibility} for cell in result.cells]
    output = RUN_OUTCOMES.get(result.status) or f"Nothing could be graded: {result.reason}"
    manual = getattr(result, "manual", None) or {}
    if manual:
        output += (f"\nWritten answers ({sum(manual.values()):g} points) are graded by people, "
                   "not by this autograder.")
    return {"score": round(sum(cell.score for cell in result.cells), 3), "execution_time": round(seconds),
            "output": output, "stdout_visibility": "hidden", "tests": tests}


def run(root: Path) -> dict:
    """Grade ``root/submission`` into ``root/results/results.json``; returns the document."""
    from flowlab_grader.grade import grade

    start = time.monotonic()
    config = json.loads((root / "source" / CONFIG).read_text())
    lock(root / "source")
    limits = sandbox.Limits(cell_timeout=float(config["limits"]["cell_timeout"]),
                            notebook_timeout=float(config["limits"]["notebook_timeout"]),
                            memory=int(config["limits"]["memory"]))
    work = Path(tempfile.mkdtemp(prefix="flowlab-gradescope-"))
    os.chmod(work, 0o711)
    try:
        isolation = choose_isolation(work, limits)
        submissions = student_folder(root / "submission", work / "submitted")
        (result,) = grade(submissions, work / "results", jobs=1, limits=limits, only=config["assignment"],
                          isolation=isolation)
        print(f"sandbox: {isolation.level}" + (f" (bubblewrap could not: {isolation.reason})" if isolation.reason else ""))
        print(result.status + (f": {result.reason}" if result.reason else ""))
        document = results_document(result, config["visibility"], time.monotonic() - start)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_atomically(root / "results" / "results.json", (json.dumps(document, indent=1) + "\n").encode())
    return document


def main() -> int:
    root = gradescope_root()
    try:
        document = run(root)
    except Exception as error:      # Gradescope shows a missing results.json as a broken autograder
        document = {"score": 0, "output": RUN_OUTCOMES["error"], "stdout_visibility": "hidden", "tests": []}
        write_atomically(root / "results" / "results.json", (json.dumps(document, indent=1) + "\n").encode())
        print(f"flowlab gradescope: {type(error).__name__}: {error}", file=sys.stderr)
        raise
    print(f"score {document['score']:g} of {sum(test['max_score'] for test in document['tests']):g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
