"""The notebook executor never stalls on widget cells (``flowlab.runtime.execute``).

The stall it guards against: nbclient waits for a cell's reply in a long poll of the shell socket;
a cell that draws into an ``Output`` widget makes nbclient send the widget's outputs back on that
socket meanwhile, through a synchronous shadow that drains the socket's event edge, and a reply
that arrived just before is then seen only when the cell's time limit fires (the module docstring
tells the whole story). The first test builds that race on a bare socket pair, deterministically;
the others run real kernels: a cell whose reply comes only at its limit is reported, and a small
notebook of widget cells runs many times in a row with every output intact and no cell at its limit.
"""
import asyncio
import time
from queue import Empty

import nbformat
import pytest
import zmq
import zmq.asyncio
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.channels import AsyncZMQSocketChannel
from jupyter_client.session import Session
from traitlets import Type

from flowlab.runtime import execute as executor
from flowlab.runtime.execute import WakefulChannel, execute

RUNS = 30                 # the bar: 30 runs in a row of the widget notebooks without a stall
KERNELSPEC = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
WIDGET_CELLS = {
    "setup": "import ipywidgets as widgets\nimport matplotlib.pyplot as plt\nfrom IPython.display import display\n"
             "%matplotlib inline\n\n"
             "def show(t=0.5, steps=20):\n"
             "    figure, axes = plt.subplots(figsize=(2, 2))\n"
             "    axes.plot([0, t], [0, steps])\n"
             "    print(f'drawn t={t} steps={steps}')\n"
             "    display(figure)\n"
             "    plt.close(figure)",
    "interact": "widgets.interact(show, t=widgets.FloatSlider(value=0.5, min=0, max=1),\n"
                "                 steps=widgets.IntSlider(value=20, min=1, max=100))",
    "output": "out = widgets.Output()\nwith out:\n    print('inside the output widget')\n    show(0.25, 5)\n"
              "display(out)\nwidgets.IntSlider(value=3, description='plain slider')",
    "after": "print('the cell after the widgets ran')",
    # what the Output widgets hold in the kernel (the executor syncs their outputs back to it)
    "probe": "from ipywidgets import Output\nfrom ipywidgets.widgets.widget import _instances\n"
             "held = [o for w in list(_instances.values()) if isinstance(w, Output) for o in w.outputs]\n"
             "print(sum('image/png' in o.get('data', {}) for o in held), 'figures;',\n"
             "      ' | '.join(line for o in held if o['output_type'] == 'stream' for line in o['text'].splitlines()))",
}
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


class SendWakesOnly(WakefulChannel):
    """The send half of the fix alone: waits are the library's one long poll."""

    get_msg = AsyncZMQSocketChannel.get_msg


class SlicedWaitsOnly(WakefulChannel):
    """The other half alone: sends are the library's, waits poll in slices."""

    send = AsyncZMQSocketChannel.send


@pytest.mark.parametrize("channel_class", [WakefulChannel, SendWakesOnly, SlicedWaitsOnly])
def test_a_send_does_not_starve_a_wait_for_a_message_that_has_arrived(channel_class, tmp_path):
    """The race, staged: the reply reaches the client's socket while its event loop is busy, then the
    client sends on that socket (as nbclient's Output widget does) before the loop polls again."""

    async def stage() -> dict:
        kernel = zmq.Context.instance().socket(zmq.ROUTER)
        client = zmq.asyncio.Context.instance().socket(zmq.DEALER)
        address = f"ipc://{tmp_path / 'shell'}"
        kernel.bind(address)
        client.connect(address)
        session = Session(key=b"test")
        channel = channel_class(client, session)
        try:
            channel.send(session.msg("execute_request"))
            identity, *request = kernel.recv_multipart()
            waiting = asyncio.ensure_future(channel.get_msg(timeout=None))
            await asyncio.sleep(0.1)                      # the wait is registered; nothing to read yet
            kernel.send_multipart([identity, *request])   # the "reply" arrives ...
            time.sleep(0.1)                               # ... while the loop is busy elsewhere ...
            channel.send(session.msg("comm_msg"))         # ... and the client sends on the same socket
            return await asyncio.wait_for(waiting, 10)    # the library's channel never returns here
        finally:
            client.close(linger=0)
            kernel.close(linger=0)

    reply = asyncio.run(stage())
    assert reply["header"]["msg_type"] == "execute_request"


def test_a_wait_with_a_timeout_and_no_message_raises_empty(tmp_path):
    async def wait() -> None:
        client = zmq.asyncio.Context.instance().socket(zmq.DEALER)
        client.connect(f"ipc://{tmp_path / 'nobody'}")
        try:
            await WakefulChannel(client, Session(key=b"test")).get_msg(timeout=0.6)
        finally:
            client.close(linger=0)

    with pytest.raises(Empty):
        asyncio.run(wait())


