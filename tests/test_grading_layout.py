"""The two packages and the line between them: ``flowlab`` (the student package, released whole,
with its kernel-side runtime ``flowlab.runtime``) and ``flowlab_grader`` (the instructor's grader in
``autograder/``, never released). Every module imports; no project module imports itself back
through others (no cycles); nothing in ``flowlab`` imports the grader."""
import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import flowlab
import flowlab_grader

PACKAGES = (flowlab, flowlab_grader)


def project_modules() -> dict[str, Path]:
    """``{"flowlab.runtime.hidden": path, ...}`` for every module of both packages."""
    found = {}
    for package in PACKAGES:
        root = Path(package.__file__).parent
        found[package.__name__] = root / "__init__.py"
        for info in pkgutil.walk_packages([str(root)], prefix=package.__name__ + "."):
            relative = info.name.split(".")[1:]
            path = root.joinpath(*relative)
            found[info.name] = path / "__init__.py" if info.ispkg else path.with_suffix(".py")
    return found


MODULES = project_modules()


def imported_modules(name: str, path: Path) -> set[str]:
    """The project modules that module ``name`` imports anywhere in it (functions included):
    ``from a.b import c`` counts as ``a.b.c`` when that is a module, else as ``a.b``."""
    edges = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in MODULES else node.module
                       for alias in node.names]
        else:
            continue
        edges |= {target for target in targets if target in MODULES and target != name}
    return edges


GRAPH = {name: imported_modules(name, path) for name, path in MODULES.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of nodes (first == last), or None (depth-first search)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_both_packages_were_found():
    assert {"flowlab.runtime.hidden", "flowlab.runtime.environment", "flowlab_grader.grade",
            "flowlab_grader.release", "flowlab_grader.leaks"} <= set(MODULES)


def test_no_import_cycle_among_project_modules():
    assert find_cycle(GRAPH) is None, f"import cycle: {' -> '.join(find_cycle(GRAPH))}"


def test_the_student_package_never_imports_the_grader():
    offenders = {name: sorted(target for target in targets if target.startswith("flowlab_grader"))
                 for name, targets in GRAPH.items() if name.startswith("flowlab.")}
    assert not {name: targets for name, targets in offenders.items() if targets}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_imports(name):
    importlib.import_module(name)
