"""Test cases of notebook 06 (ODE inversion, data -> noise): ``invert``, ``invert_fixed_point`` and
``round_trip``.

Instructor only: never released, never copied into the sandbox (the sandbox gets the inputs as
arrays). After editing, run ``flowlab references`` and ``pytest tests/test_grading_cases.py``.

Every case passes an ``AffineVelocity`` (v = scale x + t shift, elementwise), so the answer depends
on the times at which the velocity is evaluated, and ``ts`` is the increasing sampling grid as a
float64 tensor (uniform, SD3-shifted or Karras-like, as ``flowlab.schedules`` makes them).
``invert_fixed_point`` cases use few, long steps and a steep velocity (``h`` times the velocity's
slope near 1/2), so that every fixed-point iteration still moves the result far beyond the tolerance.
"""
import torch

from flowlab_grader.cases import AssignmentCases, Case, GradedFunction, Mutation, Wrong
from flowlab.runtime.compare import AllClose
from flowlab.runtime.fixtures import AffineVelocity, TanhVelocity
from flowlab.solvers import euler_step, heun_step, integrate

ASSIGNMENT = "06_inversion"
INVERT_CELL = "hidden_tests_invert"
FIXED_POINT_CELL = "hidden_tests_invert_fixed_point"
ROUND_TRIP_CELL = "hidden_tests_round_trip"
STEPS = {"euler": euler_step, "heun": heun_step}


# ---- plausible wrong answers (same signature as invert) ------------------------------------------

def _run(step, velocity, x, times):
    for t, t_next in zip(times[:-1], times[1:]):
        x = step(velocity, x, t, t_next)
    return x


def invert_forward_grid(velocity, x1, ts, method="euler"):
    """Integrates over ts itself (0 -> 1), not ts.flip(0): it moves the data further along the flow."""
    return _run(STEPS[method], velocity, x1, torch.as_tensor(ts).tolist())


def invert_always_euler(velocity, x1, ts, method="euler"):
    """Ignores method: Euler steps even when Heun is asked for."""
    return _run(euler_step, velocity, x1, torch.as_tensor(ts).flip(0).tolist())


def invert_negated_forward_time(velocity, x1, ts, method="euler"):
    """Integrates -v forwards in time over ts, with the velocity evaluated at the forward times
    (v(x, s) where s runs 0 -> 1, instead of v(x, 1 - s)): the right direction at the wrong times."""
    negated = lambda x, t: -velocity(x, t)
    return _run(STEPS[method], negated, x1, torch.as_tensor(ts).tolist())


def invert_negated_velocity(velocity, x1, ts, method="euler"):
    """Steps over the reversed grid (negative h) AND negates the velocity: the two signs cancel and
    the state moves forwards along the flow."""
    negated = lambda x, t: -velocity(x, t)
    return _run(STEPS[method], negated, x1, torch.as_tensor(ts).flip(0).tolist())


def invert_drops_last_step(velocity, x1, ts, method="euler"):
    """Off by one: stops one step short, at ts[1] instead of ts[0]."""
    return _run(STEPS[method], velocity, x1, torch.as_tensor(ts).flip(0).tolist()[:-1])


def invert_velocity_at_t_next(velocity, x1, ts, method="euler"):
    """A hand-written Euler step that evaluates the velocity at the end of the step, v(x, t_next)
    (the time of the forward step being undone); Heun done with the library's heun_step."""
    times = torch.as_tensor(ts).flip(0).tolist()
    if method != "euler":
        return _run(STEPS[method], velocity, x1, times)
    x = x1
    for t, t_next in zip(times[:-1], times[1:]):
        x = euler_step(lambda state, _: velocity(state, t_next), x, t, t_next)
    return x


def _refined(velocity, x1, ts, iterations, first_guess, correct):
    """The fixed-point loop with a pluggable first guess ``first_guess(x_next, t, t_next)`` and
    correction ``correct(x, x_next, t, t_next) -> new x``."""
    times = torch.as_tensor(ts).tolist()
    x_next = x1
    for t, t_next in reversed(list(zip(times[:-1], times[1:]))):
        x = first_guess(x_next, t, t_next)
        for _ in range(iterations):
            x = correct(x, x_next, t, t_next)
        x_next = x
    return x_next


def _euler_back(velocity):
    return lambda x_next, t, t_next: euler_step(velocity, x_next, t_next, t)


