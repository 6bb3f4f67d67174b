"""Sample-quality and path metrics: sliced Wasserstein-2, energy distance, straightness.

The distances compare two point clouds ``a: (N, ...)`` and ``b: (M, ...)`` (flattened to
``(N, D)``, ``(M, D)``); they are 0 for identical clouds and grow with the mismatch. A finite sample
of the data is not at distance 0 from another sample of the same data: compare a model against the
*floor*, the distance between two independent data draws of the same sizes.
"""
from __future__ import annotations

import torch

from flowlab.validate import require_batch, require_positive_int, time_grid


def _point_cloud(name: str, points: torch.Tensor) -> torch.Tensor:
    require_batch(name, points)
    if points.shape[0] < 1:
        raise ValueError(f"{name} must hold at least one point, got shape {tuple(points.shape)}")
    return points.flatten(1)


def _clouds(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = _point_cloud("a", a), _point_cloud("b", b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must have the same point dimension, got a {tuple(a.shape)} and b {tuple(b.shape)}")
    return a, b.to(device=a.device, dtype=a.dtype)


def _quantiles(sorted_values: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Empirical quantiles of each column of ``sorted_values: (N, P)`` at ``levels: (K,)`` in (0, 1).

    The i-th order statistic sits at level ``(i + 1/2) / N``; between them we interpolate linearly
    (and hold the extremes constant outside), so for ``levels = (i + 1/2) / N`` this returns
    ``sorted_values`` itself.
    """
    n = sorted_values.shape[0]
    position = (levels * n - 0.5).clamp(0, n - 1)
    below = position.floor().long()
    above = (below + 1).clamp(max=n - 1)
    weight = (position - below).unsqueeze(1)
    return (1 - weight) * sorted_values[below] + weight * sorted_values[above]


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, n_proj: int = 128,
                       generator: torch.Generator | None = None) -> float:
    """Sliced Wasserstein-2 distance between the point clouds ``a: (N, D)`` and ``b: (M, D)``.

    For ``n_proj`` random unit directions ``theta_p`` (uniform on the sphere, from ``generator``),
    project both clouds, sort, and compare quantile by quantile:

        SW2(a, b) = sqrt( mean_p mean_k (Q_{a.theta_p}(q_k) - Q_{b.theta_p}(q_k))^2 ),

    with ``q_k = (k + 1/2) / K``, ``K = max(N, M)``; for ``N = M`` the quantiles are just the sorted
    projections, otherwise they are linearly interpolated. Units: those of the data. Because the
    direction is averaged over the sphere, a shift ``b = a + s`` gives ``|s| / sqrt(D)``, not ``|s|``
    (exactly ``|s|`` in 1D). Returns a float.
    """
    a, b = _clouds(a, b)
    require_positive_int("n_proj", n_proj)
    directions = torch.randn(n_proj, a.shape[1], generator=generator, dtype=torch.float64)
    directions = directions / directions.norm(dim=1, keepdim=True)
    directions = directions.to(device=a.device, dtype=a.dtype)
    projected_a = torch.sort(a @ directions.T, dim=0).values           # (N, P)
    projected_b = torch.sort(b @ directions.T, dim=0).values           # (M, P)
    if projected_a.shape[0] != projected_b.shape[0]:
        count = max(projected_a.shape[0], projected_b.shape[0])
        levels = (torch.arange(count, device=a.device, dtype=a.dtype) + 0.5) / count
        projected_a, projected_b = _quantiles(projected_a, levels), _quantiles(projected_b, levels)
    return float((projected_a - projected_b).double().pow(2).mean().sqrt())


def _mean_distance(a: torch.Tensor, b: torch.Tensor, chunk_size: int) -> float:
    """``mean_{i, j} |a_i - b_j|`` in float64, ``chunk_size`` rows of ``a`` at a time."""
    total = 0.0
    for start in range(0, a.shape[0], chunk_size):
        total += float(torch.cdist(a[start:start + chunk_size], b).sum())
    return total / (a.shape[0] * b.shape[0])


def energy_distance(a: torch.Tensor, b: torch.Tensor, chunk_size: int = 1024) -> float:
    """Energy distance (V-statistic, all pairs including i = j) between ``a: (N, D)`` and ``b: (M, D)``:

        E(a, b) = 2 mean_{i,j} |a_i - b_j| - mean_{i,j} |a_i - a_j| - mean_{i,j} |b_i - b_j|,

    Euclidean norms, computed in float64. It is >= 0, 0 for identical clouds, and has the units of
    the data (a squared distance between distributions, but linear in the scale of the points).
    Pairwise distances are formed ``chunk_size`` rows at a time, so 20,000 x 20,000 points need
    about ``chunk_size * 20,000 * 8`` bytes (160 MB at the default), not 3.2 GB. Returns a float.
    """
    a, b = _clouds(a, b)
    require_positive_int("chunk_size", chunk_size)
    a, b = a.double(), b.double()
    between = _mean_distance(a, b, chunk_size)
    within_a = _mean_distance(a, a, chunk_size)
    within_b = _mean_distance(b, b, chunk_size)
    return 2 * between - within_a - within_b


def straightness(path: torch.Tensor, ts) -> float:
    """How far sampled trajectories are from straight lines; 0 exactly for straight, uniform-speed ones.

    ``path: (N + 1, B, ...)`` holds the states ``x_0..x_N`` at the times ``ts: (N + 1,)`` (as returned
    by ``integrate(..., return_path=True)``). With steps ``h_i = t_{i+1} - t_i``, the chord velocity
    ``u = (x_N - x_0) / (t_N - t_0)`` (``x_N - x_0`` on a grid from 0 to 1) and the squared norm
    summed over all non-batch dimensions,

        S = mean_b  sum_i |h_i| * || (x_{i+1} - x_i) / h_i - u ||^2,

    a discretisation of ``int_0^1 || dx/dt - (x_1 - x_0) ||^2 dt`` (Liu et al. 2022, rectified flow),
    in squared data units per unit time. Returns a float.
    """
    require_batch("path", path, min_dim=3)
    ts = time_grid(ts)
    if path.shape[0] != ts.numel():
        raise ValueError(f"path must have one state per time: len(ts) = {ts.numel()}, "
                         f"got path of shape {tuple(path.shape)}")
    states = path.flatten(2).double()                                   # (N + 1, B, D)
    steps = (ts[1:] - ts[:-1]).to(device=states.device, dtype=torch.float64)
    chord = (states[-1] - states[0]) / (ts[-1] - ts[0]).item()          # (B, D)
    segment_velocity = (states[1:] - states[:-1]) / steps[:, None, None]
    deviation = (segment_velocity - chord).pow(2).sum(-1)              # (N, B)
    return float((steps.abs()[:, None] * deviation).sum(0).mean())


def class_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of rows whose arg-max class equals the label: ``mean(argmax(logits) == labels)``.

    ``logits``: ``(N, C)`` (e.g. the evaluation classifier on conditional samples); ``labels``: ``(N,)``.
    """
    require_batch("logits", logits)
    if labels.shape != (logits.shape[0],):
        raise ValueError(f"labels must have shape ({logits.shape[0]},), got {tuple(labels.shape)}")
    return (logits.argmax(1) == labels.to(logits.device)).double().mean().item()


def frechet_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to two feature sets ``(N, F)`` and ``(M, F)``:

        ||mu_a - mu_b||^2 + tr(C_a + C_b - 2 (C_a C_b)^(1/2)),

    computed in float64 (the FID formula, here in the evaluation classifier's feature space). It is
    biased upwards for small N: compare against the real-vs-real floor of the same sizes.
    """
    import numpy as np
    from scipy import linalg

    a, b = _clouds(features_a, features_b)
    a, b = a.double().cpu().numpy(), b.double().cpu().numpy()
    if min(a.shape[0], b.shape[0]) < 2:
        raise ValueError("frechet_distance needs at least 2 points in each set")
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b)
    trace = np.trace(cov_a + cov_b - 2 * root.real)
    return float(((mean_a - mean_b) ** 2).sum() + trace)
