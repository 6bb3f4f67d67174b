"""Image-conditioned flow: "condition on X, generate Y" (notebook 08), e.g. digit completion.

``ImageConditionedUNet`` predicts the velocity ``v(x, t, cond) ~ E[x1 - x0 | x_t = x, c]`` of the
flow from noise (t = 0) to digits (t = 1), given a condition image ``c`` shaped like ``x``: the top
half of the digit (``top_half_condition``) or a blurry low-resolution copy
(``low_resolution_condition``). It is the ``UNet`` of ``flowlab.models.unet`` with three input
channels instead of one::

    input = [x,  m * c,  m * ones]        (B, 3, H, W)

where ``m`` is 1 for a sample that has a condition and 0 for one that has not. The third channel is
a *flag*: with ``m = 0`` the condition channel is zeros and so is the flag, which tells the
"null condition" apart from a condition image that happens to be all zeros (a blank top half).
The network learns what to do without a condition (the flag's weights in the first convolution
play the role of a learned null embedding), so training with some conditions dropped
(``condition_mask``) gives one model for both the conditional and the unconditional velocity,
which classifier-free guidance combines (``guided_velocity``).
"""
from __future__ import annotations

from functools import partial

import torch
from torch import nn
from torch.nn import functional as F

from flowlab.validate import TimeLike, require_batch, require_positive_int, require_tensor
from flowlab.guidance import cfg
from flowlab.models.unet import UNet, check_image_batch
from flowlab.solvers import Velocity


def top_half_condition(x: torch.Tensor) -> torch.Tensor:
    """Keep the top half of each image and zero the rest: rows ``0..H/2-1`` (0..13 of 28) kept.

    ``x: (B, C, H, W) -> (B, C, H, W)``, a new tensor.
    """
    require_batch("x", x, min_dim=4)
    condition = x.clone()
    condition[..., x.shape[-2] // 2:, :] = 0
    return condition


def low_resolution_condition(x: torch.Tensor, factor: int = 4) -> torch.Tensor:
    """A blurred copy of ``x``: each ``factor x factor`` block of pixels becomes one constant value,
    the block's mean.

    ``x: (B, C, H, W)`` with ``H`` and ``W`` divisible by ``factor`` (28 with factor 4: a 7x7 image);
    returns a tensor of ``x``'s shape and dtype, every channel on its own.
    """
    require_batch("x", x, min_dim=4)
    require_positive_int("factor", factor)
    if x.dim() != 4 or x.shape[-2] % factor or x.shape[-1] % factor:
        raise ValueError(f"x must have shape (B, C, H, W) with H and W divisible by factor={factor}, "
                         f"got {tuple(x.shape)}")
    return F.interpolate(F.avg_pool2d(x, factor), scale_factor=factor, mode="nearest")


def condition_mask(batch_size: int, p_drop: float, generator: torch.Generator | None = None,
                   device: torch.device | str | None = None) -> torch.Tensor:
    """A ``(B,)`` bool mask for condition dropout: each entry False (no condition) with probability ``p_drop``.

    Drawn on the generator's device (the CPU by default) and moved to ``device``. Pass it as
    ``model(x, t, cond, cond_mask=mask)`` while training so the model also learns the null condition.
    """
    require_positive_int("batch_size", batch_size)
    if isinstance(p_drop, bool) or not isinstance(p_drop, (int, float)) or not 0.0 <= p_drop <= 1.0:
        raise ValueError(f"p_drop must be a probability in [0, 1], got {p_drop!r}")
    draw_device = generator.device if generator is not None else device
    drop = torch.rand(batch_size, generator=generator, device=draw_device) < p_drop
    return (~drop).to(device) if device is not None else ~drop


class ImageConditionedUNet(nn.Module):
    """Velocity ``v(x, t, cond=None, cond_mask=None)`` for ``x: (B, 1, H, W)`` given an image ``cond``.

    Args (passed to the inner ``UNet(in_channels=3, out_channels=1, num_classes=None)``):
        channels, time_embedding_dim, dropout, attention: as for ``UNet``.

    ``cond=None`` is the null condition for the whole batch; ``cond_mask: (B,)`` bool makes it
    per sample (False = null). The constructor arguments are kept in ``self.config``.
    """

    def __init__(self, channels: tuple[int, ...] = (16, 32, 64), time_embedding_dim: int = 64,
                 dropout: float = 0.0, attention: bool = True):
        super().__init__()
        self.unet = UNet(channels=channels, num_classes=None, time_embedding_dim=time_embedding_dim,
                         dropout=dropout, in_channels=3, out_channels=1, attention=attention)
        self.config = {key: self.unet.config[key]
                       for key in ("channels", "time_embedding_dim", "dropout", "attention")}

    def network_input(self, x: torch.Tensor, cond: torch.Tensor | None,
                      cond_mask: torch.Tensor | None) -> torch.Tensor:
        """The UNet's input ``[x, m * cond, m]``, shape ``(B, 3, H, W)`` (see the module docstring)."""
        check_image_batch(x, 1, len(self.unet.channels))
        present = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        if cond is None:
            present, cond = torch.zeros_like(present), torch.zeros_like(x)
        require_tensor("cond", cond)
        if cond.shape != x.shape:
            raise ValueError(f"cond must be an image shaped like x {tuple(x.shape)}, got {tuple(cond.shape)}")
        if cond_mask is not None:
            require_tensor("cond_mask", cond_mask)
            if cond_mask.dtype != torch.bool or cond_mask.shape != (x.shape[0],):
                raise ValueError(f"cond_mask must be a bool tensor of shape (B,) = ({x.shape[0]},), "
                                 f"got dtype {cond_mask.dtype}, shape {tuple(cond_mask.shape)}")
            present = present & cond_mask.to(x.device)
        flag = present.to(x.dtype)[:, None, None, None].expand_as(x)
        return torch.cat([x, cond.to(device=x.device, dtype=x.dtype) * flag, flag], dim=1)

    def forward(self, x: torch.Tensor, t: TimeLike, cond: torch.Tensor | None = None,
                cond_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Velocity ``(B, 1, H, W)`` at ``x``, time ``t`` (float, 0-d or ``(B,)``), condition ``cond``."""
        return self.unet(self.network_input(x, cond, cond_mask), t)


def guided_velocity(model: ImageConditionedUNet, cond: torch.Tensor, w: float) -> Velocity:
    """Classifier-free guidance on the image condition ``cond`` (shaped like the samples) with weight
    ``w``: returns a ``velocity(x, t)`` for the samplers (``flowlab.guidance.cfg`` of ``model`` given
    ``cond`` and given the null condition ``None``). ``w = 1``: plain conditional (1 model call);
    ``w = 0``: unconditional (1 call); else 2 calls.
    """
    require_tensor("cond", cond)
    return cfg(partial(model, cond=cond), partial(model, cond=None), w)
