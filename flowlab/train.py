"""Flow-matching training: the loss, label dropout (and the CFG loss built on both), an EMA of the weights
and the training loop.

Conventions (docs/DESIGN.md): t = 0 is noise ``x0 ~ N(0, I)``, t = 1 is data ``x1``, the path is
``x_t = (1 - t) x0 + t x1`` and the regression target is the conditional velocity ``x1 - x0``:

    L(theta) = E_{t ~ U[0, 1], x0, x1} || v_theta(x_t, t, y) - (x1 - x0) ||^2.

Randomness (x0, t, label dropout, data) comes from one ``torch.Generator`` on the CPU and is moved
to the model's device, so the same seed gives the same weights, and the same noise on CPU and GPU.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from flowlab.validate import require_batch, require_choice, require_positive_int, require_same_shape, require_tensor
from flowlab.paths import interpolate, target_velocity


def make_generator(generator: torch.Generator | int | None) -> torch.Generator:
    """A CPU ``torch.Generator``: passed through, seeded from an int, or fresh (seeded by torch)."""
    if isinstance(generator, torch.Generator):
        return generator
    if generator is None:
        return torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,))))
    if isinstance(generator, int) and not isinstance(generator, bool):
        return torch.Generator().manual_seed(generator)
    raise TypeError(f"generator must be a torch.Generator, an int seed or None, got {type(generator).__name__}")


def _draw(fn, shape, generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    """``fn(shape)`` drawn on the generator's device, then moved to ``like``'s device and dtype."""
    device = generator.device if generator is not None else like.device
    return fn(shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


def _call(model, x: torch.Tensor, t: torch.Tensor, y) -> torch.Tensor:
    return model(x, t) if y is None else model(x, t, y=y)


def flow_matching_loss(model: Callable, x1: torch.Tensor, x0: torch.Tensor | None = None,
                       t: torch.Tensor | None = None, y: torch.Tensor | None = None,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Conditional flow-matching loss, a 0-d tensor:

        mean over the batch of || model(x_t, t, y) - (x1 - x0) ||^2,   x_t = (1 - t) x0 + t x1,

    the squared norm summed over all non-batch dimensions. ``x1``: ``(B, ...)`` data;
    ``x0``: noise of the same shape (drawn ``N(0, I)`` if omitted); ``t``: ``(B,)`` times (drawn
    ``U[0, 1]`` if omitted); ``y``: labels passed as ``model(..., y=y)`` (omitted when ``None``).
    """
    require_batch("x1", x1)
    x0 = _draw(torch.randn, x1.shape, generator, x1) if x0 is None else x0
    require_same_shape(x0=x0, x1=x1)
    t = _draw(torch.rand, (x1.shape[0],), generator, x1) if t is None else t
    prediction = _call(model, interpolate(x0, x1, t), t, y)
    if not isinstance(prediction, torch.Tensor) or prediction.shape != x1.shape:
        got = tuple(prediction.shape) if isinstance(prediction, torch.Tensor) else type(prediction).__name__
        raise ValueError(f"the model must return a velocity shaped like x1 {tuple(x1.shape)}, got {got}")
    squared_error = (prediction - target_velocity(x0, x1)).pow(2)
    return squared_error.flatten(1).sum(1).mean()


def sgd_step(model: nn.Module, x1: torch.Tensor, lr: float, generator: torch.Generator | None = None) -> float:
    """One step of plain gradient descent on ``flow_matching_loss(model, x1, generator=generator)``.

    ``x1``: a batch ``(B, ...)``; the noise and the times are drawn from ``generator``. Every
    parameter of ``model`` that requires a gradient moves by ``-lr`` times its gradient, in place.
    Returns the loss before the step, as a float.
    """
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    parameters = [parameter for parameter in model.parameters() if parameter.requires_grad]
    loss = flow_matching_loss(model, x1, generator=generator)
    gradients = torch.autograd.grad(loss, parameters)
    with torch.no_grad():
        for parameter, gradient in zip(parameters, gradients):
            parameter -= lr * gradient
    return loss.item()


