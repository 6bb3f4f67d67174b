"""The launcher, first process of a grading job: set the limits, become the job's user, exec.

    python -I -S -c "$(cat jail.py)" SPEC_JSON

``SPEC_JSON`` (built by ``flowlab_grader.sandbox``)::

    {"limits": {"RLIMIT_DATA": bytes, ...},   soft = hard: the notebook cannot raise them
     "uid": int | null,                       the job's own user (root grader), or stay who we are
     "cwd": path, "argv": [program, ...]}     exec'd with the environment as it is

It runs inside bubblewrap (which has already built the allowlisted file system and cleared the
environment; as root, bwrap leaves it ``CAP_SETUID`` and ``CAP_SETGID`` only) or, with
``--allow-unisolated``, straight on the host. It is handed over as source text with ``-I -S``:
nothing from the grader's folders needs to be inside the sandbox, and no ``site-packages`` code
runs before the user changes. Standard library only.
"""
from __future__ import annotations

import ctypes
import json
import os
import resource
import sys

PR_SET_NO_NEW_PRIVS = 38


def set_limits(limits: dict[str, int]) -> None:
    """``setrlimit`` each ``{"RLIMIT_DATA": bytes, ...}`` with soft = hard."""
    for name, value in limits.items():
        resource.setrlimit(getattr(resource, name), (int(value), int(value)))


def become(uid: int) -> None:
    """Become ``uid`` (group ``uid``, no supplementary groups) for good: once every id is
    unprivileged the kernel clears the capabilities, and no set-uid program can give them back."""
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    set_limits(spec.get("limits", {}))
    if spec.get("uid") is not None:
        become(int(spec["uid"]))
    os.chdir(spec["cwd"])
    os.execv(spec["argv"][0], spec["argv"])
    return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
