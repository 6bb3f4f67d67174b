"""A reference file loaded: test inputs, expected outputs and known wrong answers, per case.

Written by ``flowlab references`` (see ``flowlab_grader.references``); read on the host to grade
hidden cases and in the student's kernel for the public ones (``flowlab.runtime.public``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flowlab.runtime.codec import decode_inputs, load_bundle
from flowlab.runtime.compare import Check, from_json


@dataclass
class ReferenceSet:
    """A loaded reference file: arrays and metadata, with accessors per case."""
    arrays: dict[str, np.ndarray]
    meta: dict

    @classmethod
    def load(cls, path: Path) -> "ReferenceSet":
        return cls(*load_bundle(path))

    def keys(self, function: str | None = None) -> list[str]:
        """Case keys (of ``function``'s cases only, if given) in the order the cases file defines them."""
        order = self.meta.get("order", sorted(self.meta["cases"]))
        return [key for key in order if function in (None, self.meta["cases"][key]["function"])]

    def case(self, key: str) -> dict:
        return self.meta["cases"][key]

    def expected(self, key: str) -> dict[str, np.ndarray]:
        return {name: self.arrays[f"{key}|expected|{name}"] for name in self.case(key)["outputs"]}

    def check(self, key: str) -> Check:
        return from_json(self.case(key)["check"])

    def wrong_answers(self, key: str) -> dict[str, tuple[str, dict[str, np.ndarray]]]:
        answers = {}
        for variant, message in self.case(key)["wrong"].items():
            prefix = f"{key}|wrong:{variant}|"
            answers[variant] = (message, {name[len(prefix):]: array for name, array in self.arrays.items()
                                          if name.startswith(prefix)})
        return answers

    def make_inputs(self, key: str) -> dict[str, Any]:
        return decode_inputs(self.arrays, self.case(key)["inputs"], f"{key}|input|")

    def inputs_only(self) -> tuple[dict[str, np.ndarray], dict]:
        """What the sandbox may see: the input arrays and how to call, nothing expected."""
        arrays = {name: array for name, array in self.arrays.items() if name.split("|")[1] == "input"}
        cases = {key: {field: case[field] for field in ("function", "positional", "measure", "inputs")}
                 for key, case in self.meta["cases"].items()}
        return arrays, {"assignment": self.meta["assignment"], "cases": cases}
