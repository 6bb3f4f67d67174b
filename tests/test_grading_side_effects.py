"""What grading sees besides the values: inputs changed in place, the global random stream, and
hints that name a mistake only when the output says which one.

From the watch (``flowlab.runtime.side_effects``) through the record to the host's verdict
(``flowlab_grader.scoring``), with the real hidden test of notebook 04's ``label_dropout``.
"""
import os

import numpy as np
import pytest
import torch

from flowlab.runtime import compare, hidden
from flowlab.runtime.codec import save_bundle
from flowlab.runtime.fixtures import AffineVelocity
from flowlab.runtime.record import Output, describe, open_folder, read_record, write_record
from flowlab.runtime.reference_set import ReferenceSet
from flowlab.runtime.side_effects import GLOBAL_RANDOM_HINT, Watch, findings, in_place_message
from flowlab_grader.cases import load_cases
from flowlab_grader.course import assignments
from flowlab_grader.references import build
from flowlab_grader.scoring import score_cells

EXPECT64 = {"value": {"type": "tensor", "dtype": "torch.float64", "shape": [3, 2], "device": "cpu"}}


def watched(function, inputs):
    """``(watch, result)`` of ``function(**inputs())`` called as a hidden test calls it."""
    watch = Watch(inputs)
    with watch.random_stream():
        result = function(**watch.make_inputs())
    return watch, result


# ---- the watch ---------------------------------------------------------------------------------

def test_the_watch_names_inputs_changed_in_place_and_only_those():
    def overwrite(y, x, model, generator):
        y[0] = 7
        with torch.no_grad():
            model.scale.mul_(2)
        torch.rand(1, generator=generator)      # a generator is meant to change
        return x + 1
    inputs = lambda: {"y": torch.arange(3), "x": torch.ones(2), "model": AffineVelocity(torch.ones(2), torch.ones(2)),
                      "generator": torch.Generator().manual_seed(0)}
    watch, _ = watched(overwrite, inputs)
    assert watch.changed() == ["y", "model"] and not watch.used_global_random
    watch, _ = watched(lambda y, x, model, generator: x * 2, inputs)
    assert watch.changed() == []


@pytest.mark.parametrize("body", [
    lambda: torch.manual_seed(0),                    # re-seeding alone, even to the state the caller had
    lambda: torch.randn(3),                          # a draw without generator=
    lambda: torch.nn.functional.dropout(torch.ones(4), 0.5),
], ids=["manual_seed", "randn", "dropout"])
def test_the_watch_sees_the_global_stream_used_and_gives_the_caller_its_own_back(body):
    torch.manual_seed(0)
    before = torch.get_rng_state()
    watch, _ = watched(lambda: body(), dict)
    assert watch.used_global_random
    assert torch.equal(torch.get_rng_state(), before), "the notebook's own stream must be as it was"


def test_drawing_from_the_given_generator_is_not_the_global_stream():
    watch, _ = watched(lambda generator: torch.randn(3, generator=generator),
                       lambda: {"generator": torch.Generator().manual_seed(1)})
    assert not watch.used_global_random


def test_findings_fail_what_a_function_may_not_do_and_allow_what_it_may():
    problems, hint = findings("label_dropout", ["y"], True, {})
    assert problems == [in_place_message("label_dropout", ["y"])] and hint == GLOBAL_RANDOM_HINT
    assert "label_dropout changed its argument y in place; return a new tensor" in problems[0]
    assert findings("step", ["x"], True, {"may_change": ["x"], "may_use_global_random": True}) == ([], None)
    assert "arguments x and y" in in_place_message("f", ["x", "y"])


# ---- records carry what the watch saw, and are read without trusting them ------------------------

def test_effects_round_trip_through_a_record(tmp_path):
    write_record(tmp_path, "f/case", "ok", {"value": torch.ones(2)}, effects={"changed": ["y"], "global_random": True})
    descriptor = open_folder(tmp_path)
    try:
        record = read_record(descriptor, "f/case")
    finally:
        os.close(descriptor)
    assert record.status == "ok" and record.changed == ["y"] and record.global_random


@pytest.mark.parametrize("effects", [{"changed": ["<script>"]}, {"changed": "y"}, {"global_random": "yes"},
                                     {"changed": ["y"] * 17}, []], ids=["markup", "string", "not_bool", "long", "list"])
def test_forged_effects_make_the_record_invalid(tmp_path, effects):
    write_record(tmp_path, "f/case", "ok", {"value": torch.ones(2)}, effects=effects)
    descriptor = open_folder(tmp_path)
    try:
        assert read_record(descriptor, "f/case").status == "invalid"
    finally:
        os.close(descriptor)


# ---- from the hidden test cell to the feedback --------------------------------------------------

DROPOUT = "04_classifier_free_guidance"


@pytest.fixture(scope="module")
def dropout_references():
    assignment = next(a for a in assignments() if a.name == DROPOUT)
    return ReferenceSet(*build(load_cases(assignment), public=False))


def grade_dropout(tmp_path, monkeypatch, references, label_dropout):
    """Run the hidden test of label_dropout on ``label_dropout`` as the sandbox does, then score."""
    save_bundle(tmp_path / "inputs" / DROPOUT, *references.inputs_only())
    monkeypatch.setenv("FLOWLAB_INPUTS_DIR", str(tmp_path / "inputs"))
    monkeypatch.setenv("FLOWLAB_RECORD_DIR", str(tmp_path / "records"))
    hidden.run(DROPOUT, "label_dropout", {"label_dropout": label_dropout})
    every_cell = {references.case(key)["cell"]: 4.0 for key in references.keys()}
    cells = score_cells(references, every_cell, tmp_path / "records")
    return next(cell for cell in cells if cell.cell == "hidden_tests_label_dropout").cases


