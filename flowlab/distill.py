"""Reflow (Liu et al. 2022, "Flow straight and fast"): distil a teacher flow into a straighter one.

1. Draw noise ``z ~ N(0, I)`` and integrate the teacher's ODE from t = 0 to 1 **starting at that
   same z**: ``x1 = ODE_teacher(z)``. The pair ``(z, x1)`` is a deterministic coupling.
2. Retrain a student by flow matching on straight lines between the *pairs*:
   ``x_t = (1 - t) z + t x1``, target ``x1 - z``.

With independent noise and data (ordinary flow matching) the lines cross, and the learned velocity
averages over them, so trajectories bend. The teacher's ODE never crosses itself, so the reflow
lines barely cross either: the student's trajectories are nearly straight, and one Euler step,
``x1 = z + v(z, 0)``, lands close to where the whole ODE would.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from flowlab import schedules
from flowlab.validate import require_batch, require_positive_int, require_same_shape, require_tensor
from flowlab.solvers import integrate
from flowlab.train import Batch, TrainResult, train

Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def reflow_pairs(velocity: Velocity, n: int, ts, method: str = "heun",
                 generator: torch.Generator | None = None, shape: tuple[int, ...] = (2,),
                 noise: torch.Tensor | None = None, device: str | torch.device | None = None,
                 chunk_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise-data pairs ``(z, x1)`` with ``x1 = integrate(velocity, z, ts, method)`` from the SAME ``z``.

    ``z``: ``noise`` if given (any ``(n, ...)``: its shape wins over ``shape``), else ``N(0, I)`` of
    shape ``(n, *shape)`` drawn from ``generator`` on the CPU. ``z`` is then moved to ``device``
    (default: the device of the teacher's parameters when ``velocity`` is an ``nn.Module``, else
    where ``z`` already is). ``ts`` is the teacher's time grid from 0 to 1. The teacher runs without
    gradients, ``chunk_size`` samples at a time if given. Returns ``(z, x1)``, both shaped like ``z``:
    ``x1[i]`` is where the teacher's ODE takes ``z[i]``, which is the whole point: the pairing must not
    be shuffled.
    """
    require_positive_int("n", n)
    if noise is None:
        z = torch.randn((n, *shape), generator=generator, dtype=torch.float32)
    else:
        require_batch("noise", noise)
        if noise.shape[0] != n:
            raise ValueError(f"noise must have shape (n, ...) = ({n}, ...), got {tuple(noise.shape)}")
        z = noise
    if device is None and isinstance(velocity, nn.Module):
        device = next((parameter.device for parameter in velocity.parameters()), None)
    z = z if device is None else z.to(device)
    chunk = chunk_size or n
    with torch.no_grad():
        x1 = torch.cat([integrate(velocity, part, ts, method) for part in torch.split(z, chunk)])
    return z, x1


def sample_pairs(pairs: tuple[torch.Tensor, torch.Tensor],
                 labels: torch.Tensor | None = None) -> Callable[[int, torch.Generator], Batch]:
    """A ``sample_batch(n, generator)`` for ``train`` that draws ``n`` random pair indices (with
    replacement) and returns ``Batch(x1=x1[i], x0=z[i])``: the noise stays paired with its image.

    ``labels`` ``(N,)``, if given, are the pairs' class labels (of a class-conditional teacher); the
    batch then carries ``y=labels[i]`` so that the student learns each line with its label.
    """
    z, x1 = pairs
    require_batch("z", z)
    require_same_shape(z=z, x1=x1)
    if labels is not None:
        require_tensor("labels", labels)
        if labels.shape != (z.shape[0],):
            raise ValueError(f"labels must have shape (N,) = ({z.shape[0]},), one a pair, got {tuple(labels.shape)}")

    def draw(n: int, generator: torch.Generator) -> Batch:
        index = torch.randint(0, z.shape[0], (n,), generator=generator).to(z.device)
        y = None if labels is None else labels[index.to(labels.device)]
        return Batch(x1=x1[index], x0=z[index], y=y)

    return draw


