"""Test cases of notebook 07 (reflow / distillation): ``reflow_pairs``, ``one_step_sample``,
``straightness`` and ``ot_pairs``.

Instructor only: never released, never copied into the sandbox (the sandbox gets the inputs as
arrays). After editing, run ``flowlab references`` and ``pytest tests/test_grading_cases.py``.

The teacher is an ``AffineVelocity`` (v = scale x + t shift, elementwise), so its ODE depends on the
solver and on the times. ``reflow_pairs`` returns a tuple ``(z, x1)``: measured with ``items``
(outputs ``item0`` = z, ``item1`` = x1). Tuples cannot be test inputs, so image cases pass the noise
(whose shape wins over ``shape``); the seeded cases draw 2D points. ``ot_pairs`` also returns a
tuple, ``(x0, x1 reordered)``; its cases draw points whose optimal assignment is unique (continuous
random draws), so the reference order is the only right one.
"""
import numpy as np
import torch

from flowlab_grader.cases import AssignmentCases, Case, GradedFunction, Mutation, Wrong
from flowlab.runtime.compare import AllClose
from flowlab.runtime.codec import GeneratorSeed
from flowlab.runtime.fixtures import AffineVelocity
from flowlab.runtime.side_effects import GLOBAL_RANDOM_HINT
from flowlab.solvers import integrate
from scipy.optimize import linear_sum_assignment

ASSIGNMENT = "07_distillation"
PAIRS_CELL = "hidden_tests_reflow_pairs"
ONE_STEP_CELL = "hidden_tests_one_step_sample"
STRAIGHTNESS_CELL = "hidden_tests_straightness"
OT_CELL = "hidden_tests_ot_pairs"


# ---- plausible wrong answers (same signatures as the graded functions) ----------------------------

def _draw(n, shape, generator):
    """N(0, I) noise of shape (n, *shape) from the generator (every case passes one)."""
    return torch.randn((n, *shape), generator=generator)


def _teacher(velocity, z, ts, method):
    with torch.no_grad():
        return integrate(velocity, z, ts, method)


def pairs_redrawn(velocity, n, ts, method="heun", generator=None, shape=(2,), noise=None, device=None,
                  chunk_size=None):
    """x1 integrated from a second, independent draw of noise, not from the z returned."""
    z = noise if noise is not None else _draw(n, shape, generator)
    return z, _teacher(velocity, _draw(n, tuple(z.shape[1:]), generator).to(z), ts, method)


def pairs_shuffled(velocity, n, ts, method="heun", generator=None, shape=(2,), noise=None, device=None,
                   chunk_size=None):
    """The right z and x1, but x1 in another order (here: rolled by one)."""
    z = noise if noise is not None else _draw(n, shape, generator)
    return z, _teacher(velocity, z, ts, method).roll(1, dims=0)


def pairs_global_generator(velocity, n, ts, method="heun", generator=None, shape=(2,), noise=None, device=None,
                           chunk_size=None):
    """z drawn from the global random stream, ignoring generator."""
    z = noise if noise is not None else torch.randn((n, *shape))
    return z, _teacher(velocity, z, ts, method)


def pairs_ignore_noise(velocity, n, ts, method="heun", generator=None, shape=(2,), noise=None, device=None,
                       chunk_size=None):
    """Always draws z (of the noise's shape when noise is given), ignoring the noise."""
    z = _draw(n, shape if noise is None else tuple(noise.shape[1:]), generator)
    return z, _teacher(velocity, z, ts, method)


def pairs_always_euler(velocity, n, ts, method="heun", generator=None, shape=(2,), noise=None, device=None,
                       chunk_size=None):
    """The teacher integrated with Euler whatever method says."""
    z = noise if noise is not None else _draw(n, shape, generator)
    return z, _teacher(velocity, z, ts, "euler")


def pairs_swapped(velocity, n, ts, method="heun", generator=None, shape=(2,), noise=None, device=None,
                  chunk_size=None):
    """Returns (x1, z) instead of (z, x1)."""
    z = noise if noise is not None else _draw(n, shape, generator)
    return _teacher(velocity, z, ts, method), z


def _zeros(z):
    return torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)


