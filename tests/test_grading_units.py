"""Units of the grader: codec, records (read without trusting), checks, stubs, overwrite, submissions,
scoring and feedback. No kernels here; see test_grading_end_to_end.py for those."""
import copy
import json
import os
import shutil
import zipfile
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

from flowlab.runtime import codec, compare
from flowlab.runtime.fixtures import AffineVelocity, ConditionedAffineVelocity, ElementwiseClassifier, TanhVelocity
from flowlab.runtime.measures import MEASURES, MeasureError
from flowlab.runtime.record import Output, describe, open_folder, read_record, record_call, write_record
from flowlab_grader import feedback, overwrite, stubs, submissions
from flowlab_grader.course import Assignment, course_dir
from flowlab_grader.release import build_gradebook


# ---- codec and fixtures ---------------------------------------------------------------------------

def test_inputs_round_trip_keeps_order_values_and_fresh_generators():
    model = AffineVelocity(torch.ones(2), torch.zeros(2), torch.randn(3, 2))
    inputs = {"model": model, "x1": torch.randn(4, 2), "t": 0.3, "y": torch.tensor([0, 1, 2, 0]),
              "generator": codec.GeneratorSeed(5), "flag": None}
    arrays, spec = codec.encode_inputs(inputs, "case|input|")
    assert [item["name"] for item in spec] == list(inputs)
    first, second = (codec.decode_inputs(arrays, json.loads(json.dumps(spec)), "case|input|") for _ in range(2))
    assert torch.equal(first["x1"], inputs["x1"]) and first["t"] == 0.3 and first["flag"] is None
    assert torch.equal(first["model"](first["x1"], 0.5, y=first["y"]), model(inputs["x1"], 0.5, y=inputs["y"]))
    assert torch.equal(torch.rand(3, generator=first["generator"]), torch.rand(3, generator=second["generator"]))


def test_encode_rejects_what_cannot_be_plain_arrays():
    with pytest.raises(TypeError, match="cannot encode input 'f'"):
        codec.encode_inputs({"f": lambda x: x}, "")


def test_affine_velocity_rejects_a_reshaped_time():
    model = AffineVelocity(torch.ones(2), torch.ones(2))
    with pytest.raises(ValueError, match="t must be a float"):
        model(torch.zeros(3, 2), torch.zeros(3, 1))


def test_grad_measure_explains_a_detached_loss():
    model = AffineVelocity(torch.ones(2), torch.ones(2))
    detached = lambda model, x1: model(x1, 0.5).pow(2).sum().detach()
    with pytest.raises(MeasureError, match="did you call .item"):
        MEASURES["grad"](detached, lambda: {"model": model, "x1": torch.ones(2, 2)}, 2)


# ---- records: written in the sandbox, read without trusting -----------------------------------------

def test_fixtures_round_trip_through_plain_arrays():
    generator = torch.Generator().manual_seed(0)
    draw = lambda *shape: torch.randn(*shape, generator=generator)
    classifier = ElementwiseClassifier(draw(3, 4), draw(3), draw(3))
    conditioned = ConditionedAffineVelocity(draw(1, 2, 2), draw(1, 2, 2), draw(1, 2, 2), draw(1, 2, 2))
    x, t = draw(5, 1, 2, 2), torch.rand(5, generator=generator)
    arrays, spec = codec.encode_inputs({"classifier": classifier, "model": conditioned}, "k|")
    decoded = codec.decode_inputs(arrays, spec, "k|")
    assert torch.equal(decoded["classifier"](x, t), classifier(x, t))
    assert torch.equal(decoded["model"](x, t, x, torch.tensor([True, False, True, True, False])),
                      conditioned(x, t, x, torch.tensor([True, False, True, True, False])))