def fixed_point_velocity_at_t_next(velocity, x1, ts, iterations=3):
    """Evaluates the velocity at the time the step starts from, t_next, instead of t."""
    return _refined(velocity, x1, ts, iterations, _euler_back(velocity),
                    lambda x, x_next, t, t_next: x_next - (t_next - t) * velocity(x, t_next))


def fixed_point_from_current_guess(velocity, x1, ts, iterations=3):
    """Corrects the current guess instead of solving from x_next: x <- x - h v(x, t)."""
    return _refined(velocity, x1, ts, iterations, _euler_back(velocity),
                    lambda x, x_next, t, t_next: x - (t_next - t) * velocity(x, t))


def fixed_point_wrong_sign(velocity, x1, ts, iterations=3):
    """x <- x_next + h v(x, t): the forward step's velocity added instead of subtracted."""
    return _refined(velocity, x1, ts, iterations, _euler_back(velocity),
                    lambda x, x_next, t, t_next: x_next + (t_next - t) * velocity(x, t))


def fixed_point_starts_at_x_next(velocity, x1, ts, iterations=3):
    """Starts the iteration at x_next itself instead of at the plain backward Euler step."""
    return _refined(velocity, x1, ts, iterations, lambda x_next, t, t_next: x_next,
                    lambda x, x_next, t, t_next: x_next - (t_next - t) * velocity(x, t))


def fixed_point_ignores_iterations(velocity, x1, ts, iterations=3):
    """The plain backward Euler steps, whatever ``iterations`` says."""
    return _run(euler_step, velocity, x1, torch.as_tensor(ts).flip(0).tolist())


def _rms_round_trip(velocity, x1, ts, method, error_of, regenerate_method=None):
    x0_hat = _run(STEPS[method], velocity, x1, torch.as_tensor(ts).flip(0).tolist())
    x1_back = _run(STEPS[regenerate_method or method], velocity, x0_hat, torch.as_tensor(ts).tolist())
    return x0_hat, x1_back, error_of((x1_back - x1).flatten(1))


def round_trip_norm(velocity, x1, ts, method="euler"):
    """The per-sample Euclidean norm, not divided by sqrt(dim): not in the units of one entry."""
    return _rms_round_trip(velocity, x1, ts, method, lambda d: d.norm(dim=1))


def round_trip_mean_square(velocity, x1, ts, method="euler"):
    """The mean square per sample, without the square root."""
    return _rms_round_trip(velocity, x1, ts, method, lambda d: d.pow(2).mean(dim=1))


def round_trip_mean_abs(velocity, x1, ts, method="euler"):
    """The mean absolute difference per sample instead of the root mean square."""
    return _rms_round_trip(velocity, x1, ts, method, lambda d: d.abs().mean(dim=1))


def round_trip_regenerates_with_euler(velocity, x1, ts, method="euler"):
    """Inverts with ``method`` but samples back with Euler whatever ``method`` is."""
    return _rms_round_trip(velocity, x1, ts, method, lambda d: d.pow(2).mean(dim=1).sqrt(), "euler")


# ---- inputs ------------------------------------------------------------------------------------

def uniform_grid(n):
    return torch.linspace(0, 1, n + 1, dtype=torch.float64)


def shifted_grid(n, shift=3.0):
    """SD3's time shift (short steps near t = 0), written out so the cases do not depend on 02's code."""
    s = 1 - uniform_grid(n)
    ts = 1 - shift * s / (1 + (shift - 1) * s)
    ts[0], ts[-1] = 0.0, 1.0
    return ts


def karras_grid(n, rho=7.0, sigma_min=0.05, sigma_max=20.0):
    """EDM's grid in sigma = (1 - t) / t mapped to t = 1 / (1 + sigma), ends pinned to 0 and 1."""
    u = uniform_grid(n)
    root = sigma_max ** (1 / rho) + u * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))
    ts = 1 / (1 + root ** rho)
    ts[0], ts[-1] = 0.0, 1.0
    return ts


def inversion(batch, shape=(2,), grid=uniform_grid(8), method="euler", dtype=torch.float32):
    """An affine velocity, data x1 and the grid; ``method=None`` leaves it out (the default, Euler)."""
    def build(generator):
        draw = lambda *size: torch.randn(*size, generator=generator)
        velocity = AffineVelocity((0.8 * draw(*shape)).to(dtype), (1.5 * draw(*shape)).to(dtype))
        inputs = {"velocity": velocity, "x1": (2 * draw(batch, *shape) + 0.5).to(dtype), "ts": grid.clone()}
        if method is not None:
            inputs["method"] = method
        return inputs
    return build


