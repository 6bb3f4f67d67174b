"""How far a grading batch is: a live bar on a terminal, plain lines in a log.

    done 52/98 (graded 47, timeout 1, crashed 1, invalid 3, error 0; 40 kept from an earlier run),
    2m10s elapsed, ETA 4m

Counts cover every submission of the batch, those kept from an earlier run included. The ETA
comes from the submissions run in this batch alone: ``remaining x elapsed / run so far`` (the
batch's throughput, whatever the number of jobs). On a terminal (``stream.isatty()``) a tqdm bar
shows the same on one line; otherwise a line is printed every ``every`` finished submissions
(a tenth of the batch by default) or ``seconds`` seconds, whichever comes first, and at the end.
Everything goes to standard error, so that standard output stays the command's report.
"""
from __future__ import annotations

import sys
import time
from collections import Counter
from typing import TextIO

STATUSES = ("graded", "timeout", "crashed", "invalid", "error")


def duration(seconds: float) -> str:
    """``42s``, ``2m10s``, ``1h05m``: seconds for people."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """The progress of a batch of ``total`` submissions, of which ``kept`` (their statuses) were
    graded by an earlier run. Call ``finished(status)`` per submission, ``tick()`` now and then,
    ``close()`` at the end."""

    def __init__(self, total: int, kept: list[str], stream: TextIO | None = None, live: bool | None = None,
                 every: int | None = None, seconds: float = 30.0, clock=time.monotonic):
        self.total, self.kept = total, len(kept)
        self.counts = Counter(kept)
        self.ran = 0
        self.stream = stream or sys.stderr
        self.clock = clock
        self.start = self.last_line = clock()
        self.every = every or max(1, (total - self.kept) // 10)
        self.seconds = seconds
        self.since_line = 0
        live = self.stream.isatty() if live is None else live
        self.bar = self._bar() if live else None

    def _bar(self):
        from tqdm import tqdm

        bar = tqdm(total=self.total, initial=self.kept, file=self.stream, unit="submission", dynamic_ncols=True,
                   desc="grading", smoothing=0.1)
        bar.set_postfix_str(self.counts_text(), refresh=True)
        return bar

    @property
    def done(self) -> int:
        return self.kept + self.ran

    def counts_text(self) -> str:
        text = ", ".join(f"{status} {self.counts[status]}" for status in STATUSES)
        return text + (f"; {self.kept} kept from an earlier run" if self.kept else "")

    def eta(self) -> str:
        remaining = self.total - self.done
        if remaining == 0:
            return "0s"
        if self.ran == 0:
            return "?"
        return duration(remaining * (self.clock() - self.start) / self.ran)

    def line(self) -> str:
        """The plain progress line (see the module docstring)."""
        return (f"done {self.done}/{self.total} ({self.counts_text()}), "
                f"{duration(self.clock() - self.start)} elapsed, ETA {self.eta()}")

    def finished(self, status: str) -> None:
        """One more submission graded in this batch, with ``status``."""
        self.ran += 1
        self.counts[status] += 1
        self.since_line += 1
        if self.bar is not None:
            self.bar.set_postfix_str(self.counts_text(), refresh=False)
            self.bar.update(1)
        elif self.since_line >= self.every:
            self._print()

    def tick(self) -> None:
        """Called while waiting: a plain line when ``seconds`` passed since the last one."""
        if self.bar is None and self.clock() - self.last_line >= self.seconds:
            self._print()

    def _print(self) -> None:
        print(self.line(), file=self.stream, flush=True)
        self.last_line, self.since_line = self.clock(), 0

    def close(self) -> None:
        """The last line (plain) or the bar's last state (live)."""
        if self.bar is not None:
            self.bar.close()
        elif self.since_line or self.ran == 0:
            self._print()
