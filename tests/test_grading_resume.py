"""Long grading runs: progress lines, results saved one by one, resuming after Ctrl-C or a kill.

Units first (result files, fingerprints, progress lines, stopping a batch of real processes), then
one slow test on four submissions of notebook 01: ``flowlab grade`` as a subprocess, interrupted
half-way with SIGINT and, separately, SIGKILL; both resumed (in this process), and compared with a
batch graded from scratch (``force``); a changed notebook runs again, an unchanged batch runs nothing.
"""
import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import nbformat
import pytest

from flowlab_grader import batch, results, sandbox
from flowlab_grader.cases import load_cases
from flowlab_grader.course import assignments, repository_dir
from flowlab_grader.grade import grade
from flowlab_grader.progress import Progress, duration
from flowlab_grader.results import Result, ResultStore, fingerprint, write_atomically
from flowlab_grader.sandbox import Limits, probe_isolation
from flowlab_grader.scoring import CaseResult, CellScore
from flowlab_grader.submissions import Submission

ASSIGNMENT = assignments()[0]
LIMITS = Limits(cell_timeout=60, notebook_timeout=120)


# ---- result files -----------------------------------------------------------------------------------

def a_result(student="ada", status="graded") -> Result:
    cells = [CellScore("hidden_f", 3.0, 1.5, [CaseResult("f/a", "first case", True),
                                              CaseResult("f/b", "second <case>", False, "off by 2", "a hint")]),
             CellScore("hidden_g", 2.0, 2.0, [CaseResult("g/a", "g case", True)])]
    return Result(student, ASSIGNMENT.name, status, "1 of 3 hidden tests failed: f/b", cells, 4.25)


def stamp_of(notebook: bytes = b'{"cells": []}', references: str = "refs") -> dict:
    return fingerprint(Submission("ada", ASSIGNMENT.name, notebook), references)


def test_write_atomically_replaces_whole_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "deep" / "file.json"
    write_atomically(path, b"first")
    write_atomically(path, b"second")
    assert path.read_bytes() == b"second" and os.listdir(path.parent) == ["file.json"]
    with pytest.raises(TypeError):
        write_atomically(path, "not bytes")
    assert path.read_bytes() == b"second" and os.listdir(path.parent) == ["file.json"]


def test_a_saved_result_reads_back_with_its_row_cells_and_feedback(tmp_path):
    store, result, stamp = ResultStore(tmp_path, run="run 1"), a_result(), stamp_of()
    saved = store.save(result, stamp, "2026-01-01T00:00:00Z")
    assert saved == tmp_path / "submissions" / "ada" / ASSIGNMENT.name / "result.json"
    document = json.loads(saved.read_text())
    assert (document["row"], document["run"]) == (result.row(), "run 1")
    kept = store.kept(Submission("ada", ASSIGNMENT.name, b'{"cells": []}'), stamp)
    assert kept == result and kept.row() == {**result.row(), "score": "3.5", "max_score": "5"}
    page = store.feedback_file("ada", ASSIGNMENT.name)
    assert "second &lt;case&gt;" in page.read_text() and document["feedback"] == page.relative_to(tmp_path).as_posix()
    page.unlink()
    assert store.kept(Submission("ada", ASSIGNMENT.name, b'{"cells": []}'), stamp) == result and page.is_file()


