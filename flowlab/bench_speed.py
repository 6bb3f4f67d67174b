"""Speed of the samplers' loops: milliseconds per velocity evaluation (NFE) of ``integrate``, of
torchdiffeq's ``odeint`` on the same fixed grid, and of a bare hand-written loop.

    flowlab bench speed [--device cpu|cuda] [--quick] [--steps N] [--repeats N]
                        [--mlp-batch B] [--unet-batch B] [--clock wall|process]

Two networks with random weights (timing does not depend on training): the 2D MLP of the ``moons``
checkpoint at batch 100,000 and the MNIST UNet of the ``mnist_cfg`` checkpoint at batch 1,000.
The bare loop is a plain ``for`` loop over the grid that calls the same step functions (and the
same Adams formulas) with the network wrapped once in a ``LoopVelocity`` that checks nothing:
no input checks, no path, no final NaN check. ``integrate``'s time over it (``vs bare``) is the
price of its checks and bookkeeping; the goal is within 5% (``vs bare`` <= 1.05). torchdiffeq has
no PEC Adams on a fixed grid, so its Adams cell is empty; it calls the network with a 0-d tensor
time, which the network checks (``time_batch``), as it would for any caller.

Each cell is the best of ``repeats`` timed runs (after one warm-up run; the loops alternate), under
``torch.inference_mode``, in float32; on CUDA the clock is read after ``torch.cuda.synchronize``.
``--clock process`` times CPU work instead of wall time, for a CPU shared with other jobs.
"""
from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from flowlab import models, schedules
from flowlab.multistep import adams_loop
from flowlab.sampling import LoopVelocity
from flowlab.solvers import CountingVelocity, integrate, nfe
from flowlab.steps import STEPS

METHODS = ("euler", "heun", "adams")
TORCHDIFFEQ_METHOD = {"euler": "euler", "heun": "heun2"}      # the same fixed-grid updates
FULL = {"mlp_batch": 100_000, "unet_batch": 1_000, "steps": 20, "repeats": 5}
QUICK = {"mlp_batch": 256, "unet_batch": 2, "steps": 2, "repeats": 1}
HAVE_TORCHDIFFEQ = importlib.util.find_spec("torchdiffeq") is not None
COLUMNS = ("network", "batch", "method", "NFE", "bare ms", "integrate ms", "torchdiffeq ms", "vs bare")


@dataclass
class Workload:
    """A network, the starting noise ``x`` (``(B, ...)``) and the grid ``ts`` it is sampled on."""
    network: str
    velocity: Callable
    x: torch.Tensor
    ts: torch.Tensor


def workloads(device: torch.device, mlp_batch: int, unet_batch: int, steps_: int, seed: int = 0) -> list[Workload]:
    """The 2D MLP (``moons`` configuration) and the MNIST UNet (``mnist_cfg`` configuration)."""
    torch.manual_seed(seed)
    mlp = models.MLP(dim=2, hidden=64, depth=3, time_embedding_dim=32).to(device).eval()
    unet = models.UNet().to(device).eval()
    generator = torch.Generator().manual_seed(seed)
    ts = schedules.uniform(steps_)
    return [Workload("mlp-2d", mlp, torch.randn(mlp_batch, 2, generator=generator).to(device), ts),
            Workload("unet-mnist", unet, torch.randn(unet_batch, 1, 28, 28, generator=generator).to(device), ts)]