def test_elementwise_classifier_matches_a_linear_layer_and_its_closed_form_gradient():
    generator = torch.Generator().manual_seed(1)
    weight, time_weight, bias = torch.randn(3, 4, generator=generator, dtype=torch.float64), \
        torch.randn(3, generator=generator, dtype=torch.float64), torch.randn(3, generator=generator, dtype=torch.float64)
    classifier = ElementwiseClassifier(weight, time_weight, bias)
    x = torch.randn(6, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    t = torch.rand(6, generator=generator, dtype=torch.float64)
    logits = classifier(x, t)
    assert torch.allclose(logits, x @ weight.T + t[:, None] * time_weight + bias)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    grad, = torch.autograd.grad(logits.log_softmax(-1)[torch.arange(6), y].sum(), x)
    closed_form = weight[y] - logits.softmax(-1).detach() @ weight
    assert torch.allclose(grad, closed_form)


def test_conditioned_velocity_switches_between_condition_and_null():
    ones = torch.ones(2)
    model = ConditionedAffineVelocity(0 * ones, 0 * ones, 2 * ones, -ones)
    x, cond = torch.zeros(2, 2), torch.full((2, 2), 3.0)
    assert torch.equal(model(x, 0.5, cond), torch.full((2, 2), 6.0))
    assert torch.equal(model(x, 0.5, None), torch.full((2, 2), -1.0))
    assert model(x, 0.5, cond, torch.tensor([True, False])).tolist() == [[6.0, 6.0], [-1.0, -1.0]]


def test_tanh_velocity_round_trips_and_tells_heun_from_midpoint():
    generator = torch.Generator().manual_seed(2)
    model = TanhVelocity(torch.randn(1, 2, 2, generator=generator), torch.randn(1, 2, 2, generator=generator))
    x, t = torch.randn(3, 1, 2, 2, generator=generator), torch.tensor([0.0, 0.5, 1.0])
    assert torch.equal(model(x, t), model.scale * torch.tanh(x) + t.reshape(3, 1, 1, 1) * model.shift)
    arrays, spec = codec.encode_inputs({"model": model}, "k|")
    assert torch.equal(codec.decode_inputs(arrays, spec, "k|")["model"](x, 0.25), model(x, 0.25))
    from flowlab.solvers import heun_step, midpoint_step
    with torch.no_grad():
        assert not torch.allclose(heun_step(model, x, 0.2, 0.7), midpoint_step(model, x, 0.2, 0.7), atol=1e-4)


def test_returned_velocity_measure_evaluates_the_returned_function_at_x_and_t():
    def guidance(velocity, w):
        return lambda x, t: w * velocity(x, t)

    inputs = lambda: {"velocity": lambda x, t: x * t, "w": 2.0, "at_x": torch.ones(2), "at_t": torch.tensor([0.25, 0.5])}
    assert MEASURES["returned_velocity"](guidance, inputs, 1)["value"].tolist() == [0.5, 1.0]
    with pytest.raises(MeasureError, match="must return a velocity function"):
        MEASURES["returned_velocity"](lambda velocity, w: velocity, lambda: {**inputs(), "velocity": 3}, 1)


def test_items_measure_splits_a_tuple_and_names_its_parts():
    outputs = MEASURES["items"](lambda a: (a, 2 * a), lambda: {"a": torch.ones(1)}, 1)
    assert list(outputs) == ["item0", "item1"] and outputs["item1"].item() == 2.0
    with pytest.raises(MeasureError, match="must return a tuple"):
        MEASURES["items"](lambda a: a, lambda: {"a": torch.ones(1)}, 1)
    assert compare.label("item1") == "returned value number 2"


def test_record_call_keeps_outputs_and_swallows_prints_and_warnings(tmp_path):
    def noisy():
        import warnings
        print("x" * 10_000)
        warnings.warn("careful")
        return {"value": torch.arange(6.0).reshape(2, 3)}

    assert record_call(tmp_path, "f/case", noisy, timeout=5) == "ok"
    folder = open_folder(tmp_path)
    record = read_record(folder, "f/case")
    os.close(folder)
    assert record.status == "ok"
    assert record.outputs["value"].info == {"type": "tensor", "dtype": "torch.float32", "shape": [2, 3],
                                            "device": "cpu", "requires_grad": False, "array": True}
    np.testing.assert_array_equal(record.outputs["value"].values, np.arange(6.0).reshape(2, 3))


@pytest.mark.parametrize("body, status, message", [
    ("raise ValueError('bad shape')", "error", "ValueError: bad shape"),
    ("import sys; sys.exit(3)", "error", "SystemExit"),
    ("while True: pass", "timeout", "longer than 0.2 s"),
])
def test_record_call_records_errors_exits_and_timeouts(tmp_path, body, status, message):
    def run():
        exec(body, {})

    assert record_call(tmp_path, "f/case", run, timeout=0.2) == status
    folder = open_folder(tmp_path)
    assert message in read_record(folder, "f/case").error
    os.close(folder)


def test_timeout_is_not_swallowed_by_except_exception(tmp_path):
    def stubborn():
        while True:
            try:
                sum(range(1000))
            except Exception:
                pass

    assert record_call(tmp_path, "f/case", stubborn, timeout=0.2) == "timeout"


def test_read_record_refuses_symlinks_garbage_and_huge_files(tmp_path):
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"status": "ok", "outputs": {}}))
    records = tmp_path / "records"
    records.mkdir()
    (records / "f__link.json").symlink_to(secret)
    (records / "f__garbage.json").write_text("{not json")
    (records / "f__huge.json").write_bytes(b" " * (100 * 1024))
    write_record(records, "f/array_link", "ok", {"value": torch.ones(2)})
    (records / "f__array_link.value.npy").unlink()
    (records / "f__array_link.value.npy").symlink_to(secret)
    folder = open_folder(records)
    try:
        assert read_record(folder, "f/link").status == "invalid"
        assert read_record(folder, "f/garbage").status == "invalid"
        assert read_record(folder, "f/huge").status == "invalid"
        assert read_record(folder, "f/array_link").status == "invalid"
        assert read_record(folder, "f/absent").status == "absent"
    finally:
        os.close(folder)


