"""Test cases of notebook 03 (stochastic samplers): ``score_from_velocity``, ``euler_maruyama_step``,
the sampler loop ``sample_em`` and EDM's ``churn_step``.

Instructor only: never released, never copied into the sandbox (the sandbox gets the inputs as
arrays). After editing, run ``flowlab references`` and ``pytest tests/test_grading_cases.py``.

Every Euler-Maruyama case passes its noise explicitly; the step from t = 0 is deterministic, so the
wrong answers that only get the t > 0 formula wrong are blind to it (and the one that adds noise at
t = 0 is blind to every other case). ``sample_em`` draws its noise from a seeded generator, one
float32 draw a step (the step from t = 0 included): the cases give a ``GeneratorSeed``, and the
wrong loops differ in which draws feed which step.
"""
import math

import torch

from flowlab.validate import expand_time, time_batch
from flowlab_grader.cases import AssignmentCases, Case, GradedFunction, Mutation, Wrong
from flowlab.runtime.codec import GeneratorSeed
from flowlab.runtime.compare import AllClose
from flowlab.runtime.fixtures import AffineVelocity
from flowlab.runtime.side_effects import GLOBAL_RANDOM_HINT
from flowlab.sde import euler_maruyama_step

ASSIGNMENT = "03_stochastic_samplers"
SCORE_CELL = "hidden_tests_score_from_velocity"
EM_CELL = "hidden_tests_euler_maruyama_step"
LOOP_CELL = "hidden_tests_sample_em"
CHURN_CELL = "hidden_tests_churn_step"


# ---- plausible wrong answers (same signatures as the graded functions) ----------------------------

def _t(t, x):
    """t (a float or (B,)) shaped to multiply x: (B, 1, ..., 1)."""
    return expand_time(time_batch(t, x), x)


def score_wrong_sign(velocity, x, t):
    t = _t(t, x)
    return (x - t * velocity) / (1 - t)


def score_divided_by_t(velocity, x, t):
    t = _t(t, x)
    if (t == 0).any():    # a student would get infinities here; NaN references would match any output in diagnoses
        raise ZeroDivisionError("divided by t = 0")
    return (t * velocity - x) / t


def score_without_velocity(velocity, x, t):
    return -x / (1 - _t(t, x))


def score_times_noise_level(velocity, x, t):
    t = _t(t, x)
    return (t * velocity - x) * (1 - t)


def _em(velocity, x, t, t_next, eta, noise, drift=None, g=None, kick=None, at_zero=None):
    """The Euler-Maruyama step with one part replaced: ``drift(v, x, t, eta)``, ``g(t, eta)``,
    ``kick(g, h, noise)`` (the noise term) or ``at_zero(x, h, v, noise)`` (the step from t = 0)."""
    h = t_next - t
    v = velocity(x, torch.full((x.shape[0],), float(t), dtype=x.dtype))
    if t == 0:
        return at_zero(x, h, v, noise, t_next, eta) if at_zero else x + h * v
    drift = (drift or (lambda v, x, t, eta: v + eta * (v - x / t)))(v, x, t, eta)
    g = (g or (lambda t, eta: math.sqrt(eta * 2 * (1 - t) / t)))(t, eta)
    return x + h * drift + (kick or (lambda g, h, noise: g * math.sqrt(h) * noise))(g, h, noise)


def em_drift_without_score(velocity, x, t, t_next, eta, noise):
    return _em(velocity, x, t, t_next, eta, noise, drift=lambda v, x, t, eta: v)


def em_score_term_sign(velocity, x, t, t_next, eta, noise):
    return _em(velocity, x, t, t_next, eta, noise, drift=lambda v, x, t, eta: v - eta * (v - x / t))


def em_noise_without_sqrt_h(velocity, x, t, t_next, eta, noise):
    return _em(velocity, x, t, t_next, eta, noise, kick=lambda g, h, noise: g * noise)


def em_noise_times_h(velocity, x, t, t_next, eta, noise):
    return _em(velocity, x, t, t_next, eta, noise, kick=lambda g, h, noise: g * h * noise)


def em_g_without_2(velocity, x, t, t_next, eta, noise):
    return _em(velocity, x, t, t_next, eta, noise, g=lambda t, eta: math.sqrt(eta * (1 - t) / t))


