"""The first process of a sandboxed grading job: hide, limit, drop privileges, exec.

    python -m flowlab_grader.jail SPEC.json

``SPEC.json`` (written by the host, see ``flowlab_grader.sandbox``) says what to do:

    {"mounts": bool,                 inside fresh mount/pid/net namespaces (``unshare``), as root
     "hide": [path, ...],            cover each with an empty read-only tmpfs (or a private /tmp)
     "keep": [path, ...],            ... but bind these back where they were (the Python install)
     "binds": [[source, target, read_only], ...],   e.g. the working copy to /tmp/submission
     "uid": int | null,              the unprivileged user to become (null: stay who we are)
     "limits": {"RLIMIT_AS": bytes, ...},
     "cwd": path, "env": {...}, "argv": [...]}

The order matters and is fixed here: descriptors of every kept or bound folder are opened
first (covering ``/tmp`` hides the working copy's host path), then the covers and binds are
mounted in order of depth, then the limits are set, then the user changes (no way back:
``setresuid`` plus ``PR_SET_NO_NEW_PRIVS``, so no set-uid program can regain root), then ``exec``.
Only the standard library is used: no student code has run yet, and this runs as root.
"""
from __future__ import annotations

import ctypes
import json
import os
import resource
import sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18
PR_SET_NO_NEW_PRIVS = 38
PRIVATE_TMP = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
_libc = ctypes.CDLL(None, use_errno=True)


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    encode = (lambda text: None if text is None else text.encode())
    if _libc.mount(encode(source), encode(target), encode(fstype), ctypes.c_ulong(flags), encode(data)) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"mount {source} on {target}: {os.strerror(error)}")


def _cover(path: str) -> None:
    """An empty tmpfs over ``path``: world-writable with the sticky bit for the temp folders (a
    private /tmp), else owned by root and read-only to everyone else."""
    if path in PRIVATE_TMP:
        _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=512m")
    else:
        _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m")


def _bind(descriptor: int, target: str, read_only: bool) -> None:
    os.makedirs(target, exist_ok=True)
    _mount(f"/proc/self/fd/{descriptor}", target, None, MS_BIND | MS_REC)
    if read_only:
        _mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _depth(path: str) -> int:
    return len([part for part in path.split("/") if part])


def arrange_mounts(spec: dict) -> None:
    """Cover ``hide``, re-bind ``keep`` and mount ``binds`` (see the module docstring)."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)          # nothing mounted here propagates to the host
    descriptors = {}
    for source in [*spec["keep"], *(bind[0] for bind in spec["binds"])]:
        if os.path.isdir(source):
            descriptors[source] = os.open(source, os.O_RDONLY | os.O_DIRECTORY)
    steps = [(_depth(path), 0, path, path, True) for path in spec["hide"]]
    steps += [(_depth(path), 1, path, path, False) for path in spec["keep"] if path in descriptors]
    steps += [(_depth(target), 2, source, target, read_only) for source, target, read_only in spec["binds"]]
    for _, kind, source, target, read_only in sorted(steps, key=lambda step: step[:2]):
        if kind == 0:
            if os.path.isdir(target):           # else a cover above already hid it
                _cover(target)
        elif kind == 1:
            if any(target.startswith(path.rstrip("/") + "/") for path in spec["hide"]):
                _bind(descriptors[source], target, read_only=True)
        else:
            _bind(descriptors[source], target, read_only)
    for descriptor in descriptors.values():
        os.close(descriptor)


def set_limits(limits: dict[str, int]) -> None:
    """``setrlimit`` each ``{"RLIMIT_AS": bytes, ...}`` (soft = hard: the student cannot raise it)."""
    for name, value in limits.items():
        resource.setrlimit(getattr(resource, name), (int(value), int(value)))


def become(uid: int) -> None:
    """Become ``uid`` (group ``uid``, no supplementary groups) for good."""
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")


def main(argv: list[str]) -> int:
    with open(argv[0]) as handle:
        spec = json.load(handle)
    if spec.get("mounts"):
        arrange_mounts(spec)
    set_limits(spec.get("limits", {}))
    if spec.get("uid") is not None:
        become(int(spec["uid"]))
    os.chdir(spec["cwd"])
    os.execve(spec["argv"][0], spec["argv"], spec["env"])
    return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