@pytest.mark.parametrize("change", ["notebook", "references", "grader", "format", "garbage", "edited score"])
def test_a_result_is_not_kept_when_anything_it_depends_on_changed(tmp_path, change, monkeypatch):
    store, stamp = ResultStore(tmp_path, run="run 1"), stamp_of()
    path = store.save(a_result(), stamp, "2026-01-01T00:00:00Z")
    submission = Submission("ada", ASSIGNMENT.name, b'{"cells": []}')
    assert store.kept(submission, stamp) is not None
    if change == "notebook":
        submission = Submission("ada", ASSIGNMENT.name, b'{"cells": [], "x": 1}')
        stamp = fingerprint(submission, "refs")
    elif change == "references":
        stamp = stamp_of(references="other refs")
    elif change == "grader":
        monkeypatch.setattr(results, "grader_version", lambda: "flowlab-grader 9.9, flowlab 9.9, result format 1")
        stamp = stamp_of()
    elif change == "format":
        path.write_text(path.read_text().replace(f'"format": {results.RESULT_FORMAT}', '"format": 0'))
    elif change == "garbage":
        path.write_text(path.read_text()[:50])
    else:
        path.write_text(path.read_text().replace('"score": "3.5"', '"score": "5"'))
    assert store.kept(submission, stamp) is None


def test_the_references_digest_follows_each_grading_file(tmp_path, monkeypatch):
    course = tmp_path / "course"
    shutil.copytree(ASSIGNMENT.source_notebook.parent, course / "source" / ASSIGNMENT.name)
    (course / "cases").mkdir()
    shutil.copy(ASSIGNMENT.cases_file, course / "cases")
    shutil.copytree(ASSIGNMENT.references_file.parent, course / "references")
    monkeypatch.setenv("FLOWLAB_COURSE", str(course))
    digests = {results.references_digest(ASSIGNMENT)}
    for path in (ASSIGNMENT.references_file, ASSIGNMENT.references_file.with_suffix(".json"), ASSIGNMENT.cases_file,
                 ASSIGNMENT.source_notebook):
        assert path.is_relative_to(course)
        path.write_bytes(path.read_bytes() + b" ")
        digests.add(results.references_digest(ASSIGNMENT))
    assert len(digests) == 5 and results.references_digest(None) == ""


def test_a_submission_without_notebook_is_fingerprinted_by_its_problem():
    missing = Submission("ada", ASSIGNMENT.name, None, "missing: nothing submitted")
    garbage = Submission("ada", ASSIGNMENT.name, None, "no notebook (.ipynb) submitted")
    assert results.notebook_digest(missing) != results.notebook_digest(garbage)
    assert results.notebook_digest(missing) == results.notebook_digest(Submission("bo", "x", None, missing.problem))


def test_a_rerun_runs_only_what_has_no_result_or_failed_in_the_grader(tmp_path, monkeypatch):
    """The batch logic of ``grade`` with the notebook runs replaced by a stand-in (no kernels)."""
    from flowlab_grader import grade as grading

    for student in ("ada", "bo", "cy"):
        (tmp_path / "in" / student / ASSIGNMENT.name).mkdir(parents=True)
        (tmp_path / "in" / student / ASSIGNMENT.name / ASSIGNMENT.notebook_name).write_text(f'"{student}"')
    ran, points = [], grading.PreparedAssignment.load(ASSIGNMENT).points

    def stand_in(index, submission, prepared, work, level, limits, keep_work=False, stop=None, device="cpu"):
        ran.append(submission.student)
        status = "error" if submission.student == "cy" else "graded"
        return Result(submission.student, submission.assignment, status, "",
                      [CellScore(cell, value, value / 2) for cell, value in points.items()])

    monkeypatch.setattr(grading, "grade_one", stand_in)
    monkeypatch.setattr(grading, "make_runnable", lambda prepared, work: None)
    unisolated = sandbox.Isolation("unisolated", "a test")

    def run(**options):
        ran.clear()
        rows = grading.grade(tmp_path / "in", tmp_path / "out", only=ASSIGNMENT.name, isolation=unisolated, **options)
        return sorted(ran), [(row.student, row.status) for row in rows]

    everyone = [("ada", "graded"), ("bo", "graded"), ("cy", "error")]
    assert run() == (["ada", "bo", "cy"], everyone)
    assert run() == (["cy"], everyone)                    # the grader's own failure is tried again
    (tmp_path / "in" / "bo" / ASSIGNMENT.name / ASSIGNMENT.notebook_name).write_text('"bo, changed"')
    assert run() == (["bo", "cy"], everyone)
    assert run(force=True) == (["ada", "bo", "cy"], everyone)


