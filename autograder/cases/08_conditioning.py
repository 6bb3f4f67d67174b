"""Test cases of notebook 08 (conditioning on an image): ``low_resolution_condition`` and ``guided_velocity``.

Instructor only: never released, never copied into the sandbox (the sandbox gets the inputs as
arrays). After editing, run ``flowlab references`` and ``pytest tests/test_grading_cases.py``.

No case has side / factor = 4 with factor != 4: there, a hard-coded 4 and ``factor`` taken as the
number of blocks give the same copy and the feedback could not say which mistake was made.

``guided_velocity`` returns a velocity function: the ``returned_velocity`` measure evaluates it at
the inputs ``at_x`` and ``at_t``. Its model is a ``ConditionedAffineVelocity``, which adds
``cond_scale * cond`` when it is given a condition and ``null_shift`` when it is given ``None``, so
that the null condition (``cond=None``) and a condition image of zeros give different velocities.
"""
import torch
import torch.nn.functional as F

from flowlab_grader.cases import AssignmentCases, Case, GradedFunction, Mutation, Wrong
from flowlab.runtime.compare import AllClose
from flowlab.runtime.fixtures import ConditionedAffineVelocity

ASSIGNMENT = "08_conditioning"
LOW_RES_CELL = "hidden_tests_low_resolution_condition"
GUIDED_CELL = "hidden_tests_guided_velocity"


# ---- plausible wrong answers (same signatures as the graded functions) ----------------------------

def low_res_not_upsampled(x, factor=4):
    return F.avg_pool2d(x, factor)


def low_res_max_pool(x, factor=4):
    return F.interpolate(F.max_pool2d(x, factor), scale_factor=factor, mode="nearest")


def low_res_bilinear(x, factor=4):
    return F.interpolate(F.avg_pool2d(x, factor), scale_factor=factor, mode="bilinear", align_corners=False)


def low_res_block_sum(x, factor=4):
    return F.interpolate(F.avg_pool2d(x, factor) * factor**2, scale_factor=factor, mode="nearest")


def low_res_ignores_factor(x, factor=4):
    return F.interpolate(F.avg_pool2d(x, 4), scale_factor=4, mode="nearest")


def low_res_factor_as_size(x, factor=4):
    return F.interpolate(F.adaptive_avg_pool2d(x, factor), size=x.shape[-2:], mode="nearest")


def guided_w_on_null(model, cond, w):
    def velocity(x, t):
        v_cond, v_null = model(x, t, cond), model(x, t, None)
        return v_cond + w * (v_null - v_cond)
    return velocity


def guided_null_as_zeros(model, cond, w):
    def velocity(x, t):
        v_cond, v_null = model(x, t, cond), model(x, t, torch.zeros_like(cond))
        return v_null + w * (v_cond - v_null)
    return velocity


def guided_only_cond(model, cond, w):
    return lambda x, t: w * model(x, t, cond)


def guided_one_plus_w(model, cond, w):
    def velocity(x, t):
        v_cond, v_null = model(x, t, cond), model(x, t, None)
        return v_cond + w * (v_cond - v_null)
    return velocity


# ---- inputs ------------------------------------------------------------------------------------

def images(shape, factor=None, dtype=torch.float32):
    """A batch of images in [-1, 1] (like MNIST digits); ``factor=None`` leaves the default (4)."""
    def build(generator):
        inputs = {"x": (torch.rand(*shape, generator=generator) * 2 - 1).to(dtype)}
        if factor is not None:
            inputs["factor"] = factor
        return inputs
    return build


def guided(shape, w, at_t="per_sample", dtype=torch.float32):
    """A ConditionedAffineVelocity model for (B, *shape) images, a condition, w, and where to evaluate."""
    def build(generator):
        draw = lambda *size: torch.randn(*size, generator=generator).to(dtype)   # noqa: E731
        batch, sample = shape[0], shape[1:]
        model = ConditionedAffineVelocity(0.5 * draw(*sample), draw(*sample), 1.0 + draw(*sample).abs(),
                                          2.0 * draw(*sample))
        cond = (torch.rand(*shape, generator=generator) * 2 - 1).to(dtype)
        at_x = draw(*shape)
        if at_t == "per_sample":
            times = torch.rand(batch, generator=generator).to(dtype)
            times[0] = 0.0
        else:
            times = at_t
        return {"model": model, "cond": cond, "w": w, "at_x": at_x, "at_t": times}
    return build