def test_read_record_refuses_pickled_arrays(tmp_path):
    write_record(tmp_path, "f/obj", "ok", {"value": torch.ones(2)})
    with open(tmp_path / "f__obj.value.npy", "wb") as handle:
        np.save(handle, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    folder = open_folder(tmp_path)
    assert read_record(folder, "f/obj").status == "invalid"
    os.close(folder)


# ---- checks ----------------------------------------------------------------------------------------

EXPECT = {"value": {"type": "tensor", "dtype": "torch.float32", "shape": [3, 2], "device": "cpu"}}


@pytest.mark.parametrize("value, message", [
    (np.zeros((3, 2), np.float32), "is a ndarray; expected a torch.Tensor"),
    (torch.zeros(3, 1), "has shape (3, 1); expected (3, 2)"),
    (torch.zeros(3, 2, dtype=torch.float64), "has dtype torch.float64; expected torch.float32"),
    (torch.full((3, 2), float("nan")), "contains NaN or infinity"),
    (torch.ones(3, 2), "is off by up to 1"),
])
def test_allclose_names_what_is_wrong(value, message):
    verdict = compare.AllClose(1e-5, 1e-6).evaluate({"value": Output(*describe(value))},
                                                   {"value": np.zeros((3, 2))}, EXPECT)
    assert not verdict.passed and message in verdict.message


def test_allclose_ratio_is_the_error_in_units_of_the_tolerance():
    check = compare.AllClose(rtol=0.0, atol=1e-3)
    got = Output(*describe(torch.full((3, 2), 0.05)))
    assert check.evaluate({"value": got}, {"value": np.zeros((3, 2))}, EXPECT).ratio == pytest.approx(50, rel=1e-5)


def test_seeded_mean_demands_reproducibility_and_closeness():
    check = compare.SeededMean(n_sigma=6)
    expect = {name: {"type": "tensor", "shape": []} for name in ("first", "second")}
    reference = {"mean": np.array(2.0), "sd": np.array(0.1)}
    out = lambda a, b: {"first": Output(*describe(torch.tensor(a))), "second": Output(*describe(torch.tensor(b)))}
    assert check.evaluate(out(2.1, 2.1), reference, expect).passed
    assert "different results" in check.evaluate(out(2.1, 2.2), reference, expect).message
    assert "standard errors" in check.evaluate(out(4.0, 4.0), reference, expect).message


def test_diagnose_names_the_matching_mistake():
    got = {"value": Output(*describe(torch.ones(3, 2)))}
    wrong = {"sign": ("you flipped the sign", {"value": np.ones((3, 2))}),
             "other": ("something else", {"value": np.full((3, 2), 7.0)})}
    assert compare.diagnose(compare.AllClose(1e-5, 1e-6), got, wrong, EXPECT) == "you flipped the sign"



def test_a_wrong_answer_that_is_nan_matches_no_output():
    got = {"value": Output(*describe(torch.ones(3, 2)))}
    wrong = {"divides_by_zero": ("you divided by t = 0", {"value": np.full((3, 2), np.nan)})}
    assert compare.diagnose(compare.AllClose(1e-5, 1e-6), got, wrong, EXPECT) is None
    assert compare.AllClose(1e-5, 1e-6).error_ratio(np.ones(2), np.array([1.0, np.nan])) == np.inf


def test_a_wrong_answer_of_another_shape_is_no_diagnosis_and_no_crash():
    got = {"value": Output(*describe(torch.ones(3, 2)))}
    wrong = {"no_upsampling": ("you forgot to upsample", {"value": np.ones((3, 1))})}
    assert compare.diagnose(compare.AllClose(1e-5, 1e-6), got, wrong, EXPECT) is None

# ---- stubs -----------------------------------------------------------------------------------------

SOURCE = '''import torch


def kept(x):
    return x + 1


def secret(x, t):
    """Formula: y = (1 - t) x."""
    # a comment that goes
    y = (1 - t) * x
    return y


def after():
    return 2
'''


POINTER = "Implemented by you in notebook 01_a, section 2 (secret)."


def test_stub_replaces_the_docstring_and_the_body_and_keeps_the_rest():
    stubbed = stubs.stub_function(SOURCE, "secret", "implemented in notebook 01", POINTER)
    namespace = {}
    exec(stubbed, namespace)
    assert namespace["kept"](1) == 2 and namespace["after"]() == 2
    assert namespace["secret"].__doc__ == POINTER and "def secret(x, t):" in stubbed
    with pytest.raises(NotImplementedError, match="implemented in notebook 01"):
        namespace["secret"](1, 0.5)
    assert "(1 - t) * x" not in stubbed and "a comment that goes" not in stubbed and "Formula" not in stubbed
    assert stubs.function_body(SOURCE, "secret").strip().startswith("# a comment")
    assert stubs.function_docstring(SOURCE, "secret") == "Formula: y = (1 - t) x."
    assert stubs.docstring_span(SOURCE, "secret") == (9, 9) and stubs.docstring_span(SOURCE, "kept") == (1, 0)


def test_stub_of_a_missing_function_fails_loudly():
    with pytest.raises(ValueError, match="no top-level function 'nope'"):
        stubs.stub_function(SOURCE, "nope", "", POINTER)


# ---- overwrite: nbgrader's OverwriteCells, fed by generate_assignment's gradebook, restores cells ------

def _cell(kind, source, grade_id=None, **flags):
    make = nbformat.v4.new_code_cell if kind == "code" else nbformat.v4.new_markdown_cell
    cell = make(source)
    if grade_id:
        cell.metadata["nbgrader"] = {"grade_id": grade_id, "locked": flags.get("locked", False),
                                     "grade": flags.get("grade", False), "solution": flags.get("solution", False),
                                     "schema_version": 3}
        if flags.get("grade"):
            cell.metadata["nbgrader"]["points"] = 2
    return cell


def _source_notebook():
    return nbformat.v4.new_notebook(cells=[
        _cell("code", "import torch", "setup", locked=True),
        _cell("code", "def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION", "f", solution=True),
        _cell("code", "assert f() == 1", "public", locked=True),
        _cell("code", "# hidden\n### BEGIN HIDDEN TESTS\nrun()\n### END HIDDEN TESTS", "hidden", grade=True, locked=True),
        _cell("code", "explore()"),
    ])


@pytest.fixture(scope="module")
def small_course(tmp_path_factory):
    """A one-notebook course (``01_small``): its gradebook from ``nbgrader generate_assignment``
    and the student version, as grading builds them."""
    root = tmp_path_factory.mktemp("course")
    (root / "autograder" / "source" / "01_small").mkdir(parents=True)
    shutil.copy2(course_dir() / "nbgrader_config.py", root / "autograder" / "nbgrader_config.py")
    nbformat.write(_source_notebook(), root / "autograder" / "source" / "01_small" / "01_small.ipynb")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FLOWLAB_COURSE", str(root / "autograder"))
        url = build_gradebook([Assignment("01_small")], root / "nbgrader")
    student = nbformat.read(root / "nbgrader" / "release" / "01_small.ipynb", as_version=4)
    return url, student


def _graded_sources(small_course, edit):
    url, student = small_course
    submitted = copy.deepcopy(student)
    edit(submitted.cells)
    graded = overwrite.notebook_to_grade(submitted, url, "01_small", "01_small")
    assert len({cell.id for cell in graded.cells}) == len(graded.cells)
    return [cell.source for cell in graded.cells]


def _edit_setup_solution_and_duplicate_hidden(cells):
    cells[0].source = "import os  # edited"
    cells[1].source = "def f():\n    return 2"
    cells.insert(4, copy.deepcopy(cells[3]))
    cells.insert(2, nbformat.v4.new_code_cell("print('mine')"))


def test_overwrite_restores_locked_and_grade_cells_and_keeps_the_students_code(small_course):
    sources = _graded_sources(small_course, _edit_setup_solution_and_duplicate_hidden)
    assert sources[:4] == ["import torch", "def f():\n    return 2", "print('mine')", "assert f() == 1"], \
        "edited setup restored, solution and the student's own cell kept"
    assert sum("BEGIN HIDDEN TESTS" in source for source in sources) == 1, "hidden tests restored, once"


@pytest.mark.parametrize("deleted", [[3], [2, 3], [0]], ids=["hidden", "public_and_hidden", "setup"])
def test_overwrite_puts_deleted_cells_back_after_their_predecessor(small_course, deleted):
    sources = _graded_sources(small_course, lambda cells: [cells.pop(index) for index in sorted(deleted, reverse=True)])
    expected = ["import torch", "def f():", "assert f() == 1", "run()", "explore()"]
    assert len(sources) == len(expected)
    for source, text in zip(sources, expected):
        assert text in source, f"{text!r} expected, got {source!r}"


def test_the_gradebook_holds_solutions_and_stays_private(small_course):
    url, _ = small_course
    folder = Path(url.removeprefix("sqlite:///")).parent
    assert folder.stat().st_mode & 0o077 == 0, "no other user (a sandboxed notebook) may enter"


def test_overwrite_ignores_forged_metadata(small_course):
    def forge(cells):
        cells[3].source = "cheat()"
        cells[3].metadata["nbgrader"].update(solution=True, grade=False, locked=False)
    sources = _graded_sources(small_course, forge)
    assert "cheat()" not in sources and any("run()" in source for source in sources)


@pytest.mark.parametrize("data, message", [
    (b"\xff\xfe garbage", "not UTF-8"), (b"{not json", "not a Jupyter notebook"), (b'{"cells": 3}', "not a Jupyter"),
])
def test_read_submission_explains_garbage(data, message):
    with pytest.raises(ValueError, match=message):
        overwrite.read_submission(data)


# ---- submissions -------------------------------------------------------------------------------------

def _notebook_bytes(text="x = 1"):
    return nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(text)])).encode()


