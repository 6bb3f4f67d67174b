"""Test cases of notebook 08 (conditioning on an image): ``low_resolution_condition``,
``guided_velocity``, and training-free inpainting: ``inpaint`` and ``known_region_error``.

Instructor only: never released, never copied into the sandbox (the sandbox gets the inputs as
arrays). After editing, run ``flowlab references`` and ``pytest tests/test_grading_cases.py``.

No case has side / factor = 4 with factor != 4: there, a hard-coded 4 and ``factor`` taken as the
number of blocks give the same copy and the feedback could not say which mistake was made.

``guided_velocity`` returns a velocity function: the ``returned_velocity`` measure evaluates it at
the inputs ``at_x`` and ``at_t``. Its model is a ``ConditionedAffineVelocity``, which adds
``cond_scale * cond`` when it is given a condition and ``null_shift`` when it is given ``None``, so
that the null condition (``cond=None``) and a condition image of zeros give different velocities.

``inpaint`` gets a ``CoupledTanhVelocity`` (nonlinear, and each pixel sees the mean of the others,
so the known region during sampling changes the filled-in pixels; an elementwise velocity would not)
and masks of several shapes: the top half of MNIST-sized images broadcast over batch and columns,
a per-sample random bool mask, a mask on one coordinate of 2D points.
"""
import torch
import torch.nn.functional as F

from flowlab_grader.cases import AssignmentCases, Case, GradedFunction, Mutation, Wrong
from flowlab.runtime.compare import AllClose
from flowlab.runtime.fixtures import ConditionedAffineVelocity, CoupledTanhVelocity

ASSIGNMENT = "08_conditioning"
LOW_RES_CELL = "hidden_tests_low_resolution_condition"
GUIDED_CELL = "hidden_tests_guided_velocity"
INPAINT_CELL = "hidden_tests_inpaint"
KNOWN_ERROR_CELL = "hidden_tests_known_region_error"


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


def _euler_loop(velocity, x0, grid, replace):
    """Euler steps of ``velocity`` on ``grid`` from ``x0``; ``replace(x, t)`` is applied before each step."""
    x = x0
    times = [float(t) for t in grid]
    for t, t_next in zip(times[:-1], times[1:]):
        x = replace(x, t)
        x = x + (t_next - t) * velocity(x, t)
    return x


def inpaint_no_final_replacement(velocity, known, mask, x0, grid):
    mask = mask.to(x0.dtype)
    return _euler_loop(velocity, x0, grid, lambda x, t: mask * ((1 - t) * x0 + t * known) + (1 - mask) * x)


def inpaint_clean_known(velocity, known, mask, x0, grid):
    mask = mask.to(x0.dtype)
    x = _euler_loop(velocity, x0, grid, lambda x, t: mask * known + (1 - mask) * x)
    return mask * known + (1 - mask) * x


def inpaint_path_from_state(velocity, known, mask, x0, grid):
    mask = mask.to(x0.dtype)
    x = _euler_loop(velocity, x0, grid, lambda x, t: mask * ((1 - t) * x + t * known) + (1 - mask) * x)
    return mask * known + (1 - mask) * x


def inpaint_mask_inverted(velocity, known, mask, x0, grid):
    mask = mask.to(x0.dtype)
    x = _euler_loop(velocity, x0, grid, lambda x, t: (1 - mask) * ((1 - t) * x0 + t * known) + mask * x)
    return (1 - mask) * known + mask * x


def inpaint_no_replacement(velocity, known, mask, x0, grid):
    mask = mask.to(x0.dtype)
    return mask * known + (1 - mask) * _euler_loop(velocity, x0, grid, lambda x, t: x)


def inpaint_velocity_at_next_time(velocity, known, mask, x0, grid):
    mask = mask.to(x0.dtype)
    times = [float(t) for t in grid]
    x = x0
    for t, t_next in zip(times[:-1], times[1:]):
        x = mask * ((1 - t) * x0 + t * known) + (1 - mask) * x
        x = x + (t_next - t) * velocity(x, t_next)
    return mask * known + (1 - mask) * x


def _masked(images, known, mask):
    mask = mask.to(images.dtype).expand_as(images)
    return (images - known).pow(2) * mask, mask


def known_error_all_pixels(images, known, mask):
    squared, _ = _masked(images, known, mask)
    return squared.flatten(1).mean(dim=1).sqrt()


def known_error_no_sqrt(images, known, mask):
    squared, mask = _masked(images, known, mask)
    return squared.flatten(1).sum(dim=1) / mask.flatten(1).sum(dim=1)


def known_error_batch_mean(images, known, mask):
    squared, mask = _masked(images, known, mask)
    return (squared.sum() / mask.sum()).sqrt()


