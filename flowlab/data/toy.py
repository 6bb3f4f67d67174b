"""Two-dimensional toy data sets for flow matching.

``sample(name, n)`` draws ``n`` points, shape ``(n, 2)``, scaled to roughly [-4, 4]^2 so that the
data and the N(0, I) noise live on comparable scales. Moons and circles come from scikit-learn;
the others are written here. Every draw goes through a ``torch.Generator`` (or an int seed) so
that it can be reproduced.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.datasets import make_circles, make_moons

from flowlab.validate import require_choice
from flowlab.data.gmm import GaussianMixture


def _seed(generator: torch.Generator | None) -> int:
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator))


def _moons(n, generator):
    points, _ = make_moons(n, noise=0.05, random_state=_seed(generator))
    return (torch.from_numpy(points) - torch.tensor([0.5, 0.25], dtype=torch.float64)) * 2.0


def _circles(n, generator):
    points, _ = make_circles(n, noise=0.04, factor=0.5, random_state=_seed(generator))
    return torch.from_numpy(points) * 3.0


def _eight_gaussians(n, generator):
    return GaussianMixture.ring(k=8, radius=3.0, std=0.25).sample(n, generator=generator)


def _checkerboard(n, generator):
    """Uniform on the black squares of a 4 x 4 board spanning [-4, 4]^2."""
    x = torch.rand(n, generator=generator, dtype=torch.float64) * 8 - 4
    column = torch.floor(x + 4).long() // 2 % 2
    offset = torch.randint(0, 2, (n,), generator=generator) * 2 + 1 - column  # row parity = column's
    y = torch.rand(n, generator=generator, dtype=torch.float64) * 2 + (offset * 2 - 4).double()
    y = torch.where(y >= 4, y - 8, y)
    return torch.stack([x, y], dim=1)


def _spirals(n, generator):
    """Two interleaved Archimedean spirals with a little Gaussian jitter."""
    turn = torch.sqrt(torch.rand(n, generator=generator, dtype=torch.float64)) * 3 * math.pi
    arm = torch.randint(0, 2, (n,), generator=generator).double() * math.pi
    radius = turn / (3 * math.pi) * 3.5
    points = torch.stack([radius * torch.cos(turn + arm), radius * torch.sin(turn + arm)], dim=1)
    return points + 0.08 * torch.randn(n, 2, generator=generator, dtype=torch.float64)


SAMPLERS = {
    "moons": _moons,
    "circles": _circles,
    "8gaussians": _eight_gaussians,
    "checkerboard": _checkerboard,
    "spirals": _spirals,
}
NAMES = tuple(SAMPLERS)


def sample(name: str, n: int, generator: torch.Generator | int | None = None,
           dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Draw ``n`` points of the toy data set ``name`` (one of ``NAMES``), shape ``(n, 2)``.

    ``generator`` may be a ``torch.Generator`` or an int seed.
    """
    require_choice("toy data set", name, SAMPLERS)
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if isinstance(generator, int):
        generator = torch.Generator().manual_seed(generator)
    return SAMPLERS[name](int(n), generator).to(dtype)
