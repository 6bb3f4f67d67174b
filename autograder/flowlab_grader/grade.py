"""``flowlab grade``: grade a folder of submissions in two phases, in parallel.

    flowlab grade SUBMISSIONS --out RESULTS [--jobs N] [--assignment NN_name]

For every submission (``flowlab_grader.submissions``):

1. phase 1, untrusted: a throwaway working copy holds the notebook with the instructor's cells
   restored (``overwrite``: nbgrader's ``OverwriteCells``, fed by the gradebook that
   ``nbgrader generate_assignment`` builds) and the hidden inputs as plain arrays; the notebook runs in a sandbox
   (``sandbox``) against the student release of flowlab for that assignment, and its hidden
   test cells record the student's outputs there;
2. phase 2, on the host: the records are compared with the hidden references (``scoring``).

Results: ``RESULTS/grades.csv`` (``COLUMNS``: student, assignment, score, max_score, status, reason,
then the automatic and the written parts: auto_score, auto_max, manual_score, manual_max,
manual_status; one row per submission, sorted; the written answers are ``pending``, and
``flowlab merge-manual`` adds the points people give them: ``manual``),
``RESULTS/feedback/<student>/<assignment>/<assignment>.html`` and the
nbgrader gradebook ``RESULTS/gradebook.db``, rebuilt at the end from the per-submission results
``RESULTS/submissions/<student>/<assignment>/result.json`` that are saved as each submission
finishes (``results``). A rerun keeps a result whose notebook, references and grader are
unchanged (``force``: grade all again); Ctrl-C kills the running jobs, writes the summaries for
what is done and raises ``BatchInterrupted`` (``batch``); ``progress`` shows how far it is. Status: ``graded``; ``timeout`` (the notebook hit
its time limit: what was recorded before counts); ``crashed`` (the kernel or the run died: the
same); ``invalid`` (nothing to run: no notebook, not a notebook, unknown assignment); ``error``
(the grader itself failed on this submission). No submission can stop the batch.
"""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
import traceback
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import nbformat

from flowlab.runtime.codec import save_bundle
from flowlab.runtime.reference_set import ReferenceSet
from flowlab_grader import devices, sandbox
from flowlab_grader.answers import answer_points, autograded_points, code_answer_ids
from flowlab_grader.batch import Stop, run_all
from flowlab_grader.course import Assignment, assignments
from flowlab_grader.gradebook import GradedSubmission, Layout, write_scores
from flowlab_grader.overwrite import notebook_to_grade, read_submission
from flowlab_grader.release import build_gradebook, student_bundle
from flowlab_grader.progress import Progress
from flowlab_grader.results import Result, ResultStore, fingerprint, references_digest, write_atomically
from flowlab_grader.scoring import CellScore, score_cells
from flowlab_grader.shards import Shard
from flowlab_grader.submissions import Submission, discover

COLUMNS = ("student", "assignment", "score", "max_score", "status", "reason",
           "auto_score", "auto_max", "manual_score", "manual_max", "manual_status")
MAX_STATUS_BYTES = 64 * 1024
RETRIED = ("error",)        # the grader failed, not the notebook: a rerun grades it again


