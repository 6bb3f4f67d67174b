"""How an assignment declares what is graded: functions, test cases, wrong answers to recognise.

Each assignment has a file ``autograder/cases/NN_name.py`` (instructor only, never released) that
defines ``CASES = AssignmentCases(...)``::

    GradedFunction("interpolate", library="flowlab.paths:interpolate", positional=3,
                   wrong={"swapped_time": Wrong(swapped, "you put data at t = 0; t = 0 is noise")})
    Case("interpolate/per_sample_t", "interpolate", inputs=per_sample_t, seed=101,
         cell="hidden_interpolate", check=AllClose(rtol=1e-5, atol=1e-6))

- ``library`` is the reference implementation (``module:function``): run in float64 by
  ``flowlab references``, and stubbed in the student release (``flowlab release``).
- ``inputs(generator) -> {argument: value}`` builds a case's inputs from a seeded CPU generator
  (tensors, fixtures, ``GeneratorSeed``); ``flowlab references`` stores them as arrays, so that
  grading never depends on a random stream again.
- ``cell`` is the nbgrader grade cell (``grade_id``) whose points the case shares (by ``weight``).
- ``public=True`` cases ship in ``data/public/`` and run in the student's public tests; the others
  are hidden. A public case is never graded.
- ``Wrong`` answers are plausible mistakes with the message a student should read. They calibrate
  the tolerances (each must miss every case of its function by >= 100x the tolerance, unless the
  case lists it in ``blind_to``) and diagnose failures in feedback and public tests: a failed
  output gets a mistake's message when it matches that mistake and no other, so the cases must
  tell the mistakes apart (each is named alone in at least one case; a test checks it). A mistake
  that shows not in the values but in what the call does besides (``by="side_effects"``: it
  changes an input in place, or draws from the global random stream) is caught by the recorder's
  watch (``flowlab.runtime.side_effects``), and its message is the one the watch gives; one that
  a statistical check catches by itself (``by="check"``) carries the check's message. These two
  kinds are not calibrated by values (no ``blind_to``): each must fail some hidden case with its
  message.
- Every graded function must leave its inputs unchanged and draw only from the generator it is
  given; ``GradedFunction(may_change=("x",))`` or ``may_use_global_random=True`` lifts that.
- ``Mutation``s are plausible wrong *submissions*: the source's solution cell with one edit. The
  end-to-end test grades each in a real sandboxed kernel and checks the feedback names the part.
"""
from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from flowlab.runtime.compare import AllClose, Check
from flowlab.runtime.measures import MEASURES
from flowlab_grader.course import Assignment, assignments

CALIBRATION_FACTOR = 100.0


DETECTIONS = ("values", "side_effects", "check")


@dataclass(frozen=True)
class Wrong:
    """A plausible wrong implementation (same signature as the graded function) and what to tell.
    ``by``: how it is recognised: ``"values"``, its outputs (stored in the references, matched in
    diagnoses); ``"side_effects"``, what the recorder's watch sees (``message`` is the watch's);
    ``"check"``, a case's check itself (a statistical check; ``message`` is the check's)."""
    function: Callable
    message: str
    by: str = "values"

    def __post_init__(self):
        if self.by not in DETECTIONS:
            raise ValueError(f"Wrong(by={self.by!r}): expected one of {DETECTIONS}")


@dataclass(frozen=True)
class GradedFunction:
    name: str
    library: str
    positional: int
    wrong: dict[str, Wrong] = field(default_factory=dict)
    may_change: tuple[str, ...] = ()          # inputs the function may change in place (none by default)
    may_use_global_random: bool = False       # True: it may draw from the global random stream

    def reference(self) -> Callable:
        """The library implementation, imported from ``module:function``."""
        module, _, attribute = self.library.partition(":")
        return getattr(importlib.import_module(module), attribute)


@dataclass(frozen=True)
class Case:
    key: str
    function: str
    inputs: Callable[[torch.Generator], dict[str, Any]]
    seed: int
    cell: str = ""
    about: str = ""
    check: Check = AllClose(rtol=1e-5, atol=1e-6)
    measure: str = "value"
    weight: float = 1.0
    public: bool = False
    expected: Callable[[dict[str, Any]], dict[str, torch.Tensor]] | None = None
    blind_to: tuple[str, ...] = ()

    def __post_init__(self):
        if not self.key.startswith(self.function + "/"):
            raise ValueError(f"case key {self.key!r} must start with its function name {self.function!r}/")
        if self.measure not in MEASURES:
            raise ValueError(f"case {self.key}: unknown measure {self.measure!r}; expected one of {sorted(MEASURES)}")
        if not self.public and not self.cell:
            raise ValueError(f"hidden case {self.key} must name the grade cell that scores it (cell=...)")

    def build_inputs(self) -> dict[str, Any]:
        """The case's inputs, drawn from ``torch.Generator().manual_seed(seed)``."""
        return self.inputs(torch.Generator().manual_seed(self.seed))


@dataclass(frozen=True)
class Mutation:
    """A wrong submission: solution cell ``cell`` with ``old`` replaced by ``new``. Grading it must
    fail case ``fails`` and put ``hint`` (a fragment of the expected message) in the feedback."""
    name: str
    cell: str
    old: str
    new: str
    fails: str
    hint: str


@dataclass(frozen=True)
class AssignmentCases:
    assignment: str
    functions: tuple[GradedFunction, ...]
    cases: tuple[Case, ...]
    mutations: tuple[Mutation, ...] = ()

    def __post_init__(self):
        names = {function.name for function in self.functions}
        keys = [case.key for case in self.cases]
        if len(set(keys)) != len(keys):
            raise ValueError(f"{self.assignment}: case keys must be unique")
        for case in self.cases:
            if case.function not in names:
                raise ValueError(f"case {case.key} tests {case.function!r}, which is not a graded function {sorted(names)}")
        for mutation in self.mutations:
            if mutation.fails not in keys:
                raise ValueError(f"mutation {mutation.name} must fail a known case, not {mutation.fails!r}")

    def function(self, name: str) -> GradedFunction:
        return next(function for function in self.functions if function.name == name)

    def hidden(self) -> list[Case]:
        return [case for case in self.cases if not case.public]

    def public(self) -> list[Case]:
        return [case for case in self.cases if case.public]

    def cells(self) -> list[str]:
        """The grade cells that hidden cases score, in order of first appearance."""
        return list(dict.fromkeys(case.cell for case in self.hidden()))


def load_cases(assignment: Assignment) -> AssignmentCases:
    """Import ``autograder/cases/NN_name.py`` and return its ``CASES``."""
    path = assignment.cases_file
    if not path.is_file():
        raise FileNotFoundError(f"no test cases for {assignment.name}: {path} is missing")
    spec = importlib.util.spec_from_file_location(f"flowlab_cases_{assignment.name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cases = getattr(module, "CASES", None)
    if not isinstance(cases, AssignmentCases) or cases.assignment != assignment.name:
        raise ValueError(f"{path} must define CASES = AssignmentCases({assignment.name!r}, ...)")
    return cases


def graded_functions(stub_from: int) -> list[tuple[str, str, Assignment]]:
    """``(module, function, assignment)`` of every library function graded in notebook ``stub_from``
    or later (``("flowlab.paths", "interpolate", Assignment("01_flow_matching"))``): what a student
    of notebook ``stub_from`` finds stubbed."""
    found = []
    for assignment in assignments():
        if assignment.number >= stub_from:
            for function in load_cases(assignment).functions:
                module, _, name = function.library.partition(":")
                found.append((module, name, assignment))
    return found
