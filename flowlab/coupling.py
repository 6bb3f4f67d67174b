"""Minibatch optimal-transport coupling (Tong et al. 2023; Pooladian et al. 2023).

Ordinary flow matching pairs each data point ``x1`` with an *independent* noise draw ``x0``: the
straight training lines cross, the learned velocity averages over them and the sampling paths bend.
Within each training batch of ``B`` noise points and ``B`` data points, OT coupling re-pairs them by
the permutation ``sigma`` that minimises the total squared distance,

    sigma = argmin over permutations of  sum_i || x0[i] - x1[sigma(i)] ||^2,

an assignment problem on the ``(B, B)`` cost matrix ``C[i, j] = ||x0[i] - x1[j]||^2``, solved exactly
by ``scipy.optimize.linear_sum_assignment`` (Hungarian-type algorithm, about ``B^3``). The lines of
an optimal assignment never cross (crossing lines could be swapped for a cheaper pairing), so the
velocity field has less to average and its paths come out straighter. Every point is still used
exactly once, so the marginals (noise and data) are unchanged.
"""
from __future__ import annotations

from typing import Callable

import torch
from scipy.optimize import linear_sum_assignment

from flowlab.train import Batch
from flowlab.validate import require_batch, require_positive_int, require_same_shape

DataSampler = Callable[[int, torch.Generator], torch.Tensor]
Pairing = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def ot_pairs(x0: torch.Tensor, x1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x0, x1[sigma])``: the same noise, and the data reordered by the permutation ``sigma`` that
    pairs ``x0[i]`` with ``x1[sigma[i]]`` at the least total squared distance (an exact assignment on
    the ``(B, B)`` matrix of squared distances, summed over all non-batch dimensions). Shapes
    ``(B, ...)`` in and out; ``x1``'s rows are only reordered, never changed.
    """
    require_batch("x0", x0)
    require_same_shape(x0=x0, x1=x1)
    a, b = x0.detach().flatten(1).double().cpu(), x1.detach().flatten(1).double().cpu()
    # the difference, not the expanded a^2 - 2ab + b^2, which loses digits for close points
    cost = (a[:, None, :] - b[None, :, :]).pow(2).sum(-1)
    rows, columns = linear_sum_assignment(cost.numpy())
    sigma = torch.empty(len(rows), dtype=torch.long)
    sigma[torch.from_numpy(rows)] = torch.from_numpy(columns)
    return x0, x1[sigma.to(x1.device)]


def total_squared_distance(x0: torch.Tensor, x1: torch.Tensor) -> float:
    """``sum_i ||x0[i] - x1[i]||^2`` of the pairing row by row (what OT coupling minimises)."""
    require_same_shape(x0=x0, x1=x1)
    return float((x0 - x1).double().pow(2).flatten(1).sum())


def ot_sample_batch(sample_data: DataSampler, block_size: int | None = None,
                    pairing: Pairing = ot_pairs) -> Callable[[int, torch.Generator], Batch]:
    """A ``sample_batch(n, generator)`` for ``flowlab.train.train`` with OT-coupled noise.

    Draws ``n`` data points ``x1 = sample_data(n, generator)`` and noise ``x0 ~ N(0, I)`` of the same
    shape from ``generator``, then pairs them by ``pairing`` (``ot_pairs``, or a notebook's own version of it); with ``block_size`` the batch is cut into
    blocks of that many points, each coupled on its own (the assignment costs ``~block_size^3``, so
    blocks keep big batches affordable). Returns ``Batch(x1=paired data, x0=noise)``.
    """
    if block_size is not None:
        require_positive_int("block_size", block_size)

    def draw(n: int, generator: torch.Generator) -> Batch:
        x1 = sample_data(n, generator)
        require_batch("sample_data(n, generator)", x1)
        x0 = torch.randn(x1.shape, generator=generator, dtype=x1.dtype).to(x1.device)
        size = block_size or n
        paired = [pairing(a, b)[1] for a, b in zip(torch.split(x0, size), torch.split(x1, size))]
        return Batch(x1=torch.cat(paired), x0=x0)

    return draw
