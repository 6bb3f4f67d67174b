"""The linear (rectified-flow) probability path and conversions between its parametrisations.

Conventions (see docs/DESIGN.md): t in [0, 1], **t = 0 is noise** ``x0 ~ N(0, I)``, **t = 1 is data** ``x1``.

    x_t = (1 - t) x0 + t x1,        target velocity  u = x1 - x0.

A model that predicts the velocity ``v(x, t) = E[x1 - x0 | x_t = x]`` equivalently predicts

    x1_hat = x + (1 - t) v          (the denoised data, "x-prediction")
    x0_hat = x - t v                (the noise, "epsilon-prediction")
    score  = (t v - x) / (1 - t)    (grad log p_t(x); singular at t = 1)
    v      = (x + (1 - t) score) / t   (singular at t = 0)

The argument order is always ``(quantity, x, t)``; ``t`` may be a float or a ``(B,)`` tensor.
"""
from __future__ import annotations

import torch

from flowlab.validate import TimeLike, expand_time, require_same_shape, time_batch


def _t(t: TimeLike, x: torch.Tensor) -> torch.Tensor:
    return expand_time(time_batch(t, x), x)


def interpolate(x0: torch.Tensor, x1: torch.Tensor, t: TimeLike) -> torch.Tensor:
    """Point on the linear path: ``x_t = (1 - t) x0 + t x1``. Shapes ``(B, ...)``; ``t`` float or ``(B,)``."""
    require_same_shape(x0=x0, x1=x1)
    t = _t(t, x0)
    return (1 - t) * x0 + t * x1


def target_velocity(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """Conditional flow-matching target ``u = d x_t / dt = x1 - x0`` (independent of t)."""
    require_same_shape(x0=x0, x1=x1)
    return x1 - x0


def x1_from_velocity(velocity: torch.Tensor, x: torch.Tensor, t: TimeLike) -> torch.Tensor:
    """Denoised estimate ``x1_hat = x + (1 - t) v``."""
    return x + (1 - _t(t, x)) * velocity


def x0_from_velocity(velocity: torch.Tensor, x: torch.Tensor, t: TimeLike) -> torch.Tensor:
    """Noise estimate ``x0_hat = x - t v``."""
    return x - _t(t, x) * velocity


def score_from_velocity(velocity: torch.Tensor, x: torch.Tensor, t: TimeLike) -> torch.Tensor:
    """Score of the marginal, ``grad log p_t(x) = -x0_hat / (1 - t) = (t v - x) / (1 - t)``.

    Singular at t = 1 (the data has no smooth density to take the gradient of); callers step
    around it. Raises ``ValueError`` if any t equals 1.
    """
    t = _t(t, x)
    if (t >= 1).any():
        raise ValueError("score_from_velocity is singular at t = 1; use t < 1")
    return (t * velocity - x) / (1 - t)


def velocity_from_score(score: torch.Tensor, x: torch.Tensor, t: TimeLike) -> torch.Tensor:
    """Velocity from the score, ``v = (x + (1 - t) score) / t``. Singular at t = 0."""
    t = _t(t, x)
    if (t <= 0).any():
        raise ValueError("velocity_from_score is singular at t = 0; use t > 0")
    return (x + (1 - t) * score) / t


def velocity_from_x1(x1_hat: torch.Tensor, x: torch.Tensor, t: TimeLike) -> torch.Tensor:
    """Velocity from a data prediction, ``v = (x1_hat - x) / (1 - t)``. Singular at t = 1."""
    t = _t(t, x)
    if (t >= 1).any():
        raise ValueError("velocity_from_x1 is singular at t = 1; use t < 1")
    return (x1_hat - x) / (1 - t)


def velocity_from_x0(x0_hat: torch.Tensor, x: torch.Tensor, t: TimeLike) -> torch.Tensor:
    """Velocity from a noise prediction, ``v = (x - x0_hat) / t``. Singular at t = 0."""
    t = _t(t, x)
    if (t <= 0).any():
        raise ValueError("velocity_from_x0 is singular at t = 0; use t > 0")
    return (x - x0_hat) / t