def label_dropout(y: torch.Tensor, p: float, null_label: int,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace each label by ``null_label`` independently with probability ``p`` (a new tensor).

    Training with it teaches one network both the conditional velocity ``v(x, t, y)`` and the
    unconditional one ``v(x, t, null)``, which classifier-free guidance combines.
    """
    require_tensor("y", y)
    if y.is_floating_point() or y.dim() != 1:
        raise ValueError(f"y must be a (B,) tensor of integer labels, got dtype {y.dtype}, shape {tuple(y.shape)}")
    if not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be a probability in [0, 1], got {p!r}")
    if not isinstance(null_label, int):
        raise TypeError(f"null_label must be an int, got {type(null_label).__name__}")
    device = generator.device if generator is not None else y.device
    drop = (torch.rand(y.shape, generator=generator, device=device) < p).to(y.device)
    return torch.where(drop, torch.full_like(y, null_label), y)


def cfg_loss(model: Callable, x1: torch.Tensor, y: torch.Tensor, p: float, null_label: int,
             generator: torch.Generator) -> torch.Tensor:
    """The flow-matching loss of a classifier-free-guidance training step, a 0-d tensor.

    The labels ``y`` ``(B,)`` go through ``label_dropout(y, p, null_label, generator)``; then, from
    the same CPU ``generator``, in this order and in float32 (whatever ``x1``'s dtype and device):
    the noise ``x0 = torch.randn(x1.shape)`` and the times ``t = torch.rand(B)``, converted to ``x1``.
    Returns ``flow_matching_loss(model, x1, x0, t, y=dropped labels)``: one model call, on the
    batch ``x1`` ``(B, ...)``. Backpropagate it and step an optimiser, and the model learns the
    conditional and the unconditional velocity at once.
    """
    require_batch("x1", x1)
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    dropped = label_dropout(y, p, null_label, generator)
    x0 = torch.randn(x1.shape, generator=generator).to(x1)
    t = torch.rand(x1.shape[0], generator=generator).to(x1)
    return flow_matching_loss(model, x1, x0=x0, t=t, y=dropped.to(x1.device))


class EMA:
    """Exponential moving average of a model's parameters, kept in the copy ``self.model``.

    Each ``update()`` sets, for every parameter, ``ema = d * ema + (1 - d) * current`` with
    ``d = decay``, or, with ``warmup=True``, ``d = min(decay, (1 + n) / (10 + n))`` after ``n``
    previous updates, so that short runs are not dominated by the random initial weights.
    Buffers (e.g. batch-norm statistics) are copied, not averaged.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(decay, (int, float)) or not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay must lie in [0, 1], got {decay!r}")
        self.source, self.decay, self.warmup, self.updates = model, float(decay), warmup, 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    def current_decay(self) -> float:
        """The decay the next ``update()`` will use."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self) -> None:
        """Move the average towards the source model's current weights."""
        decay = self.current_decay()
        for average, current in zip(self.model.parameters(), self.source.parameters()):
            average.lerp_(current.detach(), 1.0 - decay)
        for average, current in zip(self.model.buffers(), self.source.buffers()):
            average.copy_(current)
        self.updates += 1


@dataclass
class Batch:
    """What ``sample_batch`` may return instead of ``x1`` or ``(x1, y)``: data ``x1``, optionally
    its paired noise ``x0`` (reflow) and labels ``y``."""
    x1: torch.Tensor
    x0: torch.Tensor | None = None
    y: torch.Tensor | None = None


@dataclass
class TrainResult:
    """The trained ``model``, its ``ema_model`` (use this one to sample), the loss of every step,
    the wall-clock ``seconds`` and the ``settings`` the run used (for the checkpoint's JSON)."""
    model: nn.Module
    ema_model: nn.Module
    losses: list[float]
    seconds: float
    settings: dict = field(default_factory=dict)


def as_batch(drawn, device: torch.device) -> Batch:
    """Normalise what ``sample_batch`` returned (``x1``, ``(x1, y)`` or a ``Batch``) onto ``device``."""
    if isinstance(drawn, torch.Tensor):
        drawn = Batch(drawn)
    elif isinstance(drawn, (tuple, list)) and len(drawn) == 2:
        drawn = Batch(drawn[0], y=drawn[1])
    elif not isinstance(drawn, Batch):
        raise TypeError(f"sample_batch(n, generator) must return x1, (x1, y) or a Batch, "
                        f"got {type(drawn).__name__}")
    move = (lambda a: None if a is None else a.to(device))
    return Batch(move(drawn.x1), move(drawn.x0), move(drawn.y))


def _model_device(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _cosine(step: int, steps: int) -> float:
    return 0.5 * (1 + math.cos(math.pi * step / max(steps, 1)))


LR_SCHEDULES = {"constant": lambda step, steps: 1.0, "cosine": _cosine}


def fit(model: nn.Module, step_loss: Callable[[torch.Generator], torch.Tensor], steps: int,
        lr: float = 1e-3, ema_decay: float = 0.999, generator: torch.Generator | int | None = None,
        progress: bool = True, lr_schedule: str = "constant", desc: str = "training") -> TrainResult:
    """The loop every trainer shares: ``steps`` Adam steps on ``step_loss(generator)``, an EMA of the
    weights, an optional cosine learning-rate decay and a tqdm bar.

    ``step_loss`` draws its own batch from ``generator`` and returns a 0-d loss. ``lr_schedule``:
    ``"constant"``, or ``"cosine"``: ``lr * (1 + cos(pi * step / steps)) / 2`` (to 0 at the end).
    The model is trained in place and left in eval mode.
    """
    require_choice("lr_schedule", lr_schedule, LR_SCHEDULES)
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative int, got {steps!r}")
    generator = make_generator(generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, partial(LR_SCHEDULES[lr_schedule], steps=steps))
    ema = EMA(model, ema_decay)
    losses: list[float] = []
    start = time.perf_counter()
    model.train()
    bar = tqdm(range(steps), desc=desc, disable=not progress, leave=False)
    for step in bar:
        loss = step_loss(generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        ema.update()
        losses.append(loss.item())
        if step % 50 == 0:
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
    model.eval()
    settings = {"steps": steps, "lr": lr, "ema_decay": ema_decay, "optimizer": "Adam", "lr_schedule": lr_schedule}
    return TrainResult(model, ema.model, losses, time.perf_counter() - start, settings)


def train(model: nn.Module, sample_batch: Callable, steps: int, batch_size: int = 256, lr: float = 1e-3,
          ema_decay: float = 0.999, generator: torch.Generator | int | None = None, progress: bool = True,
          label_dropout_p: float = 0.0, lr_schedule: str = "constant") -> TrainResult:
    """Train ``model`` by flow matching with Adam for ``steps`` steps; returns a ``TrainResult``.

    ``sample_batch(n, generator)`` draws ``n`` training points: a tensor ``x1``, a pair ``(x1, y)``
    or a ``Batch`` (with paired noise ``x0`` for reflow). Each step draws a batch, applies label
    dropout with probability ``label_dropout_p`` (needs ``model.null_label``), takes one Adam step on
    ``flow_matching_loss`` and updates the EMA (see ``fit``). Data, noise and times all come from
    ``generator`` (an int seed or a CPU ``torch.Generator``): fix it and the model's initial
    weights, and the run is reproducible. ``progress=False`` hides the tqdm bar.
    """
    require_positive_int("batch_size", batch_size)
    if label_dropout_p and getattr(model, "null_label", None) is None:
        raise ValueError("label_dropout_p > 0 needs a class-conditional model with a `null_label`")
    device = _model_device(model)

    def step_loss(generator: torch.Generator) -> torch.Tensor:
        batch = as_batch(sample_batch(batch_size, generator), device)
        y = batch.y
        if y is not None and label_dropout_p:
            y = label_dropout(y, label_dropout_p, model.null_label, generator)
        return flow_matching_loss(model, batch.x1, x0=batch.x0, y=y, generator=generator)

    result = fit(model, step_loss, steps, lr=lr, ema_decay=ema_decay, generator=generator,
                 progress=progress, lr_schedule=lr_schedule, desc="flow matching")
    result.settings.update(batch_size=batch_size, label_dropout_p=label_dropout_p)
    return result


def train_toy(data: str = "moons", steps: int = 3000, seed: int = 0, batch_size: int = 1024,
              lr: float = 1e-2, lr_schedule: str = "cosine", ema_decay: float = 0.999, hidden: int = 64,
              depth: int = 3, time_embedding_dim: int = 32, device: str | torch.device = "cpu",
              progress: bool = True) -> TrainResult:
    """Train an unconditional ``MLP`` on the 2D toy data set ``data`` (see ``flowlab.data.toy``).

    ``seed`` fixes the initial weights and every random draw of the run; the global torch RNG is
    left untouched. ``result.settings`` records the data, seed and optimiser settings (the
    architecture is in ``result.ema_model.config``). This is what
    ``flowlab train toy --data moons --steps N --out PATH`` runs.

    The defaults were tuned on moons (one CPU thread): a 64-wide MLP (10.7k parameters, 43 kB),
    large batches and a high, cosine-decayed learning rate reach a sliced W2 of 2.2x the
    5,000-point data-vs-data floor in 3,000 steps (10-15 s), 2.9x in 1,000; ``train``'s generic
    defaults (lr 1e-3, batch 256, constant; 128 wide) are still at 3.3x after 6,000 steps.
    """
    from flowlab.data import toy
    from flowlab.models import MLP

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MLP(dim=2, hidden=hidden, depth=depth, time_embedding_dim=time_embedding_dim).to(device)

    def sample_data(n: int, generator: torch.Generator) -> torch.Tensor:
        return toy.sample(data, n, generator=generator)

    result = train(model, sample_data, steps, batch_size=batch_size, lr=lr, ema_decay=ema_decay,
                   generator=torch.Generator().manual_seed(seed), progress=progress, lr_schedule=lr_schedule)
    result.settings = {"data": data, "seed": seed, **result.settings, "device": str(torch.device(device))}
    return result