def _drop(y, p, generator):
    return torch.rand(y.shape, generator=generator) < p


def test_a_dropout_that_writes_into_its_input_loses_its_points(tmp_path, monkeypatch, dropout_references):
    def in_place(y, p, null_label, generator=None):
        y[_drop(y, p, generator)] = null_label
        return y
    results = grade_dropout(tmp_path, monkeypatch, dropout_references, in_place)
    failed = [case for case in results if not case.passed]
    assert failed and all("label_dropout changed its argument y in place; return a new tensor" in case.message
                          for case in failed)
    assert {case.key for case in results if case.passed} == {"label_dropout/p_0"}   # nothing dropped, nothing changed


def test_a_dropout_that_seeds_the_global_stream_gets_the_generator_hint(tmp_path, monkeypatch, dropout_references):
    def seeded(y, p, null_label, generator=None):
        torch.manual_seed(0)
        return torch.where(torch.rand(y.shape) < p, torch.full_like(y, null_label), y)
    results = grade_dropout(tmp_path, monkeypatch, dropout_references, seeded)
    assert all(not case.passed and case.hint == GLOBAL_RANDOM_HINT for case in results)


def test_the_right_dropout_passes_with_the_watch_on(tmp_path, monkeypatch, dropout_references):
    def right(y, p, null_label, generator=None):
        return torch.where(_drop(y, p, generator), torch.full_like(y, null_label), y)
    assert all(case.passed for case in grade_dropout(tmp_path, monkeypatch, dropout_references, right))


# ---- hints: only when the output says which mistake -----------------------------------------------

def _output(values) -> dict:
    return {"value": Output(*describe(torch.as_tensor(values)))}


def test_an_output_that_matches_two_known_mistakes_gets_no_hint():
    wrong = {"a": ("mistake a", {"value": np.ones((3, 2))}), "b": ("mistake b", {"value": np.ones((3, 2))}),
             "c": ("mistake c", {"value": np.zeros((3, 2))})}
    check = compare.AllClose(1e-5, 1e-6)
    expect = {"value": {**EXPECT64["value"], "dtype": "torch.float32"}}
    assert compare.diagnose(check, _output(torch.ones(3, 2)), wrong, expect) is None
    assert compare.diagnose(check, _output(torch.zeros(3, 2)), wrong, expect) == "mistake c"


def test_a_mistake_of_another_shape_is_still_recognised():
    wrong = {"not_upsampled": ("you did not upsample", {"value": np.ones((3, 1))})}
    got = _output(torch.ones(3, 1, dtype=torch.float64))
    assert compare.diagnose(compare.AllClose(1e-5, 1e-6), got, wrong, EXPECT64) == "you did not upsample"


@pytest.mark.parametrize("error, hinted", [(3e-7, True), (1e-2, False)])
def test_float64_results_computed_in_float32_are_told_so(error, hinted):
    expected = {"value": np.linspace(-2, 3, 6).reshape(3, 2)}
    got = _output(torch.from_numpy(expected["value"] * (1 + error)))
    check = compare.AllClose(1e-10, 1e-12)
    assert not check.evaluate(got, expected, EXPECT64).passed
    hint = compare.diagnose(check, got, {}, EXPECT64, expected)
    assert (hint == compare.FLOAT32_HINT) == hinted and (hint is None) != hinted
    assert "did you compute in float32?" in compare.FLOAT32_HINT


def test_float32_cases_get_no_float32_hint():
    expected = {"value": np.ones((3, 2))}
    expect = {"value": {**EXPECT64["value"], "dtype": "torch.float32"}}
    assert compare.diagnose(compare.AllClose(1e-10, 1e-12), _output(torch.ones(3, 2) * (1 + 1e-6)), {}, expect,
                            expected) is None


def test_labels_that_differ_are_counted():
    expected = {"value": np.arange(64) % 10}
    got = np.arange(64) % 10
    got[[3, 9, 40]] = 10
    expect = {"value": {"type": "tensor", "dtype": "torch.int64", "shape": [64], "device": "cpu"}}
    verdict = compare.AllClose(0.0, 1e-6).evaluate(_output(torch.from_numpy(got)), expected, expect)
    assert not verdict.passed and verdict.message.startswith("3 of 64 entries of the result differ")


def test_a_result_deaf_to_its_generator_fails_the_seeded_check():
    check = compare.SeededMean(6.0)
    reference = {"mean": np.array(2.0), "sd": np.array(0.1)}
    scalar = {"type": "tensor", "dtype": "torch.float32", "shape": [], "device": "cpu"}
    expect = {"first": scalar, "second": scalar, "other": scalar}
    outputs = lambda a, b, c: {name: Output(*describe(torch.tensor(value)))
                               for name, value in zip(("first", "second", "other"), (a, b, c))}
    assert check.evaluate(outputs(2.1, 2.1, 1.95), reference, expect).passed
    assert check.evaluate(outputs(2.1, 2.1, 2.1), reference, expect).message == compare.IGNORES_GENERATOR
