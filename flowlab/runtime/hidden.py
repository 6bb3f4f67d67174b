"""What a hidden test cell runs in the student's kernel: call, record, judge nothing.

A hidden test cell in a source notebook is one line between nbgrader's hidden-test markers::

    flowlab.runtime.hidden.run("01_flow_matching", "interpolate", globals())

It reads the inputs of every hidden case of ``interpolate`` (plain arrays that the grader put in
``$FLOWLAB_INPUTS_DIR``), calls the student's ``interpolate`` on each (fixed inputs, explicit noise
and times, never the global random stream), and records the outputs in ``$FLOWLAB_RECORD_DIR``,
with what each call did besides (``side_effects``: inputs changed in place, the global random
stream used). The expected outputs never enter this process: the grader compares afterwards, on
the host. Outside grading it does nothing.

With ``FLOWLAB_DEVICE=cuda`` (``flowlab grade --device cuda``) every case whose inputs hold a
tensor or a model is called a second time with those inputs moved to the GPU (generators stay on
the CPU, the library's convention), and recorded in ``$FLOWLAB_RECORD_DIR/cuda/``: a function that
works on the CPU but breaks on the GPU (a tensor made on the CPU, ``.numpy()`` on a CUDA tensor, a
result moved to the CPU) loses the case there. The precision settings are the notebook's own
(TF32 may be on); the host's tolerances allow for it.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Mapping

import torch

from flowlab.runtime import environment
from flowlab.runtime.codec import cast_inputs, decode_inputs, load_bundle
from flowlab.runtime.measures import MEASURES
from flowlab.runtime.record import DEVICE_UNAVAILABLE, record_call, write_record
from flowlab.runtime.side_effects import Watch


def measure_case(function, watch: Watch, case: dict) -> dict[str, Any]:
    """The outputs of ``function`` on a case (``case``: its ``measure`` and ``positional``), its
    inputs handed out and the global stream watched by ``watch``."""
    with torch.enable_grad(), watch.random_stream():   # a student's global set_grad_enabled(False) must not break it
        return MEASURES[case["measure"]](function, watch.make_inputs, case["positional"])


def run(assignment: str, function_name: str, namespace: Mapping[str, Any]) -> dict[str, str]:
    """Record the student's outputs for every hidden case of ``function_name``; returns
    ``{case key: status}`` (``"<key>@cuda"`` for the GPU calls; empty outside grading)."""
    inputs_folder, records = environment.inputs_dir(), environment.record_dir()
    if inputs_folder is None or records is None:
        return {}
    arrays, meta = load_bundle(inputs_folder / assignment)
    cases = {key: case for key, case in sorted(meta["cases"].items()) if case["function"] == function_name}
    function = namespace.get(function_name)
    statuses = record_cases(records, arrays, cases, function_name, function, "cpu")
    device = environment.grading_device()
    if device != "cpu":
        on_device = {key: case for key, case in cases.items() if runs_on_device(case)}
        found = record_cases(records / device, arrays, on_device, function_name, function, device)
        statuses.update({f"{key}@{device}": status for key, status in found.items()})
    return statuses


def runs_on_device(case: Mapping[str, Any]) -> bool:
    """True when a case has something to move to a device: a tensor or a model among its inputs
    (a case of numbers alone, such as a time grid's length, runs on the CPU only)."""
    return any(item["kind"] in ("tensor", "fixture") for item in case["inputs"])


def device_problem(device: str) -> str | None:
    """Why ``device`` cannot run tensors in this process, or None when it can (CUDA started here,
    outside any student's call, so that its start-up never counts against a call's time limit)."""
    try:
        torch.ones(1, device=device).add_(1).cpu()
    except Exception as error:      # no driver, no device node, a broken context
        return f"{type(error).__name__}: {error}"
    return None


def record_cases(records: Path, arrays: Mapping[str, Any], cases: Mapping[str, dict], function_name: str,
                 function: Any, device: str) -> dict[str, str]:
    """Call ``function`` on each case's inputs moved to ``device`` (the CPU: as stored) and record
    what it returned in ``records``; ``{case key: status}``."""
    statuses = {}
    problem = device_problem(device) if cases and device != "cpu" else None
    for key, case in cases.items():
        if not callable(function):
            write_record(records, key, "error", error=f"{function_name} is not defined as a function "
                                                      f"when its hidden tests run")
            statuses[key] = "error"
            continue
        if problem is not None:
            write_record(records, key, "error", error=f"{DEVICE_UNAVAILABLE} {device}: {problem}")
            statuses[key] = "error"
            continue
        make_inputs = partial(decode_inputs, arrays, case["inputs"], f"{key}|input|")
        watch = Watch(make_inputs if device == "cpu" else lambda make=make_inputs: cast_inputs(make(), None, device))
        statuses[key] = record_call(records, key, partial(measure_case, function, watch, case),
                                    environment.call_timeout(), effects=watch.effects)
    return statuses
