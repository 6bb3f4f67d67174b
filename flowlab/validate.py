"""Input validation shared by the whole library.

Every public function checks what it is given and raises a ``ValueError`` or ``TypeError`` that
names the argument, what it got and what it expected, so that a student sees the mistake at the
call that made it rather than as a shape error ten frames deeper.
"""
from __future__ import annotations

import math

import torch

TimeLike = float | torch.Tensor


def require_tensor(name: str, value) -> torch.Tensor:
    """Return ``value`` if it is a tensor, else raise a ``TypeError`` naming ``name``."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def require_batch(name: str, x: torch.Tensor, min_dim: int = 2) -> torch.Tensor:
    """Check that ``x`` is a floating batch ``(B, ...)`` with at least ``min_dim`` dimensions."""
    require_tensor(name, x)
    if x.dim() < min_dim:
        raise ValueError(f"{name} must have shape (B, ...) with at least {min_dim} dimensions, "
                         f"got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    return x


def require_same_shape(**tensors: torch.Tensor) -> None:
    """Raise a ``ValueError`` unless all the named tensors have the same shape."""
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise ValueError(f"shapes must match, got {listed}")


def require_positive_int(name: str, value) -> int:
    """Return ``value`` if it is a positive int (not a bool), else a ``ValueError`` naming ``name``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def require_choice(name: str, value: str, choices) -> str:
    """Return ``value`` if it is one of ``choices``, else a ``ValueError`` listing them."""
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; expected one of {sorted(choices)}")
    return value


def time_batch(t: TimeLike, x: torch.Tensor) -> torch.Tensor:
    """Broadcast a time to one value per batch element: float, 0-d or ``(B,)`` -> ``(B,)``.

    The result has ``x``'s dtype and device. Times outside [0, 1] are rejected.
    """
    if isinstance(t, torch.Tensor):
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        elif t.shape != (x.shape[0],):
            raise ValueError(f"t must be a float, a 0-d tensor or have shape (B,) = ({x.shape[0]},), "
                             f"got shape {tuple(t.shape)}")
        t = t.to(dtype=x.dtype, device=x.device)
        if t.numel() and (torch.isnan(t).any() or t.min() < 0 or t.max() > 1):
            raise ValueError(f"t must lie in [0, 1] (t = 0 is noise, t = 1 is data), got {t.min()}..{t.max()}")
        return t
    if not isinstance(t, (int, float)):
        raise TypeError(f"t must be a float or a tensor, got {type(t).__name__}")
    if not 0.0 <= float(t) <= 1.0 or math.isnan(float(t)):
        raise ValueError(f"t must lie in [0, 1] (t = 0 is noise, t = 1 is data), got {t}")
    # A stride-0 view: no (B,)-sized allocation per velocity call (the solvers' hot path).
    return torch.tensor(float(t), dtype=x.dtype, device=x.device).expand(x.shape[0])


def expand_time(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape a per-sample time ``(B,)`` to ``(B, 1, ..., 1)`` so that it multiplies ``x``."""
    return t.reshape(t.shape[0], *([1] * (x.dim() - 1)))


def time_grid(ts, name: str = "ts") -> torch.Tensor:
    """Validate a time grid: 1-D, at least two points, inside [0, 1], strictly monotone.

    Increasing grids sample (noise -> data); decreasing grids invert (data -> noise).
    """
    if not isinstance(ts, torch.Tensor):
        try:
            ts = torch.as_tensor(ts, dtype=torch.float64)
        except (TypeError, ValueError) as error:
            raise TypeError(f"{name} must be a 1-D tensor of times, got {type(ts).__name__}") from error
    if ts.dim() != 1 or ts.numel() < 2:
        raise ValueError(f"{name} must be a 1-D grid with at least 2 times, got shape {tuple(ts.shape)}")
    if not torch.isfinite(ts).all() or ts.min() < 0 or ts.max() > 1:
        raise ValueError(f"{name} must lie in [0, 1] (t = 0 is noise, t = 1 is data), got {ts.tolist()}")
    steps = ts[1:] - ts[:-1]
    if not ((steps > 0).all() or (steps < 0).all()):
        raise ValueError(f"{name} must be strictly increasing (sampling) or strictly decreasing "
                         f"(inversion), got {ts.tolist()}")
    return ts


def require_finite(name: str, value: torch.Tensor, t: TimeLike | None = None) -> torch.Tensor:
    """Raise a ``ValueError`` if ``value`` (typically a model output) holds NaN or infinity."""
    if not torch.isfinite(value).all():
        where = "" if t is None else f" at t = {float(torch.as_tensor(t).flatten()[0]):.4g}"
        raise ValueError(f"{name} returned NaN or infinity{where}; check the model, its inputs "
                         f"and the time grid")
    return value
