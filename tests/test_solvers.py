"""Fixed-grid ODE solvers: convergence order on the exact Gaussian-mixture flow, agreement with
torchdiffeq, inversion, NFE counting and bad input. (The registry and the shared sampler signature:
tests/test_samplers.py.)"""
import functools
import math

import numpy as np
import pytest
import torch

from flowlab import schedules, solvers, steps
from flowlab.data import GaussianMixture

METHODS = sorted(solvers.METHODS)          # everything integrate runs, multistep included
STEP_METHODS = sorted(solvers.STEPS)       # the one-step methods with a step(velocity, x, t, t_next)
ORDER = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4, "adams": 3}
EVALUATIONS_PER_STEP = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4, "adams": 1}
# Step counts inside each method's asymptotic regime on the ring (errors fall by 2^order per doubling
# there; with fewer steps the responsibilities' sharp switch between components still dominates).
STEP_COUNTS = {"euler": (16, 32, 64, 128), "midpoint": (64, 128, 256), "heun": (64, 128, 256),
               "rk4": (32, 64, 128), "adams": (32, 64, 128)}
REFERENCE_STEPS = 512          # rk4: error ~3e-9, far below the smallest error fitted (~7e-7)
N_POINTS = 200


@functools.lru_cache(maxsize=None)
def ring_problem(device: str):
    """Noise ``x0`` (N, 2) and its very accurate image ``x1`` under the exact ring flow, float64."""
    mixture = GaussianMixture.ring(k=8, radius=4.0, std=0.3)
    x0 = torch.randn(N_POINTS, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x0 = x0.to(device)
    reference = solvers.integrate(mixture.velocity, x0, schedules.uniform(REFERENCE_STEPS), "rk4")
    return mixture, x0, reference


def convergence_slope(method: str, device: str) -> float:
    """Least-squares slope of -log(max error) against log(steps) over ``STEP_COUNTS[method]``."""
    mixture, x0, reference = ring_problem(device)
    errors = []
    for n in STEP_COUNTS[method]:
        x1 = solvers.integrate(mixture.velocity, x0, schedules.uniform(n), method)
        errors.append((x1 - reference).norm(dim=1).max().item())
    return -np.polyfit(np.log(STEP_COUNTS[method]), np.log(errors), 1)[0]


@pytest.mark.parametrize("method", METHODS)
def test_empirical_convergence_order(method, device):
    slope = convergence_slope(method, str(device))
    assert abs(slope - ORDER[method]) < 0.3, f"{method}: measured order {slope:.2f}, expected {ORDER[method]}"


def power_of_t_velocity(power: int):
    """``v(x, t) = power * t^(power - 1)``, whose flow moves every x by exactly 1 from t = 0 to 1."""
    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return power * t[:, None] ** (power - 1) * torch.ones_like(x)
    return velocity


@pytest.mark.parametrize("method", STEP_METHODS)
def test_exact_for_polynomials_below_the_order(method, device):
    """dx/dt = p t^(p-1) with p = order: one step from 0 to 1 adds exactly 1; with p = order + 1 it
    does not (the step is exact up to, and not beyond, its order)."""
    order = ORDER[method]
    x = torch.zeros(3, 1, dtype=torch.float64, device=device)
    for power, exact in ((order, True), (order + 1, False)):
        x1 = solvers.STEPS[method](power_of_t_velocity(power), x, 0.0, 1.0)
        assert torch.allclose(x1, torch.ones_like(x), rtol=0, atol=1e-14) == exact, (method, power, x1)


@pytest.mark.parametrize("method", STEP_METHODS)
def test_one_step_on_a_linear_ode_is_the_truncated_exponential(method, device):
    """For dx/dt = a x, one step multiplies x by the Taylor series of exp(a h) cut after h^order."""
    a, h = -0.7, 0.3
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(device)
    factor = sum((a * h) ** k / math.factorial(k) for k in range(ORDER[method] + 1))
    x_next = solvers.STEPS[method](lambda x, t: a * x, x, 0.2, 0.2 + h)
    torch.testing.assert_close(x_next, factor * x, rtol=1e-14, atol=1e-14)


TORCHDIFFEQ_METHOD = {"euler": "euler", "midpoint": "midpoint", "heun": "heun2"}


def torchdiffeq_end(method: str, x0: torch.Tensor, ts: torch.Tensor, mixture) -> torch.Tensor:
    import torchdiffeq  # a test dependency (>= 0.2.5, which has "heun2")
    # torchdiffeq calls func(t, x) with a 0-d t; ours is velocity(x, t) with t of shape (B,).
    func = lambda t, x: mixture.velocity(x, t.expand(x.shape[0]))  # noqa: E731
    return torchdiffeq.odeint(func, x0, ts.to(x0.device), method=method)[-1]


@pytest.mark.parametrize("grid", [schedules.uniform(16), schedules.cosine(12), schedules.karras(12)],
                         ids=["uniform", "cosine", "karras"])
@pytest.mark.parametrize("method", sorted(TORCHDIFFEQ_METHOD))
def test_matches_torchdiffeq_on_the_same_grid(method, grid, device):
    mixture, x0, _ = ring_problem(str(device))
    ours = solvers.integrate(mixture.velocity, x0, grid, method)
    theirs = torchdiffeq_end(TORCHDIFFEQ_METHOD[method], x0, grid, mixture)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


def test_rk4_agrees_with_torchdiffeq_rk4_to_fourth_order(device):
    """torchdiffeq's "rk4" is Kutta's 3/8 rule, not the classical tableau: the two differ by
    O(h^4), so their gap must be small and shrink about 16-fold per halving of h (4-fold would mean
    one of them is only second order)."""
    mixture, x0, _ = ring_problem(str(device))
    gaps = []
    for n in (32, 64):
        grid = schedules.uniform(n)
        ours = solvers.integrate(mixture.velocity, x0, grid, "rk4")
        gaps.append((ours - torchdiffeq_end("rk4", x0, grid, mixture)).abs().max().item())
    assert gaps[1] < 1e-5, gaps
    assert gaps[0] / gaps[1] > 8, gaps


def test_decreasing_grid_undoes_increasing_grid(device):
    mixture, x0, _ = ring_problem(str(device))
    grid = schedules.uniform(64)
    data = solvers.integrate(mixture.velocity, x0, grid, "rk4")
    noise = solvers.integrate(mixture.velocity, data, grid.flip(0), "rk4")
    assert (noise - x0).abs().max() < 1e-6


@pytest.mark.parametrize("method", METHODS)
def test_return_path(method, device):
    mixture, x0, _ = ring_problem(str(device))
    grid = schedules.cosine(5)
    x1, path = solvers.integrate(mixture.velocity, x0, grid, method, return_path=True)
    assert path.shape == (6, N_POINTS, 2)
    torch.testing.assert_close(path[0], x0, rtol=0, atol=0)
    torch.testing.assert_close(path[-1], x1, rtol=0, atol=0)
    torch.testing.assert_close(x1, solvers.integrate(mixture.velocity, x0, grid, method), rtol=0, atol=0)


@pytest.mark.parametrize("n_steps", [1, 3, 10])
@pytest.mark.parametrize("method", METHODS)
def test_counting_velocity_counts_nfe(method, n_steps, device):
    counted = solvers.CountingVelocity(GaussianMixture.ring().velocity)
    x = torch.zeros(5, 2, dtype=torch.float64, device=device)
    solvers.integrate(counted, x, schedules.uniform(n_steps), method)
    assert counted.nfe == solvers.nfe(method, n_steps) == EVALUATIONS_PER_STEP[method] * n_steps


@pytest.mark.parametrize("method", METHODS)
def test_velocity_sees_a_per_sample_time_in_x_dtype(method, device):
    seen = []

    def recording_velocity(x, t):
        seen.append(t)
        return -x

    x = torch.ones(3, 2, dtype=torch.float32, device=device)
    solvers.integrate(recording_velocity, x, [1.0, 0.5, 0.0], method)
    assert all(t.shape == (3,) and t.dtype == torch.float32 and t.device == x.device for t in seen)
    assert seen[0].tolist() == [1.0] * 3, "a decreasing grid starts at its first time"


def nan_velocity(x, t):
    return torch.full_like(x, float("nan"))


def inf_velocity(x, t):
    return torch.full_like(x, float("inf"))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("bad_velocity", [nan_velocity, inf_velocity])
def test_non_finite_velocity_raises(method, bad_velocity, device):
    x = torch.zeros(4, 2, dtype=torch.float64, device=device)
    with pytest.raises(ValueError, match=f"the velocity produced NaN or infinity: {method} from t = 0 to 1 in 4 steps"):
        solvers.integrate(bad_velocity, x, schedules.uniform(4), method)


@pytest.mark.parametrize("ts", [
    [-0.1, 0.5, 1.0],                                      # outside [0, 1]
    [0.0, 0.5, 1.1],
    [0.0, 0.5, 0.3, 1.0],                                  # not monotone
    [0.0, 0.5, 0.5, 1.0],                                  # a zero-length step
    [0.0],                                                 # one point: no step to take
    [[0.0, 1.0]],                                          # not 1-D
    [0.0, float("nan"), 1.0],
], ids=["below-0", "above-1", "non-monotone", "repeated", "one-point", "2d", "nan"])
def test_bad_grid_raises(ts, device):
    x = torch.zeros(4, 2, dtype=torch.float64, device=device)
    with pytest.raises(ValueError, match="ts must"):
        solvers.integrate(lambda x, t: -x, x, ts, "euler")


def test_unknown_method_raises():
    x = torch.zeros(4, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="unknown method 'rk45'.*euler"):
        solvers.integrate(lambda x, t: -x, x, [0.0, 1.0], "rk45")
    with pytest.raises(ValueError, match="unknown method"):
        solvers.nfe("dopri5", 10)


@pytest.mark.parametrize("x, error", [
    ([[0.0, 0.0]], TypeError),                             # not a tensor
    (torch.zeros(4, dtype=torch.float64), ValueError),     # no batch dimension
    (torch.zeros(4, 2, dtype=torch.int64), TypeError),     # not floating point
])
def test_bad_x_raises(x, error):
    with pytest.raises(error, match="x must"):
        solvers.integrate(lambda x, t: -x, x, [0.0, 1.0], "euler")


@pytest.mark.parametrize("wrong_shape", [(4, 1), (4, 3), (2,)])
def test_counting_velocity_rejects_a_wrong_shape(wrong_shape, device):
    counted = solvers.CountingVelocity(lambda x, t: torch.zeros(wrong_shape, dtype=x.dtype, device=x.device))
    x = torch.zeros(4, 2, dtype=torch.float64, device=device)
    with pytest.raises(ValueError, match=r"shaped like x \(4, 2\)"):
        solvers.integrate(counted, x, [0.0, 1.0], "heun")
    with pytest.raises(ValueError, match="must return a tensor"):
        solvers.integrate(lambda x, t: x.tolist(), x, [0.0, 1.0], "euler")


@pytest.mark.parametrize("wrong_shape", [(4, 1), (2,)])
def test_integrate_rejects_a_velocity_of_the_wrong_shape(wrong_shape):
    x = torch.zeros(4, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="shape"):
        solvers.integrate(lambda x, t: torch.ones(wrong_shape, dtype=x.dtype), x, [0.0, 1.0], "euler")


def test_counting_velocity_needs_a_callable():
    with pytest.raises(TypeError, match="velocity must be callable"):
        solvers.CountingVelocity(torch.zeros(3))


@pytest.mark.parametrize("forward", [True, False], ids=["sampling", "inversion"])
@pytest.mark.parametrize("method", STEP_METHODS)
def test_the_student_loop_with_a_library_step_is_the_named_sampler(method, forward):
    """``flowlab.steps.integrate`` (notebook 02's loop) with ``STEPS[method]`` runs the same steps as
    ``solvers.integrate(..., method)``, path included, on an uneven grid in either direction."""
    mixture, x0, _ = ring_problem("cpu")
    grid = schedules.karras(6) if forward else schedules.cosine(5).flip(0)
    end, path = steps.integrate(solvers.STEPS[method], mixture.velocity, x0, grid, return_path=True)
    expected_end, expected_path = solvers.integrate(mixture.velocity, x0, grid, method, return_path=True)
    torch.testing.assert_close(path, expected_path, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(end, expected_end, rtol=1e-12, atol=1e-12)
    assert path.shape == (len(grid), *x0.shape)


@pytest.mark.parametrize("n_steps", [1, 4, 25])
def test_euler_sample_is_euler_on_the_uniform_grid(n_steps):
    """Notebook 01's loop: the trajectory of ``n_steps`` Euler steps, noise first."""
    mixture, x0, _ = ring_problem("cpu")
    path = steps.euler_sample(mixture.velocity, x0, n_steps)
    _, expected = solvers.integrate(mixture.velocity, x0, schedules.uniform(n_steps), "euler", return_path=True)
    torch.testing.assert_close(path, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("call, error", [
    (lambda x: steps.integrate("euler", lambda x, t: x, x, schedules.uniform(2)), TypeError),
    (lambda x: steps.integrate(solvers.STEPS["euler"], lambda x, t: x, x, [0.0, 0.5, 0.4]), ValueError),
    (lambda x: steps.euler_sample(lambda x, t: x, x, 0), ValueError),
    (lambda x: steps.euler_sample(lambda x, t: x, x[0], 3), ValueError),
], ids=["step_not_callable", "grid_not_monotone", "no_steps", "no_batch"])
def test_the_student_loops_reject_bad_input(call, error):
    with pytest.raises(error):
        call(torch.zeros(3, 2))