# ---- progress ---------------------------------------------------------------------------------------

class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (42.4, "42s"), (130, "2m10s"), (3600 + 5 * 60 + 9, "1h05m")])
def test_duration_reads_like_a_person_writes_it(seconds, text):
    assert duration(seconds) == text


def test_plain_progress_prints_every_tenth_and_every_thirty_seconds_with_counts_and_eta():
    stream, clock = io.StringIO(), Clock()
    progress = Progress(120, ["graded"] * 19 + ["invalid"], stream=stream, live=False, clock=clock)
    clock.now = 60.0                        # a line every tenth of the 100 to run
    for status in ["graded"] * 9 + ["timeout"]:
        progress.finished(status)
    clock.now = 80.0
    progress.tick()                         # 20 s since the line: nothing
    clock.now = 95.0
    progress.tick()
    progress.finished("crashed")
    progress.close()
    lines = stream.getvalue().splitlines()
    counts = "graded 28, timeout 1, crashed 0, invalid 1, error 0; 20 kept from an earlier run"
    assert lines == [f"done 30/120 ({counts}), 1m00s elapsed, ETA 9m00s",       # 10 run in 60 s, 90 to go
                     f"done 30/120 ({counts}), 1m35s elapsed, ETA 14m15s",      # 90 x 95 s / 10
                     f"done 31/120 ({counts.replace('crashed 0', 'crashed 1')}), 1m35s elapsed, ETA 12m49s"]


def test_progress_without_anything_run_yet_has_no_eta_and_a_live_bar_shows_the_counts():
    stream = io.StringIO()
    progress = Progress(3, [], stream=stream, live=False)
    assert progress.line().endswith("ETA ?")
    live = io.StringIO()
    bar = Progress(3, ["graded"], stream=live, live=True)
    bar.finished("timeout")
    bar.close()
    assert "2/3" in live.getvalue() and "timeout 1" in live.getvalue() and "1 kept from an earlier run" in live.getvalue()


# ---- stopping a batch -------------------------------------------------------------------------------

@pytest.fixture
def ctrl_c_raises():
    """SIGINT raises ``KeyboardInterrupt`` during the test, as in a terminal: a test run started in
    the background of a shell without job control inherits SIGINT ignored, and Python keeps it so."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def ungrab_ctrl_c() -> None:
    """In a child before it runs ``flowlab``: SIGINT back to its default, so Python handles it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_kills_the_running_jobs_and_starts_no_other(tmp_path, ctrl_c_raises):
    stop, outcomes, started = batch.Stop(), {}, threading.Semaphore(0)

    def job(index):
        if stop.stopped:                    # as grade_one: a job picked up after the stop does nothing
            return None

        def registered(process):
            stop.started(process)
            started.release()
        returncode, _ = sandbox.run_detached(["sleep", "600"], tmp_path / f"{index}.log", 600, dict(os.environ),
                                             started=registered)
        outcomes[index] = returncode
        return index

    def press_ctrl_c_when_two_run():
        started.acquire()
        started.acquire()
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=press_ctrl_c_when_two_run, daemon=True).start()
    finished = []
    assert batch.run_all(range(5), job, 2, finished.append, lambda: None, stop) is True
    assert outcomes == {0: -signal.SIGKILL, 1: -signal.SIGKILL} and finished == [] and stop.stopped


def test_a_ctrl_c_while_jobs_are_handed_out_comes_after_them(ctrl_c_raises):
    """The signal sent inside ``signals_held`` is delivered as the block ends, not in it."""
    handed_out = []
    with pytest.raises(KeyboardInterrupt):
        with batch.signals_held():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)
            handed_out.append("all")
    assert handed_out == ["all"] and signal.getsignal(signal.SIGINT) is signal.default_int_handler

    def elsewhere():                        # no handler can be set outside the main thread: nothing held
        with batch.signals_held():
            handed_out.append("from a thread")
    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join()
    assert handed_out == ["all", "from a thread"]


