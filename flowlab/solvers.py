"""Fixed-grid ODE solvers for ``dx/dt = v(x, t)``, and the loop that runs them over a time grid.

Every step has the signature ``step(velocity, x, t, t_next) -> x_next`` with ``h = t_next - t``
(negative when integrating backwards, for inversion). ``velocity(x, t)`` takes ``x: (B, ...)`` and
``t: (B,)``; the steps accept python floats for ``t`` and broadcast them.

========  ======================================================  ==========  =====
method    update                                                  NFE / step  order
========  ======================================================  ==========  =====
euler     x + h v(x, t)                                           1           1
midpoint  x + h v(x + h/2 v(x, t), t + h/2)                       2           2
heun      x + h/2 [v(x, t) + v(x + h v(x, t), t + h)]             2           2
rk4       classical Runge-Kutta, weights 1/6, 2/6, 2/6, 1/6       4           4
adams     AB2 predictor, AM3 corrector, evaluations reused        1           3
========  ======================================================  ==========  =====

``adams`` is a multistep method (see ``flowlab.multistep``): it keeps the velocities of earlier
steps, so it is not a ``step`` function, but ``integrate`` runs it on the same grids.

On the linear path one Euler step is exactly the DDIM step ``t' x1_hat + (1 - t') x0_hat``.
"""
from __future__ import annotations

from typing import Callable

import torch

from flowlab.validate import require_batch, require_choice, time_batch, time_grid
from flowlab.multistep import adams_integrate

Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _v(velocity: Velocity, x: torch.Tensor, t: float) -> torch.Tensor:
    """Evaluate ``velocity`` at a float time and check that it answers with x's shape."""
    v = velocity(x, time_batch(t, x))
    if not isinstance(v, torch.Tensor) or v.shape != x.shape:
        got = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
        raise ValueError(f"velocity(x, t) must return a tensor shaped like x {tuple(x.shape)}, got {got}")
    return v


def euler_step(velocity: Velocity, x: torch.Tensor, t: float, t_next: float) -> torch.Tensor:
    """First order: ``x + h v(x, t)``. One velocity evaluation."""
    return x + (t_next - t) * _v(velocity, x, t)


def midpoint_step(velocity: Velocity, x: torch.Tensor, t: float, t_next: float) -> torch.Tensor:
    """Second order: ``x + h v(x + h/2 v(x, t), t + h/2)``. Two evaluations."""
    h = t_next - t
    x_mid = x + 0.5 * h * _v(velocity, x, t)
    return x + h * _v(velocity, x_mid, t + 0.5 * h)


def heun_step(velocity: Velocity, x: torch.Tensor, t: float, t_next: float) -> torch.Tensor:
    """Second order (explicit trapezoid): an Euler predictor, then the average of the slopes at
    both ends, ``x + h/2 [v(x, t) + v(x_euler, t + h)]``. Two evaluations."""
    h = t_next - t
    v_start = _v(velocity, x, t)
    x_euler = x + h * v_start
    return x + 0.5 * h * (v_start + _v(velocity, x_euler, t_next))


def rk4_step(velocity: Velocity, x: torch.Tensor, t: float, t_next: float) -> torch.Tensor:
    """Fourth order, the classical Runge-Kutta step:
    ``k1 = v(x, t)``, ``k2 = v(x + h/2 k1, t + h/2)``, ``k3 = v(x + h/2 k2, t + h/2)``,
    ``k4 = v(x + h k3, t + h)``, ``x + h/6 (k1 + 2 k2 + 2 k3 + k4)``. Four evaluations."""
    h = t_next - t
    k1 = _v(velocity, x, t)
    k2 = _v(velocity, x + 0.5 * h * k1, t + 0.5 * h)
    k3 = _v(velocity, x + 0.5 * h * k2, t + 0.5 * h)
    k4 = _v(velocity, x + h * k3, t_next)
    return x + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)


STEPS = {"euler": euler_step, "midpoint": midpoint_step, "heun": heun_step, "rk4": rk4_step}
NFE_PER_STEP = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4, "adams": 1}
METHODS = tuple(NFE_PER_STEP)


class CountingVelocity:
    """Wrap a velocity function and count its evaluations in ``.nfe``."""

    def __init__(self, velocity: Velocity):
        if not callable(velocity):
            raise TypeError(f"velocity must be callable as velocity(x, t), got {type(velocity).__name__}")
        self.velocity, self.nfe = velocity, 0

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        return self.velocity(x, t)


def nfe(method: str, n_steps: int) -> int:
    """Velocity evaluations that ``integrate`` spends on ``n_steps`` steps of ``method``."""
    return NFE_PER_STEP[require_choice("method", method, METHODS)] * n_steps


def integrate(velocity: Velocity, x: torch.Tensor, ts, method: str = "euler",
              return_path: bool = False):
    """Integrate ``dx/dt = velocity(x, t)`` from ``ts[0]`` to ``ts[-1]`` with ``method`` (one of
    ``METHODS``), one step per grid interval.

    ``ts`` increasing (0 -> 1) samples; decreasing (1 -> 0) inverts. Returns the end point, or
    ``(x_end, path)`` with ``path`` of shape ``(len(ts), B, ...)`` when ``return_path``.
    Pass a ``CountingVelocity`` to read the number of evaluations afterwards.
    Raises ``ValueError`` on a bad grid, an unknown method, or NaN/infinity from the velocity.
    """
    require_choice("method", method, METHODS)
    times = time_grid(ts).tolist()
    require_batch("x", x)
    path = [x]

    def check(i: int, t: float, t_next: float, x_next: torch.Tensor) -> None:
        if not torch.isfinite(x_next).all():
            raise ValueError(f"the velocity gave NaN or infinity in step {i} (t = {t:.4g} -> {t_next:.4g}); "
                             f"check the model and the time grid")
        if return_path:
            path.append(x_next)

    if method == "adams":
        x = adams_integrate(lambda x, t: _v(velocity, x, t), x, times, on_step=check)
    else:
        step = STEPS[method]
        for i, (t, t_next) in enumerate(zip(times[:-1], times[1:])):
            x = step(velocity, x, t, t_next)
            check(i, t, t_next, x)
    return (x, torch.stack(path)) if return_path else x