def fixed_point(batch, shape=(2,), steps=3, iterations=2, curved=False, dtype=torch.float32):
    """A steep velocity (slope up to about 2), few steps, data x1 and ``iterations`` (None: left out)."""
    def build(generator):
        draw = lambda *size: torch.randn(*size, generator=generator)
        fixture = TanhVelocity if curved else AffineVelocity
        velocity = fixture((1.5 * draw(*shape)).to(dtype), (1.5 * draw(*shape)).to(dtype))
        inputs = {"velocity": velocity, "x1": (2 * draw(batch, *shape) + 0.5).to(dtype),
                  "ts": uniform_grid(steps)}
        if iterations is not None:
            inputs["iterations"] = iterations
        return inputs
    return build


# ---- the cases ---------------------------------------------------------------------------------

INVERT = GradedFunction("invert", library="flowlab.inversion:invert", positional=3, wrong={
    "forward_grid": Wrong(invert_forward_grid, "you integrated over ts from t = 0 to 1, which pushes the data "
                                               "further forwards; inversion runs the same ODE backwards, over "
                                               "the reversed grid ts.flip(0) (t = 1 data -> t = 0 noise)"),
    "always_euler": Wrong(invert_always_euler, "with method=\"heun\" your inversion takes Euler steps: pick the "
                                               "step function from method (euler_step or heun_step)"),
    "negated_forward_time": Wrong(invert_negated_forward_time,
                                  "you integrated -v forwards in time but evaluated the velocity at the forward "
                                  "times s = 0 -> 1; going backwards the velocity must be evaluated at t = 1 -> 0 "
                                  "(v(x, 1 - s)): simply step over ts.flip(0), where the steps are negative"),
    "negated_velocity": Wrong(invert_negated_velocity, "you negated the velocity AND stepped over the reversed "
                              "grid: the two signs cancel and your state moves forwards, towards the data. Keep "
                              "v as it is: over ts.flip(0) the step t_next - t is already negative"),
    "drops_last_step": Wrong(invert_drops_last_step, "your inversion stops one step short (at ts[1], not at "
                                                     "t = 0): a grid of n + 1 times has n steps; take all of them"),
    "velocity_at_t_next": Wrong(invert_velocity_at_t_next,
                                "your Euler step evaluates the velocity at the end of the step, v(x, t_next); "
                                "an explicit step evaluates it where it starts, at the current state and time: "
                                "x_next = x + (t_next - t) v(x, t)"),
})

FIXED_POINT = GradedFunction("invert_fixed_point", library="flowlab.inversion:invert_fixed_point", positional=3,
                             wrong={
    "velocity_at_t_next": Wrong(fixed_point_velocity_at_t_next,
                                "your corrections evaluate the velocity at t_next, where the backward step starts; "
                                "the forward Euler step being undone evaluated it at its own start, (x, t): solve "
                                "x_next = x + h v(x, t) for x"),
    "from_current_guess": Wrong(fixed_point_from_current_guess,
                                "each correction must start again from x_next (x = x_next - h v(x, t)); you "
                                "subtracted h v from the current guess, so the steps pile up"),
    "wrong_sign": Wrong(fixed_point_wrong_sign, "your correction adds h v(x, t) to x_next; the forward step is "
                                                "x_next = x + h v(x, t), so x = x_next - h v(x, t)"),
    "starts_at_x_next": Wrong(fixed_point_starts_at_x_next,
                              "the iteration must start from the plain backward Euler step (invert's step), "
                              "not from x_next itself; then iterations = 0 is plain inversion"),
    "ignores_iterations": Wrong(fixed_point_ignores_iterations,
                                "your result does not change with iterations: after the first guess, apply the "
                                "correction x = x_next - h v(x, t) `iterations` times at every step"),
})
ROUND_TRIP = GradedFunction("round_trip", library="flowlab.inversion:round_trip", positional=3, wrong={
    "norm": Wrong(round_trip_norm, "your error is the Euclidean norm of the difference; divide by the square "
                                   "root of the number of entries of one sample (the root MEAN square)"),
    "mean_square": Wrong(round_trip_mean_square, "your error is the mean square; take its square root (RMS, in "
                                                 "the units of the data)"),
    "mean_abs": Wrong(round_trip_mean_abs, "your error is the mean absolute difference; the error asked for is "
                                           "the root mean square per sample"),
    "regenerates_with_euler": Wrong(round_trip_regenerates_with_euler,
                                    "you sampled back with Euler; regenerate with the same method as the inversion"),
})