def one_step_at_t_one(velocity, z):
    return z + velocity(z, _zeros(z) + 1)


def one_step_velocity_only(velocity, z):
    return velocity(z, _zeros(z))


def one_step_against_velocity(velocity, z):
    return z - velocity(z, _zeros(z))


def _segments(path, ts):
    """(states (N + 1, B, D) float64, steps h (N,), chord velocity (B, D))."""
    ts = torch.as_tensor(ts, dtype=torch.float64)
    states = path.flatten(2).double()
    return states, ts[1:] - ts[:-1], (states[-1] - states[0]) / (ts[-1] - ts[0])


def straightness_unweighted(path, ts):
    """The segments' deviations averaged with equal weights instead of weighted by their step h_i."""
    states, steps, chord = _segments(path, ts)
    velocity = (states[1:] - states[:-1]) / steps[:, None, None]
    return float((velocity - chord).pow(2).sum(-1).mean(0).mean())


def straightness_displacements(path, ts):
    """Each segment's displacement x_{i+1} - x_i compared with the whole chord x_N - x_0 (no division by time)."""
    states, steps, _ = _segments(path, ts)
    deviation = ((states[1:] - states[:-1]) - (states[-1] - states[0])).pow(2).sum(-1)
    return float((steps[:, None] * deviation).sum(0).mean())


def straightness_summed_batch(path, ts):
    """Summed over the trajectories instead of averaged."""
    states, steps, chord = _segments(path, ts)
    velocity = (states[1:] - states[:-1]) / steps[:, None, None]
    return float((steps[:, None] * (velocity - chord).pow(2).sum(-1)).sum())


def straightness_not_squared(path, ts):
    """The norm of the deviation, not its square."""
    states, steps, chord = _segments(path, ts)
    velocity = (states[1:] - states[:-1]) / steps[:, None, None]
    return float((steps[:, None] * (velocity - chord).pow(2).sum(-1).sqrt()).sum(0).mean())


def straightness_chord_per_unit_time(path, ts):
    """The chord x_N - x_0 taken as the velocity whatever the time span of the grid."""
    states, steps, _ = _segments(path, ts)
    velocity = (states[1:] - states[:-1]) / steps[:, None, None]
    return float((steps[:, None] * (velocity - (states[-1] - states[0])).pow(2).sum(-1)).sum(0).mean())


def _assignment(x0, x1, cost):
    rows, columns = linear_sum_assignment(cost.numpy())
    order = np.empty(len(rows), dtype=np.int64)
    order[rows] = columns
    return torch.from_numpy(order)


def _differences(x0, x1):
    return x0.flatten(1).double()[:, None, :] - x1.flatten(1).double()[None, :, :]


def ot_identity(x0, x1):
    """No reordering at all: the independent pairing."""
    return x0, x1


def ot_distance_cost(x0, x1):
    """The assignment that minimises the sum of distances, not of squared distances."""
    return x0, x1[_assignment(x0, x1, _differences(x0, x1).pow(2).sum(-1).sqrt())]


def ot_maximised(x0, x1):
    """The assignment that maximises the total squared distance."""
    return x0, x1[_assignment(x0, x1, -_differences(x0, x1).pow(2).sum(-1))]


def ot_inverse_order(x0, x1):
    """The permutation applied the wrong way round: x1[sigma^-1] instead of x1[sigma]."""
    order = _assignment(x0, x1, _differences(x0, x1).pow(2).sum(-1))
    return x0, x1[torch.argsort(order)]


def ot_noise_reordered(x0, x1):
    """The same pairs, but the noise reordered to the data instead of the data to the noise."""
    order = _assignment(x0, x1, _differences(x0, x1).pow(2).sum(-1))
    return x0[torch.argsort(order)], x1


def ot_first_coordinate(x0, x1):
    """The cost from the first coordinate only."""
    cost = (x0.flatten(1)[:, :1].double()[:, None, :] - x1.flatten(1)[:, :1].double()[None, :, :]).pow(2).sum(-1)
    return x0, x1[_assignment(x0, x1, cost)]


# ---- inputs ------------------------------------------------------------------------------------

