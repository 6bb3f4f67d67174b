"""Test cases of notebook 02 (ODE samplers): ``euler_step``, ``heun_step``, the loop ``integrate``,
and the grids ``shifted`` and ``karras``.

Instructor only: never released, never copied into the sandbox (the sandbox gets the inputs as
arrays). After editing, run ``flowlab references`` and ``pytest tests/test_grading_cases.py``.

Velocities: ``AffineVelocity`` (v = scale x + t shift) tells Euler from Heun and catches the wrong
times, but on an affine velocity Heun and the midpoint rule give *identical* steps (every two-stage
second-order Runge-Kutta step is the second-order Taylor step there), so the cases that must tell
them apart use ``TanhVelocity`` (v = scale tanh(x) + t shift). ``integrate`` is given the step
``MidpointStep``, which no loop computes by accident (not Euler, not Heun, not symmetric in t, t_next).
"""

import torch

from flowlab_grader.cases import AssignmentCases, Case, GradedFunction, Mutation, Wrong
from flowlab.runtime.compare import AllClose
from flowlab.runtime.fixtures import AffineVelocity, MidpointStep, TanhVelocity

ASSIGNMENT = "02_ode_samplers"
EULER_CELL = "hidden_tests_euler_step"
HEUN_CELL = "hidden_tests_heun_step"
SHIFTED_CELL = "hidden_tests_shifted"
INTEGRATE_CELL = "hidden_tests_integrate"
KARRAS_CELL = "hidden_tests_karras"


# ---- plausible wrong answers (same signatures as the graded functions) ----------------------------

def _v(velocity, x, t):
    return velocity(x, torch.full((x.shape[0],), float(t), dtype=x.dtype))


def euler_at_t_next(velocity, x, t, t_next):
    return x + (t_next - t) * _v(velocity, x, t_next)


def euler_without_h(velocity, x, t, t_next):
    return x + _v(velocity, x, t)


def heun_is_euler(velocity, x, t, t_next):
    return x + (t_next - t) * _v(velocity, x, t)


def heun_without_predictor(velocity, x, t, t_next):
    h = t_next - t
    return x + 0.5 * h * (_v(velocity, x, t) + _v(velocity, x, t_next))


def heun_full_h(velocity, x, t, t_next):
    h = t_next - t
    v_start = _v(velocity, x, t)
    return x + h * (v_start + _v(velocity, x + h * v_start, t_next))


def heun_is_midpoint(velocity, x, t, t_next):
    h = t_next - t
    return x + h * _v(velocity, x + 0.5 * h * _v(velocity, x, t), t + 0.5 * h)


def _uniform(n):
    return torch.linspace(0, 1, n + 1, dtype=torch.float64)


def shifted_on_t(n, shift=3.0):
    t = _uniform(n)
    return shift * t / (1 + (shift - 1) * t)


def shifted_noise_level(n, shift=3.0):
    s = 1 - _uniform(n)
    return shift * s / (1 + (shift - 1) * s)


def shifted_ignores_shift(n, shift=3.0):
    return _uniform(n)


def _loop(step, velocity, x, times, return_path):
    path = [x]
    with torch.no_grad():
        for t, t_next in zip(times[:-1], times[1:]):
            path.append(step(velocity, path[-1], t, t_next))
    return (path[-1], torch.stack(path)) if return_path else path[-1]


def integrate_skips_last(step, velocity, x, ts, return_path=False):
    return _loop(step, velocity, x, ts.tolist()[:-1], return_path)


def integrate_swapped_times(step, velocity, x, ts, return_path=False):
    return _loop(lambda v, x, t, t_next: step(v, x, t_next, t), velocity, x, ts.tolist(), return_path)


def integrate_from_start(step, velocity, x, ts, return_path=False):
    """Every step starts from the initial point instead of the previous step's result."""
    times = ts.tolist()
    path = [x] + [step(velocity, x, t, t_next) for t, t_next in zip(times[:-1], times[1:])]
    return (path[-1], torch.stack(path)) if return_path else path[-1]


def integrate_uniform_grid(step, velocity, x, ts, return_path=False):
    """Ignores where the grid's points are: equal steps between its ends."""
    uniform = torch.linspace(float(ts[0]), float(ts[-1]), len(ts), dtype=torch.float64)
    return _loop(step, velocity, x, uniform.tolist(), return_path)


def integrate_own_euler(step, velocity, x, ts, return_path=False):
    """Ignores the step it is given and takes Euler steps."""
    return _loop(lambda v, x, t, t_next: x + (t_next - t) * _v(v, x, t), velocity, x, ts.tolist(), return_path)


