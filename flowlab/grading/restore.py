"""The notebook that grading runs: the student's, with the instructor's locked and test cells.

nbgrader marks cells in the source notebook: solution cells (the student's code), grade cells
(tests, with points; their hidden part is cut from the student version) and locked cells
(instructions, setup, public tests). A submission may have edited or deleted any of them, so
before it runs, every locked or grade cell is replaced by the source's version (hidden tests
restored, metadata included), and one that is missing is put back after its predecessor in the
source. Solution cells and cells the student added stay as submitted. Outputs are dropped.

This is what ``nbgrader autograde`` does with its ``OverwriteCells`` step, written out here
because grading runs the notebook in a sandbox of its own (see ``autograder/README.md``).
"""
from __future__ import annotations

import copy

import nbformat
from nbformat import NotebookNode

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def _nbgrader(cell) -> dict:
    meta = cell.get("metadata")
    meta = meta.get("nbgrader") if isinstance(meta, dict) else None
    return meta if isinstance(meta, dict) else {}


def grade_id(cell: NotebookNode) -> str | None:
    value = _nbgrader(cell).get("grade_id")
    return value if isinstance(value, str) else None


def instructor_cells(source: NotebookNode) -> dict[str, NotebookNode]:
    """The source's locked and grade cells (not solutions), by ``grade_id``."""
    found = {}
    for cell in source.cells:
        meta = _nbgrader(cell)
        if grade_id(cell) and (meta.get("locked") or meta.get("grade")) and not meta.get("solution"):
            found[grade_id(cell)] = cell
    return found


def _plain(cell) -> NotebookNode:
    """A fresh cell with only the submitted type, text and metadata (an object), no outputs."""
    plain = {"cell_type": cell["cell_type"], "source": cell.get("source", ""),
             "metadata": cell["metadata"] if isinstance(cell.get("metadata"), dict) else {}}
    if plain["cell_type"] == "code":
        plain.update(outputs=[], execution_count=None)
    return nbformat.from_dict(plain)


def _clean(cell: NotebookNode) -> NotebookNode:
    cell = copy.deepcopy(cell)
    if cell.cell_type == "code":
        cell.outputs, cell.execution_count = [], None
    return cell


def restore(submission: NotebookNode, source: NotebookNode) -> NotebookNode:
    """The notebook to grade: ``submission`` with ``source``'s locked and grade cells (see above)."""
    fixed = instructor_cells(source)
    cells, placed = [], set()
    for cell in submission.cells:
        if cell.get("cell_type") not in ("code", "markdown", "raw"):
            continue
        cell = _plain(cell)
        identifier = grade_id(cell)
        if identifier in fixed:
            if identifier in placed:
                continue                  # a duplicated instructor cell runs once
            cell = fixed[identifier]
            placed.add(identifier)
        cells.append(_clean(cell))
    order = [grade_id(cell) for cell in source.cells]
    for position, identifier in enumerate(order):
        if identifier in fixed and identifier not in placed:
            before = next((order[i] for i in range(position - 1, -1, -1) if order[i] in {grade_id(c) for c in cells}), None)
            index = next((i + 1 for i, c in enumerate(cells) if before is not None and grade_id(c) == before), len(cells))
            cells.insert(index, _clean(fixed[identifier]))
            placed.add(identifier)
    for index, cell in enumerate(cells):
        cell["id"] = f"cell-{index}"      # submitted ids may be missing or duplicated
    return nbformat.from_dict({"nbformat": 4, "nbformat_minor": 5, "cells": cells,
                               "metadata": {"kernelspec": KERNELSPEC, "language_info": {"name": "python"}}})


def read_submission(data: bytes) -> NotebookNode:
    """A submitted notebook from its bytes; ``ValueError`` with a short reason if it is not one."""
    try:
        notebook = nbformat.reads(data.decode("utf-8"), as_version=4)
    except UnicodeDecodeError as error:
        raise ValueError("the file is not UTF-8 text") from error
    except Exception as error:            # nbformat raises several kinds for garbage
        raise ValueError(f"not a Jupyter notebook ({type(error).__name__}: {str(error)[:120]})") from error
    if not isinstance(notebook.get("cells"), list):
        raise ValueError("not a Jupyter notebook (no list of cells)")
    for cell in notebook.cells:
        if not isinstance(cell, dict) or not isinstance(cell.get("source", ""), str):
            raise ValueError("not a Jupyter notebook (a cell without text source)")
    return notebook
