"""Test cases of notebook 04 (classifier-free guidance): ``label_dropout``, the training loss
``cfg_loss``, the one-call ``guided_velocity`` and the guided sampler ``sample_cfg``.

Instructor only: never released, never copied into the sandbox (the sandbox gets the inputs as
arrays). After editing, run ``flowlab references`` and ``pytest tests/test_grading_cases.py``.

``label_dropout`` is checked label by label: the notebook prescribes the draw
(``torch.rand(y.shape, generator=generator) < p`` marks the dropped labels), so a seeded generator
fixes the answer exactly. A version that overwrites its input ``y`` in place returns the right
labels; the recorder's watch sees ``y`` change and the case fails (as for every graded function).
At p = 1 a dropout that never drops and an inverted one both return y unchanged: no hint there.
``cfg_loss`` draws too (labels dropped first, then x0, then t, float32 on the CPU): a seeded
generator fixes the loss and its gradient with respect to the affine model's parameters.
"""
import torch

from flowlab_grader.cases import AssignmentCases, Case, GradedFunction, Mutation, Wrong
from flowlab.runtime.compare import AllClose
from flowlab.runtime.codec import GeneratorSeed
from flowlab.runtime.fixtures import AffineVelocity
from flowlab.runtime.side_effects import GLOBAL_RANDOM_HINT, in_place_message
from flowlab.train import flow_matching_loss, label_dropout

ASSIGNMENT = "04_classifier_free_guidance"
DROPOUT_CELL = "hidden_tests_label_dropout"
LOSS_CELL = "hidden_tests_cfg_loss"
GUIDED_CELL = "hidden_tests_guided_velocity"
SAMPLE_CELL = "hidden_tests_sample_cfg"


# ---- plausible wrong answers (same signatures as the graded functions) ----------------------------

def _drop(y, p, generator):
    return (torch.rand(y.shape, generator=generator) < p).to(y.device)


def dropout_inverted(y, p, null_label, generator=None):
    drop = _drop(y, p, generator)
    return torch.where(drop, y, torch.full_like(y, null_label))


def dropout_null_zero(y, p, null_label, generator=None):
    drop = _drop(y, p, generator)
    return torch.where(drop, torch.zeros_like(y), y)


def dropout_null_ten(y, p, null_label, generator=None):
    drop = _drop(y, p, generator)
    return torch.where(drop, torch.full_like(y, 10), y)


def dropout_other_draw(y, p, null_label, generator=None):
    drop = (torch.rand(y.shape, generator=generator) > 1 - p).to(y.device)
    return torch.where(drop, torch.full_like(y, null_label), y)


def dropout_never_drops(y, p, null_label, generator=None):
    return y.clone()


def dropout_in_place(y, p, null_label, generator=None):
    y[_drop(y, p, generator)] = null_label
    return y


def dropout_global_stream(y, p, null_label, generator=None):
    drop = (torch.rand(y.shape) < p).to(y.device)
    return torch.where(drop, torch.full_like(y, null_label), y)


def _loss(model, x1, y, p, null_label, generator, drop=True, order="x0_first", target=None, reduce=None):
    """The CFG loss with one part changed: no dropout, the draw order, the target, the reduction."""
    labels = label_dropout(y, p, null_label, generator) if drop else y
    first = torch.randn(x1.shape, generator=generator) if order == "x0_first" else torch.rand(x1.shape[0], generator=generator)
    second = torch.rand(x1.shape[0], generator=generator) if order == "x0_first" else torch.randn(x1.shape, generator=generator)
    x0, t = (first, second) if order == "x0_first" else (second, first)
    x0, t = x0.to(x1), t.to(x1)
    if target is None and reduce is None:
        return flow_matching_loss(model, x1, x0=x0, t=t, y=labels)
    s = t.reshape(-1, *([1] * (x1.dim() - 1)))
    error = (model((1 - s) * x0 + s * x1, t, y=labels) - (target or (lambda x0, x1: x1 - x0))(x0, x1)).pow(2)
    return (reduce or (lambda e: e.flatten(1).sum(1).mean()))(error)


