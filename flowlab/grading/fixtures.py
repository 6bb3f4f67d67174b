"""Small, fully specified objects that tests pass to a student's function instead of a trained net.

A test of ``flow_matching_loss(model, x1, ...)`` needs a ``model``. A trained MLP would make the
expected loss depend on its weights and on matrix-multiply rounding (TF32 on GPUs); these fixtures
are elementwise, so their output is exact up to one rounding, and they are rebuilt from a few
plain arrays (no pickle) in the student's kernel.

Each fixture has ``arrays() -> {name: numpy array}`` and ``from_arrays(arrays)``; ``FIXTURES``
maps class names to classes for ``flowlab.grading.codec``.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from flowlab.checks import TimeLike, expand_time, require_batch, time_batch


class AffineVelocity(nn.Module):
    """A velocity model that is affine in ``x`` and in ``t``, with an optional label term:

        v(x, t, y) = scale * x + t * shift + label_shift[y]      (elementwise; shapes (B, ...))

    ``scale`` and ``shift`` have the shape of one sample (``x.shape[1:]``); ``label_shift`` is
    ``(num_labels, *sample_shape)`` or None. All three are ``nn.Parameter``s, so a loss built on
    the model can be differentiated with respect to them. ``t`` is a float, a 0-d or a ``(B,)``
    tensor, as for ``flowlab.models.MLP``.
    """

    def __init__(self, scale: torch.Tensor, shift: torch.Tensor, label_shift: torch.Tensor | None = None):
        super().__init__()
        if scale.shape != shift.shape:
            raise ValueError(f"scale and shift must have the same shape, got {tuple(scale.shape)} and {tuple(shift.shape)}")
        self.scale = nn.Parameter(scale.clone())
        self.shift = nn.Parameter(shift.clone())
        self.label_shift = None if label_shift is None else nn.Parameter(label_shift.clone())

    def forward(self, x: torch.Tensor, t: TimeLike, y: torch.Tensor | None = None) -> torch.Tensor:
        require_batch("x", x)
        if x.shape[1:] != self.scale.shape:
            raise ValueError(f"the model takes x of shape (B, {', '.join(map(str, self.scale.shape))}), "
                             f"got {tuple(x.shape)}")
        times = expand_time(time_batch(t, x), x)
        velocity = self.scale * x + times * self.shift
        if y is not None:
            if self.label_shift is None:
                raise ValueError("this model is unconditional: call it without y")
            if not isinstance(y, torch.Tensor) or y.shape != (x.shape[0],) or y.is_floating_point():
                raise ValueError(f"y must be a (B,) tensor of integer labels, got {y!r:.80}")
            velocity = velocity + self.label_shift[y]
        return velocity

    def arrays(self) -> dict[str, np.ndarray]:
        """The parameters as numpy arrays (``label_shift`` only when present)."""
        found = {"scale": self.scale, "shift": self.shift, "label_shift": self.label_shift}
        return {name: value.detach().cpu().numpy() for name, value in found.items() if value is not None}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "AffineVelocity":
        tensor = (lambda name: torch.from_numpy(np.array(arrays[name])))
        return cls(tensor("scale"), tensor("shift"), tensor("label_shift") if "label_shift" in arrays else None)


FIXTURES: dict[str, type] = {"AffineVelocity": AffineVelocity}
