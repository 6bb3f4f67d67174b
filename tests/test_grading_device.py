"""``flowlab grade --device``: hidden cases that also run with their inputs on a GPU.

Where there is no GPU (CI), these tests check what can be checked without one: the choice of
device, what the host makes of GPU records (written here as the sandbox writes them on a GPU:
their outputs say ``"device": "cuda"``), the TF32 tolerance against TF32's rounding bound, the
hints from PyTorch's own error texts, the sandbox's GPU binds and environment, and the hidden
test's GPU pass up to the point where CUDA would start. The GPU pass itself runs only where CUDA
does (the ``device`` fixture adds ``cuda`` there; ``autograder/tools/gpu_check.sh`` runs it).
"""
import json
import os

import numpy as np
import pytest
import torch

from flowlab.runtime import compare, hidden
from flowlab.runtime.codec import save_bundle
from flowlab.runtime.record import DEVICE_UNAVAILABLE, file_stem, write_record
from flowlab.runtime.reference_set import ReferenceSet
from flowlab_grader import allowlist, devices, sandbox
from flowlab_grader.cases import load_cases
from flowlab_grader.course import assignments
from flowlab_grader.references import build
from flowlab_grader.results import fingerprint
from flowlab_grader.scoring import score_cells
from flowlab_grader.submissions import Submission

DROPOUT = "04_classifier_free_guidance"
DROPOUT_CASES = load_cases(next(a for a in assignments() if a.name == DROPOUT))
CELLS = dict.fromkeys(DROPOUT_CASES.cells(), 4.0)
# PyTorch's messages when a call mixes devices (templates found in libtorch; the device names filled in)
MIXED = ("RuntimeError: Expected all tensors to be on the same device, but found at least two devices, cuda:0 and "
         "cpu! (when checking argument for argument other in method wrapper_CUDA__add_Tensor)")
NUMPY = ("TypeError: can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy the tensor to host "
         "memory first.")
GENERATOR = "RuntimeError: Expected a 'cuda' device type for generator but found 'cpu'"
INDICES = "RuntimeError: indices should be either on cpu or on the same device as the indexed tensor (cuda:0)"


@pytest.fixture(scope="module")
def references():
    return ReferenceSet(*build(DROPOUT_CASES, public=False))


def right_dropout(y, p, null_label, generator=None):
    keep = (torch.rand(y.shape, generator=generator) >= p).to(y.device)
    return torch.where(keep, y, torch.full_like(y, null_label))


def cpu_only_dropout(y, p, null_label, generator=None):
    """Right on the CPU; on a GPU its mask stays on the CPU, and ``torch.where`` mixes devices."""
    keep = torch.rand(y.shape, generator=generator) >= p
    return torch.where(keep, y, torch.full_like(y, null_label))


def library_record(folder, references, key, device_name="cpu", transform=lambda value: value, status="ok", error=""):
    """Write case ``key``'s record as the sandbox would after calling the library: ``device_name``
    is what the record says the outputs were on (``"cuda"``: as on a GPU), ``transform`` changes
    the values first (a rounding, a wrong answer)."""
    case = references.case(key)
    function = DROPOUT_CASES.function(case["function"]).reference()
    outputs = None
    if status == "ok":
        produced = hidden.MEASURES[case["measure"]](function, lambda: references.make_inputs(key), case["positional"])
        outputs = {name: transform(value) for name, value in produced.items()}
    write_record(folder, key, status, outputs, error=error, effects={"changed": [], "global_random": False})
    if device_name != "cpu":
        path = folder / f"{file_stem(key)}.json"
        document = json.loads(path.read_text())
        for info in document["outputs"].values():
            if info.get("type") == "tensor":
                info["device"] = device_name
        path.write_text(json.dumps(document))


def cpu_and_gpu_records(tmp_path, references, gpu_record):
    """Every case's CPU record from the library, and its GPU record from ``gpu_record(folder, key)``
    for the cases with tensor inputs; scored with ``device="cuda"``."""
    records = tmp_path / "records"
    for key in references.keys():
        library_record(records, references, key)
        if hidden.runs_on_device(references.case(key)):
            gpu_record(records / "cuda", key)
    return {case.key: case for cell in score_cells(references, CELLS, records, device="cuda") for case in cell.cases}


# ---- choosing the device ----------------------------------------------------------------------------

