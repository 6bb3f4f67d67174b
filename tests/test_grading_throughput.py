"""``flowlab bench grading``: the arithmetic of the rate and the projections, and the batch it
grades (no kernels: the README's table comes from running the command itself)."""
import re

import pytest

from flowlab_grader.course import assignments
from flowlab_grader.throughput import Measurement, table, write_batch


def test_the_rate_leaves_out_the_setup_and_counts_each_core_once():
    measured = Measurement(submissions=8, jobs=2, cores=2, setup=20.0, batch=60.0, notebook=9.0,
                           statuses={"graded": 8})
    assert measured.per_core_per_minute == pytest.approx(6.0)              # 8 in 40 s on 2 cores
    assert measured.projected_minutes(2400, 1, 16) == pytest.approx(20 / 60 + 2400 / 96)
    assert measured.projected_minutes(2400, 10, 16) == pytest.approx(20 / 60 + 2400 / 960)
    assert Measurement(8, 4, 2, 20.0, 60.0, 9.0, {}).per_core_per_minute == pytest.approx(6.0)


def test_the_table_names_the_measurement_and_both_projections():
    text = table(Measurement(8, 2, 2, 20.0, 60.0, 9.0, {"graded": 7, "timeout": 1}))
    assert "8 (7 graded, 1 timeout)" in text and "| submissions per minute per core" in text
    assert re.search(r"\| 2,400 notebooks on 1 machine of 16 cores +\| 25 min \(6\.8 core-hours\) \|", text)
    assert re.search(r"\| 2,400 notebooks on 10 machines of 16 cores +\| 3 min \(7\.6 core-hours\) \|", text)


def test_the_batch_holds_each_instructor_notebook_once_per_copy(tmp_path):
    chosen = assignments()[:2]
    assert write_batch(chosen, 3, tmp_path) == 6
    found = sorted(path.relative_to(tmp_path).as_posix() for path in tmp_path.glob("*/*/*.ipynb"))
    assert found == sorted(f"bench-{copy:03d}/{a.name}/{a.notebook_name}" for copy in range(3) for a in chosen)
    assert (tmp_path / "bench-000" / chosen[0].name / chosen[0].notebook_name).read_bytes() == \
        chosen[0].source_notebook.read_bytes()
