"""ODE inversion (data -> noise) and editing by partial noising (SDEdit).

Conventions: t = 0 is noise, t = 1 is data. Sampling integrates ``dx/dt = v(x, t)`` from 0 to 1;
the ODE is deterministic and invertible, so integrating the *same* ODE from 1 back to 0 maps a data
point ``x1`` to the noise ``x0_hat`` that would generate it. With finitely many steps the inverse is
only approximate: the round trip ``x1 -> x0_hat -> x1_reconstructed`` has an error that falls with
the number of steps at the order of the solver (Euler 1, Heun 2): a backward step evaluates the
velocity where it starts, at ``(x_k, t_k)``, whereas the forward step it undoes evaluated it at the
other end, ``(x_{k-1}, t_{k-1})``. ``invert_fixed_point`` removes that mismatch for Euler sampling:
each backward step solves ``x_k = x_{k-1} + h v(x_{k-1}, t_{k-1})`` for ``x_{k-1}`` by fixed-point
iteration, so that the forward Euler step maps it back to ``x_k`` up to the iteration's residual.
Guided velocities (CFG weight w > 1) are stiffer: both inverters then leave larger errors.
"""
from __future__ import annotations

import math

import torch

from flowlab.paths import interpolate
from flowlab.sampling import Velocity, velocity_at
from flowlab.solvers import integrate
from flowlab.steps import euler_step
from flowlab.validate import increasing_grid, require_batch, require_same_shape

REVERSED_HERE = "pass the sampling grid, invert reverses it itself"


def invert(velocity: Velocity, x1: torch.Tensor, ts, method: str = "euler") -> torch.Tensor:
    """Map data ``x1`` to noise: integrate ``dx/dt = v`` backwards over ``ts.flip(0)``.

    ``ts`` is the SAME increasing grid used for sampling (a decreasing grid raises); ``x1``:
    ``(B, ...)`` at ``ts[-1]``. Returns ``x0_hat`` at ``ts[0]``, shaped like ``x1``.
    NFE: ``flowlab.solvers.nfe(method, len(ts) - 1)``.
    """
    times = increasing_grid(ts, REVERSED_HERE)
    return integrate(velocity, x1, times.flip(0), method)


def invert_fixed_point(velocity: Velocity, x1: torch.Tensor, ts, iterations: int = 3) -> torch.Tensor:
    """Invert EULER sampling on the increasing grid ``ts``, each step by fixed-point iteration.

    Walking the grid backwards, the step from ``t_next`` to ``t`` (``h = t_next - t > 0``) looks for
    the ``x`` that the forward Euler step takes to ``x_next``: ``x = x_next - h v(x, t)``. It starts
    from the plain backward Euler step ``x_next - h v(x_next, t_next)`` (``invert``'s), then repeats
    ``x <- x_next - h v(x, t)`` ``iterations`` times. The map contracts when ``h`` times the
    Lipschitz constant of ``v(., t)`` is below 1, and its fixed point is the exact preimage.
    ``iterations = 0`` is ``invert(..., "euler")``. ``x1``: ``(B, ...)`` at ``ts[-1]``; returns
    ``x0_hat`` at ``ts[0]``, shaped like ``x1``. NFE: ``(1 + iterations)`` per step.
    """
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
        raise ValueError(f"iterations must be an int >= 0 (0: plain Euler inversion), got {iterations!r}")
    times = increasing_grid(ts, REVERSED_HERE).tolist()
    x_next = require_batch("x1", x1)
    for t, t_next in reversed(list(zip(times[:-1], times[1:]))):
        x = euler_step(velocity, x_next, t_next, t)
        for _ in range(iterations):
            x = x_next - (t_next - t) * velocity_at(velocity, x, t)
        x_next = x
    return x_next


def round_trip(velocity: Velocity, x1: torch.Tensor, ts, method: str = "euler"):
    """Invert ``x1`` to noise, then sample back, on the same grid and with the same solver.

    Returns ``(x0_hat, x1_reconstructed, error)`` where ``error`` is ``(B,)``: the per-sample
    root-mean-square difference ``||x1_reconstructed - x1|| / sqrt(dim)`` (dim = the number of
    entries of one sample), in the units of the data.
    """
    require_batch("x1", x1)
    x0_hat = invert(velocity, x1, ts, method)
    x1_reconstructed = integrate(velocity, x0_hat, ts, method)
    difference = (x1_reconstructed - x1).flatten(1)
    error = difference.norm(dim=1) / math.sqrt(difference.shape[1])
    return x0_hat, x1_reconstructed, error


def sdedit(velocity: Velocity, x1: torch.Tensor, t0: float, ts, *, noise: torch.Tensor,
           method: str = "euler") -> torch.Tensor:
    """SDEdit (Meng et al. 2022): noise the data partway, then sample it back with ``velocity``.

    ``x_t0 = (1 - t0) noise + t0 x1`` (the path at ``t0``), then integrate from ``t0`` to the end
    of the increasing grid ``ts`` over ``[t0] + [t in ts with t > t0]``. Small ``t0`` keeps little of
    ``x1`` (t0 = 0 is plain sampling from ``noise``), large ``t0`` keeps much (nothing is left to
    sample once ``t0 >= ts[-1]``, and ``x_t0`` is returned). A conditional velocity (e.g. a
    ``functools.partial`` with another class label) turns this into class editing.

    ``x1``, ``noise`` (keyword only, like every sampler's injected noise): ``(B, ...)``;
    ``0 <= t0 <= 1``.
    """
    require_batch("x1", x1)
    require_same_shape(x1=x1, noise=noise)
    if isinstance(t0, bool) or not isinstance(t0, (int, float)) or not 0 <= t0 <= 1:
        raise ValueError(f"t0 must be a float in [0, 1] (0: start from pure noise, 1: keep the data), "
                         f"got {t0!r}")
    times = increasing_grid(ts, REVERSED_HERE)
    x_t0 = interpolate(noise.to(x1), x1, float(t0))
    later = times[times > t0]
    if later.numel() == 0:
        return x_t0
    grid = torch.cat([torch.tensor([float(t0)], dtype=later.dtype), later])
    return integrate(velocity, x_t0, grid, method)
