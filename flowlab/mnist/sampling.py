"""Digits from a class-conditional velocity model, on the core samplers, a batch at a time.

``sample_by_label`` is the one batched sampler of the MNIST layer: it integrates a velocity built
for the labels of each batch (``flowlab.solvers.integrate``) from the starting noise. The two kinds
of guidance are velocities from ``flowlab.guidance``:

* ``sample_digits``: classifier-free guidance ``v_u + w (v_c - v_u)`` (``w = 1``: plain conditional);
* ``classifier_guided_digits``: classifier guidance on the unconditional velocity.

Conventions: t = 0 is noise, t = 1 is data; digits are ``(N, 1, 28, 28)`` in [-1, 1].
"""
from __future__ import annotations

from typing import Callable

import torch

from flowlab import schedules
from flowlab.guidance import classifier_free_guidance, classifier_guidance, log_prob_grad_from_classifier
from flowlab.solvers import Velocity, integrate

VelocityForLabels = Callable[[torch.Tensor], Velocity]


def balanced_labels(per_class: int, num_classes: int = 10) -> torch.Tensor:
    """``[0, 1, ..., 9, 0, 1, ...]``: ``per_class`` of each class, shape ``(per_class * num_classes,)``."""
    return torch.arange(num_classes).repeat(per_class)


def digit_noise(n: int, seed: int = 0) -> torch.Tensor:
    """Starting noise ``x0`` for ``n`` digits, ``(n, 1, 28, 28)``, drawn on the CPU from ``seed``."""
    return torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def cfg_passes_per_nfe(w: float) -> int:
    """Model passes per CFG velocity evaluation: 1 at w = 0 (unconditional) or 1 (conditional), else 2."""
    return 1 if w in (0, 1) else 2


@torch.no_grad()
def sample_by_label(model, labels: torch.Tensor, velocity_for: VelocityForLabels, ts, method: str = "euler",
                    noise: torch.Tensor | None = None, seed: int = 0, batch_size: int = 500) -> torch.Tensor:
    """Integrate ``velocity_for(y)`` (a velocity for the labels ``y`` of one batch) over the grid
    ``ts`` with ``method``, from ``noise`` (default ``digit_noise(len(labels), seed)``), ``batch_size``
    digits at a time on ``model``'s device. Returns ``(N, 1, 28, 28)`` on the CPU, clamped to [-1, 1]."""
    noise = digit_noise(len(labels), seed) if noise is None else noise
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(labels), batch_size):
        y = labels[start:start + batch_size].to(device)
        out.append(integrate(velocity_for(y), noise[start:start + batch_size].to(device), ts, method).cpu())
    return torch.cat(out).clamp(-1, 1)


def sample_digits(model, labels: torch.Tensor, w: float, steps: int = 20, method: str = "euler",
                  schedule: str = "uniform", noise: torch.Tensor | None = None, seed: int = 0,
                  batch_size: int = 500) -> torch.Tensor:
    """Digits of class ``labels`` from the CFG velocity ``v_u + w (v_c - v_u)`` (``w = 1``: plain
    conditional), integrated from ``noise`` (or ``digit_noise(len(labels), seed)``) on
    ``schedules.get(schedule, steps)``. Returns ``(N, 1, 28, 28)`` on the CPU, clamped to [-1, 1]."""
    return sample_by_label(model, labels, lambda y: classifier_free_guidance(model, y, w),
                           schedules.get(schedule, steps), method, noise, seed, batch_size)


def classifier_guided_digits(model, classifier, labels: torch.Tensor, w: float, t_min: float = 0.2,
                             steps: int = 20, method: str = "euler", schedule: str = "uniform",
                             noise: torch.Tensor | None = None, seed: int = 0, batch_size: int = 500) -> torch.Tensor:
    """Digits of class ``labels`` by classifier guidance on the model's UNCONDITIONAL velocity:

        v(x, t) = v(x, t, null) + w (1 - t)/t grad_x log p(y | x_t = x, t)    for t >= t_min,

    and the plain ``v(x, t, null)`` below ``t_min`` (``flowlab.guidance.classifier_guidance``), with
    ``p(y | x_t, t) = softmax(classifier(x, t))`` (a ``NoisyClassifier``, or a ``CleanClassifier``,
    which ignores t, to show why guidance needs a classifier trained on ``x_t``). Integrated from
    ``noise`` (default ``digit_noise(len(labels), seed)``) on ``schedules.get(schedule, steps)``.

    NFE counts velocity evaluations, ``flowlab.solvers.nfe(method, steps)``; each costs one UNet
    pass plus, where ``t >= t_min``, one classifier forward and backward pass (for the gradient).
    Returns ``(N, 1, 28, 28)`` on the CPU, clamped to [-1, 1].
    """
    def velocity_for(y: torch.Tensor) -> Velocity:
        unconditional = classifier_free_guidance(model, y, 0.0)        # w = 0: the null label only
        return classifier_guidance(unconditional, log_prob_grad_from_classifier(classifier, y), w, t_min)

    return sample_by_label(model, labels, velocity_for, schedules.get(schedule, steps), method, noise, seed,
                           batch_size)
