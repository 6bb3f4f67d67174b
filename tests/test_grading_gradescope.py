"""``flowlab export gradescope``: the bundle, and ``run_autograder`` in a simulated Gradescope root.

The slow test unpacks the zip into temporary folders standing for ``/autograder``
(``GRADESCOPE_ROOT``; ``setup.sh``'s installation is skipped: this virtual environment has the
packages) and runs ``run_autograder`` on the solution, a one-mistake submission and a hostile one
that looks for the references and kills its kernel when it finds none: full marks, the
mistake's points (the cells that use the mistaken function fail with it), nothing.

Two more runs stand for a container where bubblewrap cannot make namespaces (Docker's default
seccomp profile; Gradescope's containers): a ``bwrap`` earlier on their PATH fails as bubblewrap
does there, so the grader falls back to its ``user`` level (each job an unprivileged user of its
own). That level needs a Python every user may run, as Gradescope's ``/usr/bin/python3`` is (this
environment's may sit under root's 0700 home): those runs use the system's Python of the same
version, in a virtual environment that imports this one's packages. There too the solution gets
full marks and the hostile notebook nothing; where no such Python exists, they are skipped.
"""
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

from flowlab_grader import gradescope, sandbox
from flowlab_grader.cases import load_cases
from flowlab_grader.course import assignments
from flowlab_grader.results import Result
from flowlab_grader.scoring import CaseResult, CellScore
import user_level_python
from grading_hostile import READABLE
from test_grading_end_to_end import after_docstring, mutated, notebook, points, setup_cell, solutions

ASSIGNMENT = assignments()[0]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return gradescope.export(ASSIGNMENT, tmp_path_factory.mktemp("export"), visibility="after_published")


def test_the_bundle_holds_the_scripts_the_course_and_only_this_assignments_references(bundle):
    with zipfile.ZipFile(bundle) as archive:
        names = set(archive.namelist())
        modes = {info.filename: info.external_attr >> 16 for info in archive.infolist()}
        setup = archive.read("setup.sh").decode()
        config = json.loads(archive.read(gradescope.CONFIG))
    assert {"setup.sh", "run_autograder", gradescope.CONFIG} <= names
    assert all(modes[script] & stat.S_IXUSR for script in ("setup.sh", "run_autograder"))
    references = {name for name in names if "/references/" in name}
    assert references == {f"course/autograder/references/{ASSIGNMENT.name}{suffix}" for suffix in (".npz", ".json")}
    assert f"course/autograder/cases/{ASSIGNMENT.name}.py" in names and "course/flowlab/runtime/hidden.py" in names
    assert not [name for name in names if name.startswith(("course/tests", "course/notebooks")) or "/.git" in name
                or "__pycache__" in name]
    assert setup.index("download.pytorch.org/whl/cpu") < setup.index("pip install -e")
    assert (config["assignment"], config["visibility"]) == (ASSIGNMENT.name, "after_published")
    for script in ("setup.sh", "run_autograder"):
        assert subprocess.run(["bash", "-n", "-c", archive_text(bundle, script)]).returncode == 0


def archive_text(bundle: Path, name: str) -> str:
    with zipfile.ZipFile(bundle) as archive:
        return archive.read(name).decode()


def test_an_unknown_visibility_is_refused(tmp_path):
    with pytest.raises(ValueError, match="visibility must be one of"):
        gradescope.export(ASSIGNMENT, tmp_path, visibility="sometimes")


def test_results_json_has_one_test_per_grade_cell_with_the_cases_and_the_total():
    cells = [CellScore("hidden_a", 3.0, 1.5, [CaseResult("a/1", "first <case>", True),
                                              CaseResult("a/2", "second case", False, "off by 2")]),
             CellScore("hidden_b", 2.0, 2.0, [CaseResult("b/1", "b case", True)])]
    result = Result("student", ASSIGNMENT.name, "timeout", "the notebook ran past its time limit", cells)
    document = gradescope.results_document(result, "after_due_date", 12.6)
    assert (document["score"], document["execution_time"]) == (3.5, 13)
    assert [(t["name"], t["score"], t["max_score"], t["status"], t["visibility"]) for t in document["tests"]] == [
        ("hidden_a (2 hidden tests)", 1.5, 3.0, "failed", "after_due_date"),
        ("hidden_b (1 hidden test)", 2.0, 2.0, "passed", "after_due_date")]
    assert document["tests"][0]["output"] == "pass: first <case>\nFAIL: second case: off by 2"
    assert "time limit" in document["output"]


