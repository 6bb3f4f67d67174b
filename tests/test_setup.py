"""Packaging: pyproject.toml (pip) and environment.yml (conda) name the same dependencies, the wheel
holds every package and the shipped data, and a plain (non-editable) `pip install .` works."""
from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
import tomllib
import venv
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
# Conda packages whose name differs from the PyPI distribution they provide.
CONDA_TO_PYPI = {"pytorch": "torch"}
# Conda entries that are the toolchain, not dependencies of flowlab.
CONDA_TOOLCHAIN = {"python", "pip"}


def normalise(requirement: str) -> str:
    """Distribution name of a requirement, PEP 503-normalised: ``"Scikit_Learn>=1.3"`` -> ``"scikit-learn"``."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if match is None:
        raise ValueError(f"cannot read a package name from {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def split_dependencies(environment: dict) -> tuple[list[str], list[str]]:
    """``(conda entries, pip entries)`` of a parsed environment.yml: strings, and one ``{"pip": [...]}``."""
    conda, pip = [], []
    for entry in environment.get("dependencies", []):
        if isinstance(entry, str):
            conda.append(entry)
        elif isinstance(entry, dict) and set(entry) == {"pip"} and isinstance(entry["pip"], list):
            pip += entry["pip"]
        else:
            raise ValueError(f"unexpected entry in environment.yml dependencies: {entry!r} "
                             f"(expected a conda requirement string or a {{'pip': [...]}} list)")
    return conda, pip


def environment_names(environment: dict) -> set[str]:
    """PyPI names of everything the conda environment installs, without toolchain and ``-e .``."""
    conda, pip = split_dependencies(environment)
    conda_names = {CONDA_TO_PYPI.get(normalise(item), normalise(item)) for item in conda}
    pip_names = {normalise(item) for item in pip if not item.startswith("-e")}
    return (conda_names - CONDA_TOOLCHAIN) | pip_names


def pyproject_names(project: dict) -> set[str]:
    """Runtime dependencies plus every optional-dependency group (the test extras)."""
    requirements = list(project.get("dependencies", []))
    for group in project.get("optional-dependencies", {}).values():
        requirements += group
    return {normalise(requirement) for requirement in requirements}


@pytest.fixture(scope="module")
def pyproject() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as file:
        return tomllib.load(file)


@pytest.fixture(scope="module")
def project(pyproject) -> dict:
    return pyproject["project"]


@pytest.fixture(scope="module")
def environment() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def test_environment_installs_every_pyproject_dependency(project, environment):
    missing = pyproject_names(project) - environment_names(environment)
    assert not missing, f"in pyproject.toml but not in environment.yml: {sorted(missing)}"


def test_environment_installs_nothing_pyproject_lacks(project, environment):
    extra = environment_names(environment) - pyproject_names(project)
    assert not extra, f"in environment.yml but not in pyproject.toml: {sorted(extra)}"


def test_environment_installs_flowlab_itself(environment):
    _, pip = split_dependencies(environment)
    assert "-e ." in pip, "the conda environment must install the checkout (pip: -e .)"


def test_environment_python_satisfies_requires_python(project, environment):
    conda, _ = split_dependencies(environment)
    (python,) = [item for item in conda if normalise(item) == "python"]
    version = tuple(int(part) for part in re.search(r"(\d+)\.(\d+)", python).groups())
    minimum = tuple(int(part) for part in re.search(r">=\s*(\d+)\.(\d+)", project["requires-python"]).groups())
    assert version >= minimum, f"environment.yml has {python}, pyproject needs {project['requires-python']}"


SAMPLE = """\
name: demo   # a comment
channels:
  - conda-forge
dependencies:
  - python=3.11
  - pytorch>=2.2
  - Scikit_Learn>=1.3
  - pip
  - pip:
      - torchdiffeq>=0.2.3
      - -e .
"""


def test_environment_names_map_conda_names_and_read_the_pip_list():
    assert environment_names(yaml.safe_load(SAMPLE)) == {"torch", "scikit-learn", "torchdiffeq"}


def test_a_dependency_added_to_one_file_only_is_caught(project):
    """The comparison must see a one-sided addition in either file."""
    one_sided = yaml.safe_load(SAMPLE.replace("  - pip\n", "  - pandas>=2\n  - pip\n"))
    assert "pandas" in environment_names(one_sided) - pyproject_names(project)
    widened = dict(project, dependencies=project["dependencies"] + ["einops>=0.7"])
    assert "einops" in pyproject_names(widened) - environment_names(yaml.safe_load(SAMPLE))


def test_an_environment_entry_it_does_not_understand_is_an_error():
    with pytest.raises(ValueError, match="unexpected entry"):
        environment_names(yaml.safe_load("dependencies:\n  - numpy: 1.24\n"))


# ---- the wheel: every package, the shipped data, nothing else ------------------------------------

def package_folders() -> set[str]:
    """Dotted names of the folders under flowlab/ that hold files (Python modules or package data:
    setuptools installs a data folder only when it is listed as a package too)."""
    return {".".join(path.parent.relative_to(ROOT).parts) for path in (ROOT / "flowlab").rglob("*")
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"}


def data_packages(pyproject: dict) -> dict[str, Path]:
    """``{package: folder}`` of the listed packages that live outside flowlab/ (mapped by package-dir)."""
    mapping = pyproject["tool"]["setuptools"].get("package-dir", {})
    found = {}
    for package in pyproject["tool"]["setuptools"]["packages"]:
        parents = [prefix for prefix in mapping if package == prefix or package.startswith(prefix + ".")]
        if parents:
            prefix = max(parents, key=len)
            found[package] = ROOT / mapping[prefix] / Path(*package[len(prefix):].split(".")[1:])
    return found


def test_every_package_folder_is_listed_in_pyproject(pyproject):
    listed = set(pyproject["tool"]["setuptools"]["packages"]) - set(data_packages(pyproject))
    assert listed == package_folders(), (f"pyproject.toml [tool.setuptools] packages is out of date: "
                                         f"missing {sorted(package_folders() - listed)}, "
                                         f"gone {sorted(listed - package_folders())}")


def test_the_wheel_ships_every_checkpoint_and_public_reference_and_no_mnist_cache(pyproject):
    folders = data_packages(pyproject)
    assert sorted(path.relative_to(ROOT).as_posix() for path in folders.values()) == ["data/checkpoints",
                                                                                     "data/public"]
    patterns = pyproject["tool"]["setuptools"]["package-data"]
    for package, folder in folders.items():
        files = sorted(path.name for path in folder.iterdir() if path.is_file())
        assert files, f"{folder} is empty"
        left_out = [name for name in files if not any(fnmatch.fnmatch(name, p) for p in patterns[package])]
        assert not left_out, f"package-data of {package} misses {left_out}"


# ---- a plain `pip install .` in a fresh virtual environment --------------------------------------

IGNORED_WHEN_COPYING = shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__", "demo-out",
                                              "*-ubyte*", ".*.part", "autograder", "notebooks", "tests")
FAKE_MNIST_CACHE = "train-images-idx3-ubyte.gz"

LOAD_EVERY_CHECKPOINT = """
import json, flowlab
from flowlab import locations, pretrained
names = pretrained.available()
for name in names:
    pretrained.load(name)
