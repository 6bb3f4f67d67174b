"""A small velocity network for 2D (or any flat D-dimensional) data, and the sinusoidal time
embedding that every flowlab network uses.

The network predicts the flow-matching velocity ``v(x, t) ~ E[x1 - x0 | x_t = x]`` (t = 0 is noise,
t = 1 is data). With ``num_classes`` set it is class-conditional; the label ``num_classes`` is the
reserved *null label* ("no class"), which classifier-free guidance uses for the unconditional
velocity. ``y=None`` means the null label.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from flowlab.validate import TimeLike, require_batch, require_positive_int, time_batch


def sinusoidal_time_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0,
                              scale: float = 1_000.0) -> torch.Tensor:
    """Fixed Fourier features of the time, shape ``(B,) -> (B, dim)``.

    With ``half = dim // 2`` frequencies ``f_k = scale * max_period^(-k / half)``, k = 0..half-1
    (from ``scale`` down to ``scale / max_period`` radians per unit of t),

        embedding(t) = [cos(f_0 t), ..., cos(f_{half-1} t), sin(f_0 t), ..., sin(f_{half-1} t)],

    padded with one zero column when ``dim`` is odd. Flow time lives in [0, 1], so ``scale = 1000``
    spreads it over the range that the transformer/DDPM embedding was designed for (integer steps
    0..1000): the fast features tell nearby times apart, the slow ones vary smoothly across [0, 1].
    """
    require_positive_int("dim", dim)
    if t.dim() != 1:
        raise ValueError(f"t must have shape (B,), got {tuple(t.shape)}")
    dtype = torch.promote_types(t.dtype, torch.float32)   # at least float32: half precision aliases f_k t
    half = dim // 2
    exponents = torch.arange(half, dtype=dtype, device=t.device) / max(half, 1)
    frequencies = scale * torch.exp(-math.log(max_period) * exponents)
    angles = t.to(dtype)[:, None] * frequencies[None, :]                # (B, half)
    embedding = torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=1)
    return embedding


class SinusoidalTimeEmbedding(nn.Module):
    """``nn.Module`` wrapper of :func:`sinusoidal_time_embedding` (no parameters): ``(B,) -> (B, dim)``."""

    def __init__(self, dim: int, max_period: float = 10_000.0, scale: float = 1_000.0):
        super().__init__()
        self.dim, self.max_period, self.scale = dim, max_period, scale

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return sinusoidal_time_embedding(t, self.dim, self.max_period, self.scale)


def labels_or_null(y, batch: int, num_classes: int | None, device: torch.device) -> torch.Tensor | None:
    """Validate class labels and return a ``(B,)`` long tensor; ``None`` becomes the null label.

    Labels must lie in ``0..num_classes`` (``num_classes`` itself is the null label). An int is
    broadcast to the batch. Returns ``None`` for an unconditional model given ``y=None``.
    """
    if num_classes is None:
        if y is not None:
            raise ValueError("y was given but the model is unconditional (num_classes=None)")
        return None
    if y is None:
        return torch.full((batch,), num_classes, dtype=torch.long, device=device)
    if isinstance(y, int) and not isinstance(y, bool):
        y = torch.full((batch,), y, dtype=torch.long, device=device)
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"y must be None, an int or a (B,) tensor of labels, got {type(y).__name__}")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise TypeError(f"y must hold integer class labels, got dtype {y.dtype}")
    if y.shape != (batch,):
        raise ValueError(f"y must have shape (B,) = ({batch},), got {tuple(y.shape)}")
    # The range check reads the labels back to the host: free on the CPU, but on an accelerator
    # it would stall every network call of a sampler; there the embedding lookup rejects them.
    if y.device.type == "cpu" and y.numel() and (y.min() < 0 or y.max() > num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes} ({num_classes} is the null label), "
                         f"got {int(y.min())}..{int(y.max())}")
    return y.to(device=device, dtype=torch.long)


class MLP(nn.Module):
    """Velocity network ``v(x, t, y=None)`` for flat data ``x: (B, dim)``.

    Architecture: the condition ``c = time_embedding(t) [+ label_embedding(y)]`` (``(B, E)`` with
    ``E = time_embedding_dim``) is concatenated to ``x``, then ``depth`` hidden layers of width
    ``hidden`` with SiLU activations, then a linear map back to ``dim``.

    Args:
        dim: data dimension D.
        hidden: width of the hidden layers.
        depth: number of hidden layers (>= 1).
        time_embedding_dim: size E of the sinusoidal time features (and of the label embedding).
        num_classes: ``None`` for an unconditional model; else labels ``0..num_classes-1`` plus the
            null label ``self.null_label = num_classes``.

    The constructor arguments are kept in ``self.config`` so a checkpoint can rebuild the model.
    """

    def __init__(self, dim: int = 2, hidden: int = 128, depth: int = 3, time_embedding_dim: int = 32,
                 num_classes: int | None = None):
        super().__init__()
        for name, value in (("dim", dim), ("hidden", hidden), ("depth", depth),
                            ("time_embedding_dim", time_embedding_dim)):
            require_positive_int(name, value)
        if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
            raise ValueError(f"num_classes must be None or a positive int, got {num_classes!r}")
        self.config = {"dim": dim, "hidden": hidden, "depth": depth,
                       "time_embedding_dim": time_embedding_dim, "num_classes": num_classes}
        self.dim, self.num_classes = dim, num_classes
        self.null_label = num_classes
        self.time_embedding = SinusoidalTimeEmbedding(time_embedding_dim)
        self.label_embedding = (nn.Embedding(num_classes + 1, time_embedding_dim)
                                if num_classes is not None else None)
        layers: list[nn.Module] = []
        width = dim + time_embedding_dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        layers.append(nn.Linear(width, dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, t: TimeLike, y=None) -> torch.Tensor:
        """Velocity at ``x: (B, dim)`` and time ``t`` (float, 0-d or ``(B,)``), shape ``(B, dim)``.

        ``y``: ``None`` (the null label), an int, or a ``(B,)`` tensor of labels in ``0..num_classes``.
        """
        require_batch("x", x)
        if x.shape[1:] != (self.dim,):
            raise ValueError(f"x must have shape (B, {self.dim}), got {tuple(x.shape)}")
        condition = self.time_embedding(time_batch(t, x))
        labels = labels_or_null(y, x.shape[0], self.num_classes, x.device)
        if labels is not None:
            condition = condition + self.label_embedding(labels).to(condition.dtype)
        return self.net(torch.cat([x, condition], dim=1))
