"""What every sampler shares: one signature, inputs checked once, a bare loop, one check at the end.

Every sampler in ``flowlab.solvers.SAMPLERS`` (the ODE methods, Adams, the SDE and EDM's churn) is
called the same way::

    sampler(velocity, x, ts, *, generator=None, noise=None, return_path=False, callback=None,
            **method_options)  ->  x_end  or  (x_end, path)

* ``velocity(x, t)``: ``x`` of shape ``(B, ...)``, ``t`` of shape ``(B,)``; returns ``x``'s shape.
* ``ts``: the time grid, 1-D, strictly monotone inside [0, 1] (t = 0 noise, t = 1 data).
* ``generator`` / ``noise``: the randomness of a stochastic sampler, from a CPU generator or given
  whole as ``noise`` of shape ``(len(ts) - 1, *x.shape)`` (``noise[i]`` feeds step ``i``).
  Deterministic samplers check ``noise``'s shape and otherwise ignore both.
* ``return_path``: also return the states at every grid time, ``(len(ts), B, ...)``.
* ``callback(i, t, t_next, x_next)``: called after step ``i`` (floats ``t -> t_next``).

``start`` checks all of that once and returns a ``Run``. Its loop hands the step functions a
``LoopVelocity``: the velocity at a float time, called with times that
``flowlab.validate.time_batch`` trusts, whose output shape is checked on the first step only. A
public step function (``euler_step``, ``euler_maruyama_step``, ...) checks its arguments at every
call, except when it is given a ``LoopVelocity``, whose sampler has checked them once already.
(The loops call the public step functions rather than private copies of their formulas: each
formula exists once, in the function a notebook asks students to write, which the student release
stubs.) ``Run.finish`` checks for NaN/infinity once, after the last step. So the loop, as in
k-diffusion or EDM, never waits for the device (no ``.item()``, no ``bool(tensor)``), and a GPU
can queue the steps' kernels back to back.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from flowlab.validate import (grid_time, increasing_grid, require_batch, require_finite_result,
                              require_velocity_output, sampler_noise, time_batch, time_grid)

Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Callback = Callable[[int, float, float, torch.Tensor], None]    # callback(i, t, t_next, x_next)


class LoopVelocity:
    """The velocity as a sampler's loop calls it: ``v(x, t)`` with a float ``t`` from a checked grid.

    ``velocity(x, grid_time(t, x))`` (a ``(B,)`` time that ``time_batch`` does not re-check); with
    ``check_shape`` the output must be shaped like ``x`` (a sampler's first step).
    """

    def __init__(self, velocity: Velocity, check_shape: bool = False):
        self.velocity, self.check_shape = velocity, check_shape

    def __call__(self, x: torch.Tensor, t: float) -> torch.Tensor:
        v = self.velocity(x, grid_time(t, x))
        return require_velocity_output(v, x) if self.check_shape else v


def velocity_at(velocity, x: torch.Tensor, t: float) -> torch.Tensor:
    """``v(x, t)`` for a step function with a float ``t``: a ``LoopVelocity`` is called as it is;
    any other velocity gets ``t`` checked (in [0, 1]) and broadcast to ``(B,)``, and its output's
    shape checked."""
    if isinstance(velocity, LoopVelocity):
        return velocity(x, t)
    return require_velocity_output(velocity(x, time_batch(t, x)), x)


@dataclass
class Run:
    """One sampler call whose inputs were checked by ``start``.

    ``times``: the grid as floats; ``steps``: ``(i, t, t_next)`` for each step; ``velocity_of(i)``:
    the ``LoopVelocity`` of step ``i``.
    """
    name: str
    times: list[float]
    velocity: Velocity
    noise: torch.Tensor | None
    generator: torch.Generator | None
    path: list[torch.Tensor] | None
    callback: Callback | None

    @property
    def steps(self):
        return [(i, t, t_next) for i, (t, t_next) in enumerate(zip(self.times[:-1], self.times[1:]))]

    def __post_init__(self):
        self._first, self._later = LoopVelocity(self.velocity, check_shape=True), LoopVelocity(self.velocity)

    def velocity_of(self, i: int) -> LoopVelocity:
        """The velocity for step ``i``: the first step's checks the output shape, later ones do not."""
        return self._first if i == 0 else self._later

    def noise_of(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """The standard normal noise of step ``i``, shaped like ``x``.

        Drawn on the CPU so that a seed means the same samples on every device; into pinned memory
        when ``x`` is on a GPU, so that the copy does not make the host wait.
        """
        if self.noise is not None:
            return self.noise[i]
        drawn = torch.randn(x.shape, generator=self.generator, dtype=x.dtype, pin_memory=x.is_cuda)
        return drawn.to(x.device, non_blocking=True)

    def record(self, i: int, t: float, t_next: float, x_next: torch.Tensor) -> None:
        """After step ``i``: keep ``x_next`` for the path and call the callback."""
        if self.path is not None:
            self.path.append(x_next)
        if self.callback is not None:
            self.callback(i, t, t_next, x_next)

    def finish(self, x: torch.Tensor):
        """Check the end point for NaN/infinity (one sync); return ``x`` or ``(x, path)``."""
        require_finite_result(x, self.name, self.times)
        return x if self.path is None else (x, torch.stack(self.path))


def start(name: str, velocity: Velocity, x: torch.Tensor, ts, *, generator=None, noise=None,
          return_path: bool = False, callback: Callback | None = None,
          increasing_because: str | None = None) -> Run:
    """Check a sampler's shared arguments once and return the ``Run`` its loop uses.

    ``increasing_because``: for samplers that only run from noise to data, the end of the error
    raised for a decreasing grid (None: both directions are allowed).
    """
    if not callable(velocity):
        raise TypeError(f"velocity must be callable as velocity(x, t), got {type(velocity).__name__}")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable as callback(i, t, t_next, x_next), got "
                        f"{type(callback).__name__}")
    if increasing_because is None:
        times = time_grid(ts).tolist()
    else:
        times = increasing_grid(ts, increasing_because).tolist()
    require_batch("x", x)
    noise = sampler_noise(noise, generator, len(times) - 1, x)
    return Run(name, times, velocity, noise, generator, [x] if return_path else None, callback)
