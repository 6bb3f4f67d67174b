"""Test cases of notebook 03 (stochastic samplers): ``score_from_velocity`` and ``euler_maruyama_step``.

Instructor only: never released, never copied into the sandbox (the sandbox gets the inputs as
arrays). After editing, run ``flowlab references`` and ``pytest tests/test_grading_cases.py``.

Every Euler-Maruyama case passes its noise explicitly; the step from t = 0 is deterministic, so the
wrong answers that only get the t > 0 formula wrong are blind to it (and the one that adds noise at
t = 0 is blind to every other case).
"""
import math

import torch

from flowlab.validate import expand_time, time_batch
from flowlab_grader.cases import AssignmentCases, Case, GradedFunction, Mutation, Wrong
from flowlab.runtime.compare import AllClose
from flowlab.runtime.fixtures import AffineVelocity

ASSIGNMENT = "03_stochastic_samplers"
SCORE_CELL = "hidden_tests_score_from_velocity"
EM_CELL = "hidden_tests_euler_maruyama_step"


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

AT_ZERO = ("divided_by_t",)   # cases with t = 0, where dividing by t gives infinities (no diagnosis)
SCORE_CHECK = AllClose(rtol=1e-5, atol=1e-5)
EM_CHECK = AllClose(rtol=1e-5, atol=1e-5)
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
]

MUTATIONS = (
    Mutation("score_wrong_sign", "score_from_velocity", "(t * velocity - x) / (1 - t)", "(x - t * velocity) / (1 - t)",
             fails="score_from_velocity/float_t", hint="your score has the wrong sign"),
    Mutation("drift_without_score", "euler_maruyama_step", "drift = v + eta * (v - x / t)", "drift = v",
             fails="euler_maruyama_step/points", hint="your drift is just v"),
    Mutation("noise_times_h", "euler_maruyama_step", "g * h ** 0.5 * noise", "g * h * noise",
             fails="euler_maruyama_step/images", hint="not g h * noise"),
)

CASES = AssignmentCases(ASSIGNMENT, (SCORE, EM), tuple(HIDDEN + PUBLIC), MUTATIONS)
