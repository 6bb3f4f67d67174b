"""``flowlab bench mnist``: guidance, solvers, classifier guidance, inversion and speed on MNIST.

Five tables, all measured with the separately trained evaluation classifier ``mnist_eval``:

a. the CFG sweep over w: class accuracy rises and within-class diversity falls as w grows;
b. CFG at the best w of the sweep, 1,000 samples (100 a class), 20 NFE with several solvers and
   grids: accuracy (target >= 98%) and Frechet distance (target <= 3x the real-vs-real floor); and
   at the next w of the sweep, because the best w sits where accuracy just reaches the target;
c. classifier guidance on the unconditional velocity, with the noisy and with the clean classifier;
d. inversion + regeneration of real test digits: reconstruction error vs NFE and solver;
e. wall time to sample 100 digits with CFG at 20 NFE (target < 10 s).

NFE counts guided-velocity evaluations. With CFG each costs 2 UNet passes (conditional and
unconditional; 1 at w = 0 or 1); with classifier guidance, 1 UNet pass plus a classifier forward and
backward pass. New noise (``seed + 1``) is drawn for (b), so the w picked in (a) is not scored on
the samples it was picked on.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from flowlab import mnist, pretrained, schedules
from flowlab.guidance import classifier_free_guidance
from flowlab.metrics import class_accuracy
from flowlab.mnist import evaluation
from flowlab.mnist.editing import reconstruction_error
from flowlab.mnist.sampling import (balanced_labels, cfg_passes_per_nfe, classifier_guided_digits, digit_noise,
                                    sample_by_label, sample_digits)
from flowlab.solvers import nfe

CFG_WS = (0.0, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 7.0)
TARGET_ACCURACY = 0.98
TARGET_FRECHET_RATIO = 3.0
TARGET_SECONDS = 10.0
# (method, schedule, steps, schedule parameters): every choice spends 20 NFE.
SOLVER_CHOICES = (("euler", "uniform", 20, {}), ("heun", "uniform", 10, {}),
                  ("adams", "logsnr", 20, {"logsnr_min": -5.0, "logsnr_max": 5.0}))


@dataclass(frozen=True)
class BenchSizes:
    """How much each table measures; ``quick()`` is for tests."""
    cfg_ws: tuple[float, ...] = CFG_WS
    sweep_per_class: int = 50
    steps: int = 20
    best_per_class: int = 100
    solver_choices: tuple = SOLVER_CHOICES
    guidance_ws: tuple[float, ...] = (3.0, 10.0, 20.0)
    guidance_t_mins: tuple[float, ...] = (0.1, 0.3)
    guidance_per_class: int = 20
    inversion_per_class: int = 10
    inversion_methods: tuple[str, ...] = ("euler", "heun", "adams")
    inversion_nfes: tuple[int, ...] = (4, 8, 16, 32, 64)
    timing_digits: int = 100
    timing_repeats: int = 3

    @classmethod
    def quick(cls) -> "BenchSizes":
        return cls(cfg_ws=(0.0, 1.0, 3.0), sweep_per_class=2, steps=4, best_per_class=2,
                   solver_choices=(("euler", "uniform", 4, {}), ("heun", "uniform", 2, {})),
                   guidance_ws=(3.0,), guidance_t_mins=(0.2,), guidance_per_class=2,
                   inversion_per_class=1, inversion_methods=("euler", "heun"), inversion_nfes=(2, 4),
                   timing_digits=10, timing_repeats=1)


@dataclass
class MnistModels:
    """The models the benchmark needs: the CFG UNet, the evaluation classifier and the two guides."""
    cfg: torch.nn.Module
    eval: torch.nn.Module
    noisy: torch.nn.Module
    clean: torch.nn.Module
    names: dict = field(default_factory=dict)


def load_models(device: str | torch.device = "cpu") -> MnistModels:
    """The shipped checkpoints ``mnist_cfg``, ``mnist_eval``, ``mnist_noisy_classifier``, ``mnist_clean_classifier``."""
    names = {"cfg": "mnist_cfg", "eval": "mnist_eval", "noisy": "mnist_noisy_classifier",
             "clean": "mnist_clean_classifier"}
    missing = [name for name in names.values() if name not in pretrained.available()]
    if missing:
        raise FileNotFoundError(f"flowlab bench mnist needs the checkpoints {missing} in "
                                f"{pretrained.checkpoint_dir()}; train them with flowlab train mnist-...")
    return MnistModels(**{role: pretrained.load(name, device) for role, name in names.items()}, names=names)


def best_guidance_weight(rows: list[dict], target_accuracy: float = TARGET_ACCURACY) -> float:
    """The ``w`` of the sweep with the lowest Frechet distance among those that reach ``target_accuracy``;
    if none does, the ``w`` with the highest accuracy."""
    if not rows:
        raise ValueError("best_guidance_weight needs at least one row of guidance_sweep")
    accurate = [row for row in rows if row["accuracy"] >= target_accuracy]
    if accurate:
        return min(accurate, key=lambda row: row["frechet"])["w"]
    return max(rows, key=lambda row: (row["accuracy"], -row["frechet"]))["w"]


def weights_to_confirm(rows: list[dict], best: float) -> list[float]:
    """``best`` and the next larger ``w`` of the sweep (if any): the weights scored on 1,000 samples.

    The best w is the smallest that reaches the accuracy target on the sweep's samples, so on new
    noise its accuracy lands on either side of the target; the next w shows the trade-off.
    """
    larger = sorted(row["w"] for row in rows if row["w"] > best)
    return [best] + larger[:1]


def solver_rows(models: MnistModels, w: float, choices=SOLVER_CHOICES, per_class: int = 100,
                seed: int = 1) -> list[dict]:
    """CFG at ``w`` with each ``(method, schedule, steps, params)`` on the same noise: quality and cost."""
    labels = balanced_labels(per_class)
    noise = digit_noise(len(labels), seed)
    rows = []
    for method, schedule, steps, params in choices:
        samples = sample_by_label(models.cfg, labels, lambda y: classifier_free_guidance(models.cfg, y, w),
                                  schedules.get(schedule, steps, **params), method, noise)
        measured = evaluation.quality(samples, labels, models.eval)
        evaluations = nfe(method, steps)
        grid = schedule + "".join(f", {k}={v:g}" for k, v in params.items())
        rows.append({"method": method, "schedule": grid, "steps": steps, "nfe": evaluations,
                     "passes": evaluations * cfg_passes_per_nfe(w), "w": w, **measured})
    return rows


def classifier_guidance_rows(models: MnistModels, ws, t_mins, per_class: int = 20, steps: int = 20,
                             method: str = "euler", seed: int = 0) -> list[dict]:
    """Classifier guidance with the noisy and the clean classifier, for each ``w`` and ``t_min``;
    a first row with no guidance (the unconditional model) for reference."""
    labels = balanced_labels(per_class)
    noise = digit_noise(len(labels), seed)
    settings = [("none", 0.0, 1.0)] + [(name, w, t_min) for name in ("noisy", "clean") for w in ws for t_min in t_mins]
    rows = []
    for name, w, t_min in settings:
        classifier = models.noisy if name != "clean" else models.clean
        samples = classifier_guided_digits(models.cfg, classifier, labels, w, t_min, steps, method,
                                                      noise=noise)
        logits, features = evaluation.eval_outputs(models.eval, samples)
        rows.append({"classifier": name, "w": w, "t_min": t_min, "nfe": nfe(method, steps),
                     "accuracy": class_accuracy(logits, labels),
                     "diversity": evaluation.class_diversity(features, labels)})
    return rows


def inversion_rows(model, images: torch.Tensor, labels: torch.Tensor, methods=("euler", "heun", "adams"),
                   nfes=(4, 8, 16, 32, 64)) -> list[dict]:
    """Round trip of real digits (invert with the true label, regenerate, w = 1, uniform grid):
    errors for each method at each NFE it can spend exactly (NFE per direction, 1 UNet pass each)."""
    device = next(model.parameters()).device
    images, labels = images.to(device), labels.to(device)
    rows = []
    for method in methods:
        for evaluations in nfes:
            steps, rest = divmod(evaluations, nfe(method, 1))
            if rest or steps < 1:
                continue
            errors = reconstruction_error(model, images, labels, schedules.uniform(steps), method)
            rows.append({"method": method, "nfe": evaluations, "steps": steps,
                         **{key: errors[key] for key in ("mse", "mean_abs", "max_abs")}})
    return rows


def sampling_seconds(model, w: float, n_digits: int = 100, steps: int = 20, repeats: int = 3) -> float:
    """Best wall time over ``repeats`` of ``sample_digits`` (CFG, Euler, ``steps`` steps) for ``n_digits``."""
    labels = torch.arange(n_digits) % 10
    best = float("inf")
    for repeat in range(repeats):
        start = time.perf_counter()
        sample_digits(model, labels, w, steps, "euler", seed=repeat)
        best = min(best, time.perf_counter() - start)
    return best


# ---- tables --------------------------------------------------------------------------------------

# A column: (title, key of the row, format spec with alignment and width, text after the cell).
Column = tuple[str, str, str, str]


def format_rows(rows: list[dict], columns: list[Column]) -> list[str]:
    """A header line and one line a row; each title is aligned and padded like its column's values."""
    def title(name: str, spec: str) -> str:
        align, width = spec[0], "".join(ch for ch in spec[1:].split(".")[0] if ch.isdigit())
        return f"{name:{align}{width}}"

    lines = ["".join(title(name, spec) + after for name, _, spec, after in columns)]
    lines += ["".join(f"{row[key]:{spec}}" + after for _, key, spec, after in columns) for row in rows]
    return [line.rstrip() for line in lines]