# ---- the cases ---------------------------------------------------------------------------------

LOW_RES = GradedFunction("low_resolution_condition", library="flowlab.models.conditioned:low_resolution_condition",
                         positional=1, wrong={
    "not_upsampled": Wrong(low_res_not_upsampled, "the condition must have the image's shape: after averaging "
                                                  "the blocks, repeat each block mean over its factor x factor block "
                                                  "(nearest-neighbour upsampling by factor)"),
    "max_pool": Wrong(low_res_max_pool, "you kept the brightest pixel of each block (max pooling); the blurry "
                                        "copy is the MEAN of each factor x factor block (avg_pool2d)"),
    "bilinear": Wrong(low_res_bilinear, "you upsampled with bilinear interpolation; each block must be one constant "
                                        "value, its mean: upsample with mode=\"nearest\""),
    "block_sum": Wrong(low_res_block_sum, "you summed each block; take its mean so the copy keeps the pixel range "
                                          "[-1, 1]"),
    "ignores_factor": Wrong(low_res_ignores_factor, "your blocks do not follow the argument `factor` (did you "
                                                    "hard-code 4?): average over factor x factor blocks"),
    "factor_as_size": Wrong(low_res_factor_as_size, "your blocks have the wrong size: `factor` is the side of a "
                                                    "block (28 / 4 = 7 blocks a side for 28x28), not the number "
                                                    "of blocks a side"),
})
GUIDED = GradedFunction("guided_velocity", library="flowlab.models.conditioned:guided_velocity", positional=3, wrong={
    "w_on_null": Wrong(guided_w_on_null, "w weighs the wrong branch: v = v(x, t, null) + w (v(x, t, cond) - "
                                         "v(x, t, null)), so w = 1 is the plain conditional velocity and w = 0 "
                                         "the unconditional one"),
    "null_as_zeros": Wrong(guided_null_as_zeros, "the null condition is model(x, t, None), not a condition image "
                                                 "of zeros: zeros are a real condition (the hidden half of every "
                                                 "top-half condition is zeros); the flag channel tells them apart"),
    "only_cond": Wrong(guided_only_cond, "guidance is not w times the conditional velocity: it extrapolates "
                                         "from the unconditional velocity, "
                                         "v(x, t, null) + w (v(x, t, cond) - v(x, t, null))"),
    "one_plus_w": Wrong(guided_one_plus_w, "you used the (1 + w) convention, v_cond + w (v_cond - v_null); in this "
                                           "course v = v_null + w (v_cond - v_null): w = 1 is plain conditional"),
})

