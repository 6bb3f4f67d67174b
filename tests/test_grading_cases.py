"""Every assignment's test cases: calibrated tolerances, consistent notebooks, references up to date.

- the library's reference implementation passes every case in float32 and float64, on the CPU and
  (where there is one) on the GPU with TF32 on and off;
- the library changes none of its inputs and never touches the global random stream;
- every plausible wrong answer misses every case of its function by >= 100x the tolerance (unless
  the case declares itself blind to it);
- every wrong answer is diagnosed with its own hint in some case and never with another's;
- a float64 case computed in float32 fails with the float32 hint;
- the solution in the source notebook passes every case (run here, in-process, without a kernel);
- the references on disk are what ``flowlab references`` would write now;
- every hidden case is scored by a test cell of the source notebook, and every test cell scores some
  (manually graded answer cells are people's: ``flowlab_grader.answers``).
"""
import copy
import re

import nbformat
import numpy as np
import pytest
import torch

from flowlab_grader.answers import is_answer_cell, is_test_cell
from flowlab_grader.cases import CALIBRATION_FACTOR, load_cases
from flowlab.runtime.codec import cast_inputs
from flowlab.runtime.compare import FLOAT32_HINT
from flowlab_grader.course import assignments
from flowlab.runtime.hidden import measure_case
from flowlab.runtime.record import Output, Record, describe
from flowlab.runtime.reference_set import ReferenceSet
from flowlab.runtime.side_effects import Watch
from flowlab_grader.references import build
from flowlab_grader.scoring import CaseResult, judge

ASSIGNMENTS = assignments()
CASES = {a.name: load_cases(a) for a in ASSIGNMENTS}
REFERENCES = {(a.name, public): ReferenceSet(*build(CASES[a.name], public)) for a in ASSIGNMENTS for public in (False, True)}
ALL = [(name, case) for name, cases in CASES.items() for case in cases.cases]
IDS = [case.key for _, case in ALL]


def _references(name, case) -> ReferenceSet:
    return REFERENCES[(name, case.public)]


def record_of(name, case, function, dtype=None, device="cpu") -> Record:
    """What the hidden test records for ``function`` on ``case`` (inputs cast to dtype/device), in-process."""
    references = _references(name, case)
    watch = Watch(lambda: cast_inputs(references.make_inputs(case.key), dtype, device))
    produced = measure_case(function, watch, references.case(case.key))
    return Record(case.key, "ok", outputs={key: Output(*describe(value)) for key, value in produced.items()},
                  changed=watch.changed(), global_random=watch.used_global_random)


def evaluate(name, case, function, dtype=None, device="cpu", record=None):
    """The verdict of ``case``'s check on ``function``'s values (of ``record`` if given)."""
    references = _references(name, case)
    record = record or record_of(name, case, function, dtype, device)
    expect = references.case(case.key)["expect"]
    if dtype is not None or device != "cpu":      # judge the values only
        expect = {key: {k: v for k, v in item.items() if k in ("type", "shape")} for key, item in expect.items()}
    return references.check(case.key).evaluate(record.outputs, references.expected(case.key), expect)


def graded(name, case, function) -> CaseResult:
    """What grading says of ``function`` on ``case``: pass or fail, the message and the hint."""
    try:
        record = record_of(name, case, function)
    except Exception as error:      # recorded as an error in grading: a failed case with no hint
        record = Record(case.key, "error", f"{type(error).__name__}: {error}")
    return judge(_references(name, case), case.key, record)


def test_there_is_an_assignment():
    assert ASSIGNMENTS and all(CASES[a.name].hidden() and CASES[a.name].public() for a in ASSIGNMENTS)


