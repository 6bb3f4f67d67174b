"""Test cases of notebook 01 (flow matching in 2D): ``interpolate``, ``flow_matching_loss``, the
training step ``sgd_step`` and the sampling loop ``euler_sample``.

Instructor only: never released, never copied into the sandbox (the sandbox gets the inputs as
arrays). After editing, run ``flowlab references`` and ``pytest tests/test_grading_cases.py``.
"""
import torch

from flowlab.validate import expand_time, time_batch
from flowlab_grader.cases import AssignmentCases, Case, GradedFunction, Mutation, Wrong
from flowlab.runtime.compare import IGNORES_GENERATOR, AllClose, SeededMean
from flowlab.runtime.codec import GeneratorSeed
from flowlab.runtime.fixtures import AffineVelocity, TanhVelocity
from flowlab.runtime.side_effects import GLOBAL_RANDOM_HINT

ASSIGNMENT = "01_flow_matching"
INTERPOLATE_CELL = "hidden_tests_interpolate"
LOSS_CELL = "hidden_tests_flow_matching_loss"
SGD_CELL = "hidden_tests_sgd_step"
EULER_CELL = "hidden_tests_euler_sample"


# ---- plausible wrong answers (same signatures as the graded functions) ----------------------------

def _times(t, x):
    """t (a float or (B,)) shaped to multiply x: (B, 1, ..., 1)."""
    return expand_time(time_batch(t, x), x)


def interpolate_swapped(x0, x1, t):
    t = _times(t, x0)
    return t * x0 + (1 - t) * x1


def interpolate_no_decay(x0, x1, t):
    return x0 + _times(t, x0) * x1


def _loss(model, x1, x0, t, y, path=None, target=None, reduce=None):
    x_t = (path or (lambda: (1 - _times(t, x0)) * x0 + _times(t, x0) * x1))()
    prediction = model(x_t, t) if y is None else model(x_t, t, y=y)
    squared = (prediction - (target if target is not None else x1 - x0)) ** 2
    return reduce(squared) if reduce else squared.flatten(1).sum(1).mean()


def _draws(x1, x0, t, generator):
    x0 = torch.randn(x1.shape, generator=generator, dtype=x1.dtype) if x0 is None else x0
    t = torch.rand(x1.shape[0], generator=generator, dtype=x1.dtype) if t is None else t
    return x0, t


def loss_target_reversed(model, x1, x0=None, t=None, y=None, generator=None):
    x0, t = _draws(x1, x0, t, generator)
    return _loss(model, x1, x0, t, y, target=x0 - x1)


def loss_target_data(model, x1, x0=None, t=None, y=None, generator=None):
    x0, t = _draws(x1, x0, t, generator)
    return _loss(model, x1, x0, t, y, target=x1)


def loss_summed_over_batch(model, x1, x0=None, t=None, y=None, generator=None):
    x0, t = _draws(x1, x0, t, generator)
    return _loss(model, x1, x0, t, y, reduce=lambda squared: squared.sum())


def loss_mean_over_coordinates(model, x1, x0=None, t=None, y=None, generator=None):
    x0, t = _draws(x1, x0, t, generator)
    return _loss(model, x1, x0, t, y, reduce=lambda squared: squared.mean())


def loss_global_seed(model, x1, x0=None, t=None, y=None, generator=None):
    """Seeds the global stream for "reproducibility" and draws from it, ignoring generator."""
    torch.manual_seed(0)
    x0 = torch.randn(x1.shape, dtype=x1.dtype) if x0 is None else x0
    t = torch.rand(x1.shape[0], dtype=x1.dtype) if t is None else t
    return _loss(model, x1, x0, t, y)


def loss_own_generator(model, x1, x0=None, t=None, y=None, generator=None):
    """Draws from a generator of its own with a fixed seed: reproducible, but deaf to generator."""
    x0, t = _draws(x1, x0, t, torch.Generator().manual_seed(0))
    return _loss(model, x1, x0, t, y)


def loss_swapped_path(model, x1, x0=None, t=None, y=None, generator=None):
    x0, t = _draws(x1, x0, t, generator)
    return _loss(model, x1, x0, t, y, path=lambda: interpolate_swapped(x0, x1, t))


