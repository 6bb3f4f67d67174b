"""What the ``flowlab references``, ``release`` and ``grade`` commands do (``flowlab.cli`` parses).

Each function takes the parsed ``argparse.Namespace``, prints a short report and returns the
exit code.
"""
from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path


def run_references(args: argparse.Namespace) -> int:
    from flowlab.grading.course import assignments, find_assignment
    from flowlab.grading.references import write_references

    selected = [find_assignment(args.assignment)] if args.assignment else assignments()
    for path in write_references(selected):
        print(f"wrote {path} and {path.with_suffix('.json').name}")
    return 0


def run_release(args: argparse.Namespace) -> int:
    from flowlab.grading.course import find_assignment
    from flowlab.grading.release import build_release, update_notebooks

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
    from flowlab.grading.grade import grade
    from flowlab.grading.sandbox import Limits

    limits = Limits(cell_timeout=args.cell_timeout, notebook_timeout=args.notebook_timeout,
                    memory=int(args.memory_gib * 2**30))
    start = time.perf_counter()
    results = grade(Path(args.submissions), Path(args.out), jobs=args.jobs, limits=limits, only=args.assignment,
                    keep_work=args.keep_work, level=args.isolation, hide=args.hide)
    statuses = Counter(result.status for result in results)
    setting = json.loads((Path(args.out) / "grading.json").read_text())
    print(f"sandbox: {setting['isolation']}" + (f" ({setting['why']})" if setting["why"] else "")
          + ("; WARNING: without root the notebooks run as you and can read what you can"
             if setting["isolation"] == "limits" else ""))
    print(f"graded {len(results)} submissions in {time.perf_counter() - start:.1f} s with {args.jobs} jobs: "
          + ", ".join(f"{count} {status}" for status, count in sorted(statuses.items())))
    print(f"wrote {Path(args.out) / 'grades.csv'}, {Path(args.out) / 'gradebook.db'} and {Path(args.out) / 'feedback'}/")
    return 0


def run_rehearse(args: argparse.Namespace) -> int:
    from flowlab.grading.course import assignments, find_assignment
    from flowlab.grading.rehearse import main_rows, table

    selected = [find_assignment(args.assignment)] if args.assignment else assignments()
    modes = [True] if args.grading else [False] if args.full else [False, True]
    rows = main_rows(selected, modes, Path(args.keep) if args.keep else None)
    print(table(rows))
    failed = [row for row in rows if not row.ok or row.seconds > row.limit]
    return 1 if failed else 0