@pytest.mark.parametrize("name, case", ALL, ids=IDS)
@pytest.mark.parametrize("dtype", [None, torch.float64], ids=["as_given", "float64"])
def test_reference_passes(name, case, dtype, device):
    """On the CPU with the inputs as stored (float32 mostly) and in float64; on a GPU both, each with
    TF32 matrix multiplies off and on."""
    reference = CASES[name].function(case.function).reference()
    if device.type == "cpu":
        record = record_of(name, case, reference, dtype)
        verdict = evaluate(name, case, reference, dtype, record=record)
        assert verdict.passed and verdict.ratio <= 0.5, verdict
        allowed = set(CASES[name].function(case.function).may_change)   # a training step changes its model
        assert set(record.changed) <= allowed and not record.global_random, "the library must have no side effects"
        return
    previous = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        for tf32 in (False, True):
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
            verdict = evaluate(name, case, reference, dtype, device=device)
            assert verdict.passed, f"TF32 {'on' if tf32 else 'off'}: {verdict}"
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = previous


WRONG = [(name, case, variant) for name, case in ALL
         for variant, wrong in CASES[name].function(case.function).wrong.items()
         if variant not in case.blind_to and wrong.by == "values"]


@pytest.mark.parametrize("name, case, variant", WRONG, ids=[f"{c.key}-{v}" for _, c, v in WRONG])
def test_wrong_answers_miss_by_far(name, case, variant):
    wrong = CASES[name].function(case.function).wrong[variant].function
    verdict = evaluate(name, case, wrong)
    assert not verdict.passed and verdict.ratio >= CALIBRATION_FACTOR, \
        f"{variant} misses {case.key} by only {verdict.ratio:.3g}x the tolerance"


def test_every_wrong_answer_is_caught_somewhere():
    for name, cases in CASES.items():
        for function in cases.functions:
            for variant in function.wrong:
                assert any(c.function == function.name and variant not in c.blind_to for c in cases.hidden()), variant


VARIANTS = [(name, function, variant) for name, cases in CASES.items() for function in cases.functions
            for variant in function.wrong]


@pytest.mark.parametrize("name, function, variant", VARIANTS, ids=[f"{f.name}-{v}" for _, f, v in VARIANTS])
def test_each_wrong_answer_gets_its_own_hint_and_no_other(name, function, variant):
    """Run the mistake through every case of its function as grading would: wherever it fails, the
    hint is its own or none (never another mistake's), and some hidden case names it."""
    wrong = function.wrong[variant]
    named = []
    for case in CASES[name].cases:
        if case.function != function.name:
            continue
        result = graded(name, case, wrong.function)
        if not result.passed:
            assert result.hint in ("", wrong.message), f"{case.key}: {variant} is told {result.hint!r}"
            if not case.public and wrong.message in result.message:
                named.append(case.key)
    assert named, f"no hidden case tells {variant} apart from the other mistakes"


def in_float32(function):
    """``function`` computed in float32 on float64 inputs, its results cast back to float64 (a
    student's ``torch.zeros(n)`` or ``.float()`` along the way)."""
    def cast(value, dtype):
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            return value.to(dtype)
        return copy.deepcopy(value).to(dtype) if isinstance(value, torch.nn.Module) else value

    def computed(*args, **kwargs):
        result = function(*(cast(a, torch.float32) for a in args), **{k: cast(v, torch.float32) for k, v in kwargs.items()})
        if callable(result) and not isinstance(result, torch.Tensor):       # a returned velocity
            return lambda x, t: cast(result(cast(x, torch.float32), cast(t, torch.float32)), torch.float64)
        return tuple(cast(v, torch.float64) for v in result) if isinstance(result, tuple) else cast(result, torch.float64)
    return computed


FLOAT64 = [(name, case) for name, case in ALL
           if all(item.get("dtype") == "torch.float64" for item in _references(name, case).case(case.key)["expect"].values())]


@pytest.mark.parametrize("name, case", FLOAT64, ids=[case.key for _, case in FLOAT64])
def test_float64_results_computed_in_float32_are_told_so(name, case):
    result = graded(name, case, in_float32(CASES[name].function(case.function).reference()))
    assert result.passed or result.hint == FLOAT32_HINT, result.message


def test_some_float64_case_fails_in_float32():
    assert sum(not graded(name, case, in_float32(CASES[name].function(case.function).reference())).passed
               for name, case in FLOAT64) >= len(ASSIGNMENTS)


