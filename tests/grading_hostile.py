"""Helpers of the sandbox tests: decoy copies of the course placed outside the checkout, and the
whole-filesystem search that a hostile notebook runs to find them.

A decoy is what an instructor's second copy of the course looks like (a TA's clone, a backup):
``autograder/references/*.npz`` (hidden references), ``autograder/cases/*.py``, a ``.git``
folder and other students' submissions. Every decoy path and file carries a random ``token``, and
each decoy ``.npz`` holds an array named after it, so the search can tell a decoy from the
legitimate files of the sandbox (the student bundle's public references, numpy's own test data).
"""
from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path

import numpy as np


def plant_decoy(root: Path, token: str) -> Path:
    """A copy of the course under ``root`` (created); returns its top folder."""
    top = root / f"flowlab-copy-{token}"
    references, cases = top / "autograder" / "references", top / "autograder" / "cases"
    for folder in (references, cases, top / ".git", top / "submitted" / "alice" / "01_flow_matching"):
        folder.mkdir(parents=True)
    buffer = io.BytesIO()
    np.savez(buffer, **{f"decoy_{token}": np.arange(4.0)})
    (references / "01_flow_matching.npz").write_bytes(buffer.getvalue())
    (references / f"data-{token}.bin").write_bytes(buffer.getvalue())     # an npz by content only
    (cases / "01_flow_matching.py").write_text(f"TOKEN = {token!r}\n")
    (top / ".git" / "HEAD").write_text(f"ref: refs/heads/{token}\n")
    (top / "submitted" / "alice" / "01_flow_matching" / "01_flow_matching.ipynb").write_text(f'{{"token": "{token}"}}')
    return top


def remove_decoy(top: Path) -> None:
    shutil.rmtree(top, ignore_errors=True)


# Run inside the sandbox: ``python -c SEARCH TOKEN [PRUNE ...]``; prints one JSON report. It walks
# the whole tree from / (no symlinks followed; /proc and /sys are the kernel's, not files), looks
# at every name, and opens every regular file up to 64 MiB: a zip whose members are ``.npy`` is an
# ``.npz`` whatever its name; the first 64 KiB are searched for the token.
SEARCH = r'''
import json, os, stat, sys, zipfile
token, prune = sys.argv[1], {"/proc", "/sys", *sys.argv[2:]}
report = {"npz": [], "token": [], "git": [], "autograder": [], "cases": [], "notebooks": [], "files": 0}
for folder, folders, files in os.walk("/", followlinks=False):
    folders[:] = [name for name in folders if os.path.join(folder, name) not in prune]
    for name in folders:
        path = os.path.join(folder, name)
        report["git"] += [path] if name == ".git" else []
        report["autograder"] += [path] if name == "autograder" else []
        report["cases"] += [path] if name == "cases" and os.path.basename(folder) == "autograder" else []
    for name in files:
        path = os.path.join(folder, name)
        report["token"] += [path] if token in path else []
        report["notebooks"] += [path] if name.endswith(".ipynb") else []
        try:
            status = os.lstat(path)
            if not stat.S_ISREG(status.st_mode) or status.st_size > 64 * 2**20:
                continue
            with open(path, "rb") as handle:
                head = handle.read(65536)
        except OSError:
            continue
        report["files"] += 1
        if token.encode() in head and path not in report["token"]:
            report["token"].append(path)
        if head[:4] == b"PK\x03\x04" or name.endswith(".npz"):
            try:
                members = zipfile.ZipFile(path).namelist()
            except Exception:
                continue
            if name.endswith(".npz") or any(member.endswith(".npy") for member in members):
                report["npz"].append([path, members[:20]])
print(json.dumps(report))
'''


# Notebook source for a hostile cell: ``readable(path)`` is True when ``path`` opens and holds bytes.
READABLE = """
def readable(path):
    try:
        with open(path, "rb") as handle:
            return len(handle.read(16)) > 0
    except OSError:
        return False
"""