def uniform_grid(n):
    return torch.linspace(0, 1, n + 1, dtype=torch.float64)


def cosine_grid(n):
    """Short steps at both ends (flowlab.schedules.cosine, written out)."""
    ts = (1 - torch.cos(torch.pi * uniform_grid(n))) / 2
    ts[0], ts[-1] = 0.0, 1.0
    return ts


def _affine(shape, generator, dtype=torch.float32):
    draw = lambda: torch.randn(*shape, generator=generator)
    return AffineVelocity((0.8 * draw()).to(dtype), (1.5 * draw()).to(dtype))


def given_noise(n, shape=(2,), grid=uniform_grid(8), method="heun", seed=1, chunk_size=None, dtype=torch.float32):
    """Noise passed in (and a generator too, which must then go unused)."""
    def build(generator):
        inputs = {"velocity": _affine(shape, generator, dtype), "n": n, "ts": grid.clone(), "method": method,
                  "generator": GeneratorSeed(seed), "noise": torch.randn(n, *shape, generator=generator).to(dtype)}
        if chunk_size is not None:
            inputs["chunk_size"] = chunk_size
        return inputs
    return build


def seeded(n, seed, grid=uniform_grid(6), method="heun", chunk_size=None):
    """No noise: z ~ N(0, I) of shape (n, 2) must come from the generator; method=None: the default."""
    def build(generator):
        inputs = {"velocity": _affine((2,), generator), "n": n, "ts": grid.clone()}
        if method is not None:
            inputs["method"] = method
        inputs["generator"] = GeneratorSeed(seed)
        if chunk_size is not None:
            inputs["chunk_size"] = chunk_size
        return inputs
    return build


def one_step(batch, shape=(2,), dtype=torch.float32):
    def build(generator):
        return {"velocity": _affine(shape, generator, dtype), "z": torch.randn(batch, *shape, generator=generator).to(dtype)}
    return build


def paths(n_steps, batch, shape=(2,), grid=None, dtype=torch.float64):
    """Random trajectories (n_steps + 1, batch, *shape) on ``grid`` (default: uniform on [0, 1])."""
    def build(generator):
        ts = uniform_grid(n_steps) if grid is None else grid.clone()
        return {"path": torch.randn(n_steps + 1, batch, *shape, generator=generator).to(dtype), "ts": ts}
    return build


def bent_paths(batch, grid):
    """Straight lines plus a sideways bump sin(pi t) c: a known, smooth bend."""
    def build(generator):
        x0, x1, bump = torch.randn(3, batch, 2, generator=generator, dtype=torch.float64)
        t = grid.reshape(-1, 1, 1)
        return {"path": (1 - t) * x0 + t * x1 + torch.sin(torch.pi * t) * bump, "ts": grid.clone()}
    return build


def point_sets(batch, shape=(2,), spread=1.0, shift=0.0, dtype=torch.float32):
    """Noise x0 ~ N(0, I) and data x1 = shift + spread * N(0, I), both (batch, *shape)."""
    def build(generator):
        x0 = torch.randn(batch, *shape, generator=generator, dtype=torch.float64)
        x1 = shift + spread * torch.randn(batch, *shape, generator=generator, dtype=torch.float64)
        return {"x0": x0.to(dtype), "x1": x1.to(dtype)}
    return build


# ---- the cases ---------------------------------------------------------------------------------

