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

    The result has ``x``'s dtype and device. Times outside [0, 1] are rejected. Checking the values
    of a tensor costs a device-to-host sync on an accelerator, so a time made by ``grid_time`` (the
    samplers' times, which come from a grid already checked) is trusted and returned as it is.
    """
    if isinstance(t, torch.Tensor):
        if getattr(t, _CHECKED_TIME, False) and t.shape == (x.shape[0],):
            return t.to(dtype=x.dtype, device=x.device)
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
    return _broadcast_time(float(t), x)


# The attribute that marks a time tensor as made from a checked grid (see ``grid_time``).
_CHECKED_TIME = "_flowlab_checked_time"


def _broadcast_time(t: float, x: torch.Tensor) -> torch.Tensor:
    # new_full launches a fill kernel (torch.tensor(t, device=...) would copy from the host and
    # wait for the device); expand gives a stride-0 view, no (B,)-sized allocation per call.
    return x.new_full((), t).expand(x.shape[0])


def grid_time(t: float, x: torch.Tensor) -> torch.Tensor:
    """The time ``t`` (a float from a grid that ``time_grid`` accepted) as a ``(B,)`` tensor that
    ``time_batch`` trusts without looking at its values: the samplers' hot path, free of syncs."""
    time = _broadcast_time(t, x)
    setattr(time, _CHECKED_TIME, True)
    return time


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


def increasing_grid(ts, why: str, name: str = "ts") -> torch.Tensor:
    """``time_grid`` for a caller that only samples (noise -> data); ``why`` ends the error."""
    times = time_grid(ts, name)
    if times[-1] < times[0]:
        raise ValueError(f"{name} must be increasing (t = 0 noise -> t = 1 data), got {times.tolist()}; {why}")
    return times


def require_nonnegative(name: str, value) -> float:
    """Return ``value`` as a float if it is a finite real number >= 0 (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float >= 0, got {type(value).__name__}")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite float >= 0, got {value}")
    return float(value)


def require_interval(name: str, interval) -> tuple[float, float]:
    """A pair ``(low, high)`` with ``0 <= low <= high <= 1``, as floats."""
    try:
        low, high = (float(value) for value in interval)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be a pair of floats (t_min, t_max), got {interval!r}") from error
    if not 0 <= low <= high <= 1:
        raise ValueError(f"{name} must satisfy 0 <= t_min <= t_max <= 1, got {interval!r}")
    return low, high


def sampler_noise(noise, generator, n_steps: int, x: torch.Tensor) -> torch.Tensor | None:
    """Check a sampler's injected randomness; return ``noise`` on ``x``'s device and dtype (or None).

    ``noise``: ``(n_steps, *x.shape)``, ``noise[i]`` feeds step ``i``; it excludes ``generator``.
    """
    if noise is not None and generator is not None:
        raise ValueError("pass either noise or generator, not both")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if noise is None:
        return None
    expected = (n_steps, *x.shape)
    if not isinstance(noise, torch.Tensor) or tuple(noise.shape) != expected:
        got = tuple(noise.shape) if isinstance(noise, torch.Tensor) else type(noise).__name__
        raise ValueError(f"noise must have shape (len(ts) - 1, *x.shape) = {expected}, got {got}")
    return noise.to(dtype=x.dtype, device=x.device)


def require_velocity_output(v, x: torch.Tensor) -> torch.Tensor:
    """Check that a velocity answered with a tensor shaped like its input ``x``."""
    if not isinstance(v, torch.Tensor) or v.shape != x.shape:
        got = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
        raise ValueError(f"velocity(x, t) must return a tensor shaped like x {tuple(x.shape)}, got {got}")
    return v


def require_finite_result(x: torch.Tensor, sampler: str, times: list[float]) -> torch.Tensor:
    """The samplers' one check of the model's numbers, after the loop: a single device-to-host
    sync per call instead of one per step (NaN and infinity propagate to the end point)."""
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"the velocity produced NaN or infinity: {sampler} from t = {times[0]:.4g} to "
                         f"{times[-1]:.4g} in {len(times) - 1} steps ended with non-finite values; check "
                         f"the model (its weights and its output for these inputs) and the time grid")
    return x
