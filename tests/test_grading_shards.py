"""``flowlab grade --shard K/N`` and ``flowlab merge-shards``: three shards merged give the files
of one run.

The batch logic runs for real (discovery, slicing, result files, summaries, gradebook,
feedback); each notebook run is a stand-in whose scores follow from the notebook's bytes, so
that no kernel starts. The end-to-end batch grades real notebooks in shards
(``test_grading_end_to_end.py``).
"""
import functools
import hashlib
import os
import subprocess
from pathlib import Path

import nbgrader.api
import pytest

from flowlab_grader import grade as grading
from flowlab_grader import sandbox
from flowlab_grader.course import assignments, repository_dir
from flowlab_grader.results import Result
from flowlab_grader.scoring import CaseResult, CellScore
from flowlab_grader.merge_shards import MergeError, merge
from flowlab_grader.shards import Shard

FIRST, SECOND = assignments()[0], assignments()[1]
UNISOLATED = sandbox.Isolation("unisolated", "a test: notebooks are not run")
SLURM = repository_dir() / "autograder" / "examples" / "slurm"


def files(folder: Path, pattern: str) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in sorted(folder.glob(pattern))
            if path.is_file()}


def gradebook_contents(path: Path) -> list[tuple]:
    """Every score in an nbgrader gradebook, without nbgrader's random row ids."""
    from nbgrader.api import Gradebook

    rows = []
    with Gradebook(f"sqlite:///{path}") as gradebook:
        for assignment in gradebook.assignments:
            for notebook in assignment.notebooks:
                rows += [(assignment.name, notebook.name, cell.name, cell.max_score) for cell in notebook.grade_cells]
            for submission in gradebook.assignment_submissions(assignment.name):
                for notebook in submission.notebooks:
                    rows += [(assignment.name, submission.student.id, grade.name, grade.auto_score, grade.manual_score)
                             for grade in notebook.grades]
    return sorted(rows, key=repr)


def stand_in(index, submission, prepared, work, level, limits, *rest, **options) -> Result:
    """A graded result that depends only on the submission: each case passes or fails by a
    hash of the notebook, and one student's notebook 'times out'."""
    result = Result(submission.student, submission.assignment, "invalid", submission.problem)
    if prepared is None or submission.notebook is None:
        return result
    digest = hashlib.sha256(submission.notebook).digest()
    result.cells = [CellScore(cell, value, value * (digest[number] % 3) / 2,
                              [CaseResult(f"{cell}/a", "a case <with markup>", digest[number] % 3 == 2,
                                          "" if digest[number] % 3 == 2 else f"off by {digest[number]}")])
                    for number, (cell, value) in enumerate(prepared.points.items())]
    result.status = "timeout" if submission.student == "gus" else "graded"
    result.seconds = 1.5
    return result


alembic_head = functools.lru_cache(maxsize=1)(nbgrader.api.get_alembic_version)


@pytest.fixture(autouse=True)
def alembic_asked_once(monkeypatch):
    """nbgrader asks the ``alembic`` command for its schema version (seconds) in every new gradebook."""
    monkeypatch.setattr(nbgrader.api, "get_alembic_version", alembic_head)


@pytest.fixture
def batch(tmp_path, monkeypatch):
    """Eight students: notebooks of the first two assignments (one student has none of the
    first, one a broken one, one an unknown assignment)."""
    monkeypatch.setattr(grading, "grade_one", stand_in)
    monkeypatch.setattr(grading, "make_runnable", lambda prepared, work: None)
    folder = tmp_path / "submitted"
    for number, student in enumerate(["ada", "bo", "cy", "dee", "eve", "fay", "gus", "hal"]):
        for assignment in (FIRST, SECOND)[:1 if number % 2 else 2]:
            if student == "bo" and assignment == FIRST:
                continue
            (folder / student / assignment.name).mkdir(parents=True)
            text = "not a notebook" if student == "cy" else f'{{"cells": [], "who": "{student}"}}'
            (folder / student / assignment.name / assignment.notebook_name).write_text(text)
    (folder / "bo" / "99_unknown").mkdir(parents=True)
    return folder


def grade(folder: Path, out: Path, **options):
    return grading.grade(folder, out, jobs=2, isolation=UNISOLATED, **options)


