"""Records: a student's outputs, written in the sandbox and read (carefully) on the host.

One record per test case, in the record folder::

    <key>.json     {"key", "status": "ok" | "error" | "timeout", "error", "outputs": {name: info},
                    "effects": {"changed": [input names], "global_random": bool}, ...}
    <key>.<name>.npy   the output's values (float64 for floating tensors), when it has values

(``/`` in a key becomes ``__`` in file names; the calls with the inputs on a GPU are recorded alike
in the subfolder ``cuda/``.) ``info`` describes what the function returned,
without judging it: ``{"type": "tensor", "dtype": "torch.float32", "shape": [64, 2], "device":
"cpu", "requires_grad": false}``; ``effects`` what the call did besides returning (see
``flowlab.runtime.side_effects``). The host decides whether any of it is right.

In the sandbox, ``record_call`` runs one test call with a time limit, swallowing prints, progress
bars and warnings (they never cost a point), and turns an exception into an ``error`` record.
On the host, ``read_record`` trusts nothing: no symlinks, size limits, no pickle, strict JSON.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import stat
import threading
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

MAX_JSON_BYTES = 64 * 1024
MAX_ARRAY_BYTES = 16 * 1024 * 1024
MAX_TEXT = 300
# How a device record starts its error when the device itself could not be used in the notebook's
# process (no driver, a broken context): not the student's function's doing (``hidden``).
DEVICE_UNAVAILABLE = "DeviceUnavailable: could not use the device"


class CallTimeout(BaseException):
    """Raised inside a student's function when a test call runs past its time limit (a
    ``BaseException``, so that ``except Exception`` in the student's code does not swallow it)."""


def file_stem(key: str) -> str:
    """The file name stem of a record: ``"interpolate/batch_t" -> "interpolate__batch_t"``."""
    return key.replace("/", "__")


def _short(text: str, limit: int = MAX_TEXT) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---- sandbox side: describe and write ------------------------------------------------------------

def describe(value: Any) -> tuple[dict, np.ndarray | None]:
    """``(info, values)`` for one output; values as float64 for floating tensors and arrays."""
    if isinstance(value, torch.Tensor):
        info = {"type": "tensor", "dtype": str(value.dtype), "shape": list(value.shape),
                "device": value.device.type, "requires_grad": bool(value.requires_grad)}
        data = value.detach().cpu()
        if data.is_complex():
            return info, None
        return info, (data.double() if data.is_floating_point() else data.long()).numpy()
    if isinstance(value, np.ndarray):
        info = {"type": "ndarray", "dtype": str(value.dtype), "shape": list(value.shape), "device": "cpu"}
        return info, value.astype(np.float64) if value.dtype.kind in "biuf" else None
    if isinstance(value, (bool, int, float)):
        return {"type": type(value).__name__, "dtype": type(value).__name__, "shape": [], "device": "cpu"}, \
            np.array(float(value))
    return {"type": type(value).__name__}, None


def _write_atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".part")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def write_record(folder: Path, key: str, status: str, outputs: dict[str, Any] | None = None,
                 error: str = "", seconds: float = 0.0, effects: dict[str, Any] | None = None) -> None:
    """Write the record of case ``key``: its outputs' infos (JSON) and values (``.npy``)."""
    folder.mkdir(parents=True, exist_ok=True)
    stem, infos = file_stem(key), {}
    for name, value in (outputs or {}).items():
        info, values = describe(value)
        if values is not None:
            buffer = io.BytesIO()
            np.save(buffer, values, allow_pickle=False)
            _write_atomic(folder / f"{stem}.{name}.npy", buffer.getvalue())
            info["array"] = True
        infos[name] = info
    document = {"key": key, "status": status, "error": _short(error), "outputs": infos, "seconds": round(seconds, 3)}
    if effects is not None:
        document["effects"] = effects
    _write_atomic(folder / f"{stem}.json", json.dumps(document).encode())


class _Discard(io.TextIOBase):
    """A text stream that counts what is written to it and keeps nothing."""

    def __init__(self):
        self.characters = 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.characters += len(text)
        return len(text)


@contextlib.contextmanager
def _time_limit(seconds: float):
    """Raise ``CallTimeout`` in this (main) thread after ``seconds``; a no-op in other threads."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise CallTimeout(f"the call took longer than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _describe_error(error: BaseException) -> str:
    frames = traceback.extract_tb(error.__traceback__)
    where = next((f" (line {frame.lineno}: {frame.line})" for frame in reversed(frames)
                  if frame.filename.startswith("<ipython-input") or "ipykernel" in frame.filename), "")
    return f"{type(error).__name__}: {error}{where}"


def record_call(folder: Path, key: str, run: Callable[[], dict[str, Any]], timeout: float,
                effects: Callable[[], dict[str, Any]] | None = None) -> str:
    """Run ``run()`` (one test call) under a time limit with prints and warnings discarded, and
    record its outputs (with ``effects()``, what the call did besides) or its error; returns the
    status (``ok``, ``error`` or ``timeout``)."""
    start = time.perf_counter()
    sink = _Discard()
    try:
        with _time_limit(timeout), warnings.catch_warnings(), \
                contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            warnings.simplefilter("ignore")
            outputs = run()
            noted = effects() if effects is not None else None
    except CallTimeout as error:
        write_record(folder, key, "timeout", error=str(error), seconds=time.perf_counter() - start)
        return "timeout"
    except (Exception, SystemExit) as error:  # the student's bug, reported in the feedback
        write_record(folder, key, "error", error=_describe_error(error), seconds=time.perf_counter() - start)
        return "error"
    write_record(folder, key, "ok", outputs, seconds=time.perf_counter() - start, effects=noted)
    return "ok"


def record(key: str, value: Any, folder: str | Path | None = None) -> None:
    """Record one value under ``key`` (in ``$FLOWLAB_RECORD_DIR`` unless ``folder`` is given)."""
    from flowlab.runtime.environment import record_dir

    folder = Path(folder) if folder is not None else record_dir()
    if folder is None:
        raise RuntimeError("no record folder: set FLOWLAB_RECORD_DIR or pass folder=")
    write_record(folder, key, "ok", {"value": value})


# ---- host side: read without trusting ------------------------------------------------------------

@dataclass
class Output:
    """One recorded output: what it was (``info``) and its values (float64), if any."""
    info: dict
    values: np.ndarray | None = None


@dataclass
class Record:
    """A case's record as read on the host; ``status`` ``absent`` or ``invalid`` when unusable."""
    key: str
    status: str
    error: str = ""
    outputs: dict[str, Output] = field(default_factory=dict)
    changed: list[str] = field(default_factory=list)
    global_random: bool = False