def _descend(model, loss, lr):
    parameters = list(model.parameters())
    with torch.no_grad():
        for parameter, gradient in zip(parameters, torch.autograd.grad(loss, parameters)):
            parameter -= lr * gradient
    return loss.item()


def _fm_loss(model, x1, generator):
    x0, t = _draws(x1, None, None, generator)
    return _loss(model, x1, x0, t, None)


def sgd_ascent(model, x1, lr, generator=None):
    return _descend(model, _fm_loss(model, x1, generator), -lr)


def sgd_ignores_lr(model, x1, lr, generator=None):
    return _descend(model, _fm_loss(model, x1, generator), 1.0)


def sgd_own_generator(model, x1, lr, generator=None):
    return _descend(model, _fm_loss(model, x1, torch.Generator().manual_seed(0)), lr)


def sgd_global_seed(model, x1, lr, generator=None):
    torch.manual_seed(0)
    return _descend(model, _fm_loss(model, x1, None), lr)


def sgd_returns_loss_after(model, x1, lr, generator=None):
    """Steps, then reports the loss of the moved model on the same draws."""
    x0, t = _draws(x1, None, None, generator)
    _descend(model, _loss(model, x1, x0, t, None), lr)
    return _loss(model, x1, x0, t, None).item()


def _euler_path(velocity, x0, n_steps, next_point):
    times = torch.linspace(0, 1, n_steps + 1, dtype=torch.float64).tolist()
    path = [x0]
    with torch.no_grad():
        for t, t_next in zip(times[:-1], times[1:]):
            path.append(next_point(velocity, path, t, t_next))
    return torch.stack(path)


def _v(velocity, x, t):
    return velocity(x, torch.full((x.shape[0],), float(t), dtype=x.dtype))


def euler_slope_at_end(velocity, x0, n_steps):
    return _euler_path(velocity, x0, n_steps, lambda v, path, t, t_next: path[-1] + (t_next - t) * _v(v, path[-1], t_next))


def euler_without_h(velocity, x0, n_steps):
    return _euler_path(velocity, x0, n_steps, lambda v, path, t, t_next: path[-1] + _v(v, path[-1], t))


def euler_from_start(velocity, x0, n_steps):
    """Every step starts from the noise instead of the previous point."""
    return _euler_path(velocity, x0, n_steps, lambda v, path, t, t_next: path[0] + (t_next - t) * _v(v, path[0], t))


# ---- inputs ------------------------------------------------------------------------------------

def _affine(shape, generator, labels=0):
    draw = lambda *size: torch.randn(*size, generator=generator)
    return AffineVelocity(0.5 * draw(*shape), draw(*shape), draw(labels, *shape) if labels else None)


def points(batch, dim=2, dtype=torch.float32, with_ends=True):
    def build(generator):
        t = torch.rand(batch, generator=generator)
        if with_ends:
            t[:2] = torch.tensor([0.0, 1.0])
        return {"x0": torch.randn(batch, dim, generator=generator).to(dtype),
                "x1": (2 * torch.randn(batch, dim, generator=generator) + 1).to(dtype), "t": t.to(dtype)}
    return build


def scalar_time(batch, t):
    def build(generator):
        return {"x0": torch.randn(batch, 2, generator=generator), "x1": torch.randn(batch, 2, generator=generator) + 2,
                "t": t}
    return build


def images(batch, shape=(1, 4, 4)):
    def build(generator):
        return {"x0": torch.randn(batch, *shape, generator=generator),
                "x1": torch.rand(batch, *shape, generator=generator) * 2 - 1, "t": torch.rand(batch, generator=generator)}
    return build


def loss_inputs(batch, shape=(2,), labels=0):
    def build(generator):
        model = _affine(shape, generator, labels)
        inputs = {"model": model, "x1": 2 * torch.randn(batch, *shape, generator=generator),
                  "x0": torch.randn(batch, *shape, generator=generator), "t": torch.rand(batch, generator=generator)}
        if labels:
            inputs["y"] = torch.randint(0, labels, (batch,), generator=generator)
        return inputs
    return build


def random_draws(batch, seed):
    def build(generator):
        zero = torch.zeros(2)
        return {"model": AffineVelocity(zero, zero), "x1": torch.randn(batch, 2, generator=generator) + 1,
                "generator": GeneratorSeed(seed)}
    return build


