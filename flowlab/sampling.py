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

``start`` checks all of that once and returns a ``Run``; the loop then calls the velocity with
times that ``flowlab.validate.time_batch`` trusts, checks the velocity's output shape on the
first step only, and ``Run.finish`` checks for NaN/infinity once, after the last step. So the
loop itself, as in k-diffusion or EDM, never waits for the device (no ``.item()``, no
``bool(tensor)``), and a GPU can queue the steps' kernels back to back.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from flowlab.validate import (grid_time, increasing_grid, require_batch, require_finite_result,
                              require_velocity_output, sampler_noise, time_grid)

Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Evaluate = Callable[[torch.Tensor, float], torch.Tensor]       # evaluate(x, t) with a float time
Callback = Callable[[int, float, float, torch.Tensor], None]    # callback(i, t, t_next, x_next)


@dataclass
class Run:
    """One sampler call whose inputs were checked by ``start``.

    ``times``: the grid as floats; ``steps``: ``(i, t, t_next)`` for each step; ``evaluate(i)``:
    the velocity at a float time for step ``i`` (the first step's checks the output shape).
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

    def evaluate(self, i: int) -> Evaluate:
        velocity = self.velocity
        if i == 0:
            return lambda x, t: require_velocity_output(velocity(x, grid_time(t, x)), x)
        return lambda x, t: velocity(x, grid_time(t, x))

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