PAIRS = GradedFunction("reflow_pairs", library="flowlab.distill:reflow_pairs", positional=3, wrong={
    "redrawn": Wrong(pairs_redrawn, "your x1 is integrated from a new draw of noise, not from the z you return: "
                                    "a reflow pair is (z, ODE_teacher(z)) with the SAME z; otherwise the pairs "
                                    "are independent, like ordinary flow matching, and nothing gets straighter"),
    "shuffled": Wrong(pairs_shuffled, "x1[i] must be where the teacher's ODE takes z[i]: your pairs are "
                                      "shuffled (do not reorder, sort or sample x1 separately from z)"),
    "global_generator": Wrong(pairs_global_generator, GLOBAL_RANDOM_HINT, by="side_effects"),
    "ignore_noise": Wrong(pairs_ignore_noise, "when noise is given, z must be that noise; draw z only when "
                                              "noise is None"),
    "always_euler": Wrong(pairs_always_euler, "with method=\"heun\" your teacher takes Euler steps: pass method "
                                              "on to the solver"),
    "swapped": Wrong(pairs_swapped, "return the tuple in the order (z, x1): noise first, then the teacher's image"),
})
ONE_STEP = GradedFunction("one_step_sample", library="flowlab.distill:one_step_sample", positional=2, wrong={
    "at_t_one": Wrong(one_step_at_t_one, "you evaluated the velocity at t = 1; the step starts at the noise, "
                                         "t = 0: x1 = z + v(z, 0)"),
    "velocity_only": Wrong(one_step_velocity_only, "you returned the velocity v(z, 0); the sample is the point "
                                                   "where the step lands: z + (1 - 0) v(z, 0)"),
    "against_velocity": Wrong(one_step_against_velocity, "you stepped against the velocity; from noise at t = 0 "
                                                         "to data at t = 1 the step is z + (1 - 0) v(z, 0)"),
})
STRAIGHTNESS = GradedFunction("straightness", library="flowlab.metrics:straightness", positional=2, wrong={
    "unweighted": Wrong(straightness_unweighted, "on a non-uniform grid each segment's squared deviation must "
                                                 "count in proportion to its duration h_i (the integral over t)"),
    "displacements": Wrong(straightness_displacements, "compare velocities, not displacements: a segment's "
                                                       "velocity is (x_{i+1} - x_i) / h_i, the chord's "
                                                       "(x_N - x_0) / (t_N - t_0)"),
    "summed_batch": Wrong(straightness_summed_batch, "average over the trajectories (the expectation), do not sum"),
    "not_squared": Wrong(straightness_not_squared, "the integrand is the SQUARED norm of the deviation"),
    "chord_per_unit_time": Wrong(straightness_chord_per_unit_time, "on a grid that does not span [0, 1] the "
                                                                   "chord velocity is (x_N - x_0) / (t_N - t_0)"),
})
OT = GradedFunction("ot_pairs", library="flowlab.coupling:ot_pairs", positional=2, wrong={
    "identity": Wrong(ot_identity, "the data came back in its own order: reorder x1 by the optimal assignment"),
    "distance_cost": Wrong(ot_distance_cost, "your assignment minimises the sum of distances; the cost is the "
                                             "SQUARED distance ||x0_i - x1_j||^2"),
    "maximised": Wrong(ot_maximised, "your assignment maximises the total squared distance; it must minimise it"),
    "inverse_order": Wrong(ot_inverse_order, "the permutation is applied the wrong way round: row i of the "
                                             "result must be the data point assigned to x0[i]"),
    "noise_reordered": Wrong(ot_noise_reordered, "the noise must come back in its own order, and the DATA be "
                                                 "reordered to it"),
    "first_coordinate": Wrong(ot_first_coordinate, "the cost must use every coordinate of the points "
                                                   "(flatten each to a vector)"),
})