def _read_file(folder_fd: int, name: str, limit: int) -> bytes | None:
    """The bytes of regular file ``name`` in the folder (no symlinks), None if absent; ``ValueError``
    if it is not a regular file or larger than ``limit``."""
    try:
        descriptor = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=folder_fd)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise ValueError(f"{name} cannot be opened safely ({error.strerror})") from error
    with os.fdopen(descriptor, "rb") as handle:
        status = os.fstat(handle.fileno())
        if not stat.S_ISREG(status.st_mode) or status.st_size > limit:
            raise ValueError(f"{name} is not a regular file of at most {limit} bytes")
        return handle.read(limit + 1)


_INFO_TYPES = {"type": str, "dtype": str, "shape": list, "device": str, "requires_grad": bool, "array": bool}


def _clean_info(info: Any) -> dict:
    if not isinstance(info, dict):
        raise ValueError("an output description is not an object")
    clean = {name: info[name] for name, kind in _INFO_TYPES.items() if isinstance(info.get(name), kind)}
    for name in ("type", "dtype", "device"):
        if name in clean:
            clean[name] = _short(clean[name], 60)
    if "shape" in clean and not all(isinstance(n, int) and not isinstance(n, bool) for n in clean["shape"][:16]):
        del clean["shape"]
    return clean


def _clean_effects(effects: Any) -> tuple[list[str], bool]:
    """``(changed input names, global random used)`` from a record's ``effects``: at most 16 names,
    each a short identifier (they are shown to the student)."""
    if not isinstance(effects, dict):
        raise ValueError("the record's effects are not an object")
    changed = effects.get("changed", [])
    if not isinstance(changed, list) or len(changed) > 16 or \
            not all(isinstance(name, str) and name.isidentifier() and len(name) <= 60 for name in changed):
        raise ValueError("the record's changed inputs are not a short list of names")
    global_random = effects.get("global_random", False)
    if not isinstance(global_random, bool):
        raise ValueError("the record's global_random is not true or false")
    return changed, global_random


def read_record(folder_fd: int, key: str) -> Record:
    """The record of case ``key`` from the open record folder ``folder_fd``."""
    stem = file_stem(key)
    try:
        raw = _read_file(folder_fd, f"{stem}.json", MAX_JSON_BYTES)
        if raw is None:
            return Record(key, "absent")
        document = json.loads(raw.decode("utf-8"))
        if not isinstance(document, dict) or document.get("status") not in ("ok", "error", "timeout"):
            raise ValueError("the record has no valid status")
        result = Record(key, document["status"], _short(document.get("error", ""))
                        if isinstance(document.get("error", ""), str) else "")
        outputs = document.get("outputs", {})
        if not isinstance(outputs, dict) or len(outputs) > 64:
            raise ValueError("the record's outputs are not a small object")
        for name, info in outputs.items():
            info = _clean_info(info)
            values = None
            if info.get("array") and all(c.isalnum() or c in "._-" for c in name):
                data = _read_file(folder_fd, f"{stem}.{name}.npy", MAX_ARRAY_BYTES)
                values = None if data is None else _load_array(data)
            result.outputs[str(name)] = Output(info, values)
        result.changed, result.global_random = _clean_effects(document.get("effects", {}))
        return result
    except (ValueError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return Record(key, "invalid", _short(f"unreadable record: {error}"))


def _load_array(data: bytes) -> np.ndarray:
    array = np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)
    if array.dtype.kind not in "biuf":
        raise ValueError(f"recorded values of dtype {array.dtype} are not numbers")
    return array.astype(np.float64)


def open_folder(path: Path) -> int:
    """An ``O_DIRECTORY | O_NOFOLLOW`` descriptor of the record folder (close it with ``os.close``)."""
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)


def open_subfolder(folder_fd: int, name: str) -> int | None:
    """A descriptor of the folder ``name`` inside the open record folder (no symlinks), or None
    when there is none: the device records of ``cuda/``."""
    try:
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=folder_fd)
    except OSError:
        return None


def is_finite(values: np.ndarray) -> bool:
    """True when every value is finite (NaN and infinity are not)."""
    return bool(np.all(np.isfinite(values))) if values.size else True

