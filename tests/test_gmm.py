"""The Gaussian mixture's exact flow: velocity, score, log-density and sampling."""
import math

import pytest
import torch
from scipy.stats import multivariate_normal

from flowlab import paths
from flowlab.data import GaussianMixture

MEANS = [[1.0, 2.0], [-3.0, 0.5], [0.5, -2.5]]
STDS = [0.5, 1.2, 0.3]
WEIGHTS = [0.2, 0.5, 0.3]


def lopsided_mixture() -> GaussianMixture:
    """Unequal weights, widths and a non-zero mean, so that no symmetry hides an error."""
    return GaussianMixture(MEANS, torch.tensor(STDS, dtype=torch.float64), torch.tensor(WEIGHTS, dtype=torch.float64))


def mixture_mean() -> torch.Tensor:
    return torch.tensor(WEIGHTS, dtype=torch.float64) @ torch.tensor(MEANS, dtype=torch.float64)


def probe_points(device, n: int = 12, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (2.0 * torch.randn(n, 2, generator=generator, dtype=torch.float64)).to(device)


def monte_carlo_velocity(mixture, x: torch.Tensor, t: float, n: int, generator):
    """Self-normalised estimate of ``E[x1 - x0 | x_t = x]`` and its standard error, per point.

    Given x1, x_t = x forces x0 = (x - t x1) / (1 - t), with density N(x; t x1, (1 - t)^2 I) in x;
    so the posterior is the data distribution weighted by that density.
    """
    x1 = mixture.sample(n, generator=generator)                          # (N, D)
    x0 = (x[:, None, :] - t * x1) / (1 - t)                               # (B, N, D)
    log_w = -0.5 * x0.pow(2).sum(-1)                                      # (B, N)
    w = torch.softmax(log_w, dim=1)[..., None]
    target = x1 - x0
    estimate = (w * target).sum(1)
    standard_error = (w.pow(2) * (target - estimate[:, None]).pow(2)).sum(1).sqrt()
    return estimate, standard_error


@pytest.mark.parametrize("t", [0.2, 0.5, 0.8])
def test_velocity_matches_monte_carlo_posterior_mean(t):
    mixture = lopsided_mixture()
    x = t * torch.tensor(MEANS, dtype=torch.float64) + torch.tensor([[0.3, -0.2]])
    x = torch.cat([x, torch.tensor([[0.0, 0.0], [-1.0, 1.0]], dtype=torch.float64)])
    estimate, standard_error = monte_carlo_velocity(mixture, x, t, 200_000, torch.Generator().manual_seed(1))
    exact = mixture.velocity(x, t)
    assert standard_error.max() < 0.1, "the Monte-Carlo check is too noisy to catch anything"
    assert ((exact - estimate).abs() <= 5 * standard_error + 1e-6).all(), \
        f"exact {exact.tolist()}\nMC {estimate.tolist()}\nse {standard_error.tolist()}"


@pytest.mark.parametrize("t", [0.0, 0.3, 0.7, 0.99, 1.0])
def test_score_is_the_gradient_of_log_prob(t, device):
    mixture = lopsided_mixture()
    x = probe_points(device).requires_grad_(True)
    (gradient,) = torch.autograd.grad(mixture.log_prob(x, t).sum(), x)
    torch.testing.assert_close(mixture.score(x.detach(), t), gradient, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("t", [0.05, 0.3, 0.7, 0.95])
def test_velocity_score_and_denoiser_are_consistent(t, device):
    mixture = lopsided_mixture()
    x = probe_points(device)
    velocity, score = mixture.velocity(x, t), mixture.score(x, t)
    torch.testing.assert_close(paths.velocity_from_score(score, x, t), velocity, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(paths.score_from_velocity(velocity, x, t), score, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(paths.x1_from_velocity(velocity, x, t), mixture.denoise(x, t),
                               rtol=1e-10, atol=1e-10)


def test_velocity_at_noise_end_is_data_mean_minus_x(device):
    """At t = 0, x_t = x0 is independent of x1: v(x, 0) = E[x1] - x."""
    mixture = lopsided_mixture()
    x = probe_points(device)
    expected = mixture_mean().to(device) - x
    torch.testing.assert_close(mixture.velocity(x, 0.0), expected, rtol=1e-12, atol=1e-12)


def test_velocity_at_data_end_is_x(device):
    """At t = 1, x_t = x1 and E[x0 | x1] = 0: v(x, 1) = x."""
    mixture = lopsided_mixture()
    x = probe_points(device)
    torch.testing.assert_close(mixture.velocity(x, 1.0), x, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(mixture.denoise(x, 1.0), x, rtol=1e-12, atol=1e-12)


def test_log_prob_at_noise_end_is_standard_normal(device):
    mixture = lopsided_mixture()
    x = probe_points(device)
    expected = -0.5 * x.pow(2).sum(1) - math.log(2 * math.pi)
    torch.testing.assert_close(mixture.log_prob(x, 0.0), expected, rtol=1e-12, atol=1e-12)


def test_log_prob_at_data_end_matches_scipy():
    mixture = lopsided_mixture()
    x = probe_points("cpu")
    density = sum(w * multivariate_normal(m, s ** 2).pdf(x.numpy()) for m, s, w in zip(MEANS, STDS, WEIGHTS))
    torch.testing.assert_close(mixture.log_prob(x), torch.from_numpy(density).log(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("t", [0.3, 0.7, 1.0])
def test_marginal_density_integrates_to_one(t):
    mixture = lopsided_mixture()
    side = torch.linspace(-9, 9, 721, dtype=torch.float64)
    grid = torch.cartesian_prod(side, side)
    cell = (side[1] - side[0]) ** 2
    total = mixture.log_prob(grid, t).exp().sum() * cell
    assert abs(total.item() - 1) < 1e-6


def test_responsibilities_sum_to_one_and_follow_the_weights_at_noise_end(device):
    mixture = lopsided_mixture()
    x = probe_points(device)
    torch.testing.assert_close(mixture.responsibilities(x, 0.6).sum(1), torch.ones(len(x), dtype=x.dtype,
                                                                                    device=device))
    weights = torch.tensor(WEIGHTS, dtype=torch.float64, device=device).expand(len(x), -1)
    torch.testing.assert_close(mixture.responsibilities(x, 0.0), weights)


def test_sample_mean_and_covariance():
    mixture = lopsided_mixture()
    n = 200_000
    samples = mixture.sample(n, generator=torch.Generator().manual_seed(2))
    means, stds, weights = (torch.tensor(a, dtype=torch.float64) for a in (MEANS, STDS, WEIGHTS))
    mean = weights @ means
    second_moment = (weights[:, None, None] * (stds[:, None, None] ** 2 * torch.eye(2)
                                               + means[:, :, None] * means[:, None, :])).sum(0)
    covariance = second_moment - mean[:, None] * mean[None, :]
    assert samples.shape == (n, 2) and samples.dtype == torch.float64
    standard_error = (covariance.diagonal() / n).sqrt()
    assert ((samples.mean(0) - mean).abs() < 5 * standard_error).all()
    torch.testing.assert_close(samples.T.cov(), covariance, rtol=0, atol=0.05)


def test_sample_is_reproducible_and_takes_dtype():
    mixture = GaussianMixture.ring()
    first = mixture.sample(50, generator=torch.Generator().manual_seed(3), dtype=torch.float32)
    second = mixture.sample(50, generator=torch.Generator().manual_seed(3), dtype=torch.float32)
    assert first.dtype == torch.float32
    torch.testing.assert_close(first, second, rtol=0, atol=0)


def test_ring_has_its_components_on_the_circle():
    mixture = GaussianMixture.ring(k=8, radius=4.0, std=0.3)
    assert mixture.means.shape == (8, 2) and mixture.dim == 2
    torch.testing.assert_close(mixture.means.norm(dim=1), torch.full((8,), 4.0, dtype=torch.float64))
    torch.testing.assert_close(mixture.means.mean(0), torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close(mixture.std, torch.full((8,), 0.3, dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_outputs_follow_the_input_dtype_and_device(dtype, device):
    mixture = GaussianMixture.ring()
    x = probe_points(device).to(dtype)
    t = torch.full((len(x),), 0.5, dtype=dtype, device=device)
    for output in (mixture.velocity(x, t), mixture.score(x, t), mixture.denoise(x, t)):
        assert output.shape == x.shape and output.dtype == dtype and output.device == x.device
        assert torch.isfinite(output).all()
    assert mixture.log_prob(x, t).shape == (len(x),)


def test_far_away_points_stay_finite(device):
    """The responsibilities are a softmax in log space: no 0/0 far from every component."""
    mixture = GaussianMixture.ring()
    x = torch.tensor([[1e3, -1e3], [50.0, 0.0]], dtype=torch.float64, device=device)
    for t in (0.0, 0.5, 1.0):
        assert torch.isfinite(mixture.velocity(x, t)).all()
        assert torch.isfinite(mixture.score(x, t)).all()


@pytest.mark.parametrize("means, std, weights", [
    (MEANS, -0.5, None),                                   # negative std
    (MEANS, 0.0, None),                                    # zero std
    (MEANS, [0.5, 0.5], None),                             # std of the wrong length
    ([1.0, 2.0], 0.5, None),                               # means not (K, D)
    (torch.zeros(0, 2), 0.5, None),                        # no components
    (MEANS, 0.5, [0.5, 0.5]),                              # weights of the wrong length
    (MEANS, 0.5, [0.5, -0.1, 0.6]),                        # negative weight
    (MEANS, 0.5, [0.0, 0.0, 0.0]),                         # weights summing to zero
])
def test_bad_construction_raises(means, std, weights):
    with pytest.raises(ValueError, match="means|std|weights"):
        GaussianMixture(means, std, weights)


def test_bad_x_raises():
    mixture = lopsided_mixture()
    with pytest.raises(ValueError, match=r"x must have shape \(B, 2\)"):
        mixture.velocity(torch.zeros(4, 3, dtype=torch.float64), 0.5)
    with pytest.raises(ValueError, match="x must have shape"):
        mixture.score(torch.zeros(4, dtype=torch.float64), 0.5)
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        mixture.log_prob([[0.0, 0.0]], 0.5)
    with pytest.raises(ValueError, match="t must lie in"):
        mixture.velocity(torch.zeros(4, 2, dtype=torch.float64), 1.5)


@pytest.mark.parametrize("n", [0, -3, 2.5, "10"])
def test_bad_sample_size_raises(n):
    with pytest.raises(ValueError, match="n must be a positive int"):
        lopsided_mixture().sample(n)
