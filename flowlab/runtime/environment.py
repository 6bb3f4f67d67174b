"""The contract between the grading host and the sandboxed notebook: environment variables.

The host (``flowlab_grader.sandbox``) sets them; the code that runs in the student's kernel
(``hidden``, ``record``) and the notebooks read them:

    FLOWLAB_GRADING=1           the notebook runs in grading mode: skip slow exploration cells
    FLOWLAB_INPUTS_DIR=DIR      hidden test inputs, as plain arrays (``NN_name.npz`` + ``.json``)
    FLOWLAB_RECORD_DIR=DIR      where hidden tests write the student's outputs (``.npy`` + ``.json``)
    FLOWLAB_CALL_TIMEOUT=S      seconds one call of a student's function may take in a hidden test
    FLOWLAB_QUICK=1             the test suite runs the notebooks: training cells take a few steps only
    FLOWLAB_DEVICE=cuda         hidden tests also call the function with the inputs on this device
                                (``flowlab grade --device cuda``); unset or ``cpu``: the CPU only
    NBGRADER_EXECUTION=...      set by nbgrader's Validate (and autograde): grading mode too

Nothing here is secret: the inputs are seeds turned into arrays; the expected outputs stay on the
host. A student who sets ``FLOWLAB_GRADING=1`` only makes their own notebook skip the exploration.
"""
from __future__ import annotations

import os
from pathlib import Path

GRADING = "FLOWLAB_GRADING"
INPUTS_DIR = "FLOWLAB_INPUTS_DIR"
RECORD_DIR = "FLOWLAB_RECORD_DIR"
CALL_TIMEOUT = "FLOWLAB_CALL_TIMEOUT"
DEVICE = "FLOWLAB_DEVICE"
DEFAULT_CALL_TIMEOUT = 20.0
NBGRADER_EXECUTION = "NBGRADER_EXECUTION"
QUICK = "FLOWLAB_QUICK"


def grading_mode() -> bool:
    """True when the notebook is being graded (``FLOWLAB_GRADING=1``) or checked by nbgrader
    (``NBGRADER_EXECUTION``, which its Validate button and autograde set): skip slow exploration.
    Validate then runs what the grader runs, in seconds rather than minutes."""
    return os.environ.get(GRADING, "") not in ("", "0") or bool(os.environ.get(NBGRADER_EXECUTION))


def quick_mode() -> bool:
    """True when ``FLOWLAB_QUICK`` is set (not ``0``): the test suite executes a notebook top to
    bottom and only checks that every cell runs, so a training cell takes a few steps, not a minute."""
    return os.environ.get(QUICK, "") not in ("", "0")


def inputs_dir() -> Path | None:
    """The folder of hidden test inputs, or None outside grading."""
    value = os.environ.get(INPUTS_DIR)
    return Path(value) if value else None


def record_dir() -> Path | None:
    """The folder where hidden tests record outputs, or None outside grading."""
    value = os.environ.get(RECORD_DIR)
    return Path(value) if value else None


def call_timeout() -> float:
    """Seconds one call of a student's function may take (``FLOWLAB_CALL_TIMEOUT``, default 20)."""
    try:
        return max(float(os.environ.get(CALL_TIMEOUT, DEFAULT_CALL_TIMEOUT)), 0.1)
    except ValueError:
        return DEFAULT_CALL_TIMEOUT


def grading_device() -> str:
    """The device hidden tests run on besides the CPU (``FLOWLAB_DEVICE``): ``"cuda"``, or ``"cpu"``
    when unset (the CPU alone)."""
    return os.environ.get(DEVICE, "").strip() or "cpu"
