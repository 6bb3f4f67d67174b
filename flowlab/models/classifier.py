"""Small convolutional classifiers of 28x28 digits: logits ``(B, num_classes)``.

Three roles, one trunk (stem, then a residual block at each resolution 28 -> 14 -> 7, global
average pooling; GroupNorm and SiLU, the blocks of ``flowlab.models.unet``):

* ``NoisyClassifier``: ``p(y | x_t, t)``, time-conditioned (the time enters every block by FiLM),
  trained on noisy points ``x_t = (1 - t) x0 + t x1`` of the flow path. Its input gradient
  ``grad_x log p(y | x_t, t)`` drives classifier guidance (``flowlab.guidance``).
* ``CleanClassifier``: ``p(y | x)`` trained on clean digits only. It accepts and *ignores* ``t``, so it
  plugs into the same guidance code and shows why guidance needs a noisy classifier: ``x_t`` at
  small t is far from anything it has seen.
* ``EvalClassifier``: a separately trained classifier used only by the metrics (class accuracy of
  samples, Frechet distance in its ``features``). Never guide with it, or the metric is gamed.

GroupNorm (never BatchNorm) keeps each sample's output independent of its batch, so per-sample
input gradients are exact when summed over a batch.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from flowlab.validate import TimeLike, require_positive_int, time_batch
from flowlab.models.unet import (Downsample, ResidualBlock, TimeConditioning, check_channels,
                                 check_dropout, check_image_batch, group_norm)


class ClassifierTrunk(nn.Module):
    """Image ``(B, 1, H, W)`` -> pooled features ``(B, channels[-1])``.

    ``stem conv3x3 -> [block -> downsample] * (levels - 1) -> block -> GN -> SiLU -> mean over H, W``,
    each ``block`` a ``ResidualBlock``, conditioned by FiLM when ``embedding_dim`` is set.
    """

    def __init__(self, channels: tuple[int, ...], embedding_dim: int | None = None, dropout: float = 0.0):
        super().__init__()
        self.levels = len(channels)
        self.stem = nn.Conv2d(1, channels[0], 3, padding=1)
        self.blocks = nn.ModuleList(ResidualBlock(count, count, embedding_dim, dropout) for count in channels)
        self.downsamples = nn.ModuleList(Downsample(channels[i], channels[i + 1])
                                         for i in range(len(channels) - 1))
        self.norm = group_norm(channels[-1])

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        check_image_batch(x, 1, self.levels)
        hidden = self.stem(x)
        for level, block in enumerate(self.blocks):
            hidden = block(hidden, condition)
            if level < len(self.downsamples):
                hidden = self.downsamples[level](hidden)
        return F.silu(self.norm(hidden)).mean(dim=(2, 3))


class NoisyClassifier(nn.Module):
    """Time-conditioned classifier ``logits = f(x_t, t)``, ``(B, 1, 28, 28), (B,) -> (B, num_classes)``.

    ``log_softmax(logits)`` estimates ``log p(y | x_t, t)`` on the linear path (t = 0 noise, t = 1
    data). The time enters through ``MLP(sinusoidal(t))`` and FiLM in every residual block, as in
    the UNet. About 0.14 M parameters with the defaults.
    """

    def __init__(self, num_classes: int = 10, time_embedding_dim: int = 64,
                 channels: tuple[int, ...] = (16, 32, 64), dropout: float = 0.0):
        super().__init__()
        require_positive_int("num_classes", num_classes)
        require_positive_int("time_embedding_dim", time_embedding_dim)
        channels, dropout = check_channels(channels), check_dropout(dropout)
        self.config = {"num_classes": num_classes, "time_embedding_dim": time_embedding_dim,
                       "channels": list(channels), "dropout": dropout}
        self.num_classes = num_classes
        self.conditioning = TimeConditioning(time_embedding_dim)
        self.trunk = ClassifierTrunk(channels, time_embedding_dim, dropout)
        self.logits = nn.Linear(channels[-1], num_classes)

    def forward(self, x: torch.Tensor, t: TimeLike) -> torch.Tensor:
        """Logits ``(B, num_classes)`` of ``x: (B, 1, H, W)`` at time ``t`` (float, 0-d or ``(B,)``)."""
        check_image_batch(x, 1, self.trunk.levels)
        return self.logits(self.trunk(x, self.conditioning(time_batch(t, x))))


class CleanClassifier(nn.Module):
    """Classifier of clean digits ``logits = f(x)``, ``(B, 1, 28, 28) -> (B, num_classes)``.

    ``forward(x, t=None)`` takes a time only so that it has the signature of a noisy classifier and
    can be dropped into ``flowlab.guidance.log_prob_grad_from_classifier``; ``t`` is checked (it must
    be a valid time) and then **ignored**: the classifier sees ``x_t`` as if it were a clean digit.
    About 0.12 M parameters with the defaults.
    """

    def __init__(self, num_classes: int = 10, channels: tuple[int, ...] = (16, 32, 64), dropout: float = 0.0):
        super().__init__()
        require_positive_int("num_classes", num_classes)
        channels, dropout = check_channels(channels), check_dropout(dropout)
        self.config = {"num_classes": num_classes, "channels": list(channels), "dropout": dropout}
        self.num_classes = num_classes
        self.trunk = ClassifierTrunk(channels, None, dropout)
        self.logits = nn.Linear(channels[-1], num_classes)

    def forward(self, x: torch.Tensor, t: TimeLike | None = None) -> torch.Tensor:
        """Logits ``(B, num_classes)`` of ``x: (B, 1, H, W)``; ``t`` is validated and ignored."""
        check_image_batch(x, 1, self.trunk.levels)
        if t is not None:
            time_batch(t, x)
        return self.logits(self.trunk(x))


class EvalClassifier(nn.Module):
    """The metrics' classifier: ``features(x) = SiLU(Linear(trunk(x)))``, ``forward(x) = Linear(features)``.

    ``features``: ``(B, 1, 28, 28) -> (B, feature_dim)``, the penultimate layer, for Frechet
    distances; ``forward``: logits ``(B, num_classes)``, for class accuracy of samples. Train it
    separately from (and never use it for) guidance. About 0.13 M parameters with the defaults.
    """

    def __init__(self, num_classes: int = 10, feature_dim: int = 128,
                 channels: tuple[int, ...] = (16, 32, 64), dropout: float = 0.0):
        super().__init__()
        require_positive_int("num_classes", num_classes)
        require_positive_int("feature_dim", feature_dim)
        channels, dropout = check_channels(channels), check_dropout(dropout)
        self.config = {"num_classes": num_classes, "feature_dim": feature_dim,
                       "channels": list(channels), "dropout": dropout}
        self.num_classes, self.feature_dim = num_classes, feature_dim
        self.trunk = ClassifierTrunk(channels, None, dropout)
        self.feature_layer = nn.Linear(channels[-1], feature_dim)
        self.logits = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features ``(B, feature_dim)`` of ``x: (B, 1, H, W)``."""
        return F.silu(self.feature_layer(self.trunk(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)`` of ``x: (B, 1, H, W)``."""
        return self.logits(self.features(x))
