"""The sampler benchmark's machinery, on a small copy of its problem."""
import pytest

from flowlab import bench, schedules


@pytest.fixture(scope="module")
def small_problem():
    return bench.ring_problem(n_points=400, seed=0)


def test_reference_is_converged(small_problem):
    """The reference (RK4, 1,024 steps) agrees with RK4 on twice the steps far below any error we report."""
    finer = small_problem.error("rk4", schedules.uniform(2048))
    assert finer < 1e-9


@pytest.mark.parametrize("method, nfe, steps", [("euler", 8, 8), ("heun", 8, 4), ("rk4", 8, 2),
                                                ("rk4", 6, None), ("heun", 1, None), ("adams", 5, 5)])
def test_steps_for_spends_exactly_the_nfe(method, nfe, steps):
    assert bench.steps_for(method, nfe) == steps


def test_error_table_falls_with_nfe_and_skips_impossible_nfes(small_problem):
    rows = bench.solver_error_table(nfes=(2, 8, 32), methods=("heun", "rk4"), schedules_=("uniform",),
                                    problem=small_problem)
    heun = [r["error"] for r in rows if r["method"] == "heun"]
    assert heun == sorted(heun, reverse=True) and heun[-1] < 1e-2
    assert {r["nfe"] for r in rows if r["method"] == "rk4"} == {8, 32}   # rk4 cannot spend 2 NFE
    table = bench.format_error_table(rows)
    assert "heun" in table and "-" in table.splitlines()[2]


def test_searched_adams_grid_beats_euler_128_within_10_nfe(small_problem):
    """The benchmark's headline, on 400 points: parameters searched on other noise carry over."""
    target = small_problem.error("euler", schedules.uniform(128))
    search = bench.ring_problem(n_points=400, seed=1)
    [row] = bench.fewest_nfe(target, small_problem, search, methods=("adams",), schedules_=("logsnr",),
                             max_nfe=10)
    assert row["nfe"] is not None and row["nfe"] <= 10, row
    assert row["error"] <= target


def test_heun_on_the_uniform_grid_needs_more_than_10(small_problem):
    """...while the fixed-grid default of other libraries (Heun, uniform) does not get there."""
    target = small_problem.error("euler", schedules.uniform(128))
    [row] = bench.fewest_nfe(target, small_problem, small_problem, methods=("heun",),
                             schedules_=("uniform",), max_nfe=10)
    assert row["nfe"] is None


def test_optimised_adams_grid_reaches_euler_128_in_fewer_nfe_than_searched_schedules(small_problem):
    """schedules.optimize, fitted on other noise, reaches the target at a lower NFE than uniform adams."""
    target = small_problem.error("euler", schedules.uniform(128))
    probe = bench.ring_problem(n_points=400, seed=1).x0
    rows = bench.optimised_grids(target, small_problem, probe, methods=("adams",), min_nfe=5, max_nfe=8,
                                 reference_steps=128)
    *misses, last = rows
    assert last["error"] <= target < last["uniform_error"], rows
    assert all(r["error"] > target for r in misses)
    assert [r["nfe"] for r in rows] == list(range(5, last["nfe"] + 1))
    assert len(last["grid"]) == last["nfe"] + 1 and last["grid"][0] == 0.0 and last["grid"][-1] == 1.0
    table = bench.format_optimised_table(rows, target)
    assert table.splitlines()[-1].split()[:2] == ["adams", str(last["nfe"])] and " yes " in table


def test_moons_table_measures_each_step_count_against_the_floor():
    from flowlab import pretrained

    problem = bench.moons_problem(n_points=500, n_proj=16, seed=3)
    measured = []
    record = lambda path, ts: measured.append((tuple(path.shape), len(ts))) or 0.5
    rows = bench.moons_step_table({"moons": pretrained.load("moons")}, problem, steps=(1, 4), straightness=record)
    [row] = rows
    assert measured == [((5, 500, 2), 5)] and row["straightness"] == 0.5   # the paths of the most steps
    assert row["ratio"][4] < row["ratio"][1], "more Euler steps, closer to the data"
    assert row["ratio"][1] == pytest.approx(row["sliced_w2"][1] / problem.floor)
    assert problem.floor == problem.distance(problem.other) > 0
    table = bench.format_moons_table(rows)
    assert table.splitlines()[0].split()[:4] == ["model", "1", "Euler", "4"] and "moons" in table
