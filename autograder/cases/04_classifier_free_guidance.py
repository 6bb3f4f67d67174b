"""Test cases of notebook 04 (classifier-free guidance): ``label_dropout`` and ``cfg_velocity``.

Instructor only: never released, never copied into the sandbox (the sandbox gets the inputs as
arrays). After editing, run ``flowlab references`` and ``pytest tests/test_grading_cases.py``.

``label_dropout`` is checked label by label: the notebook prescribes the draw
(``torch.rand(y.shape, generator=generator) < p`` marks the dropped labels), so a seeded generator
fixes the answer exactly. A version that overwrites its input ``y`` in place returns the right
labels; the recorder's watch sees ``y`` change and the case fails (as for every graded function).
At p = 1 a dropout that never drops and an inverted one both return y unchanged: no hint there.
"""
import torch

from flowlab_grader.cases import AssignmentCases, Case, GradedFunction, Mutation, Wrong
from flowlab.runtime.compare import AllClose
from flowlab.runtime.codec import GeneratorSeed
from flowlab.runtime.side_effects import GLOBAL_RANDOM_HINT, in_place_message

ASSIGNMENT = "04_classifier_free_guidance"
DROPOUT_CELL = "hidden_tests_label_dropout"
CFG_CELL = "hidden_tests_cfg_velocity"


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


def cfg_swapped(v_cond, v_uncond, w):
    return v_cond + w * (v_uncond - v_cond)


def cfg_scaled_cond(v_cond, v_uncond, w):
    return w * v_cond


def cfg_off_by_one(v_cond, v_uncond, w):
    return v_cond + w * (v_cond - v_uncond)


# ---- inputs ------------------------------------------------------------------------------------

def labels(batch, p, null_label, seed, num_classes=None):
    """``y`` uniform in 0..num_classes-1 (default: null_label classes, the null label one more)."""
    def build(generator):
        classes = num_classes or null_label
        return {"y": torch.randint(0, classes, (batch,), generator=generator), "p": p,
                "null_label": null_label, "generator": GeneratorSeed(seed)}
    return build


def velocities(shape, w, dtype=torch.float32):
    def build(generator):
        v_cond = torch.randn(*shape, generator=generator) + 0.5
        v_uncond = torch.randn(*shape, generator=generator) - 0.5
        return {"v_cond": v_cond.to(dtype), "v_uncond": v_uncond.to(dtype), "w": w}
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
CFG = GradedFunction("cfg_velocity", library="flowlab.guidance:cfg_velocity", positional=3, wrong={
    "swapped": Wrong(cfg_swapped, "you extrapolate from the conditional branch towards the unconditional one; "
                                  "CFG starts at v_uncond and moves w times (v_cond - v_uncond): "
                                  "v_uncond + w (v_cond - v_uncond)"),
    "scaled_cond": Wrong(cfg_scaled_cond, "w v_cond only rescales the conditional velocity; CFG needs the "
                                          "unconditional branch too: v_uncond + w (v_cond - v_uncond)"),
    "off_by_one": Wrong(cfg_off_by_one, "you used the other convention, v_cond + w (v_cond - v_uncond), whose w is "
                                        "ours minus 1; here w = 1 must give exactly v_cond and w = 0 v_uncond"),
})

EXACT = AllClose(rtol=0.0, atol=1e-6)          # labels are integers: equal or wrong
CFG_TOL = AllClose(rtol=1e-5, atol=1e-5)
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
    Case("cfg_velocity/points", "cfg_velocity", velocities((64, 2), 3.0), seed=411, cell=CFG_CELL,
         about="2D velocities, w = 3", check=CFG_TOL),
    Case("cfg_velocity/images", "cfg_velocity", velocities((8, 1, 4, 4), 2.5), seed=412, cell=CFG_CELL,
         about="images of shape (8, 1, 4, 4), w = 2.5", check=CFG_TOL),
    Case("cfg_velocity/float64", "cfg_velocity", velocities((16, 3), 7.5, torch.float64), seed=413, cell=CFG_CELL,
         about="float64 velocities, w = 7.5: the result keeps the dtype", check=AllClose(rtol=1e-12, atol=1e-12)),
    Case("cfg_velocity/w_0", "cfg_velocity", velocities((16, 2), 0.0), seed=414, cell=CFG_CELL,
         about="w = 0 gives the unconditional velocity", check=CFG_TOL),
    Case("cfg_velocity/w_1", "cfg_velocity", velocities((16, 1, 3, 3), 1.0), seed=415, cell=CFG_CELL,
         about="w = 1 gives the conditional velocity", check=CFG_TOL, blind_to=("scaled_cond",)),
]
PUBLIC = [
    Case("label_dropout/public_some", "label_dropout", labels(10, 0.4, 10, seed=1), seed=41, public=True,
         about="p = 0.4 on 10 labels, null label 10", check=EXACT, blind_to=("null_ten",)),
    Case("label_dropout/public_all", "label_dropout", labels(6, 1.0, 3, seed=2), seed=42, public=True,
         about="p = 1 with null label 3: every label dropped", check=EXACT, blind_to=("other_draw",)),
    Case("label_dropout/public_none", "label_dropout", labels(6, 0.0, 3, seed=3), seed=43, public=True,
         about="p = 0: every label kept", check=EXACT, blind_to=KEEPS_ALL),
    Case("cfg_velocity/public_points", "cfg_velocity", velocities((4, 2), 3.0), seed=44, public=True,
         about="2D velocities with w = 3", check=CFG_TOL),
    Case("cfg_velocity/public_images", "cfg_velocity", velocities((2, 1, 3, 3), 1.5), seed=45, public=True,
         about="images of shape (2, 1, 3, 3) with w = 1.5", check=CFG_TOL),
]

MUTATIONS = (
    Mutation("dropout_inverted", "label_dropout", "torch.where(drop, torch.full_like(y, null_label), y)",
             "torch.where(drop, y, torch.full_like(y, null_label))",
             fails="label_dropout/p_0.3", hint="KEEPS a label with probability p"),
    Mutation("dropout_in_place", "label_dropout", "return torch.where(drop, torch.full_like(y, null_label), y)",
             "y[drop] = null_label\n    return y", fails="label_dropout/null_4", hint="changed its argument y in place"),
    Mutation("cfg_swapped", "cfg_velocity", "v_uncond + w * (v_cond - v_uncond)", "v_cond + w * (v_uncond - v_cond)",
             fails="cfg_velocity/points", hint="towards the unconditional one"),
    Mutation("cfg_off_by_one", "cfg_velocity", "v_uncond + w * (v_cond - v_uncond)", "v_cond + w * (v_cond - v_uncond)",
             fails="cfg_velocity/images", hint="the other convention"),
)

CASES = AssignmentCases(ASSIGNMENT, (DROPOUT, CFG), tuple(HIDDEN + PUBLIC), MUTATIONS)
