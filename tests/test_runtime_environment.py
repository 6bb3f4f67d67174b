"""The environment contract between the grader, nbgrader and the notebooks: when is it grading mode?"""
import pytest

from flowlab.runtime import environment


@pytest.mark.parametrize("variables, expected", [
    ({}, False),
    ({"FLOWLAB_GRADING": "0"}, False),
    ({"FLOWLAB_GRADING": "1"}, True),
    ({"NBGRADER_EXECUTION": "validate"}, True),     # the Validate button in JupyterLab
    ({"NBGRADER_EXECUTION": "autograde"}, True),
    ({"NBGRADER_EXECUTION": ""}, False),
])
def test_grading_mode_follows_flowlab_and_nbgrader(monkeypatch, variables, expected):
    for name in ("FLOWLAB_GRADING", "NBGRADER_EXECUTION"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert environment.grading_mode() is expected


@pytest.mark.parametrize("value, expected", [(None, False), ("0", False), ("", False), ("1", True)])
def test_quick_mode_follows_flowlab_quick(monkeypatch, value, expected):
    """The test suite sets FLOWLAB_QUICK=1 so that a notebook's one-minute training takes a few steps."""
    monkeypatch.delenv("FLOWLAB_QUICK", raising=False)
    if value is not None:
        monkeypatch.setenv("FLOWLAB_QUICK", value)
    assert environment.quick_mode() is expected