def loss_without_dropout(model, x1, y, p, null_label, generator):
    return _loss(model, x1, y, p, null_label, generator, drop=False)


def loss_time_drawn_first(model, x1, y, p, null_label, generator):
    return _loss(model, x1, y, p, null_label, generator, order="t_first")


def loss_target_reversed(model, x1, y, p, null_label, generator):
    return _loss(model, x1, y, p, null_label, generator, target=lambda x0, x1: x0 - x1)


def loss_target_data(model, x1, y, p, null_label, generator):
    return _loss(model, x1, y, p, null_label, generator, target=lambda x0, x1: x1)


def loss_mean_over_entries(model, x1, y, p, null_label, generator):
    return _loss(model, x1, y, p, null_label, generator, reduce=lambda e: e.mean())


def _both(model, x, t, y, null_label):
    return model(x, t, y=y), model(x, t, y=torch.full_like(y, null_label))


def guided_swapped(model, x, t, y, w, null_label):
    v_cond, v_uncond = _both(model, x, t, y, null_label)
    return v_cond + w * (v_uncond - v_cond)


def guided_off_by_one(model, x, t, y, w, null_label):
    v_cond, v_uncond = _both(model, x, t, y, null_label)
    return v_cond + w * (v_cond - v_uncond)


def guided_null_zero(model, x, t, y, w, null_label):
    v_cond, v_uncond = _both(model, x, t, y, 0)
    return v_uncond + w * (v_cond - v_uncond)


def guided_conditional_only(model, x, t, y, w, null_label):
    return model(x, t, y=y)


def _euler(model, x0, y, w, steps, null_label, guide, time_of=lambda i, steps: i / steps, count=None):
    x = x0
    for i in range(steps if count is None else count(steps)):
        t = torch.full((x.shape[0],), time_of(i, steps), dtype=x.dtype)
        x = x + guide(model, x, t, y, w, null_label) / steps
    return x


def _guided(model, x, t, y, w, null_label):
    v_cond, v_uncond = _both(model, x, t, y, null_label)
    return v_uncond + w * (v_cond - v_uncond)


def sample_unguided(model, x0, y, w, steps, null_label):
    return _euler(model, x0, y, w, steps, null_label, guided_conditional_only)


def sample_time_at_step_end(model, x0, y, w, steps, null_label):
    return _euler(model, x0, y, w, steps, null_label, _guided, time_of=lambda i, steps: (i + 1) / steps)


def sample_one_step_short(model, x0, y, w, steps, null_label):
    return _euler(model, x0, y, w, steps, null_label, _guided, count=lambda steps: steps - 1)


# ---- inputs ------------------------------------------------------------------------------------

def labels(batch, p, null_label, seed, num_classes=None):
    """``y`` uniform in 0..num_classes-1 (default: null_label classes, the null label one more)."""
    def build(generator):
        classes = num_classes or null_label
        return {"y": torch.randint(0, classes, (batch,), generator=generator), "p": p,
                "null_label": null_label, "generator": GeneratorSeed(seed)}
    return build


def _affine(generator, shape, labels):
    draw = lambda *size: torch.randn(*size, generator=generator)
    return AffineVelocity(0.5 * draw(*shape), draw(*shape), draw(labels, *shape))


def loss_inputs(batch, p, null_label, seed, shape=(2,)):
    """An affine conditional model with labels 0..null_label, data x1, labels y < null_label."""
    def build(generator):
        return {"model": _affine(generator, shape, null_label + 1), "x1": torch.randn(batch, *shape, generator=generator),
                "y": torch.randint(0, null_label, (batch,), generator=generator), "p": p, "null_label": null_label,
                "generator": GeneratorSeed(seed)}
    return build


def guided_inputs(batch, w, null_label, shape=(2,)):
    def build(generator):
        return {"model": _affine(generator, shape, null_label + 1), "x": torch.randn(batch, *shape, generator=generator),
                "t": torch.rand(batch, generator=generator), "y": torch.randint(0, null_label, (batch,), generator=generator),
                "w": w, "null_label": null_label}
    return build


