"""Grading of the course notebooks (nbgrader, two phases); see ``autograder/README.md``.

Student side (runs in the notebook's kernel, ships in the release): ``grading_mode()``,
``record``, ``hidden.run`` (hidden test cells), ``public.check`` (public test cells).
Host side (instructor only): ``references``, ``release``, ``grade`` and their helpers.

Importing this package is cheap (no torch): ``flowlab.grading.jail`` runs before privileges are
dropped and must start fast.
"""
from flowlab.grading.runtime import grading_mode

__all__ = ["grading_mode", "record"]


def __getattr__(name: str):
    if name == "record":
        from flowlab.grading.record import record
        return record
    raise AttributeError(f"module 'flowlab.grading' has no attribute {name!r}")
