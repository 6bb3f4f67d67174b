"""ODE inversion, round trips and SDEdit on the exact Gaussian-mixture flow.

Measured mean round-trip error (data -> noise -> data, 256 ring points, uniform grid):
Euler 0.70, 0.28, 0.13, 0.065 and Heun 0.054, 0.016, 0.0032, 0.00045 at 4, 8, 16, 32 steps,
i.e. log2 slopes of 1.14 (Euler) and 2.31 (Heun) per doubling. RK4 with 64 steps inverts its own
samples to 1.3e-7.
"""
import math

import pytest
import torch

from flowlab.data import GaussianMixture
from flowlab.inversion import invert, invert_fixed_point, round_trip, sdedit
from flowlab.paths import interpolate
from flowlab.schedules import uniform
from flowlab.solvers import CountingVelocity, integrate

GMM = GaussianMixture.ring()
STEP_COUNTS = [4, 8, 16, 32]


def _noise(device, n=256, seed=0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, generator=generator, dtype=torch.float64).to(device)


def test_invert_undoes_sampling(device):
    z, ts = _noise(device), uniform(64)
    x1 = integrate(GMM.velocity, z, ts, "rk4")
    z_hat = invert(GMM.velocity, x1, ts, "rk4")
    assert float((z_hat - z).norm(dim=1).max()) < 1e-5


def _mean_round_trip_errors(method: str, data: torch.Tensor) -> list[float]:
    return [float(round_trip(GMM.velocity, data, uniform(n), method)[2].mean()) for n in STEP_COUNTS]


def _slope(errors: list[float]) -> float:
    """Average log2 drop of the error per doubling of the steps."""
    return math.log2(errors[0] / errors[-1]) / (len(errors) - 1)


def test_round_trip_error_falls_with_nfe_at_the_solver_order(device):
    data = GMM.sample(256, generator=torch.Generator().manual_seed(1)).to(device)
    euler, heun = _mean_round_trip_errors("euler", data), _mean_round_trip_errors("heun", data)
    for errors in (euler, heun):
        assert all(later < earlier for earlier, later in zip(errors, errors[1:]))
    assert 0.8 < _slope(euler) < 1.5
    assert _slope(heun) > 1.8
    assert all(h < e for h, e in zip(heun, euler))


def test_round_trip_returns_the_pieces(device):
    data, ts = GMM.sample(8, generator=torch.Generator().manual_seed(2)).to(device), uniform(6)
    x0_hat, x1_reconstructed, error = round_trip(GMM.velocity, data, ts, "heun")
    torch.testing.assert_close(x0_hat, invert(GMM.velocity, data, ts, "heun"))
    torch.testing.assert_close(x1_reconstructed, integrate(GMM.velocity, x0_hat, ts, "heun"))
    torch.testing.assert_close(error, (x1_reconstructed - data).norm(dim=1) / math.sqrt(2))
    assert error.shape == (8,)


def test_invert_rejects_a_decreasing_grid():
    with pytest.raises(ValueError, match="increasing"):
        invert(GMM.velocity, _noise("cpu", n=4), uniform(4).flip(0))


@pytest.mark.parametrize("method", ["euler", "heun"])
def test_sdedit_from_t0_zero_is_full_sampling(method, device):
    x1, noise, ts = GMM.sample(16).to(device), _noise(device, n=16), uniform(8)
    assert torch.equal(sdedit(GMM.velocity, x1, 0.0, ts, noise=noise, method=method),
                       integrate(GMM.velocity, noise, ts, method))


def test_sdedit_starts_on_the_path_and_steps_on_the_rest_of_the_grid(device):
    x1, noise, ts = GMM.sample(16).to(device), _noise(device, n=16), uniform(8)
    start = interpolate(noise, x1, 0.3)
    expected = integrate(GMM.velocity, start, torch.tensor([0.3, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0],
                                                           dtype=torch.float64))
    torch.testing.assert_close(sdedit(GMM.velocity, x1, 0.3, ts, noise=noise), expected)
    assert torch.equal(sdedit(GMM.velocity, x1, 1.0, ts, noise=noise), x1)


def test_sdedit_takes_noise_by_keyword_only():
    x1, noise = _noise("cpu", n=4, seed=1), _noise("cpu", n=4, seed=2)
    with pytest.raises(TypeError, match="positional"):
        sdedit(GMM.velocity, x1, 0.5, uniform(4), noise)


@pytest.mark.parametrize("call, message", [
    (lambda x, n: sdedit(GMM.velocity, x, 1.5, uniform(4), noise=n), "t0"),
    (lambda x, n: sdedit(GMM.velocity, x, 0.5, uniform(4), noise=n[:2]), "shapes"),
    (lambda x, n: sdedit(GMM.velocity, x, 0.5, uniform(4).flip(0), noise=n), "increasing"),
    (lambda x, n: round_trip(GMM.velocity, x, uniform(4), "leapfrog"), "method"),
])
def test_bad_input_raises_a_clear_error(call, message):
    x, noise = _noise("cpu", n=4, seed=1), _noise("cpu", n=4, seed=2)
    with pytest.raises(ValueError, match=message):
        call(x, noise)


def _ring_points(device, n=64, seed=3) -> torch.Tensor:
    return GMM.sample(n, generator=torch.Generator().manual_seed(seed)).to(device)


def test_fixed_point_with_no_iterations_is_plain_euler_inversion(device):
    x1, ts = _ring_points(device), uniform(8)
    torch.testing.assert_close(invert_fixed_point(GMM.velocity, x1, ts, 0), invert(GMM.velocity, x1, ts, "euler"))


def test_fixed_point_converges_to_the_exact_preimage_of_euler_sampling(device):
    """Converged, the inverse is exact for the Euler sampler: sampling x0_hat returns x1 to rounding.
    The ring's velocity is steep near t = 1 (components of sd 0.3): the iteration contracts only with
    short steps (measured: 64 steps converge to 3e-15; with 16, some points never settle)."""
    x1, ts = _ring_points(device), uniform(64)
    x0_hat = invert_fixed_point(GMM.velocity, x1, ts, 40)
    assert float((integrate(GMM.velocity, x0_hat, ts, "euler") - x1).abs().max()) < 1e-9


def test_each_fixed_point_iteration_shrinks_the_euler_round_trip_error(device):
    x1, ts = _ring_points(device), uniform(64)
    errors = [float((integrate(GMM.velocity, invert_fixed_point(GMM.velocity, x1, ts, k), ts, "euler") - x1)
                    .norm(dim=1).mean()) for k in range(4)]
    assert all(later < 0.7 * earlier for earlier, later in zip(errors, errors[1:]))


@pytest.mark.parametrize("steps, iterations", [(4, 0), (5, 2), (3, 3)])
def test_fixed_point_costs_one_plus_iterations_evaluations_a_step(steps, iterations):
    counting = CountingVelocity(GMM.velocity)
    invert_fixed_point(counting, _ring_points("cpu", n=4), uniform(steps), iterations)
    assert counting.nfe == steps * (1 + iterations)


@pytest.mark.parametrize("iterations, error", [(-1, ValueError), (1.5, ValueError), (True, ValueError)])
def test_fixed_point_rejects_a_bad_number_of_iterations(iterations, error):
    with pytest.raises(error, match="iterations"):
        invert_fixed_point(GMM.velocity, _ring_points("cpu", n=4), uniform(4), iterations)


def test_fixed_point_rejects_a_decreasing_grid():
    with pytest.raises(ValueError, match="increasing"):
        invert_fixed_point(GMM.velocity, _ring_points("cpu", n=4), uniform(4).flip(0))