def _notebook(path, cells: dict[str, str]):
    notebook = nbformat.v4.new_notebook(metadata=KERNELSPEC)
    notebook.cells = [nbformat.v4.new_code_cell(source, id=name) for name, source in cells.items()]
    nbformat.write(notebook, path)
    return path


class LateShell(WakefulChannel):
    """Hands over each execute_reply only when the wait for it times out: the old stall, on purpose."""

    async def get_msg(self, timeout: float | None = None) -> dict:
        end = None if timeout is None else time.monotonic() + timeout
        message = await super().get_msg(timeout)
        if message["msg_type"] == "execute_reply" and end is not None:
            await asyncio.sleep(max(0.0, end - time.monotonic()))
        return message


class LateKernelClient(AsyncKernelClient):
    shell_channel_class = Type(LateShell)
    iopub_channel_class = Type(WakefulChannel)


@pytest.mark.slow
def test_a_cell_whose_reply_comes_only_at_its_limit_is_reported(tmp_path, monkeypatch):
    """Before the fix such a stall was silent: the run was "ok", just 180 s slower."""
    monkeypatch.chdir(tmp_path)                  # the kernel's ipc sockets go to the cwd
    monkeypatch.setattr(executor, "WakefulKernelClient", LateKernelClient)
    notebook = _notebook(tmp_path / "late.ipynb", {"quick": "1 + 1"})
    result = execute(notebook, cell_timeout=2, notebook_timeout=60)
    assert result["status"] == "ok" and {"cell": "quick", "error": "CellTimeout"} in result["errors"], result


@pytest.mark.slow
def test_a_cell_past_its_limit_is_interrupted_and_reported(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    notebook = _notebook(tmp_path / "slow.ipynb", {"sleeps": "import time\ntime.sleep(60)", "next": "2 + 2"})
    result = execute(notebook, cell_timeout=2, notebook_timeout=60)
    assert result["executed"] == 2 and {"cell": "sleeps", "error": "CellTimeout"} in result["errors"], result
    assert not [error for error in result["errors"] if error["cell"] == "next"], result


def printed(outputs) -> str:
    """What a cell printed: its stream outputs joined (the kernel may flush one print in pieces)."""
    return "".join(output.get("text", "") for output in outputs if output.get("output_type") == "stream")


@pytest.mark.slow
def test_widget_cells_run_many_times_in_a_row_without_a_stall(tmp_path, monkeypatch):
    """A stall would surface as a ``CellTimeout`` error (the cell waited for its whole limit)."""
    monkeypatch.chdir(tmp_path)
    notebook = _notebook(tmp_path / "widgets.ipynb", WIDGET_CELLS)
    seconds = []
    for run in range(RUNS):
        start = time.perf_counter()
        result = execute(notebook, cell_timeout=30, notebook_timeout=120, keep_outputs=tmp_path / "executed.ipynb")
        seconds.append(time.perf_counter() - start)
        assert result == {"status": "ok", "executed": len(WIDGET_CELLS), "errors": []}, f"run {run}: {result}"
        cells = {cell.id: cell.outputs for cell in nbformat.read(tmp_path / "executed.ipynb", as_version=4).cells}
        for name in ("interact", "output"):
            assert any(WIDGET_VIEW in output.get("data", {}) for output in cells[name]), f"run {run}: {cells[name]}"
        assert printed(cells["after"]) == "the cell after the widgets ran\n", cells["after"]
        assert printed(cells["probe"]) == (
            "2 figures; drawn t=0.5 steps=20 | inside the output widget | drawn t=0.25 steps=5\n"), f"run {run}"
    print(f"{RUNS} runs: {min(seconds):.1f} / {sorted(seconds)[RUNS // 2]:.1f} / {max(seconds):.1f} s "
          "(min / median / max)")


def test_a_repeated_rehearsal_counts_failed_and_stalled_runs():
    """``flowlab rehearse --repeat N`` ends with this table: a stall is a run with a ``CellTimeout``."""
    from flowlab_grader.rehearse import Rehearsal, repeat_summary

    rows = [Rehearsal("01_flow_matching", False, seconds, status, errors) for seconds, status, errors in (
        (7.0, "ok", ()), (9.0, "ok", ()), (188.0, "ok", ("field: CellTimeout",)), (8.0, "ok", ("train: ValueError",)))]
    rows.append(Rehearsal("01_flow_matching", True, 5.0, "ok", ()))
    assert [row.stalled for row in rows] == [False, False, True, False, False]
    assert repeat_summary(rows).splitlines()[2:] == [
        "| 01_flow_matching | full | 4 | 2 | 1 | 7.0 / 8.5 / 188.0 |",
        "| 01_flow_matching | grading | 1 | 0 | 0 | 5.0 / 5.0 / 5.0 |"]
