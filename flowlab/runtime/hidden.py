"""What a hidden test cell runs in the student's kernel: call, record, judge nothing.

A hidden test cell in a source notebook is one line between nbgrader's hidden-test markers::

    flowlab.runtime.hidden.run("01_flow_matching", "interpolate", globals())

It reads the inputs of every hidden case of ``interpolate`` (plain arrays that the grader put in
``$FLOWLAB_INPUTS_DIR``), calls the student's ``interpolate`` on each (fixed inputs, explicit noise
and times, never the global random stream), and records the outputs in ``$FLOWLAB_RECORD_DIR``,
with what each call did besides (``side_effects``: inputs changed in place, the global random
stream used). The expected outputs never enter this process: the grader compares afterwards, on
the host. Outside grading it does nothing.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Mapping

import torch

from flowlab.runtime import environment
from flowlab.runtime.codec import decode_inputs, load_bundle
from flowlab.runtime.measures import MEASURES
from flowlab.runtime.record import record_call, write_record
from flowlab.runtime.side_effects import Watch


def measure_case(function, watch: Watch, case: dict) -> dict[str, Any]:
    """The outputs of ``function`` on a case (``case``: its ``measure`` and ``positional``), its
    inputs handed out and the global stream watched by ``watch``."""
    with torch.enable_grad(), watch.random_stream():   # a student's global set_grad_enabled(False) must not break it
        return MEASURES[case["measure"]](function, watch.make_inputs, case["positional"])


def run(assignment: str, function_name: str, namespace: Mapping[str, Any]) -> dict[str, str]:
    """Record the student's outputs for every hidden case of ``function_name``; returns
    ``{case key: status}`` (empty outside grading)."""
    inputs_folder, records = environment.inputs_dir(), environment.record_dir()
    if inputs_folder is None or records is None:
        return {}
    arrays, meta = load_bundle(inputs_folder / assignment)
    function = namespace.get(function_name)
    statuses = {}
    for key, case in sorted(meta["cases"].items()):
        if case["function"] != function_name:
            continue
        if not callable(function):
            write_record(records, key, "error", error=f"{function_name} is not defined as a function "
                                                      f"when its hidden tests run")
            statuses[key] = "error"
            continue
        watch = Watch(partial(decode_inputs, arrays, case["inputs"], f"{key}|input|"))
        statuses[key] = record_call(records, key, partial(measure_case, function, watch, case),
                                    environment.call_timeout(), effects=watch.effects)
    return statuses
