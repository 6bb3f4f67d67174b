"""The Python half of ``gpu_check.sh``: the submissions it grades, CUDA under the data limit, and the verdict.

    python autograder/tools/gpu_check.py submissions DIR [--copies N]
    python autograder/tools/gpu_check.py data-limits GiB [GiB ...]
    python autograder/tools/gpu_check.py isolation [--device cuda|cpu]
    python autograder/tools/gpu_check.py verdict CUDA_RESULTS CPU_RESULTS CUDA_MISTAKES CPU_MISTAKES

``submissions`` writes two folders in nbgrader's ``submitted/`` layout:

    DIR/clean/     solution_K and release_K of every notebook (K = 1..N): right on any device, or empty
    DIR/mistakes/  three submissions of notebook 01 that are right on the CPU and break on a GPU:
                   cpu_tensor  interpolate adds torch.zeros(x0.shape) (made on the CPU) to x0
                   cpu_noise   flow_matching_loss draws its noise without moving it to x1's device
                   numpy_time  interpolate takes t through .numpy()

``data-limits`` tells, for each data limit, whether CUDA starts in a sandboxed job under it.
``isolation`` prints ``bwrap`` when bubblewrap sandboxes a job here and the device computes in it, else
``unisolated`` and why (then the script grades with ``--allow-unisolated``, bwrap out of its PATH).
``verdict`` prints what the two runs show and exits 1 when a check fails: on the GPU the
solutions get full marks and the releases zero, the clean grades.csv is byte-identical on both
devices, and each mistake gets full marks on the CPU and loses points on the GPU with a GPU hint.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

import nbformat

MISTAKE_ASSIGNMENT = "01_flow_matching"
# (student, function whose solution cell changes, old text, new text); "" old: insert at the body's start
MISTAKES = (
    ("cpu_tensor", "interpolate", "", "x0 = x0 + torch.zeros(x0.shape)   # made on the CPU"),
    ("cpu_noise", "flow_matching_loss", "x0 = torch.randn(x1.shape, generator=generator, dtype=x1.dtype).to(x1.device)",
     "x0 = torch.randn(x1.shape, generator=generator, dtype=x1.dtype)"),
    ("numpy_time", "interpolate", "", "t = torch.from_numpy(t.numpy()) if isinstance(t, torch.Tensor) else t"),
)
BEGIN = "### BEGIN SOLUTION\n"


def _write(folder: Path, student: str, assignment: str, notebook: nbformat.NotebookNode) -> None:
    path = folder / student / assignment / f"{assignment}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, path)


def _with_mistake(notebook: nbformat.NotebookNode, function: str, old: str, new: str) -> nbformat.NotebookNode:
    """``notebook`` with ``function``'s solution cell changed: ``old`` replaced by ``new``, or ``new``
    inserted as the first line of the solution when ``old`` is empty."""
    changed = nbformat.from_dict(json.loads(json.dumps(notebook)))
    cell = next(cell for cell in changed.cells if cell.cell_type == "code" and f"def {function}(" in cell.source)
    if old:
        if old not in cell.source:
            raise ValueError(f"{function}'s solution no longer contains {old!r}")
        cell.source = cell.source.replace(old, new)
    else:
        indent = cell.source.split(BEGIN)[0].splitlines()[-1]
        cell.source = cell.source.replace(BEGIN, f"{BEGIN}{indent}{new}\n", 1)
    return changed


def make_submissions(out: Path, copies: int) -> None:
    from flowlab_grader.course import assignments, notebooks_dir

    for assignment in assignments():
        solution = nbformat.read(assignment.source_notebook, as_version=4)
        release = nbformat.read(notebooks_dir() / assignment.notebook_name, as_version=4)
        for copy in range(1, copies + 1):
            _write(out / "clean", f"solution_{copy}", assignment.name, solution)
            _write(out / "clean", f"release_{copy}", assignment.name, release)
        if assignment.name == MISTAKE_ASSIGNMENT:
            for student, function, old, new in MISTAKES:
                try:
                    _write(out / "mistakes", student, assignment.name, _with_mistake(solution, function, old, new))
                except ValueError as error:
                    print(f"skipped mistake {student}: {error}")
    print(f"wrote {len(list((out / 'clean').glob('*/*/*.ipynb')))} clean submissions and "
          f"{len(list((out / 'mistakes').glob('*/*/*.ipynb')))} CPU-only mistakes under {out}")


def data_limits(gib: list[float]) -> None:
    from flowlab_grader import sandbox

    with tempfile.TemporaryDirectory(prefix="flowlab-gpu-check-") as scratch:
        work = Path(scratch)
        try:
            level = sandbox.probe_isolation(work, sandbox.Limits()).level
        except sandbox.SandboxUnavailable as error:
            print(f"no bwrap sandbox here ({error}); probing unisolated")
            level = "unisolated"
        for value in gib:
            problem = sandbox.device_problem(work / f"{value:g}", level, sandbox.Limits(memory=int(value * 2**30)), "cuda")
            print(f"RLIMIT_DATA {value:g} GiB ({level}): " + ("CUDA starts" if problem is None else f"FAILS: {problem}"))


def isolation(device: str) -> None:
    from flowlab_grader import sandbox

    with tempfile.TemporaryDirectory(prefix="flowlab-gpu-check-") as scratch:
        work = Path(scratch)
        problem = sandbox.bwrap_problem(work, sandbox.Limits())
        if problem is None and device != "cpu":
            problem = sandbox.device_problem(work, "bwrap", sandbox.Limits(), device)
            problem = None if problem is None else f"{device} does not compute in bwrap: {problem}"
    print("bwrap" if problem is None else f"unisolated {problem}")


def _rows(results: Path) -> dict[tuple[str, str], dict]:
    with open(results / "grades.csv", newline="") as handle:
        return {(row["student"], row["assignment"]): row for row in csv.DictReader(handle)}


def _case_messages(results: Path, student: str, assignment: str) -> list[str]:
    document = json.loads((results / "submissions" / student / assignment / "result.json").read_text())
    return [case["message"] for cell in document["cells"] for case in cell["cases"] if not case["passed"]]


def verdict(cuda: Path, cpu: Path, cuda_mistakes: Path, cpu_mistakes: Path) -> int:
    from flowlab.runtime import compare

    missing = [str(folder) for folder in (cuda, cpu, cuda_mistakes, cpu_mistakes) if not (folder / "grades.csv").is_file()]
    if missing:
        print(f"VERDICT: FAILED: no grades.csv in {', '.join(missing)} (a batch failed or was skipped: see the log)")
        return 1
    failures = []
    for (student, assignment), row in sorted(_rows(cuda).items()):
        full = row["status"] == "graded" and float(row["score"]) == float(row["max_score"]) > 0
        empty = float(row["score"]) == 0
        print(f"cuda {student:12s} {assignment:30s} {row['score']:>6s}/{row['max_score']:<6s} {row['status']}")
        if student.startswith("solution") and not full or student.startswith("release") and not empty:
            failures.append(f"{student} {assignment}: {row['score']}/{row['max_score']} {row['status']} {row['reason']}")
    same = (cuda / "grades.csv").read_bytes() == (cpu / "grades.csv").read_bytes()
    print(f"clean submissions: grades.csv on cuda and on cpu byte-identical: {same}")
    if not same:
        failures.append("the clean grades.csv differs between cuda and cpu")
    hints = {compare.DEVICE_MIX_HINT: "mix", compare.NUMPY_HINT: "numpy", compare.GENERATOR_DEVICE_HINT: "generator",
             compare.RESULT_ON_CPU_HINT: "result on cpu"}
    on_cpu = _rows(cpu_mistakes)
    for key, row in sorted(_rows(cuda_mistakes).items()):
        cpu_row = on_cpu[key]
        messages = _case_messages(cuda_mistakes, *key)
        found = sorted({name for hint, name in hints.items() for message in messages if hint in message})
        print(f"mistake {key[0]:12s} cpu {cpu_row['score']}/{cpu_row['max_score']}  cuda {row['score']}/{row['max_score']}  "
              f"failed on the GPU: {len(messages)} cases, hints: {', '.join(found) or 'none'}")
        for message in messages[:2]:
            print(f"    {message[:400]}")
        if float(cpu_row["score"]) != float(cpu_row["max_score"]) or float(row["score"]) >= float(row["max_score"]) \
                or not found:
            failures.append(f"mistake {key[0]}: cpu {cpu_row['score']}, cuda {row['score']}, hints {found}")
    print("VERDICT: " + ("all GPU checks passed" if not failures else "FAILED:\n  " + "\n  ".join(failures)))
    return 1 if failures else 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    made = commands.add_parser("submissions")
    made.add_argument("out", type=Path)
    made.add_argument("--copies", type=int, default=1)
    limits = commands.add_parser("data-limits")
    limits.add_argument("gib", type=float, nargs="+")
    commands.add_parser("isolation").add_argument("--device", default="cuda")
    judged = commands.add_parser("verdict")
    for name in ("cuda", "cpu", "cuda_mistakes", "cpu_mistakes"):
        judged.add_argument(name, type=Path)
    args = parser.parse_args(argv)
    if args.command == "submissions":
        make_submissions(args.out, args.copies)
        return 0
    if args.command == "data-limits":
        data_limits(args.gib)
        return 0
    if args.command == "isolation":
        isolation(args.device)
        return 0
    return verdict(args.cuda, args.cpu, args.cuda_mistakes, args.cpu_mistakes)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
