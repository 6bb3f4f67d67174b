"""The instructor subcommands of ``flowlab``: ``references``, ``release``, ``grade``, ``merge-shards``,
``export gradescope``, ``rehearse``.

``flowlab.cli`` finds them through the ``flowlab.commands`` entry-point group (declared in
``autograder/pyproject.toml``): ``cli_commands()`` returns their specs, so a student's ``flowlab``,
without this package, simply has no such commands. Each ``run_*`` takes the parsed
``argparse.Namespace``, prints a short report and returns the exit code.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

from flowlab.cli import Command, argument, positive_int


def run_references(args: argparse.Namespace) -> int:
    from flowlab_grader.course import assignments, find_assignment
    from flowlab_grader.references import write_references

    selected = [find_assignment(args.assignment)] if args.assignment else assignments()
    for path in write_references(selected):
        print(f"wrote {path} and {path.with_suffix('.json').name}")
    return 0


def run_release(args: argparse.Namespace) -> int:
    from flowlab_grader.course import find_assignment
    from flowlab_grader.release import build_release, update_notebooks

    if args.notebooks:
        only = [find_assignment(args.assignment)] if args.assignment else None
        for path in update_notebooks(only):
            print(f"wrote {path}")
    if args.out:
        manifest = build_release(Path(args.out), None if args.through is None else int(args.through))
        print(f"student release through notebook {manifest['through']} in {args.out}: "
              f"{len(manifest['notebooks'])} notebooks; stubbed: {', '.join(manifest['stubbed']) or 'nothing'}; "
              f"no leaks found")
    if not args.notebooks and not args.out:
        raise ValueError("give --out DIR (the student bundle) and/or --notebooks (update notebooks/)")
    return 0


def run_grade(args: argparse.Namespace) -> int:
    from flowlab_grader.batch import terminate_as_interrupt
    from flowlab_grader.devices import DeviceUnavailable
    from flowlab_grader.grade import BatchInterrupted, grade
    from flowlab_grader.sandbox import Limits, SandboxUnavailable
    from flowlab_grader.shards import Shard

    sharding = {"shard": Shard.parse(args.shard)} if args.shard else {}
    limits = Limits(cell_timeout=args.cell_timeout, notebook_timeout=args.notebook_timeout,
                    memory=int(args.memory_gib * 2**30))
    start = time.perf_counter()
    try:
        with terminate_as_interrupt():
            results = grade(Path(args.submissions), Path(args.out), jobs=args.jobs, limits=limits,
                            only=args.assignment, keep_work=args.keep_work, allow_unisolated=args.allow_unisolated,
                            force=args.force, **sharding, device=args.device)
    except (SandboxUnavailable, DeviceUnavailable) as error:
        print(f"flowlab grade: {error}", file=sys.stderr)
        return 2
    except BatchInterrupted as stopped:
        print(f"flowlab grade: {stopped}; their results are kept in {Path(args.out) / 'submissions'}/ and "
              f"{Path(args.out) / 'grades.csv'} lists them. Run the same command again to grade the rest "
              f"(finished submissions are not run again; --force grades everything again).", file=sys.stderr)
        return 130
    summary = json.loads((Path(args.out) / "grading.json").read_text())
    statuses = Counter(result.status for result in results)
    print(isolation_lines(summary["isolation"]))
    if "device" in summary:
        print(device_line(summary["device"]))
    kept = summary["batch"]["kept"]
    print(f"graded {len(results)} submissions in {time.perf_counter() - start:.1f} s with {args.jobs} jobs"
          + (f" ({summary['batch']['ran']} run, {kept} kept from an earlier run)" if kept else "") + ": "
          + ", ".join(f"{count} {status}" for status, count in sorted(statuses.items())))
    print(f"wrote {Path(args.out) / 'grades.csv'}, {Path(args.out) / 'gradebook.db'} and {Path(args.out) / 'feedback'}/")
    print(written_answers_line(results, Path(args.out)), end="")
    if args.shard:
        print(f"shard {args.shard} of the batch; once every shard is done: flowlab merge-shards SHARD_FOLDERS... "
              f"--out RESULTS")
    return 0


def run_export_gradescope(args: argparse.Namespace) -> int:
    from flowlab_grader.course import find_assignment
    from flowlab_grader.gradescope import export
    from flowlab_grader.sandbox import Limits

    limits = Limits(cell_timeout=args.cell_timeout, notebook_timeout=args.notebook_timeout,
                    memory=int(args.memory_gib * 2**30))
    path = export(find_assignment(args.assignment), Path(args.out), args.visibility, limits)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB): upload it as the assignment's autograder "
          f"(Gradescope: Configure Autograder, zip file upload)")
    return 0


def run_bench_grading(args: argparse.Namespace) -> int:
    from flowlab_grader.course import assignments, find_assignment
    from flowlab_grader.throughput import measure, table

    selected = [find_assignment(name) for name in args.assignment] if args.assignment else assignments()
    measured = measure(selected, copies=args.copies, jobs=args.jobs, allow_unisolated=args.allow_unisolated)
    print(table(measured))
    return 0 if set(measured.statuses) == {"graded"} else 1


def run_merge_shards(args: argparse.Namespace) -> int:
    from flowlab_grader.merge_shards import MergeError, merge

    try:
        results = merge([Path(folder) for folder in args.shards], Path(args.out))
    except MergeError as error:
        print(f"flowlab merge-shards: {error}", file=sys.stderr)
        return 2
    statuses = Counter(result.status for result in results)
    print(f"merged {len(args.shards)} shards: {len(results)} submissions ("
          + ", ".join(f"{count} {status}" for status, count in sorted(statuses.items())) + ")")
    print(f"wrote {Path(args.out) / 'grades.csv'}, {Path(args.out) / 'gradebook.db'} and {Path(args.out) / 'feedback'}/")
    print(written_answers_line(results, Path(args.out)), end="")
    return 0


def written_answers_line(results: list, out: Path) -> str:
    """What is left for people (a line, or ``""``): the written answers wait in the gradebook."""
    pending = [result for result in results if result.manual]
    if not pending:
        return ""
    return (f"written answers of {len(pending)} submissions ({sum(result.manual_max for result in pending):g} points) "
            f"wait for people: grade them in {out / 'gradebook.db'} (nbgrader's formgrader or Gradebook API), then "
            f"run flowlab merge-manual {out}\n")


def isolation_lines(report: dict) -> str:
    """The sandbox report of ``grading.json`` on the terminal: what held, and a warning if little did."""
    lines = [f"sandbox: {report['level']}; filesystem: {report['filesystem']}; user: {report['user']}; "
             f"network: {report['network']}; memory: {report['memory']}"]
    if report["level"] != "bwrap":
        lines.append(f"WARNING: graded without filesystem isolation ({report['why']})")
    return "\n".join(lines)


def device_line(report: dict) -> str:
    """The device part of ``grading.json`` on the terminal."""
    if report["used"] == "cuda":
        return f"device: cuda ({report['gpu']}): every hidden case also ran with its inputs on the GPU"
    return "device: cpu" + (f" (no GPU used: {report['why']})" if report["why"] else "")


def run_merge_manual(args: argparse.Namespace) -> int:
    from flowlab_grader.manual import merge, summary

    out = Path(args.out) if args.out else Path(args.results) / "final.csv"
    rows = merge(Path(args.results), out)
    print(f"{summary(rows)}\nwrote {out}")
    return 0


def run_rehearse(args: argparse.Namespace) -> int:
    from flowlab_grader.course import assignments, find_assignment
    from flowlab_grader.rehearse import main_rows, repeat_summary, table

    selected = [find_assignment(args.assignment)] if args.assignment else assignments()
    modes = [True] if args.grading else [False] if args.full else [False, True]
    rows = main_rows(selected, modes, Path(args.keep) if args.keep else None, args.repeat)
    print(table(rows))
    if args.repeat > 1:
        print(repeat_summary(rows))
    failed = [row for row in rows if not row.ok or row.seconds > row.limit]
    return 1 if failed else 0


def cli_commands() -> list[Command]:
    """The specs of the instructor subcommands (the entry point that ``flowlab.cli`` loads)."""
    return [
        Command(("references",), "regenerate the hidden and public references of the notebooks' tests", (
            argument("--assignment", metavar="NN", help="only this assignment (a name or a number; default: all)"),
        ), run_references),
        Command(("release",), "build the student bundle, or update the student notebooks in notebooks/", (
            argument("--out", metavar="DIR", help="write the student bundle to this new folder"),
            argument("--through", metavar="NN", help="release notebooks up to NN; functions graded in NN and "
                                                     "later are stubbed (default: the last notebook)"),
            argument("--notebooks", action="store_true", help="regenerate notebooks/ from autograder/source"),
            argument("--assignment", metavar="NN", help="with --notebooks: only this assignment (default: all)"),
        ), run_release),
        Command(("grade",), "grade a folder of submissions: grades.csv, feedback, nbgrader gradebook", (
            argument("submissions", metavar="SUBMISSIONS", help="nbgrader's submitted/ layout, or one zip per student"),
            argument("--out", required=True, metavar="RESULTS", help="results folder"),
            argument("--jobs", type=positive_int, default=2, help="submissions graded at once (default: %(default)s)"),
            argument("--assignment", metavar="NN_name", help="grade only this assignment (every student gets a row)"),
            argument("--cell-timeout", type=float, default=60.0, help="seconds per cell (default: %(default)s)"),
            argument("--notebook-timeout", type=float, default=300.0,
                     help="seconds per notebook (default: %(default)s)"),
            argument("--memory-gib", type=float, default=6.0,
                     help="data segment per process, RLIMIT_DATA (default: %(default)s)"),
            argument("--allow-unisolated", action="store_true",
                     help="grade even where bubblewrap cannot isolate the file system (notebooks then read "
                          "whatever their user can read; as root, each job gets a user of its own where it can)"),
            argument("--keep-work", action="store_true", help="keep the working copies (with outputs) for debugging"),
            argument("--shard", metavar="K/N",
                     help="grade only slice K of N (every N-th submission from the K-th, in sorted order) into "
                          "RESULTS; flowlab merge-shards joins the N results folders (a Slurm array: "
                          "autograder/examples/slurm)"),
            argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                     help="cuda: every hidden case also runs with its inputs on the GPU and must pass there too; "
                          "auto: cuda when a CUDA GPU is usable here, else cpu (default: %(default)s)"),
            argument("--force", action="store_true",
                     help="grade every submission again (default: keep the results of submissions whose notebook, "
                          "references and grader are unchanged since an earlier run into the same RESULTS)"),
        ), run_grade),
        Command(("export", "gradescope"), "write Gradescope's autograder.zip for one assignment", (
            argument("--assignment", required=True, metavar="NN", help="the assignment (a name or a number)"),
            argument("--out", required=True, metavar="DIR", help="folder that receives autograder.zip"),
            argument("--visibility", choices=("visible", "hidden", "after_due_date", "after_published"),
                     default="after_due_date", help="when students see the hidden tests' results "
                                                    "(default: %(default)s)"),
            argument("--cell-timeout", type=float, default=60.0, help="seconds per cell (default: %(default)s)"),
            argument("--notebook-timeout", type=float, default=300.0,
                     help="seconds per notebook (default: %(default)s)"),
            argument("--memory-gib", type=float, default=6.0,
                     help="data segment per process, RLIMIT_DATA (default: %(default)s)"),
        ), run_export_gradescope),
        Command(("bench", "grading"), "grade a real batch; submissions per minute per core, cost of a term's "
                                      "notebooks on one machine and on a cluster", (
            argument("--assignment", action="append", metavar="NN",
                     help="grade this assignment's notebook (repeat for more; default: every notebook)"),
            argument("--copies", type=positive_int, default=1, help="copies of each notebook (default: %(default)s)"),
            argument("--jobs", type=positive_int, default=None,
                     help="notebooks graded at once (default: the usable cores)"),
            argument("--allow-unisolated", action="store_true", help="as for flowlab grade"),
        ), run_bench_grading),
        Command(("merge-shards",), "merge the results folders of flowlab grade --shard 1/N .. N/N into one", (
            argument("shards", metavar="SHARD", nargs="+", help="the results folder of each shard"),
            argument("--out", required=True, metavar="RESULTS", help="the merged results folder"),
        ), run_merge_shards),
        Command(("merge-manual",), "merge the written answers' manual grades (nbgrader gradebook) into the final CSV", (
            argument("results", metavar="RESULTS", help="a results folder of flowlab grade (grades.csv, gradebook.db)"),
            argument("--out", metavar="FILE", help="the final CSV (default: RESULTS/final.csv)"),
        ), run_merge_manual),
        Command(("rehearse",), "run the solution notebooks top to bottom against the student release; time table", (
            argument("--assignment", metavar="NN", help="only this assignment (default: all)"),
            argument("--grading", action="store_true", help="only grading mode (FLOWLAB_GRADING=1)"),
            argument("--full", action="store_true", help="only the full run (every exploration cell)"),
            argument("--keep", metavar="DIR", help="keep the executed notebooks (with outputs) here"),
            argument("--repeat", type=positive_int, default=1, metavar="N",
                     help="run each notebook N times in a row, then a summary (failed, stalled, times)"),
        ), run_rehearse),
    ]
