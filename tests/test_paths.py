"""The linear path x_t = (1 - t) x0 + t x1 and the conversions between its parametrisations."""
import pytest
import torch

from flowlab import paths, solvers
from flowlab.data import GaussianMixture

BATCH, DIM = 16, 3


def random_state(device, batch: int = BATCH, seed: int = 0):
    """Random ``x``, ``v`` of shape (B, D) and per-sample ``t`` in [0.05, 0.95], float64."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, DIM, generator=generator, dtype=torch.float64)
    v = torch.randn(batch, DIM, generator=generator, dtype=torch.float64)
    t = 0.05 + 0.9 * torch.rand(batch, generator=generator, dtype=torch.float64)
    return x.to(device), v.to(device), t.to(device)


ROUND_TRIPS = {
    "x1": (paths.x1_from_velocity, paths.velocity_from_x1),
    "x0": (paths.x0_from_velocity, paths.velocity_from_x0),
    "score": (paths.score_from_velocity, paths.velocity_from_score),
}


@pytest.mark.parametrize("quantity", sorted(ROUND_TRIPS))
def test_conversion_round_trip(quantity, device):
    to_quantity, to_velocity = ROUND_TRIPS[quantity]
    x, v, t = random_state(device)
    for time in (t, 0.3):                                   # per-sample (B,) and a float
        back = to_velocity(to_quantity(v, x, time), x, time)
        torch.testing.assert_close(back, v, rtol=1e-12, atol=1e-12)


def test_conversions_are_consistent_with_the_path(device):
    """x = (1 - t) x0_hat + t x1_hat, v = x1_hat - x0_hat, score = -x0_hat / (1 - t)."""
    x, v, t = random_state(device)
    x1_hat = paths.x1_from_velocity(v, x, t)
    x0_hat = paths.x0_from_velocity(v, x, t)
    torch.testing.assert_close(paths.interpolate(x0_hat, x1_hat, t), x, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(paths.target_velocity(x0_hat, x1_hat), v, rtol=1e-12, atol=1e-12)
    score = paths.score_from_velocity(v, x, t)
    torch.testing.assert_close(score, -x0_hat / (1 - t)[:, None], rtol=1e-12, atol=1e-12)


def test_conversions_match_formulas_at_a_float_time(device):
    x, v, _ = random_state(device)
    t = 0.25
    torch.testing.assert_close(paths.x1_from_velocity(v, x, t), x + 0.75 * v)
    torch.testing.assert_close(paths.x0_from_velocity(v, x, t), x - 0.25 * v)
    torch.testing.assert_close(paths.score_from_velocity(v, x, t), (0.25 * v - x) / 0.75)
    torch.testing.assert_close(paths.velocity_from_score(v, x, t), (x + 0.75 * v) / 0.25)


def test_interpolate_endpoints(device):
    x0, x1, _ = random_state(device)
    torch.testing.assert_close(paths.interpolate(x0, x1, 0.0), x0, rtol=0, atol=0)
    torch.testing.assert_close(paths.interpolate(x0, x1, 1.0), x1, rtol=0, atol=0)
    ones = torch.ones(BATCH, dtype=torch.float64, device=device)
    torch.testing.assert_close(paths.interpolate(x0, x1, 0 * ones), x0, rtol=0, atol=0)
    torch.testing.assert_close(paths.interpolate(x0, x1, ones), x1, rtol=0, atol=0)


def test_interpolate_per_sample_time_matches_row_by_row(device):
    x0, x1, t = random_state(device)
    batched = paths.interpolate(x0, x1, t)
    for i in range(BATCH):
        row = paths.interpolate(x0[i:i + 1], x1[i:i + 1], float(t[i]))
        torch.testing.assert_close(batched[i:i + 1], row, rtol=1e-15, atol=1e-15)


def test_interpolate_on_images_broadcasts_time(device):
    generator = torch.Generator().manual_seed(1)
    x0, x1 = torch.randn(2, 4, 1, 5, 5, generator=generator, dtype=torch.float64).to(device)
    t = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64, device=device)
    xt = paths.interpolate(x0, x1, t)
    assert xt.shape == x0.shape
    torch.testing.assert_close(xt[1], 0.75 * x0[1] + 0.25 * x1[1])
    torch.testing.assert_close(xt[3], x1[3])


def test_target_velocity_is_the_time_derivative_of_the_path(device):
    x0, x1, _ = random_state(device)
    t = torch.full((BATCH,), 0.4, dtype=torch.float64, device=device, requires_grad=True)
    xt = paths.interpolate(x0, x1, t)
    (derivative,) = torch.autograd.grad(xt.sum(), t)
    torch.testing.assert_close(derivative, paths.target_velocity(x0, x1).sum(1))
    torch.testing.assert_close(paths.target_velocity(x0, x1), x1 - x0)


@pytest.mark.parametrize("t, t_next", [(0.0, 0.1), (0.3, 0.55), (0.8, 1.0), (0.6, 0.2)])
def test_euler_step_is_the_ddim_step(t, t_next, device):
    """x + (t' - t) v = t' x1_hat + (1 - t') x0_hat, on the exact Gaussian-mixture velocity."""
    mixture = GaussianMixture.ring(k=5, radius=2.0, std=0.4)
    x, _, _ = random_state(device)
    x = x[:, :2].contiguous()
    v = mixture.velocity(x, t)
    ddim = t_next * paths.x1_from_velocity(v, x, t) + (1 - t_next) * paths.x0_from_velocity(v, x, t)
    euler = solvers.euler_step(mixture.velocity, x, t, t_next)
    torch.testing.assert_close(euler, ddim, rtol=1e-12, atol=1e-12)


SINGULAR = [
    (paths.score_from_velocity, 1.0),
    (paths.velocity_from_x1, 1.0),
    (paths.velocity_from_score, 0.0),
    (paths.velocity_from_x0, 0.0),
]


@pytest.mark.parametrize("convert, singular_t", SINGULAR, ids=lambda p: getattr(p, "__name__", str(p)))
def test_singular_ends_raise(convert, singular_t, device):
    x, v, t = random_state(device)
    with pytest.raises(ValueError, match="singular"):
        convert(v, x, singular_t)
    t = t.clone()
    t[3] = singular_t                                       # one bad sample in a batch is enough
    with pytest.raises(ValueError, match="singular"):
        convert(v, x, t)


def test_non_singular_ends_are_finite(device):
    """Each conversion is fine at the end where it is not singular."""
    x, v, _ = random_state(device)
    assert torch.isfinite(paths.score_from_velocity(v, x, 0.0)).all()
    assert torch.isfinite(paths.velocity_from_x1(x, x, 0.0)).all()
    torch.testing.assert_close(paths.velocity_from_score(v, x, 1.0), x)
    torch.testing.assert_close(paths.velocity_from_x0(v, x, 1.0), x - v)


def test_shape_mismatch_raises(device):
    x0 = torch.zeros(4, 2, dtype=torch.float64, device=device)
    x1 = torch.zeros(4, 3, dtype=torch.float64, device=device)
    with pytest.raises(ValueError, match="shapes must match"):
        paths.interpolate(x0, x1, 0.5)
    with pytest.raises(ValueError, match="shapes must match"):
        paths.target_velocity(x0, x1)


@pytest.mark.parametrize("bad_t, error", [
    (torch.full((5,), 0.5), ValueError),                   # (B + 1,) for B = 4
    (torch.full((4, 1), 0.5), ValueError),                 # (B, 1) instead of (B,)
    (1.5, ValueError),
    (-0.1, ValueError),
    (float("nan"), ValueError),
    (torch.tensor([0.1, 0.2, 1.2, 0.3]), ValueError),
    ("0.5", TypeError),
])
def test_bad_time_raises(bad_t, error, device):
    x = torch.zeros(4, 2, dtype=torch.float64, device=device)
    with pytest.raises(error, match="t "):
        paths.interpolate(x, x, bad_t)
    with pytest.raises(error, match="t "):
        paths.x1_from_velocity(x, x, bad_t)
