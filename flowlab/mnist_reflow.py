"""Reflow on MNIST: a few-step student distilled from the class-conditional CFG teacher.

1. Pairs: draw noise ``z`` and labels ``y``; the teacher's guided ODE carries ``z`` to a digit
   ``x1 = ODE_teacher(z; y, w)``. The pairing is the point: ``x1`` is *the* image of *this* ``z``.
2. The student (initialised with the teacher's weights) regresses the straight line between the
   pair: ``x_t = (1 - t) z + t x1``, target ``x1 - z``, with the label ``y``.
3. Its paths are nearly straight, so one Euler step ``x1 = z + v(z, 0; y)`` already gives a digit.
   The guidance is baked into the pairs: the student samples at w = 1, one network pass a step.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from flowlab import pretrained
from flowlab.mnist_eval import sample_digits
from flowlab.train import flow_matching_loss

TEACHER = {"checkpoint": "mnist_cfg", "w": 1.5, "method": "euler", "steps": 20, "pairs": 2000}


@dataclass(frozen=True)
class ReflowPairs:
    """Noise ``z``, the teacher's digits ``x1`` from it, and their labels ``y``."""
    z: torch.Tensor
    x1: torch.Tensor
    y: torch.Tensor
    source: str

    def __len__(self) -> int:
        return len(self.y)


def teacher_pairs(generator: torch.Generator, n: int = TEACHER["pairs"]) -> ReflowPairs:
    """``n`` pairs (balanced labels) from the teacher in ``TEACHER``: its guided ODE from ``z``."""
    teacher = pretrained.load(TEACHER["checkpoint"])
    y = torch.arange(10).repeat(n // 10)
    z = torch.randn(len(y), 1, 28, 28, generator=generator)
    x1 = sample_digits(teacher, y, TEACHER["w"], steps=TEACHER["steps"], method=TEACHER["method"], noise=z)
    return ReflowPairs(z, x1, y, source=f"{len(y)} pairs from {TEACHER['checkpoint']} "
                                        f"(w={TEACHER['w']:g}, {TEACHER['method']}, {TEACHER['steps']} steps)")


def reflow_objective(model, pairs: ReflowPairs, batch_size: int, generator: torch.Generator, device) -> torch.Tensor:
    """Flow matching on the straight lines between the pairs: ``|| v(x_t, t; y) - (x1 - z) ||^2``."""
    index = torch.randint(0, len(pairs), (batch_size,), generator=generator)
    return flow_matching_loss(model, pairs.x1[index].to(device), x0=pairs.z[index].to(device),
                              y=pairs.y[index].to(device), generator=generator)


def reflow_metrics(student, steps=(1, 2), per_class: int = 50) -> dict:
    """Quality of the student's few-step samples, beside the teacher's with the same steps and noise."""
    from flowlab.mnist_eval import balanced_labels, quality

    teacher = pretrained.load(TEACHER["checkpoint"])
    labels = balanced_labels(per_class)
    out = {}
    for n in steps:
        out[f"student, {n} euler step(s), w=1"] = quality(sample_digits(student, labels, 1.0, steps=n), labels)
        out[f"teacher, {n} euler step(s), w={TEACHER['w']:g}"] = quality(
            sample_digits(teacher, labels, TEACHER["w"], steps=n), labels)
    return out
