"""Editing digits with a class-conditional flow: inversion, regeneration, class swap and SDEdit.

Works with any class-conditional velocity model called as ``model(x, t, y=labels)`` (the MNIST
``UNet``, or a tiny untrained one in tests) that has a ``null_label`` for classifier-free guidance.
Conventions: t = 0 is noise, t = 1 is data, ``x_t = (1 - t) x0 + t x1``; ``ts`` is always the
*increasing* sampling grid from ``flowlab.schedules`` (0 -> 1).

* ``invert_digits``: data -> noise. Integrate ``dx/dt = v(x, t, y)`` with the true label and **no
  guidance** (w = 1) from t = 1 to t = 0 on the reversed grid ``ts.flip(0)``:
  ``x0_hat = ODE_{1 -> 0}(x1)``. Guidance (w > 1) makes the velocity stiffer and the inversion worse.
* ``regenerate``: noise -> data, ``x1 = ODE_{0 -> 1}(x0)`` with the CFG velocity
  ``v_u + w (v_c - v_u)``. With w = 1, the same label, grid and solver, regenerating an inverted
  digit reconstructs it up to the solver's truncation error (which falls at the solver's order).
* ``class_swap``: invert with the true label ``y_from``, regenerate with ``y_to``: the noise keeps
  the style (stroke width, slant, position) and the label changes the digit.
* ``sdedit_class``: noise the digit only partway, ``x_t0 = (1 - t0) noise + t0 x1``, then sample
  from ``t0`` to 1 with the guided velocity of ``y_to`` (``flowlab.inversion.sdedit``). Small ``t0``
  forgets the input (t0 = 0 is plain sampling), large ``t0`` keeps it (and its class).

Images are ``(B, C, H, W)`` in the data units of the model (MNIST: [-1, 1]); nothing is clamped, so
round-trip errors are the solver's own. Every function runs under ``torch.no_grad()``.
"""
from __future__ import annotations

import torch

from flowlab.validate import require_batch, require_same_shape, require_tensor
from flowlab.guidance import classifier_free_guidance
from flowlab.inversion import invert, sdedit
from flowlab.solvers import Velocity, integrate

Labels = int | torch.Tensor


def class_labels(name: str, y: Labels, x: torch.Tensor, model) -> torch.Tensor:
    """``y`` as an int64 ``(B,)`` tensor on ``x``'s device: an int is broadcast to the batch of ``x``.

    Labels must be classes ``0..num_classes-1`` when the model says how many it has (the null label
    is not a class to edit towards); a ``ValueError``/``TypeError`` names ``name`` otherwise.
    """
    batch = x.shape[0]
    if isinstance(y, int) and not isinstance(y, bool):
        y = torch.full((batch,), y, dtype=torch.int64)
    require_tensor(name, y)
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer class labels, got dtype {y.dtype}")
    if y.shape != (batch,):
        raise ValueError(f"{name} must be an int or have shape (B,) = ({batch},) to match the images, "
                         f"got shape {tuple(y.shape)}")
    num_classes = getattr(model, "num_classes", None)
    if num_classes is not None and y.numel() and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"{name} must be class labels in 0..{num_classes - 1}, got "
                         f"{int(y.min())}..{int(y.max())}")
    return y.to(device=x.device, dtype=torch.int64)


def conditional_velocity(model, y: torch.Tensor, w: float = 1.0) -> Velocity:
    """The ``velocity(x, t)`` of class ``y``: ``v_u + w (v_c - v_u)``; ``w = 1`` is plain ``v(x, t, y)``.

    A thin name for ``flowlab.guidance.classifier_free_guidance``: ``w = 1`` costs one model call
    per evaluation, any ``w`` other than 0 and 1 two (conditional and unconditional).
    """
    return classifier_free_guidance(model, y, w)


def _images(name: str, x: torch.Tensor) -> torch.Tensor:
    require_batch(name, x, min_dim=2)
    if x.shape[0] < 1:
        raise ValueError(f"{name} must hold at least one image, got shape {tuple(x.shape)}")
    return x


