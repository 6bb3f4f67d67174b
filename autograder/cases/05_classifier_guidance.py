"""Test cases of notebook 05 (classifier guidance): ``log_prob_grad_from_classifier``,
``classifier_guidance`` and ``log_prob_grad_through_x1_hat``.

Instructor only: never released, never copied into the sandbox (the sandbox gets the inputs as
arrays). After editing, run ``flowlab references`` and ``pytest tests/test_grading_cases.py``.

Both graded functions return a function ``(x, t) -> tensor``; the ``returned_velocity`` measure
evaluates it at the inputs ``at_x`` and ``at_t``. The classifier is an ``ElementwiseClassifier``
(logits linear in x and t, no matrix multiply); ``velocity`` and ``log_prob_grad`` are
``AffineVelocity`` fixtures (any ``(x, t) -> tensor shaped like x`` will do), or ``TanhVelocity``
where the gradient through ``x1_hat`` needs a velocity that is not linear in x.
"""
import torch

from flowlab_grader.cases import AssignmentCases, Case, GradedFunction, Mutation, Wrong
from flowlab.runtime.compare import AllClose
from flowlab.runtime.fixtures import AffineVelocity, ElementwiseClassifier, TanhVelocity

ASSIGNMENT = "05_classifier_guidance"
GRAD_CELL = "hidden_tests_log_prob_grad_from_classifier"
GUIDANCE_CELL = "hidden_tests_classifier_guidance"
X1_HAT_CELL = "hidden_tests_log_prob_grad_through_x1_hat"


# ---- plausible wrong answers (same signatures as the graded functions) ----------------------------

def _gradient_of(classifier, y, objective):
    """``(x, t) -> grad_x objective(logits, y)`` with gradients enabled."""
    def log_prob_grad(x, t):
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(objective(classifier(x_in, t), y), x_in)
        return grad.detach()
    return log_prob_grad


def _chosen(values, y):
    return values.gather(1, y[:, None])


def grad_raw_logit(classifier, y):
    return _gradient_of(classifier, y, lambda logits, y: _chosen(logits, y).sum())


def grad_wrong_sign(classifier, y):
    return _gradient_of(classifier, y, lambda logits, y: -_chosen(torch.log_softmax(logits, 1), y).sum())


def grad_mean_over_batch(classifier, y):
    return _gradient_of(classifier, y, lambda logits, y: _chosen(torch.log_softmax(logits, 1), y).mean())


def grad_softmax_over_batch(classifier, y):
    return _gradient_of(classifier, y, lambda logits, y: _chosen(torch.log_softmax(logits, 0), y).sum())


def grad_probability(classifier, y):
    return _gradient_of(classifier, y, lambda logits, y: _chosen(torch.softmax(logits, 1), y).sum())


def _guided(velocity, log_prob_grad, w, t_min, combine):
    def guided_velocity(x, t):
        t = torch.as_tensor(t, dtype=x.dtype).expand(x.shape[0])
        shape = (-1,) + (1,) * (x.dim() - 1)
        on = (t >= t_min).to(x.dtype).reshape(shape)
        return combine(velocity(x, t), log_prob_grad(x, t), t.reshape(shape), on)
    return guided_velocity


def guidance_inverse_factor(velocity, log_prob_grad, w, t_min):
    return _guided(velocity, log_prob_grad, w, t_min, lambda v, g, t, on: v + on * w * t / (1 - t) * g)


def guidance_no_cutoff(velocity, log_prob_grad, w, t_min):
    return _guided(velocity, log_prob_grad, w, t_min, lambda v, g, t, on: v + w * (1 - t) / t * g)


def guidance_scales_velocity(velocity, log_prob_grad, w, t_min):
    return _guided(velocity, log_prob_grad, w, t_min, lambda v, g, t, on: w * (v + on * (1 - t) / t * g))


def guidance_on_score(velocity, log_prob_grad, w, t_min):
    return _guided(velocity, log_prob_grad, w, t_min, lambda v, g, t, on: v + on * w * g)