def bare_loop(method: str, velocity: Callable, x: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
    """The loop without any check: the grid's float times and an unchecked ``LoopVelocity``."""
    times, velocity = ts.tolist(), LoopVelocity(velocity)
    if method == "adams":
        return adams_loop(lambda i: velocity, x, times)
    step = STEPS[method]
    for t, t_next in zip(times[:-1], times[1:]):
        x = step(velocity, x, t, t_next)
    return x


def torchdiffeq_loop(method: str, velocity: Callable, x: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
    import torchdiffeq

    # torchdiffeq calls func(t, x) with a 0-d t and keeps every grid time's state (as return_path).
    return torchdiffeq.odeint(lambda t, y: velocity(y, t), x, ts.to(x), method=TORCHDIFFEQ_METHOD[method])[-1]


def integrate_loop(method: str, velocity: Callable, x: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
    return integrate(velocity, x, ts, method)


CLOCKS = {"wall": time.perf_counter, "process": time.process_time}


def best_ms_per_nfe(loops: dict[str, Callable], method: str, workload: Workload, repeats: int,
                    clock: str = "wall") -> dict[str, float]:
    """Best time per evaluation of each ``loop(method, velocity, x, ts)`` over ``repeats`` rounds
    that alternate the loops, so that a drifting machine (clock speed, other jobs) slows them alike.

    ``clock``: "wall" (what a user waits; on CUDA read after ``torch.cuda.synchronize``) or
    "process" (CPU seconds of this process, all threads: on a CPU shared with other jobs it counts
    only this work, where wall time counts the waits for the other jobs too).
    """
    now, cuda = CLOCKS[clock], workload.x.is_cuda
    nfe = {}
    for name, loop in loops.items():                                # warm-up, and the NFE count
        counted = CountingVelocity(workload.velocity)
        loop(method, counted, workload.x, workload.ts)
        nfe[name] = counted.nfe
    best = dict.fromkeys(loops, float("inf"))
    for _ in range(repeats):
        for name, loop in loops.items():
            if cuda:
                torch.cuda.synchronize()
            start = now()
            loop(method, workload.velocity, workload.x, workload.ts)
            if cuda:
                torch.cuda.synchronize()
            best[name] = min(best[name], now() - start)
    return {name: 1e3 * best[name] / nfe[name] for name in loops}


def speed_rows(device: torch.device, mlp_batch: int, unet_batch: int, steps_: int, repeats: int,
               clock: str = "wall") -> list[dict]:
    """One row per network x method: ms per NFE of the bare loop, ``integrate`` and torchdiffeq."""
    rows = []
    with torch.inference_mode():
        for workload in workloads(device, mlp_batch, unet_batch, steps_):
            for method in METHODS:
                loops = {"bare": bare_loop, "integrate": integrate_loop}
                if method in TORCHDIFFEQ_METHOD and HAVE_TORCHDIFFEQ:   # a test extra: '-' without it
                    loops["torchdiffeq"] = torchdiffeq_loop
                ms = best_ms_per_nfe(loops, method, workload, repeats, clock)
                rows.append({"network": workload.network, "batch": workload.x.shape[0], "method": method,
                             "NFE": nfe(method, steps_), "bare ms": ms["bare"],
                             "integrate ms": ms["integrate"], "torchdiffeq ms": ms.get("torchdiffeq"),
                             "vs bare": ms["integrate"] / ms["bare"]})
    return rows


def format_speed_table(rows: list[dict], device: torch.device, clock: str = "wall") -> str:
    """A fixed-width table, one line per row, with the device, threads and clock in the title."""
    threads = f", {torch.get_num_threads()} CPU threads" if device.type == "cpu" else ""
    title = f"ms per velocity evaluation on {device}{threads} ({clock} clock, best of the repeats; float32)"
    widths = (11, 8, 7, 5, 10, 13, 15, 8)
    lines = [title, "".join(f"{name:>{w}}" for name, w in zip(COLUMNS, widths))]
    for row in rows:
        cells = []
        for name, width in zip(COLUMNS, widths):
            value = row[name]
            if value is None:
                cells.append(f"{'-':>{width}}")
            elif name == "vs bare":
                cells.append(f"{value:>{width}.3f}")
            elif isinstance(value, float):
                cells.append(f"{value:>{width}.4f}")
            else:
                cells.append(f"{value:>{width}}")
        lines.append("".join(cells))
    return "\n".join(lines)


def main_speed(device: torch.device | str = "cpu", quick: bool = False, steps_: int | None = None,
               repeats: int | None = None, mlp_batch: int | None = None, unet_batch: int | None = None,
               clock: str = "wall") -> str:
    """Measure and print the table (``quick``: tiny batches and one repeat, for tests); returns it."""
    device = torch.device(device)
    preset = QUICK if quick else FULL
    rows = speed_rows(device, mlp_batch or preset["mlp_batch"], unet_batch or preset["unet_batch"],
                      steps_ or preset["steps"], repeats or preset["repeats"], clock)
    table = format_speed_table(rows, device, clock)
    print(table)
    return table