def test_a_job_started_after_the_stop_is_killed_at_once(tmp_path):
    stop = batch.Stop()
    stop.stop()
    returncode, timed_out = sandbox.run_detached(["sleep", "600"], tmp_path / "log", 600, dict(os.environ),
                                                 started=stop.started)
    assert (returncode, timed_out) == (-signal.SIGKILL, False)


def test_sigterm_stops_a_batch_as_ctrl_c_does():
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), batch.terminate_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    assert signal.getsignal(signal.SIGTERM) == previous


# ---- a real batch, interrupted and resumed ----------------------------------------------------------

def student_notebooks() -> dict[str, bytes]:
    """Four submissions of the first assignment: the solution, the untouched release, two mutants."""
    source = nbformat.read(ASSIGNMENT.source_notebook, as_version=4)
    solution = {cell.metadata["nbgrader"]["grade_id"]: "\n".join(
        line for line in cell.source.splitlines() if "### " not in line)
        for cell in source.cells if cell.metadata.get("nbgrader", {}).get("solution")}

    def filled(fill):
        student = nbformat.read(ASSIGNMENT.student_notebook, as_version=4)
        for cell in student.cells:
            cell.source = fill.get(cell.metadata.get("nbgrader", {}).get("grade_id"), cell.source)
        return nbformat.writes(student).encode()

    found = {"solution": filled(solution), "release": filled({})}
    for mutation in load_cases(ASSIGNMENT).mutations[:2]:
        found[f"mutant-{mutation.name}"] = filled({**solution, mutation.cell: solution[mutation.cell].replace(
            mutation.old, mutation.new)})
    return found


class Grader:
    """Grades one folder of submissions: to the end in this process (``grade``), or with
    ``flowlab grade`` as a subprocess that gets a signal (``interrupt``), whose scratch folders
    (``TMPDIR``) lie in ``scratch``, so that its sandboxes can be found by their command lines."""

    def __init__(self, submissions: Path, scratch: Path, isolation: sandbox.Isolation):
        self.submissions, self.scratch, self.isolation = submissions, scratch, isolation
        self.environment = {**os.environ, "TMPDIR": str(scratch)}

    def run(self, out: Path, force: bool = False) -> dict:
        """Grade to the end; the batch part of ``grading.json``."""
        grade(self.submissions, out, jobs=2, limits=LIMITS, only=ASSIGNMENT.name, isolation=self.isolation,
              force=force)
        return json.loads((out / "grading.json").read_text())["batch"]

    def interrupt(self, out: Path, signum: int) -> tuple[int, str, dict[str, dict]]:
        """Grade one job at a time; send ``signum`` once the first result is saved. Returns the exit
        code, standard error and the results saved by then (``{student: result.json}``)."""
        command = [str(Path(sys.executable).parent / "flowlab"), "grade", str(self.submissions), "--out", str(out),
                   "--assignment", ASSIGNMENT.name, "--jobs", "1", "--cell-timeout", str(LIMITS.cell_timeout),
                   "--notebook-timeout", str(LIMITS.notebook_timeout), "--allow-unisolated"]
        process = subprocess.Popen(command, env=self.environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, cwd=repository_dir(), preexec_fn=ungrab_ctrl_c)
        deadline = time.monotonic() + 900
        while not list(out.glob("submissions/*/*/result.json")):
            assert process.poll() is None and time.monotonic() < deadline, "no result was saved"
            time.sleep(0.1)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=300)
        return process.returncode, stderr, saved(out)

    def processes(self) -> list[int]:
        """Processes whose command line names the scratch folder (sandboxes, kernels, launchers)."""
        found = []
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and str(self.scratch).encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
        return found


def saved(out: Path) -> dict[str, dict]:
    return {path.parent.parent.name: json.loads(path.read_text()) for path in out.glob("submissions/*/*/result.json")}