@dataclass
class PreparedAssignment:
    """One assignment made ready for grading: its references, the points of its grade cells, the
    gradebook that ``generate_assignment`` wrote (for restoring cells) and the sandbox's bundle."""
    assignment: Assignment
    references: ReferenceSet
    points: dict[str, float]                # hidden test cells: {grade_id: points}, scored here
    gradebook: str = ""
    bundle: Path | None = None
    manual: dict[str, float] = field(default_factory=dict)  # answer cells: {grade_id: points}, for people
    code_answers: frozenset[str] = frozenset()              # those of them that are code cells

    @classmethod
    def load(cls, assignment: Assignment) -> "PreparedAssignment":
        source = nbformat.read(assignment.source_notebook, as_version=4)
        return cls(assignment, ReferenceSet.load(assignment.references_file), autograded_points(source),
                   manual=answer_points(source), code_answers=code_answer_ids(source))

    def notebook_to_grade(self, submitted: bytes) -> nbformat.NotebookNode:
        """The submitted notebook with the instructor's cells restored; ``ValueError`` for garbage."""
        notebook = read_submission(submitted)
        return notebook_to_grade(notebook, self.gradebook, self.assignment.name,
                                 self.assignment.notebook_name.removesuffix(".ipynb"))


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped ``grade``: ``done`` of ``total`` submissions have their results in ``out``
    (and in its grades.csv and gradebook); the same command again grades the rest."""

    def __init__(self, done: int, total: int, out: Path):
        super().__init__(f"interrupted: {done} of {total} submissions graded")
        self.done, self.total, self.out = done, total, out


def _read_status(box: Path) -> dict:
    """The executor's ``status.json`` (untrusted: no symlinks, size-limited, shape-checked)."""
    try:
        descriptor = os.open(box / "status.json", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(descriptor, "rb") as handle:
            document = json.loads(handle.read(MAX_STATUS_BYTES).decode("utf-8"))
        return document if isinstance(document, dict) else {}
    except (OSError, ValueError):
        return {}


def _outcome(outcome: sandbox.Outcome, status: dict, limits: sandbox.Limits) -> tuple[str, str]:
    """``(status, reason)`` of a run, from what the host saw and (for the wording only) the executor."""
    if outcome.timed_out or status.get("status") == "deadline":
        return "timeout", f"the notebook ran past its time limit of {limits.notebook_timeout:g} s"
    if status.get("status") == "kernel_died":
        return "crashed", "the notebook's kernel died (the process exited or was killed); later cells did not run"
    if status.get("status") == "startup_failed" or outcome.returncode != 0 or "status" not in status:
        return "crashed", f"the notebook could not be run to the end (exit code {outcome.returncode})"
    return "graded", ""


def _summary(cells: list[CellScore]) -> str:
    failed = [case.key for cell in cells for case in cell.cases if not case.passed]
    total = sum(len(cell.cases) for cell in cells)
    return f"{len(failed)} of {total} hidden tests failed: {', '.join(failed)}" if failed else ""


def grade_one(index: int, submission: Submission, prepared: PreparedAssignment, work: Path, level: str,
              limits: sandbox.Limits, keep_work: bool = False, stop: Stop | None = None,
              device: str = "cpu") -> Result | None:
    """Grade one submission (both phases); never raises. ``None`` when ``stop`` stopped the batch
    before or while its notebook ran: unfinished, nothing to record. ``device``: ``"cuda"``, its
    hidden cases also run on the GPU (``devices``)."""
    stop = stop or Stop()
    if stop.stopped:
        return None
    result = Result(submission.student, submission.assignment, "invalid", submission.problem)
    if prepared is None:
        return result
    zero = score_cells(prepared.references, prepared.points, None)
    result.cells, result.manual = zero, dict(prepared.manual)
    if submission.notebook is None:
        return result
    try:
        notebook = prepared.notebook_to_grade(submission.notebook)
    except ValueError as error:             # not a notebook
        result.status, result.reason = "invalid", str(error)
        return result
    except Exception as error:              # a notebook that nbgrader's steps cannot put right
        result.status, result.reason = "invalid", f"the notebook's cells could not be restored: {error}"[:300]
        return result
    job = work / "jobs" / f"{index:05d}"
    try:
        box = job / "box"
        for folder in ("home", "tmp", "records", "inputs"):
            (box / folder).mkdir(parents=True)
        nbformat.write(notebook, box / prepared.assignment.notebook_name)
        save_bundle(box / "inputs" / prepared.assignment.name, *prepared.references.inputs_only())
        run = sandbox.Job(box, prepared.bundle, sandbox.uid_for(index), device)
        sandbox.prepare_box_permissions(run)
        argv = ["-m", "flowlab.runtime.execute", prepared.assignment.notebook_name, "--status", "status.json",
                "--cell-timeout", str(limits.cell_timeout), "--notebook-timeout", str(limits.notebook_timeout)]
        argv += ["--keep-outputs", "executed.ipynb"] if keep_work else []
        outcome = sandbox.run(run, level, argv, limits, job / "log.txt",
                              timeout=limits.notebook_timeout + sandbox.GRACE_SECONDS, started=stop.started)
        if stop.stopped:                    # killed by the stop (or ending as it came): not a result
            return None
        result.status, result.reason = _outcome(outcome, _read_status(box), limits)
        result.cells = score_cells(prepared.references, prepared.points, box / "records", device)
        result.reason = result.reason or _summary(result.cells)
        result.seconds = outcome.seconds
    except Exception as error:              # the grader's own failure: report it, keep going
        result.status, result.reason = "error", f"grading failed: {type(error).__name__}: {error}"[:300]
        traceback.print_exc()
    finally:
        if not keep_work:
            shutil.rmtree(job, ignore_errors=True)
    return result


def write_csv(path: Path, results: list[Result]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for result in sorted(results, key=lambda r: (r.student, r.assignment)):
        writer.writerow(result.row())
    write_atomically(path, buffer.getvalue().encode("utf-8"))


def load_assignments(only: str | None) -> dict[str, PreparedAssignment]:
    """Every assignment (or ``only``) with its references and points: enough to judge results."""
    return {assignment.name: PreparedAssignment.load(assignment) for assignment in assignments()
            if not only or assignment.name == only}


def make_runnable(prepared: dict[str, PreparedAssignment], work: Path) -> None:
    """What running their notebooks needs: the gradebook (``nbgrader generate_assignment``) and
    each one's sandbox bundle: the release library stubbed from it on, and its data."""
    selected = [entry.assignment for entry in prepared.values()]
    gradebook = build_gradebook(selected, work / "nbgrader") if selected else ""
    for entry in prepared.values():
        entry.gradebook = gradebook
        entry.bundle = student_bundle(entry.assignment, work / "bundles" / entry.assignment.name)


def write_summaries(out: Path, results: list[Result], by_name: dict[str, PreparedAssignment], report: dict) -> None:
    """``grades.csv``, the gradebook and ``grading.json`` (``report``) from ``results``."""
    write_csv(out / "grades.csv", results)
    layouts = {name: Layout(prepared.assignment.notebook_name.removesuffix(".ipynb"), prepared.points, prepared.manual,
                            prepared.code_answers)
               for name, prepared in by_name.items()}
    write_scores(out / "gradebook.db", layouts, [
        GradedSubmission(r.student, r.assignment, layouts[r.assignment].notebook,
                         {cell.cell: cell.score for cell in r.cells}) for r in results if r.assignment in layouts])
    write_atomically(out / "grading.json", (json.dumps(report, indent=1) + "\n").encode("utf-8"))


def _utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def grade(submissions: Path, out: Path, jobs: int = 2, limits: sandbox.Limits | None = None,
          only: str | None = None, keep_work: bool = False, isolation: sandbox.Isolation | None = None,
          allow_unisolated: bool = False, force: bool = False, device: str = "auto",
          shard: Shard | None = None) -> list[Result]:
    """Grade every submission in ``submissions`` into ``out`` (see the module docstring). The
    sandbox is ``isolation`` or the one ``sandbox.probe_isolation`` finds here; without filesystem
    isolation it raises ``sandbox.SandboxUnavailable`` unless ``allow_unisolated``. A submission
    with a result in ``out`` under the same fingerprint is not run again unless ``force``.
    Ctrl-C: the results so far are summarised, then ``BatchInterrupted`` is raised. ``device``:
    ``auto``, ``cpu`` or ``cuda`` (``devices.choose``); a GPU result is kept only for a
    GPU run and a CPU one for a CPU run."""
    limits = limits or sandbox.Limits()
    chosen = devices.choose(device)
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="flowlab-grade-"))
    os.chmod(work, 0o711)
    try:
        isolation = isolation or sandbox.probe_isolation(work, limits, allow_unisolated)
        level = isolation.level
        chosen = devices.confirm_in_jobs(chosen, work, level, limits)
        by_name = load_assignments(only)
        everything = discover(Path(submissions), list(by_name), only)
        found = shard.select(everything) if shard else everything
        store = ResultStore(out, run=f"{_utc_now()} {uuid.uuid4().hex[:8]}")
        references = {name: references_digest(prepared.assignment) for name, prepared in by_name.items()}
        stamps = [fingerprint(submission, references.get(submission.assignment, "")) for submission in found]
        stamps = [stamp if chosen.used == "cpu" else {**stamp, "device": chosen.used} for stamp in stamps]
        kept = [None if force else store.kept(submission, stamp) for submission, stamp in zip(found, stamps)]
        kept = [None if result is None or result.status in RETRIED else result for result in kept]
        stop = Stop()

        def run_one(index: int) -> Result | None:
            submission = found[index]
            result = grade_one(index, submission, by_name.get(submission.assignment), work, level, limits,
                               keep_work, stop, chosen.used)
            if result is not None:
                store.save(result, stamps[index], _utc_now())
            return result

        def finished(result: Result | None) -> None:
            if result is not None:
                progress.finished(result.status)

        todo = [index for index, result in enumerate(kept) if result is None]
        if todo:     # only the assignments something is run for: each costs a generate_assignment
            needed = {found[index].assignment for index in todo}
            make_runnable({name: prepared for name, prepared in by_name.items() if name in needed}, work)
        progress = Progress(len(found), [result.status for result in kept if result is not None])
        interrupted = run_all(todo, run_one, jobs, finished, progress.tick, stop)
        progress.close()
        results = [result for result in map(store.kept, found, stamps) if result is not None]
        write_summaries(out, results, by_name, {
            "isolation": isolation.report(limits, chosen.used), "device": chosen.report(), "jobs": jobs,
            "limits": limits.__dict__,
            "batch": {"submissions": len(found), "done": len(results), "ran": progress.ran, "kept": progress.kept,
                      "interrupted": interrupted, "run": store.run},
            "assignment": only, **({"shard": shard.report(found, len(everything))} if shard else {})})
        if interrupted:
            raise BatchInterrupted(len(results), len(found), out)
        return results
    finally:
        if not keep_work:
            shutil.rmtree(work, ignore_errors=True)
