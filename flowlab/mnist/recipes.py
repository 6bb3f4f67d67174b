"""How every MNIST checkpoint in ``data/checkpoints`` is trained: one recipe a checkpoint.

``flowlab train <recipe> --out data/checkpoints/<name>`` reproduces a checkpoint; the JSON beside
it records the recipe's settings, the data source, the steps, the wall time, the device and the
metrics measured at save time (``recipe_metrics``, with ``flowlab.mnist.evaluation``).

| recipe | model | objective |
|---|---|---|
| mnist-eval | ``EvalClassifier`` | cross-entropy on clean digits, random shifts (used only by metrics) |
| mnist-cfg | ``UNet`` | flow matching with labels, 10% replaced by the null label (CFG) |
| mnist-noisy-classifier | ``NoisyClassifier`` | cross-entropy on ``x_t = (1-t) x0 + t x1``, t ~ U[0, 1] |
| mnist-clean-classifier | ``CleanClassifier`` | cross-entropy on clean digits only |
| mnist-condition | ``ImageConditionedUNet`` | flow matching given the top half or a 4x low-resolution copy |
| mnist-reflow | ``UNet`` (from ``mnist_cfg``) | reflow: straight lines between the teacher's (noise, digit) pairs |

All recipes train on the ``train`` split of ``flowlab.mnist.data`` (reflow: on pairs drawn from
the ``mnist_cfg`` teacher) and keep the ``test`` split for the metrics. Every random draw comes
from one seeded generator.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from flowlab import checkpoints, mnist, models, pretrained
from flowlab.metrics import class_accuracy
from flowlab.mnist import evaluation
from flowlab.mnist.reflow import TEACHER, reflow_objective, teacher_pairs
from flowlab.mnist.sampling import balanced_labels, sample_digits
from flowlab.models.conditioned import condition_mask, low_resolution_condition, top_half_condition
from flowlab.paths import interpolate
from flowlab.train import TrainResult, fit, flow_matching_loss, label_dropout
from flowlab.validate import require_choice


@dataclass(frozen=True)
class Recipe:
    """A checkpoint's model, objective and default settings."""
    name: str
    checkpoint: str
    build: Callable[[], torch.nn.Module]
    objective: Callable
    steps: int
    batch_size: int = 128
    lr: float = 2e-3
    ema_decay: float = 0.999
    extra: dict = field(default_factory=dict)
    data: Callable[[torch.Generator], object] = lambda generator: mnist.load("train")