TOL = AllClose(rtol=1e-4, atol=1e-5)
EXACT64 = AllClose(rtol=1e-10, atol=1e-10)
HIDDEN = [
    Case("reflow_pairs/noise_heun", "reflow_pairs", given_noise(64), seed=701, cell=PAIRS_CELL, measure="items",
         about="noise given (and a generator that must go unused), Heun, 8 steps", check=TOL),
    Case("reflow_pairs/seeded", "reflow_pairs", seeded(128, 72), seed=702, cell=PAIRS_CELL, measure="items",
         about="noise=None: z ~ N(0, I) drawn from the generator, then the teacher's ODE from that same z",
         check=TOL, blind_to=("ignore_noise",)),
    Case("reflow_pairs/default_method", "reflow_pairs", seeded(32, 73, method=None), seed=703, cell=PAIRS_CELL,
         measure="items", about="method not given: the default is Heun", check=TOL, blind_to=("ignore_noise",)),
    Case("reflow_pairs/euler_cosine", "reflow_pairs", seeded(64, 74, cosine_grid(10), "euler"), seed=704,
         cell=PAIRS_CELL, measure="items", about="Euler teacher on a non-uniform grid", check=TOL,
         blind_to=("ignore_noise", "always_euler")),
    Case("reflow_pairs/images_chunks", "reflow_pairs", given_noise(12, (1, 4, 4), cosine_grid(6), chunk_size=5),
         seed=705, cell=PAIRS_CELL, measure="items", about="images (12, 1, 4, 4) given as noise, in chunks of 5",
         check=TOL),
    Case("reflow_pairs/seeded_chunks", "reflow_pairs", seeded(30, 75, chunk_size=8), seed=706, cell=PAIRS_CELL,
         measure="items", about="drawn from the generator, the teacher run in chunks of 8", check=TOL,
         blind_to=("ignore_noise",)),
    Case("reflow_pairs/float64", "reflow_pairs", given_noise(32, (3,), uniform_grid(5), dtype=torch.float64),
         seed=707, cell=PAIRS_CELL, measure="items", about="float64 noise and teacher: the pairs stay float64",
         check=EXACT64),
    Case("one_step_sample/points", "one_step_sample", one_step(64), seed=711, cell=ONE_STEP_CELL,
         about="one step on 2D points", check=TOL),
    Case("one_step_sample/images", "one_step_sample", one_step(8, (1, 4, 4)), seed=712, cell=ONE_STEP_CELL,
         about="one step on images (8, 1, 4, 4)", check=TOL),
    Case("one_step_sample/float64", "one_step_sample", one_step(32, (3,), torch.float64), seed=713,
         cell=ONE_STEP_CELL, about="float64: the result keeps float64", check=EXACT64),
]
NONUNIFORM = torch.tensor([0.0, 0.05, 0.2, 0.45, 0.8, 1.0], dtype=torch.float64)
PARTIAL = torch.tensor([0.2, 0.3, 0.5, 0.8], dtype=torch.float64)
STRAIGHT_TOL = AllClose(rtol=1e-6, atol=1e-9)
HIDDEN += [
    Case("straightness/random_uniform", "straightness", paths(8, 32), seed=721, cell=STRAIGHTNESS_CELL,
         about="random trajectories on a uniform grid of 8 steps", check=STRAIGHT_TOL,
         blind_to=("unweighted", "chord_per_unit_time")),
    Case("straightness/random_nonuniform", "straightness", paths(5, 16, grid=NONUNIFORM), seed=722,
         cell=STRAIGHTNESS_CELL, about="random trajectories on a non-uniform grid", check=STRAIGHT_TOL,
         blind_to=("chord_per_unit_time",)),
    Case("straightness/bent_cosine", "straightness", bent_paths(64, cosine_grid(12)), seed=723,
         cell=STRAIGHTNESS_CELL, about="straight lines with a sin(pi t) bump, on a cosine grid",
         check=STRAIGHT_TOL, blind_to=("chord_per_unit_time",)),
    Case("straightness/partial_span", "straightness", paths(3, 8, grid=PARTIAL), seed=724, cell=STRAIGHTNESS_CELL,
         about="a grid from t = 0.2 to 0.8: the chord velocity divides by the time span", check=STRAIGHT_TOL),
    Case("straightness/images_float32", "straightness", paths(4, 6, (1, 3, 3), dtype=torch.float32), seed=725,
         cell=STRAIGHTNESS_CELL, about="image trajectories (5, 6, 1, 3, 3) in float32",
         check=AllClose(rtol=1e-5, atol=1e-6), blind_to=("unweighted", "chord_per_unit_time")),
    Case("ot_pairs/points", "ot_pairs", point_sets(24, spread=2.0, shift=1.0), seed=731, cell=OT_CELL,
         measure="items", about="24 noise points and 24 data points in 2D", check=TOL),
    Case("ot_pairs/far_data", "ot_pairs", point_sets(40, spread=0.5, shift=4.0), seed=732, cell=OT_CELL,
         measure="items", about="data far from the noise: 40 points", check=TOL),
    Case("ot_pairs/images", "ot_pairs", point_sets(12, (1, 3, 3)), seed=733, cell=OT_CELL, measure="items",
         about="images (12, 1, 3, 3): the cost sums over every pixel", check=TOL,
         blind_to=("distance_cost",)),     # on these 12 draws distances and squared distances pair alike
    Case("ot_pairs/float64", "ot_pairs", point_sets(16, (3,), dtype=torch.float64), seed=734, cell=OT_CELL,
         measure="items", about="float64 points in 3D: the pairs stay float64", check=EXACT64),
    Case("ot_pairs/one_point", "ot_pairs", point_sets(1), seed=735, cell=OT_CELL, measure="items",
         about="a batch of one: the only pairing", check=TOL,
         blind_to=("distance_cost", "maximised", "inverse_order", "noise_reordered", "first_coordinate",
                   "identity")),
]