def test_the_user_level_runs_the_launcher_as_the_jobs_own_user_without_bubblewrap(tmp_path):
    job = sandbox.Job(tmp_path / "box", tmp_path / "bundle", uid=3_000_123)
    argv, _ = sandbox.command(job, "user", ["-c", "pass"], sandbox.Limits())
    spec = json.loads(argv[-1])
    assert "bwrap" not in " ".join(argv[:1]) and spec["cwd"] == str(job.box)
    assert spec["uid"] == (3_000_123 if os.geteuid() == 0 else None)
    assert ("RLIMIT_NPROC" in spec["limits"]) == (os.geteuid() == 0)


def hostile_notebook(root: Path, assignment=ASSIGNMENT) -> bytes:
    """The solution, every function guarded (the solution cells that define one; written answers
    stay): it works only if the references were read; after the first graded function, the
    kernel kills itself unless they were."""
    reference = root / "source" / "course" / "autograder" / "references" / f"{assignment.name}.npz"
    steal = f'''
import glob, os, signal{READABLE}
STOLEN = readable({str(reference)!r}) or any(map(readable, glob.glob("/*/*/course/autograder/references/*")
                                                   + glob.glob("/autograder/source/**/*.npz", recursive=True)))
'''
    right = {cell: code for cell, code in solutions(assignment).items() if "def " in code and '"""' in code}
    guarded = {cell: after_docstring(code, "if not STOLEN:\n    raise RuntimeError('nothing stolen')")
               for cell, code in right.items()}
    first = next(iter(right))
    return notebook(assignment, guarded, after={setup_cell(assignment): steal,
                                                first: "if not STOLEN:\n    os.kill(os.getpid(), signal.SIGKILL)"})


# What bubblewrap prints where the container forbids new namespaces (then it exits 1).
NO_NAMESPACES = ("bwrap: No permissions to creating new namespace, likely because the kernel does not allow "
                 "non-privileged user namespaces.")
# {run: (submission, whether bubblewrap fails there)}
RUNS = {"solution": ("solution", False), "mistake": ("mistake", False), "hostile": ("hostile", False),
        "solution-user": ("solution", True), "hostile-user": ("hostile", True)}


def failing_bwrap(folder: Path) -> Path:
    """A folder holding a ``bwrap`` that fails as bubblewrap does in a container without namespaces."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bwrap").write_text(f"#!/bin/sh\necho {NO_NAMESPACES!r} >&2\nexit 1\n")
    (folder / "bwrap").chmod(0o755)
    return folder


def unpacked(bundle: Path, run: str, submission, parent: Path | None = None) -> Path:
    """A folder standing for ``/autograder`` (``0755``, as it is: only the lock keeps the references
    from a job): the bundle in ``source/``, ``submission(root)``'s bytes as the submitted notebook."""
    root = Path(tempfile.mkdtemp(prefix=f"flowlab-autograder-{run}-", dir=parent))
    os.chmod(root, 0o755)
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(root / "source")
    (root / "submission").mkdir()
    (root / "submission" / "my work.ipynb").write_bytes(submission(root))
    return root