def test_discover_folders_zips_problems_and_links(tmp_path):
    root = tmp_path / "submitted"
    (root / "alice" / "01_a").mkdir(parents=True)
    alice = _notebook_bytes()
    (root / "alice" / "01_a" / "01_a.ipynb").write_bytes(alice)
    (root / "alice" / "01_a" / ".ipynb_checkpoints").mkdir()
    (root / "alice" / "01_a" / ".ipynb_checkpoints" / "01_a-checkpoint.ipynb").write_bytes(b"old")
    (root / "bob" / "01_a").mkdir(parents=True)
    (root / "bob" / "01_a" / "renamed.ipynb").write_bytes(_notebook_bytes())
    (root / "carl" / "01_a").mkdir(parents=True)
    (root / "carl" / "01_a" / "01_a.ipynb").symlink_to(tmp_path / "elsewhere.ipynb")
    (root / "dana" / "99_unknown").mkdir(parents=True)
    with zipfile.ZipFile(root / "erin.zip", "w") as archive:
        archive.writestr("erin/01_a/01_a.ipynb", _notebook_bytes("y = 2"))
    (root / "fred.zip").write_bytes(b"not a zip")
    found = {(s.student, s.assignment): s for s in submissions.discover(tmp_path, ["01_a", "02_b"])}
    assert found[("alice", "01_a")].notebook == alice
    assert found[("bob", "01_a")].notebook is not None
    assert "not a regular file" in found[("carl", "01_a")].problem
    assert found[("dana", "99_unknown")].problem == "unknown assignment"
    assert b"y = 2" in found[("erin", "01_a")].notebook
    assert "unreadable zip" in next(s.problem for s in found.values() if s.student == "fred")
    only = {s.student: s for s in submissions.discover(root, ["01_a", "02_b"], only="02_b")}
    assert set(only) == {"alice", "bob", "carl", "dana", "erin", "fred"}
    assert all(s.problem.startswith("missing") for name, s in only.items() if name != "fred")


# ---- feedback ----------------------------------------------------------------------------------------

def test_feedback_escapes_what_the_student_controls():
    from flowlab_grader.scoring import CaseResult, CellScore

    cells = [CellScore("hidden_f", 2.0, 1.0, [CaseResult("f/a", "a case", True),
                                              CaseResult("f/b", "b case", False, "raised <script>alert(1)</script>")])]
    page = feedback.render("eve<b>", "01_a", "graded", "", cells)
    assert "<script>" not in page and "&lt;script&gt;" in page and "eve&lt;b&gt;" in page
    assert "Score: 1 / 2" in page


def test_a_case_that_cannot_be_compared_fails_alone_with_a_reason():
    from types import SimpleNamespace

    from flowlab_grader.scoring import judge

    class Broken:
        def evaluate(self, outputs, expected, expect):
            raise ValueError("cannot reshape")

    references = SimpleNamespace(case=lambda key: {"about": "a case", "expect": {}}, check=lambda key: Broken(),
                                 expected=lambda key: {}, wrong_answers=lambda key: {})
    record = SimpleNamespace(status="ok", outputs={}, error="")
    result = judge(references, "f/a", record)
    assert not result.passed and "could not be compared" in result.message
