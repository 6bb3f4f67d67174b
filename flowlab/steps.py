"""The one-step ODE methods for ``dx/dt = v(x, t)``: ``step(velocity, x, t, t_next) -> x_next``.

``h = t_next - t`` (negative when integrating backwards, for inversion); ``t`` is a float.
Called directly, a step checks ``t`` and the velocity's output at every call; the samplers' loop
(``flowlab.solvers.one_step_sampler``) calls it with a ``LoopVelocity``, whose inputs were checked
once, before the loop (``flowlab.sampling``). Each formula is written here once: the samplers run
these very functions, and the student release stubs the ones a notebook asks for.

========  ======================================================  ==========  =====
method    update                                                  NFE / step  order
========  ======================================================  ==========  =====
euler     x + h v(x, t)                                           1           1
midpoint  x + h v(x + h/2 v(x, t), t + h/2)                       2           2
heun      x + h/2 [v(x, t) + v(x + h v(x, t), t + h)]             2           2
rk4       classical Runge-Kutta, weights 1/6, 2/6, 2/6, 1/6       4           4
========  ======================================================  ==========  =====

On the linear path one Euler step is exactly the DDIM step ``t' x1_hat + (1 - t') x0_hat``.

Two loops over these steps are what notebooks 01 and 02 ask students to write: ``euler_sample``
(Euler on the uniform grid, keeping the whole trajectory) and ``integrate`` (any step function
over any grid). The library's samplers (``flowlab.solvers``) run their own loop, so that the
student release can stub these two without breaking them.
"""
from __future__ import annotations

import torch

from flowlab.sampling import Velocity, velocity_at
from flowlab.validate import require_batch, require_positive_int, time_grid


def euler_step(velocity: Velocity, x: torch.Tensor, t: float, t_next: float) -> torch.Tensor:
    """First order: ``x + h v(x, t)``. One velocity evaluation."""
    return x + (t_next - t) * velocity_at(velocity, x, t)


def midpoint_step(velocity: Velocity, x: torch.Tensor, t: float, t_next: float) -> torch.Tensor:
    """Second order: ``x + h v(x + h/2 v(x, t), t + h/2)``. Two evaluations."""
    h = t_next - t
    x_mid = x + 0.5 * h * velocity_at(velocity, x, t)
    return x + h * velocity_at(velocity, x_mid, t + 0.5 * h)


def heun_step(velocity: Velocity, x: torch.Tensor, t: float, t_next: float) -> torch.Tensor:
    """Second order (explicit trapezoid): an Euler predictor, then the average of the slopes at
    both ends, ``x + h/2 [v(x, t) + v(x_euler, t + h)]``. Two evaluations."""
    h = t_next - t
    v_start = velocity_at(velocity, x, t)
    x_euler = x + h * v_start
    return x + 0.5 * h * (v_start + velocity_at(velocity, x_euler, t_next))


def rk4_step(velocity: Velocity, x: torch.Tensor, t: float, t_next: float) -> torch.Tensor:
    """Fourth order, the classical Runge-Kutta step:
    ``k1 = v(x, t)``, ``k2 = v(x + h/2 k1, t + h/2)``, ``k3 = v(x + h/2 k2, t + h/2)``,
    ``k4 = v(x + h k3, t + h)``, ``x + h/6 (k1 + 2 k2 + 2 k3 + k4)``. Four evaluations."""
    h = t_next - t
    k1 = velocity_at(velocity, x, t)
    k2 = velocity_at(velocity, x + 0.5 * h * k1, t + 0.5 * h)
    k3 = velocity_at(velocity, x + 0.5 * h * k2, t + 0.5 * h)
    k4 = velocity_at(velocity, x + h * k3, t_next)
    return x + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)


STEPS = {"euler": euler_step, "midpoint": midpoint_step, "heun": heun_step, "rk4": rk4_step}
STEP_NFE = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}


def euler_sample(velocity: Velocity, x0: torch.Tensor, n_steps: int) -> torch.Tensor:
    """Euler's method on ``n_steps`` equal steps from t = 0 (the noise ``x0``, ``(B, ...)``) to t = 1.

    ``velocity(x, t)`` is called with a ``(B,)`` time. Returns the trajectory, shape
    ``(n_steps + 1, B, ...)``: ``x0`` first, the sample last. Runs without recording gradients.
    """
    require_batch("x0", x0)
    n_steps = require_positive_int("n_steps", n_steps)
    times = torch.linspace(0.0, 1.0, n_steps + 1, dtype=torch.float64).tolist()
    path = [x0]
    with torch.no_grad():
        for t, t_next in zip(times[:-1], times[1:]):
            # Not euler_step: notebook 02's release stubs it, and notebook 02's students have this function.
            path.append(path[-1] + (t_next - t) * velocity_at(velocity, path[-1], t))
    return torch.stack(path)


def integrate(step, velocity: Velocity, x: torch.Tensor, ts, return_path: bool = False):
    """Apply ``step(velocity, x, t, t_next)`` once per interval of the grid ``ts``, in order.

    ``ts``: a 1-D grid, increasing (noise -> data) or decreasing (data -> noise); the step gets
    its times as floats. Returns the end point, shaped like ``x``, or ``(x_end, path)`` with
    ``path`` of shape ``(len(ts), B, ...)`` (``x`` first) when ``return_path``. Runs without
    recording gradients. (``flowlab.solvers.integrate`` is the same loop with steps chosen by name.)
    """
    if not callable(step):
        raise TypeError(f"step must be callable as step(velocity, x, t, t_next), got {type(step).__name__}")
    require_batch("x", x)
    times = time_grid(ts).tolist()
    path = [x]
    with torch.no_grad():
        for t, t_next in zip(times[:-1], times[1:]):
            path.append(step(velocity, path[-1], t, t_next))
    return (path[-1], torch.stack(path)) if return_path else path[-1]
