"""A small class-conditional UNet velocity network for 28x28 MNIST digits, and its building blocks.

The network predicts the flow-matching velocity ``v(x, t, y) ~ E[x1 - x0 | x_t = x, y]`` (t = 0 is
noise, t = 1 is data) for images ``x: (B, C, H, W)``. Labels ``0..num_classes-1`` are classes;
the label ``num_classes`` is the reserved *null label* ("no class") that classifier-free guidance
uses for the unconditional velocity, and ``y=None`` means the null label for the whole batch.

Layout with the default ``channels=(16, 32, 64)`` on a 28x28 input (one residual block a level)::

    stem 3x3 conv -> [28x28, 16] -> down -> [14x14, 32] -> down -> [7x7, 64]
                                                                      |  middle: block, attention, block
    head <- [28x28, 16] <- up <- [14x14, 32] <- up <- [7x7, 64] <----'
            each up level concatenates the skip from the same level of the down path

It has 0.49 M parameters (2 MB in float32). The width is set by the CPU: the 28x28 level costs most,
and 16 channels there keep one pass over 100 digits at 0.07-0.13 s on a 2-core laptop-class CPU,
so 100 CFG samples with 20 Euler steps (40 passes) take 3-5 s; ``channels=(32, 64, 64)`` (0.75 M)
is about 2.5x slower. One training step on a batch of 128 (forward + backward) takes about 0.3 s.

Time and label enter every residual block: the condition vector
``c = MLP(sinusoidal(t)) + label_embedding(y)`` sets a per-channel scale and shift (FiLM) of the
normalised activations between the block's two convolutions. Normalisation is GroupNorm (never BatchNorm), so a sample's
output does not depend on the rest of its batch, nor on train/eval mode except for dropout.

The blocks (``group_norm``, ``ResidualBlock``, ``Downsample``, ``TimeConditioning``) are shared with
the classifiers in ``flowlab.models.classifier``.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from flowlab.validate import TimeLike, require_batch, require_positive_int, time_batch
from flowlab.models.mlp import SinusoidalTimeEmbedding, labels_or_null

MAX_GROUPS = 8


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm over ``gcd(8, channels)`` groups: per-sample statistics, independent of the batch."""
    return nn.GroupNorm(math.gcd(MAX_GROUPS, channels), channels)


class ResidualBlock(nn.Module):
    """``x + F(x)`` with ``F = conv3x3(SiLU(GN(conv3x3(SiLU(GN(x))))))``, optionally conditioned.

    Shapes: ``(B, in_channels, H, W) -> (B, out_channels, H, W)``; a 1x1 convolution maps the
    skip path when the channel counts differ. With ``embedding_dim`` set, the condition
    ``c: (B, embedding_dim)`` is mapped linearly to a scale ``s`` and shift ``b`` per channel and the
    hidden activation becomes ``GN(h) * (1 + s) + b`` (FiLM); ``embedding_dim=None`` gives a
    plain block whose ``forward`` takes no condition.
    """

    def __init__(self, in_channels: int, out_channels: int, embedding_dim: int | None = None,
                 dropout: float = 0.0):
        super().__init__()
        self.norm_in = group_norm(in_channels)
        self.conv_in = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm_hidden = group_norm(out_channels)
        self.film = nn.Linear(embedding_dim, 2 * out_channels) if embedding_dim is not None else None
        self.dropout = nn.Dropout(dropout)
        self.conv_out = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = (nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels
                     else nn.Identity())

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        hidden = self.conv_in(F.silu(self.norm_in(x)))
        hidden = self.norm_hidden(hidden)
        if self.film is not None:
            if condition is None:
                raise ValueError("this block is conditioned: pass condition of shape (B, embedding_dim)")
            scale, shift = self.film(condition)[:, :, None, None].chunk(2, dim=1)
            hidden = hidden * (1 + scale) + shift
        hidden = self.conv_out(self.dropout(F.silu(hidden)))
        return self.skip(x) + hidden


class Downsample(nn.Module):
    """Stride-2 3x3 convolution: ``(B, C_in, H, W) -> (B, C_out, ceil(H/2), ceil(W/2))`` (28 -> 14 -> 7)."""

    def __init__(self, in_channels: int, out_channels: int | None = None):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels or in_channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """A 3x3 convolution then nearest-neighbour 2x upsampling: ``(B, C_in, H, W) -> (B, C_out, 2H, 2W)``.

    Convolving before upsampling costs a quarter of the usual upsample-then-convolve.
    """

    def __init__(self, in_channels: int, out_channels: int | None = None):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels or in_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.conv(x), scale_factor=2.0, mode="nearest")


