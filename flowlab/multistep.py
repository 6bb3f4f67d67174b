"""A linear multistep sampler: Adams-Bashforth-Moulton predictor-corrector in PEC mode.

One-step methods (Heun, RK4) throw away their velocity evaluations after each step. A multistep
method keeps them: with the velocities ``v_prev`` at ``t_prev`` and ``v`` at ``t`` it extrapolates
over the next step of length ``h = t_next - t`` (``k = t - t_prev`` is the previous step):

    predict (Adams-Bashforth 2):  x_p = x + h v + h^2 / (2k) (v - v_prev)
    evaluate:                     v_next = velocity(x_p, t_next)
    correct (Adams-Moulton 3):    x_next = x + a v_next + b v + c v_prev,
        a = h (2h + 3k) / (6 (h + k)),  b = h (h + 3k) / (6k),  c = -h^3 / (6k (h + k))

(the integral over [t, t_next] of the parabola through the three velocities; for equal steps
a, b, c = 5h/12, 8h/12, -h/12). ``v_next`` was evaluated at the predicted point and is reused as
the velocity at ``x_next`` ("PEC" mode, the idea behind UniPC), so each step costs ONE velocity
evaluation and the method is third order. The first step has no history and uses Euler with a
trapezoid correction; the last step is the predictor alone (its evaluation would only serve a
step that does not come), so ``n`` steps cost exactly ``n`` evaluations.
"""
from __future__ import annotations

import torch

from flowlab.sampling import start


def adams_bashforth2(x, h, k, v, v_prev):
    """Predictor: ``x + h v + h^2/(2k) (v - v_prev)``; Euler when there is no history."""
    if v_prev is None:
        return x + h * v
    return x + h * v + (h * h / (2 * k)) * (v - v_prev)


def adams_moulton3(x, h, k, v_next, v, v_prev):
    """Corrector: integrate the parabola through ``v_prev, v, v_next``; trapezoid without history."""
    if v_prev is None:
        return x + 0.5 * h * (v + v_next)
    a = h * (2 * h + 3 * k) / (6 * (h + k))
    b = h * (h + 3 * k) / (6 * k)
    c = -h ** 3 / (6 * k * (h + k))
    return x + a * v_next + b * v + c * v_prev


def sample_adams(velocity, x: torch.Tensor, ts, *, generator=None, noise=None, return_path: bool = False,
                 callback=None):
    """Run the PEC sampler over the grid ``ts`` (either direction); the shared sampler signature
    of ``flowlab.sampling`` (deterministic: ``generator`` and ``noise`` are not used).

    ``n`` steps cost ``n`` velocity evaluations. Returns ``x_end`` or ``(x_end, path)``.
    """
    run = start("adams", velocity, x, ts, generator=generator, noise=noise, return_path=return_path,
                callback=callback)
    return run.finish(adams_loop(run.velocity_of, x, run.times, run.record))


def adams_loop(velocity_of, x: torch.Tensor, times: list[float], on_step=None) -> torch.Tensor:
    """The bare PEC loop over the float grid ``times``: ``velocity_of(i)`` is the velocity that step
    ``i`` evaluates (called as ``v(x, t)``), ``on_step(i, t, t_next, x_next)`` runs after each step.
    The last step is the predictor alone: its corrector's evaluation would serve no next step."""
    last = len(times) - 2
    evaluate = velocity_of(0)
    v, v_prev, k = evaluate(x, times[0]), None, None
    for i, (t, t_next) in enumerate(zip(times[:-1], times[1:])):
        h = t_next - t
        x_pred = adams_bashforth2(x, h, k, v, v_prev)
        if i == last:
            x = x_pred
        else:
            v_next = evaluate(x_pred, t_next)
            x = adams_moulton3(x, h, k, v_next, v, v_prev)
            v_prev, v, k = v, v_next, h
        evaluate = velocity_of(i + 1)
        if on_step is not None:
            on_step(i, t, t_next, x)
    return x
