"""What a test call did besides returning: inputs changed in place, the global random stream used.

A graded function must leave its inputs as they are (``y[drop] = null; return y`` returns the
right labels and silently corrupts the caller's batch) and draw every random number from the
generator it is given (``torch.manual_seed(0)`` inside a loss makes every "random" draw the same
and resets the caller's stream). Neither shows in the returned values, so the recorder watches
the call::

    watch = Watch(make_inputs)
    with watch.random_stream():
        outputs = measure(function, watch.make_inputs, positional)
    watch.changed()        # ["y"]: inputs whose values differ from a copy taken before the call
    watch.used_global_random   # True if the global stream (CPU, or CUDA if started) moved

The watch only observes (the sandbox records what it saw); ``findings`` turns that into what the
case costs, on the grading host and in the public tests.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable

import torch

# A state the global stream is put in for the call, so that a function that re-seeds it with any
# seed (even the one the notebook used last) leaves it in another state.
WATCH_SEED = 0x5EED_F10E

GLOBAL_RANDOM_HINT = ("draw every random number from the generator you are given; your function used or "
                      "re-seeded the global generator (torch.manual_seed, or torch.rand/randn without generator=)")


def _snapshot(value: Any) -> Any:
    """A copy of what an input holds: a tensor's values, a module's parameters and buffers; None
    for inputs that cannot change in place (numbers) or are meant to (generators)."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, torch.nn.Module):
        return {name: tensor.detach().clone() for name, tensor in
                [*value.named_parameters(), *value.named_buffers()]}
    return None


def _same(before: Any, value: Any) -> bool:
    """True when ``value`` still holds what ``before`` copied (NaN equal to NaN)."""
    if isinstance(before, torch.Tensor):
        now = value.detach()
        return now.shape == before.shape and now.dtype == before.dtype and \
            bool((now == before).logical_or(now.isnan() & before.isnan()).all())
    now = dict([*value.named_parameters(), *value.named_buffers()])
    return now.keys() == before.keys() and all(_same(before[name], now[name]) for name in before)


class Watch:
    """Hands out a test's inputs and remembers them, to tell afterwards what the call changed."""

    def __init__(self, make_inputs: Callable[[], dict[str, Any]]):
        self._make_inputs = make_inputs
        self._given: list[tuple[str, Any, Any]] = []
        self.used_global_random = False

    def make_inputs(self) -> dict[str, Any]:
        """Fresh inputs (as ``make_inputs`` gives them), each with a copy kept for ``changed``."""
        inputs = self._make_inputs()
        self._given.extend((name, value, _snapshot(value)) for name, value in inputs.items())
        return inputs

    def changed(self) -> list[str]:
        """Names of the inputs whose values the call changed, in argument order, each once."""
        return list(dict.fromkeys(name for name, value, before in self._given
                                  if before is not None and not _same(before, value)))

    @contextlib.contextmanager
    def random_stream(self):
        """Run the call with the global stream in a known state; afterwards set
        ``used_global_random`` if the call moved or re-seeded it, and give the caller its own
        stream back (a student's seeding must not leak into the notebook's later cells)."""
        saved_cpu = torch.get_rng_state()
        cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
        saved_cuda = torch.cuda.get_rng_state_all() if cuda else None
        torch.random.default_generator.manual_seed(WATCH_SEED)
        if cuda:
            torch.cuda.manual_seed_all(WATCH_SEED)
        start_cpu = torch.get_rng_state()
        start_cuda = torch.cuda.get_rng_state_all() if cuda else None
        try:
            yield self
        finally:
            moved = not torch.equal(torch.get_rng_state(), start_cpu)
            if cuda:
                moved = moved or any(not torch.equal(now, then) for now, then in
                                     zip(torch.cuda.get_rng_state_all(), start_cuda))
            self.used_global_random = self.used_global_random or moved
            torch.set_rng_state(saved_cpu)
            if cuda:
                torch.cuda.set_rng_state_all(saved_cuda)

    def effects(self) -> dict[str, Any]:
        """What a record stores: ``{"changed": [input names], "global_random": bool}``."""
        return {"changed": self.changed(), "global_random": self.used_global_random}


def in_place_message(function: str, names: list[str]) -> str:
    """``"label_dropout changed its argument y in place; return a new tensor"``."""
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    noun = "argument" if len(names) == 1 else "arguments"
    return (f"{function} changed its {noun} {listed} in place; return a new tensor and leave the inputs "
            f"as they were (the caller still needs them)")


def findings(function: str, changed: list[str], used_global_random: bool, case: dict) -> tuple[list[str], str | None]:
    """``(problems, hint)`` that a call's side effects cost, for a case's metadata ``case`` (keys
    ``may_change``: inputs the function may change; ``may_use_global_random``): the in-place
    message when it changed inputs it must not, and ``GLOBAL_RANDOM_HINT`` when it used the
    global stream."""
    allowed = set(case.get("may_change", ()))
    changed = [name for name in changed if name not in allowed]
    problems = [in_place_message(function, changed)] if changed else []
    hint = GLOBAL_RANDOM_HINT if used_global_random and not case.get("may_use_global_random", False) else None
    return problems, hint
