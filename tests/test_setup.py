"""Packaging: pyproject.toml (pip) and environment.yml (conda) must name the same dependencies."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

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


def parse_environment(text: str) -> dict:
    """Read the subset of YAML that environment.yml uses: top-level ``key: value`` and ``key:`` with a
    ``- item`` list, where the ``dependencies`` list may hold one ``- pip:`` sub-list.

    Returns ``{"name": str, "channels": [...], "conda": [...], "pip": [...]}`` (raw entries).
    """
    parsed = {"name": None, "channels": [], "conda": [], "pip": []}
    section, pip_indent = None, None
    for raw_line in text.splitlines():
        line = raw_line.split(" #")[0].rstrip() if not raw_line.lstrip().startswith("#") else ""
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        content = line.strip()
        if indent == 0:
            key, _, value = content.partition(":")
            section, pip_indent = key.strip(), None
            if section == "name":
                parsed["name"] = value.strip()
            continue
        if not content.startswith("- "):
            raise ValueError(f"unexpected line in environment.yml: {raw_line!r}")
        item = content[2:].strip()
        if section == "channels":
            parsed["channels"].append(item)
        elif section == "dependencies":
            if pip_indent is not None and indent > pip_indent:
                parsed["pip"].append(item)
            elif item == "pip:":
                pip_indent = indent
            else:
                pip_indent = None
                parsed["conda"].append(item)
    return parsed


def environment_names(parsed: dict) -> set[str]:
    """PyPI names of everything the conda environment installs, without toolchain and ``-e .``."""
    conda = {CONDA_TO_PYPI.get(normalise(item), normalise(item)) for item in parsed["conda"]}
    pip = {normalise(item) for item in parsed["pip"] if not item.startswith("-e")}
    return (conda - CONDA_TOOLCHAIN) | pip


def pyproject_names(project: dict) -> set[str]:
    """Runtime dependencies plus every optional-dependency group (the test extras)."""
    requirements = list(project.get("dependencies", []))
    for group in project.get("optional-dependencies", {}).values():
        requirements += group
    return {normalise(requirement) for requirement in requirements}


@pytest.fixture(scope="module")
def project() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as file:
        return tomllib.load(file)["project"]


@pytest.fixture(scope="module")
def environment() -> dict:
    return parse_environment((ROOT / "environment.yml").read_text())


def test_environment_installs_every_pyproject_dependency(project, environment):
    missing = pyproject_names(project) - environment_names(environment)
    assert not missing, f"in pyproject.toml but not in environment.yml: {sorted(missing)}"


def test_environment_installs_nothing_pyproject_lacks(project, environment):
    extra = environment_names(environment) - pyproject_names(project)
    assert not extra, f"in environment.yml but not in pyproject.toml: {sorted(extra)}"


def test_environment_installs_flowlab_itself_and_its_tests(environment):
    assert environment["name"] == "flowlab"
    assert "-e ." in environment["pip"]
    assert "conda-forge" in environment["channels"]
    assert {"pytest", "torchdiffeq"} <= environment_names(environment)


def test_environment_python_satisfies_requires_python(project, environment):
    (python,) = [item for item in environment["conda"] if normalise(item) == "python"]
    version = tuple(int(part) for part in re.search(r"(\d+)\.(\d+)", python).groups())
    minimum = tuple(int(part) for part in re.search(r">=\s*(\d+)\.(\d+)", project["requires-python"]).groups())
    assert version >= minimum, f"environment.yml has {python}, pyproject needs {project['requires-python']}"


def test_console_script_is_declared(project):
    assert project["scripts"]["flowlab"] == "flowlab.cli:main"


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


def test_parser_reads_conda_and_pip_entries():
    parsed = parse_environment(SAMPLE)
    assert parsed["name"] == "demo" and parsed["channels"] == ["conda-forge"]
    assert parsed["pip"] == ["torchdiffeq>=0.2.3", "-e ."]
    assert environment_names(parsed) == {"torch", "scikit-learn", "torchdiffeq"}


def test_a_dependency_added_to_one_file_only_is_caught(project):
    """The comparison must see a one-sided addition in either file."""
    one_sided = parse_environment(SAMPLE.replace("  - pip\n", "  - pandas>=2\n  - pip\n"))
    assert "pandas" in environment_names(one_sided) - pyproject_names(project)
    widened = dict(project, dependencies=project["dependencies"] + ["einops>=0.7"])
    assert "einops" in pyproject_names(widened) - environment_names(parse_environment(SAMPLE))


def test_parser_rejects_what_it_does_not_understand():
    with pytest.raises(ValueError, match="unexpected line"):
        parse_environment("dependencies:\n  numpy: 1.24\n")