@pytest.mark.slow
def test_three_shards_merged_give_the_files_of_one_run(batch, tmp_path):
    only = None
    one = grade(batch, tmp_path / "one", only=only)
    shards = [tmp_path / f"shard-{index}" for index in (1, 2, 3)]
    sliced = [grade(batch, folder, only=only, shard=Shard(index, 3)) for index, folder in enumerate(shards, 1)]
    assert sorted(len(part) for part in sliced) in ([2, 2, 3], [3, 3, 3], [3, 3, 4], [4, 4, 4], [4, 4, 5])
    merged = merge(list(reversed(shards)), tmp_path / "merged")
    assert sorted(tuple(r.row().values()) for r in merged) == sorted(tuple(r.row().values()) for r in one)
    assert {r.status for r in one} == {"graded", "timeout", "invalid"}
    for pattern in ("grades.csv", "feedback/**/*"):
        expected = files(tmp_path / "one", pattern)
        assert expected and files(tmp_path / "merged", pattern) == expected, pattern
    assert gradebook_contents(tmp_path / "merged" / "gradebook.db") == gradebook_contents(tmp_path / "one" / "gradebook.db")
    assert files(tmp_path / "merged", "submissions/*/*/result.json") == {
        name: data for folder in shards for name, data in files(folder, "submissions/*/*/result.json").items()}


def test_the_slices_cover_every_submission_once_and_balance(batch, tmp_path):
    items = list(range(23))
    slices = [Shard(index, 5).select(items) for index in range(1, 6)]
    assert sorted(sum(slices, [])) == items and {len(part) for part in slices} == {4, 5}


@pytest.mark.parametrize("text, message", [("3", "K/N"), ("0/3", "1 <= K <= N"), ("4/3", "1 <= K <= N"),
                                           ("a/b", "K/N")])
def test_a_bad_shard_is_refused_naming_the_form(text, message):
    with pytest.raises(ValueError, match=message):
        Shard.parse(text)
    assert Shard.parse(" 2/ 3") == Shard(2, 3) and str(Shard(2, 3)) == "2/3"


def test_a_merge_refuses_missing_doubled_foreign_or_unfinished_shards(batch, tmp_path):
    shards = [tmp_path / f"shard-{index}" for index in (1, 2, 3)]
    for index, folder in enumerate(shards, 1):
        grade(batch, folder, only=FIRST.name, shard=Shard(index, 3))
    grade(batch, tmp_path / "other", only=SECOND.name, shard=Shard(3, 3))
    grade(batch, tmp_path / "whole", only=FIRST.name)
    with pytest.raises(MergeError, match=r"missing \[2\]"):
        merge([shards[0], shards[2]], tmp_path / "merged")
    with pytest.raises(MergeError, match=r"given twice \[1\]"):
        merge([shards[0], shards[0], shards[1], shards[2]], tmp_path / "merged")
    with pytest.raises(MergeError, match="different batches"):
        merge([shards[0], shards[1], tmp_path / "other"], tmp_path / "merged")
    with pytest.raises(MergeError, match="not graded with --shard"):
        merge([tmp_path / "whole"], tmp_path / "merged")
    with pytest.raises(MergeError, match="no readable grading.json"):
        merge([tmp_path / "nothing"], tmp_path / "merged")
    next(shards[1].glob("submissions/*/*/result.json")).write_text("{}")
    with pytest.raises(MergeError, match="no readable result"):
        merge(shards, tmp_path / "merged")


def test_the_slurm_array_task_grades_its_shard_and_the_merge_joins_them(tmp_path):
    """The example job scripts, with a stand-in ``flowlab`` that prints its arguments."""
    fake = tmp_path / "flowlab"
    fake.write_text('#!/bin/sh\necho "$@"\n')
    fake.chmod(0o755)
    environment = {**os.environ, "FLOWLAB": str(fake), "SUBMISSIONS": "/in", "RESULTS": "/out",
                   "ASSIGNMENT": FIRST.name, "SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "3",
                   "SLURM_CPUS_PER_TASK": "16"}

    def run(script: str, **extra) -> str:
        done = subprocess.run(["bash", str(SLURM / script)], env={**environment, **extra}, capture_output=True,
                              text=True, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert run("grade.sbatch") == f"grade /in --out /out/shard-2 --shard 2/3 --jobs 16 --assignment {FIRST.name}"
    assert run("grade.sbatch", ASSIGNMENT="") == "grade /in --out /out/shard-2 --shard 2/3 --jobs 16"
    assert run("merge.sbatch", RESULTS=str(tmp_path)).startswith("merge-shards")