def csv_students(out: Path) -> set[str]:
    with open(out / "grades.csv") as handle:
        return {row["student"] for row in csv.DictReader(handle)}


@pytest.fixture
def grader(tmp_path):
    submissions = tmp_path / "submitted"
    for student, data in student_notebooks().items():
        (submissions / student / ASSIGNMENT.name).mkdir(parents=True)
        (submissions / student / ASSIGNMENT.name / ASSIGNMENT.notebook_name).write_bytes(data)
    scratch = Path(tempfile.mkdtemp(prefix="flowlab-resume-"))
    os.chmod(scratch, 0o711)
    probe = scratch / "probe"
    probe.mkdir(mode=0o711)
    grader = Grader(submissions, scratch, probe_isolation(probe, LIMITS, allow_unisolated=True))
    yield grader
    for pid in grader.processes():          # what a SIGKILL left behind (only without bwrap)
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    shutil.rmtree(scratch, ignore_errors=True)


def ran_in(out: Path, batch_report: dict) -> set[str]:
    """The students whose result was saved by the run of ``batch_report``."""
    return {student for student, document in saved(out).items() if document["run"] == batch_report["run"]}


@pytest.mark.slow
def test_an_interrupted_batch_resumes_to_the_same_grades_running_only_what_was_unfinished(grader, tmp_path):
    started = time.monotonic()
    students = set(student_notebooks())
    by_sigint, by_sigkill = tmp_path / "sigint", tmp_path / "sigkill"

    returncode, stderr, before = grader.interrupt(by_sigint, signal.SIGINT)
    assert returncode == 130 and "Run the same command again" in stderr, stderr[-2000:]
    assert 1 <= len(before) < len(students) and csv_students(by_sigint) == set(before)
    assert grader.processes() == [] and not list(grader.scratch.glob("flowlab-grade-*")), \
        "Ctrl-C left a sandbox running or its working copies behind"
    resumed = grader.run(by_sigint)
    assert (resumed["ran"], resumed["kept"]) == (len(students) - len(before), len(before))
    assert ran_in(by_sigint, resumed) == students - set(before)
    assert all(saved(by_sigint)[student] == before[student] for student in before)
    sigint_csv = (by_sigint / "grades.csv").read_bytes()

    returncode, _, killed = grader.interrupt(by_sigkill, signal.SIGKILL)
    assert returncode == -signal.SIGKILL and 1 <= len(killed) < len(students)
    resumed = grader.run(by_sigkill)
    assert ran_in(by_sigkill, resumed) == students - set(killed) and resumed["kept"] == len(killed)
    assert all(saved(by_sigkill)[student] == killed[student] for student in killed)

    forced = grader.run(by_sigint, force=True)          # every submission again, in one uninterrupted batch
    assert (forced["ran"], forced["kept"], ran_in(by_sigint, forced)) == (len(students), 0, students)
    assert (by_sigint / "grades.csv").read_bytes() == sigint_csv == (by_sigkill / "grades.csv").read_bytes()
    assert csv_students(by_sigint) == students

    unchanged = saved(by_sigint)
    assert grader.run(by_sigint)["ran"] == 0 and saved(by_sigint) == unchanged
    path = grader.submissions / "release" / ASSIGNMENT.name / ASSIGNMENT.notebook_name
    notebook = nbformat.read(path, as_version=4)
    notebook.cells.append(nbformat.v4.new_markdown_cell("I did not get to it, sorry."))
    nbformat.write(notebook, path)
    again = grader.run(by_sigint)
    assert ran_in(by_sigint, again) == {"release"} and again["kept"] == len(students) - 1
    assert all(saved(by_sigint)[student] == unchanged[student] for student in students - {"release"})
    assert (by_sigint / "grades.csv").read_bytes() == sigint_csv         # a note changes no grade
    print(f"interrupt/resume test: {time.monotonic() - started:.0f} s")
