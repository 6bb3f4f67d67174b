"""Time grids for sampling, all in flow time: ``n + 1`` points from t = 0 (noise) to t = 1 (data).

Where a grid puts its short steps depends on the coordinate you look in. Three are used here:

* flow time ``t`` itself;
* the noise level ``sigma = (1 - t) / t`` (EDM's sigma for the rescaled x / t; infinite at t = 0);
* the log signal-to-noise ratio ``lambda = 2 log(t / (1 - t))``.

"Short steps at high noise" means different grids in different coordinates. A grid uniform in t
is sparse at high noise when seen in sigma (t = 0.1 -> 0.2 is sigma 9 -> 4), and EDM's grid, which
takes long steps at high noise in sigma, takes short ones there in t. The SD3 shift multiplies
sigma by ``shift`` (``sigma' = shift sigma``): in log sigma and in log-SNR it is a translation.
Each schedule's docstring says which coordinate it is designed in and where it puts its short steps.
"""
from __future__ import annotations

import math

import torch

from flowlab.validate import require_choice, require_positive_int


def sigma_from_t(t: torch.Tensor) -> torch.Tensor:
    """Noise level ``sigma = (1 - t) / t`` (``inf`` at t = 0, 0 at t = 1)."""
    return (1 - t) / t


def t_from_sigma(sigma: torch.Tensor) -> torch.Tensor:
    """Inverse of ``sigma_from_t``: ``t = 1 / (1 + sigma)``."""
    return 1 / (1 + sigma)


def logsnr_from_t(t: torch.Tensor) -> torch.Tensor:
    """Log signal-to-noise ratio ``lambda = 2 log(t / (1 - t))`` (``-inf`` at t = 0, ``inf`` at t = 1)."""
    return 2 * (torch.log(t) - torch.log1p(-t))


def t_from_logsnr(logsnr: torch.Tensor) -> torch.Tensor:
    """Inverse of ``logsnr_from_t``: ``t = sigmoid(lambda / 2)``."""
    return torch.sigmoid(logsnr / 2)


def _check_steps(n) -> int:
    return require_positive_int("the number of steps n", n)


def _pin_ends(t: torch.Tensor) -> torch.Tensor:
    """Set the first and last points to exactly 0 and 1 (every grid spans the whole path)."""
    t = t.clone()
    t[0], t[-1] = 0.0, 1.0
    return t


def uniform(n: int) -> torch.Tensor:
    """``t_i = i / n``: equal steps in t. Seen in sigma, the steps at high noise are huge (sparse points)."""
    return torch.linspace(0, 1, _check_steps(n) + 1, dtype=torch.float64)


def shifted(n: int, shift: float = 3.0) -> torch.Tensor:
    """The SD3 time shift of a uniform grid.

    With ``s = 1 - u`` the SD3 noise level of a uniform ``u``, ``s' = shift s / (1 + (shift - 1) s)``
    and ``t = 1 - s'``. ``shift > 1`` makes the steps short near t = 0 (high noise) and long near
    t = 1; ``shift < 1`` does the opposite; ``shift = 1`` is ``uniform``. Designed in t.
    """
    if not shift > 0:
        raise ValueError(f"shift must be positive, got {shift}")
    s = 1 - uniform(n)
    return _pin_ends(1 - shift * s / (1 + (shift - 1) * s))


def karras(n: int, rho: float = 7.0, sigma_min: float = 0.002, sigma_max: float = 80.0) -> torch.Tensor:
    """EDM's grid (Karras et al. 2022, eq. 5), designed in sigma: ``n + 1`` float64 times, 0 -> 1.

    EDM's n noise levels run from ``sigma_max`` to ``sigma_min``, evenly spaced in ``sigma^(1/rho)``;
    mapped to flow time with ``t = 1 / (1 + sigma)``, then followed by t = 1 (sigma = 0, EDM's
    last step). The first point, ``sigma_max``, is moved to t = 0 (sigma = inf): a flow starts from
    pure noise, so the first step starts there instead of at ``t(sigma_max)`` (0.012 for 80).
    ``n = 1`` is the grid [0, 1]. Larger ``rho`` makes the steps shorter at low noise (t near 1).
    """
    if not (0 < sigma_min < sigma_max):
        raise ValueError(f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")
    if not rho > 0:
        raise ValueError(f"rho must be positive, got {rho}")
    u = torch.linspace(0, 1, _check_steps(n), dtype=torch.float64)
    root = sigma_max ** (1 / rho) + u * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))
    t = t_from_sigma(root ** rho)
    t[0] = 0.0
    return torch.cat([t, torch.ones(1, dtype=torch.float64)])


def cosine(n: int) -> torch.Tensor:
    """``t_i = (1 - cos(pi i / n)) / 2``: short steps at both ends in t, longest in the middle."""
    return _pin_ends((1 - torch.cos(math.pi * uniform(n))) / 2)


def logsnr(n: int, logsnr_min: float = -10.0, logsnr_max: float = 10.0) -> torch.Tensor:
    """Equal steps in log-SNR ``lambda`` between ``logsnr_min`` and ``logsnr_max`` (DPM-Solver's grid).

    Seen in t, the steps are short at both ends (where lambda runs off to -inf and +inf). End points
    are pinned to t = 0 and t = 1.
    """
    if not logsnr_min < logsnr_max:
        raise ValueError(f"need logsnr_min < logsnr_max, got {logsnr_min}, {logsnr_max}")
    lam = logsnr_min + uniform(n) * (logsnr_max - logsnr_min)
    return _pin_ends(t_from_logsnr(lam))


SCHEDULES = {"uniform": uniform, "shifted": shifted, "karras": karras, "cosine": cosine, "logsnr": logsnr}


def get(name: str, n: int, **params) -> torch.Tensor:
    """The grid ``SCHEDULES[name](n, **params)``; unknown names raise a ``ValueError`` listing them."""
    require_choice("schedule", name, SCHEDULES)
    return SCHEDULES[name](n, **params)


def optimize(velocity, x_probe: torch.Tensor, n: int, method="adams", **options) -> torch.Tensor:
    """The n-step grid fitted to ``velocity`` and ``method`` on probe noise (``flowlab.grid_search.optimize``):
    the interior times minimise the mean end-point error against a fine RK4 solution from ``x_probe``.
    ``method``: a name of ``flowlab.solvers.METHODS`` or a sampler ``(velocity, x, ts) -> x_end``."""
    # Imported here: grid_search runs the solvers, and the solvers may use the schedules.
    from flowlab.grid_search import optimize as optimize_grid

    return optimize_grid(velocity, x_probe, n, method, **options)