def solution_namespace(assignment, mutation=None) -> dict:
    """The source notebook's solution cells, executed in order (markers are comments), with
    ``mutation`` applied to its cell."""
    namespace = {"torch": torch}
    for cell in nbformat.read(assignment.source_notebook, as_version=4).cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("solution") and not is_answer_cell(cell):
            text = cell.source
            if mutation is not None and meta["grade_id"] == mutation.cell:
                assert text.count(mutation.old) == 1, f"{mutation.name}: {mutation.old!r} must occur once"
                text = text.replace(mutation.old, mutation.new)
            exec(compile(text, f"<{cell.id}>", "exec"), namespace)
    return namespace


MUTATIONS = [(a, m) for a in ASSIGNMENTS for m in CASES[a.name].mutations]


def test_every_assignment_has_two_wrong_submissions():
    assert all(len(CASES[a.name].mutations) >= 2 for a in ASSIGNMENTS)


@pytest.mark.parametrize("assignment, mutation", MUTATIONS, ids=[m.name for _, m in MUTATIONS])
def test_a_wrong_submission_fails_its_case_with_its_hint(assignment, mutation):
    """The same judgement as grading (without a kernel): the end-to-end test then checks it for real."""
    namespace = solution_namespace(assignment, mutation)
    case = next(c for c in CASES[assignment.name].cases if c.key == mutation.fails)
    result = graded(assignment.name, case, namespace[case.function])
    assert not result.passed and mutation.hint in result.message, result.message


@pytest.mark.parametrize("assignment", ASSIGNMENTS, ids=[a.name for a in ASSIGNMENTS])
def test_the_notebook_solution_passes_every_case(assignment):
    namespace = solution_namespace(assignment)
    for case in CASES[assignment.name].cases:
        result = graded(assignment.name, case, namespace[case.function])
        assert result.passed, f"{case.key}: {result.message}"


@pytest.mark.parametrize("assignment", ASSIGNMENTS, ids=[a.name for a in ASSIGNMENTS])
@pytest.mark.parametrize("public", [False, True], ids=["hidden", "public"])
def test_references_on_disk_are_up_to_date(assignment, public):
    on_disk = ReferenceSet.load(assignment.public_file if public else assignment.references_file)
    fresh = REFERENCES[(assignment.name, public)]
    assert sorted(on_disk.arrays) == sorted(fresh.arrays), "run `flowlab references`"
    for key, array in fresh.arrays.items():
        # Equal up to float64 rounding: another CPU or torch build may round a tanh or an exp differently.
        np.testing.assert_allclose(on_disk.arrays[key], array, rtol=1e-12, atol=1e-14,
                                   err_msg=f"{key}: run `flowlab references`")
    strip = lambda meta: {k: v for k, v in meta.items() if k != "versions"}
    assert strip(on_disk.meta) == strip(fresh.meta), "run `flowlab references`"
    assert on_disk.meta["dtype"] == "float64" and on_disk.meta["versions"]["torch"]


@pytest.mark.parametrize("assignment", ASSIGNMENTS, ids=[a.name for a in ASSIGNMENTS])
def test_grade_cells_and_cases_match(assignment):
    source = nbformat.read(assignment.source_notebook, as_version=4)
    grade_cells = {cell.metadata["nbgrader"]["grade_id"]: cell for cell in source.cells if is_test_cell(cell)}
    cases = CASES[assignment.name]
    assert set(cases.cells()) == set(grade_cells), "every test cell scores hidden cases, and only test cells do"
    for grade_id, cell in grade_cells.items():
        assert cell.metadata["nbgrader"]["points"] > 0
        called = set(re.findall(r'hidden\.run\("([^"]+)", "([^"]+)"', cell.source))
        tested = {(assignment.name, case.function) for case in cases.hidden() if case.cell == grade_id}
        assert called == tested, f"{grade_id} must call hidden.run for exactly the functions its cases test"