def test_auto_takes_the_gpu_only_where_there_is_one(monkeypatch):
    monkeypatch.setattr(devices, "cuda_here", lambda: (False, "no GPU in this test"))
    assert devices.choose("auto") == devices.DeviceChoice("auto", "cpu", why="no GPU in this test")
    assert devices.choose("cpu").used == "cpu"
    with pytest.raises(devices.DeviceUnavailable, match="--device cuda: no GPU in this test"):
        devices.choose("cuda")
    monkeypatch.setattr(devices, "cuda_here", lambda: (True, "A Fake GPU"))
    assert devices.choose("auto") == devices.DeviceChoice("auto", "cuda", gpu="A Fake GPU")
    assert devices.choose("cpu").used == "cpu"
    with pytest.raises(ValueError, match="device: expected one of auto, cpu, cuda, got 'gpu'"):
        devices.choose("gpu")


def test_where_cuda_does_not_start_in_a_job_auto_grades_on_the_cpu_and_cuda_refuses(monkeypatch, tmp_path):
    monkeypatch.setattr(sandbox, "device_problem", lambda work, level, limits, device: "the data limit stopped it")
    fallback = devices.confirm_in_jobs(devices.DeviceChoice("auto", "cuda", gpu="G"), tmp_path, "bwrap", sandbox.Limits())
    assert (fallback.used, fallback.why) == ("cpu", "the data limit stopped it")
    with pytest.raises(devices.DeviceUnavailable, match="the data limit stopped it; or grade with --device cpu"):
        devices.confirm_in_jobs(devices.DeviceChoice("cuda", "cuda", gpu="G"), tmp_path, "bwrap", sandbox.Limits())
    monkeypatch.setattr(sandbox, "device_problem", lambda work, level, limits, device: None)
    assert devices.confirm_in_jobs(devices.DeviceChoice("cuda", "cuda", gpu="G"), tmp_path, "bwrap",
                                   sandbox.Limits()).used == "cuda"


def test_the_command_refuses_cuda_without_a_gpu(monkeypatch, tmp_path, capsys):
    from flowlab import cli

    monkeypatch.setattr(devices, "cuda_here", lambda: (False, "PyTorch sees no CUDA GPU here"))
    code = cli.main(["grade", str(tmp_path), "--out", str(tmp_path / "results"), "--device", "cuda"])
    assert code == 2
    assert "--device cuda: PyTorch sees no CUDA GPU here; grade with --device cpu" in capsys.readouterr().err


def test_a_gpu_result_is_never_kept_for_a_cpu_run():
    submission = Submission("ada", DROPOUT, b"{}")
    cpu = fingerprint(submission, "references")
    assert {**cpu, "device": "cuda"} != cpu


# ---- the sandbox: the GPU only when grading on it --------------------------------------------------

@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_the_gpu_devices_are_bound_only_for_the_gpu(monkeypatch, tmp_path, device):
    monkeypatch.setattr(allowlist, "gpu_devices", lambda: ["/dev/nvidia-uvm", "/dev/nvidia0", "/dev/nvidiactl"])
    argv = allowlist.bwrap_argv("bwrap", tmp_path / "box", tmp_path / "bundle", tmp_path / "etc", {}, as_root=False,
                                gpu=device == "cuda")
    bound = [argv[i + 1] for i, option in enumerate(argv) if option == "--dev-bind"]
    assert bound == (["/dev/nvidia-uvm", "/dev/nvidia0", "/dev/nvidiactl"] if device == "cuda" else [])
    assert ("/sys" in argv) == (device == "cuda")
    assert any("/dev/nvidia0" in line for line in allowlist.visible(tmp_path, tmp_path, gpu=device == "cuda")) \
        == (device == "cuda")


def test_the_job_environment_names_the_device(monkeypatch):
    monkeypatch.setenv("LD_LIBRARY_PATH", "/usr/local/nvidia/lib64")
    on_cpu = sandbox.sandbox_environment("/box", "/bundle", sandbox.Limits(), "cpu")
    on_gpu = sandbox.sandbox_environment("/box", "/bundle", sandbox.Limits(), "cuda")
    assert on_cpu["CUDA_VISIBLE_DEVICES"] == "" and "FLOWLAB_DEVICE" not in on_cpu and "LD_LIBRARY_PATH" not in on_cpu
    assert on_gpu["FLOWLAB_DEVICE"] == "cuda" and on_gpu["LD_LIBRARY_PATH"] == "/usr/local/nvidia/lib64"
    assert "CUDA_VISIBLE_DEVICES" not in on_gpu or on_gpu["CUDA_VISIBLE_DEVICES"] == os.environ["CUDA_VISIBLE_DEVICES"]


