"""Grading on a cluster: ``flowlab grade --shard K/N`` grades one deterministic slice of the
submissions (``flowlab merge-shards``, ``flowlab_grader.merge_shards``, joins the slices).

    flowlab grade SUBMISSIONS --out RESULTS/shard-K --shard K/N     on node K (a Slurm array task)

Every shard finds the same submissions (``submissions.discover``: sorted by student, then
assignment) and takes every N-th of them, starting at the K-th: a deterministic slice that
balances the shards to one submission. Its results folder is a complete ``flowlab grade`` folder
for its slice, and its ``grading.json`` says which shard it is, which submissions it holds and
how many the whole batch has (``Shard.report``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence, TypeVar

Item = TypeVar("Item")
SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class Shard:
    """Slice ``index`` (from 1) of ``count``."""
    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> "Shard":
        """``"2/3" -> Shard(2, 3)``; ``ValueError`` naming what was wrong."""
        match = SHARD.match(str(text))
        if not match:
            raise ValueError(f"--shard must look like K/N (e.g. 2/10), got {text!r}")
        index, count = int(match[1]), int(match[2])
        if not 1 <= index <= count:
            raise ValueError(f"--shard K/N needs 1 <= K <= N, got {text!r}")
        return cls(index, count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def select(self, items: Sequence[Item]) -> list[Item]:
        """Items ``K-1, K-1+N, K-1+2N, ...`` of ``items`` (sorted the same way on every node)."""
        return list(items[self.index - 1::self.count])

    def report(self, chosen: list, total: int) -> dict:
        """What ``grading.json`` says of this shard: enough for ``merge`` to check and read it."""
        return {"index": self.index, "count": self.count, "total": total,
                "submissions": [[item.student, item.assignment] for item in chosen]}
