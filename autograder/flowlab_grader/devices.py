"""``flowlab grade --device``: which device the hidden cases also run on, and how that is judged.

    --device cpu    the hidden cases run on the CPU (the references' device) only
    --device cuda   each case whose inputs hold a tensor or a model also runs with them on the GPU
                    (``flowlab.runtime.hidden``); the case passes only when both calls pass
    --device auto   cuda when this machine's PyTorch sees a CUDA GPU, else cpu (the default)

A GPU call is judged against the same float64 references as the CPU call
(``flowlab.runtime.compare.device_verdict``: the result on the inputs' device, within a tolerance
that allows for TF32). When the CPU call passes and the GPU call does not, the case fails with what
broke on the GPU and a hint when the exception or the result says what it was: a tensor made on
the CPU and mixed with the inputs, ``.numpy()`` on a CUDA tensor, the CPU generator asked to draw on
the GPU, the result handed back on the CPU.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flowlab.runtime.compare import RESULT_ON_CPU_HINT, device_hint, device_verdict, left_the_device
from flowlab.runtime.hidden import runs_on_device
from flowlab.runtime.record import DEVICE_UNAVAILABLE, read_record
from flowlab.runtime.reference_set import ReferenceSet
from flowlab.runtime.side_effects import findings

from flowlab_grader import sandbox

CHOICES = ("auto", "cpu", "cuda")
NOT_RECORDED = ("no result was recorded (did the notebook's kernel die or run out of time while the GPU calls ran, "
                "or was the function not defined?)")


class DeviceUnavailable(RuntimeError):
    """``--device cuda`` where no CUDA GPU can be used (not here, or not in the sandbox)."""


@dataclass(frozen=True)
class DeviceChoice:
    """The device the hidden cases also run on (``used``: ``"cpu"`` or ``"cuda"``), what was asked
    (``requested``), the GPU's name, and why not the GPU when ``auto`` fell back to the CPU."""
    requested: str
    used: str
    gpu: str = ""
    why: str = ""

    def report(self) -> dict:
        """For ``grading.json`` and the terminal."""
        return {"requested": self.requested, "used": self.used, "gpu": self.gpu, "why": self.why}


def cuda_here() -> tuple[bool, str]:
    """``(usable, GPU name or why not)`` for this process's PyTorch."""
    import torch

    if not torch.cuda.is_available():
        return False, "PyTorch sees no CUDA GPU here (torch.cuda.is_available() is False)"
    return True, torch.cuda.get_device_name(0)


def choose(requested: str) -> DeviceChoice:
    """Resolve ``--device``: ``cuda`` must be usable here (else ``DeviceUnavailable``), ``auto``
    takes it when it is; ``ValueError`` for anything but ``CHOICES``."""
    if requested not in CHOICES:
        raise ValueError(f"device: expected one of {', '.join(CHOICES)}, got {requested!r}")
    if requested == "cpu":
        return DeviceChoice("cpu", "cpu")
    usable, detail = cuda_here()
    if usable:
        return DeviceChoice(requested, "cuda", gpu=detail)
    if requested == "cuda":
        raise DeviceUnavailable(f"--device cuda: {detail}; grade with --device cpu")
    return DeviceChoice("auto", "cpu", why=detail)


def confirm_in_jobs(choice: DeviceChoice, work: Path, level: str, limits: sandbox.Limits) -> DeviceChoice:
    """``choice`` once a sandboxed probe at ``level`` under ``limits`` computed on its GPU
    (``sandbox.device_problem``); where CUDA does not start in a job, ``--device cuda`` raises
    ``DeviceUnavailable`` and ``auto`` grades on the CPU, saying why."""
    if choice.used == "cpu":
        return choice
    problem = sandbox.device_problem(work, level, limits, choice.used)
    if problem is None:
        return choice
    if choice.requested == "cuda":
        raise DeviceUnavailable(f"--device cuda: {problem}; or grade with --device cpu")
    return DeviceChoice(choice.requested, "cpu", gpu=choice.gpu, why=problem)


def judge_on_device(references: ReferenceSet, key: str, folder_fd: int | None, device: str) -> tuple[str, str] | None:
    """``None`` when case ``key`` passes with its inputs on ``device`` (or has nothing to move there),
    else ``(message, hint)``, from its record in the open device record folder ``folder_fd``
    (``None``: there is none). Called for cases whose CPU call passed."""
    case = references.case(key)
    if not runs_on_device(case):
        return None
    where = f"right on the CPU, but with the inputs on the GPU ({device})"
    record = read_record(folder_fd, key) if folder_fd is not None else None
    if record is None or record.status == "absent":
        return f"{where}: {NOT_RECORDED}", ""
    if record.status == "invalid":
        return f"{where}: {record.error}", ""
    if record.status == "timeout":
        return f"{where}: your function did not finish: {record.error}", ""
    if record.status == "error" and record.error.startswith(DEVICE_UNAVAILABLE):
        return (f"{where}: the GPU could not be used in the notebook's process ({record.error}); if every case "
                f"says so, the grading machine's GPU failed: ask your instructor"), ""
    if record.status == "error":
        hint = device_hint(record.error)
        return f"{where}: your function raised {record.error}" + (f"; hint: {hint}" if hint else ""), hint or ""
    expect = case["expect"]
    verdict = device_verdict(references.check(key), record.outputs, references.expected(key), expect, device)
    problems, hint = findings(case["function"], record.changed, record.global_random, case)
    if verdict.passed and not problems and not hint:
        return None
    if not verdict.passed and left_the_device(record.outputs, expect, device):
        hint = RESULT_ON_CPU_HINT
    parts = ([] if verdict.passed else [verdict.message]) + problems
    if not parts:
        parts = ["the values are right, but the function used the global random stream"]
    return f"{where}: " + "; ".join(parts) + (f"; hint: {hint}" if hint else ""), hint or (problems[0] if problems else "")