# ---- what the host makes of GPU records -------------------------------------------------------------

def test_a_case_right_on_the_gpu_passes(tmp_path, references):
    results = cpu_and_gpu_records(tmp_path, references, lambda folder, key: library_record(folder, references, key, "cuda"))
    assert all(case.passed for case in results.values())


@pytest.mark.parametrize("error, hint", [(MIXED, compare.DEVICE_MIX_HINT), (INDICES, compare.DEVICE_MIX_HINT),
                                         (NUMPY, compare.NUMPY_HINT), (GENERATOR, compare.GENERATOR_DEVICE_HINT)],
                         ids=["mixed", "indices", "numpy", "generator"])
def test_a_call_that_breaks_on_the_gpu_loses_its_case_with_a_hint(tmp_path, references, error, hint):
    results = cpu_and_gpu_records(tmp_path, references, lambda folder, key: library_record(
        folder, references, key, "cuda", status="error", error=error))
    moved = [key for key in references.keys() if hidden.runs_on_device(references.case(key))]
    assert moved and all(not results[key].passed and results[key].hint == hint for key in moved)
    assert results[moved[0]].message.startswith("right on the CPU, but with the inputs on the GPU (cuda): your function raised")


def test_a_result_handed_back_on_the_cpu_loses_its_case(tmp_path, references):
    results = cpu_and_gpu_records(tmp_path, references, lambda folder, key: library_record(folder, references, key, "cpu"))
    assert all(not case.passed and case.hint == compare.RESULT_ON_CPU_HINT for case in results.values())
    assert "is on the device 'cpu'; expected 'cuda', where the inputs are" in next(iter(results.values())).message


def test_no_gpu_record_loses_the_case_and_an_unusable_gpu_says_so(tmp_path, references):
    results = cpu_and_gpu_records(tmp_path, references, lambda folder, key: None)
    assert all(not case.passed and devices.NOT_RECORDED in case.message for case in results.values())
    results = cpu_and_gpu_records(tmp_path / "again", references, lambda folder, key: library_record(
        folder, references, key, "cuda", status="error", error=f"{DEVICE_UNAVAILABLE} cuda: RuntimeError: no driver"))
    assert all("the GPU could not be used in the notebook's process" in case.message and not case.hint
               for case in results.values())


def test_a_cpu_run_ignores_gpu_records(tmp_path, references):
    cpu_and_gpu_records(tmp_path, references, lambda folder, key: library_record(folder, references, key, "cpu"))
    assert all(case.passed for cell in score_cells(references, CELLS, tmp_path / "records") for case in cell.cases)


# ---- the tolerance: TF32's rounding passes on the GPU, nothing much worse does -------------------

TF32_UNIT = 2.0 ** -11      # TF32 keeps 10 mantissa bits: a rounded factor is off by up to this, relative


def float32_cases():
    for assignment in assignments():
        found = ReferenceSet.load(assignment.references_file)
        for key in found.keys():
            case, check = found.case(key), found.check(key)
            if isinstance(check, compare.AllClose) and all(item.get("dtype") == "torch.float32"
                                                           for item in case["expect"].values()):
                yield pytest.param(found, key, id=key)


def _gpu_outputs(found, key, relative_error):
    """The expected values with an error of ``relative_error`` times the output's largest value,
    alternating in sign, as float32 results on the GPU."""
    outputs = {}
    for name, values in found.expected(key).items():
        scale = max(float(np.max(np.abs(values))), 1e-30) if values.size else 1.0
        signs = np.where(np.arange(values.size).reshape(values.shape) % 2 == 0, 1.0, -1.0)
        off = values + signs * relative_error * scale
        info = {**found.case(key)["expect"][name], "device": "cuda"}
        outputs[name] = compare.Output(info, off.astype(np.float32).astype(np.float64))
    return outputs


