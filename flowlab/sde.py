"""Stochastic samplers with the same marginals as the flow ODE.

Conventions (see DESIGN.md): t in [0, 1], **t = 0 is noise**, **t = 1 is data**,
``x_t = (1 - t) x0 + t x1``. For any noise scale ``g(t) >= 0`` the SDE

    dx = [v + g^2 / 2 * score] dt + g dW,        score = (t v - x) / (1 - t),

has the same marginals ``p_t`` as the ODE ``dx = v dt``: the extra drift ``g^2/2 * score`` exactly
undoes the spreading of the noise ``g dW`` (Fokker-Planck). Here ``g^2 = eta * 2 (1 - t) / t``:
``eta = 0`` is the ODE, ``eta = 1`` is DDPM-like (ancestral) sampling.

Two samplers:

* ``sample_sde``: Euler-Maruyama on that SDE.
* ``sample_churn``: EDM's "churn" (Karras et al. 2022, Algorithm 2) in flow time: before each ODE
  step, go back to a noisier time ``t_hat < t`` by adding fresh noise (and shrinking the signal),
  then take a deterministic step from ``t_hat`` to ``t_next``.

Randomness is injected: pass ``noise`` of shape ``(len(ts) - 1, *x.shape)`` (``noise[i]`` is used by
step ``i``) or a CPU ``torch.Generator``. Noise from a generator is drawn on the CPU and then moved
to ``x.device``, so the same seed gives the same samples on CPU and GPU (up to float round-off).
"""
from __future__ import annotations

import math

import torch

from flowlab.validate import require_batch, require_choice, require_same_shape, time_batch, time_grid
from flowlab.solvers import STEPS, Velocity, integrate


def _check_nonnegative(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float >= 0, got {type(value).__name__}")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite float >= 0, got {value}")
    return float(value)


def _increasing_grid(ts) -> list[float]:
    times = time_grid(ts)
    if times[-1] < times[0]:
        raise ValueError(f"ts must be increasing (t = 0 noise -> t = 1 data) for sampling, got "
                         f"{times.tolist()}; stochastic samplers do not run backwards")
    return times.tolist()


def _noise_source(x: torch.Tensor, n_steps: int, generator: torch.Generator | None,
                  noise: torch.Tensor | None):
    """Return ``draw(i) -> (B, ...)`` giving the noise of step ``i``, from ``noise`` or ``generator``."""
    if noise is not None and generator is not None:
        raise ValueError("pass either noise or generator, not both")
    if noise is not None:
        expected = (n_steps, *x.shape)
        if not isinstance(noise, torch.Tensor) or tuple(noise.shape) != expected:
            got = tuple(noise.shape) if isinstance(noise, torch.Tensor) else type(noise).__name__
            raise ValueError(f"noise must have shape (len(ts) - 1, *x.shape) = {expected}, got {got}")
        noise = noise.to(dtype=x.dtype, device=x.device)
        return lambda i: noise[i]
    # Drawn on the CPU so that a seed means the same noise on every device.
    return lambda i: torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)