def training_batch(batch, shape=(2,), lr=0.05, seed=5):
    """In float64 throughout: the noise and times a step draws depend on the dtype it draws in, and the
    references are computed in float64, so the student's call must draw in float64 too."""
    def build(generator):
        model = _affine(shape, generator).double()
        return {"model": model, "x1": 2 * torch.randn(batch, *shape, generator=generator, dtype=torch.float64),
                "lr": lr, "generator": GeneratorSeed(seed)}
    return build


def trajectory(batch, n_steps, shape=(2,), kind="affine", dtype=torch.float32):
    def build(generator):
        draw = lambda: torch.randn(*shape, generator=generator)
        velocity = TanhVelocity(1.5 * draw(), draw()) if kind == "tanh" else AffineVelocity(0.8 * draw(), draw())
        return {"velocity": velocity, "x0": torch.randn(batch, *shape, generator=generator).to(dtype),
                "n_steps": n_steps}
    return build


def zero_model_statistics(inputs):
    """With v = 0 the loss is mean_b |x1_b - x0_b|^2, x0 ~ N(0, I): per sample, mean |x1_b|^2 + D
    and variance 2 D + 4 |x1_b|^2 (a noncentral chi-square); the batch mean's sd follows."""
    x1 = inputs["x1"].flatten(1)
    batch, dim = x1.shape
    norms = x1.pow(2).sum(1)
    return {"mean": (norms + dim).mean(), "sd": ((2 * dim + 4 * norms).sum() / batch**2).sqrt()}


# ---- the cases ---------------------------------------------------------------------------------

INTERPOLATE = GradedFunction("interpolate", library="flowlab.paths:interpolate", positional=3, wrong={
    "swapped_time": Wrong(interpolate_swapped, "your path puts the data at t = 0 and the noise at t = 1; in this "
                                               "course t = 0 is noise: x_t = (1 - t) x0 + t x1"),
    "no_decay": Wrong(interpolate_no_decay, "at t = 1 the path must be exactly the data x1: the noise's weight "
                                            "(1 - t) must go to zero"),
})
LOSS = GradedFunction("flow_matching_loss", library="flowlab.train:flow_matching_loss", positional=2, wrong={
    "target_reversed": Wrong(loss_target_reversed, "the regression target points from data to noise; it is the "
                                                   "velocity x1 - x0 (noise at t = 0 to data at t = 1)"),
    "target_data": Wrong(loss_target_data, "the target is the velocity x1 - x0, not the data x1"),
    "summed_over_batch": Wrong(loss_summed_over_batch, "the loss is summed over the batch; take the mean over "
                                                       "the batch (sum only over each sample's coordinates)"),
    "mean_over_coordinates": Wrong(loss_mean_over_coordinates, "the loss averages over every coordinate; sum the "
                                   "squared error over a sample's coordinates, then average over the batch"),
    "swapped_path": Wrong(loss_swapped_path, "your x_t puts the data at t = 0: the model must see "
                                             "x_t = (1 - t) x0 + t x1"),
    "global_seed": Wrong(loss_global_seed, GLOBAL_RANDOM_HINT, by="side_effects"),
    "own_generator": Wrong(loss_own_generator, IGNORES_GENERATOR, by="check"),
})
SGD_STEP = GradedFunction("sgd_step", library="flowlab.train:sgd_step", positional=3, may_change=("model",), wrong={
    "ascent": Wrong(sgd_ascent, "your step moves the parameters up the gradient: the loss grows; gradient descent "
                                "moves each parameter by minus lr times its gradient"),
    "ignores_lr": Wrong(sgd_ignores_lr, "your step ignores lr: each parameter must move by lr times its gradient"),
    "own_generator": Wrong(sgd_own_generator, "your step draws its noise and times from a generator of its own: "
                                              "pass the generator you are given to flow_matching_loss"),
    "loss_after": Wrong(sgd_returns_loss_after, "you returned the loss after the step; return the loss of the "
                                                "batch before the parameters move (the one you differentiated)"),
    "global_seed": Wrong(sgd_global_seed, GLOBAL_RANDOM_HINT, by="side_effects"),
})
EULER_SAMPLE = GradedFunction("euler_sample", library="flowlab.steps:euler_sample", positional=3, wrong={
    "slope_at_end": Wrong(euler_slope_at_end, "you took the slope at the end of each step; Euler follows the "
                                              "velocity at the start of the step, v(x_k, t_k)"),
    "without_h": Wrong(euler_without_h, "your steps add the whole velocity: multiply it by the step length "
                                        "1 / n_steps"),
    "from_start": Wrong(euler_from_start, "every step starts from the noise x0; each step must start from the "
                                          "point the previous step reached"),
})