def sample_inputs(batch, w, steps, null_label, shape=(2,)):
    def build(generator):
        return {"model": _affine(generator, shape, null_label + 1), "x0": torch.randn(batch, *shape, generator=generator),
                "y": torch.randint(0, null_label, (batch,), generator=generator), "w": w, "steps": steps,
                "null_label": null_label}
    return build


# ---- the cases ---------------------------------------------------------------------------------

DROPOUT = GradedFunction("label_dropout", library="flowlab.train:label_dropout", positional=3, wrong={
    "inverted": Wrong(dropout_inverted, "your dropout KEEPS a label with probability p; it should DROP it "
                                        "(replace it by null_label) with probability p: the labels where "
                                        "torch.rand(y.shape, generator=generator) < p become null_label"),
    "null_zero": Wrong(dropout_null_zero, "dropped labels became 0, which is a real class; replace them by the "
                                          "null_label argument"),
    "null_ten": Wrong(dropout_null_ten, "dropped labels became 10; use the null_label argument, not a fixed number "
                                        "(10 is MNIST's null label, other models have others)"),
    "other_draw": Wrong(dropout_other_draw, "you drop the right fraction but not the prescribed labels: mark "
                                            "exactly those where torch.rand(y.shape, generator=generator) < p, so "
                                            "that a seeded generator gives a reproducible answer"),
    "never_drops": Wrong(dropout_never_drops, "your dropout never drops a label: replace the labels where "
                                              "torch.rand(y.shape, generator=generator) < p by null_label"),
    "in_place": Wrong(dropout_in_place, in_place_message("label_dropout", ["y"]), by="side_effects"),
    "global_stream": Wrong(dropout_global_stream, GLOBAL_RANDOM_HINT, by="side_effects"),
})
LOSS = GradedFunction("cfg_loss", library="flowlab.train:cfg_loss", positional=6, wrong={
    "without_dropout": Wrong(loss_without_dropout, "the labels must go through your label_dropout (with the "
                             "generator, before x0 and t are drawn): without it the null label is never trained"),
    "time_drawn_first": Wrong(loss_time_drawn_first, "draw in the prescribed order: the labels' dropout, then x0, "
                              "then t (a seed must fix the loss)"),
    "target_reversed": Wrong(loss_target_reversed, "the regression target is the velocity of the path from noise "
                             "to data, x1 - x0"),
    "target_data": Wrong(loss_target_data, "the regression target is the velocity x1 - x0, not the data x1"),
    "mean_over_entries": Wrong(loss_mean_over_entries, "sum the squared error over each sample's entries, then "
                               "average over the batch (the loss of notebook 01)"),
    "global_stream": Wrong(lambda model, x1, y, p, null_label, generator: _loss(model, x1, y, p, null_label, None),
                           GLOBAL_RANDOM_HINT, by="side_effects"),
})
GUIDED = GradedFunction("guided_velocity", library="flowlab.guidance:guided_velocity", positional=6, wrong={
    "swapped": Wrong(guided_swapped, "you extrapolate from the conditional branch towards the unconditional one; "
                                     "CFG starts at the unconditional velocity and moves w times the difference "
                                     "towards the conditional one"),
    "off_by_one": Wrong(guided_off_by_one, "you used the other convention, whose w is ours minus 1; here w = 1 must "
                                           "give exactly the conditional velocity and w = 0 the unconditional one"),
    "null_zero": Wrong(guided_null_zero, "the unconditional branch must call the model with the null_label "
                                         "argument (label 0 is a real class)"),
    "conditional_only": Wrong(guided_conditional_only, "the guided velocity needs the unconditional branch too "
                              "(the model with the null label): yours does not change with w"),
})
SAMPLE = GradedFunction("sample_cfg", library="flowlab.guidance:sample_cfg", positional=6, wrong={
    "unguided": Wrong(sample_unguided, "your samples do not depend on w: every step must use the guided velocity"),
    "time_at_step_end": Wrong(sample_time_at_step_end, "an Euler step from t_i evaluates the velocity at t_i = i / "
                              "steps, the start of the step (the first at t = 0)"),
    "one_step_short": Wrong(sample_one_step_short, "the sampler must take `steps` steps, from t = 0 to t = 1"),
})

