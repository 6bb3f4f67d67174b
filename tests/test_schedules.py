"""Time grids: every schedule spans t = 0 (noise) to t = 1 (data), and has its documented shape."""
import math

import pytest
import torch

from flowlab import schedules
from flowlab.schedules import SCHEDULES

STEP_COUNTS = [1, 2, 5, 10, 64]


def steps(grid: torch.Tensor) -> torch.Tensor:
    return grid[1:] - grid[:-1]


@pytest.mark.parametrize("n", STEP_COUNTS)
@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_every_grid_spans_noise_to_data(name, n):
    grid = schedules.get(name, n)
    assert grid.shape == (n + 1,)
    assert grid.dtype == torch.float64
    assert grid[0].item() == 0.0 and grid[-1].item() == 1.0
    assert (steps(grid) > 0).all(), f"{name} is not strictly increasing: {grid.tolist()}"


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_get_is_the_schedule_function(name):
    torch.testing.assert_close(schedules.get(name, 12), SCHEDULES[name](12), rtol=0, atol=0)


def interior_times() -> torch.Tensor:
    return torch.linspace(0.001, 0.999, 101, dtype=torch.float64)


@pytest.mark.parametrize("forward, backward", [
    (schedules.sigma_from_t, schedules.t_from_sigma),
    (schedules.logsnr_from_t, schedules.t_from_logsnr),
])
def test_coordinate_conversions_round_trip(forward, backward):
    t = interior_times()
    torch.testing.assert_close(backward(forward(t)), t, rtol=1e-12, atol=1e-12)


def test_coordinates_at_known_points():
    t = torch.tensor([0.0, 0.5, 0.8, 1.0], dtype=torch.float64)
    torch.testing.assert_close(schedules.sigma_from_t(t), torch.tensor([math.inf, 1.0, 0.25, 0.0],
                                                                       dtype=torch.float64))
    lam = schedules.logsnr_from_t(t)
    torch.testing.assert_close(lam, torch.tensor([-math.inf, 0.0, 2 * math.log(4), math.inf], dtype=torch.float64))
    torch.testing.assert_close(schedules.t_from_sigma(schedules.sigma_from_t(t)), t)
    torch.testing.assert_close(schedules.t_from_logsnr(lam), t)


def test_uniform_has_equal_steps():
    torch.testing.assert_close(steps(schedules.uniform(8)), torch.full((8,), 0.125, dtype=torch.float64))


def test_shift_above_one_takes_short_steps_at_high_noise():
    grid = schedules.shifted(20, shift=3.0)
    assert steps(grid)[0] < steps(grid)[-1]
    assert (steps(grid)[1:] > steps(grid)[:-1]).all(), "steps should grow monotonically from noise to data"


def test_shift_below_one_takes_short_steps_at_low_noise():
    grid = schedules.shifted(20, shift=0.3)
    assert steps(grid)[0] > steps(grid)[-1]


def test_shift_of_one_is_uniform():
    torch.testing.assert_close(schedules.shifted(16, shift=1.0), schedules.uniform(16))


def test_karras_is_uniform_in_sigma_to_the_one_over_rho():
    """EDM's n levels sigma_0 = sigma_max .. sigma_(n-1) = sigma_min, n - 1 equal steps in sigma^(1/rho);
    sigma_0 is moved to t = 0 (sigma = inf) and t = 1 (sigma = 0) follows sigma_min."""
    rho, n = 7.0, 16
    grid = schedules.karras(n, rho=rho, sigma_min=0.002, sigma_max=80.0)
    root = schedules.sigma_from_t(grid[1:-1]) ** (1 / rho)          # sigma_1 .. sigma_(n-1)
    expected_step = (0.002 ** (1 / rho) - 80.0 ** (1 / rho)) / (n - 1)
    torch.testing.assert_close(steps(root), torch.full((n - 2,), expected_step, dtype=torch.float64))
    torch.testing.assert_close(schedules.sigma_from_t(grid[-2]), torch.tensor(0.002, dtype=torch.float64))
    sigma_1 = (80.0 ** (1 / rho) + expected_step) ** rho
    torch.testing.assert_close(grid[1], torch.tensor(1 / (1 + sigma_1), dtype=torch.float64))


def test_karras_bigger_rho_takes_shorter_steps_at_low_noise():
    """The step into sigma_min (the one before the fixed last step to sigma = 0) shrinks as rho grows."""
    into_sigma_min = [steps(schedules.karras(20, rho=rho))[-2].item() for rho in (1.0, 3.0, 7.0, 15.0)]
    assert all(a > b for a, b in zip(into_sigma_min, into_sigma_min[1:])), into_sigma_min


def test_karras_of_one_step_is_the_whole_path():
    torch.testing.assert_close(schedules.karras(1), torch.tensor([0.0, 1.0], dtype=torch.float64))


def test_the_shift_multiplies_sigma():
    """In the noise level sigma = (1 - t) / t, the SD3 shift is a scaling: sigma' = shift * sigma."""
    for shift in (0.5, 3.0):
        inner = slice(1, -1)
        torch.testing.assert_close(schedules.sigma_from_t(schedules.shifted(10, shift)[inner]),
                                   shift * schedules.sigma_from_t(schedules.uniform(10)[inner]))


@pytest.mark.parametrize("name", ["cosine", "logsnr"])
def test_symmetric_grids(name):
    """t_i + t_(n-i) = 1: as short at the data end as at the noise end."""
    for n in (5, 10, 33):
        grid = schedules.get(name, n)
        torch.testing.assert_close(grid + grid.flip(0), torch.ones(n + 1, dtype=torch.float64))


def test_cosine_is_longest_in_the_middle():
    step = steps(schedules.cosine(10))
    assert step.argmax().item() in (4, 5)
    assert step[0] < step[4] and step[-1] < step[5]


def test_logsnr_has_equal_steps_in_log_snr():
    n = 12
    grid = schedules.logsnr(n, logsnr_min=-8.0, logsnr_max=6.0)
    lam = schedules.logsnr_from_t(grid[1:-1])
    torch.testing.assert_close(lam[0], torch.tensor(-8.0 + 14.0 / n, dtype=torch.float64))
    torch.testing.assert_close(steps(lam), torch.full((n - 2,), 14.0 / n, dtype=torch.float64))


def test_unknown_schedule_lists_the_choices():
    with pytest.raises(ValueError, match="unknown schedule 'linear'") as error:
        schedules.get("linear", 10)
    for name in SCHEDULES:
        assert name in str(error.value)


@pytest.mark.parametrize("n", [0, -1, 2.5, "10", True, None])
@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_bad_step_count_raises(name, n):
    with pytest.raises(ValueError, match="number of steps n"):
        schedules.get(name, n)


@pytest.mark.parametrize("name, params, message", [
    ("shifted", {"shift": 0.0}, "shift"),
    ("shifted", {"shift": -2.0}, "shift"),
    ("karras", {"rho": 0.0}, "rho"),
    ("karras", {"sigma_min": 1.0, "sigma_max": 0.5}, "sigma_min"),
    ("karras", {"sigma_min": 0.0}, "sigma_min"),
    ("logsnr", {"logsnr_min": 3.0, "logsnr_max": -3.0}, "logsnr_min"),
])
def test_bad_parameters_raise(name, params, message):
    with pytest.raises(ValueError, match=message):
        schedules.get(name, 10, **params)