LOOSE = AllClose(rtol=1e-4, atol=1e-6)
PATH = AllClose(rtol=1e-5, atol=1e-5)
HIDDEN = [
    Case("interpolate/per_sample_t", "interpolate", points(64), seed=101, cell=INTERPOLATE_CELL,
         about="t given per sample, shape (B,), including t = 0 and t = 1"),
    Case("interpolate/float_t", "interpolate", scalar_time(32, 0.3), seed=102, cell=INTERPOLATE_CELL,
         about="t given as one Python float for the whole batch"),
    Case("interpolate/images", "interpolate", images(16), seed=103, cell=INTERPOLATE_CELL,
         about="images of shape (B, 1, 4, 4): t must broadcast over all non-batch dimensions"),
    Case("interpolate/float64", "interpolate", points(32, 3, torch.float64, False), seed=104, cell=INTERPOLATE_CELL,
         about="float64 inputs in 3D: the result keeps the inputs' dtype", check=AllClose(rtol=1e-12, atol=1e-12)),
    Case("flow_matching_loss/explicit", "flow_matching_loss", loss_inputs(128), seed=201, cell=LOSS_CELL,
         about="x0 and t given: the loss of an affine model on 2D points", check=LOOSE),
    Case("flow_matching_loss/gradient", "flow_matching_loss", loss_inputs(64), seed=202, cell=LOSS_CELL,
         about="the loss can be backpropagated to the model's parameters", check=LOOSE, measure="grad"),
    Case("flow_matching_loss/images", "flow_matching_loss", loss_inputs(16, (1, 4, 4)), seed=203, cell=LOSS_CELL,
         about="images of shape (B, 1, 4, 4): sum over a sample's coordinates, mean over the batch", check=LOOSE),
    Case("flow_matching_loss/labels", "flow_matching_loss", loss_inputs(64, labels=4), seed=204, cell=LOSS_CELL,
         about="labels y are passed to the model as model(x_t, t, y=y)", check=LOOSE),
    Case("flow_matching_loss/random_draws", "flow_matching_loss", random_draws(4096, 7), seed=205, cell=LOSS_CELL,
         about="x0 ~ N(0, I) and t ~ U[0, 1] drawn from the generator when not given", measure="seeded_pair",
         check=SeededMean(n_sigma=6.0), expected=zero_model_statistics,
         blind_to=("target_reversed", "swapped_path", "target_data", "mean_over_coordinates")),
    Case("sgd_step/points", "sgd_step", training_batch(64), seed=301, cell=SGD_CELL,
         about="one step on 2D points: the loss before the step and the parameters after it", check=LOOSE,
         measure="updated_model"),
    Case("sgd_step/images", "sgd_step", training_batch(8, (1, 4, 4), lr=0.01, seed=9), seed=302, cell=SGD_CELL,
         about="one step on images of shape (B, 1, 4, 4)", check=LOOSE, measure="updated_model"),
    Case("sgd_step/large_lr", "sgd_step", training_batch(32, lr=0.5, seed=11), seed=303, cell=SGD_CELL,
         about="a large learning rate, lr = 0.5", check=LOOSE, measure="updated_model"),
    Case("euler_sample/points", "euler_sample", trajectory(64, 8), seed=401, cell=EULER_CELL,
         about="8 Euler steps on 2D points: the whole trajectory, noise first", check=PATH),
    Case("euler_sample/nonlinear", "euler_sample", trajectory(32, 5, kind="tanh"), seed=402, cell=EULER_CELL,
         about="a velocity that is nonlinear in x", check=PATH),
    Case("euler_sample/images", "euler_sample", trajectory(4, 3, (1, 4, 4), kind="tanh"), seed=403, cell=EULER_CELL,
         about="images of shape (B, 1, 4, 4)", check=PATH),
    Case("euler_sample/one_step", "euler_sample", trajectory(16, 1, kind="tanh"), seed=404, cell=EULER_CELL,
         about="a single step from t = 0 to t = 1", check=PATH, blind_to=("from_start", "without_h")),
    Case("euler_sample/float64", "euler_sample", trajectory(16, 4, (3,), "tanh", torch.float64), seed=405,
         cell=EULER_CELL, about="float64 noise in 3D: the trajectory keeps its dtype",
         check=AllClose(rtol=1e-10, atol=1e-12)),
]
PUBLIC = [
    Case("interpolate/public_ends", "interpolate", points(3), seed=11, public=True,
         about="interpolate at t = 0, t = 1 and a time in between"),
    Case("interpolate/public_float_t", "interpolate", scalar_time(4, 0.25), seed=12, public=True,
         about="interpolate with t = 0.25 given as a float"),
    Case("interpolate/public_images", "interpolate", images(2, (1, 3, 3)), seed=13, public=True,
         about="interpolate images of shape (2, 1, 3, 3)"),
    Case("flow_matching_loss/public_explicit", "flow_matching_loss", loss_inputs(8), seed=21, public=True,
         about="the loss with x0 and t given", check=LOOSE),
    Case("flow_matching_loss/public_images", "flow_matching_loss", loss_inputs(4, (1, 2, 2)), seed=22, public=True,
         about="the loss on images of shape (4, 1, 2, 2)", check=LOOSE),
    Case("flow_matching_loss/public_random_draws", "flow_matching_loss", random_draws(2048, 3), seed=23, public=True,
         about="the loss with x0 and t drawn from the generator", measure="seeded_pair",
         check=SeededMean(n_sigma=6.0), expected=zero_model_statistics,
         blind_to=("target_reversed", "swapped_path", "target_data", "mean_over_coordinates")),
    Case("sgd_step/public_points", "sgd_step", training_batch(16, lr=0.1, seed=3), seed=31, public=True,
         about="one step on 2D points: the loss returned and the parameters after the step", check=LOOSE,
         measure="updated_model"),
    Case("euler_sample/public_points", "euler_sample", trajectory(8, 4, kind="tanh"), seed=41, public=True,
         about="the trajectory of 4 Euler steps on 2D points", check=PATH),
    Case("euler_sample/public_images", "euler_sample", trajectory(2, 2, (1, 2, 2)), seed=42, public=True,
         about="the trajectory of 2 Euler steps on images of shape (2, 1, 2, 2)", check=PATH),
]

