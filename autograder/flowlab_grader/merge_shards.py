"""``flowlab merge-shards SHARD... --out RESULTS``: the results folders of ``flowlab grade --shard
1/N .. N/N`` (``flowlab_grader.shards``) joined into one.

The merge checks that shards 1..N of one batch are all there, once and finished, then builds the
results folder from the shards' per-submission ``result.json`` files with the code a single run
uses (``results.ResultStore`` reads them, ``grade.write_summaries`` writes ``grades.csv`` and the
gradebook, the feedback pages are rendered again): ``grades.csv`` and the feedback tree are
byte-identical to grading everything in one run. ``gradebook.db`` holds the same contents; its
bytes differ between any two runs, one or sharded, because nbgrader gives its rows random ids.
The shards' ``result.json`` files are copied as they are (each says which run graded it), so the
merged folder can be resumed like any other.
"""
from __future__ import annotations

import json
from pathlib import Path

from flowlab_grader.grade import load_assignments, write_summaries
from flowlab_grader.results import Result, ResultStore, write_atomically


class MergeError(ValueError):
    """The shards cannot be merged: one is missing, twice, unfinished, or from another batch."""


def _shard_report(folder: Path) -> dict:
    try:
        report = json.loads((folder / "grading.json").read_text())
    except (OSError, ValueError) as error:
        raise MergeError(f"{folder} is not a finished shard: no readable grading.json ({error})") from None
    if not isinstance(report.get("shard"), dict):
        raise MergeError(f"{folder} was not graded with --shard K/N")
    if report.get("batch", {}).get("interrupted"):
        raise MergeError(f"shard {folder} was interrupted: run its command again to finish it")
    return report


def check_complete(reports: list[dict]) -> tuple[int, str | None]:
    """``(total, assignment)`` of the batch whose shards' ``grading.json`` are ``reports``, or
    ``MergeError``."""
    shards = [report["shard"] for report in reports]
    counts = {shard["count"] for shard in shards}
    totals = {shard["total"] for shard in shards}
    only = {report.get("assignment") for report in reports}
    if len(counts) != 1 or len(totals) != 1 or len(only) != 1:
        raise MergeError(f"the shards come from different batches (counts {sorted(counts)}, totals {sorted(totals)}, "
                         f"assignments {sorted(map(str, only))})")
    count = counts.pop()
    indices = sorted(shard["index"] for shard in shards)
    if indices != list(range(1, count + 1)):
        missing = sorted(set(range(1, count + 1)) - set(indices))
        twice = sorted({index for index in indices if indices.count(index) > 1})
        raise MergeError(f"need each of shards 1..{count} once: missing {missing}, given twice {twice}")
    return totals.pop(), only.pop()


def merge(folders: list[Path], out: Path) -> list[Result]:
    """Merge the results folders of every shard of one batch into ``out`` (see the module
    docstring); returns the results, as ``grade`` does."""
    folders = [Path(folder).resolve() for folder in folders]
    out = Path(out).resolve()
    if out in folders:
        raise MergeError(f"--out {out} is one of the shards: merge into a folder of its own")
    reports = [(folder, _shard_report(folder)) for folder in folders]
    total, only = check_complete([report for _, report in reports])
    target, results = ResultStore(out, run="merged"), []
    for folder, report in reports:
        source = ResultStore(folder, run=report["batch"]["run"])
        for student, assignment in report["shard"]["submissions"]:
            loaded = source.load(student, assignment)
            if loaded is None:
                raise MergeError(f"shard {folder} lists {student}/{assignment} but has no readable result for it")
            result, data = loaded
            write_atomically(target.result_file(student, assignment), data)
            target.write_feedback(result)
            results.append(result)
    if len(results) != total:
        raise MergeError(f"the shards hold {len(results)} results, the batch has {total} submissions")
    write_summaries(out, results, load_assignments(only), {
        "merged": [{"folder": str(folder), "shard": f"{report['shard']['index']}/{report['shard']['count']}",
                    "isolation": report.get("isolation"), "batch": report.get("batch")}
                   for folder, report in sorted(reports, key=lambda item: item[1]["shard"]["index"])],
        "assignment": only, "batch": {"submissions": total, "done": len(results)}})
    return results