TOL = AllClose(rtol=1e-4, atol=1e-5)
NOT_HEUN = ("always_euler",)            # Euler cases cannot tell "always Euler" from right
NOT_EULER = ("velocity_at_t_next",)     # that mistake is in a hand-written Euler step only
HIDDEN = [
    Case("invert/euler_uniform", "invert", inversion(64), seed=601, cell=INVERT_CELL,
         about="Euler, 2D points, 8 uniform steps", check=TOL, blind_to=NOT_HEUN),
    Case("invert/default_method", "invert", inversion(32, method=None), seed=602, cell=INVERT_CELL,
         about="method not given: the default is Euler", check=TOL, blind_to=NOT_HEUN),
    Case("invert/euler_shifted", "invert", inversion(64, grid=shifted_grid(10)), seed=603, cell=INVERT_CELL,
         about="Euler on a non-uniform grid (SD3 shift 3, 10 steps): use the grid's own step sizes", check=TOL,
         blind_to=NOT_HEUN),
    Case("invert/euler_images", "invert", inversion(8, (1, 4, 4), uniform_grid(6)), seed=604, cell=INVERT_CELL,
         about="Euler on images of shape (B, 1, 4, 4)", check=TOL, blind_to=NOT_HEUN),
    Case("invert/euler_float64", "invert", inversion(32, (3,), karras_grid(12), dtype=torch.float64), seed=605,
         cell=INVERT_CELL, about="Euler in float64 on a Karras-like grid: the result keeps float64",
         check=AllClose(rtol=1e-10, atol=1e-10), blind_to=NOT_HEUN),
    Case("invert/heun_uniform", "invert", inversion(64, method="heun"), seed=611, cell=INVERT_CELL,
         about="Heun, 2D points, 8 uniform steps", check=TOL, blind_to=NOT_EULER),
    Case("invert/heun_shifted", "invert", inversion(64, grid=shifted_grid(10), method="heun"), seed=612,
         cell=INVERT_CELL, about="Heun on a non-uniform grid (SD3 shift 3, 10 steps)", check=TOL, blind_to=NOT_EULER),
    Case("invert/heun_images_karras", "invert", inversion(8, (1, 4, 4), karras_grid(8), "heun"), seed=613,
         cell=INVERT_CELL, about="Heun on images (B, 1, 4, 4) on a Karras-like grid", check=TOL, blind_to=NOT_EULER),
    Case("invert/heun_float64", "invert", inversion(32, (3,), uniform_grid(5), "heun", torch.float64), seed=614,
         cell=INVERT_CELL, about="Heun in float64: the result keeps float64", check=AllClose(rtol=1e-10, atol=1e-10),
         blind_to=NOT_EULER),
    Case("invert/heun_one_step", "invert", inversion(16, grid=uniform_grid(1), method="heun"), seed=615,
         cell=INVERT_CELL, about="a grid of two times [0, 1]: one Heun step from t = 1 to t = 0", check=TOL,
         blind_to=NOT_EULER),
]
NOT_ITERATING = ("velocity_at_t_next", "from_current_guess", "wrong_sign", "starts_at_x_next",
                 "ignores_iterations")      # with iterations = 0 only the first guess matters
