"""Reflow on MNIST: a few-step student distilled from the class-conditional CFG teacher.

The method is ``flowlab.distill``'s; this module adds only what MNIST needs on top of it, the
teacher (``TEACHER``: the ``mnist_cfg`` checkpoint with guidance weight ``w``) and the labels:

1. Pairs (``teacher_pairs``): draw noise ``z`` and balanced labels ``y``; the teacher's guided ODE
   carries ``z`` to a digit ``x1 = ODE_teacher(z; y, w)`` (``distill.reflow_pairs``). The pairing
   is the point: ``x1`` is *the* image of *this* ``z``.
2. The student (initialised with the teacher's weights) regresses the straight line between the
   pair with the label ``y`` (``reflow_objective``: ``distill.sample_pairs`` and flow matching):
   ``x_t = (1 - t) z + t x1``, target ``x1 - z``.
3. Its paths are nearly straight, so one Euler step ``x1 = z + v(z, 0; y)`` already gives a digit.
   The guidance is baked into the pairs: the student samples at w = 1, one network pass a step.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from flowlab import pretrained, schedules
from flowlab.distill import reflow_pairs, sample_pairs
from flowlab.guidance import classifier_free_guidance
from flowlab.mnist.sampling import balanced_labels
from flowlab.train import as_batch, flow_matching_loss

TEACHER = {"checkpoint": "mnist_cfg", "w": 1.5, "method": "euler", "steps": 20, "pairs": 2000}


@dataclass(frozen=True)
class ReflowPairs:
    """Noise ``z`` ``(N, 1, 28, 28)``, the teacher's digits ``x1`` from it (same shape, in [-1, 1]),
    their labels ``y`` ``(N,)`` and a line that says where they came from."""
    z: torch.Tensor
    x1: torch.Tensor
    y: torch.Tensor
    source: str

    def __len__(self) -> int:
        return len(self.y)


def teacher_pairs(generator: torch.Generator, n: int = TEACHER["pairs"]) -> ReflowPairs:
    """``n`` pairs (balanced labels, ``n // 10`` a class) from the teacher in ``TEACHER``: its guided
    ODE on a uniform grid from noise ``z ~ N(0, I)`` drawn from ``generator``, clamped to [-1, 1]."""
    teacher = pretrained.load(TEACHER["checkpoint"])
    y = balanced_labels(n // 10)
    z = torch.randn(len(y), 1, 28, 28, generator=generator)
    guided = classifier_free_guidance(teacher, y, TEACHER["w"])
    z, x1 = reflow_pairs(guided, len(y), schedules.uniform(TEACHER["steps"]), TEACHER["method"], noise=z)
    return ReflowPairs(z, x1.clamp(-1, 1), y, source=f"{len(y)} pairs from {TEACHER['checkpoint']} "
                       f"(w={TEACHER['w']:g}, {TEACHER['method']}, {TEACHER['steps']} steps)")


def reflow_objective(model, pairs: ReflowPairs, batch_size: int, generator: torch.Generator, device) -> torch.Tensor:
    """Flow matching on the straight lines between ``batch_size`` random pairs, with their labels:
    ``|| v(x_t, t; y) - (x1 - z) ||^2``, ``x_t = (1 - t) z + t x1``."""
    batch = as_batch(sample_pairs((pairs.z, pairs.x1), labels=pairs.y)(batch_size, generator), device)
    return flow_matching_loss(model, batch.x1, x0=batch.x0, y=batch.y, generator=generator)
