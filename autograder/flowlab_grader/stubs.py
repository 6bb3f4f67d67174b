"""Replace a library function's body by ``raise NotImplementedError(...)``, keeping its docstring.

The student release must not hand out the reference implementation of a function that a
notebook asks the student to write. ``stub_function`` edits the source text (not an AST
round-trip), so that everything else in the file, comments and formatting included, is unchanged::

    def interpolate(x0, x1, t):
        \"\"\"Point on the linear path: ...\"\"\"
        raise NotImplementedError("implemented in notebook 01_flow_matching")
"""
from __future__ import annotations

import ast


def _find(tree: ast.Module, name: str) -> ast.FunctionDef:
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            return node
    raise ValueError(f"no top-level function {name!r} to stub")


def body_lines(source: str, name: str) -> tuple[int, int]:
    """``(first, last)``: the 1-based lines of function ``name``'s body after its docstring."""
    node = _find(ast.parse(source), name)
    body = node.body
    has_docstring = isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
        and isinstance(body[0].value.value, str)
    first = body[0].end_lineno + 1 if has_docstring else body[0].lineno
    if first <= node.lineno or (not has_docstring and body[0].lineno == node.lineno):
        raise ValueError(f"{name}: a one-line function cannot be stubbed; give it a docstring and a body")
    return first, node.end_lineno


def stub_function(source: str, name: str, message: str) -> str:
    """``source`` with the body of top-level function ``name`` replaced by a ``NotImplementedError``."""
    node = _find(ast.parse(source), name)
    first, last = body_lines(source, name)
    lines = source.splitlines(keepends=True)
    indent = " " * node.body[0].col_offset
    stubbed = lines[: first - 1] + [f"{indent}raise NotImplementedError({message!r})\n"] + lines[last:]
    result = "".join(stubbed)
    ast.parse(result)
    return result


def function_body(source: str, name: str) -> str:
    """The text of function ``name``'s body after its docstring (what ``stub_function`` removes)."""
    first, last = body_lines(source, name)
    return "".join(source.splitlines(keepends=True)[first - 1: last])
