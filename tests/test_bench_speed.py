"""The speed benchmark's table (its structure only: timings are for reading, not for asserting)."""
import torch

from flowlab import bench_speed, cli

COLUMNS = list(bench_speed.COLUMNS)


def _rows(table: str) -> list[list[str]]:
    lines = table.splitlines()
    assert lines[0].startswith("ms per velocity evaluation on cpu") and "wall clock" in lines[0]
    assert lines[1].split() == ["network", "batch", "method", "NFE", "bare", "ms", "integrate", "ms",
                                "torchdiffeq", "ms", "vs", "bare"]
    return [line.split() for line in lines[2:]]


def test_quick_speed_table_from_the_command_line(capsys):
    assert cli.main(["bench", "speed", "--quick"]) == 0
    rows = _rows(capsys.readouterr().out.strip())
    assert [(r[0], r[2]) for r in rows] == [(network, method) for network in ("mlp-2d", "unet-mnist")
                                           for method in bench_speed.METHODS]
    quick = bench_speed.QUICK
    assert [int(r[1]) for r in rows] == [quick["mlp_batch"]] * 3 + [quick["unet_batch"]] * 3
    steps = quick["steps"]
    assert [int(r[3]) for r in rows] == [steps, 2 * steps, steps] * 2          # NFE of euler, heun, adams
    for row in rows:
        bare, ours, theirs, ratio = row[4:]
        assert float(bare) > 0 and float(ours) > 0 and float(ratio) > 0
        assert (theirs == "-") == (row[2] == "adams")


def test_the_three_loops_compute_the_same_samples():
    """The bare loop and torchdiffeq are timed on the same updates as integrate: same end points."""
    [mlp, _] = bench_speed.workloads(torch.device("cpu"), mlp_batch=64, unet_batch=1, steps_=5)
    with torch.inference_mode():
        for method in bench_speed.METHODS:
            ours = bench_speed.integrate_loop(method, mlp.velocity, mlp.x, mlp.ts)
            torch.testing.assert_close(bench_speed.bare_loop(method, mlp.velocity, mlp.x, mlp.ts), ours)
            if method in bench_speed.TORCHDIFFEQ_METHOD:
                torch.testing.assert_close(bench_speed.torchdiffeq_loop(method, mlp.velocity, mlp.x, mlp.ts), ours)