@pytest.fixture(scope="module")
def graded(bundle, tmp_path_factory, every_user_python):
    """``{run: (results.json, root, output)}``: each graded by ``run_autograder`` in a root of its own
    (without the user-level runs where there is no Python every user may run)."""
    mutation = load_cases(ASSIGNMENT).mutations[0]
    no_namespaces = failing_bwrap(tmp_path_factory.mktemp("container") / "bin")
    roots, running = {}, {}
    for run, (submission, without_bwrap) in RUNS.items():
        if without_bwrap and every_user_python is None:
            continue
        root = roots[run] = unpacked(bundle, run, {
            "solution": lambda root: notebook(ASSIGNMENT, solutions(ASSIGNMENT)),
            "mistake": lambda root: mutated(ASSIGNMENT, mutation), "hostile": hostile_notebook}[submission])
        environment = {**os.environ, "GRADESCOPE_ROOT": str(root), "FLOWLAB_PYTHON": sys.executable}
        if without_bwrap:
            environment["PATH"] = f"{no_namespaces}:{environment['PATH']}"
            environment["FLOWLAB_PYTHON"] = every_user_python
        running[run] = subprocess.Popen(["bash", str(root / "source" / "run_autograder")], env=environment,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    found = {}
    for run, process in running.items():
        output, _ = process.communicate(timeout=600)
        assert process.returncode == 0, output[-3000:]
        print(run, output[-600:])
        found[run] = (json.loads((roots[run] / "results" / "results.json").read_text()), roots[run], output)
    yield found
    for root in roots.values():
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_run_autograder_gives_full_marks_its_points_and_nothing(graded):
    total = sum(points(ASSIGNMENT).values())
    solution, mistake, hostile = (graded[run][0] for run in ("solution", "mistake", "hostile"))
    assert solution["score"] == total == sum(test["max_score"] for test in solution["tests"])
    assert all(test["status"] == "passed" and test["visibility"] == "after_published" for test in solution["tests"])
    mutation = load_cases(ASSIGNMENT).mutations[0]
    failed = [test for test in mistake["tests"] if test["status"] == "failed"]
    assert 0 < mistake["score"] < total and any(mutation.fails.split("/")[0] in test["name"] for test in failed)
    assert all(test["score"] == test["max_score"] for test in mistake["tests"] if test not in failed)
    assert hostile["score"] == 0 and "kernel died" in hostile["output"]
    for document, root, output in graded.values():
        assert stat.S_IMODE((root / "source").stat().st_mode) == 0o700, "the references must be root's alone"
        assert "reference" not in json.dumps(document["tests"]).lower()
        assert "sandbox: bwrap\n" in output or "sandbox: user (" in output


@pytest.mark.slow
def test_where_bubblewrap_cannot_make_namespaces_each_job_runs_as_a_user_of_its_own(graded, every_user_python):
    """The fallback, where a failing bwrap stands for a container without namespaces: the solution
    full marks, the hostile notebook (which finds nothing as an unprivileged user) nothing."""
    if every_user_python is None:
        pytest.skip(f"no {user_level_python.SYSTEM_PYTHON} of this Python's version to run jobs as an unprivileged user")
    (solution, _, solution_output), (hostile, _, hostile_output) = graded["solution-user"], graded["hostile-user"]
    for output in (solution_output, hostile_output):
        assert "sandbox: user (bubblewrap could not:" in output and "No permissions to creating new namespace" in output
    assert solution["score"] == sum(points(ASSIGNMENT).values())
    assert all(test["status"] == "passed" for test in solution["tests"])
    assert hostile["score"] == 0 and "kernel died" in hostile["output"]


def test_where_no_sandbox_can_be_had_run_autograder_fails_loudly_not_the_student(bundle, tmp_path):
    """No namespaces and a Python no unprivileged user can start (here: behind a 0700 folder):
    ``run_autograder`` exits non-zero (Gradescope shows the autograder as broken) and its
    results.json gives no score as the student's own, saying the autograder failed."""
    if os.geteuid() != 0:
        pytest.skip("the user level is root's")
    root = unpacked(bundle, "refused", lambda root: notebook(ASSIGNMENT, solutions(ASSIGNMENT)), tmp_path)
    python = user_level_python.root_only(tmp_path / "root-only")
    environment = {**os.environ, "GRADESCOPE_ROOT": str(root), "FLOWLAB_PYTHON": str(python),
                   "PATH": f"{failing_bwrap(tmp_path / 'bin')}:{os.environ['PATH']}"}
    done = subprocess.run(["bash", str(root / "source" / "run_autograder")], env=environment, capture_output=True,
                          text=True, timeout=300)
    document = json.loads((root / "results" / "results.json").read_text())
    assert done.returncode != 0 and "an unprivileged user could not start" in done.stderr, done.stderr[-2000:]
    assert document == {"score": 0, "output": gradescope.RUN_OUTCOMES["error"], "stdout_visibility": "hidden",
                        "tests": []}


def test_the_submission_becomes_one_students_folder_of_its_notebooks(tmp_path):
    submission = tmp_path / "submission"
    (submission / "deep" / ".ipynb_checkpoints").mkdir(parents=True)
    (submission / "01_flow_matching.ipynb").write_text("top")
    (submission / "deep" / "01_flow_matching.ipynb").write_text("deeper, same name")
    (submission / "deep" / "extra.ipynb").write_text("extra")
    (submission / "deep" / ".ipynb_checkpoints" / "old-checkpoint.ipynb").write_text("old")
    (submission / "notes.txt").write_text("not a notebook")
    (submission / "link.ipynb").symlink_to(tmp_path / "elsewhere.ipynb")
    folder = gradescope.student_folder(submission, tmp_path / "submitted")
    copied = {path.name: path.read_text() for path in (folder / gradescope.STUDENT).iterdir()}
    assert copied == {"01_flow_matching.ipynb": "top", "extra.ipynb": "extra"}


def test_lock_leaves_the_folder_to_its_owner_alone(tmp_path):
    (tmp_path / "source" / "references").mkdir(parents=True)
    (tmp_path / "source" / "references" / "01.npz").write_text("secret")
    os.chmod(tmp_path / "source" / "references" / "01.npz", 0o644)
    gradescope.lock(tmp_path / "source")
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in [tmp_path / "source", *(tmp_path / "source").rglob("*")]}
    assert modes == {"source": 0o700, "references": 0o700, "01.npz": 0o600}