def sde_drift(v: torch.Tensor, x: torch.Tensor, t: float, eta: float) -> torch.Tensor:
    """Drift ``v + g^2/2 * score`` of the marginal-preserving SDE, for ``t > 0``.

    With ``g^2 = eta * 2 (1 - t) / t`` and ``score = (t v - x) / (1 - t)`` the factor ``1 - t``
    cancels:  ``g^2/2 * score = eta (1 - t)/t * (t v - x)/(1 - t) = eta (v - x / t)``,  so

        drift = v + eta (v - x / t),

    which stays finite as t -> 1 (where ``score_from_velocity`` itself is singular).
    """
    return v + eta * (v - x / t)


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
    """
    eta = _check_nonnegative("eta", eta)
    require_same_shape(x=x, noise=noise)
    if not t_next > t:
        raise ValueError(f"euler_maruyama_step needs t_next > t (sampling runs from noise t = 0 to "
                         f"data t = 1), got t = {t}, t_next = {t_next}")
    h = t_next - t
    v = velocity(x, time_batch(t, x))
    if t == 0 or eta == 0:
        return x + h * v
    g = math.sqrt(eta * 2 * (1 - t) / t)
    return x + h * sde_drift(v, x, t, eta) + g * math.sqrt(h) * noise.to(x)


def sample_sde(velocity: Velocity, x: torch.Tensor, ts, eta: float,
               generator: torch.Generator | None = None, noise: torch.Tensor | None = None,
               return_path: bool = False):
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

    Returns ``x`` at ``ts[-1]``, or ``(x, path)``. One velocity evaluation per step.
    """
    eta = _check_nonnegative("eta", eta)
    times = _increasing_grid(ts)
    require_batch("x", x)
    if eta == 0 and noise is None:
        return integrate(velocity, x, ts, "euler", return_path=return_path)
    draw = _noise_source(x, len(times) - 1, generator, noise)
    path = [x]
    for i, (t, t_next) in enumerate(zip(times[:-1], times[1:])):
        x = euler_maruyama_step(velocity, x, t, t_next, eta, draw(i))
        _check_finite(x, i, t, t_next)
        if return_path:
            path.append(x)
    return (x, torch.stack(path)) if return_path else x


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
    gamma = _check_nonnegative("gamma", gamma)
    require_same_shape(x=x, noise=noise)
    if not 0 < t < 1:
        raise ValueError(f"churn_step needs 0 < t < 1 (sigma = (1 - t)/t is infinite at t = 0 and "
                         f"zero at t = 1), got t = {t}")
    sigma = (1 - t) / t
    t_hat = 1 / (1 + sigma * (1 + gamma))
    added_std = math.sqrt(max((1 - t_hat) ** 2 - (t_hat * sigma) ** 2, 0.0))
    return (t_hat / t) * x + added_std * noise.to(x), t_hat


def _check_t_range(t_range) -> tuple[float, float]:
    try:
        low, high = (float(value) for value in t_range)
    except (TypeError, ValueError) as error:
        raise TypeError(f"t_range must be a pair of floats (t_min, t_max), got {t_range!r}") from error
    if not 0 <= low <= high <= 1:
        raise ValueError(f"t_range must satisfy 0 <= t_min <= t_max <= 1, got {t_range!r}")
    return low, high


def sample_churn(velocity: Velocity, x: torch.Tensor, ts, gamma: float, method: str = "heun",
                 t_range: tuple[float, float] = (0.0, 1.0),
                 generator: torch.Generator | None = None, noise: torch.Tensor | None = None):
    """EDM's stochastic sampler in flow time: churn, then one deterministic step.

    For each step ``t -> t_next`` of the increasing grid ``ts``: if ``t_range[0] <= t <= t_range[1]``
    and ``0 < t < 1``, ``(x, t_hat) = churn_step(x, t, gamma, noise[i])`` (no churn at t = 0, which is
    pure noise already); then ``x = STEPS[method](velocity, x, t_hat, t_next)``.

    ``gamma = 0`` gives exactly ``integrate(velocity, x, ts, method)``. ``generator`` / ``noise``
    as in ``sample_sde`` (``noise``: ``(len(ts) - 1, *x.shape)``). NFE: that of ``method`` per step.
    """
    gamma = _check_nonnegative("gamma", gamma)
    step = STEPS[require_choice("method", method, STEPS)]
    low, high = _check_t_range(t_range)
    times = _increasing_grid(ts)
    require_batch("x", x)
    if gamma == 0 and noise is None:
        return integrate(velocity, x, ts, method)
    draw = _noise_source(x, len(times) - 1, generator, noise)
    for i, (t, t_next) in enumerate(zip(times[:-1], times[1:])):
        t_start = t
        if gamma > 0 and low <= t <= high and 0 < t < 1:
            x, t_start = churn_step(x, t, gamma, draw(i))
        x = step(velocity, x, t_start, t_next)
        _check_finite(x, i, t, t_next)
    return x


def _check_finite(x: torch.Tensor, i: int, t: float, t_next: float) -> None:
    if not torch.isfinite(x).all():
        raise ValueError(f"the sampler gave NaN or infinity in step {i} (t = {t:.4g} -> {t_next:.4g}); "
                         f"check the model and the time grid")