def random_shift(x: torch.Tensor, generator: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Translate each image by up to ``max_shift`` pixels in x and y (zero padding), for augmentation."""
    padded = F.pad(x, (max_shift,) * 4, value=-1.0)
    shifts = torch.randint(0, 2 * max_shift + 1, (x.shape[0], 2), generator=generator)
    rows = torch.arange(28)[None, :] + shifts[:, :1]                      # (B, 28)
    cols = torch.arange(28)[None, :] + shifts[:, 1:]
    index = torch.arange(x.shape[0])[:, None, None]
    return padded[:, 0][index, rows[:, :, None], cols[:, None, :]].unsqueeze(1)


def _batch(data: mnist.MnistData, n: int, generator: torch.Generator):
    index = torch.randint(0, len(data), (n,), generator=generator)
    return data.images[index], data.labels[index]


def classification_objective(noisy: bool = False, augment: bool = False):
    """Cross-entropy on digits (``noisy``: on ``x_t`` at a uniform time; ``augment``: random shifts)."""
    def loss(model, data, batch_size, generator, device):
        x, y = _batch(data, batch_size, generator)
        if augment:
            x = random_shift(x, generator)
        x, y = x.to(device), y.to(device)
        if noisy:
            t = torch.rand(x.shape[0], generator=generator).to(device)
            x0 = torch.randn(x.shape, generator=generator).to(device)
            x = interpolate(x0, x, t)
            return F.cross_entropy(model(x, t), y)
        return F.cross_entropy(model(x), y)
    return loss


def cfg_objective(label_dropout_p: float = 0.1):
    """Flow matching with labels; a fraction ``label_dropout_p`` of them becomes the null label."""
    def loss(model, data, batch_size, generator, device):
        x1, y = _batch(data, batch_size, generator)
        y = label_dropout(y, label_dropout_p, model.null_label, generator)
        return flow_matching_loss(model, x1.to(device), y=y.to(device), generator=generator)
    return loss


def condition_objective(p_drop: float = 0.1):
    """Flow matching given an image condition: the top half (even rows of the batch) or a 4x
    low-resolution copy (odd rows); a fraction ``p_drop`` sees no condition (for CFG)."""
    def loss(model, data, batch_size, generator, device):
        x1, _ = _batch(data, batch_size, generator)
        x1 = x1.to(device)
        cond = top_half_condition(x1)
        cond[1::2] = low_resolution_condition(x1[1::2])
        mask = condition_mask(batch_size, p_drop, generator=generator, device=device)
        return flow_matching_loss(lambda x, t: model(x, t, cond=cond, cond_mask=mask), x1, generator=generator)
    return loss


RECIPES = {recipe.name: recipe for recipe in (
    Recipe("mnist-eval", "mnist_eval", lambda: models.EvalClassifier(), classification_objective(augment=True),
           steps=2000),
    Recipe("mnist-cfg", "mnist_cfg", lambda: models.UNet(), cfg_objective(0.1), steps=3000,
           extra={"label_dropout_p": 0.1}),
    Recipe("mnist-noisy-classifier", "mnist_noisy_classifier", lambda: models.NoisyClassifier(),
           classification_objective(noisy=True), steps=2000),
    Recipe("mnist-clean-classifier", "mnist_clean_classifier", lambda: models.CleanClassifier(),
           classification_objective(), steps=1000),
    Recipe("mnist-condition", "mnist_condition", lambda: models.ImageConditionedUNet(), condition_objective(0.1),
           steps=1000, extra={"conditions": "top half (even rows), 4x low resolution (odd rows)",
                              "condition_dropout_p": 0.1}),
    Recipe("mnist-reflow", "mnist_reflow", lambda: pretrained.load("mnist_cfg"), reflow_objective, steps=800,
           lr=5e-4, data=teacher_pairs, extra={"teacher": TEACHER}),
)}


def train_recipe(name: str, steps: int | None = None, seed: int = 0, device: str = "cpu",
                 progress: bool = True) -> TrainResult:
    """Train the checkpoint of recipe ``name``; ``result.settings`` holds what its JSON records."""
    recipe = RECIPES[require_choice("recipe", name, RECIPES)]
    data = recipe.data(torch.Generator().manual_seed(seed + 1))
    steps = recipe.steps if steps is None else steps
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = recipe.build().to(device)
    result = fit(model, lambda g: recipe.objective(model, data, recipe.batch_size, g, device), steps,
                 lr=recipe.lr, ema_decay=recipe.ema_decay, generator=torch.Generator().manual_seed(seed),
                 progress=progress, lr_schedule="cosine", desc=name)
    result.settings.update(recipe=name, seed=seed, batch_size=recipe.batch_size, device=str(device),
                           data_source=data.source, train_examples=len(data), **recipe.extra)
    return result


def reflow_metrics(student, steps=(1, 2), per_class: int = 50) -> dict:
    """Quality of the student's few-step samples, beside the teacher's with the same steps and noise."""
    teacher = pretrained.load(TEACHER["checkpoint"])
    labels = balanced_labels(per_class)
    out = {}
    for n in steps:
        out[f"student, {n} euler step(s), w=1"] = evaluation.quality(sample_digits(student, labels, 1.0, steps=n),
                                                                      labels)
        out[f"teacher, {n} euler step(s), w={TEACHER['w']:g}"] = evaluation.quality(
            sample_digits(teacher, labels, TEACHER["w"], steps=n), labels)
    return out


def recipe_metrics(recipe: str, model) -> dict:
    """The metrics a recipe's checkpoint records at save time."""
    if recipe == "mnist-eval":
        test = mnist.load("test")
        return {"test_accuracy": class_accuracy(evaluation.eval_outputs(model, test.images)[0], test.labels),
                "n_test": len(test)}
    if recipe == "mnist-cfg":
        labels = balanced_labels(50)
        return {f"w={w:g}": evaluation.quality(sample_digits(model, labels, w), labels)
                | {"sampler": "euler, 20 steps"} for w in (1.0, 3.0)}
    if recipe in ("mnist-noisy-classifier", "mnist-clean-classifier"):
        return {"test_accuracy_on_x_t": evaluation.noisy_accuracy(model)}
    if recipe == "mnist-condition":
        return evaluation.completion_quality(model)
    if recipe == "mnist-reflow":
        return reflow_metrics(model)
    raise ValueError(f"no metrics defined for recipe {recipe!r}")


def save_recipe(result: TrainResult, path) -> dict:
    """Save ``result.ema_model`` with its settings, wall time and metrics; returns the JSON record."""
    meta = {**result.settings, "train_seconds": round(result.seconds, 1),
            "final_loss": round(sum(result.losses[-100:]) / max(len(result.losses[-100:]), 1), 4),
            "metrics": recipe_metrics(result.settings["recipe"], result.ema_model.eval())}
    checkpoints.save(path, result.ema_model, meta)
    return meta