EXACT = AllClose(rtol=0.0, atol=1e-6)          # labels are integers: equal or wrong
CFG_TOL = AllClose(rtol=1e-5, atol=1e-5)
LOSS_TOL = AllClose(rtol=1e-4, atol=1e-4)        # float32 sums over a batch against float64
SAMPLE_TOL = AllClose(rtol=1e-4, atol=1e-4)
NULL_ONLY = ("null_zero", "null_ten")
# p = 0.5 would make "inverted" and "other_draw" drop the same labels: the cases avoid it.
KEEPS_ALL = NULL_ONLY + ("other_draw", "never_drops")      # p = 0: every one of them keeps every label
HIDDEN = [
    Case("label_dropout/p_0.3", "label_dropout", labels(64, 0.3, 10, seed=31), seed=401, cell=DROPOUT_CELL,
         about="p = 0.3 on 64 MNIST-style labels (null label 10)", check=EXACT, blind_to=("null_ten",)),
    Case("label_dropout/null_4", "label_dropout", labels(48, 0.4, 4, seed=32), seed=402, cell=DROPOUT_CELL,
         about="p = 0.4 with 4 classes: the null label is 4", check=EXACT),
    Case("label_dropout/p_0", "label_dropout", labels(32, 0.0, 7, seed=33), seed=403, cell=DROPOUT_CELL,
         about="p = 0: every label is kept", check=EXACT, blind_to=KEEPS_ALL),
    Case("label_dropout/p_1", "label_dropout", labels(32, 1.0, 7, seed=34), seed=404, cell=DROPOUT_CELL,
         about="p = 1: every label becomes null_label", check=EXACT, blind_to=("other_draw",)),
    Case("label_dropout/large_batch", "label_dropout", labels(4096, 0.1, 3, seed=35), seed=405, cell=DROPOUT_CELL,
         about="p = 0.1 on 4,096 labels of 3 classes (null label 3)", check=EXACT),
    Case("cfg_loss/points", "cfg_loss", loss_inputs(64, 0.3, 4, seed=51), seed=421, cell=LOSS_CELL,
         about="2D points, p = 0.3, null label 4: the loss and its gradient", check=LOSS_TOL, measure="grad"),
    Case("cfg_loss/images", "cfg_loss", loss_inputs(8, 0.2, 10, seed=52, shape=(1, 3, 3)), seed=422, cell=LOSS_CELL,
         about="images (8, 1, 3, 3), p = 0.2, null label 10", check=LOSS_TOL, measure="grad"),
    Case("cfg_loss/no_dropout", "cfg_loss", loss_inputs(32, 0.0, 3, seed=53), seed=423, cell=LOSS_CELL,
         about="p = 0: the plain conditional loss (the dropout still draws)", check=LOSS_TOL, measure="grad",
         blind_to=("without_dropout",)),
    Case("cfg_loss/all_dropped", "cfg_loss", loss_inputs(32, 1.0, 5, seed=54, shape=(3,)), seed=424, cell=LOSS_CELL,
         about="p = 1: every label null, the unconditional loss", check=LOSS_TOL, measure="grad"),
    Case("guided_velocity/points", "guided_velocity", guided_inputs(64, 3.0, 4), seed=431, cell=GUIDED_CELL,
         about="2D points, w = 3, null label 4", check=CFG_TOL),
    Case("guided_velocity/images", "guided_velocity", guided_inputs(8, 2.5, 10, (1, 4, 4)), seed=432, cell=GUIDED_CELL,
         about="images (8, 1, 4, 4), w = 2.5, null label 10", check=CFG_TOL),
    Case("guided_velocity/w_0", "guided_velocity", guided_inputs(16, 0.0, 6), seed=433, cell=GUIDED_CELL,
         about="w = 0: the unconditional velocity", check=CFG_TOL),
    Case("guided_velocity/w_1", "guided_velocity", guided_inputs(16, 1.0, 6, (3,)), seed=434, cell=GUIDED_CELL,
         about="w = 1: the conditional velocity", check=CFG_TOL, blind_to=("null_zero", "conditional_only")),
    Case("sample_cfg/points", "sample_cfg", sample_inputs(32, 2.0, 4, 4), seed=441, cell=SAMPLE_CELL,
         about="4 Euler steps on 2D points, w = 2", check=SAMPLE_TOL),
    Case("sample_cfg/images", "sample_cfg", sample_inputs(6, 3.0, 3, 10, (1, 3, 3)), seed=442, cell=SAMPLE_CELL,
         about="3 Euler steps on images (6, 1, 3, 3), w = 3", check=SAMPLE_TOL),
    Case("sample_cfg/one_step", "sample_cfg", sample_inputs(16, 1.5, 1, 5), seed=443, cell=SAMPLE_CELL,
         about="a single Euler step from t = 0, w = 1.5", check=SAMPLE_TOL),
    Case("sample_cfg/w_1", "sample_cfg", sample_inputs(16, 1.0, 5, 3), seed=444, cell=SAMPLE_CELL,
         about="w = 1: the conditional model's samples", check=SAMPLE_TOL, blind_to=("unguided",)),
]
PUBLIC = [
    Case("label_dropout/public_some", "label_dropout", labels(10, 0.4, 10, seed=1), seed=41, public=True,
         about="p = 0.4 on 10 labels, null label 10", check=EXACT, blind_to=("null_ten",)),
    Case("label_dropout/public_all", "label_dropout", labels(6, 1.0, 3, seed=2), seed=42, public=True,
         about="p = 1 with null label 3: every label dropped", check=EXACT, blind_to=("other_draw",)),
    Case("label_dropout/public_none", "label_dropout", labels(6, 0.0, 3, seed=3), seed=43, public=True,
         about="p = 0: every label kept", check=EXACT, blind_to=KEEPS_ALL),
    Case("cfg_loss/public_points", "cfg_loss", loss_inputs(6, 0.4, 3, seed=4), seed=45, public=True,
         about="the loss and its gradient with a seeded generator, p = 0.4", check=LOSS_TOL, measure="grad"),
    Case("guided_velocity/public_points", "guided_velocity", guided_inputs(4, 3.0, 3), seed=46, public=True,
         about="the guided velocity of 2D points with w = 3", check=CFG_TOL),
    Case("sample_cfg/public_points", "sample_cfg", sample_inputs(4, 2.0, 3, 3), seed=47, public=True,
         about="3 guided Euler steps from t = 0 to 1 with w = 2", check=SAMPLE_TOL),
]

MUTATIONS = (
    Mutation("dropout_inverted", "label_dropout", "torch.where(drop, null, y)", "torch.where(drop, y, null)",
             fails="label_dropout/p_0.3", hint="KEEPS a label with probability p"),
    Mutation("dropout_in_place", "label_dropout", "return torch.where(drop, null, y)",
             "y[drop] = null_label\n    return y", fails="label_dropout/null_4", hint="changed its argument y in place"),
    Mutation("cfg_swapped", "guided_velocity", "v_uncond + w * (v_cond - v_uncond)", "v_cond + w * (v_uncond - v_cond)",
             fails="guided_velocity/points", hint="towards the unconditional one"),
    Mutation("cfg_off_by_one", "guided_velocity", "v_uncond + w * (v_cond - v_uncond)", "v_cond + w * (v_cond - v_uncond)",
             fails="guided_velocity/images", hint="the other convention"),
)

CASES = AssignmentCases(ASSIGNMENT, (DROPOUT, LOSS, GUIDED, SAMPLE), tuple(HIDDEN + PUBLIC), MUTATIONS)
