"""Where flowlab finds its data: the shipped checkpoints, the public reference cases, the MNIST cache.

Every module asks this one for a folder; none works it out from its own ``__file__``. The data
folder is, for every kind of install (the environment variable is read at each call, so tests and
the grader's sandbox can redirect it):

1. ``$FLOWLAB_DATA`` when it is set;
2. the repository's ``data/`` when flowlab runs from a checkout (an editable install, or the
   repository on ``PYTHONPATH``), recognised by ``pyproject.toml`` and ``data/`` beside the
   package folder;
3. else the copy installed with the package, ``flowlab/_data/`` (a plain ``pip install .`` maps
   the repository's ``data/checkpoints`` and ``data/public`` there; see pyproject.toml).

The MNIST download cache has to be writable, and an installed package folder may not be, nor
should a download land inside it: without ``$FLOWLAB_DATA`` and outside a checkout it lives in the
user's cache folder, ``$XDG_CACHE_HOME/flowlab/mnist`` (default ``~/.cache/flowlab/mnist``).
"""
from __future__ import annotations

import os
from pathlib import Path

ENVIRONMENT_VARIABLE = "FLOWLAB_DATA"
PACKAGE_DIR = Path(__file__).resolve().parent
INSTALLED_DATA = "_data"  # the package-relative folder that pyproject.toml maps data/ to


def checkout_data_dir() -> Path | None:
    """The repository's ``data/`` when this flowlab is a checkout's package folder, else ``None``."""
    repository = PACKAGE_DIR.parent
    if (repository / "pyproject.toml").is_file() and (repository / "data").is_dir():
        return repository / "data"
    return None


def data_dir() -> Path:
    """The data folder: ``$FLOWLAB_DATA``, else the checkout's ``data/``, else ``flowlab/_data``."""
    override = os.environ.get(ENVIRONMENT_VARIABLE)
    if override:
        return Path(override)
    return checkout_data_dir() or PACKAGE_DIR / INSTALLED_DATA


def checkpoint_dir() -> Path:
    """The shipped model checkpoints (``<name>.safetensors`` + ``<name>.json``): ``data_dir() / "checkpoints"``."""
    return data_dir() / "checkpoints"


def public_dir() -> Path:
    """The public reference cases of the notebooks (``<assignment>.npz``): ``data_dir() / "public"``."""
    return data_dir() / "public"


def mnist_dir() -> Path:
    """The MNIST IDX cache: ``data_dir() / "mnist"`` with ``$FLOWLAB_DATA`` or in a checkout, else
    ``$XDG_CACHE_HOME/flowlab/mnist`` (a user folder: the installed package is no place for downloads)."""
    if os.environ.get(ENVIRONMENT_VARIABLE) or checkout_data_dir() is not None:
        return data_dir() / "mnist"
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "flowlab" / "mnist"
