"""What a test does with a function: call it on fixed inputs and collect named outputs.

A measure is ``measure(function, make_inputs, positional) -> {output name: value}``; ``make_inputs()``
returns a fresh copy of the test's inputs (fresh generators, fresh fixture parameters), and the
first ``positional`` inputs are passed by position, the rest by keyword, as a student would call
the library function. The same measure runs the student's function in the sandbox and the
library's reference implementation on the host, so both produce the same output names.

    value        {"value": f(...)}
    grad         {"value": f(...), "grad.<param>": d f / d param for each parameter of inputs["model"]}
    seeded_pair  {"first": f(...), "second": f(...)} with two equally seeded generators: reproducible?
"""
from __future__ import annotations

from typing import Any, Callable

import torch

Inputs = dict[str, Any]


class MeasureError(Exception):
    """The function's result cannot be measured (e.g. a loss that is not differentiable)."""


def call(function: Callable, inputs: Inputs, positional: int) -> Any:
    """``function(*first positional inputs, **the others)``."""
    names = list(inputs)
    return function(*(inputs[name] for name in names[:positional]),
                    **{name: inputs[name] for name in names[positional:]})


def measure_value(function: Callable, make_inputs: Callable[[], Inputs], positional: int) -> dict[str, Any]:
    return {"value": call(function, make_inputs(), positional)}


def measure_grad(function: Callable, make_inputs: Callable[[], Inputs], positional: int) -> dict[str, Any]:
    inputs = make_inputs()
    value = call(function, inputs, positional)
    parameters = dict(inputs["model"].named_parameters())
    if not isinstance(value, torch.Tensor) or not value.requires_grad or value.numel() != 1:
        raise MeasureError("the loss must be a single-number tensor that depends on the model's parameters "
                           "(did you call .item(), .detach(), .numpy() or use torch.no_grad()?)")
    gradients = torch.autograd.grad(value.reshape(()), list(parameters.values()), allow_unused=True)
    outputs = {"value": value}
    for name, gradient in zip(parameters, gradients):
        outputs[f"grad.{name}"] = torch.zeros_like(parameters[name]) if gradient is None else gradient
    return outputs


def measure_seeded_pair(function: Callable, make_inputs: Callable[[], Inputs], positional: int) -> dict[str, Any]:
    return {"first": call(function, make_inputs(), positional),
            "second": call(function, make_inputs(), positional)}


MEASURES: dict[str, Callable[..., dict[str, Any]]] = {
    "value": measure_value,
    "grad": measure_grad,
    "seeded_pair": measure_seeded_pair,
}
