"""The kernel-side runtime of the course notebooks: what a notebook calls while it runs.

Released to students with the rest of ``flowlab``; the instructor's grader (``autograder/``,
package ``flowlab_grader``) drives it from outside and is never imported from here.

    environment     the contract with the grading host: environment variables (``grading_mode()``)
    public          ``public.check``: the public test cells
    public_verdict  ``public_verdict.require``: the public tests' verdict, repeated in the grade cell
    hidden          ``hidden.run``: the hidden test cells (records outputs; judges nothing)
    record          calls a student's function with limits, writes and reads records
    side_effects    what a test call did besides returning (inputs changed, the global stream used)
    codec           test inputs as plain arrays, and back
    fixtures        models of known output used as test inputs (affine, tanh, classifier)
    measures        what is recorded of a call (value, gradient, a returned velocity, ...)
    compare         output comparison: ``AllClose``, ``SeededMean`` and the known-mistake diagnosis
    reference_set   expected outputs with their comparisons
    execute         the notebook executor (nbclient) that runs in the grading sandbox

Importing this package is cheap (no torch).
"""
from flowlab.runtime.environment import grading_mode, quick_mode

__all__ = ["grading_mode", "quick_mode", "record"]


def __getattr__(name: str):
    if name == "record":
        from flowlab.runtime.record import record
        return record
    raise AttributeError(f"module 'flowlab.runtime' has no attribute {name!r}")
