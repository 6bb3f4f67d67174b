"""Stochastic samplers with the same marginals as the flow ODE.

Conventions: t in [0, 1], **t = 0 is noise**, **t = 1 is data**,
``x_t = (1 - t) x0 + t x1``. For any noise scale ``g(t) >= 0`` the SDE

    dx = [v + g^2 / 2 * score] dt + g dW,        score = (t v - x) / (1 - t),

has the same marginals ``p_t`` as the ODE ``dx = v dt``: the extra drift ``g^2/2 * score`` exactly
undoes the spreading of the noise ``g dW`` (Fokker-Planck). Here ``g^2 = eta * 2 (1 - t) / t``:
``eta = 0`` is the ODE, ``eta = 1`` is DDPM-like (ancestral) sampling.

Two samplers:

* ``sample_sde``: Euler-Maruyama on that SDE (``sample_em``: the same with the noise drawn from a
  generator in float32, the loop notebook 03's students write).
* ``sample_churn``: EDM's "churn" (Karras et al. 2022, Algorithm 2) in flow time: before each ODE
  step, go back to a noisier time ``t_hat < t`` by adding fresh noise (and shrinking the signal),
  then take a deterministic step from ``t_hat`` to ``t_next``.

Both have the shared sampler signature (``flowlab.sampling``), with ``eta=`` or ``gamma=`` (and
``method=``, ``t_range=``) as keyword options. Randomness is injected: pass ``noise`` of shape
``(len(ts) - 1, *x.shape)`` (``noise[i]`` is used by step ``i``) or a CPU ``torch.Generator``. Noise
from a generator is drawn on the CPU and then moved to ``x.device``, so the same seed gives the
same samples on CPU and GPU (up to float round-off).

The public one-step functions (``euler_maruyama_step``, ``churn_step``) check their arguments at
every call; the samplers check theirs once, before their loops (see ``flowlab.sampling``).
``sample_churn`` calls ``churn_step`` itself, whose checks read floats and shapes only (no wait for
the device), so that its formula exists once, in the function notebook 03 grades.
"""
from __future__ import annotations

import math

import torch

from flowlab.sampling import LoopVelocity, Velocity, start, velocity_at
from flowlab.steps import STEPS
from flowlab.validate import (increasing_grid, require_batch, require_choice, require_interval, require_nonnegative,
                              require_same_shape)

FORWARD_ONLY = "stochastic samplers do not run backwards"


def euler_maruyama_step(velocity: Velocity, x: torch.Tensor, t: float, t_next: float,
                        eta: float, noise: torch.Tensor) -> torch.Tensor:
    """One Euler-Maruyama step of ``dx = [v + g^2/2 score] dt + g dW``, ``g^2 = eta 2 (1 - t)/t``:

        x_next = x + h * (v + eta (v - x / t)) + g(t) sqrt(h) * noise,      h = t_next - t > 0,

    with ``noise ~ N(0, I)`` shaped like ``x`` (B, ...). One velocity evaluation.

    Both ends of [0, 1] are singular in the SDE and are handled here:

    * t = 0: ``g`` is infinite (and ``x / t`` undefined), so the step **from t = 0 is
      deterministic**, a plain Euler step ``x + h v``, and ``noise`` is ignored.
    * t -> 1: the drift is used in its cancelled form ``v + eta (v - x/t)`` (no ``1/(1 - t)``)
      and ``g -> 0``, so the last step, which starts at some t < 1, is finite.

    The arguments are checked at each call, except from ``sample_sde``'s loop (a ``LoopVelocity``),
    which checked them once.
    """
    if not isinstance(velocity, LoopVelocity):
        eta = require_nonnegative("eta", eta)
        require_same_shape(x=x, noise=noise)
        if not t_next > t:
            raise ValueError(f"euler_maruyama_step needs t_next > t (sampling runs from noise t = 0 to "
                             f"data t = 1), got t = {t}, t_next = {t_next}")
    h = t_next - t
    v = velocity_at(velocity, x, t)
    if t == 0 or eta == 0:
        return x + h * v
    g = math.sqrt(eta * 2 * (1 - t) / t)
    drift = v + eta * (v - x / t)          # v + g^2/2 * score: the 1 - t of g^2 and of the score cancel
    return x + h * drift + g * math.sqrt(h) * noise.to(x)


def sample_sde(velocity: Velocity, x: torch.Tensor, ts, *, eta: float = 1.0,
               generator: torch.Generator | None = None, noise: torch.Tensor | None = None,
               return_path: bool = False, callback=None):
    """Sample by Euler-Maruyama on the marginal-preserving SDE over the increasing grid ``ts``.

    Args:
        velocity: ``velocity(x, t)`` with ``x: (B, ...)``, ``t: (B,)``.
        x: the starting point at ``ts[0]`` (usually noise at t = 0), shape ``(B, ...)``.
        ts: increasing time grid (see ``flowlab.schedules``); a decreasing grid raises.
        eta: noise level >= 0; ``eta = 0`` gives exactly ``integrate(velocity, x, ts, "euler")``.
        generator: CPU generator for the noise (drawn on CPU, moved to ``x.device``).
        noise: alternatively, all the noise, shape ``(len(ts) - 1, *x.shape)``; ``noise[i]`` feeds
            step i (ignored for a step that starts at t = 0, which is deterministic).
        return_path: also return the states at every grid time, ``(len(ts), B, ...)``.
        callback: ``callback(i, t, t_next, x_next)`` after each step.

    Returns ``x`` at ``ts[-1]``, or ``(x, path)``. One velocity evaluation per step.
    """
    eta = require_nonnegative("eta", eta)
    run = start("sde", velocity, x, ts, generator=generator, noise=noise, return_path=return_path,
                callback=callback, increasing_because=FORWARD_ONLY)
    for i, t, t_next in run.steps:
        step_noise = run.noise_of(i, x) if eta > 0 else None     # drawn at t = 0 too: noise[i] feeds step i
        x = euler_maruyama_step(run.velocity_of(i), x, t, t_next, eta, step_noise)
        run.record(i, t, t_next, x)
    return run.finish(x)


