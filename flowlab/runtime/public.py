"""Public tests: run a student's function on the public cases and say which property failed.

In a notebook, right after the student's function::

    from flowlab.runtime import public
    public.check("01_flow_matching", "interpolate", interpolate)

runs ``interpolate`` on the inputs in ``data/public/01_flow_matching.npz``, compares with the
expected outputs shipped there, and raises an ``AssertionError`` that names each failed case by
the property it checks (its ``about``: "interpolate at t = 0, t = 1 and a time in between") and
says what differs (shape, dtype, NaN, values, float32 precision where float64 was expected, an
input changed in place, the global random stream used). It never names a known mistake: the
public references hold no wrong answers (``flowlab references``), so a public test cannot give
the right answer away; the hidden cases' hints are in the grading feedback. An exception in the
student's function propagates unchanged, so that its traceback points at the student's line.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from flowlab.runtime.compare import diagnose
from flowlab.runtime.hidden import measure_case
from flowlab.runtime.record import Output, describe
from flowlab.runtime.reference_set import ReferenceSet
from flowlab.runtime.side_effects import Watch, findings


def public_file(assignment: str) -> Path:
    """``data/public/<assignment>.npz``, in the folder that ``flowlab.locations.public_dir()`` finds."""
    from flowlab.locations import public_dir

    return public_dir() / f"{assignment}.npz"


def failures(assignment: str, function_name: str, function: Callable) -> tuple[int, list[str]]:
    """``(number of public cases, messages of the failed ones)``."""
    references = ReferenceSet.load(public_file(assignment))
    keys = references.keys(function_name)
    messages = []
    for key in keys:
        case = references.case(key)
        watch = Watch(lambda: references.make_inputs(key))
        produced = measure_case(function, watch, case)
        outputs = {name: Output(*describe(value)) for name, value in produced.items()}
        check = references.check(key)
        expected = references.expected(key)
        verdict = check.evaluate(outputs, expected, case["expect"])
        problems, random_stream = findings(function_name, watch.changed(), watch.used_global_random, case)
        # No known mistakes here: with none to match, diagnose can only tell float32 precision apart.
        precision = None if verdict.passed else diagnose(check, outputs, {}, case["expect"], expected)
        notes = problems + [note for note in (precision, random_stream) if note]
        about = case["about"] or key
        if not verdict.passed:
            messages.append(f"{about}: " + "; ".join([verdict.message] + notes))
        elif notes:
            messages.append(f"{about}: the values are right, but " + "; ".join(notes))
    return len(keys), messages


def check(assignment: str, function_name: str, function: Callable) -> None:
    """Run the public cases of ``function_name``; print a line if all pass, else raise ``AssertionError``."""
    total, failed = failures(assignment, function_name, function)
    if failed:
        listing = "\n".join(f"  - {message}" for message in failed)
        raise AssertionError(f"{function_name} fails {len(failed)} of {total} public checks:\n{listing}")
    print(f"{function_name}: all {total} public checks passed")