def guidance_wrong_sign(velocity, log_prob_grad, w, t_min):
    return _guided(velocity, log_prob_grad, w, t_min, lambda v, g, t, on: v - on * w * (1 - t) / t * g)


def _through(classifier, velocity, y, read, time_of_classifier=lambda t: torch.ones_like(t), total=torch.sum):
    """``(x, t) -> grad_x total(log_softmax(classifier(read(x, v, t), time_of_classifier(t)))[y])``, where
    ``read(x, v, t)`` is the image the classifier is shown (``t`` broadcast to ``(B, 1, ..., 1)``)."""
    def log_prob_grad(x, t):
        t = torch.as_tensor(t, dtype=x.dtype).expand(x.shape[0])
        shape = (-1,) + (1,) * (x.dim() - 1)
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            shown = read(x_in, lambda: velocity(x_in, t), t.reshape(shape))
            log_probs = torch.log_softmax(classifier(shown, time_of_classifier(t)), 1)
            (grad,) = torch.autograd.grad(total(_chosen(log_probs, y)), x_in)
        return grad.detach()
    return log_prob_grad


def x1_hat_classifier_on_x(classifier, velocity, y):
    return _through(classifier, velocity, y, lambda x, v, t: x)


def x1_hat_detached_velocity(classifier, velocity, y):
    return _through(classifier, velocity, y, lambda x, v, t: x + (1 - t) * v().detach())


def x1_hat_weight_t(classifier, velocity, y):
    return _through(classifier, velocity, y, lambda x, v, t: x + t * v())


def x1_hat_noise_estimate(classifier, velocity, y):
    return _through(classifier, velocity, y, lambda x, v, t: x - t * v())


def x1_hat_classifier_at_t(classifier, velocity, y):
    return _through(classifier, velocity, y, lambda x, v, t: x + (1 - t) * v(), time_of_classifier=lambda t: t)


def x1_hat_mean_over_batch(classifier, velocity, y):
    return _through(classifier, velocity, y, lambda x, v, t: x + (1 - t) * v(), total=torch.mean)


# ---- inputs ------------------------------------------------------------------------------------

def classifier_inputs(batch, sample_shape, classes, dtype=torch.float32, float_t=None):
    def build(generator):
        dim = int(torch.tensor(sample_shape).prod())
        draw = lambda *size: torch.randn(*size, generator=generator).to(dtype)
        classifier = ElementwiseClassifier(0.7 * draw(classes, dim), draw(classes), 0.5 * draw(classes))
        at_t = float_t if float_t is not None else torch.rand(batch, generator=generator).to(dtype)
        return {"classifier": classifier, "y": torch.randint(0, classes, (batch,), generator=generator),
                "at_x": draw(batch, *sample_shape), "at_t": at_t}
    return build


def x1_hat_inputs(batch, sample_shape, classes, dtype=torch.float32, float_t=None, curved=True):
    """A clean classifier, a velocity (``TanhVelocity`` if ``curved``, else ``AffineVelocity``), labels
    and where to evaluate; times in [0.05, 0.95] (the classifier's time weight tells t from 1)."""
    def build(generator):
        dim = int(torch.tensor(sample_shape).prod())
        draw = lambda *size: torch.randn(*size, generator=generator).to(dtype)
        classifier = ElementwiseClassifier(0.7 * draw(classes, dim), draw(classes), 0.5 * draw(classes))
        fixture = TanhVelocity if curved else AffineVelocity
        velocity = fixture(0.8 * draw(*sample_shape), draw(*sample_shape))
        at_t = float_t if float_t is not None else (0.05 + 0.9 * torch.rand(batch, generator=generator)).to(dtype)
        return {"classifier": classifier, "velocity": velocity,
                "y": torch.randint(0, classes, (batch,), generator=generator),
                "at_x": draw(batch, *sample_shape), "at_t": at_t}
    return build