def _karras_roots(count, rho, sigma_min, sigma_max, power=None):
    u = torch.linspace(0, 1, count, dtype=torch.float64)
    power = 1 / rho if power is None else power
    return sigma_max ** power + u * (sigma_min ** power - sigma_max ** power)


def _karras_grid(sigma, first=0.0):
    t = 1 / (1 + sigma)
    t[0] = first
    return torch.cat([t, torch.ones(1, dtype=torch.float64)])


def karras_over_n(n, rho=7.0, sigma_min=0.002, sigma_max=80.0):
    """n + 1 levels spaced by 1/n, both ends then replaced by t = 0 and t = 1."""
    t = 1 / (1 + _karras_roots(n + 1, rho, sigma_min, sigma_max) ** rho)
    t[0], t[-1] = 0.0, 1.0
    return t


def karras_reversed_map(n, rho=7.0, sigma_min=0.002, sigma_max=80.0):
    t = 1 - 1 / (1 + _karras_roots(n, rho, sigma_min, sigma_max) ** rho)
    t[0] = 0.0
    return torch.cat([t, torch.ones(1, dtype=torch.float64)])


def karras_starts_at_sigma_max(n, rho=7.0, sigma_min=0.002, sigma_max=80.0):
    sigma = _karras_roots(n, rho, sigma_min, sigma_max) ** rho
    return _karras_grid(sigma, first=1 / (1 + sigma_max))


def karras_power_not_inverted(n, rho=7.0, sigma_min=0.002, sigma_max=80.0):
    return _karras_grid(_karras_roots(n, rho, sigma_min, sigma_max, power=rho) ** (1 / rho))


def karras_uniform_in_sigma(n, rho=7.0, sigma_min=0.002, sigma_max=80.0):
    return _karras_grid(_karras_roots(n, rho, sigma_min, sigma_max, power=1.0))


# ---- inputs ------------------------------------------------------------------------------------

def _velocity(kind, shape, generator):
    draw = lambda: torch.randn(*shape, generator=generator)
    if kind == "tanh":
        return TanhVelocity(1.5 * draw(), draw())
    return AffineVelocity(0.8 * draw(), draw())


def step(batch, t, t_next, shape=(2,), dtype=torch.float32, kind="affine"):
    def build(generator):
        velocity = _velocity(kind, shape, generator)
        return {"velocity": velocity, "x": torch.randn(batch, *shape, generator=generator).to(dtype),
                "t": t, "t_next": t_next}
    return build


def loop(batch, ts, shape=(2,), kind="tanh", dtype=torch.float32, return_path=None):
    def build(generator):
        inputs = {"step": MidpointStep(), "velocity": _velocity(kind, shape, generator),
                  "x": torch.randn(batch, *shape, generator=generator).to(dtype),
                  "ts": torch.tensor(ts, dtype=torch.float64)}
        if return_path is not None:
            inputs["return_path"] = return_path
        return inputs
    return build


def edm(n, **params):
    def build(generator):
        return {"n": n, **params}
    return build


def grid(n, shift=None):
    def build(generator):
        return {"n": n} if shift is None else {"n": n, "shift": shift}
    return build


# ---- the cases ---------------------------------------------------------------------------------