def sample_em(velocity: Velocity, x: torch.Tensor, ts, eta: float, generator: torch.Generator) -> torch.Tensor:
    """Euler-Maruyama from ``ts[0]`` to ``ts[-1]``, one fresh noise draw a step from ``generator``.

    ``velocity(x, t)`` with ``x: (B, ...)`` and ``t: (B,)``; ``x``: the state at ``ts[0]``;
    ``ts``: an increasing grid (tensor or sequence); ``eta >= 0``; ``generator``: a CPU generator.
    Step ``i`` uses ``torch.randn(x.shape, generator=generator)`` drawn in float32 on the CPU
    (whatever ``x``'s dtype and device, so that a seed means the same samples everywhere), then
    converted to ``x``; a draw is made for every step, also one from t = 0 that ignores it. So a
    run over ``ts`` equals runs over ``ts[:k + 1]`` then ``ts[k:]`` with the same generator.
    Returns the state at ``ts[-1]``, shaped like ``x``.
    """
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    steps = len(increasing_grid(ts, FORWARD_ONLY)) - 1
    require_batch("x", x)
    noise = torch.stack([torch.randn(x.shape, generator=generator) for _ in range(steps)]).to(x)
    return sample_sde(velocity, x, ts, eta=eta, noise=noise)


def churn_step(x: torch.Tensor, t: float, gamma: float, noise: torch.Tensor):
    """Go back from ``t`` to the noisier time ``t_hat`` by EDM's churn, in flow time.

    With ``sigma = (1 - t)/t`` (the noise level of ``x / t = x1 + sigma x0``):

        sigma_hat = sigma (1 + gamma),     t_hat = 1 / (1 + sigma_hat)  (< t),
        x_hat = (t_hat / t) x + sqrt((1 - t_hat)^2 - (t_hat (1 - t) / t)^2) * noise.

    Why the signal is shrunk: on the path ``x_t = t x1 + (1 - t) x0`` the data enters with weight
    ``t``. At ``t_hat`` it must have weight ``t_hat``, so ``x`` is scaled by ``t_hat / t``; that
    also scales its noise to ``t_hat (1 - t)/t``, and fresh noise tops it up to ``1 - t_hat``.
    "Just add noise" (``x + c * noise``) is right only in EDM's variance-exploding coordinates,
    where the data weight is always 1; here it leaves the data weight at ``t`` with the noise of
    ``t_hat``, a point on no marginal ``p_t``, and the sampler drifts off the path.

    ``x``, ``noise``: ``(B, ...)``; ``0 < t < 1``; ``gamma >= 0`` (0: no churn, ``x_hat = x``).
    Returns ``(x_hat, t_hat)`` with ``t_hat`` a float.
    """
    gamma = require_nonnegative("gamma", gamma)
    require_same_shape(x=x, noise=noise)
    if not 0 < t < 1:
        raise ValueError(f"churn_step needs 0 < t < 1 (sigma = (1 - t)/t is infinite at t = 0 and "
                         f"zero at t = 1), got t = {t}")
    sigma = (1 - t) / t
    t_hat = 1 / (1 + sigma * (1 + gamma))
    added_std = math.sqrt(max((1 - t_hat) ** 2 - (t_hat * sigma) ** 2, 0.0))
    return (t_hat / t) * x + added_std * noise.to(x), t_hat


def sample_churn(velocity: Velocity, x: torch.Tensor, ts, *, gamma: float = 0.1, method: str = "heun",
                 t_range: tuple[float, float] = (0.0, 1.0), generator: torch.Generator | None = None,
                 noise: torch.Tensor | None = None, return_path: bool = False, callback=None):
    """EDM's stochastic sampler in flow time: churn, then one deterministic step.

    For each step ``t -> t_next`` of the increasing grid ``ts``: if ``t_range[0] <= t <= t_range[1]``
    and ``0 < t < 1``, ``(x, t_hat) = churn_step(x, t, gamma, noise[i])`` (no churn at t = 0, which is
    pure noise already); then one step of ``method`` (``flowlab.steps``) from ``t_hat``
    to ``t_next``.

    ``gamma = 0`` gives exactly ``integrate(velocity, x, ts, method)``. ``generator`` / ``noise``
    as in ``sample_sde`` (``noise``: ``(len(ts) - 1, *x.shape)``). The path holds the states at the
    grid times (after each deterministic step), ``(len(ts), B, ...)``. NFE: that of ``method`` per step.
    """
    gamma = require_nonnegative("gamma", gamma)
    step = STEPS[require_choice("method", method, STEPS)]
    low, high = require_interval("t_range", t_range)
    run = start("churn", velocity, x, ts, generator=generator, noise=noise, return_path=return_path,
                callback=callback, increasing_because=FORWARD_ONLY)
    for i, t, t_next in run.steps:
        t_start = t
        if gamma > 0:
            step_noise = run.noise_of(i, x)     # drawn at every step: noise[i] feeds step i, as in sample_sde
            if low <= t <= high and 0 < t < 1:
                x, t_start = churn_step(x, t, gamma, step_noise)
        x = step(run.velocity_of(i), x, t_start, t_next)
        run.record(i, t, t_next, x)
    return run.finish(x)