def known_error_unknown_pixels(images, known, mask):
    squared, mask = _masked(images, known, 1 - mask.to(images.dtype))
    return (squared.flatten(1).sum(dim=1) / mask.flatten(1).sum(dim=1)).sqrt()


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


def _top_half(shape, dtype):
    rows = (torch.arange(shape[-2]) < shape[-2] // 2).to(dtype)
    return rows.reshape(1, 1, shape[-2], 1)


def inpainting(shape, grid, mask="top_half", dtype=torch.float32):
    """A TanhVelocity for samples of ``shape[1:]``, known images in [-1, 1], a mask, noise and a grid.

    ``mask``: "top_half" (``(1, 1, H, 1)`` float), "random" (per-sample bool, ``shape``),
    "first_coordinate" (2D points: ``(1, 2)`` with the first coordinate known), "all" or "none".
    """
    def build(generator):
        draw = lambda *size: torch.randn(*size, generator=generator).to(dtype)   # noqa: E731
        sample = shape[1:]
        velocity = CoupledTanhVelocity(1.5 * draw(*sample), draw(*sample), 2.0 * draw(*sample))
        known = (torch.rand(*shape, generator=generator) * 2 - 1).to(dtype)
        if mask == "top_half":
            known_mask = _top_half(shape, dtype)
        elif mask == "random":
            known_mask = torch.rand(*shape, generator=generator) < 0.5
        elif mask == "first_coordinate":
            known_mask = torch.tensor([[1.0, 0.0]], dtype=dtype)
        else:
            known_mask = torch.full(shape, 1.0 if mask == "all" else 0.0, dtype=dtype)
        return {"velocity": velocity, "known": known, "mask": known_mask, "x0": draw(*shape),
                "grid": torch.tensor(grid, dtype=torch.float64)}
    return build


def completions(shape, mask="top_half", dtype=torch.float32):
    """Images, known images (close to them on part of the pixels) and a mask."""
    def build(generator):
        known = (torch.rand(*shape, generator=generator) * 2 - 1).to(dtype)
        images = known + 0.3 * torch.randn(*shape, generator=generator).to(dtype)
        if mask == "top_half":
            known_mask = _top_half(shape, dtype)
        else:
            known_mask = torch.rand(*shape, generator=generator) < 0.4
            known_mask.flatten(1)[:, 0] = True            # at least one known pixel per image
        return {"images": images, "known": known, "mask": known_mask}
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

INPAINT = GradedFunction("inpaint", library="flowlab.mnist.inpainting:inpaint", positional=5, wrong={
    "no_final_replacement": Wrong(inpaint_no_final_replacement, "after the last step the known region must be "
                                                                "the known image itself (its path point at t = 1): "
                                                                "replace it once more at the end"),
    "clean_known": Wrong(inpaint_clean_known, "at time t the known region must be where the known image stands "
                                              "on its path from the noise, (1 - t) x0 + t x_known, not the known "
                                              "image itself: a clean region in a noisy state is off the path"),
    "path_from_state": Wrong(inpaint_path_from_state, "the path of the known region starts at the fixed noise x0: "
                                                      "(1 - t) x0 + t x_known, not (1 - t) x_t + t x_known"),
    "mask_inverted": Wrong(inpaint_mask_inverted, "the mask is 1 on the KNOWN pixels: replace those, and let the "
                                                  "velocity fill the pixels where the mask is 0"),
    "no_replacement": Wrong(inpaint_no_replacement, "the known region must be replaced before EVERY step, so that "
                                                    "the velocity sees it; pasting it in at the end only is not "
                                                    "inpainting"),
    "velocity_at_next_time": Wrong(inpaint_velocity_at_next_time, "an Euler step from t to t_next evaluates the "
                                                                  "velocity at the start of the step, time t"),
})
KNOWN_ERROR = GradedFunction("known_region_error", library="flowlab.mnist.inpainting:known_region_error",
                             positional=3, wrong={
    "all_pixels": Wrong(known_error_all_pixels, "you averaged over every pixel; average over the known pixels only "
                                                "(divide by how many pixels the mask marks in each image)"),
    "no_sqrt": Wrong(known_error_no_sqrt, "that is the mean squared difference; the RMS is its square root"),
    "batch_mean": Wrong(known_error_batch_mean, "return one value per image, shape (B,), not one for the batch"),
    "unknown_pixels": Wrong(known_error_unknown_pixels, "the mask is 1 on the known pixels: measure there, not on "
                                                        "the pixels that were filled in"),
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
    Case("inpaint/top_half", "inpaint", inpainting((3, 1, 28, 28), [0.0, 0.2, 0.5, 0.8, 1.0]), seed=821,
         cell=INPAINT_CELL, about="MNIST-sized images (3, 1, 28, 28), the top half known (a (1, 1, 28, 1) mask), "
                                  "4 uneven steps", check=CLOSE),
    Case("inpaint/random_bool_mask", "inpaint", inpainting((4, 1, 6, 6), [0.0, 0.1, 0.3, 0.6, 0.9, 1.0], "random"),
         seed=822, cell=INPAINT_CELL, about="a different random bool mask for each image (4, 1, 6, 6), 5 steps",
         check=CLOSE),
    Case("inpaint/points", "inpaint", inpainting((16, 2), [0.0, 0.25, 0.5, 0.75, 1.0], "first_coordinate"),
         seed=823, cell=INPAINT_CELL, about="2D points (16, 2) with the first coordinate known", check=CLOSE),
    Case("inpaint/all_known", "inpaint", inpainting((2, 1, 4, 4), [0.0, 0.5, 1.0], "all"), seed=824,
         cell=INPAINT_CELL, about="every pixel known: the result is the known image", check=CLOSE,
         blind_to=("clean_known", "path_from_state", "no_replacement", "velocity_at_next_time")),
    Case("inpaint/none_known", "inpaint", inpainting((2, 1, 4, 4), [0.0, 0.3, 0.6, 1.0], "none"), seed=825,
         cell=INPAINT_CELL, about="no pixel known: plain Euler sampling from x0", check=CLOSE,
         blind_to=("no_final_replacement", "clean_known", "path_from_state", "no_replacement")),
    Case("inpaint/float64", "inpaint", inpainting((2, 1, 4, 4), [0.0, 0.4, 0.7, 1.0], dtype=torch.float64),
         seed=826, cell=INPAINT_CELL, about="float64 images: the result keeps the dtype", check=EXACT),
    Case("known_region_error/top_half", "known_region_error", completions((4, 1, 28, 28)), seed=831,
         cell=KNOWN_ERROR_CELL, about="MNIST-sized images (4, 1, 28, 28), the top half known", check=CLOSE),
    Case("known_region_error/random_mask", "known_region_error", completions((5, 1, 6, 6), "random"), seed=832,
         cell=KNOWN_ERROR_CELL, about="a different random bool mask for each image (5, 1, 6, 6)", check=CLOSE),
    Case("known_region_error/float64", "known_region_error", completions((3, 1, 4, 4), dtype=torch.float64),
         seed=833, cell=KNOWN_ERROR_CELL, about="float64 images: the result keeps the dtype", check=EXACT),
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
    Case("inpaint/public_top_half", "inpaint", inpainting((2, 1, 8, 8), [0.0, 0.3, 0.7, 1.0]), seed=94,
         public=True, about="the top half of (2, 1, 8, 8) images known, 3 uneven steps: the known half is the known "
                            "image at the end, the rest follows the velocity", check=CLOSE),
    Case("inpaint/public_points", "inpaint", inpainting((8, 2), [0.0, 0.5, 1.0], "first_coordinate"), seed=95,
         public=True, about="2D points with the first coordinate known, 2 steps", check=CLOSE),
    Case("known_region_error/public_top_half", "known_region_error", completions((2, 1, 6, 6)), seed=96,
         public=True, about="the top half of (2, 1, 6, 6) images known: one RMS value per image", check=CLOSE),
    Case("known_region_error/public_random_mask", "known_region_error", completions((3, 1, 4, 4), "random"),
         seed=97, public=True, about="a random mask for each image: the RMS over that image's known pixels",
         check=CLOSE),
]

# One wrong submission per graded function: each is a whole notebook graded in the end-to-end batch
# (tests/test_grading_end_to_end.py), so they cost suite time; every Wrong above is checked without a kernel.
MUTATIONS = (
    Mutation("max_pool", "low_resolution_condition", "blocks.mean(dim=(3, 5), keepdim=True)",
             "blocks.amax(dim=(3, 5), keepdim=True)", fails="low_resolution_condition/factor_2", hint="max pooling"),
    Mutation("null_as_zeros", "guided_velocity", "v_null = model(x, t, None)",
             "v_null = model(x, t, torch.zeros_like(cond))", fails="guided_velocity/w_2.5", hint="not a condition image"),
    Mutation("clean_known", "inpaint", "on_path = (1 - t) * x0 + t * known", "on_path = known",
             fails="inpaint/top_half", hint="where the known image stands"),
    Mutation("all_pixels", "known_region_error", "/ mask.flatten(1).sum(dim=1)", "/ mask[0].numel()",
             fails="known_region_error/random_mask", hint="known pixels only"),
)

CASES = AssignmentCases(ASSIGNMENT, (LOW_RES, GUIDED, INPAINT, KNOWN_ERROR), tuple(HIDDEN + PUBLIC), MUTATIONS)
