"""Run a batch's jobs in parallel threads, and stop them all at once on Ctrl-C.

Each job runs its notebook in a sandbox process of its own session (``sandbox.run_detached``),
so a terminal's Ctrl-C reaches the grader alone. ``run_all`` catches it (``KeyboardInterrupt``
in the main thread, which waits in one-second slices so that the signal is seen at once),
flips the ``Stop`` switch, which kills every running job's process group (and with it the
sandbox: bwrap runs with ``--die-with-parent``), lets the threads return and drops the jobs
not started. A Ctrl-C while the jobs are handed to the pool waits until they all are
(``signals_held``), so that the pool knows every thread it must wait for. A job stopped this way
is unfinished: its caller must not record it.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Callable, Iterable, Iterator, TypeVar

Task = TypeVar("Task")
Done = TypeVar("Done")
WAIT_SECONDS = 1.0


class Stop:
    """The batch's stop switch and the sandbox processes running now (registered by ``started``)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._running: list[subprocess.Popen] = []
        self.stopped = False

    def started(self, process: subprocess.Popen) -> None:
        """A job's process has started (``sandbox.run``'s callback); killed now if the batch stopped."""
        with self._lock:
            self._running = [known for known in self._running if known.returncode is None]
            self._running.append(process)
            if self.stopped:
                _kill_group(process)

    def stop(self) -> None:
        """Stop the batch: every running job's process group is killed (SIGKILL)."""
        with self._lock:
            self.stopped = True
            for process in self._running:
                _kill_group(process)


def _kill_group(process: subprocess.Popen) -> None:
    if process.returncode is not None:       # reaped already: its group id may belong to another now
        return
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_all(tasks: Iterable[Task], job: Callable[[Task], Done], jobs: int, finished: Callable[[Done], None],
            waiting: Callable[[], None], stop: Stop) -> bool:
    """Run ``job(task)`` for every task, ``jobs`` at a time; ``finished(done)`` for each in the
    main thread as it returns, ``waiting()`` about every second. Returns ``True`` when Ctrl-C
    (or a ``KeyboardInterrupt`` from ``finished``/``waiting``) stopped the batch: then ``stop``
    has killed the running jobs, no other job starts, and every thread has returned."""
    tasks = list(tasks)
    pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="grade")
    pending = set()
    try:
        with signals_held():
            pending = {pool.submit(job, task) for task in tasks}
        while pending:
            done, pending = wait(pending, timeout=WAIT_SECONDS, return_when=FIRST_COMPLETED)
            for future in done:
                finished(future.result())
            waiting()
        return False
    except KeyboardInterrupt:
        stop.stop()
        for future in pending:
            future.cancel()
        return True
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def _handling(handlers: dict[int, Callable]) -> Iterator[None]:
    """Within this block each signal of ``handlers`` goes to its handler (not outside the main
    thread, where Python lets no handler be set: there nothing changes)."""
    previous = {}
    try:
        for number, handler in handlers.items():
            previous[number] = signal.signal(number, handler)
    except ValueError:
        pass
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextlib.contextmanager
def signals_held(signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """Hold ``signals`` back for the block, and raise them again after it, to their own handlers.

    ``run_all`` submits its jobs inside: a Ctrl-C in the middle of ``ThreadPoolExecutor.submit``
    (after a worker thread started, before the pool recorded it) would leave a thread that
    ``shutdown`` does not wait for, still running its job after the batch has returned. Outside
    the main thread, where no handler can be set (nor a ``KeyboardInterrupt`` raised), it changes
    nothing."""
    held: list[int] = []
    try:
        with _handling({number: lambda number, frame: held.append(number) for number in signals}):
            yield
    finally:
        for number in dict.fromkeys(held):
            signal.raise_signal(number)


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within this block SIGTERM (``kill``, a job scheduler's time limit) stops a batch as Ctrl-C
    does; outside the main thread, where no handler can be set, it changes nothing."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt
    with _handling({signal.SIGTERM: interrupt}):
        yield