def em_g_without_eta(velocity, x, t, t_next, eta, noise):
    return _em(velocity, x, t, t_next, eta, noise, g=lambda t, eta: math.sqrt(2 * (1 - t) / t))


def em_eta_on_noise_only(velocity, x, t, t_next, eta, noise):
    return _em(velocity, x, t, t_next, eta, noise, drift=lambda v, x, t, eta: v + (v - x / t))


def em_noise_at_zero(velocity, x, t, t_next, eta, noise):
    at_zero = lambda x, h, v, noise, t_next, eta: x + h * v + math.sqrt(eta * 2 * (1 - t_next) / t_next * h) * noise
    return _em(velocity, x, t, t_next, eta, noise, at_zero=at_zero)


def _loop(velocity, x, ts, eta, draws):
    """Euler-Maruyama over ``ts`` with the noise of step i from ``draws(i, t)`` (library step)."""
    times = [float(t) for t in ts]
    for i, (t, t_next) in enumerate(zip(times[:-1], times[1:])):
        x = euler_maruyama_step(velocity, x, t, t_next, eta, draws(i, t).to(x))
    return x


def loop_same_noise(velocity, x, ts, eta, generator):
    noise = torch.randn(x.shape, generator=generator)
    return _loop(velocity, x, ts, eta, lambda i, t: noise)


def loop_skips_first_draw(velocity, x, ts, eta, generator):
    zeros = torch.zeros(x.shape)
    return _loop(velocity, x, ts, eta, lambda i, t: torch.randn(x.shape, generator=generator) if t > 0 else zeros)


def loop_drops_last_step(velocity, x, ts, eta, generator):
    return _loop(velocity, x, ts[:-1], eta, lambda i, t: torch.randn(x.shape, generator=generator))


def loop_velocity_at_t_next(velocity, x, ts, eta, generator):
    times = [float(t) for t in ts]
    for t, t_next in zip(times[:-1], times[1:]):
        noise = torch.randn(x.shape, generator=generator).to(x)
        shifted = lambda x, s, h=t_next - t: velocity(x, s + h)
        x = euler_maruyama_step(shifted, x, t, t_next, eta, noise)
    return x


def loop_global_stream(velocity, x, ts, eta, generator):
    return _loop(velocity, x, ts, eta, lambda i, t: torch.randn(x.shape))


def _churn(x, t, gamma, noise, sigma_hat=None, added_var=None, shrink=True, returned=None):
    """EDM's churn with one part replaced (the t_hat formula, the added variance, the shrink, what is returned)."""
    sigma = (1 - t) / t
    sigma_hat = sigma * (1 + gamma) if sigma_hat is None else sigma_hat(sigma, gamma)
    t_hat = 1 / (1 + sigma_hat)
    variance = (1 - t_hat) ** 2 - (t_hat * sigma) ** 2 if added_var is None else added_var(t, t_hat, sigma)
    x_hat = ((t_hat / t) * x if shrink else x) + math.sqrt(max(variance, 0.0)) * noise
    return x_hat, (t_hat if returned is None else returned(t_hat, sigma_hat))


def churn_just_adds_noise(x, t, gamma, noise):
    return _churn(x, t, gamma, noise, shrink=False)


def churn_sigma_plus_gamma(x, t, gamma, noise):
    return _churn(x, t, gamma, noise, sigma_hat=lambda sigma, gamma: sigma + gamma)


def churn_full_noise(x, t, gamma, noise):
    return _churn(x, t, gamma, noise, added_var=lambda t, t_hat, sigma: (1 - t_hat) ** 2)


def churn_old_noise_unscaled(x, t, gamma, noise):
    return _churn(x, t, gamma, noise, added_var=lambda t, t_hat, sigma: (1 - t_hat) ** 2 - (1 - t) ** 2)


def churn_returns_sigma_hat(x, t, gamma, noise):
    return _churn(x, t, gamma, noise, returned=lambda t_hat, sigma_hat: sigma_hat)


# ---- inputs ------------------------------------------------------------------------------------

def score_inputs(batch, t, shape=(2,), dtype=torch.float32):
    """``t``: a float, or "per_sample" for a (B,) tensor in [0, 0.95) whose first entry is 0."""
    def build(generator):
        inputs = {"velocity": torch.randn(batch, *shape, generator=generator).to(dtype),
                  "x": torch.randn(batch, *shape, generator=generator).to(dtype)}
        if t == "per_sample":
            times = 0.95 * torch.rand(batch, generator=generator)
            times[0] = 0.0
            inputs["t"] = times.to(dtype)
        else:
            inputs["t"] = t
        return inputs
    return build