EULER = GradedFunction("euler_step", library="flowlab.steps:euler_step", positional=4, wrong={
    "at_t_next": Wrong(euler_at_t_next, "you evaluated the velocity at t_next; Euler uses the slope at the "
                                        "start of the step: x + h v(x, t)"),
    "without_h": Wrong(euler_without_h, "you added the velocity without multiplying by the step size "
                                        "h = t_next - t: x_next = x + h v(x, t)"),
})
HEUN = GradedFunction("heun_step", library="flowlab.steps:heun_step", positional=4, wrong={
    "is_euler": Wrong(heun_is_euler, "your Heun step is an Euler step (first order): average the slope at "
                                     "the start with the slope at the Euler prediction (x + h v, t_next)"),
    "without_predictor": Wrong(heun_without_predictor, "you averaged with the slope at (x, t_next); the second "
                               "slope must be taken at the Euler prediction x + h v(x, t), at time t_next"),
    "full_h": Wrong(heun_full_h, "you added h times the SUM of the two slopes; Heun adds h/2 times their sum "
                                 "(h times their average)"),
    "midpoint": Wrong(heun_is_midpoint, "this is the midpoint rule (one slope at t + h/2); Heun averages the "
                                        "slopes at both ends: v(x, t) and v(x + h v(x, t), t_next)"),
})
SHIFTED = GradedFunction("shifted", library="flowlab.schedules:shifted", positional=1, wrong={
    "on_t": Wrong(shifted_on_t, "your short steps are at the wrong end (near t = 1, the data): the shift acts "
                                "on the noise level s = 1 - t, s' = shift s / (1 + (shift - 1) s), then t = 1 - s' "
                                "(applying it to t itself is the same as using 1 / shift)"),
    "noise_level": Wrong(shifted_noise_level, "your grid runs from 1 down to 0: you returned the shifted noise "
                                              "level s'; the grid is t = 1 - s', from t = 0 (noise) to t = 1"),
    "ignores_shift": Wrong(shifted_ignores_shift, "your grid is uniform: the shift parameter has no effect"),
})
INTEGRATE = GradedFunction("integrate", library="flowlab.steps:integrate", positional=4, wrong={
    "skips_last": Wrong(integrate_skips_last, "your loop stops one interval early: a grid of n + 1 times has n "
                                              "intervals, and the last one ends at ts[-1]"),
    "swapped_times": Wrong(integrate_swapped_times, "you called the step with its two times swapped: "
                                                    "step(velocity, x, t, t_next) goes from t to t_next"),
    "from_start": Wrong(integrate_from_start, "every step starts from the initial x; each step must start from "
                                              "the point the previous step reached"),
    "uniform_grid": Wrong(integrate_uniform_grid, "your loop takes equal steps between the grid's ends; step "
                                                  "between consecutive times of ts, wherever they are"),
    "own_euler": Wrong(integrate_own_euler, "your loop takes Euler steps whatever step it is given: call step"),
})
KARRAS = GradedFunction("karras", library="flowlab.schedules:karras", positional=1, wrong={
    "over_n": Wrong(karras_over_n, "your noise levels are spaced by 1/n over n + 1 points; EDM's n levels run "
                                   "from sigma_max to sigma_min in n - 1 equal steps of sigma^(1/rho), then "
                                   "t = 1 follows"),
    "reversed_map": Wrong(karras_reversed_map, "your times run the wrong way: a large sigma is a lot of noise, "
                                               "near t = 0; the map is t = 1 / (1 + sigma)"),
    "starts_at_sigma_max": Wrong(karras_starts_at_sigma_max, "your grid starts at t(sigma_max) > 0; the flow "
                                                             "starts from pure noise: the first time is t = 0"),
    "power_not_inverted": Wrong(karras_power_not_inverted, "your levels are evenly spaced in sigma^rho; EDM "
                                                           "spaces them evenly in sigma^(1/rho)"),
    "uniform_in_sigma": Wrong(karras_uniform_in_sigma, "your levels are evenly spaced in sigma itself: rho has "
                                                       "no effect"),
})

STEP = AllClose(rtol=1e-5, atol=1e-6)
EXACT = AllClose(rtol=1e-10, atol=1e-12)
GRID = AllClose(rtol=1e-6, atol=1e-9)
AFFINE_BLIND = ("midpoint",)          # identical to Heun on an affine velocity (see the module docstring)