MUTATIONS = (
    Mutation("swapped_time", "interpolate", "(1 - t) * x0 + t * x1", "t * x0 + (1 - t) * x1",
             fails="interpolate/per_sample_t", hint="puts the data at t = 0"),
    Mutation("target_reversed", "flow_matching_loss", "(prediction - (x1 - x0))", "(prediction - (x0 - x1))",
             fails="flow_matching_loss/explicit", hint="points from data to noise"),
    Mutation("summed_over_batch", "flow_matching_loss", ".sum(dim=1).mean()", ".sum()",
             fails="flow_matching_loss/explicit", hint="summed over the batch"),
    Mutation("global_seed", "flow_matching_loss", "x0 = torch.randn(x1.shape, generator=generator, dtype=x1.dtype)",
             "torch.manual_seed(0)\n        x0 = torch.randn(x1.shape, dtype=x1.dtype)",
             fails="flow_matching_loss/random_draws", hint="re-seeded the global generator"),
    Mutation("sgd_ascent", "sgd_step", "parameter -= lr * parameter.grad", "parameter += lr * parameter.grad",
             fails="sgd_step/points", hint="moves the parameters up the gradient"),
    Mutation("euler_without_h", "euler_sample", "path.append(x + (t_next - t) * velocity(x, t_batch))",
             "path.append(x + velocity(x, t_batch))", fails="euler_sample/points", hint="add the whole velocity"),
)

CASES = AssignmentCases(ASSIGNMENT, (INTERPOLATE, LOSS, SGD_STEP, EULER_SAMPLE), tuple(HIDDEN + PUBLIC), MUTATIONS)