def em_inputs(batch, t, t_next, eta, shape=(2,), dtype=torch.float32):
    def build(generator):
        draw = lambda *size: torch.randn(*size, generator=generator)
        velocity = AffineVelocity(0.8 * draw(*shape), draw(*shape))
        return {"velocity": velocity, "x": draw(batch, *shape).to(dtype), "t": t, "t_next": t_next,
                "eta": eta, "noise": draw(batch, *shape).to(dtype)}
    return build


def loop_inputs(batch, ts, eta, shape=(2,), seed=0):
    def build(generator):
        draw = lambda *size: torch.randn(*size, generator=generator)
        velocity = AffineVelocity(0.5 * draw(*shape), draw(*shape))
        return {"velocity": velocity, "x": draw(batch, *shape), "ts": torch.tensor(ts, dtype=torch.float32),
                "eta": eta, "generator": GeneratorSeed(seed)}
    return build


def churn_inputs(batch, t, gamma, shape=(2,), dtype=torch.float32):
    def build(generator):
        draw = lambda *size: torch.randn(*size, generator=generator).to(dtype)
        return {"x": draw(batch, *shape), "t": t, "gamma": gamma, "noise": draw(batch, *shape)}
    return build


# ---- the cases ---------------------------------------------------------------------------------

SCORE = GradedFunction("score_from_velocity", library="flowlab.paths:score_from_velocity", positional=3, wrong={
    "wrong_sign": Wrong(score_wrong_sign, "your score has the wrong sign: it points away from the data. The score "
                                          "is -x0_hat / (1 - t) = (t v - x) / (1 - t), with x0_hat = x - t v"),
    "divided_by_t": Wrong(score_divided_by_t, "you divided by t; the score divides the noise estimate "
                                              "x0_hat = x - t v by the noise level 1 - t: (t v - x) / (1 - t)"),
    "without_velocity": Wrong(score_without_velocity, "-x / (1 - t) ignores the velocity (it is the score of "
                              "noise alone); the velocity says where the data is: (t v - x) / (1 - t)"),
    "times_noise_level": Wrong(score_times_noise_level, "you multiplied by (1 - t); the score divides by it: "
                                                        "(t v - x) / (1 - t)"),
})
T0 = "noise_at_zero"
EM = GradedFunction("euler_maruyama_step", library="flowlab.sde:euler_maruyama_step", positional=6, wrong={
    "drift_without_score": Wrong(em_drift_without_score, "your drift is just v: with noise added, the drift needs "
                                 "the score term g^2/2 * score = eta (v - x / t), which undoes the spreading by "
                                 "the noise: drift = v + eta (v - x / t)"),
    "score_term_sign": Wrong(em_score_term_sign, "the score term of the drift has the wrong sign: "
                                                 "drift = v + eta (v - x / t)"),
    "noise_without_sqrt_h": Wrong(em_noise_without_sqrt_h, "the noise of a step is g sqrt(h) * noise: a Brownian "
                                  "increment over a time h has variance h; you left out sqrt(h)"),
    "noise_times_h": Wrong(em_noise_times_h, "the noise of a step is g sqrt(h) * noise, not g h * noise: a Brownian "
                                             "increment over a time h has standard deviation sqrt(h)"),
    "g_without_2": Wrong(em_g_without_2, "the noise scale is g = sqrt(eta * 2 (1 - t) / t): you forgot the factor 2"),
    "g_without_eta": Wrong(em_g_without_eta, "the noise scale must grow with eta: g = sqrt(eta * 2 (1 - t) / t) "
                                             "(eta = 0 is the ODE: no noise)"),
    "eta_on_noise_only": Wrong(em_eta_on_noise_only, "eta must scale the score term of the drift too, "
                               "drift = v + eta (v - x / t): the drift correction has to match the noise g^2 it undoes"),
    T0: Wrong(em_noise_at_zero, "the step from t = 0 must be deterministic, x + h v: at t = 0 the noise scale g is "
                                "infinite and x / t undefined, and x is pure noise already"),
})
EM_WRONG = tuple(EM.wrong)