@pytest.mark.parametrize("found, key", list(float32_cases()))
def test_tf32_rounding_passes_on_the_gpu_and_ten_times_the_tolerance_fails(found, key):
    """Two roundings to TF32 (a product of two rounded factors) pass every float32 case on the GPU;
    an error of ten times ``TF32_RTOL`` at the largest value (five times what it allows there) fails."""
    check, expected, expect = found.check(key), found.expected(key), found.case(key)["expect"]
    assert compare.device_verdict(check, _gpu_outputs(found, key, 2 * TF32_UNIT), expected, expect, "cuda").passed
    assert not compare.device_verdict(check, _gpu_outputs(found, key, 10 * compare.TF32_RTOL), expected,
                                      expect, "cuda").passed


def test_integer_outputs_stay_exact_on_the_gpu():
    check = compare.AllClose(rtol=0.0, atol=1e-6)
    labels = np.arange(4096, dtype=np.float64)
    expect = {"value": {"type": "tensor", "dtype": "torch.int64", "shape": [4096], "device": "cpu"}}
    got = {"value": compare.Output({**expect["value"], "device": "cuda"}, labels + (labels == 4095))}
    verdict = compare.device_verdict(check, got, {"value": labels}, expect, "cuda")
    assert not verdict.passed and "1 of 4096 entries of the result differ" in verdict.message


# ---- the hidden test's GPU pass -------------------------------------------------------------------

def run_hidden(tmp_path, monkeypatch, references, function, device):
    save_bundle(tmp_path / "inputs" / DROPOUT, *references.inputs_only())
    monkeypatch.setenv("FLOWLAB_INPUTS_DIR", str(tmp_path / "inputs"))
    monkeypatch.setenv("FLOWLAB_RECORD_DIR", str(tmp_path / "records"))
    monkeypatch.setenv("FLOWLAB_DEVICE", device)
    return hidden.run(DROPOUT, "label_dropout", {"label_dropout": function})


def test_where_the_gpu_cannot_be_used_the_gpu_records_say_so(tmp_path, monkeypatch, references):
    monkeypatch.setattr(hidden, "device_problem", lambda device: "RuntimeError: no CUDA driver (a test)")
    statuses = run_hidden(tmp_path, monkeypatch, references, right_dropout, "cuda")
    keys = references.keys("label_dropout")
    assert {key: statuses[key] for key in keys} == dict.fromkeys(keys, "ok")
    assert {key: statuses[f"{key}@cuda"] for key in keys} == dict.fromkeys(keys, "error")
    cases = [case for cell in score_cells(references, CELLS, tmp_path / "records", "cuda") for case in cell.cases
             if case.key in keys]
    assert all(not case.passed and "RuntimeError: no CUDA driver (a test)" in case.message for case in cases)


def test_a_cpu_only_mistake_passes_on_the_cpu_and_loses_its_cases_on_a_gpu(tmp_path, monkeypatch, references, device):
    """Where CUDA runs, the mask left on the CPU breaks ``torch.where`` on the GPU; the right
    dropout passes on both."""
    keys = references.keys("label_dropout")
    for name, function in (("right", right_dropout), ("cpu_only", cpu_only_dropout)):
        run_hidden(tmp_path / name, monkeypatch, references, function, device.type)
        cases = [case for cell in score_cells(references, CELLS, tmp_path / name / "records", device.type)
                 for case in cell.cases if case.key in keys]
        if name == "right" or device.type == "cpu":
            assert all(case.passed for case in cases), [case.message for case in cases if not case.passed]
        else:
            assert all(not case.passed and case.hint == compare.DEVICE_MIX_HINT for case in cases), \
                [case.message for case in cases]


def test_tf32_on_the_library_passes_every_case_on_the_gpu(tmp_path, monkeypatch, device):
    """Every assignment's library through the hidden test's GPU pass, TF32 on, judged as in grading."""
    previous = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        for assignment in assignments():
            cases = load_cases(assignment)
            found = ReferenceSet.load(assignment.references_file)
            folder = tmp_path / assignment.name
            save_bundle(folder / "inputs" / assignment.name, *found.inputs_only())
            monkeypatch.setenv("FLOWLAB_INPUTS_DIR", str(folder / "inputs"))
            monkeypatch.setenv("FLOWLAB_RECORD_DIR", str(folder / "records"))
            monkeypatch.setenv("FLOWLAB_DEVICE", device.type)
            for function in cases.functions:
                hidden.run(assignment.name, function.name, {function.name: function.reference()})
            points = dict.fromkeys(cases.cells(), 1.0)
            failed = [case.message for cell in score_cells(found, points, folder / "records", device.type)
                      for case in cell.cases if not case.passed]
            assert not failed, f"{assignment.name}: {failed}"
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = previous
