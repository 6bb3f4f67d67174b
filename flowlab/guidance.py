"""Guidance: classifier-free guidance (CFG) and classifier guidance, as wrappers around a velocity.

Both return a new ``velocity(x, t)`` (``x: (B, ...)``, ``t: (B,)``) that any sampler in
``flowlab.solvers`` or ``flowlab.sde`` can use. Conventions: t = 0 is noise, t = 1 is data.

* CFG (Ho & Salimans 2022) mixes a conditional and an unconditional prediction:
  ``v = v_uncond + w (v_cond - v_uncond)``. ``cfg(v_cond, v_uncond, w)`` does it for any condition
  (labels, images) given the two partially applied velocities; ``classifier_free_guidance`` is
  its use with class labels; ``guided_velocity`` gets both branches of a class-conditional model
  from one call on a doubled batch, and ``sample_cfg`` integrates it with Euler steps (the pieces
  notebook 04's students write). Because ``x1_hat``, ``x0_hat`` and the score are
  affine in ``v`` at fixed ``(x, t)`` (see ``flowlab.paths``), mixing any of them with the same
  ``w`` gives the same result.
* Classifier guidance (Dhariwal & Nichol 2021) adds ``w grad_x log p(y | x_t)`` to the score;
  through ``v = (x + (1 - t) score) / t`` that is ``v + w (1 - t)/t grad_x log p(y | x_t)``.
  ``log_prob_grad_from_classifier`` takes that gradient from a noisy (time-conditioned) classifier;
  ``log_prob_grad_through_x1_hat`` from a classifier of clean data applied to the denoised estimate
  ``x1_hat = x + (1 - t) v(x, t)``, differentiated through the velocity model.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from flowlab.validate import expand_time, require_positive_int, require_same_shape, require_tensor, time_batch
from flowlab.schedules import uniform
from flowlab.solvers import Velocity, integrate

LogProbGrad = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _check_weight(w) -> float:
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w):
        raise TypeError(f"w must be a finite float (1: plain conditional, 0: unconditional), got {w!r}")
    return float(w)


def cfg_velocity(v_cond: torch.Tensor, v_uncond: torch.Tensor, w: float) -> torch.Tensor:
    """Classifier-free guidance: ``v_uncond + w (v_cond - v_uncond)``, shapes ``(B, ...)``.

    ``w = 1``: the conditional velocity; ``w = 0``: the unconditional one; ``w > 1`` extrapolates
    away from the unconditional prediction (sharper, less diverse samples). Computed as the
    equal ``w v_cond + (1 - w) v_uncond``, which returns the branches bit for bit at w = 1 and 0.
    """
    require_same_shape(v_cond=v_cond, v_uncond=v_uncond)
    w = _check_weight(w)
    return w * v_cond + (1 - w) * v_uncond


def guided_velocity(model, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, w: float,
                    null_label: int) -> torch.Tensor:
    """The CFG velocity of a class-conditional ``model(x, t, y=labels)`` from **one** model call.

    ``x``: ``(B, ...)``; ``t``: ``(B,)``; ``y``: int64 labels ``(B,)``. The model sees the batch twice,
    ``(x, x)`` at times ``(t, t)`` with labels ``(y, null_label, ..., null_label)``, shape ``(2B, ...)``;
    the first half of its output is ``v_cond``, the second ``v_uncond``, combined by ``cfg_velocity``.
    One call on a doubled batch keeps a GPU busier than two calls on the batch. Returns ``(B, ...)``.
    """
    require_tensor("x", x)
    _require_labels(y)
    _check_labels(y, x)
    require_tensor("t", t)
    if t.shape != (x.shape[0],):
        raise ValueError(f"t must have shape (B,) = ({x.shape[0]},) to match x, got {tuple(t.shape)}")
    if isinstance(null_label, bool) or not isinstance(null_label, int):
        raise TypeError(f"null_label must be an int, got {type(null_label).__name__}")
    w = _check_weight(w)
    labels = torch.cat([y, torch.full_like(y, null_label)]).to(x.device)
    both = model(torch.cat([x, x]), torch.cat([t, t]), y=labels)
    v_cond, v_uncond = both[: x.shape[0]], both[x.shape[0]:]
    return cfg_velocity(v_cond, v_uncond, w)


def sample_cfg(model, x0: torch.Tensor, y: torch.Tensor, w: float, steps: int, null_label: int) -> torch.Tensor:
    """Guided samples: ``steps`` Euler steps of ``guided_velocity(model, x, t, y, w, null_label)`` on
    the uniform grid ``t_i = i / steps`` from the noise ``x0`` ``(B, ...)`` at t = 0 to t = 1.

    ``y``: int64 labels ``(B,)``. One model call (on ``2B`` samples) a step. Returns ``(B, ...)``.
    """
    require_positive_int("steps", steps)
    return integrate(lambda x, t: guided_velocity(model, x, t, y, w, null_label), x0, uniform(steps), "euler")


def cfg(v_cond: Velocity, v_uncond: Velocity, w: float) -> Velocity:
    """Classifier-free guidance of two velocities: ``(x, t) -> v_uncond + w (v_cond - v_uncond)``.

    ``v_cond`` and ``v_uncond`` are velocities ``(x, t) -> (B, ...)`` of one model, partially applied
    to the condition and to the null condition, e.g. ``partial(model, y=labels)`` and
    ``partial(model, y=null_labels)``, or ``partial(model, cond=image)`` and ``partial(model, cond=None)``.
    Each evaluation of the result makes **two** model calls for general ``w`` (an Euler step costs
    2 NFE, a Heun step 4); ``w == 1`` returns ``v_cond`` itself and ``w == 0`` ``v_uncond`` (1 call).
    """
    w = _check_weight(w)
    if not callable(v_cond) or not callable(v_uncond):
        raise TypeError(f"v_cond and v_uncond must be velocities (x, t) -> tensor, got "
                        f"{type(v_cond).__name__} and {type(v_uncond).__name__}")
    if w == 1:
        return v_cond
    if w == 0:
        return v_uncond

    def guided(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return cfg_velocity(v_cond(x, t), v_uncond(x, t), w)

    return guided


def _check_labels(y: torch.Tensor, x: torch.Tensor) -> None:
    if y.shape != (x.shape[0],):
        raise ValueError(f"y must have shape (B,) = ({x.shape[0]},) to match x, got {tuple(y.shape)}")


def _require_labels(y) -> None:
    require_tensor("y", y)
    if y.dim() != 1 or y.dtype != torch.int64:
        raise TypeError(f"y must be an int64 tensor of labels with shape (B,), got dtype {y.dtype} "
                        f"and shape {tuple(y.shape)}")


def label_velocity(model, y: torch.Tensor) -> Velocity:
    """``(x, t) -> model(x, t, y=y)``: a class-conditional model applied to the labels ``y`` ``(B,)``,
    which follow ``x`` to its device and must match its batch."""
    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        _check_labels(y, x)
        return model(x, t, y=y.to(x.device))

    return velocity


def classifier_free_guidance(model, y: torch.Tensor, w: float, null_label: int | None = None) -> Velocity:
    """A guided ``velocity(x, t)`` from a class-conditional model ``model(x, t, y=labels)``:
    ``cfg(label_velocity(model, y), label_velocity(model, null), w)``.

    ``y``: the class labels, an int64 tensor ``(B,)``; the unconditional branch calls the model
    with every label set to ``null_label`` (an int; ``None`` reads ``model.null_label``).
    Cost as for ``cfg``: 2 model calls an evaluation, 1 at ``w == 1`` or ``w == 0``.
    """
    w = _check_weight(w)
    _require_labels(y)
    if null_label is None:
        null_label = getattr(model, "null_label", None)
        if null_label is None:
            raise ValueError("null_label is None and the model has no null_label attribute; pass "
                             "the label that the model was trained to treat as 'no condition'")
    if isinstance(null_label, bool) or not isinstance(null_label, int):
        raise TypeError(f"null_label must be an int, got {type(null_label).__name__}")
    return cfg(label_velocity(model, y), label_velocity(model, torch.full_like(y, null_label)), w)


def classifier_guidance(velocity: Velocity, log_prob_grad: LogProbGrad, w: float,
                        t_min: float) -> Velocity:
    """A guided ``velocity(x, t)``: ``v + w (1 - t)/t * grad_x log p(y | x_t)`` for ``t >= t_min``.

    Derivation: Bayes gives ``grad log p_t(x | y) = grad log p_t(x) + grad log p(y | x_t)``. Adding
    ``w grad log p(y | x_t)`` to the score and converting with ``v = (x + (1 - t) score)/t`` changes
    the velocity by ``w (1 - t)/t grad log p(y | x_t)``; ``w = 1`` gives the exact conditional
    velocity when the classifier is exact.

    The factor ``(1 - t)/t`` blows up as t -> 0 (and a classifier is useless on near-pure noise),
    so samples with ``t < t_min`` (per sample) get the plain ``v``; the classifier is not called
    at all when no sample of the batch has ``t >= t_min``. ``0 < t_min <= 1``.
    ``log_prob_grad(x, t)`` returns ``grad_x log p(y | x_t = x)`` shaped like ``x``.
    """
    w = _check_weight(w)
    if isinstance(t_min, bool) or not isinstance(t_min, (int, float)) or not 0 < t_min <= 1:
        raise ValueError(f"t_min must be a float in (0, 1] (the guidance factor (1 - t)/t is "
                         f"infinite at t = 0), got {t_min!r}")
    if not callable(velocity) or not callable(log_prob_grad):
        raise TypeError("velocity and log_prob_grad must be callables (x, t) -> tensor shaped like x")

    def guided_velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = time_batch(t, x)
        v = velocity(x, t)
        guided = t >= t_min
        if w == 0 or not guided.any():
            return v
        grad = log_prob_grad(x, t)
        require_same_shape(x=x, log_prob_grad=grad)
        t_safe = t.clamp(min=t_min)                      # no inf/nan for the unguided samples
        factor = torch.where(guided, w * (1 - t_safe) / t_safe, torch.zeros_like(t))
        return v + expand_time(factor, x) * grad

    return guided_velocity


def log_prob_grad_from_classifier(classifier, y: torch.Tensor) -> LogProbGrad:
    """``(x, t) -> grad_x log softmax(classifier(x, t))[y]``, shape like ``x``, by autograd.

    ``classifier(x, t)`` returns logits ``(B, C)`` of a time-conditioned (noisy) classifier;
    ``y`` is an int64 ``(B,)``. Gradients are enabled inside (so it works under
    ``torch.no_grad()``) and the result is detached. The batch's log-probabilities are summed before
    differentiating, which gives per-sample gradients as long as the classifier treats samples
    independently (no batch norm in training mode).
    """
    _require_labels(y)

    def log_prob_grad(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        _check_labels(y, x)
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            logits = classifier(x_in, t)
            if logits.dim() != 2 or logits.shape[0] != x.shape[0]:
                raise ValueError(f"classifier(x, t) must return logits of shape (B, C), got "
                                 f"{tuple(logits.shape)}")
            log_probs = torch.log_softmax(logits, dim=1)
            chosen = log_probs.gather(1, y.to(x.device)[:, None]).sum()
            (grad,) = torch.autograd.grad(chosen, x_in)
        return grad.detach()

    return log_prob_grad


def log_prob_grad_through_x1_hat(classifier, velocity: Velocity, y: torch.Tensor) -> LogProbGrad:
    """``(x, t) -> grad_x log softmax(classifier(x1_hat(x, t), 1))[y]``, shape like ``x``, by autograd
    through the velocity model, with the denoised estimate ``x1_hat(x, t) = x + (1 - t) v(x, t)``.

    A classifier trained on clean data (``classifier(x, t)`` returning logits ``(B, C)``; it is
    called at ``t = 1``, the time of clean data) reads ``x1_hat``, which looks like data at every
    ``t``, instead of the noisy ``x_t``. The gradient flows through ``v``: each call costs a forward
    and a backward pass of the velocity model as well as of the classifier. ``y``: int64 ``(B,)``.
    Works under ``torch.no_grad()``; the result is detached. Per-sample gradients need a velocity
    and a classifier that treat samples independently, as for ``log_prob_grad_from_classifier``.
    """
    _require_labels(y)
    if not callable(classifier) or not callable(velocity):
        raise TypeError("classifier and velocity must be callables (x, t) -> tensor")

    def log_prob_grad(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        _check_labels(y, x)
        times = time_batch(t, x)
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            x1_hat = x_in + expand_time(1 - times, x) * velocity(x_in, times)
            logits = classifier(x1_hat, torch.ones_like(times))
            if logits.dim() != 2 or logits.shape[0] != x.shape[0]:
                raise ValueError(f"classifier(x, t) must return logits of shape (B, C), got "
                                 f"{tuple(logits.shape)}")
            chosen = torch.log_softmax(logits, dim=1).gather(1, y.to(x.device)[:, None]).sum()
            (grad,) = torch.autograd.grad(chosen, x_in)
        return grad.detach()

    return log_prob_grad