def train_student(pairs: tuple[torch.Tensor, torch.Tensor], model: nn.Module, steps: int,
                  batch_size: int = 256, lr: float = 1e-3, ema_decay: float = 0.999,
                  generator: torch.Generator | int | None = None, progress: bool = True,
                  lr_schedule: str = "constant") -> TrainResult:
    """Flow-match ``model`` on straight lines between reflow ``pairs = (z, x1)``:
    ``x_t = (1 - t) z + t x1``, target ``x1 - z``, ``t ~ U[0, 1]`` (the loop of ``flowlab.train``).

    Start ``model`` from a copy of the teacher (``copy.deepcopy``) to fine-tune, or from scratch.
    ``lr_schedule``: ``"constant"`` or ``"cosine"`` (see ``flowlab.train.fit``). Returns the
    ``TrainResult``; sample with ``one_step_sample(result.ema_model, z)``.
    """
    return train(model, sample_pairs(pairs), steps, batch_size=batch_size, lr=lr, ema_decay=ema_decay,
                 generator=generator, progress=progress, lr_schedule=lr_schedule)


def one_step_sample(velocity: Velocity, z: torch.Tensor) -> torch.Tensor:
    """One Euler step over the whole path, ``x1 = z + v(z, 0)`` (= ``integrate`` on ``uniform(1)``).

    Good only for a (nearly) straight flow; for the exact flow of ordinary flow matching it returns
    ``E[x1]``, the data mean, for every ``z``. Runs without gradients.
    """
    with torch.no_grad():
        return integrate(velocity, z, schedules.uniform(1), "euler")


# ---- the moons_reflow recipe: a straight, accurate moons flow for few-step sampling -----------

MOONS_REFLOW = {"hidden": 128, "depth": 4, "teacher_steps": 8000, "teacher_lr": 1e-2, "batch_size": 1024,
                "pairs": 100_000, "ode_steps": 100, "student_steps": 8000, "student_lr": 1e-3, "seed": 0}


def reflow_moons(seed: int = MOONS_REFLOW["seed"], progress: bool = False, **overrides) -> TrainResult:
    """Train the ``moons_reflow`` checkpoint (settings: ``MOONS_REFLOW``, any of them overridable).

    1. A teacher: an ``MLP`` (``hidden`` x ``depth``) flow-matched on fresh moons batches with
       independent noise (``train.train_toy``'s recipe: Adam, cosine-decayed ``teacher_lr``).
    2. Reflow pairs: ``pairs`` noise points and the teacher's Heun ODE (``ode_steps`` uniform steps)
       from each of them (``reflow_pairs``).
    3. The student: a copy of the teacher fine-tuned ``student_steps`` steps on the straight lines
       between the pairs (``train_student``, cosine-decayed ``student_lr``).

    Everything is seeded from ``seed``. Returns the student's ``TrainResult`` with ``settings``
    recording the recipe and ``seconds`` the whole run's time; ``result.teacher`` is the teacher.
    """
    import copy
    import time

    from flowlab.train import train_toy

    unknown = set(overrides) - set(MOONS_REFLOW)
    if unknown:
        raise ValueError(f"unknown reflow_moons settings {sorted(unknown)}; known: {sorted(MOONS_REFLOW)}")
    recipe = {**MOONS_REFLOW, **overrides, "seed": seed}
    start = time.perf_counter()
    teacher = train_toy("moons", steps=recipe["teacher_steps"], seed=seed, batch_size=recipe["batch_size"],
                        lr=recipe["teacher_lr"], hidden=recipe["hidden"], depth=recipe["depth"],
                        progress=progress).ema_model
    pairs = reflow_pairs(teacher, recipe["pairs"], schedules.uniform(recipe["ode_steps"]), "heun",
                         generator=torch.Generator().manual_seed(seed + 1))
    student = copy.deepcopy(teacher).requires_grad_(True)
    result = train_student(pairs, student, recipe["student_steps"], batch_size=recipe["batch_size"],
                           lr=recipe["student_lr"], generator=torch.Generator().manual_seed(seed + 2),
                           progress=progress, lr_schedule="cosine")
    result.seconds = time.perf_counter() - start
    result.settings = {"data": "moons", "recipe": "flowlab.distill.reflow_moons", **recipe,
                       "optimizer": "Adam", "lr_schedule": "cosine", "device": "cpu"}
    result.teacher = teacher
    return result