PUBLIC = [
    Case("reflow_pairs/public_noise", "reflow_pairs", given_noise(4, grid=uniform_grid(4)), seed=71, public=True,
         measure="items", about="pairs from given noise, Heun, 4 steps", check=TOL),
    Case("reflow_pairs/public_seeded", "reflow_pairs", seeded(6, 5, uniform_grid(3)), seed=72, public=True,
         measure="items", about="pairs with z drawn from a seeded generator", check=TOL, blind_to=("ignore_noise",)),
    Case("one_step_sample/public_points", "one_step_sample", one_step(4), seed=73, public=True,
         about="one step on 4 points", check=TOL),
    Case("one_step_sample/public_images", "one_step_sample", one_step(2, (1, 2, 2)), seed=74, public=True,
         about="one step on images (2, 1, 2, 2)", check=TOL),
    Case("straightness/public_nonuniform", "straightness", paths(4, 5, grid=NONUNIFORM[[0, 1, 3, 4, 5]]), seed=75,
         public=True, about="the value on random trajectories over a non-uniform grid", check=STRAIGHT_TOL,
         blind_to=("chord_per_unit_time",)),   # the grid spans [0, 1]: the chord per unit time is the chord
    Case("straightness/public_bent", "straightness", bent_paths(8, uniform_grid(10)), seed=76, public=True,
         about="straight lines with a sin(pi t) bump, uniform grid", check=STRAIGHT_TOL,
         blind_to=("unweighted", "chord_per_unit_time")),
    Case("ot_pairs/public_points", "ot_pairs", point_sets(10, shift=2.0), seed=77, public=True, measure="items",
         about="the optimal pairing of 10 points (noise kept in order, data reordered)", check=TOL),
]

MUTATIONS = (
    Mutation("redrawn", "reflow_pairs", "integrate(velocity, part, ts, method)",
             "integrate(velocity, torch.randn(part.shape, generator=generator), ts, method)",
             fails="reflow_pairs/seeded", hint="new draw of noise"),
    Mutation("swapped", "reflow_pairs", "return z, x1", "return x1, z",
             fails="reflow_pairs/noise_heun", hint="in the order (z, x1)"),
    Mutation("global_generator", "reflow_pairs", "torch.randn((n, *shape), generator=generator)",
             "torch.randn((n, *shape))", fails="reflow_pairs/seeded_chunks", hint="used or re-seeded the global generator"),
    Mutation("velocity_only", "one_step_sample", "return z + velocity(z, t)", "return velocity(z, t)",
             fails="one_step_sample/points", hint="you returned the velocity"),
    Mutation("at_t_one", "one_step_sample", "torch.zeros(z.shape[0]", "torch.ones(z.shape[0]",
             fails="one_step_sample/images", hint="evaluated the velocity at t = 1"),
    Mutation("summed_batch", "straightness", "per_path.mean()", "per_path.sum()",
             fails="straightness/random_uniform", hint="average over the trajectories"),
    Mutation("distance_cost", "ot_pairs", ".pow(2).sum(-1)", ".pow(2).sum(-1).sqrt()",
             fails="ot_pairs/points", hint="SQUARED distance"),
    Mutation("identity", "ot_pairs", "return x0, x1[order.to(x1.device)]", "return x0, x1",
             fails="ot_pairs/far_data", hint="reorder x1 by the optimal assignment"),
)

CASES = AssignmentCases(ASSIGNMENT, (PAIRS, ONE_STEP, STRAIGHTNESS, OT), tuple(HIDDEN + PUBLIC), MUTATIONS)
