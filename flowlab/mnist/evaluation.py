"""Measuring digits with the separately trained evaluation classifier (the ``mnist_eval`` checkpoint).

* ``quality``: class accuracy under ``mnist_eval`` and the Frechet distance in its feature space
  against held-out test digits, beside the real-vs-real floor of the same sizes.
* ``noisy_accuracy``: a time-conditioned classifier's accuracy on noised test digits ``x_t``.
* ``completion_quality``: the image-conditioned model's completions, read by ``mnist_eval``.
* ``class_diversity``, ``guidance_sweep``: accuracy, diversity and Frechet distance against w.

The samples come from ``flowlab.mnist.sampling``.
"""
from __future__ import annotations

import torch

from flowlab import mnist, pretrained, schedules
from flowlab.metrics import class_accuracy, frechet_distance
from flowlab.mnist.sampling import balanced_labels, cfg_passes_per_nfe, digit_noise, sample_digits
from flowlab.models.conditioned import guided_velocity, low_resolution_condition, top_half_condition
from flowlab.paths import interpolate
from flowlab.solvers import integrate, nfe


@torch.no_grad()
def eval_outputs(eval_model, images: torch.Tensor, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``(N, 10)`` and features ``(N, F)`` of the evaluation classifier, on the CPU."""
    device = next(eval_model.parameters()).device
    logits, features = [], []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].to(device)
        logits.append(eval_model(x).cpu())
        features.append(eval_model.features(x).cpu())
    return torch.cat(logits), torch.cat(features)


def quality(samples: torch.Tensor, labels: torch.Tensor, eval_model=None, n_real: int | None = None) -> dict:
    """Class accuracy of ``samples`` (meant to be of class ``labels``) and their Frechet distance to
    ``n_real`` held-out test digits (default: as many as samples), with the floor: the distance
    between that many training digits and the same test digits."""
    eval_model = eval_model or pretrained.load("mnist_eval")
    n_real = n_real or len(samples)
    test = mnist.subset(mnist.load("test"), per_class=n_real // 10, generator=0)
    train = mnist.subset(mnist.load("train"), per_class=n_real // 10, generator=0)
    logits, sample_features = eval_outputs(eval_model, samples)
    _, test_features = eval_outputs(eval_model, test.images)
    _, train_features = eval_outputs(eval_model, train.images)
    return {"accuracy": class_accuracy(logits, labels),
            "frechet": frechet_distance(sample_features, test_features),
            "frechet_floor": frechet_distance(train_features, test_features),
            "n_samples": len(samples), "n_real": len(test)}


@torch.no_grad()
def noisy_accuracy(classifier, times=(0.25, 0.5, 0.75, 1.0), seed: int = 0) -> dict:
    """Accuracy of ``classifier(x_t, t)`` on the test digits noised to ``x_t = (1-t) x0 + t x1``."""
    test = mnist.load("test")
    noise = torch.randn(test.images.shape, generator=torch.Generator().manual_seed(seed))
    out = {}
    for t in times:
        x_t = interpolate(noise, test.images, t)
        out[f"t={t:g}"] = class_accuracy(classifier(x_t, torch.full((len(x_t),), t)), test.labels)
    return out


@torch.no_grad()
def completion_quality(model, per_class: int = 20, w: float = 1.0, steps: int = 20, seed: int = 0) -> dict:
    """Complete test digits from their top half and from a 4x low-resolution copy; report how often
    the evaluation classifier finds the true digit, and the mean squared error to the original."""
    test = mnist.subset(mnist.load("test"), per_class=per_class, generator=seed)
    eval_model = pretrained.load("mnist_eval")
    out = {}
    for name, make in (("top_half", top_half_condition), ("low_resolution", low_resolution_condition)):
        velocity = guided_velocity(model, make(test.images), w)
        completed = integrate(velocity, digit_noise(len(test), seed), schedules.uniform(steps), "euler").clamp(-1, 1)
        logits, _ = eval_outputs(eval_model, completed)
        out[name] = {"accuracy": class_accuracy(logits, test.labels),
                     "mse": (completed - test.images).pow(2).mean().item()}
    return out


def class_diversity(features: torch.Tensor, labels: torch.Tensor) -> float:
    """Diversity within classes: for each class c with n_c >= 2 members, the mean Euclidean distance
    between the features of two different members, ``mean_{i != j, y_i = y_j = c} ||f_i - f_j||``;
    then the mean over those classes. ``features``: ``(N, F)`` (the evaluation classifier's
    ``features``), ``labels``: ``(N,)``. Units: feature units. Guidance that collapses each class
    onto a few prototypes drives it down; compare it with the same measure on real digits."""
    if labels.shape != (features.shape[0],):
        raise ValueError(f"labels must have shape ({features.shape[0]},), got {tuple(labels.shape)}")
    per_class = []
    for digit in torch.unique(labels).tolist():
        members = features[labels == digit].double()
        n = members.shape[0]
        if n >= 2:
            per_class.append(torch.cdist(members, members).sum().item() / (n * (n - 1)))
    if not per_class:
        raise ValueError("class_diversity needs a class with at least 2 samples")
    return sum(per_class) / len(per_class)


def real_class_diversity(per_class: int, eval_model=None, seed: int = 0) -> float:
    """``class_diversity`` of ``per_class`` held-out test digits a class: the value to compare with."""
    eval_model = eval_model or pretrained.load("mnist_eval")
    test = mnist.subset(mnist.load("test"), per_class=per_class, generator=seed)
    return class_diversity(eval_outputs(eval_model, test.images)[1], test.labels)


def guidance_sweep(model, ws, per_class: int = 50, steps: int = 20, method: str = "euler",
                   eval_model=None, schedule: str = "uniform", seed: int = 0) -> list[dict]:
    """CFG samples ``per_class`` a class (the same noise for every ``w``), measured for each ``w``.

    One dict per ``w``: ``accuracy`` (under the evaluation classifier), ``diversity``
    (``class_diversity`` of its features), ``frechet`` and ``frechet_floor`` (``quality``), ``nfe``
    (guided-velocity evaluations, ``nfe(method, steps)``) and ``passes`` (UNet passes per sample:
    2 per NFE, except 1 at w = 0 and w = 1). Expect accuracy to rise and diversity to fall with w.
    """
    eval_model = eval_model or pretrained.load("mnist_eval")
    labels = balanced_labels(per_class)
    noise = digit_noise(len(labels), seed)
    rows = []
    for w in ws:
        samples = sample_digits(model, labels, w, steps, method, schedule, noise=noise)
        measured = quality(samples, labels, eval_model)
        evaluations = nfe(method, steps)
        rows.append({"w": float(w), "accuracy": measured["accuracy"],
                     "diversity": class_diversity(eval_outputs(eval_model, samples)[1], labels),
                     "frechet": measured["frechet"], "frechet_floor": measured["frechet_floor"],
                     "nfe": evaluations, "passes": evaluations * cfg_passes_per_nfe(w),
                     "n_samples": len(samples)})
    return rows