class SelfAttention(nn.Module):
    """Multi-head self-attention over the ``H*W`` positions, with a residual connection.

    ``x + proj(softmax(q k^T / sqrt(d)) v)`` with ``q, k, v`` from a 1x1 convolution of ``GN(x)``;
    shape ``(B, C, H, W) -> (B, C, H, W)``. At 7x7 (49 positions) it is cheap.
    """

    def __init__(self, channels: int, heads: int = 4):
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be divisible by heads ({heads})")
        self.heads = heads
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        qkv = self.qkv(self.norm(x)).reshape(batch, 3, self.heads, channels // self.heads, height * width)
        query, key, value = qkv.transpose(-1, -2).unbind(dim=1)        # each (B, heads, HW, d)
        attended = F.scaled_dot_product_attention(query, key, value)
        attended = attended.transpose(-1, -2).reshape(batch, channels, height, width)
        return x + self.proj(attended)


class TimeConditioning(nn.Module):
    """The condition vector of a network: ``MLP(sinusoidal(t)) [+ label_embedding(y)]``, ``(B, E)``.

    ``MLP`` is ``Linear(E, E) -> SiLU -> Linear(E, E)`` on the sinusoidal features of
    ``flowlab.models.mlp``. With ``num_classes`` set, an ``nn.Embedding`` of ``num_classes + 1`` rows
    (the last row is the null label) is added. The result goes through SiLU, ready for the FiLM
    layers of the residual blocks.
    """

    def __init__(self, embedding_dim: int, num_classes: int | None = None):
        super().__init__()
        self.num_classes = num_classes
        self.time_features = SinusoidalTimeEmbedding(embedding_dim)
        self.time_mlp = nn.Sequential(nn.Linear(embedding_dim, embedding_dim), nn.SiLU(),
                                      nn.Linear(embedding_dim, embedding_dim))
        self.label_embedding = (nn.Embedding(num_classes + 1, embedding_dim)
                                if num_classes is not None else None)

    def forward(self, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """``t: (B,)`` times in [0, 1] (dtype of the network input); ``labels: (B,)`` int64 or None."""
        condition = self.time_mlp(self.time_features(t).to(t.dtype))
        if self.label_embedding is not None and labels is not None:
            condition = condition + self.label_embedding(labels).to(condition.dtype)
        return F.silu(condition)


def check_channels(channels) -> tuple[int, ...]:
    """``channels`` as a non-empty tuple of positive ints (a list, e.g. from JSON, is accepted)."""
    if not isinstance(channels, (tuple, list)) or not channels:
        raise ValueError(f"channels must be a non-empty tuple of positive ints, got {channels!r}")
    for index, count in enumerate(channels):
        require_positive_int(f"channels[{index}]", count)
    return tuple(channels)


def check_dropout(dropout) -> float:
    """``dropout`` as a float in [0, 1), else a ``ValueError``."""
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be a probability in [0, 1), got {dropout!r}")
    return float(dropout)


def check_image_batch(x: torch.Tensor, channels: int, levels: int) -> torch.Tensor:
    """Check ``x: (B, channels, H, W)`` with ``H`` and ``W`` divisible by ``2**(levels-1)``."""
    require_batch("x", x, min_dim=4)
    factor = 2 ** (levels - 1)
    if x.dim() != 4 or x.shape[1] != channels or x.shape[2] % factor or x.shape[3] % factor:
        raise ValueError(f"x must have shape (B, {channels}, H, W) with H and W divisible by {factor} "
                         f"(e.g. (B, {channels}, 28, 28)), got {tuple(x.shape)}")
    return x


class UNet(nn.Module):
    """Class-conditional velocity network ``v(x, t, y=None)`` for images ``x: (B, in_channels, H, W)``.

    Args:
        channels: channel count of each resolution level, from the input resolution down; each
            level after the first halves the resolution (``(16, 32, 64)``: 28 -> 14 -> 7).
        num_classes: ``None`` for an unconditional model; else labels ``0..num_classes-1`` plus the
            null label ``self.null_label = num_classes``.
        time_embedding_dim: size E of the condition vector (time features and label embedding).
        dropout: dropout probability inside the residual blocks (active in training mode only).
        in_channels, out_channels: channels of the input image and of the predicted velocity
            (``ImageConditionedUNet`` feeds extra condition channels in).
        attention: one self-attention layer at the lowest resolution (cheap at 7x7).

    Returns a velocity shaped ``(B, out_channels, H, W)`` in ``x``'s dtype. The constructor arguments
    are kept in ``self.config`` so a checkpoint can rebuild the model.
    """

    def __init__(self, channels: tuple[int, ...] = (16, 32, 64), num_classes: int | None = 10,
                 time_embedding_dim: int = 64, dropout: float = 0.0, in_channels: int = 1,
                 out_channels: int = 1, attention: bool = True):
        super().__init__()
        channels, dropout = check_channels(channels), check_dropout(dropout)
        for name, value in (("time_embedding_dim", time_embedding_dim), ("in_channels", in_channels),
                            ("out_channels", out_channels)):
            require_positive_int(name, value)
        if num_classes is not None:
            require_positive_int("num_classes", num_classes)
        self.config = {"channels": list(channels), "num_classes": num_classes,
                       "time_embedding_dim": time_embedding_dim, "dropout": dropout,
                       "in_channels": in_channels, "out_channels": out_channels,
                       "attention": bool(attention)}
        self.channels, self.in_channels, self.num_classes = channels, in_channels, num_classes
        self.null_label = num_classes
        self.conditioning = TimeConditioning(time_embedding_dim, num_classes)
        self.stem = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        self._build_down_path(channels, time_embedding_dim, dropout)
        self._build_middle(channels[-1], time_embedding_dim, dropout, attention)
        self._build_up_path(channels, time_embedding_dim, dropout)
        self.head = nn.Sequential(group_norm(channels[0]), nn.SiLU(),
                                  nn.Conv2d(channels[0], out_channels, 3, padding=1))

    def _build_down_path(self, channels, embedding_dim, dropout) -> None:
        self.down_blocks = nn.ModuleList()
        self.downsamples = nn.ModuleList()
        previous = channels[0]
        for level, count in enumerate(channels):
            self.down_blocks.append(ResidualBlock(previous, count, embedding_dim, dropout))
            if level < len(channels) - 1:
                self.downsamples.append(Downsample(count))
            previous = count

    def _build_middle(self, count, embedding_dim, dropout, attention) -> None:
        self.middle_in = ResidualBlock(count, count, embedding_dim, dropout)
        self.middle_attention = SelfAttention(count) if attention else nn.Identity()
        self.middle_out = ResidualBlock(count, count, embedding_dim, dropout)

    def _build_up_path(self, channels, embedding_dim, dropout) -> None:
        self.up_blocks = nn.ModuleList()
        self.upsamples = nn.ModuleList()
        previous = channels[-1]
        for level in reversed(range(len(channels))):
            count = channels[level]
            self.up_blocks.append(ResidualBlock(previous + count, count, embedding_dim, dropout))
            if level > 0:
                self.upsamples.append(Upsample(count, channels[level - 1]))
                previous = channels[level - 1]

    def forward(self, x: torch.Tensor, t: TimeLike, y=None) -> torch.Tensor:
        """Velocity at ``x: (B, in_channels, H, W)``, time ``t`` (float, 0-d or ``(B,)``), labels ``y``.

        ``y``: ``None`` (the null label for every sample), an int, or a ``(B,)`` int64 tensor of
        labels in ``0..num_classes`` (``num_classes`` is the null label). Shape ``(B, out_channels, H, W)``.
        """
        check_image_batch(x, self.in_channels, len(self.channels))
        labels = labels_or_null(y, x.shape[0], self.num_classes, x.device)
        condition = self.conditioning(time_batch(t, x), labels)
        hidden = self.stem(x)
        skips = []
        for level, block in enumerate(self.down_blocks):
            hidden = block(hidden, condition)
            skips.append(hidden)
            if level < len(self.downsamples):
                hidden = self.downsamples[level](hidden)
        hidden = self.middle_out(self.middle_attention(self.middle_in(hidden, condition)), condition)
        for index, block in enumerate(self.up_blocks):
            hidden = block(torch.cat([hidden, skips.pop()], dim=1), condition)
            if index < len(self.upsamples):
                hidden = self.upsamples[index](hidden)
        return self.head(hidden)
