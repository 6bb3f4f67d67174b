"""Run the solution notebooks as a student would: top to bottom, against the student release.

    flowlab rehearse [--assignment NN] [--grading] [--keep DIR] [--repeat N]

For each assignment, the source notebook (the solution) runs in a fresh kernel, in an empty
folder, with the library of its student release on ``PYTHONPATH`` (every function graded in this
notebook or a later one stubbed, as in the bundle a student gets and as in grading). So a notebook
whose exploration leans on a library function the student has not got yet fails here. Without
``--grading`` every exploration cell runs (training, plots, widgets): the student's experience;
with it, ``FLOWLAB_GRADING=1`` (what the grader runs, minus the sandbox). It prints a table of
wall times and returns the rows; any cell error makes the command fail. ``--repeat N`` runs each
notebook N times in a row and ends with a summary per notebook: failed runs, runs with a cell that
used its whole time limit (``CellTimeout``: a stall, or a cell too slow), and the spread of times.

Targets (the course's promise, on a 2-core CPU): a whole notebook within 3 minutes, grading mode
within 60 seconds.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from statistics import median
from pathlib import Path

from flowlab_grader.course import Assignment
from flowlab_grader.release import student_bundle
from flowlab_grader.sandbox import run_detached

FULL_LIMIT_S = 180.0
GRADING_LIMIT_S = 60.0


@dataclass(frozen=True)
class Rehearsal:
    assignment: str
    grading: bool
    seconds: float
    status: str
    errors: tuple[str, ...]

    @property
    def limit(self) -> float:
        return GRADING_LIMIT_S if self.grading else FULL_LIMIT_S

    @property
    def ok(self) -> bool:
        return self.status == "ok" and not self.errors

    @property
    def stalled(self) -> bool:
        """A cell used its whole time limit (the executor reports it as ``CellTimeout``)."""
        return any(error.endswith(": CellTimeout") for error in self.errors)


def run_executor(notebook: Path, environment: dict[str, str], cell_timeout: float, notebook_timeout: float,
                 keep_outputs: bool = False) -> tuple[dict | None, float, str]:
    """Run ``python -m flowlab.runtime.execute`` on ``notebook`` in its folder, detached
    (``sandbox.run_detached``: own process group, no standard input, output in ``executor.log``).

    Returns ``(status document, seconds, the log's tail)``; the document is None when the executor
    itself failed. With ``keep_outputs`` the executed notebook is ``executed.ipynb`` beside it."""
    work = notebook.parent
    command = [sys.executable, "-m", "flowlab.runtime.execute", notebook.name, "--status", "status.json",
               "--cell-timeout", str(cell_timeout), "--notebook-timeout", str(notebook_timeout)]
    if keep_outputs:
        command += ["--keep-outputs", "executed.ipynb"]
    start = time.perf_counter()
    returncode, _ = run_detached(command, work / "executor.log", notebook_timeout + 120, environment, cwd=work)
    seconds = time.perf_counter() - start
    log = (work / "executor.log").read_text(errors="replace")[-1000:]
    status = work / "status.json"
    return (json.loads(status.read_text()) if returncode == 0 and status.is_file() else None), seconds, log


def rehearse(assignment: Assignment, grading: bool, keep: Path | None = None,
             cell_timeout: float = FULL_LIMIT_S, notebook_timeout: float = 900.0) -> Rehearsal:
    """Execute ``assignment``'s solution notebook against its student bundle and time it.

    The executor runs in a child process of its own (``run_executor``), in an empty folder, with
    the bundle on ``PYTHONPATH``; a cell may take ``cell_timeout`` seconds, the notebook
    ``notebook_timeout``: past them the cell is interrupted and reported, not waited for."""
    with tempfile.TemporaryDirectory(prefix=f"flowlab-rehearse-{assignment.number:02d}-") as scratch:
        root = Path(scratch)
        bundle = student_bundle(assignment, root / "bundle")
        work = root / "work"
        work.mkdir()
        notebook = work / assignment.notebook_name
        shutil.copy2(assignment.source_notebook, notebook)
        environment = {**os.environ, "PYTHONPATH": str(bundle), "FLOWLAB_DATA": str(bundle / "data"),
                       "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", "FLOWLAB_GRADING": "1" if grading else "0"}
        result, seconds, log = run_executor(notebook, environment, cell_timeout, notebook_timeout, keep is not None)
        if result is None:
            return Rehearsal(assignment.name, grading, seconds, "executor_failed", (log[-500:],))
        if keep:
            keep.mkdir(parents=True, exist_ok=True)
            shutil.copy2(work / "executed.ipynb", keep / f"{assignment.name}.{'grading' if grading else 'full'}.ipynb")
    errors = tuple(f"{error['cell']}: {error['error']}" for error in result["errors"])
    return Rehearsal(assignment.name, grading, seconds, result["status"], errors)


def table(rows: list[Rehearsal]) -> str:
    """A Markdown table: assignment, mode, seconds, limit, status."""
    lines = ["| notebook | mode | seconds | limit | result |", "|---|---|---|---|---|"]
    for row in rows:
        verdict = "ok" if row.ok and row.seconds <= row.limit else (
            "too slow" if row.ok else f"{row.status}; " + "; ".join(row.errors)[:200])
        lines.append(f"| {row.assignment} | {'grading' if row.grading else 'full'} | {row.seconds:.0f} | "
                     f"{row.limit:.0f} | {verdict} |")
    return "\n".join(lines)


def repeat_summary(rows: list[Rehearsal]) -> str:
    """A Markdown table per notebook and mode: runs, failed runs, stalled runs, seconds (min / median / max)."""
    groups: dict[tuple[str, bool], list[Rehearsal]] = {}
    for row in rows:
        groups.setdefault((row.assignment, row.grading), []).append(row)
    lines = ["| notebook | mode | runs | failed | stalled | seconds min / median / max |", "|---|---|---|---|---|---|"]
    for (name, grading), runs in groups.items():
        seconds = [run.seconds for run in runs]
        lines.append(f"| {name} | {'grading' if grading else 'full'} | {len(runs)} | "
                     f"{sum(not run.ok for run in runs)} | {sum(run.stalled for run in runs)} | "
                     f"{min(seconds):.1f} / {median(seconds):.1f} / {max(seconds):.1f} |")
    return "\n".join(lines)


def main_rows(selected: list[Assignment], modes: list[bool], keep: Path | None = None,
              repeat: int = 1) -> list[Rehearsal]:
    """Rehearse each of ``selected`` in each mode, ``repeat`` times in a row; a line per run on stderr."""
    rows = []
    for assignment in selected:
        for grading in modes:
            for _ in range(repeat):
                rows.append(rehearse(assignment, grading, keep))
                print(table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    return rows
