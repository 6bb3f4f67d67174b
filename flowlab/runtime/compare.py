"""Compare recorded outputs with expected ones: a pass or fail, how far off, and a message.

A check sees the outputs of one test call (``{name: Output(info, values)}``), the expected values
(float64 arrays) and ``expect``, what the library returns for the same inputs (type, dtype, shape,
device). It returns a ``Verdict``: ``ratio`` is the error in units of the tolerance (pass: <= 1),
so that calibration can demand "plausible wrong answers miss by at least 100x".

Messages say what is wrong and never print expected values: they go to students.

    AllClose(rtol, atol)   every output: the right type, shape, dtype and device, finite, and
                           |got - expected| <= atol + rtol |expected| elementwise
    SeededMean(n_sigma)    outputs "first", "second" of two equally seeded calls: equal to each other
                           and different from "other", a call with another seed (the function draws
                           from the generator it is given), and within n_sigma standard errors of
                           the expected mean (references "mean" and "sd")

``diagnose`` names the known mistake that a failed output matches, only when exactly one does, or
says that the output is right to float32 precision where float64 was asked for.

On a GPU (``flowlab grade --device cuda``) the same call is made with the inputs moved there;
``device_verdict`` judges what came back: on the inputs' device, and within a tolerance that
allows for TF32 (``TF32_RTOL``); ``device_hint`` says what broke when the call raised.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Mapping, Protocol

import numpy as np

from flowlab.runtime.record import Output, is_finite


@dataclass(frozen=True)
class Verdict:
    passed: bool
    ratio: float
    message: str = ""


class Check(Protocol):
    def to_json(self) -> dict: ...

    def evaluate(self, outputs: Mapping[str, Output], expected: Mapping[str, np.ndarray],
                 expect: Mapping[str, dict]) -> Verdict: ...


LABELS = {"value": "the result", "first": "the result", "second": "the second call's result"}


def label(name: str) -> str:
    """How a message names an output: ``"grad.scale"`` -> ``"the gradient w.r.t. the model's scale"``."""
    if name.startswith("grad."):
        return f"the gradient of the result w.r.t. the model's {name[5:]}"
    if name.startswith("param."):
        return f"the model's {name[6:]} after the call"
    if name.startswith("item") and name[4:].isdigit():
        return f"returned value number {int(name[4:]) + 1}"
    return LABELS.get(name, name)


def shape_text(shape) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def structure_problem(name: str, output: Output | None, expect: Mapping) -> str | None:
    """What is wrong with an output's type, shape, dtype, device or finiteness, or None."""
    what = label(name)
    if output is None:
        return f"{what} is missing"
    info = output.info
    if expect.get("type") == "tensor" and info.get("type") != "tensor":
        return f"{what} is a {info.get('type', 'unknown object')}; expected a torch.Tensor"
    if "shape" in expect and info.get("shape") != expect["shape"]:
        got = shape_text(info["shape"]) if "shape" in info else "unknown"
        return f"{what} has shape {got}; expected {shape_text(expect['shape'])}"
    if "dtype" in expect and info.get("dtype") != expect["dtype"]:
        return f"{what} has dtype {info.get('dtype')}; expected {expect['dtype']}, the dtype of the inputs"
    if "device" in expect and info.get("device") != expect["device"]:
        return f"{what} is on the device {info.get('device')!r}; expected {expect['device']!r}, where the inputs are"
    if output.values is None:
        return f"{what} has no numeric values"
    if not is_finite(output.values):
        return f"{what} contains NaN or infinity"
    return None