@torch.no_grad()
def invert_digits(model, x1: torch.Tensor, y: Labels, ts, method: str = "euler") -> torch.Tensor:
    """Map digits ``x1: (B, C, H, W)`` of class ``y`` to the noise that generates them.

    ``x0_hat = ODE_{1 -> 0}(x1)``: integrate ``dx/dt = v(x, t, y)`` (no guidance, w = 1) over the
    reversed grid ``ts.flip(0)`` with ``method``; ``ts`` is the increasing sampling grid. Returns
    ``x0_hat`` shaped like ``x1``. NFE: ``flowlab.solvers.nfe(method, len(ts) - 1)``, one model pass each.
    """
    x1 = _images("x1", x1)
    return invert(conditional_velocity(model, class_labels("y", y, x1, model)), x1, ts, method)


@torch.no_grad()
def regenerate(model, x0: torch.Tensor, y: Labels, ts, method: str = "euler", w: float = 1.0) -> torch.Tensor:
    """Sample digits of class ``y`` from the noise ``x0: (B, C, H, W)``: ``x1 = ODE_{0 -> 1}(x0)``.

    The velocity is ``v_u + w (v_c - v_u)`` on the increasing grid ``ts``; ``w = 1`` (the default)
    is the unguided conditional flow, the exact inverse of ``invert_digits`` as the steps shrink.
    Returns ``x1`` shaped like ``x0``, not clamped.
    """
    x0 = _images("x0", x0)
    return integrate(conditional_velocity(model, class_labels("y", y, x0, model), w), x0, ts, method)


@torch.no_grad()
def reconstruction_error(model, x1: torch.Tensor, y: Labels, ts, method: str = "euler") -> dict:
    """Invert ``x1`` and regenerate it with the same label, grid and solver (w = 1).

    Returns ``{"x0": x0_hat, "x1": reconstruction, "mse": mean (x1_rec - x1)^2,
    "mean_abs": mean |x1_rec - x1|, "max_abs": max |x1_rec - x1|}`` (the errors are floats over all
    pixels and digits, in data units: MNIST pixels span [-1, 1]).
    """
    x0_hat = invert_digits(model, x1, y, ts, method)
    reconstruction = regenerate(model, x0_hat, y, ts, method)
    difference = (reconstruction - x1).double()
    return {"x0": x0_hat, "x1": reconstruction, "mse": difference.pow(2).mean().item(),
            "mean_abs": difference.abs().mean().item(), "max_abs": difference.abs().max().item()}


@torch.no_grad()
def class_swap(model, x1: torch.Tensor, y_from: Labels, y_to: Labels, ts, method: str = "euler",
               w: float = 1.0) -> torch.Tensor:
    """Turn digits ``x1`` of class ``y_from`` into class ``y_to``, keeping their style.

    ``x0_hat = ODE_{1 -> 0}(x1 | y_from, w = 1)`` (``invert_digits``), then
    ``ODE_{0 -> 1}(x0_hat | y_to, w)`` (``regenerate``) on the same grid and solver. With
    ``y_to == y_from`` and ``w = 1`` this is the round trip and returns ``x1`` up to the solver error.
    A ``w`` above 1 makes the new class more certain. Returns the edited digits, shaped like ``x1``.
    NFE: ``nfe(method, len(ts) - 1)`` to invert (1 pass each) plus as many to regenerate
    (2 passes each when ``w`` is not 0 or 1).
    """
    x1 = _images("x1", x1)
    y_to = class_labels("y_to", y_to, x1, model)
    return regenerate(model, invert_digits(model, x1, y_from, ts, method), y_to, ts, method, w)


@torch.no_grad()
def sdedit_class(model, x1: torch.Tensor, y_to: Labels, t0: float, ts, noise: torch.Tensor,
                 method: str = "euler", w: float = 1.0) -> torch.Tensor:
    """SDEdit towards class ``y_to``: ``x_t0 = (1 - t0) noise + t0 x1``, then sample from ``t0`` to 1
    with ``v_u + w (v_c - v_u)`` of ``y_to`` over ``[t0] + [t in ts with t > t0]``.

    ``t0 = 0`` is plain sampling of ``y_to`` from ``noise``; ``t0 = 1`` returns ``x1`` unchanged.
    ``noise`` is shaped like ``x1`` (inject it for reproducibility). See ``flowlab.inversion.sdedit``.
    """
    x1 = _images("x1", x1)
    require_tensor("noise", noise)
    require_same_shape(x1=x1, noise=noise)
    velocity = conditional_velocity(model, class_labels("y_to", y_to, x1, model), w)
    return sdedit(velocity, x1, t0, ts, noise=noise.to(x1), method=method)
