"""Isotropic Gaussian mixtures whose flow is known in closed form.

For data ``x1 ~ sum_k w_k N(mu_k, s_k^2 I)`` and noise ``x0 ~ N(0, I)`` on the linear path
``x_t = (1 - t) x0 + t x1``, each component stays Gaussian:

    x_t | k ~ N(t mu_k, sigma_k(t)^2 I),     sigma_k(t)^2 = (1 - t)^2 + t^2 s_k^2,

and the posterior means of the endpoints are linear in x:

    E[x1 | x_t = x, k] = mu_k + t s_k^2 (x - t mu_k) / sigma_k(t)^2
    E[x0 | x_t = x, k] = (1 - t) (x - t mu_k) / sigma_k(t)^2.

With responsibilities ``r_k(x, t) ∝ w_k N(x; t mu_k, sigma_k(t)^2 I)`` the exact marginal velocity
and score are

    v(x, t)     = sum_k r_k [mu_k + (t s_k^2 - (1 - t)) (x - t mu_k) / sigma_k(t)^2]
    score(x, t) = -sum_k r_k (x - t mu_k) / sigma_k(t)^2.

Both are finite for every t in [0, 1] (sigma_k(t) >= min(1, s_k) / sqrt(2) > 0), so the exact
velocity separates solver (truncation) error from network (model) error.
"""
from __future__ import annotations

import math

import torch

from flowlab.validate import TimeLike, require_batch, require_positive_int, time_batch


class GaussianMixture:
    """An isotropic Gaussian mixture in D dimensions with exact flow quantities.

    Args:
        means: ``(K, D)`` component means.
        std: a float (shared) or a ``(K,)`` tensor of per-component standard deviations, all > 0.
        weights: optional ``(K,)`` non-negative mixture weights (normalised here); uniform if omitted.

    Computations run in the dtype and device of the input ``x``.
    """

    def __init__(self, means, std, weights=None):
        means = torch.as_tensor(means, dtype=torch.float64)
        if means.dim() != 2 or means.shape[0] < 1:
            raise ValueError(f"means must have shape (K, D), got {tuple(means.shape)}")
        std = torch.as_tensor(std, dtype=torch.float64)
        std = std.expand(means.shape[0]).clone() if std.dim() == 0 else std
        if std.shape != (means.shape[0],) or not (std > 0).all():
            raise ValueError(f"std must be a positive float or a (K,) = ({means.shape[0]},) tensor of "
                             f"positive values, got {std.tolist()}")
        if weights is None:
            weights = torch.ones(means.shape[0], dtype=torch.float64)
        weights = torch.as_tensor(weights, dtype=torch.float64)
        if weights.shape != (means.shape[0],) or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"weights must be a (K,) = ({means.shape[0]},) tensor of non-negative "
                             f"values with a positive sum, got {weights.tolist()}")
        self.means, self.std, self.weights = means, std, weights / weights.sum()

    @classmethod
    def ring(cls, k: int = 8, radius: float = 4.0, std: float = 0.3) -> "GaussianMixture":
        """``k`` equal components evenly spaced on a circle of ``radius`` (the 8-Gaussian ring)."""
        angles = torch.arange(k, dtype=torch.float64) * (2 * math.pi / k)
        return cls(radius * torch.stack([angles.cos(), angles.sin()], dim=1), std)

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def sample(self, n: int, generator: torch.Generator | None = None,
               dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Draw ``n`` data points ``x1``, shape ``(n, D)``. Returns the components' draw on CPU."""
        require_positive_int("n", n)
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        noise = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return (self.means[k] + self.std[k, None] * noise).to(dtype)

    def _parts(self, x: torch.Tensor, t: TimeLike):
        """Per-component residuals ``x - t mu_k``, variances and log-responsibility terms."""
        require_batch("x", x)
        if x.shape[1:] != (self.dim,):
            raise ValueError(f"x must have shape (B, {self.dim}), got {tuple(x.shape)}")
        t = time_batch(t, x)[:, None]                                   # (B, 1)
        means, std, weights = (a.to(x) for a in (self.means, self.std, self.weights))
        var = (1 - t) ** 2 + t ** 2 * std ** 2                          # (B, K)
        residual = x[:, None, :] - t[:, :, None] * means                # (B, K, D)
        log_joint = (weights.log() - 0.5 * residual.pow(2).sum(-1) / var
                     - 0.5 * self.dim * torch.log(2 * math.pi * var))   # (B, K)
        return t, std, var, residual, log_joint

    def log_prob(self, x: torch.Tensor, t: TimeLike = 1.0) -> torch.Tensor:
        """Log-density of the marginal ``p_t`` at ``x``, shape ``(B,)``; t = 1 is the data density."""
        return torch.logsumexp(self._parts(x, t)[4], dim=1)

    def responsibilities(self, x: torch.Tensor, t: TimeLike) -> torch.Tensor:
        """Posterior ``P(k | x_t = x)``, shape ``(B, K)``."""
        return torch.softmax(self._parts(x, t)[4], dim=1)

    def velocity(self, x: torch.Tensor, t: TimeLike) -> torch.Tensor:
        """Exact marginal velocity ``E[x1 - x0 | x_t = x]``, shape ``(B, D)``."""
        t, std, var, residual, log_joint = self._parts(x, t)
        r = torch.softmax(log_joint, dim=1)
        gain = (t * std ** 2 - (1 - t)) / var                            # (B, K)
        per_component = self.means.to(x) + gain[..., None] * residual
        return (r[..., None] * per_component).sum(1)

    def score(self, x: torch.Tensor, t: TimeLike) -> torch.Tensor:
        """Exact score ``grad_x log p_t(x)``, shape ``(B, D)``."""
        _, _, var, residual, log_joint = self._parts(x, t)
        r = torch.softmax(log_joint, dim=1)
        return -(r[..., None] * residual / var[..., None]).sum(1)

    def denoise(self, x: torch.Tensor, t: TimeLike) -> torch.Tensor:
        """Exact posterior mean ``E[x1 | x_t = x]`` (the ideal ``x1_hat``), shape ``(B, D)``."""
        t_, std, var, residual, log_joint = self._parts(x, t)
        r = torch.softmax(log_joint, dim=1)
        per_component = self.means.to(x) + (t_ * std ** 2 / var)[..., None] * residual
        return (r[..., None] * per_component).sum(1)

    def __repr__(self) -> str:
        return f"GaussianMixture(K={self.means.shape[0]}, D={self.dim}, std={self.std.tolist()})"
