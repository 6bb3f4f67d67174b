"""JupyterLab as a student should see it: ``python -m flowlab.lab [FOLDER] [jupyter lab options]``.

nbgrader's JupyterLab extension brings instructor tools (Formgrader, Create Assignment, and the
assignment and course lists of an nbgrader exchange, which this course does not use). This command
starts ``jupyter lab`` with the configuration folder ``flowlab/lab_config/`` first on
``JUPYTER_CONFIG_PATH``, where

    labconfig/page_config.json      disables those lab plugins (``disabledExtensions``)
    jupyter_server_config.json      disables their server extensions

and keeps nbgrader's **Validate** button (its ``validate-assignment`` plugin and server extension).
Nothing is written into the Python environment, so an instructor's plain ``jupyter lab`` (``make
lab-instructor``) still has every nbgrader panel. As root (a container), ``--allow-root`` is added:
JupyterLab refuses to start as root otherwise.
"""
from __future__ import annotations

import os
import subprocess
import sys
from flowlab.locations import PACKAGE_DIR

CONFIG_DIR = PACKAGE_DIR / "lab_config"


def environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default ``os.environ``) with ``CONFIG_DIR`` first on ``JUPYTER_CONFIG_PATH``."""
    env = dict(os.environ if base is None else base)
    paths = [str(CONFIG_DIR)] + [path for path in env.get("JUPYTER_CONFIG_PATH", "").split(os.pathsep) if path]
    env["JUPYTER_CONFIG_PATH"] = os.pathsep.join(paths)
    return env


def command(arguments: list[str]) -> list[str]:
    """The ``jupyter lab`` command line for ``arguments`` (a folder and options), run by this Python."""
    as_root = hasattr(os, "geteuid") and os.geteuid() == 0 and "--allow-root" not in arguments
    return [sys.executable, "-m", "jupyterlab", *arguments, *(["--allow-root"] if as_root else [])]


def main(arguments: list[str] | None = None) -> int:
    """Run JupyterLab in the student configuration; on POSIX this process becomes it (so that
    Ctrl-C reaches JupyterLab alone and its shutdown question works), elsewhere its exit code."""
    line = command(sys.argv[1:] if arguments is None else arguments)
    if os.name == "posix":
        os.execve(line[0], line, environment())
    return subprocess.call(line, env=environment())


if __name__ == "__main__":
    sys.exit(main())