def guidance_inputs(batch, sample_shape, w, t_min, dtype=torch.float32, float_t=None):
    """Times in [0.02, 0.95]; the first sample below ``t_min``, the second above."""
    def build(generator):
        draw = lambda *size: torch.randn(*size, generator=generator).to(dtype)
        velocity = AffineVelocity(0.5 * draw(*sample_shape), draw(*sample_shape))
        log_prob_grad = AffineVelocity(draw(*sample_shape), draw(*sample_shape))
        if float_t is None:
            at_t = 0.02 + 0.93 * torch.rand(batch, generator=generator)
            at_t[:2] = torch.tensor([t_min / 2, (1 + t_min) / 2])
            at_t = at_t.to(dtype)
        else:
            at_t = float_t
        return {"velocity": velocity, "log_prob_grad": log_prob_grad, "w": w, "t_min": t_min,
                "at_x": draw(batch, *sample_shape), "at_t": at_t}
    return build


def ReturnedCase(*args, **kwargs) -> Case:
    """A case of a function that returns a function: evaluated at the inputs ``at_x``, ``at_t``."""
    return Case(*args, measure="returned_velocity", **kwargs)


# ---- the cases ---------------------------------------------------------------------------------

GRAD = GradedFunction("log_prob_grad_from_classifier", library="flowlab.guidance:log_prob_grad_from_classifier",
                      positional=2, wrong={
    "raw_logit": Wrong(grad_raw_logit, "you differentiate the raw logit of class y; guidance needs "
                                       "grad log p(y | x_t): take log_softmax over the classes first"),
    "wrong_sign": Wrong(grad_wrong_sign, "your gradient has the wrong sign: it points away from class y "
                                         "(differentiate +log p(y | x_t))"),
    "mean_over_batch": Wrong(grad_mean_over_batch, "your gradients are divided by the batch size: SUM the "
                                                   "log-probabilities of the batch before differentiating (each "
                                                   "sample's gradient is then exactly its own)"),
    "softmax_over_batch": Wrong(grad_softmax_over_batch, "log_softmax must run over the classes (dim=1), "
                                                         "not over the batch"),
    "probability": Wrong(grad_probability, "you differentiate the probability p(y | x_t); guidance uses the "
                                           "gradient of its LOG, log_softmax(logits)[y]"),
})
GUIDANCE = GradedFunction("classifier_guidance", library="flowlab.guidance:classifier_guidance", positional=4, wrong={
    "inverse_factor": Wrong(guidance_inverse_factor, "your guidance factor is t/(1 - t); the score-to-velocity "
                                                     "conversion gives (1 - t)/t: strong guidance at high noise "
                                                     "(small t), none at the data (t = 1)"),
    "no_cutoff": Wrong(guidance_no_cutoff, "samples with t < t_min must get the plain velocity v, unguided: the "
                                           "factor (1 - t)/t blows up near t = 0"),
    "scales_velocity": Wrong(guidance_scales_velocity, "w multiplies the whole velocity; it must multiply only the "
                                                       "guidance term: v + w (1 - t)/t grad log p(y | x_t)"),
    "on_score": Wrong(guidance_on_score, "you added w grad log p(y | x_t) to the velocity as if it were the score; "
                                         "converted to a velocity it is w (1 - t)/t grad log p(y | x_t)"),
    "wrong_sign": Wrong(guidance_wrong_sign, "the guidance term has the wrong sign: ADD w (1 - t)/t grad log p(y | x_t) "
                                             "to move towards class y"),
})

X1_HAT = GradedFunction("log_prob_grad_through_x1_hat", library="flowlab.guidance:log_prob_grad_through_x1_hat",
                        positional=3, wrong={
    "classifier_on_x": Wrong(x1_hat_classifier_on_x, "your gradient does not depend on the velocity: the clean "
                                                     "classifier must read x1_hat = x + (1 - t) v(x, t), not x_t"),
    "detached_velocity": Wrong(x1_hat_detached_velocity, "your gradient does not flow through the velocity model: "
                                                         "x1_hat depends on x directly AND through v(x, t); keep v "
                                                         "in the graph (no detach, no torch.no_grad around it)"),
    "weight_t": Wrong(x1_hat_weight_t, "your x1_hat weights the velocity by t; one Euler step from t to 1 "
                                       "has length 1 - t: x1_hat = x + (1 - t) v(x, t)"),
    "noise_estimate": Wrong(x1_hat_noise_estimate, "you built x - t v(x, t), the estimate of the NOISE x0; the "
                                                   "classifier must read the estimate of the data x1_hat = x + (1 - t) v"),
    "classifier_at_t": Wrong(x1_hat_classifier_at_t, "your classifier reads x1_hat at time t; x1_hat is an estimate "
                                                     "of clean data, so the classifier is called at t = 1"),
    "mean_over_batch": Wrong(x1_hat_mean_over_batch, "your gradients are divided by the batch size: SUM the "
                                                     "log-probabilities of the batch before differentiating"),
})