LOOP = GradedFunction("sample_em", library="flowlab.sde:sample_em", positional=5, wrong={
    "same_noise": Wrong(loop_same_noise, "every step must get fresh noise: one new draw from the generator a step; "
                                         "you reused one draw for all steps"),
    "skips_first_draw": Wrong(loop_skips_first_draw, "draw the noise of every step, also of the step from t = 0 "
                              "(which ignores it): otherwise every later step gets the draw of the step before it"),
    "drops_last_step": Wrong(loop_drops_last_step, "the loop stops one step early: it must end at ts[-1]"),
    "velocity_at_t_next": Wrong(loop_velocity_at_t_next, "each step starts at its own t (the grid point before "
                                "it), not at t_next"),
    "global_stream": Wrong(loop_global_stream, GLOBAL_RANDOM_HINT, by="side_effects"),
})
CHURN = GradedFunction("churn_step", library="flowlab.sde:churn_step", positional=4, wrong={
    "just_adds_noise": Wrong(churn_just_adds_noise, "x_hat keeps the data weight t of x: on the path x_t = t x1 + "
                             "(1 - t) x0 the data must enter with weight t_hat, so scale x by t_hat / t before "
                             "adding noise (adding noise alone is right only where the data weight is always 1, "
                             "in EDM's own coordinates)"),
    "sigma_plus_gamma": Wrong(churn_sigma_plus_gamma, "churn raises the noise level by a factor: sigma_hat = "
                              "(1 + gamma) sigma, not sigma + gamma"),
    "full_noise": Wrong(churn_full_noise, "x already holds noise of standard deviation (1 - t) t_hat / t after "
                        "scaling; add only what is missing to reach 1 - t_hat (variances add)"),
    "old_noise_unscaled": Wrong(churn_old_noise_unscaled, "the noise already in x is scaled by t_hat / t with the "
                                "rest of x: its standard deviation is t_hat (1 - t) / t, not 1 - t"),
    "returns_sigma_hat": Wrong(churn_returns_sigma_hat, "return the new time t_hat = 1 / (1 + sigma_hat), not the "
                               "noise level sigma_hat"),
})


AT_ZERO = ("divided_by_t",)   # cases with t = 0, where dividing by t gives infinities (no diagnosis)
SCORE_CHECK = AllClose(rtol=1e-5, atol=1e-5)
EM_CHECK = AllClose(rtol=1e-5, atol=1e-5)
LOOP_CHECK = AllClose(rtol=1e-4, atol=1e-4)     # several float32 steps against float64
CHURN_CHECK = AllClose(rtol=1e-5, atol=1e-5)
EXACT = AllClose(rtol=1e-10, atol=1e-10)

