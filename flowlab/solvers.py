"""The samplers by name, and ``integrate``, which runs any of them over a time grid.

Every sampler has the signature of ``flowlab.sampling``::

    sampler(velocity, x, ts, *, generator=None, noise=None, return_path=False, callback=None,
            **method_options)  ->  x_end  or  (x_end, path)

========  ============================================================  ==========  =====
name      update                                                        NFE / step  order
========  ============================================================  ==========  =====
euler     x + h v(x, t)                                                 1           1
midpoint  x + h v(x + h/2 v(x, t), t + h/2)                             2           2
heun      x + h/2 [v(x, t) + v(x + h v(x, t), t + h)]                   2           2
rk4       classical Runge-Kutta, weights 1/6, 2/6, 2/6, 1/6             4           4
adams     AB2 predictor, AM3 corrector, evaluations reused               1           3
          (``flowlab.multistep``)
sde       Euler-Maruyama on the marginal-preserving SDE, ``eta=``       1           1
          (``flowlab.sde``)
churn     EDM's churn then a step of ``method=`` (heun), ``gamma=``     2 (heun)    -
========  ============================================================  ==========  =====

The one-step ODE methods (``flowlab.steps``, re-exported here: ``euler_step``, ``heun_step``, ...)
share one loop, ``one_step_sampler``. The deterministic samplers (``METHODS``) also run backwards,
on a decreasing grid (inversion).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from flowlab.multistep import sample_adams
from flowlab.sampling import Velocity, start
from flowlab.sde import sample_churn, sample_sde
from flowlab.steps import STEP_NFE, STEPS, euler_step, heun_step, midpoint_step, rk4_step  # noqa: F401 (public)
from flowlab.validate import require_choice


def one_step_sampler(name: str) -> Callable:
    """The sampler that takes one step of the ODE method ``name`` per grid interval, either direction."""
    step = STEPS[name]

    def sample(velocity: Velocity, x: torch.Tensor, ts, *, generator=None, noise=None,
               return_path: bool = False, callback=None):
        run = start(name, velocity, x, ts, generator=generator, noise=noise, return_path=return_path,
                    callback=callback)
        for i, t, t_next in run.steps:
            x = step(run.velocity_of(i), x, t, t_next)
            run.record(i, t, t_next, x)
        return run.finish(x)

    sample.__name__ = sample.__qualname__ = f"sample_{name}"
    sample.__doc__ = (f"Integrate ``dx/dt = velocity(x, t)`` over ``ts`` with one {name} step per interval "
                      f"({STEP_NFE[name]} NFE each); deterministic, so ``generator`` and ``noise`` "
                      f"are not used. Returns ``x_end`` or ``(x_end, path)``.")
    return sample


@dataclass(frozen=True)
class Sampler:
    """A registered sampler: the function, its velocity evaluations per step, and whether it is an
    ODE solver (deterministic, runs in both directions) or stochastic (noise -> data only)."""
    run: Callable
    nfe_per_step: int
    deterministic: bool


SAMPLERS: dict[str, Sampler] = {
    **{name: Sampler(one_step_sampler(name), nfe, True) for name, nfe in STEP_NFE.items()},
    "adams": Sampler(sample_adams, 1, True),
    "sde": Sampler(sample_sde, 1, False),
    "churn": Sampler(sample_churn, STEP_NFE["heun"], False),   # with its default method, heun
}
METHODS = tuple(name for name, sampler in SAMPLERS.items() if sampler.deterministic)
NFE_PER_STEP = {name: sampler.nfe_per_step for name, sampler in SAMPLERS.items()}


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
    return NFE_PER_STEP[require_choice("method", method, SAMPLERS)] * n_steps


def integrate(velocity: Velocity, x: torch.Tensor, ts, method: str = "euler", return_path: bool = False, *,
              generator: torch.Generator | None = None, noise: torch.Tensor | None = None, callback=None,
              **method_options):
    """Run the sampler ``method`` (a key of ``SAMPLERS``) from ``ts[0]`` to ``ts[-1]``, one step per
    grid interval; ``method_options`` go to it (``eta=`` for "sde", ``gamma=``, ``method=`` for "churn").

    ``ts`` increasing (0 -> 1) samples; decreasing (1 -> 0) inverts (ODE methods only). Returns the
    end point, or ``(x_end, path)`` with ``path`` of shape ``(len(ts), B, ...)`` when ``return_path``.
    Pass a ``CountingVelocity`` to read the number of evaluations afterwards.
    Raises ``ValueError`` on a bad grid, an unknown method, a velocity of the wrong shape (checked on
    the first step), or NaN/infinity in the result (checked once, after the last step).
    """
    sampler = SAMPLERS[require_choice("method", method, SAMPLERS)]
    return sampler.run(velocity, x, ts, generator=generator, noise=noise, return_path=return_path,
                       callback=callback, **method_options)
