"""Run a notebook in a fresh kernel, cell by cell, inside the sandbox (phase 1 of grading).

    python -m flowlab.runtime.execute NOTEBOOK --cell-timeout 60 --notebook-timeout 300 --status status.json

Every cell runs even if an earlier one failed (a student's broken experiment must not cost the
hidden tests below it). A cell that runs past its time limit is interrupted and counted as an
error; past the notebook's time limit, the remaining cells are skipped. The kernel talks to this
process over Unix sockets (``transport="ipc"``), so it needs no network at all. Outputs are
dropped as cells finish: nothing of them is needed, and a cell that prints gigabytes must not
fill memory. ``status.json`` says how the run ended (``ok``, ``deadline``, ``kernel_died``,
``startup_failed``) and which cells raised; the host treats it as untrusted (the student's code
could rewrite it) and uses it only to explain a score, never to make one.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import nbformat

CELL_ERROR = {"ename": "CellTimeout", "evalue": "the cell ran past its time limit and was interrupted", "traceback": []}


def _client(notebook, cell_timeout: float, deadline: float):
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient

    manager = AsyncKernelManager(kernel_name="python3", transport="ipc", ip=str(Path("kernel").resolve()))

    def timeout(cell) -> int:
        return max(1, int(min(cell_timeout, deadline - time.monotonic())))

    return NotebookClient(notebook, km=manager, timeout_func=timeout, allow_errors=True, interrupt_on_timeout=True,
                          error_on_timeout=CELL_ERROR, record_timing=False, store_widget_state=True,
                          startup_timeout=120, iopub_timeout=10, shutdown_kernel="immediate")


def widget_errors(widget_state: dict, seen: set) -> list[str]:
    """Names of the exceptions raised inside widgets (``interact`` shows them in an Output widget,
    not in the cell's outputs) since the last call; ``seen`` remembers what was reported."""
    found = []
    for model_id, state in widget_state.items():
        if state.get("_model_name") != "OutputModel":
            continue
        for position, output in enumerate(state.get("outputs") or []):
            if isinstance(output, dict) and output.get("output_type") == "error" and (model_id, position) not in seen:
                seen.add((model_id, position))
                found.append(str(output.get("ename", "error")))
    return found


def execute(path: Path, cell_timeout: float, notebook_timeout: float, keep_outputs: Path | None = None) -> dict:
    """Execute the notebook at ``path``; returns the status document (see the module docstring).
    With ``keep_outputs``, the outputs are kept and the executed notebook is written there (debugging)."""
    from nbclient.exceptions import DeadKernelError

    notebook = nbformat.read(path, as_version=4)
    deadline = time.monotonic() + notebook_timeout
    client = _client(notebook, cell_timeout, deadline)
    status, errors, executed, seen = "ok", [], 0, set()
    try:
        with client.setup_kernel():
            for index, cell in enumerate(notebook.cells):
                if cell.cell_type != "code":
                    continue
                if time.monotonic() >= deadline:
                    status = "deadline"
                    break
                try:
                    client.execute_cell(cell, index)
                except DeadKernelError:
                    status = "kernel_died"
                    break
                except Exception as error:  # nbclient choking on a cell's messages (e.g. odd widgets): go on
                    errors.append({"cell": cell.get("id", str(index)), "error": f"executor: {type(error).__name__}"})
                executed += 1
                errors += [{"cell": cell.get("id", str(index)), "error": output.get("ename", "")[:80]}
                           for output in cell.get("outputs", []) if output.get("output_type") == "error"]
                errors += [{"cell": cell.get("id", str(index)), "error": f"widget: {name}"[:80]}
                           for name in widget_errors(client.widget_state, seen)]
                if keep_outputs is None:
                    cell.outputs = []
    except DeadKernelError:
        status = "kernel_died"
    except RuntimeError as error:       # the kernel did not start
        status, errors = "startup_failed", [{"cell": "", "error": str(error)[:200]}]
    if keep_outputs is not None:
        nbformat.write(notebook, keep_outputs)
    return {"status": status, "executed": executed, "errors": errors[:50]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--cell-timeout", type=float, default=60.0)
    parser.add_argument("--notebook-timeout", type=float, default=300.0)
    parser.add_argument("--status", type=Path, default=Path("status.json"))
    parser.add_argument("--keep-outputs", type=Path, metavar="NOTEBOOK", help="write the executed notebook here")
    args = parser.parse_args(argv)
    result = execute(args.notebook, args.cell_timeout, args.notebook_timeout, args.keep_outputs)
    args.status.write_text(json.dumps(result))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