HIDDEN = [
    Case("euler_step/points", "euler_step", step(64, 0.3, 0.55), seed=101, cell=EULER_CELL,
         about="a step from t = 0.3 to 0.55 on 2D points", check=STEP),
    Case("euler_step/images", "euler_step", step(8, 0.2, 0.45, (1, 4, 4)), seed=102, cell=EULER_CELL,
         about="images of shape (B, 1, 4, 4)", check=STEP),
    Case("euler_step/from_noise", "euler_step", step(32, 0.0, 0.25), seed=103, cell=EULER_CELL,
         about="the first step, from t = 0 (noise)", check=STEP),
    Case("euler_step/to_data", "euler_step", step(32, 0.7, 1.0), seed=104, cell=EULER_CELL,
         about="the last step, ending at t = 1 (data)", check=STEP),
    Case("euler_step/backward", "euler_step", step(32, 0.8, 0.5), seed=105, cell=EULER_CELL,
         about="a backward step (t_next < t, as inversion will use): h = t_next - t is negative", check=STEP),
    Case("euler_step/float64", "euler_step", step(16, 0.1, 0.6, (3,), torch.float64), seed=106, cell=EULER_CELL,
         about="float64 inputs in 3D: the result keeps the inputs' dtype", check=EXACT),
    Case("euler_step/nonlinear", "euler_step", step(32, 0.4, 0.9, kind="tanh"), seed=107, cell=EULER_CELL,
         about="a velocity that is nonlinear in x", check=STEP),
    Case("heun_step/points", "heun_step", step(64, 0.3, 0.7), seed=201, cell=HEUN_CELL,
         about="a step from t = 0.3 to 0.7 on 2D points", check=STEP, blind_to=AFFINE_BLIND),
    Case("heun_step/nonlinear", "heun_step", step(64, 0.2, 0.7, kind="tanh"), seed=202, cell=HEUN_CELL,
         about="a velocity that is nonlinear in x (where Heun and the midpoint rule differ)", check=STEP),
    Case("heun_step/images", "heun_step", step(8, 0.1, 0.6, (1, 4, 4), kind="tanh"), seed=203, cell=HEUN_CELL,
         about="images of shape (B, 1, 4, 4)", check=STEP),
    Case("heun_step/from_noise", "heun_step", step(32, 0.0, 0.4, kind="tanh"), seed=204, cell=HEUN_CELL,
         about="the first step, from t = 0 (noise)", check=STEP),
    Case("heun_step/to_data", "heun_step", step(32, 0.6, 1.0), seed=205, cell=HEUN_CELL,
         about="the last step, ending at t = 1 (data)", check=STEP, blind_to=AFFINE_BLIND),
    Case("heun_step/backward", "heun_step", step(32, 0.9, 0.4, kind="tanh"), seed=206, cell=HEUN_CELL,
         about="a backward step (t_next < t): h = t_next - t is negative", check=STEP),
    Case("heun_step/float64", "heun_step", step(16, 0.25, 0.75, (3,), torch.float64, kind="tanh"), seed=207,
         cell=HEUN_CELL, about="float64 inputs in 3D: the result keeps the inputs' dtype", check=EXACT),
    Case("shifted/default_shift", "shifted", grid(10), seed=301, cell=SHIFTED_CELL,
         about="10 steps with the default shift (3.0)", check=GRID),
    Case("shifted/shift_6", "shifted", grid(16, 6.0), seed=302, cell=SHIFTED_CELL,
         about="16 steps with shift = 6", check=GRID),
    Case("shifted/shift_below_1", "shifted", grid(25, 0.4), seed=303, cell=SHIFTED_CELL,
         about="shift < 1 (short steps near the data)", check=GRID),
    Case("shifted/shift_1", "shifted", grid(7, 1.0), seed=304, cell=SHIFTED_CELL,
         about="shift = 1 is the uniform grid", check=GRID, blind_to=("on_t", "ignores_shift")),
    Case("shifted/one_step", "shifted", grid(1, 3.0), seed=305, cell=SHIFTED_CELL,
         about="a single step: the grid is just [0, 1]", check=GRID, blind_to=("on_t", "ignores_shift")),
    Case("integrate/points", "integrate", loop(32, [0.0, 0.1, 0.35, 0.5, 0.9, 1.0]), seed=401,
         cell=INTEGRATE_CELL, about="an uneven grid of 5 steps on 2D points", check=STEP),
    Case("integrate/images", "integrate", loop(4, [0.0, 0.2, 0.3, 0.7, 1.0], (1, 4, 4)), seed=402,
         cell=INTEGRATE_CELL, about="images of shape (B, 1, 4, 4)", check=STEP),
    Case("integrate/backward", "integrate", loop(16, [1.0, 0.75, 0.6, 0.2, 0.0]), seed=403, cell=INTEGRATE_CELL,
         about="a decreasing grid: from data (t = 1) back to noise", check=STEP),
    Case("integrate/path", "integrate", loop(16, [0.0, 0.3, 0.45, 1.0], return_path=True), seed=404,
         cell=INTEGRATE_CELL, about="return_path=True: the end point and the states at every grid time",
         check=STEP, measure="items"),
    Case("integrate/one_step", "integrate", loop(16, [0.2, 0.9]), seed=405, cell=INTEGRATE_CELL,
         about="a grid of two times: one step", check=STEP, blind_to=("from_start", "uniform_grid")),
    Case("integrate/float64", "integrate", loop(8, [0.0, 0.05, 0.5, 1.0], (3,), dtype=torch.float64), seed=406,
         cell=INTEGRATE_CELL, about="float64 inputs in 3D: the result keeps the inputs' dtype", check=EXACT),
    Case("karras/default", "karras", edm(8), seed=501, cell=KARRAS_CELL,
         about="8 steps with EDM's defaults (rho = 7, sigma from 80 to 0.002)", check=GRID),
    Case("karras/rho_3", "karras", edm(12, rho=3.0, sigma_min=0.01, sigma_max=20.0), seed=502, cell=KARRAS_CELL,
         about="12 steps, rho = 3, sigma from 20 to 0.01", check=GRID),
    Case("karras/rho_1", "karras", edm(6, rho=1.0, sigma_min=0.1, sigma_max=10.0), seed=503, cell=KARRAS_CELL,
         about="rho = 1: levels evenly spaced in sigma itself", check=GRID,
         blind_to=("power_not_inverted", "uniform_in_sigma")),
    Case("karras/two_steps", "karras", edm(2), seed=504, cell=KARRAS_CELL,
         about="2 steps: t = 0, the level sigma_min, t = 1", check=GRID,
         blind_to=("power_not_inverted", "uniform_in_sigma")),
    Case("karras/one_step", "karras", edm(1), seed=505, cell=KARRAS_CELL,
         about="a single step: the grid is just [0, 1]", check=GRID,
         blind_to=("power_not_inverted", "uniform_in_sigma", "reversed_map", "over_n")),
]
PUBLIC = [
    Case("euler_step/public_points", "euler_step", step(4, 0.25, 0.5), seed=11, public=True,
         about="an Euler step on 2D points", check=STEP),
    Case("euler_step/public_images", "euler_step", step(2, 0.0, 0.5, (1, 2, 2)), seed=12, public=True,
         about="an Euler step from t = 0 on images of shape (2, 1, 2, 2)", check=STEP),
    Case("heun_step/public_points", "heun_step", step(4, 0.25, 0.75, kind="tanh"), seed=21, public=True,
         about="a Heun step on 2D points", check=STEP),
    Case("heun_step/public_backward", "heun_step", step(2, 0.75, 0.25, (1, 2, 2), kind="tanh"), seed=22,
         public=True, about="a backward Heun step on images of shape (2, 1, 2, 2)", check=STEP),
    Case("shifted/public_default", "shifted", grid(4), seed=31, public=True,
         about="shifted(4) with the default shift", check=GRID),
    Case("shifted/public_half", "shifted", grid(5, 0.5), seed=32, public=True,
         about="shifted(5, shift=0.5)", check=GRID),
    Case("integrate/public_points", "integrate", loop(4, [0.0, 0.25, 0.4, 1.0]), seed=41, public=True,
         about="three steps of an uneven grid on 2D points", check=STEP),
    Case("integrate/public_path", "integrate", loop(2, [1.0, 0.5, 0.0], (1, 2, 2), return_path=True), seed=42,
         public=True, about="a decreasing grid with return_path=True, images of shape (2, 1, 2, 2)", check=STEP,
         measure="items", blind_to=("uniform_grid",)),
    Case("karras/public_default", "karras", edm(4), seed=51, public=True,
         about="karras(4) with EDM's defaults", check=GRID),
    Case("karras/public_rho_2", "karras", edm(5, rho=2.0, sigma_min=0.05, sigma_max=5.0), seed=52, public=True,
         about="karras(5, rho=2, sigma_min=0.05, sigma_max=5)", check=GRID),
]

MUTATIONS = (
    Mutation("euler_at_t_next", "euler_step", "float(t), dtype", "float(t_next), dtype",
             fails="euler_step/points", hint="you evaluated the velocity at t_next"),
    Mutation("heun_without_predictor", "heun_step", "velocity(x_euler, t_end)", "velocity(x, t_end)",
             fails="heun_step/nonlinear", hint="the second slope must be taken at the Euler prediction"),
    Mutation("noise_level_returned", "shifted", "t = 1 - s_shifted", "t = s_shifted",
             fails="shifted/default_shift", hint="your grid runs from 1 down to 0"),
    Mutation("integrate_swapped_times", "integrate", "path.append(step(velocity, path[-1], t, t_next))",
             "path.append(step(velocity, path[-1], t_next, t))", fails="integrate/points",
             hint="called the step with its two times swapped"),
    Mutation("karras_reversed_map", "karras", "t = 1 / (1 + sigma)\n", "t = sigma / (1 + sigma)\n",
             fails="karras/default", hint="a large sigma is a lot of noise"),
)

CASES = AssignmentCases(ASSIGNMENT, (EULER, HEUN, INTEGRATE, SHIFTED, KARRAS), tuple(HIDDEN + PUBLIC), MUTATIONS)
