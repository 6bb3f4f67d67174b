"""What a test does with a function: call it on fixed inputs and collect named outputs.

A measure is ``measure(function, make_inputs, positional) -> {output name: value}``; ``make_inputs()``
returns a fresh copy of the test's inputs (fresh generators, fresh fixture parameters), and the
first ``positional`` inputs are passed by position, the rest by keyword, as a student would call
the library function. The same measure runs the student's function in the sandbox and the
library's reference implementation on the host, so both produce the same output names.

    value        {"value": f(...)}
    grad         {"value": f(...), "grad.<param>": d f / d param for each parameter of inputs["model"]}
    seeded_pair  {"first": f(...), "second": f(...), "other": f(...)}: the first two with equally seeded
                 generators (reproducible?), the third with every generator seeded one more (does the
                 result follow the generator it is given, not a generator or seed of its own?)
    returned_velocity  {"value": f(...)(at_x, at_t)}: f returns a velocity function (guidance wrappers);
                 the inputs named ``at_x`` and ``at_t`` are where it is evaluated, not passed to f
    items        {"item0": f(...)[0], "item1": f(...)[1], ...}: f returns a tuple (e.g. ``(z, x1)`` pairs)
    updated_model  {"value": f(...), "param.<name>": each parameter of inputs["model"] after the call}:
                 f trains the model in place (a training step)
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


def reseeded(inputs: Inputs) -> Inputs:
    """The same inputs with every ``torch.Generator`` re-seeded to its initial seed + 1."""
    for value in inputs.values():
        if isinstance(value, torch.Generator):
            value.manual_seed(value.initial_seed() + 1)
    return inputs


def measure_seeded_pair(function: Callable, make_inputs: Callable[[], Inputs], positional: int) -> dict[str, Any]:
    return {"first": call(function, make_inputs(), positional),
            "second": call(function, make_inputs(), positional),
            "other": call(function, reseeded(make_inputs()), positional)}


def measure_returned_velocity(function: Callable, make_inputs: Callable[[], Inputs], positional: int) -> dict[str, Any]:
    inputs = make_inputs()
    at = {name: inputs.pop(name) for name in ("at_x", "at_t")}
    returned = call(function, inputs, positional)
    if not callable(returned):
        raise MeasureError(f"the function must return a velocity function (x, t) -> tensor, got "
                           f"{type(returned).__name__}: define an inner function and return it")
    return {"value": returned(at["at_x"], at["at_t"])}


def measure_items(function: Callable, make_inputs: Callable[[], Inputs], positional: int) -> dict[str, Any]:
    returned = call(function, make_inputs(), positional)
    if not isinstance(returned, (tuple, list)):
        raise MeasureError(f"the function must return a tuple, got {type(returned).__name__}")
    return {f"item{index}": value for index, value in enumerate(returned)}


def measure_updated_model(function: Callable, make_inputs: Callable[[], Inputs], positional: int) -> dict[str, Any]:
    inputs = make_inputs()
    outputs = {"value": call(function, inputs, positional)}
    for name, parameter in inputs["model"].named_parameters():
        outputs[f"param.{name}"] = parameter.detach().clone()
    return outputs


MEASURES: dict[str, Callable[..., dict[str, Any]]] = {
    "value": measure_value,
    "grad": measure_grad,
    "seeded_pair": measure_seeded_pair,
    "returned_velocity": measure_returned_velocity,
    "items": measure_items,
    "updated_model": measure_updated_model,
}