data = locations.data_dir()
print(json.dumps({"package": flowlab.__file__, "data": str(data), "checkpoints": names,
                  "files": sorted(p.relative_to(data).as_posix() for p in data.rglob("*") if p.is_file()),
                  "mnist": str(locations.mnist_dir())}))
"""


def is_flowlab_install(name: str) -> bool:
    """An entry of site-packages that belongs to an install of flowlab or its grader, or that runs at start-up."""
    return name.lower().startswith(("flowlab", "__editable__")) or name.endswith(".pth")


def fresh_venv(folder: Path) -> Path:
    """A venv without pip that sees this interpreter's packages (torch, pip, setuptools, ...: nothing is
    reinstalled) but none of its flowlab installs, as if flowlab had never been installed. It gets them
    through a folder of links to every other entry of this site-packages. Returns its python."""
    venv.create(folder / "venv", with_pip=False)
    python = folder / "venv" / "bin" / "python"
    dependencies = folder / "dependencies"
    dependencies.mkdir()
    for entry in Path(sysconfig.get_path("purelib")).iterdir():
        if not is_flowlab_install(entry.name):
            (dependencies / entry.name).symlink_to(entry)
    site_packages = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                   capture_output=True, text=True, check=True).stdout.strip()
    (Path(site_packages) / "dependencies.pth").write_text(f"{dependencies}\n")
    return python


def run(command: list[str], cwd: Path, environment: dict) -> subprocess.CompletedProcess:
    result = subprocess.run([str(part) for part in command], cwd=cwd, env=environment, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.slow
def test_a_plain_pip_install_runs_the_demo_and_loads_every_checkpoint(tmp_path):
    timings = {}
    source, outside = tmp_path / "source", tmp_path / "elsewhere"
    shutil.copytree(ROOT, source, ignore=IGNORED_WHEN_COPYING)
    (source / "data" / "mnist" / FAKE_MNIST_CACHE).write_bytes(b"a download that must stay out of the wheel")
    outside.mkdir()
    start = time.perf_counter()
    python = fresh_venv(tmp_path)
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("FLOWLAB_DATA", "PYTHONPATH", "VIRTUAL_ENV")}
    environment["PATH"] = f"{python.parent}{os.pathsep}{environment.get('PATH', '')}"
    environment["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    install = run([python, "-m", "pip", "install", "-v", "--no-deps", "--no-build-isolation", "--no-index",
                   source], outside, environment)
    timings["venv + pip install"] = time.perf_counter() - start
    warnings = [line for line in install.stdout.splitlines() + install.stderr.splitlines()
                if "DeprecationWarning" in line or "BuildBackendWarning" in line]
    assert not warnings, warnings

    start = time.perf_counter()
    loaded = json.loads(run([python, "-c", LOAD_EVERY_CHECKPOINT], outside, environment).stdout)
    timings["load every checkpoint"] = time.perf_counter() - start
    package = Path(loaded["package"]).parent
    assert package.is_relative_to(tmp_path / "venv"), f"imported {package}, not the installed copy"
    assert Path(loaded["data"]) == package / "_data"
    shipped = sorted(path.stem for path in (ROOT / "data" / "checkpoints").glob("*.safetensors"))
    assert loaded["checkpoints"] == shipped
    expected = sorted(path.relative_to(ROOT / "data").as_posix() for folder in ("checkpoints", "public")
                      for path in (ROOT / "data" / folder).iterdir() if path.is_file())
    assert loaded["files"] == expected, "the installed data differs from data/checkpoints + data/public"
    assert Path(loaded["mnist"]) == tmp_path / "cache" / "flowlab" / "mnist"

    start = time.perf_counter()
    run([python.parent / "flowlab", "demo", "--quick", "--out", outside / "demo"], outside, environment)
    timings["flowlab demo --quick"] = time.perf_counter() - start
    assert (outside / "demo" / "index.html").is_file()
    print("fresh venv, seconds:", {step: round(seconds, 1) for step, seconds in timings.items()})
