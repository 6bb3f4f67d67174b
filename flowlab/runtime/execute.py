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

Why it never hangs on widget cells. nbclient waits for a cell's ``execute_reply`` with one long
``poll`` of the shell socket (as long as the cell's time limit). A cell that draws into an
``Output`` widget (every ``interact``) makes nbclient's stand-in for the front end send the
widget's outputs back to the kernel on that same shell socket, while the poll is pending.
jupyter_client sends through a synchronous shadow of the asyncio socket, and a send makes libzmq
process the socket's pending events, including "a message has arrived": the socket's file
descriptor, which signals by edges, is then drained without pyzmq's asyncio layer knowing. If the
reply arrives just before such a send, the pending poll never wakes; it returns only when its
timeout fires, and then its final check finds the reply that had waited all along: the cell
"took" exactly its limit, with no error (a stall of 180 s in about 2 of 15 rehearsals of notebook
01). The kernel client here (``WakefulKernelClient``) closes the gap twice: every send on a channel
asks pyzmq to look at the socket again (``socket.get(zmq.EVENTS)``, which wakes a starved poll),
and every wait polls in slices of ``POLL_SLICE_S`` seconds, each ending with a non-blocking check,
so a wake-up lost for any other reason costs at most one slice. A cell that does use its whole
limit is reported (``CellTimeout``), whether the kernel was interrupted or the reply came last-moment.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from queue import Empty

import nbformat
import zmq
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.channels import AsyncZMQSocketChannel
from traitlets import Type

CELL_ERROR = {"ename": "CellTimeout", "evalue": "the cell ran past its time limit and was interrupted", "traceback": []}
POLL_SLICE_S = 0.25


class WakefulChannel(AsyncZMQSocketChannel):
    """A kernel channel whose waits cannot miss a message (see the module docstring)."""

    def send(self, msg: dict) -> None:
        super().send(msg)
        # the send went through a synchronous shadow of the socket and may have drained its event
        # edge: have pyzmq re-check the socket, which wakes a poll waiting on it
        self.socket.get(zmq.EVENTS)

    async def get_msg(self, timeout: float | None = None) -> dict:
        """The next message; raises ``queue.Empty`` after ``timeout`` seconds (None: wait forever).
        Polls in slices of ``POLL_SLICE_S`` s, so that a lost wake-up delays a message by one slice at most."""
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            left = POLL_SLICE_S if end is None else min(POLL_SLICE_S, max(0.0, end - time.monotonic()))
            if await self.socket.poll(int(left * 1000)):
                return await self._recv()
            if end is not None and time.monotonic() >= end:
                raise Empty


class WakefulKernelClient(AsyncKernelClient):
    """nbclient's asynchronous kernel client, with ``WakefulChannel`` for the shell and IOPub channels."""

    shell_channel_class = Type(WakefulChannel)
    iopub_channel_class = Type(WakefulChannel)


def _client(notebook, cell_timeout: float, deadline: float):
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient

    manager = AsyncKernelManager(kernel_name="python3", transport="ipc", ip=str(Path("kernel").resolve()),
                                 client_factory=WakefulKernelClient)

    return NotebookClient(notebook, km=manager, timeout_func=lambda cell: cell_limit(cell_timeout, deadline),
                          allow_errors=True, interrupt_on_timeout=True,
                          error_on_timeout=CELL_ERROR, record_timing=False, store_widget_state=True,
                          startup_timeout=120, iopub_timeout=10, shutdown_kernel="immediate")


def cell_limit(cell_timeout: float, deadline: float) -> int:
    """Whole seconds the next cell may run: its own limit, or what is left of the notebook's."""
    return max(1, int(min(cell_timeout, deadline - time.monotonic())))


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
                limit, started = cell_limit(cell_timeout, deadline), time.monotonic()
                try:
                    client.execute_cell(cell, index)
                except DeadKernelError:
                    status = "kernel_died"
                    break
                except Exception as error:  # nbclient choking on a cell's messages (e.g. odd widgets): go on
                    errors.append({"cell": cell.get("id", str(index)), "error": f"executor: {type(error).__name__}"})
                executed += 1
                if time.monotonic() - started >= limit:
                    errors.append({"cell": cell.get("id", str(index)), "error": CELL_ERROR["ename"]})
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
