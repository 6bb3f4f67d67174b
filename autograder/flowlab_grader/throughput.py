"""``flowlab bench grading``: how fast this machine grades, and what a term of notebooks costs.

    flowlab bench grading [--assignment NN ...] [--copies K] [--jobs J]

It grades a real batch with ``flowlab grade``'s code: ``K`` copies of each chosen assignment's
instructor notebook (solutions filled in; every notebook of the course by default, the mix a
term grades), ``J`` at a time (default: the cores this process may use), in the sandbox. Two
times are measured:

    setup    what every batch (every shard) pays once, whatever its size: the sandbox probe,
             ``nbgrader generate_assignment`` for the gradebook, the student bundles
    batch    the whole ``grade`` call, setup included

and the steady rate follows: ``r = n / (batch - setup)`` submissions per second, that is
``60 r / min(J, cores)`` per minute per core. The projection for ``N`` notebooks on ``M``
machines of ``C`` cores each (one shard per machine, ``C`` jobs each) assumes the rate scales
with the cores, which holds while each job has a core of its own (one notebook uses one: the
sandbox sets ``OMP_NUM_THREADS=1``) and memory keeps up (each job takes up to
``--memory-gib``): ``setup + N / (M C r_core)``.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from flowlab_grader import sandbox
from flowlab_grader.course import Assignment

TERM_NOTEBOOKS = 2400
MACHINES = ((1, 16), (10, 16))      # (machines, cores each)


@dataclass
class Measurement:
    """One measured batch: ``submissions`` graded ``jobs`` at a time on ``cores`` cores."""
    submissions: int
    jobs: int
    cores: int
    setup: float                # seconds
    batch: float                # seconds, setup included
    notebook: float             # mean seconds of one notebook's run in the sandbox
    statuses: dict[str, int]

    @property
    def per_core_per_minute(self) -> float:
        """Submissions per minute per core, in the steady state (setup excluded)."""
        return 60.0 * self.submissions / max(self.batch - self.setup, 1e-9) / min(self.jobs, self.cores)

    def projected_minutes(self, notebooks: int, machines: int, cores: int) -> float:
        """Minutes for ``notebooks`` on ``machines`` of ``cores`` each (one shard each)."""
        return self.setup / 60.0 + notebooks / (machines * cores * self.per_core_per_minute)


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def write_batch(selected: list[Assignment], copies: int, folder: Path) -> int:
    """``copies`` students, each submitting the instructor notebook of every ``selected``
    assignment (the grader restores the hidden test cells; the solutions stay): returns how many."""
    for copy in range(copies):
        for assignment in selected:
            target = folder / f"bench-{copy:03d}" / assignment.name
            target.mkdir(parents=True)
            shutil.copyfile(assignment.source_notebook, target / assignment.notebook_name)
    return copies * len(selected)


def measure_setup(selected: list[Assignment], limits: sandbox.Limits, allow_unisolated: bool) -> float:
    """Seconds of what one batch does before its first notebook: the probe, gradebook, bundles."""
    from flowlab_grader.grade import PreparedAssignment, make_runnable

    work = Path(tempfile.mkdtemp(prefix="flowlab-bench-setup-"))
    os.chmod(work, 0o711)
    try:
        start = time.perf_counter()
        sandbox.probe_isolation(work, limits, allow_unisolated)
        make_runnable({assignment.name: PreparedAssignment.load(assignment) for assignment in selected}, work)
        return time.perf_counter() - start
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure(selected: list[Assignment], copies: int = 1, jobs: int | None = None,
            limits: sandbox.Limits | None = None, allow_unisolated: bool = False) -> Measurement:
    """Grade ``copies`` of each ``selected`` notebook ``jobs`` at a time; time it (see above)."""
    from flowlab_grader.grade import grade

    limits, jobs = limits or sandbox.Limits(), jobs or usable_cores()
    folder = Path(tempfile.mkdtemp(prefix="flowlab-bench-grading-"))
    try:
        count = write_batch(selected, copies, folder / "submitted")
        setup = measure_setup(selected, limits, allow_unisolated)
        start = time.perf_counter()
        results = grade(folder / "submitted", folder / "results", jobs=jobs, limits=limits,
                        allow_unisolated=allow_unisolated, force=True)
        batch = time.perf_counter() - start
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    statuses: dict[str, int] = {}
    for result in results:
        statuses[result.status] = statuses.get(result.status, 0) + 1
    return Measurement(count, jobs, usable_cores(), setup, batch,
                       sum(result.seconds for result in results) / max(len(results), 1), statuses)


def table(measured: Measurement, notebooks: int = TERM_NOTEBOOKS) -> str:
    """The measurement and the projections, as a markdown table."""
    rows = [("submissions graded", f"{measured.submissions} ({', '.join(f'{n} {s}' for s, n in sorted(measured.statuses.items()))})"),
            ("jobs at once / usable cores", f"{measured.jobs} / {measured.cores}"),
            ("setup per batch (probe, gradebook, bundles)", f"{measured.setup:.1f} s"),
            ("whole batch, setup included", f"{measured.batch:.1f} s"),
            ("one notebook in the sandbox (mean)", f"{measured.notebook:.1f} s"),
            ("submissions per minute per core", f"{measured.per_core_per_minute:.2f}")]
    for machines, cores in MACHINES:
        minutes = measured.projected_minutes(notebooks, machines, cores)
        where = f"{machines} machine of {cores} cores" if machines == 1 else f"{machines} machines of {cores} cores"
        rows.append((f"{notebooks:,} notebooks on {where}", f"{minutes:.0f} min ({minutes * machines * cores / 60:.1f} core-hours)"))
    width = max(len(what) for what, _ in rows)
    lines = [f"| {'what'.ljust(width)} | value |", f"|{'-' * (width + 2)}|-------|"]
    return "\n".join(lines + [f"| {what.ljust(width)} | {value} |" for what, value in rows])
