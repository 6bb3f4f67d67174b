"""The public tests' verdict, repeated in the grade cell so that nbgrader's Validate button sees it.

nbgrader's Validate runs the whole notebook and then looks only at the grade cells (and their
errors). In a student's notebook the grade cell of a function is empty (its hidden tests are cut
out), so without this line Validate would say "Success" for a notebook where nothing is written.
Each grade cell therefore ends, after its hidden tests, with::

    from flowlab.runtime import public_verdict
    public_verdict.require("label_dropout")

which raises an ``AssertionError`` naming the function and what went wrong unless the cell run
just before it was that function's public test cell (``public.check(..., "label_dropout", ...)``)
and it finished without an error. Run top to bottom (Validate, Run All, grading) that cell is the
one right above; run out of order, the message asks to run the public tests first. In grading the
line comes after the hidden tests, so whatever it raises cannot change what they record.
"""
from __future__ import annotations

import re

MESSAGE_LINES = 12         # of the public tests' error, quoted in the verdict


class PublicTestsNotPassed(AssertionError):
    """The verdict, shown without a traceback: IPython prints what ``_render_traceback_`` returns
    instead of the frames (which would only point into this module), and nbgrader's Validate dialog
    shows the same lines, so a student reads the message at once."""

    def _render_traceback_(self) -> list[str]:
        first, *rest = str(self).splitlines()
        return [f"\x1b[0;31mAssertionError\x1b[0m: {first}", *rest]


def _last_run():
    """IPython's result of the cell run before the current one, or None outside IPython."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    return None if shell is None else shell.last_execution_result


def runs_public_tests_of(cell_source: str, function_name: str) -> bool:
    """True when ``cell_source`` runs the public checks of ``function_name``."""
    pattern = r"public\.check\(\s*['\"][^'\"]+['\"]\s*,\s*['\"]" + re.escape(function_name) + r"['\"]"
    return re.search(pattern, cell_source) is not None


def describe_error(error: BaseException) -> str:
    """``"NotImplementedError"`` or ``"AssertionError: <first lines of the message>"``."""
    lines = str(error).strip().splitlines()
    text = "\n".join(lines[:MESSAGE_LINES]) + ("\n..." if len(lines) > MESSAGE_LINES else "")
    return type(error).__name__ + (f": {text}" if text else "")


def verdict(function_name: str, last_run) -> str | None:
    """Why ``function_name`` has not passed its public tests, given the previous cell's run
    (IPython's ``ExecutionResult``); None when it has."""
    if last_run is None or not runs_public_tests_of(last_run.info.raw_cell, function_name):
        return (f"{function_name}: run its public tests first (the cell above this one; "
                f"Run All runs both in order)")
    error = last_run.error_before_exec or last_run.error_in_exec
    if error is None:
        return None
    if isinstance(error, NotImplementedError) and not str(error):    # the release's placeholder
        return f"{function_name}: not written yet (raises NotImplementedError)"
    return f"{function_name} fails its public tests (the cell above):\n{describe_error(error)}"


def require(function_name: str) -> None:
    """Raise ``PublicTestsNotPassed`` (an ``AssertionError``) unless the public test cell of
    ``function_name`` ran just before and passed."""
    problem = verdict(function_name, _last_run())
    if problem is not None:
        raise PublicTestsNotPassed(problem)
    print(f"{function_name} passes its public tests; its hidden tests run when the notebook is graded")