HIDDEN += [
    Case("invert_fixed_point/two_iterations", "invert_fixed_point", fixed_point(32), seed=621, cell=FIXED_POINT_CELL,
         about="2D points, 3 uniform steps, 2 iterations, a velocity affine in x", check=TOL),
    Case("invert_fixed_point/curved", "invert_fixed_point", fixed_point(32, iterations=3, curved=True), seed=622,
         cell=FIXED_POINT_CELL, about="a velocity nonlinear in x, 3 iterations", check=TOL),
    Case("invert_fixed_point/one_iteration", "invert_fixed_point", fixed_point(16, steps=4, iterations=1), seed=623,
         cell=FIXED_POINT_CELL, about="4 uniform steps, 1 iteration", check=TOL),
    Case("invert_fixed_point/default_iterations", "invert_fixed_point", fixed_point(16, curved=True, iterations=None),
         seed=624, cell=FIXED_POINT_CELL, about="iterations not given: the default is 3", check=TOL),
    Case("invert_fixed_point/images", "invert_fixed_point", fixed_point(4, (1, 4, 4), steps=2, curved=True),
         seed=625, cell=FIXED_POINT_CELL, about="images of shape (4, 1, 4, 4), 2 steps", check=TOL),
    Case("invert_fixed_point/float64", "invert_fixed_point", fixed_point(16, (3,), curved=True, dtype=torch.float64),
         seed=626, cell=FIXED_POINT_CELL, about="float64: the result keeps float64",
         check=AllClose(rtol=1e-10, atol=1e-10)),
    Case("invert_fixed_point/no_iterations", "invert_fixed_point", fixed_point(16, iterations=0), seed=627,
         cell=FIXED_POINT_CELL, about="iterations = 0: the plain backward Euler steps", check=TOL,
         blind_to=NOT_ITERATING),
    Case("round_trip/euler", "round_trip", inversion(32, (5,), uniform_grid(2)), seed=631, measure="items",
         cell=ROUND_TRIP_CELL,
         about="Euler, 5 entries a sample, 2 uniform steps", check=TOL, blind_to=("regenerates_with_euler",)),
    Case("round_trip/heun_images", "round_trip", inversion(8, (1, 4, 4), shifted_grid(5), "heun"), seed=632,
         measure="items",
         cell=ROUND_TRIP_CELL, about="Heun on images of shape (8, 1, 4, 4), a shifted grid", check=TOL),
    Case("round_trip/heun_float64", "round_trip", inversion(16, (3,), karras_grid(6), "heun", torch.float64),
         seed=633, measure="items", cell=ROUND_TRIP_CELL, about="Heun in float64 on a Karras-like grid: float64 kept",
         check=AllClose(rtol=1e-10, atol=1e-10)),
]
PUBLIC = [
    Case("invert/public_euler", "invert", inversion(4, grid=uniform_grid(4)), seed=61, public=True,
         about="Euler, 4 uniform steps, 2D points", check=TOL, blind_to=NOT_HEUN),
    Case("invert/public_heun_shifted", "invert", inversion(4, grid=shifted_grid(5), method="heun"), seed=62,
         public=True, about="Heun on a shifted grid (5 steps)", check=TOL, blind_to=NOT_EULER),
    Case("invert/public_images", "invert", inversion(2, (1, 3, 3), uniform_grid(3), "heun"), seed=63, public=True,
         about="Heun on images of shape (2, 1, 3, 3)", check=TOL, blind_to=NOT_EULER),
    Case("invert_fixed_point/public_points", "invert_fixed_point", fixed_point(4), seed=64, public=True,
         about="2D points, 3 uniform steps, 2 iterations", check=TOL),
    Case("invert_fixed_point/public_images", "invert_fixed_point", fixed_point(2, (1, 3, 3), steps=2, curved=True),
         seed=65, public=True, about="images of shape (2, 1, 3, 3), a curved velocity, 2 steps", check=TOL),
    Case("round_trip/public_heun", "round_trip", inversion(4, grid=uniform_grid(3), method="heun"), seed=66,
         measure="items",
         public=True, about="Heun, 2D points, 3 uniform steps: x0_hat, x1 back and one error per sample", check=TOL),
]

MUTATIONS = (
    Mutation("forward_grid", "invert", "torch.as_tensor(ts).flip(0)", "torch.as_tensor(ts)",
             fails="invert/euler_uniform", hint="reversed grid ts.flip(0)"),
    Mutation("always_euler", "invert", 'step = {"euler": euler_step, "heun": heun_step}[method]',
             "step = euler_step", fails="invert/heun_uniform", hint="your inversion takes Euler steps"),
    Mutation("drops_last_step", "invert", "zip(times[:-1], times[1:])", "zip(times[:-2], times[1:-1])",
             fails="invert/euler_shifted", hint="stops one step short"),
    Mutation("negated_velocity", "invert", "x = step(velocity, x, t_here, t_back)",
             "x = step(lambda x, t: -velocity(x, t), x, t_here, t_back)",
             fails="invert/heun_uniform", hint="the two signs cancel"),
    Mutation("fixed_point_velocity_at_t_next", "invert_fixed_point", "x = x_next - h * velocity(x, t)",
             "x = x_next - h * velocity(x, t_next)", fails="invert_fixed_point/two_iterations",
             hint="your corrections evaluate the velocity at t_next"),
    Mutation("round_trip_norm", "round_trip", "difference.pow(2).mean(dim=1).sqrt()", "difference.norm(dim=1)",
             fails="round_trip/euler", hint="divide by the square root of the number of entries"),
)

CASES = AssignmentCases(ASSIGNMENT, (INVERT, FIXED_POINT, ROUND_TRIP), tuple(HIDDEN + PUBLIC), MUTATIONS)