@dataclass(frozen=True)
class AllClose:
    rtol: float
    atol: float

    def to_json(self) -> dict:
        return {"check": "allclose", **asdict(self)}

    def error_ratio(self, got: np.ndarray, expected: np.ndarray) -> float:
        """max |got - expected| / (atol + rtol |expected|); infinite where either is not finite (a NaN
        in a wrong answer's output must never match a student's output)."""
        bound = self.atol + self.rtol * np.abs(expected)
        ratio = np.abs(got - expected) / bound
        return float(np.max(np.where(np.isfinite(ratio), ratio, np.inf))) if expected.size else 0.0

    def miss_message(self, name: str, got: np.ndarray, expected: np.ndarray, expect: Mapping) -> str:
        """How far off a failed output is: for integers (labels) how many entries differ, for
        floating values the largest error, with the tolerance."""
        if is_integer(expect):
            differ = int(np.count_nonzero(got != expected))
            return f"{differ} of {expected.size} entries of {label(name)} differ (integers, such as labels, must match exactly)"
        error = float(np.max(np.abs(got - expected)))
        return f"{label(name)} is off by up to {error:.3g} (allowed: {self.atol:g} + {self.rtol:g} |expected|)"

    def evaluate(self, outputs, expected, expect) -> Verdict:
        worst = 0.0
        for name in sorted(expected):
            problem = structure_problem(name, outputs.get(name), expect.get(name, {}))
            if problem:
                return Verdict(False, math.inf, problem)
            if outputs[name].values.size != expected[name].size:   # e.g. a wrong answer of another shape
                return Verdict(False, math.inf, f"{label(name)} has {outputs[name].values.size} entries; "
                                                f"expected {expected[name].size}")
            got = outputs[name].values.reshape(expected[name].shape)
            ratio = self.error_ratio(got, expected[name])
            if ratio > 1:
                return Verdict(False, ratio, self.miss_message(name, got, expected[name], expect.get(name, {})))
            worst = max(worst, ratio)
        return Verdict(True, worst)


IGNORES_GENERATOR = ("calls with differently seeded generators gave the same result: draw every random number "
                     "from the generator argument, not from a generator or seed of your own")


@dataclass(frozen=True)
class SeededMean:
    n_sigma: float = 6.0
    reproducible_rtol: float = 1e-6

    def to_json(self) -> dict:
        return {"check": "seeded_mean", **asdict(self)}

    def evaluate(self, outputs, expected, expect) -> Verdict:
        for name in ("first", "second"):
            problem = structure_problem(name, outputs.get(name), expect.get(name, {}))
            if problem:
                return Verdict(False, math.inf, problem)
        first, second = _scalar(outputs["first"]), _scalar(outputs["second"])
        if not self._same(first, second):
            return Verdict(False, math.inf, "two calls with equally seeded generators gave different results: "
                                            "draw every random number from the generator argument")
        mean, sd = float(expected["mean"]), float(expected["sd"])
        sigmas = abs(first - mean) / sd
        if sigmas > self.n_sigma:
            return Verdict(False, sigmas / self.n_sigma,
                           f"with random noise and times, the result is {sigmas:.3g} standard errors away from "
                           f"its expected value (allowed: {self.n_sigma:g})")
        if "other" in expect:     # last: a result that does not depend on the draws at all fails above
            problem = structure_problem("other", outputs.get("other"), expect.get("other", {}))
            if problem:
                return Verdict(False, math.inf, problem)
            if self._same(first, _scalar(outputs["other"])):
                return Verdict(False, math.inf, IGNORES_GENERATOR)
        return Verdict(True, sigmas / self.n_sigma)

    def _same(self, a: float, b: float) -> bool:
        """``b`` equals ``a`` up to ``reproducible_rtol`` (float rounding, not another draw)."""
        return abs(a - b) <= self.reproducible_rtol * abs(a) + 1e-12


def _scalar(output: Output) -> float:
    """The first value of a recorded output, as a float (a loss is a scalar)."""
    return float(output.values.reshape(-1)[0])


CHECKS = {"allclose": AllClose, "seeded_mean": SeededMean}


def from_json(spec: Mapping) -> Check:
    """The check that ``check.to_json()`` described."""
    spec = dict(spec)
    kind = spec.pop("check")
    if kind not in CHECKS:
        raise ValueError(f"unknown check {kind!r}; expected one of {sorted(CHECKS)}")
    return CHECKS[kind](**spec)


def is_integer(expect: Mapping) -> bool:
    """True when the library returns integers here (``expect["dtype"]`` like ``torch.int64``)."""
    return str(expect.get("dtype", "")).startswith(("torch.int", "torch.uint", "int"))


