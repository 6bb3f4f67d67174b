"""flowlab.locations: one rule for the data folder, whatever the install."""
from __future__ import annotations

from pathlib import Path

import pytest

from flowlab import locations, pretrained

REPOSITORY = Path(__file__).resolve().parents[1]


@pytest.fixture
def unset(monkeypatch):
    monkeypatch.delenv("FLOWLAB_DATA", raising=False)


@pytest.fixture
def installed(tmp_path, monkeypatch, unset):
    """Pretend flowlab is a plain install: its package folder sits in a site-packages folder."""
    package = tmp_path / "site-packages" / "flowlab"
    package.mkdir(parents=True)
    monkeypatch.setattr(locations, "PACKAGE_DIR", package)
    return package


def test_a_checkout_uses_the_repository_data_folder(unset):
    assert locations.checkout_data_dir() == REPOSITORY / "data"
    assert locations.data_dir() == REPOSITORY / "data"
    assert locations.checkpoint_dir() == REPOSITORY / "data" / "checkpoints"
    assert locations.mnist_dir() == REPOSITORY / "data" / "mnist"


def test_an_installed_package_uses_its_own_copy(installed):
    assert locations.checkout_data_dir() is None
    assert locations.data_dir() == installed / "_data"
    assert locations.public_dir() == installed / "_data" / "public"


def test_an_installed_package_caches_mnist_in_the_user_cache(installed, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert locations.mnist_dir() == tmp_path / "cache" / "flowlab" / "mnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert locations.mnist_dir() == tmp_path / "home" / ".cache" / "flowlab" / "mnist"


@pytest.mark.parametrize("kind", ["checkout", "installed"])
def test_the_environment_variable_wins_and_is_read_at_each_call(kind, request, tmp_path, monkeypatch):
    if kind == "installed":
        request.getfixturevalue("installed")
    monkeypatch.setenv("FLOWLAB_DATA", str(tmp_path / "elsewhere"))
    assert locations.data_dir() == tmp_path / "elsewhere"
    assert locations.mnist_dir() == tmp_path / "elsewhere" / "mnist"
    assert pretrained.checkpoint_dir() == tmp_path / "elsewhere" / "checkpoints"
    monkeypatch.setenv("FLOWLAB_DATA", str(tmp_path / "again"))
    assert locations.public_dir() == tmp_path / "again" / "public"


def test_a_folder_without_pyproject_is_not_a_checkout(tmp_path, monkeypatch, unset):
    package = tmp_path / "flowlab"
    package.mkdir()
    (tmp_path / "data").mkdir()  # a data/ folder alone, e.g. in site-packages, must not be mistaken for one
    monkeypatch.setattr(locations, "PACKAGE_DIR", package)
    assert locations.data_dir() == package / "_data"
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'flowlab'\n")
    assert locations.data_dir() == tmp_path / "data"
