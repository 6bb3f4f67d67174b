"""Pythons for the tests of the sandbox's ``user`` level: one every user may run, one only root may.

A job at that level runs as an unprivileged user of its own, which cannot start a Python installed
under root's 0700 home (pyenv's, on this machine). Gradescope's is ``/usr/bin/python3``:
``for_every_user`` makes a virtual environment of the system's Python in a world-readable folder,
importing this environment's packages (and their console scripts, which nbgrader calls), when the
two are the same version. ``root_only`` shows this environment through a 0700 folder.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"


def for_every_user() -> str | None:
    """The path of such a Python, or None (no ``SYSTEM_PYTHON``, or another version of it)."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return None
    version = subprocess.run([SYSTEM_PYTHON, "-c", "import sys; print(sys.version_info[:2])"],
                             capture_output=True, text=True).stdout.strip()
    if version != str(sys.version_info[:2]):
        return None
    folder = Path(tempfile.mkdtemp(prefix="flowlab-every-user-"))
    os.chmod(folder, 0o755)
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", "--without-pip", str(folder)], check=True)
    site = subprocess.run([str(folder / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    ours = sysconfig.get_paths()["purelib"]
    Path(site, "flowlab-environment.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    for script in Path(sys.executable).parent.iterdir():
        if not script.name.startswith(("python", "activate")) and not (folder / "bin" / script.name).exists():
            (folder / "bin" / script.name).symlink_to(script)
    return str(folder / "bin" / "python")


def remove(python: str | None) -> None:
    if python:
        shutil.rmtree(Path(python).parent.parent, ignore_errors=True)


def root_only(folder: Path) -> Path:
    """This environment's Python, reached through ``folder`` (made, 0700): root runs it, no other user can."""
    folder.mkdir(mode=0o700)
    (folder / "venv").symlink_to(sys.prefix)
    return folder / "venv" / "bin" / Path(sys.executable).name
