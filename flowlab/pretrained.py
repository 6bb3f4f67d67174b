"""Small pretrained checkpoints shipped in the repository's ``data/checkpoints/`` folder (and in the package).

Notebooks load these where training would take too long on a laptop CPU::

    from flowlab import pretrained
    model = pretrained.load("moons")            # an MLP velocity net, eval mode, on the CPU
    pretrained.info("moons")["metrics"]         # how good it is, measured when it was saved

The folder is ``flowlab.locations.checkpoint_dir()``: the checkout's ``data/checkpoints`` (the
editable install that the Makefile makes), the copy installed with the package (a plain
``pip install .``), or ``$FLOWLAB_DATA/checkpoints`` when that variable is set.

How the shipped ``moons`` checkpoint was made (CPU, 14 s on one thread)::

    flowlab train toy --data moons --steps 3000 --out data/checkpoints/moons

which is, in Python::

    from flowlab import pretrained, train
    result = train.train_toy(data="moons", steps=3000, seed=0)
    pretrained.save_toy(result, "data/checkpoints/moons")

Its JSON records the settings, the training time and the sample quality measured at save time by
``evaluate_toy``: the sliced W2 distance of 5,000 model samples (Heun, 50 steps) to 5,000 data
points, and the floor, the same distance between two independent 5,000-point data draws. For
``moons``: 0.0235 against a floor of 0.0106.

``moons_reflow`` is the few-step moons flow (notebook 07; ``flowlab bench moons`` compares it with
``moons``): ``flowlab train moons-reflow --out data/checkpoints/moons_reflow``, i.e.
``flowlab.distill.reflow_moons(seed=0)`` on one torch thread (teacher, reflow pairs, student; 926 s
on two shared CPU cores). Its JSON adds ``few_step``: sliced W2 over the floor after 1, 2, 4 and 16
Euler steps (20,000 points, 200 projections): 3.17, 3.05, 3.00 (2.999) and 2.89.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from flowlab import checkpoints, schedules
from flowlab.locations import checkpoint_dir
from flowlab.validate import require_choice
from flowlab.metrics import sliced_wasserstein
from flowlab.solvers import integrate

def available() -> list[str]:
    """Names of the checkpoints present (a ``.safetensors`` file with its ``.json`` beside it)."""
    folder = checkpoint_dir()
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.safetensors") if p.with_suffix(".json").is_file())


def _path(name: str) -> Path:
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    if name not in available():
        raise ValueError(f"unknown pretrained checkpoint {name!r}; available in {checkpoint_dir()}: "
                         f"{available()}")
    return checkpoint_dir() / name


def load(name: str, device: str | torch.device = "cpu") -> nn.Module:
    """The pretrained model ``name`` (e.g. ``"moons"``), in eval mode on ``device``."""
    model, _ = checkpoints.load(_path(name), map_location=device)
    return model.eval()


def info(name: str) -> dict:
    """The checkpoint's JSON record: ``{"model", "config", "steps", "train_seconds", "metrics", ...}``."""
    return checkpoints.read_meta(_path(name))


def evaluate_toy(model: nn.Module, data: str, n: int = 5000, n_steps: int = 50, method: str = "heun",
                 seed: int = 1) -> dict:
    """Sample quality of a 2D toy model, as recorded in a checkpoint's JSON.

    Draws ``n`` model samples (``method`` on ``schedules.uniform(n_steps)`` from ``N(0, I)``) and
    two independent ``n``-point data draws ``d1``, ``d2``; returns ``{"sliced_w2": SW2(samples, d1),
    "sliced_w2_floor": SW2(d2, d1), ...}`` (128 projections, fixed by ``seed``) plus the settings.
    A model at the floor is as close to the data as a fresh data sample is.
    """
    from flowlab.data import toy

    generator = torch.Generator().manual_seed(seed)
    data_1 = toy.sample(data, n, generator=generator)
    data_2 = toy.sample(data, n, generator=generator)
    noise = torch.randn(n, 2, generator=generator)
    device = next(model.parameters()).device
    was_training = model.training
    with torch.no_grad():
        samples = integrate(model.eval(), noise.to(device), schedules.uniform(n_steps), method).cpu()
    model.train(was_training)
    projections = lambda: torch.Generator().manual_seed(seed + 1)  # the same directions for both
    return {"sliced_w2": sliced_wasserstein(samples, data_1, generator=projections()),
            "sliced_w2_floor": sliced_wasserstein(data_2, data_1, generator=projections()),
            "n": n, "n_proj": 128, "sampler": f"{method}, {n_steps} steps, uniform", "seed": seed}


def save_toy(result, path: str | Path) -> dict:
    """Save ``result.ema_model`` of ``train.train_toy`` to ``<path>.safetensors`` / ``.json`` with its
    settings, ``train_seconds`` and the ``metrics`` of ``evaluate_toy``; returns the metadata."""
    data = require_choice("data", result.settings.get("data"), _toy_names())
    meta = {**result.settings, "train_seconds": round(result.seconds, 2),
            "final_loss": round(sum(result.losses[-100:]) / max(len(result.losses[-100:]), 1), 4),
            "metrics": evaluate_toy(result.ema_model, data)}
    checkpoints.save(path, result.ema_model, meta)
    return meta


def _toy_names() -> tuple[str, ...]:
    from flowlab.data import toy

    return toy.NAMES
