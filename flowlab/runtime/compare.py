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
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
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