SWEEP_COLUMNS = [("w", "w", ">5g", ""), ("NFE", "nfe", ">5", ""), ("passes", "passes", ">8", ""),
                 ("accuracy", "accuracy", ">10.1%", ""), ("diversity", "diversity", ">11.3f", ""),
                 ("Frechet", "frechet", ">9.2f", ""), ("floor", "frechet_floor", ">8.2f", "")]
SOLVER_COLUMNS = [("w", "w", ">5g", "  "), ("method", "method", "<9", ""), ("grid", "schedule", "<34", ""),
                  ("steps", "steps", ">6", ""), ("NFE", "nfe", ">5", ""), ("passes", "passes", ">8", ""),
                  ("accuracy", "accuracy", ">10.1%", ""), ("Frechet", "frechet", ">9.2f", ""),
                  ("floor", "frechet_floor", ">8.2f", ""), ("ratio", "ratio", ">7.2f", "  "),
                  ("targets", "targets", "<7", "")]
GUIDANCE_COLUMNS = [("classifier", "classifier", "<12", ""), ("w", "w", ">6g", ""), ("t_min", "t_min", ">7g", ""),
                    ("NFE", "nfe", ">5", ""), ("accuracy", "accuracy", ">10.1%", ""),
                    ("diversity", "diversity", ">11.3f", "")]
