"""The students' setup: CPU torch before the course package, in the bundle and in the repository.

On Linux, ``pip install torch`` (or ``pip install -e .``, whose ``torch>=2.2`` pulls it) installs the
CUDA build, several GB; the course runs on a CPU. Every documented route installs torch from the
CPU-only index first: the bundle's Makefile and README, the repository's Makefile, the conda file.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from flowlab import lab
from flowlab_grader import release

ROOT = Path(__file__).resolve().parents[1]
CPU_INDEX = "--index-url https://download.pytorch.org/whl/cpu"


def dry_run(makefile: Path, target: str, folder: Path) -> list[str]:
    """The command lines ``make target`` would run in ``folder`` (``make -n``), none of them run."""
    for prerequisite in ("pyproject.toml", "autograder/pyproject.toml"):   # what the install steps depend on
        (folder / prerequisite).parent.mkdir(exist_ok=True)
        (folder / prerequisite).touch()
    done = subprocess.run(["make", "-n", "-f", str(makefile), "-C", str(folder), target],
                          capture_output=True, text=True, check=True)
    return [line for line in done.stdout.splitlines() if line and not line.startswith(("make", "#"))]


def position(lines: list[str], *needles: str) -> int:
    """Index of the first line that holds every needle; fails naming them if there is none."""
    for index, line in enumerate(lines):
        if all(needle in line for needle in needles):
            return index
    raise AssertionError(f"no line with {needles} in:\n" + "\n".join(lines))


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("makefile, target, install", [
    (ROOT / "autograder" / "bundle" / "Makefile", "lab", "install -e ."),
    (ROOT / "Makefile", "env", 'install --quiet -e ".[test]"'),
])
def test_make_installs_cpu_torch_before_the_course(makefile, target, install, tmp_path):
    lines = dry_run(makefile, target, tmp_path)
    torch_line = position(lines, "pip install", "torch==", CPU_INDEX)
    assert torch_line < position(lines, "pip", install), "torch (CPU) must come before the course package"


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_the_bundle_makefile_opens_the_student_lab(tmp_path):
    lines = dry_run(ROOT / "autograder" / "bundle" / "Makefile", "lab", tmp_path)
    assert lines[-1].endswith("-m flowlab.lab notebooks/")


def test_the_bundle_readme_installs_cpu_torch_first_and_names_conda():
    text = (release.BUNDLE_SETUP_DIR / "README.md").read_text()
    lines = text.splitlines()
    assert position(lines, "pip install torch==", CPU_INDEX) < position(lines, "pip install -e .")
    assert "make lab" in text and "conda env create -f environment.yml" in text


def test_the_conda_environment_asks_for_the_cpu_build_of_pytorch():
    dependencies = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    (pytorch,) = [entry for entry in dependencies if isinstance(entry, str) and entry.startswith("pytorch")]
    name, version, build = pytorch.split()
    assert (name, build) == ("pytorch", "cpu_*") and version.startswith(">=")


def test_build_release_puts_the_setup_files_in_the_bundle(tmp_path, monkeypatch):
    """Only the setup step runs: notebooks, library, data and leak check are replaced by no-ops."""
    monkeypatch.setattr(release, "generate_student_notebooks", lambda released, folder: [])
    monkeypatch.setattr(release, "build_library", lambda out, stub_from: [])
    monkeypatch.setattr(release, "copy_data", lambda out, released: None)
    monkeypatch.setattr(release, "check_leaks", lambda out, stub_from: [])
    out = tmp_path / "bundle"
    release.build_release(out, through=1)
    for template in release.BUNDLE_SETUP_DIR.iterdir():
        assert (out / template.name).read_bytes() == template.read_bytes(), template.name
    assert {"Makefile", "README.md", "environment.yml", "pyproject.toml"} <= {path.name for path in out.iterdir()}


@pytest.mark.parametrize("uid, added", [(0, True), (1000, False)])
def test_lab_allows_root_only_as_root(monkeypatch, uid, added):
    """JupyterLab refuses to start as root without --allow-root: `make lab` in a container."""
    monkeypatch.setattr(lab.os, "geteuid", lambda: uid, raising=False)
    line = lab.command(["notebooks/"])
    assert line[-2:] == (["notebooks/", "--allow-root"] if added else [line[-2], "notebooks/"])
    assert lab.command(["notebooks/", "--allow-root"]).count("--allow-root") == 1
