"""schedules.optimize: grids fitted to a solver on probe noise, judged on other noise (exact 8-Gaussian ring)."""
import numpy as np
import pytest
import torch

from flowlab import grid_search, schedules, steps
from flowlab.data import GaussianMixture
from flowlab.grid_search import grid_from_logits, logits_from_grid, mean_error
from flowlab.solvers import integrate

RING = GaussianMixture.ring(k=8, radius=4.0, std=0.3)
FAST = {"reference_steps": 128}


def noise(n_points: int, seed: int) -> torch.Tensor:
    return torch.randn(n_points, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.fixture(scope="module")
def probe():
    return noise(300, seed=1)


@pytest.fixture(scope="module")
def held_out():
    """Other noise than the probe, and its accurate end points."""
    x = noise(1000, seed=0)
    return x, integrate(RING.velocity, x, schedules.uniform(256), "rk4")


@pytest.mark.parametrize("method, n", [("adams", 1), ("adams", 2), ("adams", 4), ("heun", 3), ("euler", 3)])
def test_optimized_grid_spans_noise_to_data(probe, method, n):
    grid = schedules.optimize(RING.velocity, probe, n, method, max_evaluations=200, **FAST)
    assert grid.shape == (n + 1,) and grid.dtype == torch.float64
    assert grid[0].item() == 0.0 and grid[-1].item() == 1.0
    assert (grid.diff() > 0).all(), grid.tolist()


@pytest.mark.parametrize("method, n, factor", [("adams", 5, 0.5), ("heun", 3, 0.95)])
def test_optimized_grid_beats_uniform_on_held_out_noise(probe, held_out, method, n, factor):
    """Fitted on 300 probe points, measured on 1,000 others: at the same NFE, clearly below uniform."""
    x, reference = held_out
    grid = schedules.optimize(RING.velocity, probe, n, method, **FAST)
    optimized = mean_error(RING.velocity, x, reference, grid, method)
    uniform = mean_error(RING.velocity, x, reference, schedules.uniform(n), method)
    assert optimized < factor * uniform, (optimized, uniform, grid.tolist())


def test_search_never_ends_worse_than_its_start(probe):
    start = schedules.logsnr(4, logsnr_min=-3.0, logsnr_max=4.0)
    grid = schedules.optimize(RING.velocity, probe, 4, "adams", start=start, max_evaluations=100, **FAST)
    reference = integrate(RING.velocity, probe, schedules.uniform(128), "rk4")
    assert (mean_error(RING.velocity, probe, reference, grid, "adams")
            <= mean_error(RING.velocity, probe, reference, start, "adams"))
    assert not torch.equal(grid, start)


def test_optimize_is_deterministic(probe):
    first, second = (schedules.optimize(RING.velocity, probe, 3, "adams", max_evaluations=150, **FAST)
                     for _ in range(2))
    torch.testing.assert_close(first, second, rtol=0, atol=0)


def test_logits_and_grid_round_trip():
    grid = schedules.shifted(6, shift=2.0)
    torch.testing.assert_close(grid_from_logits(logits_from_grid(grid)), grid, rtol=0, atol=1e-15)
    np.testing.assert_allclose(logits_from_grid(schedules.uniform(5)), np.zeros(4), atol=1e-12)


def wrong_shape(x, t):
    return x[:, :1]


@pytest.mark.parametrize("arguments, error, message", [
    ({"n": 0}, ValueError, "number of steps n"),
    ({"n": 2.5}, ValueError, "number of steps n"),
    ({"x_probe": [[0.0, 1.0]]}, TypeError, "x_probe"),
    ({"x_probe": torch.zeros(5)}, ValueError, "x_probe"),
    ({"method": "rk5"}, ValueError, "unknown method 'rk5'"),
    ({"method": "sde"}, ValueError, "unknown method 'sde'"),     # stochastic: no error to minimise
    ({"velocity": "ring"}, TypeError, "velocity must be callable"),
    ({"velocity": wrong_shape}, ValueError, "velocity"),
    ({"start": schedules.uniform(4)}, ValueError, "n \\+ 1 = 4 times"),
    ({"start": schedules.uniform(3).flip(0)}, ValueError, "start must be increasing"),
])
def test_bad_input_raises(arguments, error, message):
    call = {"velocity": RING.velocity, "x_probe": noise(10, seed=0), "n": 3, "method": "adams", **arguments}
    with pytest.raises(error, match=message):
        schedules.optimize(call.pop("velocity"), call.pop("x_probe"), call.pop("n"), call.pop("method"),
                           **call)


def test_optimize_fits_a_grid_to_a_sampler_given_as_a_function():
    """A sampler ``(velocity, x, ts) -> x_end`` (a student's own loop) is fitted like a named method:
    the same loop and step give the same grid."""
    mixture = GaussianMixture.ring(k=8, radius=4.0, std=0.3)
    probe = torch.randn(64, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    options = {"reference_steps": 32, "tolerance": 0.2, "max_evaluations": 60}
    own_loop = lambda velocity, x, ts: steps.integrate(steps.heun_step, velocity, x, ts)
    by_function = grid_search.optimize(mixture.velocity, probe, 4, own_loop, **options)
    by_name = grid_search.optimize(mixture.velocity, probe, 4, "heun", **options)
    torch.testing.assert_close(by_function, by_name, rtol=1e-9, atol=1e-12)
    assert not torch.allclose(by_function, schedules.uniform(4))