FLOAT32_HINT = ("your result is right to float32 precision but not to float64's: did you compute in float32? "
                "(keep the inputs' dtype: create new tensors with dtype=x.dtype, e.g. torch.zeros_like(x), "
                "and avoid .float())")
# An error below this, relative to the largest expected value (at least 1), is float32 rounding
# (float32 keeps 7 digits; a few dozen operations lose one or two of them).
FLOAT32_RELATIVE = 2e-5


def float32_rounding(outputs: Mapping[str, Output], expected: Mapping[str, np.ndarray], expect: Mapping[str, dict]) -> bool:
    """True when float64 was expected everywhere and every output is within float32 rounding of it."""
    if not expected or any(expect.get(name, {}).get("dtype") != "torch.float64" for name in expected):
        return False
    for name, values in expected.items():
        output = outputs.get(name)
        if output is None or output.values is None or output.values.size != values.size or not is_finite(output.values):
            return False
        scale = max(1.0, float(np.max(np.abs(values)))) if values.size else 1.0
        if values.size and float(np.max(np.abs(output.values.reshape(values.shape) - values))) > FLOAT32_RELATIVE * scale:
            return False
    return True


def _matches(check: Check, outputs: Mapping[str, Output], values: Mapping[str, np.ndarray],
             expect: Mapping[str, dict]) -> bool:
    """True when ``outputs`` are a wrong answer's ``values``: of its shapes (which may not be the
    right ones: a missing upsampling), otherwise as the check demands."""
    if not values or any(outputs.get(name) is None or outputs[name].info.get("shape") != list(array.shape)
                         for name, array in values.items()):
        return False
    shapeless = {name: {key: value for key, value in item.items() if key != "shape"} for name, item in expect.items()}
    return check.evaluate(outputs, values, shapeless).passed


def diagnose(check: Check, outputs: Mapping[str, Output], wrong_answers: Mapping[str, tuple[str, dict]],
             expect: Mapping[str, dict], expected: Mapping[str, np.ndarray] | None = None) -> str | None:
    """A hint for outputs that failed ``check``, or None.

    ``wrong_answers``: ``{variant: (message, {output name: values})}``, the outputs of plausible
    mistakes on the same inputs. The hint is the message of the one known mistake that the outputs
    match; when several match, the outputs cannot tell which mistake was made, and no hint is
    better than a wrong one. With ``expected`` given and no mistake matched: ``FLOAT32_HINT`` when
    the outputs are float64 values computed in float32.
    """
    matches = {message for message, values in wrong_answers.values() if _matches(check, outputs, values, expect)}
    if len(matches) == 1:
        return matches.pop()
    if not matches and expected is not None and float32_rounding(outputs, expected, expect):
        return FLOAT32_HINT
    return None


# ---- the same call with its inputs on a GPU -------------------------------------------------------

# TF32, which NVIDIA GPUs may use for float32 matrix products (``torch.backends.cuda.matmul.allow_tf32``)
# and convolutions (cuDNN's default), keeps 10 of float32's 23 mantissa bits: each factor is
# rounded to 2^-11 = 4.9e-4 relative, a product of two to about 1e-3. A float32 output made on the
# GPU is compared with at least this relative tolerance, and the same fraction of its largest
# expected value as absolute tolerance (a sum of rounded products that cancels keeps the rounding
# of its terms). The case's own tolerance still holds on the CPU: a case passes only when the CPU
# call and the GPU call both pass, so a looser GPU tolerance lets no wrong answer through.
TF32_RTOL = 2e-3
# float64 has no TF32; fused multiply-adds and another summation order still round differently.
GPU_FLOAT64_RTOL = 1e-10
# Two calls with equally seeded generators on a GPU may sum in another order (atomic additions).
GPU_REPRODUCIBLE_RTOL = 1e-5

DEVICE_MIX_HINT = ("a tensor your function makes is on the CPU while the inputs are on the GPU: make new tensors "
                   "where the inputs are (torch.zeros_like(x), torch.ones(n, dtype=x.dtype, device=x.device)); "
                   "draw from the generator you are given and move the draw: "
                   "torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)")
