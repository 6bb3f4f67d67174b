"""Replace a library function's docstring and body by a pointer and ``raise NotImplementedError(...)``.

The student release must not hand out the reference implementation of a function that a
notebook asks the student to write, nor its docstring (which gives the formula). ``stub_function``
edits the source text (not an AST round-trip), so that everything else in the file, the
signature, comments and formatting included, is unchanged::

    def interpolate(x0: torch.Tensor, x1: torch.Tensor, t) -> torch.Tensor:
        \"\"\"Implemented by you in notebook 01_flow_matching, section 1 (interpolate).\"\"\"
        raise NotImplementedError("implemented in notebook 01_flow_matching")
"""
from __future__ import annotations

import ast


def _find(tree: ast.Module, name: str) -> ast.FunctionDef:
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            return node
    raise ValueError(f"no top-level function {name!r} to stub")


def _has_docstring(node: ast.FunctionDef) -> bool:
    first = node.body[0]
    return isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str)


def body_lines(source: str, name: str) -> tuple[int, int]:
    """``(first, last)``: the 1-based lines of function ``name``'s body after its docstring."""
    node = _find(ast.parse(source), name)
    body = node.body
    has_docstring = _has_docstring(node)
    first = body[0].end_lineno + 1 if has_docstring else body[0].lineno
    if first <= node.lineno or (not has_docstring and body[0].lineno == node.lineno):
        raise ValueError(f"{name}: a one-line function cannot be stubbed; give it a docstring and a body")
    return first, node.end_lineno


def stub_function(source: str, name: str, message: str, pointer: str) -> str:
    """``source`` with the docstring and body of top-level function ``name`` replaced by the
    docstring ``pointer`` (where the student writes it) and a ``NotImplementedError(message)``."""
    node = _find(ast.parse(source), name)
    _, last = body_lines(source, name)
    first = node.body[0].lineno
    lines = source.splitlines(keepends=True)
    indent = " " * node.body[0].col_offset
    if '"""' in pointer or pointer.endswith("\\"):
        raise ValueError(f"the stub's docstring cannot hold triple quotes or end in a backslash: {pointer!r}")
    stub = [f'{indent}"""{pointer}"""\n', f"{indent}raise NotImplementedError({message!r})\n"]
    result = "".join(lines[: first - 1] + stub + lines[last:])
    ast.parse(result)
    return result


def function_body(source: str, name: str) -> str:
    """The text of function ``name``'s body after its docstring (what ``stub_function`` removes
    besides the docstring)."""
    first, last = body_lines(source, name)
    return "".join(source.splitlines(keepends=True)[first - 1: last])


def function_docstring(source: str, name: str) -> str | None:
    """The docstring of top-level function ``name`` (as ``ast.get_docstring`` cleans it), or None."""
    return ast.get_docstring(_find(ast.parse(source), name))


def docstring_span(source: str, name: str) -> tuple[int, int]:
    """``(first, last)``: the 1-based lines of function ``name``'s docstring; ``(1, 0)`` (none) without one."""
    node = _find(ast.parse(source), name)
    return (node.body[0].lineno, node.body[0].end_lineno) if _has_docstring(node) else (1, 0)