GRAD_TOL = AllClose(rtol=1e-4, atol=1e-5)
GUIDANCE_TOL = AllClose(rtol=1e-5, atol=1e-5)
F64 = AllClose(rtol=1e-10, atol=1e-12)
NOT_AT_W0 = ("inverse_factor", "no_cutoff", "on_score", "wrong_sign")
HIDDEN = [
    ReturnedCase("log_prob_grad_from_classifier/points", "log_prob_grad_from_classifier", classifier_inputs(16, (2,), 3),
         seed=501, cell=GRAD_CELL, about="2D points, 3 classes, a time per sample", check=GRAD_TOL),
    ReturnedCase("log_prob_grad_from_classifier/images", "log_prob_grad_from_classifier", classifier_inputs(8, (1, 4, 4), 5),
         seed=502, cell=GRAD_CELL, about="images of shape (8, 1, 4, 4), 5 classes: the gradient is shaped like x",
         check=GRAD_TOL),
    ReturnedCase("log_prob_grad_from_classifier/float64", "log_prob_grad_from_classifier",
         classifier_inputs(10, (3,), 4, torch.float64), seed=503, cell=GRAD_CELL,
         about="float64 inputs and classifier: the gradient keeps the dtype", check=F64),
    ReturnedCase("log_prob_grad_from_classifier/float_t", "log_prob_grad_from_classifier",
         classifier_inputs(12, (2,), 4, float_t=0.5), seed=504, cell=GRAD_CELL,
         about="t given as one float for the batch", check=GRAD_TOL),
    ReturnedCase("log_prob_grad_through_x1_hat/points", "log_prob_grad_through_x1_hat", x1_hat_inputs(16, (2,), 3),
         seed=521, cell=X1_HAT_CELL, about="2D points, 3 classes, a curved velocity, a time per sample",
         check=GRAD_TOL),
    ReturnedCase("log_prob_grad_through_x1_hat/images", "log_prob_grad_through_x1_hat",
         x1_hat_inputs(8, (1, 4, 4), 5), seed=522, cell=X1_HAT_CELL,
         about="images of shape (8, 1, 4, 4), 5 classes: the gradient is shaped like x", check=GRAD_TOL),
    ReturnedCase("log_prob_grad_through_x1_hat/affine", "log_prob_grad_through_x1_hat",
         x1_hat_inputs(12, (3,), 4, curved=False), seed=523, cell=X1_HAT_CELL,
         about="a velocity affine in x, 4 classes", check=GRAD_TOL),
    ReturnedCase("log_prob_grad_through_x1_hat/float64", "log_prob_grad_through_x1_hat",
         x1_hat_inputs(10, (3,), 4, torch.float64), seed=524, cell=X1_HAT_CELL,
         about="float64 inputs, classifier and velocity: the gradient keeps the dtype", check=F64),
    ReturnedCase("log_prob_grad_through_x1_hat/float_t", "log_prob_grad_through_x1_hat",
         x1_hat_inputs(12, (2,), 4, float_t=0.3), seed=525, cell=X1_HAT_CELL,
         about="t given as one float for the batch", check=GRAD_TOL),
    ReturnedCase("classifier_guidance/points", "classifier_guidance", guidance_inputs(16, (2,), 2.0, 0.2), seed=511,
         cell=GUIDANCE_CELL, about="2D points, w = 2, t_min = 0.2, times below and above t_min",
         check=GUIDANCE_TOL),
    ReturnedCase("classifier_guidance/images", "classifier_guidance", guidance_inputs(8, (1, 4, 4), 1.5, 0.3), seed=512,
         cell=GUIDANCE_CELL, about="images of shape (8, 1, 4, 4), w = 1.5, t_min = 0.3", check=GUIDANCE_TOL),
    ReturnedCase("classifier_guidance/float64", "classifier_guidance", guidance_inputs(12, (3,), 3.0, 0.25, torch.float64),
         seed=513, cell=GUIDANCE_CELL, about="float64 inputs: the result keeps the dtype", check=F64),
    ReturnedCase("classifier_guidance/w_0", "classifier_guidance", guidance_inputs(8, (2,), 0.0, 0.2), seed=514,
         cell=GUIDANCE_CELL, about="w = 0: the plain velocity", check=GUIDANCE_TOL, blind_to=NOT_AT_W0),
    ReturnedCase("classifier_guidance/float_t", "classifier_guidance", guidance_inputs(6, (2,), 2.5, 0.2, float_t=0.6),
         seed=515, cell=GUIDANCE_CELL, about="t = 0.6 given as one float for the batch", check=GUIDANCE_TOL,
         blind_to=("no_cutoff",)),
]
PUBLIC = [
    ReturnedCase("log_prob_grad_from_classifier/public_points", "log_prob_grad_from_classifier",
         classifier_inputs(4, (2,), 3), seed=51, public=True, about="2D points, 3 classes", check=GRAD_TOL),
    ReturnedCase("log_prob_grad_from_classifier/public_images", "log_prob_grad_from_classifier",
         classifier_inputs(3, (1, 2, 2), 4), seed=52, public=True, about="images of shape (3, 1, 2, 2), 4 classes",
         check=GRAD_TOL),
    ReturnedCase("log_prob_grad_through_x1_hat/public_points", "log_prob_grad_through_x1_hat",
         x1_hat_inputs(4, (2,), 3), seed=55, public=True, about="2D points, 3 classes: per-sample gradients shaped like x",
         check=GRAD_TOL),
    ReturnedCase("log_prob_grad_through_x1_hat/public_images", "log_prob_grad_through_x1_hat",
         x1_hat_inputs(3, (1, 2, 2), 4, float_t=0.7), seed=56, public=True,
         about="images of shape (3, 1, 2, 2), 4 classes, t = 0.7 given as one float", check=GRAD_TOL),
    ReturnedCase("classifier_guidance/public_points", "classifier_guidance", guidance_inputs(6, (2,), 2.0, 0.2), seed=53,
         public=True, about="2D points, w = 2, t_min = 0.2, times below and above t_min", check=GUIDANCE_TOL),
    ReturnedCase("classifier_guidance/public_images", "classifier_guidance", guidance_inputs(4, (1, 2, 2), 0.5, 0.3),
         seed=54, public=True, about="images of shape (4, 1, 2, 2), w = 0.5, t_min = 0.3", check=GUIDANCE_TOL),
]

MUTATIONS = (
    Mutation("raw_logit", "log_prob_grad_from_classifier", "torch.log_softmax(classifier(x_in, t), dim=1)",
             "classifier(x_in, t)", fails="log_prob_grad_from_classifier/points", hint="raw logit"),
    Mutation("detached_velocity", "log_prob_grad_through_x1_hat", "velocity(x_in, t)", "velocity(x_in, t).detach()",
             fails="log_prob_grad_through_x1_hat/points", hint="does not flow through the velocity model"),
    Mutation("inverse_factor", "classifier_guidance", "w * (1 - t) / t", "w * t / (1 - t)",
             fails="classifier_guidance/points", hint="t/(1 - t)"),
    Mutation("no_cutoff", "classifier_guidance", "torch.where(guided, w * (1 - t) / t, torch.zeros_like(t))",
             "w * (1 - t) / t", fails="classifier_guidance/images", hint="t < t_min must get the plain velocity"),
)

CASES = AssignmentCases(ASSIGNMENT, (GRAD, GUIDANCE, X1_HAT), tuple(HIDDEN + PUBLIC), MUTATIONS)
