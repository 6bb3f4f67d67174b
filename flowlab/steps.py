"""One-step ODE methods for ``dx/dt = v(x, t)``: each maps ``x`` at ``t`` to ``x`` at ``t_next``.

``h = t_next - t`` (negative when integrating backwards, for inversion). Each method is written
once, as a bare kernel ``kernel(evaluate, x, t, t_next)`` where ``evaluate(x, t)`` takes a float
time; the public ``*_step(velocity, x, t, t_next)`` wrap it with a velocity that checks its time
and its output at every call (they are called one at a time, by students and the grader), while
the samplers' loops (``flowlab.solvers``) call the kernels with a velocity checked only once.

========  ======================================================  ==========  =====
method    update                                                  NFE / step  order
========  ======================================================  ==========  =====
euler     x + h v(x, t)                                           1           1
midpoint  x + h v(x + h/2 v(x, t), t + h/2)                       2           2
heun      x + h/2 [v(x, t) + v(x + h v(x, t), t + h)]             2           2
rk4       classical Runge-Kutta, weights 1/6, 2/6, 2/6, 1/6       4           4
========  ======================================================  ==========  =====

On the linear path one Euler step is exactly the DDIM step ``t' x1_hat + (1 - t') x0_hat``.
"""
from __future__ import annotations

import torch

from flowlab.sampling import Evaluate, Velocity
from flowlab.validate import require_velocity_output, time_batch


def euler(evaluate: Evaluate, x: torch.Tensor, t: float, t_next: float) -> torch.Tensor:
    """First order: ``x + h v(x, t)``. One velocity evaluation."""
    return x + (t_next - t) * evaluate(x, t)


def midpoint(evaluate: Evaluate, x: torch.Tensor, t: float, t_next: float) -> torch.Tensor:
    """Second order: ``x + h v(x + h/2 v(x, t), t + h/2)``. Two evaluations."""
    h = t_next - t
    x_mid = x + 0.5 * h * evaluate(x, t)
    return x + h * evaluate(x_mid, t + 0.5 * h)


def heun(evaluate: Evaluate, x: torch.Tensor, t: float, t_next: float) -> torch.Tensor:
    """Second order (explicit trapezoid): an Euler predictor, then the average of the slopes at
    both ends, ``x + h/2 [v(x, t) + v(x_euler, t + h)]``. Two evaluations."""
    h = t_next - t
    v_start = evaluate(x, t)
    x_euler = x + h * v_start
    return x + 0.5 * h * (v_start + evaluate(x_euler, t_next))


def rk4(evaluate: Evaluate, x: torch.Tensor, t: float, t_next: float) -> torch.Tensor:
    """Fourth order, the classical Runge-Kutta step:
    ``k1 = v(x, t)``, ``k2 = v(x + h/2 k1, t + h/2)``, ``k3 = v(x + h/2 k2, t + h/2)``,
    ``k4 = v(x + h k3, t + h)``, ``x + h/6 (k1 + 2 k2 + 2 k3 + k4)``. Four evaluations."""
    h = t_next - t
    k1 = evaluate(x, t)
    k2 = evaluate(x + 0.5 * h * k1, t + 0.5 * h)
    k3 = evaluate(x + 0.5 * h * k2, t + 0.5 * h)
    k4 = evaluate(x + h * k3, t_next)
    return x + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)


KERNELS = {"euler": euler, "midpoint": midpoint, "heun": heun, "rk4": rk4}
NFE_PER_STEP = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}


def checked(velocity: Velocity) -> Evaluate:
    """``evaluate(x, t)`` for a public step: checks the time (float in [0, 1]) and the output shape."""
    return lambda x, t: require_velocity_output(velocity(x, time_batch(t, x)), x)


def euler_step(velocity: Velocity, x: torch.Tensor, t: float, t_next: float) -> torch.Tensor:
    """First order: ``x + h v(x, t)``, ``h = t_next - t``. One velocity evaluation."""
    return euler(checked(velocity), x, t, t_next)


def midpoint_step(velocity: Velocity, x: torch.Tensor, t: float, t_next: float) -> torch.Tensor:
    """Second order: ``x + h v(x + h/2 v(x, t), t + h/2)``. Two evaluations."""
    return midpoint(checked(velocity), x, t, t_next)


def heun_step(velocity: Velocity, x: torch.Tensor, t: float, t_next: float) -> torch.Tensor:
    """Second order: ``x + h/2 [v(x, t) + v(x + h v(x, t), t_next)]``. Two evaluations."""
    return heun(checked(velocity), x, t, t_next)


def rk4_step(velocity: Velocity, x: torch.Tensor, t: float, t_next: float) -> torch.Tensor:
    """Fourth order, classical Runge-Kutta (see ``rk4``). Four evaluations."""
    return rk4(checked(velocity), x, t, t_next)


STEPS = {"euler": euler_step, "midpoint": midpoint_step, "heun": heun_step, "rk4": rk4_step}