EXACT = AllClose(rtol=1e-12, atol=1e-12)
CLOSE = AllClose(rtol=1e-5, atol=1e-5)
VELOCITY = "returned_velocity"   # guided_velocity returns a function: evaluated at at_x, at_t
BLIND_AT_W1 = ("null_as_zeros", "only_cond")
HIDDEN = [
    Case("low_resolution_condition/default_factor", "low_resolution_condition", images((4, 1, 28, 28)), seed=801,
         cell=LOW_RES_CELL, about="MNIST-sized images (4, 1, 28, 28) with the default factor 4: a 7x7 copy",
         check=AllClose(rtol=1e-5, atol=1e-6), blind_to=("ignores_factor",)),
    Case("low_resolution_condition/factor_2", "low_resolution_condition", images((3, 1, 16, 16), 2), seed=802,
         cell=LOW_RES_CELL, about="factor 2 on (3, 1, 16, 16): 2x2 blocks", check=AllClose(rtol=1e-5, atol=1e-6)),
    Case("low_resolution_condition/factor_7", "low_resolution_condition", images((2, 1, 21, 21), 7), seed=803,
         cell=LOW_RES_CELL, about="factor 7 on (2, 1, 21, 21): a 3x3 copy", check=AllClose(rtol=1e-5, atol=1e-6)),
    Case("low_resolution_condition/channels", "low_resolution_condition", images((2, 3, 24, 24), 3), seed=804,
         cell=LOW_RES_CELL, about="three channels (2, 3, 24, 24), factor 3: each channel on its own",
         check=AllClose(rtol=1e-5, atol=1e-6)),
    Case("low_resolution_condition/not_square", "low_resolution_condition", images((2, 1, 8, 12), 2), seed=805,
         cell=LOW_RES_CELL, about="images that are not square (2, 1, 8, 12), factor 2",
         check=AllClose(rtol=1e-5, atol=1e-6)),
    Case("low_resolution_condition/float64", "low_resolution_condition", images((3, 1, 6, 6), 2, torch.float64),
         seed=806, cell=LOW_RES_CELL, about="float64 images (3, 1, 6, 6), factor 2: the result keeps the dtype",
         check=EXACT),
    Case("guided_velocity/w_2.5", "guided_velocity", guided((4, 1, 6, 6), 2.5), seed=811, cell=GUIDED_CELL,
         about="w = 2.5 on images (4, 1, 6, 6), times (B,) including t = 0", check=CLOSE, measure=VELOCITY),
    Case("guided_velocity/w_0", "guided_velocity", guided((3, 1, 5, 5), 0.0, at_t=0.0), seed=812, cell=GUIDED_CELL,
         about="w = 0: the unconditional velocity (the null condition), at t = 0 given as a float", check=CLOSE,
         measure=VELOCITY),
    Case("guided_velocity/w_1", "guided_velocity", guided((3, 1, 4, 4), 1.0), seed=813, cell=GUIDED_CELL,
         about="w = 1: the plain conditional velocity", check=CLOSE, measure=VELOCITY, blind_to=BLIND_AT_W1),
    Case("guided_velocity/mnist_size", "guided_velocity", guided((2, 1, 28, 28), 2.0, at_t=0.7), seed=814,
         cell=GUIDED_CELL, about="w = 2 on MNIST-sized images (2, 1, 28, 28), t = 0.7 as a float", check=CLOSE,
         measure=VELOCITY),
    Case("guided_velocity/float64", "guided_velocity", guided((2, 1, 4, 4), 4.0, dtype=torch.float64), seed=815,
         cell=GUIDED_CELL, about="float64 inputs, w = 4: the result keeps the dtype", check=EXACT, measure=VELOCITY),
]
PUBLIC = [
    Case("low_resolution_condition/public_factor_2", "low_resolution_condition", images((2, 1, 6, 6), 2), seed=81,
         public=True, about="factor 2 on (2, 1, 6, 6)", check=AllClose(rtol=1e-5, atol=1e-6)),
    Case("low_resolution_condition/public_factor_4", "low_resolution_condition", images((1, 1, 8, 8), 4), seed=82,
         public=True, about="factor 4 on (1, 1, 8, 8)", check=AllClose(rtol=1e-5, atol=1e-6),
         blind_to=("ignores_factor",)),
    Case("low_resolution_condition/public_default", "low_resolution_condition", images((2, 1, 28, 28)), seed=83,
         public=True, about="the default factor 4 on (2, 1, 28, 28)",
         check=AllClose(rtol=1e-5, atol=1e-6), blind_to=("ignores_factor",)),
    Case("guided_velocity/public_w_2", "guided_velocity", guided((2, 1, 3, 3), 2.0), seed=91, public=True,
         about="w = 2 on images (2, 1, 3, 3)", check=CLOSE, measure=VELOCITY),
    Case("guided_velocity/public_w_0", "guided_velocity", guided((2, 1, 3, 3), 0.0, at_t=0.5), seed=92,
         public=True, about="w = 0 (unconditional) at t = 0.5", check=CLOSE, measure=VELOCITY),
    Case("guided_velocity/public_w_1", "guided_velocity", guided((2, 1, 3, 3), 1.0), seed=93, public=True,
         about="w = 1 (plain conditional)", check=CLOSE, measure=VELOCITY, blind_to=BLIND_AT_W1),
]

MUTATIONS = (
    Mutation("max_pool", "low_resolution_condition", "F.avg_pool2d(x, factor)", "F.max_pool2d(x, factor)",
             fails="low_resolution_condition/factor_2", hint="max pooling"),
    Mutation("bilinear", "low_resolution_condition", 'mode="nearest"', 'mode="bilinear"',
             fails="low_resolution_condition/default_factor", hint="bilinear"),
    Mutation("null_as_zeros", "guided_velocity", "v_null = model(x, t, None)",
             "v_null = model(x, t, torch.zeros_like(cond))", fails="guided_velocity/w_2.5", hint="not a condition image"),
    Mutation("w_on_null", "guided_velocity", "v_null + w * (v_cond - v_null)", "v_cond + w * (v_null - v_cond)",
             fails="guided_velocity/mnist_size", hint="w weighs the wrong branch"),
)

CASES = AssignmentCases(ASSIGNMENT, (LOW_RES, GUIDED), tuple(HIDDEN + PUBLIC), MUTATIONS)