NUMPY_HINT = (".numpy() (and numpy functions called on tensors) work on CPU tensors only: compute with torch "
              "functions, on the inputs' device, from start to end")
GENERATOR_DEVICE_HINT = ("the generator you are given lives on the CPU: draw with it there (no device= in the call "
                         "that takes generator=) and move the draw: "
                         "torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)")
RESULT_ON_CPU_HINT = ("your function returned its result on the CPU for inputs on the GPU: keep it on the inputs' "
                      "device (no .cpu(), .numpy() or torch.tensor(...) of computed values on the way out)")
# PyTorch's words when a call breaks on the GPU, and what to tell: the first match wins.
DEVICE_ERRORS = (
    (("device type for generator",), GENERATOR_DEVICE_HINT),
    (("can't convert cuda", "cannot convert cuda", "to numpy"), NUMPY_HINT),
    (("same device", "two devices", "but got device type cpu", "on cpu or on the same device"), DEVICE_MIX_HINT),
)


def device_hint(error: str) -> str | None:
    """What broke, from the text of an exception raised by a call with its inputs on a GPU (e.g.
    ``"RuntimeError: Expected all tensors to be on the same device, ..."`` -> ``DEVICE_MIX_HINT``)."""
    text = error.lower()
    return next((hint for words, hint in DEVICE_ERRORS if any(word in text for word in words)), None)


def device_expect(expect: Mapping[str, dict], device: str) -> dict[str, dict]:
    """``expect`` with every tensor output on ``device``: where the library leaves a result is where
    its inputs are (the references record ``"cpu"``, made there)."""
    return {name: {**item, "device": device} if item.get("type") == "tensor" else dict(item)
            for name, item in expect.items()}


def device_tolerance(check: AllClose, dtype: str, expected: np.ndarray) -> AllClose:
    """The tolerance for one output of dtype ``dtype`` made on a GPU: ``check``'s, widened to TF32's
    for float32 (``TF32_RTOL``) and to ``GPU_FLOAT64_RTOL`` for float64; integers stay exact."""
    floor = {"torch.float32": TF32_RTOL, "torch.float64": GPU_FLOAT64_RTOL}.get(dtype)
    if floor is None:
        return check
    scale = float(np.max(np.abs(expected))) if expected.size and np.all(np.isfinite(expected)) else 0.0
    return AllClose(rtol=max(check.rtol, floor), atol=max(check.atol, floor * scale))


def device_verdict(check: Check, outputs: Mapping[str, Output], expected: Mapping[str, np.ndarray],
                   expect: Mapping[str, dict], device: str) -> Verdict:
    """``check``'s verdict on the outputs of a call made with its inputs on ``device``: each output
    on that device, within ``device_tolerance`` (``AllClose``) or reproducible to
    ``GPU_REPRODUCIBLE_RTOL`` (``SeededMean``)."""
    where = device_expect(expect, device)
    if isinstance(check, SeededMean):
        return replace(check, reproducible_rtol=max(check.reproducible_rtol, GPU_REPRODUCIBLE_RTOL)).evaluate(
            outputs, expected, where)
    if not isinstance(check, AllClose):
        return check.evaluate(outputs, expected, where)
    worst = 0.0
    for name in sorted(expected):
        tolerance = device_tolerance(check, where.get(name, {}).get("dtype", ""), expected[name])
        verdict = tolerance.evaluate({name: outputs[name]} if name in outputs else {}, {name: expected[name]},
                                     {name: where.get(name, {})})
        if not verdict.passed:
            return verdict
        worst = max(worst, verdict.ratio)
    return Verdict(True, worst)


def left_the_device(outputs: Mapping[str, Output], expect: Mapping[str, dict], device: str) -> bool:
    """True when a tensor output expected on ``device`` came back as a CPU tensor."""
    return any(item.get("type") == "tensor" and name in outputs and outputs[name].info.get("type") == "tensor"
               and outputs[name].info.get("device") == "cpu" != device for name, item in expect.items())
