"""Training-free inpainting: complete an image from a known region with an *unconditional* flow.

No network is trained for the task. Sampling runs the unconditional velocity from the noise
``x0`` (t = 0) to data (t = 1), and before every step the known region of the state is replaced
by where the known image stands on its own path from the same noise at that time,

    x_t <- m * ((1 - t) x0 + t x_known) + (1 - m) * x_t,

with ``m`` the mask (1 on known pixels, 0 on pixels to fill); then one Euler step moves the
whole image. At t = 1 the known region is the known image exactly. The unknown region only
*sees* the known region through the velocity at the current state: it is never told where the
known region is going, which is why the boundary between the two can be incoherent.

Notebook 08 compares this with the trained conditional model (``flowlab.models.conditioned``)
on completing digits from their top half.
"""
from __future__ import annotations

import torch

from flowlab.solvers import Velocity
from flowlab.validate import increasing_grid, require_batch, require_same_shape, require_tensor


def top_half_mask(like: torch.Tensor) -> torch.Tensor:
    """The mask of the known top half for images shaped like ``like`` ``(B, C, H, W)``: 1 on rows
    ``0 .. H/2 - 1``, 0 below; shape ``(1, 1, H, 1)``, dtype and device of ``like``, broadcasting
    over the batch, the channels and the columns."""
    require_batch("like", like, min_dim=4)
    height = like.shape[-2]
    rows = torch.arange(height, device=like.device) < height // 2
    return rows.to(like.dtype).reshape(1, 1, height, 1)


def _check_inputs(known: torch.Tensor, mask: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    require_batch("x0", x0)
    require_same_shape(known=known, x0=x0)
    require_tensor("mask", mask)
    try:
        return torch.broadcast_to(mask.to(x0.dtype), x0.shape)
    except RuntimeError as error:
        raise ValueError(f"mask must broadcast to the images' shape {tuple(x0.shape)}, "
                         f"got {tuple(mask.shape)}") from error


def inpaint(velocity: Velocity, known: torch.Tensor, mask: torch.Tensor, x0: torch.Tensor, grid) -> torch.Tensor:
    """Complete ``known`` outside ``mask`` with Euler steps of ``velocity`` on ``grid``, from ``x0``.

    velocity: ``velocity(x, t)``, the unconditional velocity (t a float).
    known: ``(B, ...)``, the images whose masked region is known (any values elsewhere).
    mask: 1 on known pixels, 0 on pixels to fill; broadcasts to ``known`` (bool or float).
    x0: ``(B, ...)``, the noise at t = 0.
    grid: increasing times from 0 to 1.
    Returns ``(B, ...)``: equal to ``known`` on the mask, the completion elsewhere.
    """
    mask = _check_inputs(known, mask, x0)
    times = increasing_grid(grid, "inpainting runs from noise (t = 0) to data (t = 1)", name="grid").tolist()
    x = x0
    for t, t_next in zip(times[:-1], times[1:]):
        on_path = (1 - t) * x0 + t * known
        x = mask * on_path + (1 - mask) * x
        x = x + (t_next - t) * velocity(x, t)
    return mask * known + (1 - mask) * x


def known_region_error(images: torch.Tensor, known: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """RMS difference between ``images`` and ``known`` over the known pixels, one value per image.

    images, known: ``(B, ...)``; mask: 1 on known pixels, broadcasts to them (each image needs at
    least one known pixel). Returns ``(B,)``, in pixel units.
    """
    mask = _check_inputs(known, mask, images)
    counts = mask.flatten(1).sum(dim=1)
    if (counts == 0).any():
        raise ValueError("mask must mark at least one known pixel in every image")
    squared = (images - known).pow(2) * mask
    return (squared.flatten(1).sum(dim=1) / counts).sqrt()