INVERSION_COLUMNS = [("method", "method", "<9", ""), ("NFE", "nfe", ">5", ""), ("steps", "steps", ">6", ""),
                     ("MSE", "mse", ">11.2e", ""), ("mean |err|", "mean_abs", ">12.2e", ""),
                     ("max |err|", "max_abs", ">11.2e", "")]


def format_sweep_table(rows: list[dict], real_diversity: float) -> str:
    lines = format_rows(rows, SWEEP_COLUMNS)
    lines.append(f"{'real test digits':<28}{real_diversity:>11.3f}{'-':>9}{rows[0]['frechet_floor']:>8.2f}")
    return "\n".join(lines)


def format_solver_table(rows: list[dict]) -> str:
    def judged(row: dict) -> dict:
        ratio = row["frechet"] / row["frechet_floor"]
        met = row["accuracy"] >= TARGET_ACCURACY and ratio <= TARGET_FRECHET_RATIO
        return {**row, "ratio": ratio, "targets": "met" if met else "missed"}

    return "\n".join(format_rows([judged(row) for row in rows], SOLVER_COLUMNS))


def format_guidance_table(rows: list[dict]) -> str:
    return "\n".join(format_rows(rows, GUIDANCE_COLUMNS))


def format_inversion_table(rows: list[dict]) -> str:
    return "\n".join(format_rows(rows, INVERSION_COLUMNS))


# ---- the command ---------------------------------------------------------------------------------

