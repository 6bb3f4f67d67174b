"""Public tests: run a student's function on the public cases and explain what is wrong.

In a notebook, right after the student's function::

    from flowlab.runtime import public
    public.check("01_flow_matching", "interpolate", interpolate)

runs ``interpolate`` on the inputs in ``data/public/01_flow_matching.npz``, compares with the
expected outputs shipped there, and raises an ``AssertionError`` that names each failed case, what
is wrong (shape, dtype, NaN, values) and, when the output matches a known mistake, the hint for it
("you put data at t = 0; in this course t = 0 is noise"). An exception in the student's function
propagates unchanged, so that its traceback points at the student's line.
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
        problems, hint = findings(function_name, watch.changed(), watch.used_global_random, case)
        if not verdict.passed and hint is None:
            hint = diagnose(check, outputs, references.wrong_answers(key), case["expect"], expected)
        if not verdict.passed or problems or hint:
            said = "; ".join(([] if verdict.passed else [verdict.message]) + problems) or "the values are right"
            messages.append(f"{case['about'] or key}: {said}" + (f"\n    hint: {hint}" if hint else ""))
    return len(keys), messages


def check(assignment: str, function_name: str, function: Callable) -> None:
    """Run the public cases of ``function_name``; print a line if all pass, else raise ``AssertionError``."""
    total, failed = failures(assignment, function_name, function)
    if failed:
        listing = "\n".join(f"  - {message}" for message in failed)
        raise AssertionError(f"{function_name} fails {len(failed)} of {total} public checks:\n{listing}")
    print(f"{function_name}: all {total} public checks passed")
