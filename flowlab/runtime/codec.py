"""Test inputs and outputs as plain arrays plus JSON: what crosses the sandbox wall, both ways.

Inputs of one call are a dict ``{argument name: value}``; each value is encoded as

    tensor                  an array ``<prefix><name>`` and ``{"kind": "tensor"}``
    float, int, bool, None  ``{"kind": "value", "value": v}``
    a fixture (AffineVelocity)  arrays ``<prefix><name>.<field>`` and ``{"kind": "fixture", "class": ...}``
    GeneratorSeed(s)        ``{"kind": "generator", "seed": s}``: a fresh ``torch.Generator`` each decode

A bundle on disk is ``NAME.npz`` (arrays, loaded with ``allow_pickle=False``) and ``NAME.json``
(everything else). Nothing is ever unpickled, on either side.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from flowlab.runtime.fixtures import FIXTURES


@dataclass(frozen=True)
class GeneratorSeed:
    """Stands for ``torch.Generator().manual_seed(seed)`` in test inputs: decoded afresh each time,
    so that two decodes give two generators that draw the same numbers."""
    seed: int


def encode_inputs(inputs: Mapping[str, Any], prefix: str) -> tuple[dict[str, np.ndarray], list[dict]]:
    """``(arrays, spec)`` for one call's inputs; array names start with ``prefix``. ``spec`` is a
    list, one ``{"name": ..., "kind": ...}`` per input in argument order (JSON objects have none)."""
    arrays: dict[str, np.ndarray] = {}
    spec: dict[str, dict] = {}
    for name, value in inputs.items():
        if isinstance(value, torch.Tensor):
            arrays[prefix + name] = value.detach().cpu().numpy()
            spec[name] = {"kind": "tensor"}
        elif isinstance(value, GeneratorSeed):
            spec[name] = {"kind": "generator", "seed": int(value.seed)}
        elif type(value).__name__ in FIXTURES and isinstance(value, FIXTURES[type(value).__name__]):
            fields = value.arrays()
            arrays.update({f"{prefix}{name}.{field}": array for field, array in fields.items()})
            spec[name] = {"kind": "fixture", "class": type(value).__name__, "fields": sorted(fields)}
        elif value is None or isinstance(value, (bool, int, float, str)):
            spec[name] = {"kind": "value", "value": value}
        else:
            raise TypeError(f"cannot encode input {name!r} of type {type(value).__name__}")
    return arrays, [{"name": name, **item} for name, item in spec.items()]


def decode_inputs(arrays: Mapping[str, np.ndarray], spec: list[dict], prefix: str) -> dict[str, Any]:
    """The inputs that ``encode_inputs`` encoded, in order: fresh tensors (CPU), fixtures, generators."""
    inputs: dict[str, Any] = {}
    for item in spec:
        name, kind = item["name"], item["kind"]
        if kind == "tensor":
            inputs[name] = torch.from_numpy(np.array(arrays[prefix + name]))
        elif kind == "generator":
            inputs[name] = torch.Generator().manual_seed(int(item["seed"]))
        elif kind == "fixture":
            fields = {field: arrays[f"{prefix}{name}.{field}"] for field in item["fields"]}
            inputs[name] = FIXTURES[item["class"]].from_arrays(fields)
        elif kind == "value":
            inputs[name] = item["value"]
        else:
            raise ValueError(f"unknown input kind {kind!r} for {name!r}")
    return inputs


def cast_inputs(inputs: Mapping[str, Any], dtype: torch.dtype | None, device: torch.device | str = "cpu") -> dict[str, Any]:
    """The same inputs with floating tensors and fixtures in ``dtype`` (None: as they are) on
    ``device`` (generators stay on the CPU, the library's convention: draw on the CPU, then move)."""
    cast: dict[str, Any] = {}
    for name, value in inputs.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device=device, dtype=dtype if dtype and value.is_floating_point() else value.dtype)
        elif isinstance(value, torch.nn.Module):
            value = value.to(device=device, dtype=dtype) if dtype else value.to(device=device)
        cast[name] = value
    return cast


def save_bundle(path: str | Path, arrays: Mapping[str, np.ndarray], meta: Mapping) -> Path:
    """Write ``path`` (``.npz``) and the ``.json`` beside it; returns the ``.npz`` path."""
    path = Path(path).with_suffix(".npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        np.savez(handle, **dict(sorted(arrays.items())))
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return path


def load_bundle(path: str | Path) -> tuple[dict[str, np.ndarray], dict]:
    """``(arrays, meta)`` from ``path`` (``.npz``) and its ``.json``; no pickle."""
    path = Path(path).with_suffix(".npz")
    with np.load(path, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    return arrays, json.loads(path.with_suffix(".json").read_text())