HIDDEN = [
    Case("score_from_velocity/per_sample_t", "score_from_velocity", score_inputs(64, "per_sample"), seed=101,
         cell=SCORE_CELL, about="t given per sample, shape (B,), including t = 0", check=SCORE_CHECK, blind_to=AT_ZERO),
    Case("score_from_velocity/float_t", "score_from_velocity", score_inputs(32, 0.3), seed=102, cell=SCORE_CELL,
         about="t given as one Python float for the whole batch", check=SCORE_CHECK),
    Case("score_from_velocity/images", "score_from_velocity", score_inputs(8, "per_sample", (1, 4, 4)), seed=103,
         cell=SCORE_CELL, about="images of shape (B, 1, 4, 4): t must broadcast over all non-batch dimensions",
         check=SCORE_CHECK, blind_to=AT_ZERO),
    Case("score_from_velocity/float64", "score_from_velocity", score_inputs(16, "per_sample", (3,), torch.float64),
         seed=104, cell=SCORE_CELL, about="float64 inputs in 3D: the result keeps the inputs' dtype", check=EXACT,
         blind_to=AT_ZERO),
    Case("score_from_velocity/noise_end", "score_from_velocity", score_inputs(16, 0.0), seed=105, cell=SCORE_CELL,
         about="t = 0: pure noise N(0, I), whose score is -x", check=SCORE_CHECK, blind_to=AT_ZERO + ("without_velocity", "times_noise_level")),
    Case("score_from_velocity/near_data", "score_from_velocity", score_inputs(16, 0.97), seed=106, cell=SCORE_CELL,
         about="t = 0.97, close to the data, where the score is large", check=SCORE_CHECK),
    Case("euler_maruyama_step/points", "euler_maruyama_step", em_inputs(64, 0.3, 0.4, 0.5), seed=201, cell=EM_CELL,
         about="a step from t = 0.3 to 0.4 with eta = 0.5 on 2D points", check=EM_CHECK, blind_to=(T0,)),
    Case("euler_maruyama_step/images", "euler_maruyama_step", em_inputs(8, 0.5, 0.625, 1.5, (1, 4, 4)), seed=202,
         cell=EM_CELL, about="images of shape (B, 1, 4, 4), eta = 1.5", check=EM_CHECK, blind_to=(T0,)),
    Case("euler_maruyama_step/from_noise", "euler_maruyama_step", em_inputs(32, 0.0, 0.1, 0.7), seed=203,
         cell=EM_CELL, about="the first step, from t = 0: deterministic, x + h v (g and x / t are infinite there; "
                             "the noise is ignored)",
         check=EM_CHECK, blind_to=tuple(name for name in EM_WRONG if name != T0)),
    Case("euler_maruyama_step/to_data", "euler_maruyama_step", em_inputs(32, 0.9, 1.0, 0.8), seed=204, cell=EM_CELL,
         about="the last step, ending at t = 1 (data)", check=EM_CHECK, blind_to=(T0,)),
    Case("euler_maruyama_step/eta_zero", "euler_maruyama_step", em_inputs(32, 0.4, 0.5, 0.0), seed=205, cell=EM_CELL,
         about="eta = 0: no noise and no score term, a plain Euler step", check=EM_CHECK,
         blind_to=("drift_without_score", "score_term_sign", "noise_without_sqrt_h", "noise_times_h", "g_without_2",
                   T0)),
    Case("euler_maruyama_step/float64", "euler_maruyama_step", em_inputs(16, 0.2, 0.3, 3.0, (3,), torch.float64),
         seed=206, cell=EM_CELL, about="float64 inputs in 3D, eta = 3: the result keeps the inputs' dtype",
         check=EXACT, blind_to=(T0,)),
    Case("euler_maruyama_step/small_t", "euler_maruyama_step", em_inputs(32, 0.05, 0.1, 0.3), seed=207, cell=EM_CELL,
         about="a step from t = 0.05, where g and x / t are large", check=EM_CHECK, blind_to=(T0,)),
    Case("sample_em/points", "sample_em", loop_inputs(64, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0], 1.0, seed=5),
         seed=301, cell=LOOP_CELL, about="five steps of a uniform grid from t = 0 to 1, eta = 1, 2D points",
         check=LOOP_CHECK),
    Case("sample_em/images", "sample_em", loop_inputs(6, [0.0, 0.1, 0.3, 0.6, 1.0], 2.0, (1, 3, 3), seed=6),
         seed=302, cell=LOOP_CELL, about="a non-uniform grid on images (6, 1, 3, 3), eta = 2", check=LOOP_CHECK),
    Case("sample_em/from_midway", "sample_em", loop_inputs(32, [0.3, 0.5, 0.7, 0.9], 0.5, seed=7), seed=303,
         cell=LOOP_CELL, about="a grid that starts at t = 0.3 (every step noisy), eta = 0.5", check=LOOP_CHECK,
         blind_to=("skips_first_draw",)),
    Case("sample_em/eta_zero", "sample_em", loop_inputs(32, [0.0, 0.25, 0.5, 0.75, 1.0], 0.0, seed=8), seed=304,
         cell=LOOP_CELL, about="eta = 0: Euler steps, the noise is drawn and unused", check=LOOP_CHECK,
         blind_to=("same_noise", "skips_first_draw")),
    Case("sample_em/one_step", "sample_em", loop_inputs(16, [0.4, 0.9], 1.5, seed=9), seed=305, cell=LOOP_CELL,
         about="a grid of one step, from t = 0.4 to 0.9", check=LOOP_CHECK, blind_to=("same_noise", "skips_first_draw")),
    Case("churn_step/points", "churn_step", churn_inputs(64, 0.4, 0.4), seed=311, cell=CHURN_CELL,
         about="t = 0.4, gamma = 0.4 on 2D points", check=CHURN_CHECK, measure="items"),
    Case("churn_step/images", "churn_step", churn_inputs(8, 0.8, 1.0, (1, 4, 4)), seed=312, cell=CHURN_CELL,
         about="images (8, 1, 4, 4) at t = 0.8, gamma = 1", check=CHURN_CHECK, measure="items"),
    Case("churn_step/noisy", "churn_step", churn_inputs(32, 0.15, 0.1), seed=313, cell=CHURN_CELL,
         about="t = 0.15 (mostly noise), gamma = 0.1", check=CHURN_CHECK, measure="items"),
    Case("churn_step/gamma_zero", "churn_step", churn_inputs(16, 0.6, 0.0), seed=314, cell=CHURN_CELL,
         about="gamma = 0: no churn, x and t come back unchanged", check=CHURN_CHECK, measure="items",
         blind_to=("just_adds_noise", "sigma_plus_gamma", "old_noise_unscaled")),
    Case("churn_step/float64", "churn_step", churn_inputs(16, 0.35, 0.7, (3,), torch.float64), seed=315,
         cell=CHURN_CELL, about="float64 inputs in 3D: x_hat keeps the dtype", check=EXACT, measure="items"),
]
PUBLIC = [
    Case("score_from_velocity/public_per_sample_t", "score_from_velocity", score_inputs(4, "per_sample"), seed=11,
         public=True, about="the score with one time per sample, (B,)", check=SCORE_CHECK, blind_to=AT_ZERO),
    Case("score_from_velocity/public_images", "score_from_velocity", score_inputs(2, 0.6, (1, 2, 2)), seed=12,
         public=True, about="the score of images (2, 1, 2, 2) at t = 0.6 given as a float", check=SCORE_CHECK),
    Case("euler_maruyama_step/public_points", "euler_maruyama_step", em_inputs(4, 0.25, 0.5, 0.5), seed=21,
         public=True, about="a step from t = 0.25 to 0.5 with eta = 0.5", check=EM_CHECK, blind_to=(T0,)),
    Case("euler_maruyama_step/public_images", "euler_maruyama_step", em_inputs(2, 0.6, 0.7, 2.5, (1, 2, 2)),
         seed=22, public=True, about="a step on images (2, 1, 2, 2) with eta = 2.5", check=EM_CHECK, blind_to=(T0,)),
    Case("euler_maruyama_step/public_from_noise", "euler_maruyama_step", em_inputs(4, 0.0, 0.25, 1.5), seed=23,
         public=True, about="the first step, from t = 0 (deterministic)", check=EM_CHECK,
         blind_to=tuple(name for name in EM_WRONG if name != T0)),
    Case("sample_em/public_points", "sample_em", loop_inputs(4, [0.0, 0.25, 0.5, 0.75, 1.0], 1.0, seed=1),
         seed=31, public=True, about="a uniform grid of four steps from t = 0, eta = 1: one fresh draw a step",
         check=LOOP_CHECK),
    Case("sample_em/public_midway", "sample_em", loop_inputs(3, [0.5, 0.7, 0.9], 0.5, (1, 2, 2), seed=2),
         seed=32, public=True, about="images on a grid from t = 0.5 to 0.9", check=LOOP_CHECK,
         blind_to=("skips_first_draw",)),
    Case("churn_step/public_points", "churn_step", churn_inputs(4, 0.6, 0.5), seed=33, public=True,
         about="x_hat and t_hat at t = 0.6, gamma = 0.5", check=CHURN_CHECK, measure="items"),
    Case("churn_step/public_images", "churn_step", churn_inputs(2, 0.7, 1.0, (1, 2, 2)), seed=34, public=True,
         about="x_hat and t_hat for images at t = 0.7, gamma = 1", check=CHURN_CHECK, measure="items"),
]

MUTATIONS = (
    Mutation("score_wrong_sign", "score_from_velocity", "return -noise_estimate / (1 - t)", "return noise_estimate / (1 - t)",
             fails="score_from_velocity/float_t", hint="your score has the wrong sign"),
    Mutation("drift_without_score", "euler_maruyama_step", "drift = v + score_term", "drift = v",
             fails="euler_maruyama_step/points", hint="your drift is just v"),
    Mutation("noise_times_h", "euler_maruyama_step", "g * h ** 0.5 * noise", "g * h * noise",
             fails="euler_maruyama_step/images", hint="not g h * noise"),
)

CASES = AssignmentCases(ASSIGNMENT, (SCORE, EM, LOOP, CHURN), tuple(HIDDEN + PUBLIC), MUTATIONS)
