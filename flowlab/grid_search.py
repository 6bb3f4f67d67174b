"""Optimised time grids: choose the interior times of an n-step grid that minimise a solver's error.

In the spirit of "Align Your Steps" (Sabour et al. 2024): for a given velocity and solver, the
best grid is the one whose end points are closest to the exact solution. Here "exact" is RK4 on a
fine uniform grid, and the loss is measured on a batch of *probe* noise ``x_probe``:

    loss(t_1, ..., t_(n-1)) = log mean_i || integrate(v, x_i, [0, t_1, ..., t_(n-1), 1], method)
                                             - x_ref_i ||.

Monotonicity holds by construction: the n step lengths are ``softmax(z)`` of n free logits, with
the last logit pinned to 0 (softmax ignores a common shift, so n - 1 of them are free), and the
times are their cumulative sums. The logits are clipped to ``[-LOGIT_BOUND, LOGIT_BOUND]``, so no
step is shorter than ``exp(-2 LOGIT_BOUND)`` times the longest: the grid stays strictly increasing.

The search is derivative-free (scipy's Powell method: a sequence of line searches, deterministic
for a given start grid) and local: it refines the start grid. It is run without scipy's bounds on
purpose: a bounded line search scans the whole interval and can jump into a far basin where one
step collapses to nothing (Heun, 6 steps: error 1.5e-2 that way, 8.6e-3 from the local search). It
works with any registered ODE method (run by ``integrate``), including the multistep ``adams``, with
any sampler given as a function ``(velocity, x, ts) -> x_end`` (notebook 02 fits grids to the
students' own loop and steps), and with any velocity (a network too, at its price per call).
Judge an optimised grid on *other* noise than ``x_probe``: on the probe points it is optimistic.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from scipy.optimize import minimize

from flowlab.sampling import Velocity
from flowlab.solvers import METHODS, integrate
from flowlab.validate import increasing_grid, require_batch, require_choice, require_positive_int

LOGIT_BOUND = 6.0


def grid_from_logits(logits: np.ndarray) -> torch.Tensor:
    """The grid whose n step lengths are ``softmax([*clip(logits), 0])``: ``(n + 1,)`` float64, 0 -> 1.

    ``logits``: ``(n - 1,)`` free logits of the first n - 1 steps (the last step's logit is 0),
    clipped to ``[-LOGIT_BOUND, LOGIT_BOUND]``.
    """
    z = np.append(np.clip(np.asarray(logits, dtype=np.float64), -LOGIT_BOUND, LOGIT_BOUND), 0.0)
    lengths = np.exp(z - z.max())
    times = np.concatenate([[0.0], np.cumsum(lengths / lengths.sum())])
    times[-1] = 1.0                     # the cumulative sum may miss 1 by rounding
    return torch.from_numpy(times)


def logits_from_grid(ts: torch.Tensor) -> np.ndarray:
    """Inverse of ``grid_from_logits``: ``log(h_i / h_n)`` for the first n - 1 steps, clipped to the bounds."""
    lengths = np.diff(ts.detach().cpu().double().numpy())
    return np.clip(np.log(lengths[:-1] / lengths[-1]), -LOGIT_BOUND, LOGIT_BOUND)


Sampler = Callable[[Velocity, torch.Tensor, torch.Tensor], torch.Tensor]


def as_sampler(method: str | Sampler) -> Sampler:
    """``method`` as a function ``(velocity, x, ts) -> x_end``: a name of ``flowlab.solvers.METHODS``
    (run by ``integrate``), or such a function itself (a student's own loop and step, for instance)."""
    if callable(method):
        return method
    name = require_choice("method", method, METHODS)
    return lambda velocity, x, ts: integrate(velocity, x, ts, name)


def mean_error(velocity: Velocity, x: torch.Tensor, reference: torch.Tensor, ts: torch.Tensor,
               method: str | Sampler) -> float:
    """``mean_i ||sampler(velocity, x, ts)_i - reference_i||``: the mean end-point distance, with
    ``sampler = as_sampler(method)``."""
    end = as_sampler(method)(velocity, x, ts)
    return (end - reference).flatten(1).norm(dim=1).mean().item()


def _start_grid(start, n: int) -> torch.Tensor:
    if start is None:
        return torch.linspace(0, 1, n + 1, dtype=torch.float64)
    grid = increasing_grid(start, "the search starts from a sampling grid", name="start")
    if grid.shape != (n + 1,) or grid[0] != 0 or grid[-1] != 1:
        raise ValueError(f"start must be a grid of n + 1 = {n + 1} times from 0 to 1, got {grid.tolist()}")
    return grid.to(torch.float64)


def optimize(velocity: Velocity, x_probe: torch.Tensor, n: int, method: str | Sampler = "adams", *, start=None,
             reference_steps: int = 256, max_evaluations: int = 2000, tolerance: float = 1e-2) -> torch.Tensor:
    """The n-step grid (``(n + 1,)`` float64, 0 = t_0 < ... < t_n = 1) that minimises the mean error of
    ``method`` on the probe noise ``x_probe`` ``(B, ...)`` against RK4 on ``reference_steps`` uniform steps.

    Args:
        velocity: ``velocity(x, t)`` with ``x`` like ``x_probe`` and ``t`` of shape ``(B,)``.
        x_probe: the noise the grid is fitted on (a few thousand points suffice on the 2D ring).
        n: number of steps (``nfe(method, n)`` evaluations per sample); n = 1 has nothing to choose.
        method: an ODE method of ``flowlab.solvers.METHODS``, or any sampler ``(velocity, x, ts) -> x_end``.
        start: the grid the search starts from (default: uniform).
        max_evaluations: the most error evaluations (each one ``integrate`` over ``x_probe``).
        tolerance: Powell's tolerance on the logits (``xtol``); the loss tolerance is a hundredth of it.

    Deterministic: the same inputs give the same grid. Raises ``TypeError``/``ValueError`` on bad input.
    """
    if not callable(velocity):
        raise TypeError(f"velocity must be callable as velocity(x, t), got {type(velocity).__name__}")
    require_batch("x_probe", x_probe)
    require_positive_int("the number of steps n", n)
    sampler = as_sampler(method)
    require_positive_int("reference_steps", reference_steps)
    require_positive_int("max_evaluations", max_evaluations)
    grid = _start_grid(start, n)
    with torch.no_grad():
        reference = integrate(velocity, x_probe, torch.linspace(0, 1, reference_steps + 1, dtype=torch.float64),
                              "rk4")
        if n == 1:
            return grid

        def loss(logits: np.ndarray) -> float:
            error = mean_error(velocity, x_probe, reference, grid_from_logits(logits), sampler)
            return math.log(max(error, 1e-300))     # relative changes matter at every error scale

        result = minimize(loss, logits_from_grid(grid), method="Powell", options={"xtol": tolerance, "ftol": tolerance / 100, "maxfev": max_evaluations})
    return grid_from_logits(result.x)
