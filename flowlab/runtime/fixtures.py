"""Small, fully specified objects that tests pass to a student's function instead of a trained net.

A test of ``flow_matching_loss(model, x1, ...)`` needs a ``model``. A trained MLP would make the
expected loss depend on its weights and on matrix-multiply rounding (TF32 on GPUs); these fixtures
are elementwise (sums at most), so their output is exact up to one rounding, and they are rebuilt from a few
plain arrays (no pickle) in the student's kernel.

Each fixture has ``arrays() -> {name: numpy array}`` and ``from_arrays(arrays)``; ``FIXTURES``
maps class names to classes for ``flowlab.runtime.codec``.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from flowlab.validate import TimeLike, expand_time, require_batch, time_batch


def _tensor(arrays: dict[str, np.ndarray], name: str) -> torch.Tensor:
    return torch.from_numpy(np.array(arrays[name]))


def _numpy(module: nn.Module) -> dict[str, np.ndarray]:
    return {name: value.detach().cpu().numpy() for name, value in module.named_parameters()}


def _require_samples(x: torch.Tensor, sample_shape: torch.Size) -> None:
    require_batch("x", x)
    if x.shape[1:] != sample_shape:
        raise ValueError(f"the model takes x of shape (B, {', '.join(map(str, sample_shape))}), got {tuple(x.shape)}")


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
        _require_samples(x, self.scale.shape)
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
        return _numpy(self)

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "AffineVelocity":
        label_shift = _tensor(arrays, "label_shift") if "label_shift" in arrays else None
        return cls(_tensor(arrays, "scale"), _tensor(arrays, "shift"), label_shift)


class ElementwiseClassifier(nn.Module):
    """A time-conditioned classifier with logits linear in ``x`` and ``t``, computed without a
    matrix multiply (so TF32 on a GPU does not round it):

        logits[b, c] = sum_i weight[c, i] * x[b, i] + t[b] * time_weight[c] + bias[c],

    ``x: (B, ...)`` flattened to ``(B, D)``; ``weight: (C, D)``; ``time_weight``, ``bias``: ``(C,)``.
    Its ``grad_x log softmax(logits)[y]`` is ``weight[y] - sum_c softmax_c weight[c]``, in closed form.
    """

    def __init__(self, weight: torch.Tensor, time_weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        if weight.dim() != 2 or time_weight.shape != (weight.shape[0],) or bias.shape != (weight.shape[0],):
            raise ValueError(f"need weight (C, D), time_weight (C,), bias (C,); got {tuple(weight.shape)}, "
                             f"{tuple(time_weight.shape)}, {tuple(bias.shape)}")
        self.weight = nn.Parameter(weight.clone())
        self.time_weight = nn.Parameter(time_weight.clone())
        self.bias = nn.Parameter(bias.clone())

    def forward(self, x: torch.Tensor, t: TimeLike) -> torch.Tensor:
        require_batch("x", x)
        flat = x.flatten(1)
        if flat.shape[1] != self.weight.shape[1]:
            raise ValueError(f"the classifier takes x with {self.weight.shape[1]} entries per sample, got {tuple(x.shape)}")
        times = time_batch(t, x)
        return (flat[:, None, :] * self.weight).sum(-1) + times[:, None] * self.time_weight + self.bias

    def arrays(self) -> dict[str, np.ndarray]:
        return _numpy(self)

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "ElementwiseClassifier":
        return cls(*(_tensor(arrays, name) for name in ("weight", "time_weight", "bias")))


class ConditionedAffineVelocity(nn.Module):
    """An image-conditioned velocity model, affine in ``x``, ``t`` and the condition:

        v(x, t, cond, cond_mask) = scale * x + t * shift + m * cond_scale * cond + (1 - m) * null_shift,

    with ``m = 1`` where a sample has a condition (``cond`` given and ``cond_mask`` True or None) and
    0 otherwise; ``cond=None`` is the null condition for the whole batch. Every parameter has the
    shape of one sample. The call signature is that of ``flowlab.models.ImageConditionedUNet``.
    """

    def __init__(self, scale: torch.Tensor, shift: torch.Tensor, cond_scale: torch.Tensor, null_shift: torch.Tensor):
        super().__init__()
        if not scale.shape == shift.shape == cond_scale.shape == null_shift.shape:
            raise ValueError("scale, shift, cond_scale and null_shift must have the same shape")
        self.scale, self.shift = nn.Parameter(scale.clone()), nn.Parameter(shift.clone())
        self.cond_scale, self.null_shift = nn.Parameter(cond_scale.clone()), nn.Parameter(null_shift.clone())

    def forward(self, x: torch.Tensor, t: TimeLike, cond: torch.Tensor | None = None,
                cond_mask: torch.Tensor | None = None) -> torch.Tensor:
        _require_samples(x, self.scale.shape)
        velocity = self.scale * x + expand_time(time_batch(t, x), x) * self.shift
        if cond is None:
            return velocity + self.null_shift
        if cond.shape != x.shape:
            raise ValueError(f"cond must be shaped like x {tuple(x.shape)}, got {tuple(cond.shape)}")
        present = torch.ones(x.shape[0], dtype=x.dtype, device=x.device) if cond_mask is None else cond_mask.to(x)
        m = expand_time(present, x)
        return velocity + m * self.cond_scale * cond + (1 - m) * self.null_shift

    def arrays(self) -> dict[str, np.ndarray]:
        return _numpy(self)

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "ConditionedAffineVelocity":
        return cls(*(_tensor(arrays, name) for name in ("scale", "shift", "cond_scale", "null_shift")))


class TanhVelocity(AffineVelocity):
    """A velocity model that is nonlinear in ``x`` (elementwise, no matrix multiply):

        v(x, t) = scale * tanh(x) + t * shift      (shapes (B, ...); parameters shaped like one sample)

    Why not ``AffineVelocity``: on a velocity affine in ``x`` and ``t`` every two-stage second-order
    Runge-Kutta step (Heun, midpoint, ...) gives exactly the same result, the second-order Taylor
    step; a curved ``v`` tells them apart. ``t`` is a float, a 0-d or a ``(B,)`` tensor. Built,
    stored and rebuilt like ``AffineVelocity`` (without a label term).
    """

    def forward(self, x: torch.Tensor, t: TimeLike) -> torch.Tensor:
        _require_samples(x, self.scale.shape)
        return self.scale * torch.tanh(x) + expand_time(time_batch(t, x), x) * self.shift


class MidpointStep(nn.Module):
    """A step function for tests of a sampler's loop: ``step(velocity, x, t, t_next)``, the midpoint
    rule ``x + h v(x + h/2 v(x, t), t + h/2)`` with ``h = t_next - t``.

    A loop under test must call the step it is given: this one differs from an Euler or a Heun
    step, and from itself with ``t`` and ``t_next`` swapped. ``t`` and ``t_next``: floats or 0-d
    tensors. No parameters: it crosses the sandbox wall as an empty set of arrays.
    """

    def forward(self, velocity, x: torch.Tensor, t, t_next) -> torch.Tensor:
        t, t_next = float(t), float(t_next)
        h = t_next - t
        at = lambda time: torch.full((x.shape[0],), time, dtype=x.dtype, device=x.device)
        x_mid = x + 0.5 * h * velocity(x, at(t))
        return x + h * velocity(x_mid, at(t + 0.5 * h))

    def arrays(self) -> dict[str, np.ndarray]:
        return {}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "MidpointStep":
        return cls()


FIXTURES: dict[str, type] = {"AffineVelocity": AffineVelocity, "ElementwiseClassifier": ElementwiseClassifier,
                             "ConditionedAffineVelocity": ConditionedAffineVelocity, "TanhVelocity": TanhVelocity,
                             "MidpointStep": MidpointStep}


class CoupledTanhVelocity(TanhVelocity):
    """A velocity in which every entry of a sample sees the others, through their mean:

        v(x, t) = scale * tanh(x) + t * shift + coupling * mean(x)      (mean over one sample's entries)

    Why: with an elementwise velocity the pixels of an image never influence each other, so an
    inpainting loop that ignores the known region until the end would pass for a correct one;
    here the filled-in pixels move differently depending on what the known pixels are during
    sampling. ``scale``, ``shift`` and ``coupling`` have the shape of one sample; ``t`` as for
    ``TanhVelocity``.
    """

    def __init__(self, scale: torch.Tensor, shift: torch.Tensor, coupling: torch.Tensor):
        super().__init__(scale, shift)
        if coupling.shape != scale.shape:
            raise ValueError(f"coupling must have the shape of scale {tuple(scale.shape)}, got {tuple(coupling.shape)}")
        self.coupling = nn.Parameter(coupling.clone())

    def forward(self, x: torch.Tensor, t: TimeLike) -> torch.Tensor:
        mean = x.flatten(1).mean(dim=1).reshape(x.shape[0], *([1] * (x.dim() - 1)))
        return super().forward(x, t) + self.coupling * mean

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "CoupledTanhVelocity":
        return cls(_tensor(arrays, "scale"), _tensor(arrays, "shift"), _tensor(arrays, "coupling"))


FIXTURES["CoupledTanhVelocity"] = CoupledTanhVelocity