def run_bench(models: MnistModels, sizes: BenchSizes, seed: int = 0, out=print) -> dict:
    """Measure and print the five tables with ``models``; returns their rows (and the chosen w)."""
    steps = sizes.steps
    out(f"(a) CFG sweep: euler, {steps} uniform steps ({steps} NFE; 2 UNet passes per NFE except at w = 0 "
        f"and 1), {10 * sizes.sweep_per_class} samples ({sizes.sweep_per_class} a class), the same noise for every w; "
        "diversity = mean feature distance between two samples of a class (eval classifier)")
    sweep = evaluation.guidance_sweep(models.cfg, sizes.cfg_ws, sizes.sweep_per_class, steps, "euler",
                                      models.eval, seed=seed)
    real_diversity = evaluation.real_class_diversity(sizes.sweep_per_class, models.eval, seed)
    out(format_sweep_table(sweep, real_diversity) + "\n")
    w = best_guidance_weight(sweep)
    confirm = weights_to_confirm(sweep, w)
    out(f"(b) CFG at w = {w:g} (lowest Frechet among w with accuracy >= {TARGET_ACCURACY:.0%} in (a)) and at the next "
        f"w of the sweep, {10 * sizes.best_per_class} samples ({sizes.best_per_class} a class) on new noise; targets: "
        f"accuracy >= {TARGET_ACCURACY:.0%}, Frechet <= {TARGET_FRECHET_RATIO:g}x floor (real vs real, same sizes)")
    solvers = [row for w_b in confirm
               for row in solver_rows(models, w_b, sizes.solver_choices, sizes.best_per_class, seed + 1)]
    out(format_solver_table(solvers) + "\n")
    out(f"(c) classifier guidance on the unconditional velocity, euler {steps} steps, {10 * sizes.guidance_per_class} "
        "samples; each NFE = 1 UNet pass + 1 classifier forward/backward (for t >= t_min)")
    guided = classifier_guidance_rows(models, sizes.guidance_ws, sizes.guidance_t_mins, sizes.guidance_per_class,
                                      steps, seed=seed)
    out(format_guidance_table(guided) + "\n")
    test = mnist.subset(mnist.load("test"), per_class=sizes.inversion_per_class, generator=seed)
    out(f"(d) inversion + regeneration of {len(test)} real test digits (true label, w = 1, uniform grid); "
        "NFE per direction, errors per pixel in [-1, 1] units")
    inversion = inversion_rows(models.cfg, test.images, test.labels, sizes.inversion_methods, sizes.inversion_nfes)
    out(format_inversion_table(inversion) + "\n")
    seconds = sampling_seconds(models.cfg, w, sizes.timing_digits, steps, sizes.timing_repeats)
    passes = cfg_passes_per_nfe(w) * steps
    out(f"(e) {sizes.timing_digits} digits, CFG w = {w:g}, euler {steps} steps ({passes} UNet passes): {seconds:.2f} s "
        f"(best of {sizes.timing_repeats}; target < {TARGET_SECONDS:g} s for 100), {torch.get_num_threads()} torch threads")
    return {"sweep": sweep, "real_diversity": real_diversity, "w": w, "solvers": solvers,
            "classifier_guidance": guided, "inversion": inversion, "seconds": seconds}


def main_mnist(quick: bool = False, seed: int = 0, device: str | torch.device = "cpu") -> dict:
    """Load the shipped checkpoints and print the benchmark (``quick``: tiny sizes, for tests).

    Runs on one torch thread: on a small shared CPU a second thread that competes with other work
    made a UNet pass 10x slower (1.47 s instead of 0.15 s for 100 digits), and one thread is what
    a student's busy laptop reliably gets.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run_main(quick, seed, device)
    finally:
        torch.set_num_threads(previous)


def _run_main(quick: bool, seed: int, device: str | torch.device) -> dict:
    start = time.perf_counter()
    models = load_models(device)
    sizes = BenchSizes.quick() if quick else BenchSizes()
    print(f"MNIST benchmark on {device} ({mnist.load('test').source}); checkpoints: "
          + ", ".join(models.names.values()) + "\n", flush=True)
    results = run_bench(models, sizes, seed, out=lambda text: print(text, flush=True))
    print(f"\n(bench took {time.perf_counter() - start:.0f} s, torch {torch.__version__})")
    return results
