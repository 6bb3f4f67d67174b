"""``flowlab references``: inputs and float64 expected outputs of every test case, on disk.

For each assignment and each case in ``autograder/cases/NN_name.py``:

- the inputs, built once from the case's seed and stored as arrays (grading never draws again);
- ``expect``: what the library returns for these inputs as given (type, dtype, shape, device);
- the expected values: the library's reference implementation run in float64 on the CPU (or the
  case's own ``expected`` formula, for statistical checks);
- the outputs of each known wrong answer recognised by its values (for the hints of grading
  feedback), in float64: hidden cases only, so that the public tests, which the students have,
  cannot name a mistake (and so give the right answer away);
- what the function may do besides returning (``may_change``, ``may_use_global_random``).

Hidden cases go to ``autograder/references/NN_name.npz`` (never released, never in the sandbox:
the sandbox gets only the inputs); public ones to ``data/public/NN_name.npz``. Array names are
``<case key>|input|<argument>``, ``<case key>|expected|<output>``, ``<case key>|wrong:<variant>|<output>``;
the ``.json`` beside holds the rest, with versions, seeds, shapes and tolerances.
"""
from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flowlab_grader.cases import AssignmentCases, Case, load_cases
from flowlab.runtime.compare import AllClose
from flowlab.runtime.codec import cast_inputs, decode_inputs, encode_inputs, save_bundle
from flowlab_grader.course import Assignment, assignments
from flowlab.runtime.measures import MEASURES
from flowlab.runtime.record import describe

FORMAT = 1


def versions() -> dict[str, str]:
    """The versions that produced a reference file (for the metadata)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        flowlab_version = version("flowlab")
    except PackageNotFoundError:
        flowlab_version = "unknown"
    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "flowlab": flowlab_version}


def _arrays(outputs: dict[str, Any]) -> dict[str, np.ndarray]:
    return {name: describe(value)[1] for name, value in outputs.items()}


def case_entry(case: Case, cases: AssignmentCases) -> tuple[dict[str, np.ndarray], dict]:
    """The arrays and metadata of one case (see the module docstring)."""
    graded = cases.function(case.function)
    reference = graded.reference()
    measure = MEASURES[case.measure]
    prefix = f"{case.key}|input|"
    arrays, spec = encode_inputs(case.build_inputs(), prefix)
    as_given = lambda: decode_inputs(arrays, spec, prefix)
    in_float64 = lambda: cast_inputs(as_given(), torch.float64)
    expect = {}
    for name, value in measure(reference, as_given, graded.positional).items():
        info = describe(value)[0]
        expect[name] = {key: info[key] for key in ("type", "dtype", "shape", "device") if key in info}
    if case.expected is not None:
        expected = _arrays(case.expected(in_float64()))
    else:
        expected = _arrays(measure(reference, in_float64, graded.positional))
    arrays.update({f"{case.key}|expected|{name}": values for name, values in expected.items()})
    wrong_messages = {}
    if isinstance(case.check, AllClose) and not case.public:
        for variant, wrong in sorted(graded.wrong.items()):
            if wrong.by != "values":    # recognised by the recorder's watch, not by its outputs
                continue
            try:
                outputs = _arrays(measure(wrong.function, in_float64, graded.positional))
            except Exception:   # a mistake that crashes on these inputs needs no diagnosis
                continue
            arrays.update({f"{case.key}|wrong:{variant}|{name}": values for name, values in outputs.items()})
            wrong_messages[variant] = wrong.message
    meta = {"function": case.function, "positional": graded.positional, "measure": case.measure,
            "inputs": spec, "seed": case.seed, "check": case.check.to_json(), "expect": expect,
            "outputs": sorted(expected), "about": case.about, "cell": case.cell, "weight": case.weight,
            "may_change": list(graded.may_change), "may_use_global_random": graded.may_use_global_random,
            "wrong": wrong_messages, "shapes": {key: list(value.shape) for key, value in arrays.items()
                                                if key.startswith(prefix)}}
    return arrays, meta


def build(cases: AssignmentCases, public: bool) -> tuple[dict[str, np.ndarray], dict]:
    """All arrays and the metadata of the hidden (or public) cases of one assignment."""
    arrays: dict[str, np.ndarray] = {}
    entries = {}
    for case in (cases.public() if public else cases.hidden()):
        case_arrays, entries[case.key] = case_entry(case, cases)
        arrays.update(case_arrays)
    meta = {"format": FORMAT, "assignment": cases.assignment, "kind": "public" if public else "hidden",
            "dtype": "float64", "device": "cpu", "generated_by": "flowlab references", "versions": versions(),
            "functions": {f.name: f.library for f in cases.functions}, "order": list(entries), "cases": entries}
    return arrays, meta


def write_references(selected: list[Assignment] | None = None) -> list[Path]:
    """Regenerate hidden and public references of ``selected`` assignments (default: all)."""
    written = []
    for assignment in selected or assignments():
        cases = load_cases(assignment)
        written.append(save_bundle(assignment.references_file, *build(cases, public=False)))
        written.append(save_bundle(assignment.public_file, *build(cases, public=True)))
    return written
